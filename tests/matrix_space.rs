//! MatrixSpace on the real platform: the space groups the selected rooms both
//! ways, its members are the people of those rooms, a real client's hierarchy
//! shows exactly the rooms one may be in, and the space is crash-safe and deletable.

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use exo_matrix_operator::crd::{MatrixSpace, MatrixUser, SpaceRoomLink};
use exo_matrix_operator::secret::SecretString;
use exo_matrix_operator::synapse::{Synapse, enc};
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use support::*;

const WAIT: Duration = Duration::from_secs(60);

async fn sign_in(localpart: &str, password: &str) -> String {
    let synapse = Synapse::new(platform().synapse_url()).expect("url");
    synapse.login_with_password(localpart, &SecretString::new(password)).await.expect("login").expose().to_owned()
}

async fn call(method: reqwest::Method, path: &str, token: &str) -> (u16, Value) {
    let url = format!("{}{path}", platform().synapse_url());
    let req = reqwest::Client::new().request(method.clone(), url).bearer_auth(token);
    let req = if method == reqwest::Method::POST { req.json(&json!({})) } else { req };
    let resp = req.send().await.expect("Synapse answers");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// The rooms a person's client shows under the space.
async fn hierarchy(space: &str, token: &str) -> BTreeSet<String> {
    let (status, body) =
        call(reqwest::Method::GET, &format!("/_matrix/client/v1/rooms/{}/hierarchy", enc(space)), token).await;
    assert_eq!(status, 200, "{body}");
    body["rooms"].as_array().into_iter().flatten().filter_map(|r| r["room_id"].as_str().map(str::to_owned)).collect()
}

async fn create<K>(api: &Api<K>, value: Value)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    let obj: K = serde_json::from_value(value).expect("object");
    api.create(&PostParams::default(), &obj).await.expect("created");
}

async fn user(api: &Api<MatrixUser>, client: &kube::Client, ns: &str, name: &str, username: &str) {
    credentials_secret(client, ns, &format!("{name}-pw"), &[("password", &format!("{name}-secret-pw"))]).await;
    create(
        api,
        json!({"apiVersion": "exomatrix.dev/v1alpha1", "kind": "MatrixUser", "metadata": {"name": name},
        "spec": {"username": username, "passwordSecretRef": {"name": format!("{name}-pw")}}}),
    )
    .await;
}

async fn link(api: &Api<SpaceRoomLink>, name: &str, group: &str, labels: Value, members: &[&String]) {
    create(
        api,
        json!({"apiVersion": "exomatrix.dev/v1alpha1", "kind": "SpaceRoomLink",
        "metadata": {"name": name, "labels": labels},
        "spec": {"spaceGroupId": group, "create": true, "displayName": name, "members": members}}),
    )
    .await;
}

async fn room_of(links: &Api<SpaceRoomLink>, name: &str, joined: i64) -> String {
    eventually(&format!("link {name} ready"), WAIT, || async {
        let st = links.get(name).await.ok()?.status?;
        (st.joined_members == Some(joined)).then_some(st.room_id?)
    })
    .await
}

fn state_of(state: &[exo_matrix_operator::synapse::RoomStateEvent], kind: &str, key: &str) -> Value {
    state.iter().find(|e| e.kind == kind && e.state_key == key).map_or(Value::Null, |e| e.content.clone())
}

