//! The operator's session heals itself through the registration shared secret
//! and always stays with the same account (the creator of its rooms): after a
//! reinstall without its token Secret, beside a second installation on the
//! same Synapse, after a person changed its password.

mod support;

use std::time::Duration;

use exo_matrix_operator::crd::{MatrixUser, MatrixUserSpec, SpaceRoomLink, SpaceRoomLinkSpec};
use exo_matrix_operator::secret::SecretString;
use exo_matrix_operator::synapse::Synapse;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::events::v1::Event;
use kube::api::{ListParams, PostParams};
use kube::{Api, Client};
use serde_json::json;
use support::*;

const WAIT: Duration = Duration::from_secs(60);

async fn user_ready(client: &Client, ns: &str, username: &str) -> String {
    let api: Api<MatrixUser> = Api::namespaced(client.clone(), ns);
    if api.get_opt(username).await.expect("get").is_none() {
        let spec: MatrixUserSpec = serde_json::from_value(json!({"username": username})).expect("spec");
        api.create(&PostParams::default(), &MatrixUser::new(username, spec)).await.expect("user");
    }
    eventually(&format!("{ns}/{username} Ready"), WAIT, || async {
        let u = api.get(username).await.ok()?;
        let (st, _, _) = condition(serde_json::to_value(&u.status).ok().as_ref(), "Ready")?;
        (st == "True").then_some(u.status?.user_id?)
    })
    .await
}

async fn stored_token(client: &Client, ns: &str) -> SecretString {
    let s = Api::<Secret>::namespaced(client.clone(), ns).get("matrix-operator-token").await.expect("token Secret");
    SecretString::new(String::from_utf8(s.data.expect("data")["accessToken"].0.clone()).expect("utf-8"))
}

/// Who a token acts as, or `None` when Synapse refuses it.
async fn whoami(token: &SecretString) -> Option<String> {
    let synapse = Synapse::new(platform().synapse_url()).expect("url").with_token(token.clone());
    synapse.whoami().await.ok().map(|me| me.user_id.to_string())
}

/// Notes of the session Events on the operator's token Secret, with `reason`.
async fn session_events(client: &Client, ns: &str, reason: &str) -> Vec<String> {
    let list = Api::<Event>::namespaced(client.clone(), ns).list(&ListParams::default()).await.expect("events");
    list.items
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some(reason))
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("matrix-operator-token"))
        .filter_map(|e| e.note)
        .collect()
}

fn account(prefix: &str) -> String {
    unique(prefix)
}

