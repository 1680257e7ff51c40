//! A real Matrix client sees what the operator built: a member signs in with the
//! password from its Secret, finds the room, talks; a non-member cannot read.

mod support;

use std::time::Duration;

use exo_matrix_operator::crd::{MatrixUser, SpaceRoomLink};
use exo_matrix_operator::secret::SecretString;
use exo_matrix_operator::synapse::{Synapse, enc};
use kube::Api;
use kube::api::PostParams;
use serde_json::{Value, json};
use support::*;

const WAIT: Duration = Duration::from_secs(40);

/// Signs in with a password, as Element would; returns the token.
async fn sign_in(localpart: &str, password: &str) -> String {
    let synapse = Synapse::new(platform().synapse_url()).expect("url");
    synapse
        .login_with_password(localpart, &SecretString::new(password))
        .await
        .expect("password login")
        .expose()
        .to_owned()
}

async fn call(method: reqwest::Method, path: &str, token: &str, body: Option<Value>) -> (u16, Value) {
    let url = format!("{}{path}", platform().synapse_url());
    let mut req = reqwest::Client::new().request(method, url).bearer_auth(token);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.expect("Synapse answers");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn a_member_signs_in_and_talks_in_the_space_room_and_a_stranger_cannot_read() {
    let client = kube_client().await;
    let ns = namespace(&client, "client").await;
    shared_secret_credentials(&client, &ns).await;
    let _op = Operator::start(&ns, "matrix", &[]);
    let tag = unique("t").replace('-', "");
    let users: Api<MatrixUser> = Api::namespaced(client.clone(), &ns);
    for who in ["alice", "bob", "carl"] {
        let username = format!("{who}{tag}");
        credentials_secret(&client, &ns, &format!("{who}-password"), &[("password", &format!("{who}-secret-pw"))])
            .await;
        let user = serde_json::from_value(json!({"apiVersion": "exomatrix.dev/v1alpha1", "kind": "MatrixUser",
            "metadata": {"name": who},
            "spec": {"username": username, "passwordSecretRef": {"name": format!("{who}-password")}}}))
        .expect("user");
        users.create(&PostParams::default(), &user).await.expect("user created");
    }
    let links: Api<SpaceRoomLink> = Api::namespaced(client.clone(), &ns);
    let link = serde_json::from_value(json!({"apiVersion": "exomatrix.dev/v1alpha1", "kind": "SpaceRoomLink",
        "metadata": {"name": "chat"},
        "spec": {"spaceGroupId": format!("chat_{tag}"), "create": true, "displayName": "Chat",
                 "members": [format!("alice{tag}"), format!("bob{tag}")]}}))
    .expect("link");
    links.create(&PostParams::default(), &link).await.expect("link created");
    let room = eventually("both members joined", WAIT, || async {
        let l = links.get("chat").await.ok()?;
        let st = l.status?;
        (st.joined_members == Some(2)).then_some(st.room_id?)
    })
    .await;

    let alice = sign_in(&format!("alice{tag}"), "alice-secret-pw").await;
    let (status, joined) = call(reqwest::Method::GET, "/_matrix/client/v3/joined_rooms", &alice, None).await;
    assert_eq!(status, 200);
    assert!(joined["joined_rooms"].as_array().is_some_and(|r| r.contains(&json!(room))), "{joined}");
    let send = format!("/_matrix/client/v3/rooms/{}/send/m.room.message/{}", enc(&room), unique("txn"));
    let (status, sent) =
        call(reqwest::Method::PUT, &send, &alice, Some(json!({"msgtype": "m.text", "body": "hello from alice"}))).await;
    assert_eq!(status, 200, "{sent}");

    let messages = format!("/_matrix/client/v3/rooms/{}/messages?dir=b&limit=20", enc(&room));
    let bob = sign_in(&format!("bob{tag}"), "bob-secret-pw").await;
    let (status, read) = call(reqwest::Method::GET, &messages, &bob, None).await;
    assert_eq!(status, 200, "{read}");
    let bodies: Vec<&str> =
        read["chunk"].as_array().into_iter().flatten().filter_map(|e| e["content"]["body"].as_str()).collect();
    assert!(bodies.contains(&"hello from alice"), "{bodies:?}");

    let carl = sign_in(&format!("carl{tag}"), "carl-secret-pw").await;
    let (status, _) = call(reqwest::Method::GET, &messages, &carl, None).await;
    assert_eq!(status, 403, "a non-member must not read the room");
    let (_, joined) = call(reqwest::Method::GET, "/_matrix/client/v3/joined_rooms", &carl, None).await;
    assert!(!joined["joined_rooms"].as_array().is_some_and(|r| r.contains(&json!(room))));
}