#[tokio::test]
async fn the_space_groups_selected_rooms_and_a_member_sees_only_rooms_they_may_be_in() {
    let client = kube_client().await;
    let ns = namespace(&client, "space").await;
    shared_secret_credentials(&client, &ns).await;
    let _op = Operator::start(&ns, "matrix", &[]);
    let tag = unique("s").replace('-', "");
    let (ann, bob, cat) = (format!("ann{tag}"), format!("bob{tag}"), format!("cat{tag}"));
    let users: Api<MatrixUser> = Api::namespaced(client.clone(), &ns);
    for (name, username) in [("ann", &ann), ("bob", &bob), ("cat", &cat)] {
        user(&users, &client, &ns, name, username).await;
    }
    let links: Api<SpaceRoomLink> = Api::namespaced(client.clone(), &ns);
    link(&links, "alpha", &format!("alpha_{tag}"), json!({"team": "x"}), &[&ann, &bob]).await;
    link(&links, "beta", &format!("beta_{tag}"), json!({"team": "x"}), &[&cat]).await;
    link(&links, "gamma", &format!("gamma_{tag}"), json!({}), &[&ann]).await;
    let (alpha, beta, gamma) =
        (room_of(&links, "alpha", 2).await, room_of(&links, "beta", 1).await, room_of(&links, "gamma", 1).await);

    let spaces: Api<MatrixSpace> = Api::namespaced(client.clone(), &ns);
    create(
        &spaces,
        json!({"apiVersion": "exomatrix.dev/v1alpha1", "kind": "MatrixSpace", "metadata": {"name": "intranet"},
        "spec": {"displayName": "Intranet", "topic": "All <b>teams</b>", "linkSelector": {"matchLabels": {"team": "x"}},
                 "managers": [ann]}}),
    )
    .await;
    let space = eventually("the space with 2 rooms and 3 members", WAIT, || async {
        let st = spaces.get("intranet").await.ok()?.status?;
        let ready = st.conditions.iter().any(|c| c.type_ == "Ready" && c.status == "True");
        (ready && st.rooms == Some(2) && st.members == Some(3)).then_some(st.room_id?)
    })
    .await;

    // What Synapse holds: a private space, its two rooms both ways, via the server name.
    let p = platform();
    let server = p.server_name().to_owned();
    let admin = synapse_admin().await;
    let state = admin.admin_room_state(&support::rid(&space)).await.expect("space state");
    assert_eq!(state_of(&state, "m.room.create", "")["type"], "m.space");
    assert_eq!(state_of(&state, "m.room.join_rules", "")["join_rule"], "invite");
    assert_eq!(state_of(&state, "m.room.name", "")["name"], "Intranet");
    assert_eq!(state_of(&state, "m.room.power_levels", "")["users"][format!("@{ann}:{server}")], 50);
    for room in [&alpha, &beta] {
        assert_eq!(state_of(&state, "m.space.child", room), json!({"via": [server]}));
        let room_state = admin.admin_room_state(&support::rid(room)).await.expect("room state");
        assert_eq!(state_of(&room_state, "m.space.parent", &space), json!({"via": [server], "canonical": true}));
        assert_eq!(
            state_of(&room_state, "m.room.join_rules", "")["join_rule"],
            "invite",
            "team rooms stay invite-only"
        );
    }
    assert_eq!(state_of(&state, "m.space.child", &gamma), Value::Null, "gamma is not selected");

    // A real client: each person's hierarchy lists exactly the rooms they are in.
    let (ann_t, cat_t) = (sign_in(&ann, "ann-secret-pw").await, sign_in(&cat, "cat-secret-pw").await);
    assert_eq!(hierarchy(&space, &ann_t).await, [space.clone(), alpha.clone()].into());
    assert_eq!(hierarchy(&space, &cat_t).await, [space.clone(), beta.clone()].into());
    // cat sees alpha at most as a child event, and can neither join nor read it.
    let (status, _) = call(reqwest::Method::POST, &format!("/_matrix/client/v3/join/{}", enc(&alpha)), &cat_t).await;
    assert_eq!(status, 403, "being in the space gives no access to a team room");
    let messages = format!("/_matrix/client/v3/rooms/{}/messages?dir=b&limit=5", enc(&alpha));
    assert_eq!(call(reqwest::Method::GET, &messages, &cat_t).await.0, 403);

    // Membership follows intent: bob's account loses its password Secret (not Ready), he stays in the space.
    let patch = json!({"spec": {"passwordSecretRef": {"name": "missing-secret"}}});
    users.patch("bob", &PatchParams::default(), &Patch::Merge(&patch)).await.expect("bob edited");
    eventually("bob not Ready", WAIT, || async {
        let u = users.get("bob").await.ok()?;
        let (status, _, _) = condition(serde_json::to_value(&u.status).ok().as_ref(), "Ready")?;
        (status == "False").then_some(())
    })
    .await;
    let rename = json!({"spec": {"displayName": "Intranet (renamed)"}});
    spaces.patch("intranet", &PatchParams::default(), &Patch::Merge(&rename)).await.expect("renamed");
    eventually("the space renamed", WAIT, || async {
        let state = admin.admin_room_state(&support::rid(&space)).await.ok()?;
        (state_of(&state, "m.room.name", "")["name"] == "Intranet (renamed)").then_some(())
    })
    .await;
    let members = admin.room_members(&support::rid(&space)).await.expect("members");
    assert!(members.contains(&support::uid(format!("@{bob}:{server}"))), "a not-Ready bob stays: {members:?}");

    // beta stops being selected: it loses child and parent, and cat (only in beta) leaves the space.
    let unlabel = json!({"metadata": {"labels": {"team": null}}});
    links.patch("beta", &PatchParams::default(), &Patch::Merge(&unlabel)).await.expect("unlabelled");
    eventually("beta out of the space", WAIT, || async {
        let st = spaces.get("intranet").await.ok()?.status?;
        (st.rooms == Some(1) && st.members == Some(2)).then_some(())
    })
    .await;
    let state = admin.admin_room_state(&support::rid(&space)).await.expect("space state");
    assert_eq!(state_of(&state, "m.space.child", &beta), json!({}));
    let beta_state = admin.admin_room_state(&support::rid(&beta)).await.expect("beta state");
    assert_eq!(state_of(&beta_state, "m.space.parent", &space), json!({}));
    let members = admin.room_members(&support::rid(&space)).await.expect("members");
    assert!(!members.contains(&support::uid(format!("@{cat}:{server}"))), "{members:?}");
    assert!(
        admin
            .room_members(&support::rid(&beta))
            .await
            .expect("beta")
            .contains(&support::uid(format!("@{cat}:{server}"))),
        "cat keeps beta"
    );
}