#[tokio::test]
async fn a_reinstall_without_its_token_secret_gets_the_same_account_and_room_back() {
    let client = kube_client().await;
    let shared = account("opshared");
    let (group, alice, bob) = (account("g"), account("alice"), account("bob"));
    let link_spec = || -> SpaceRoomLinkSpec {
        serde_json::from_value(
            json!({"spaceGroupId": group, "create": true, "members": [alice, bob], "managers": [bob]}),
        )
        .expect("spec")
    };
    let link_room = |ns: String| {
        let client = client.clone();
        async move {
            let links: Api<SpaceRoomLink> = Api::namespaced(client, &ns);
            eventually("link Ready", WAIT, || async {
                let l = links.get("team").await.ok()?;
                let status = l.status?;
                let ready = condition(serde_json::to_value(&status).ok().as_ref(), "Ready")?.0 == "True";
                (ready && status.pending_member_count == Some(0)).then_some(status.room_id?)
            })
            .await
        }
    };

    let first_ns = namespace(&client, "reinstall-a").await;
    shared_secret_credentials(&client, &first_ns).await;
    let (room, first_token) = {
        let _op = Operator::start_with_account(&first_ns, "matrix", &shared, &[]);
        user_ready(&client, &first_ns, &alice).await;
        user_ready(&client, &first_ns, &bob).await;
        let links: Api<SpaceRoomLink> = Api::namespaced(client.clone(), &first_ns);
        links.create(&PostParams::default(), &SpaceRoomLink::new("team", link_spec())).await.expect("link");
        (link_room(first_ns.clone()).await, stored_token(&client, &first_ns).await)
    };

    // Installed again elsewhere: only the shared secret, no token Secret.
    let second_ns = namespace(&client, "reinstall-b").await;
    shared_secret_credentials(&client, &second_ns).await;
    let op = Operator::start_with_account(&second_ns, "matrix", &shared, &["--resync", "2s"]);
    user_ready(&client, &second_ns, &alice).await;
    user_ready(&client, &second_ns, &bob).await;
    let links: Api<SpaceRoomLink> = Api::namespaced(client.clone(), &second_ns);
    links.create(&PostParams::default(), &SpaceRoomLink::new("team", link_spec())).await.expect("link");
    assert_eq!(link_room(second_ns.clone()).await, room, "the room made by the first installation is managed again");

    let me = format!("@{shared}:{}", platform().server_name());
    assert_eq!(whoami(&stored_token(&client, &second_ns).await).await.as_deref(), Some(me.as_str()));
    assert_eq!(whoami(&first_token).await.as_deref(), Some(me.as_str()), "the first installation's session survives");
    let notes = session_events(&client, &second_ns, "SessionRecovered").await;
    assert!(notes.iter().any(|n| n.contains("helper admin") && n.contains(&me)), "{notes:?}");
    assert!(op.log_text().contains("helper admin"), "{}", op.log_text());
    // The helper is gone again.
    let helpers = format!("@{shared}-recovery-");
    let admin = synapse_admin().await;
    let token = admin_token().await;
    let list: serde_json::Value = reqwest::Client::new()
        .get(format!("{}/_synapse/admin/v2/users?name={shared}-recovery-&deactivated=true", platform().synapse_url()))
        .bearer_auth(token.expose())
        .send()
        .await
        .expect("users")
        .json()
        .await
        .expect("json");
    let found = list["users"].as_array().cloned().unwrap_or_default();
    assert!(!found.is_empty(), "a helper was made: {list}");
    for u in found {
        let name = u["name"].as_str().unwrap_or_default();
        assert!(name.starts_with(&helpers), "{name}");
        assert!(
            admin.get_user(&support::uid(name)).await.expect("user").expect("exists").deactivated,
            "{name} deactivated"
        );
    }
}

#[tokio::test]
async fn two_installations_on_one_synapse_share_the_account_and_both_keep_working() {
    let client = kube_client().await;
    let shared = account("optwo");
    let (a, b) = (namespace(&client, "two-a").await, namespace(&client, "two-b").await);
    shared_secret_credentials(&client, &a).await;
    shared_secret_credentials(&client, &b).await;
    let _op_a = Operator::start_with_account(&a, "matrix", &shared, &[]);
    user_ready(&client, &a, &account("ua")).await;
    let token_a = stored_token(&client, &a).await;

    let _op_b = Operator::start_with_account(&b, "matrix", &shared, &[]);
    user_ready(&client, &b, &account("ub")).await;
    // The first one still works, with the same token: nobody was logged out.
    user_ready(&client, &a, &account("ua2")).await;
    assert!(stored_token(&client, &a).await == token_a, "installation A kept its session");
    let me = format!("@{shared}:{}", platform().server_name());
    assert_eq!(whoami(&token_a).await.as_deref(), Some(me.as_str()));
    assert_eq!(whoami(&stored_token(&client, &b).await).await.as_deref(), Some(me.as_str()));
    user_ready(&client, &b, &account("ub2")).await;
}

#[tokio::test]
async fn a_password_changed_behind_its_back_is_healed_without_a_person() {
    let client = kube_client().await;
    let ns = namespace(&client, "pwchange").await;
    shared_secret_credentials(&client, &ns).await;
    let op = Operator::start(&ns, "matrix", &[]);
    user_ready(&client, &ns, &account("pa")).await;
    let me = whoami(&stored_token(&client, &ns).await).await.expect("working token");

    // A person resets the operator's password, signing out every session.
    let admin = synapse_admin().await;
    let update = exo_matrix_operator::synapse::UserUpdate {
        password: Some(SecretString::new("changed-by-a-person-1")),
        logout_devices: Some(true),
        ..Default::default()
    };
    admin.put_user(&support::uid(&me), &update).await.expect("password changed");

    user_ready(&client, &ns, &account("pb")).await;
    assert_eq!(whoami(&stored_token(&client, &ns).await).await, Some(me.clone()), "the same account");
    let notes = session_events(&client, &ns, "SessionRecovered").await;
    assert!(notes.iter().any(|n| n.contains("stored password no longer works")), "{notes:?}");
    assert!(op.log_text().contains("SessionRecovered"), "{}", op.log_text());
}