#[tokio::test]
async fn a_space_is_adopted_again_through_its_alias_and_deleted_on_request() {
    let client = kube_client().await;
    let ns = namespace(&client, "spacelife").await;
    shared_secret_credentials(&client, &ns).await;
    let _op = Operator::start(&ns, "matrix", &[]);
    let tag = unique("l").replace('-', "");
    let links: Api<SpaceRoomLink> = Api::namespaced(client.clone(), &ns);
    link(&links, "only", &format!("only_{tag}"), json!({"in": "yes"}), &[]).await;
    let room = eventually("the link's room", WAIT, || async { links.get("only").await.ok()?.status?.room_id }).await;

    let spaces: Api<MatrixSpace> = Api::namespaced(client.clone(), &ns);
    let manifest = |policy: &str| {
        json!({"apiVersion": "exomatrix.dev/v1alpha1", "kind": "MatrixSpace", "metadata": {"name": "hub"},
            "spec": {"linkSelector": {"matchExpressions": [{"key": "in", "operator": "Exists"}]}, "deletionPolicy": policy}})
    };
    let ready_space = || async {
        eventually("the space with its room", WAIT, || async {
            let st = spaces.get("hub").await.ok()?.status?;
            (st.rooms == Some(1)).then_some(st.room_id?)
        })
        .await
    };
    create(&spaces, manifest("Retain")).await;
    let first = ready_space().await;
    // Deleted with Retain and made again (as after a lost status): the same space, found by its alias.
    spaces.delete("hub", &DeleteParams::default()).await.expect("deleted");
    eventually("hub gone", WAIT, || async { spaces.get_opt("hub").await.ok()?.is_none().then_some(()) }).await;
    create(&spaces, manifest("Delete")).await;
    assert_eq!(ready_space().await, first, "adopted, not duplicated");

    // Deleted with Delete: the room loses its parent and the space is purged.
    let admin = synapse_admin().await;
    spaces.delete("hub", &DeleteParams::default()).await.expect("deleted");
    eventually("hub gone", WAIT, || async { spaces.get_opt("hub").await.ok()?.is_none().then_some(()) }).await;
    assert!(admin.room_details(&support::rid(&first)).await.expect("details").is_none(), "the space is purged");
    let state = admin.admin_room_state(&support::rid(&room)).await.expect("room state");
    assert_eq!(state_of(&state, "m.space.parent", &first), json!({}));
}
