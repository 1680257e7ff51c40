//! `--one-event-joins`: a new room's first members cost one event each, and a
//! stranger who watches everything a Kubernetes reader or any Matrix user can
//! see never gets in nor reads anything; a crash while the room is open is
//! closed by the next start, and whoever got in meanwhile is removed.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use exo_matrix_operator::crd::{MatrixUser, SpaceRoomLink};
use exo_matrix_operator::secret::SecretString;
use exo_matrix_operator::synapse::{Registration, Synapse};
use kube::Api;
use kube::api::PostParams;
use serde_json::{Value, json};
use support::*;

struct Setup {
    ns: String,
    users: Vec<String>,
    links: Api<SpaceRoomLink>,
    server: String,
    operator: String,
}

/// A namespace with `n` ready MatrixUsers (the operator started for them is stopped again).
async fn setup(prefix: &str, n: usize) -> Setup {
    let client = kube_client().await;
    let ns = namespace(&client, prefix).await;
    shared_secret_credentials(&client, &ns).await;
    let tag = ns.rsplit('-').next().unwrap_or("x").to_owned();
    let usernames: Vec<String> = (0..n).map(|i| format!("p{i:02}{tag}")).collect();
    let users: Api<MatrixUser> = Api::namespaced(client.clone(), &ns);
    let _op = Operator::start(&ns, "matrix", &[]);
    for u in &usernames {
        let user = serde_json::from_value(json!({"apiVersion": "exomatrix.dev/v1alpha1", "kind": "MatrixUser",
            "metadata": {"name": u}, "spec": {"username": u}}))
        .expect("user");
        users.create(&PostParams::default(), &user).await.expect("user created");
    }
    for u in &usernames {
        eventually(&format!("{u} Ready"), Duration::from_secs(60), || async {
            let x = users.get(u).await.ok()?;
            condition(serde_json::to_value(&x.status).ok().as_ref(), "Ready").filter(|c| c.0 == "True")
        })
        .await;
    }
    let server = platform().server_name().to_owned();
    Setup { links: Api::namespaced(client, &ns), operator: format!("@op-{ns}:{server}"), ns, users: usernames, server }
}

async fn create_link(s: &Setup, group: &str) {
    let link = serde_json::from_value(json!({"apiVersion": "exomatrix.dev/v1alpha1", "kind": "SpaceRoomLink",
        "metadata": {"name": "team"},
        "spec": {"spaceGroupId": group, "create": true, "displayName": "Secret team", "description": "plans",
                 "members": s.users, "managers": [s.users[0], s.users[1]]}}))
    .expect("link");
    s.links.create(&PostParams::default(), &link).await.expect("link created");
}

async fn link_ready(s: &Setup) -> String {
    eventually("the link Ready", Duration::from_secs(120), || async {
        let l = s.links.get("team").await.ok()?;
        let st = serde_json::to_value(&l.status).ok();
        condition(st.as_ref(), "Ready").filter(|c| c.0 == "True")?;
        l.status?.room_id
    })
    .await
}

/// A plain account with no power anywhere, and its client.
async fn stranger() -> (String, Synapse, SecretString) {
    let p = platform();
    let synapse = Synapse::new(p.synapse_url()).expect("url");
    let reg = Registration {
        username: unique("stranger").replace('-', "_"),
        password: SecretString::new("stranger-password"),
        admin: false,
        displayname: None,
    };
    let r = synapse.register_with_shared_secret(&SecretString::new(p.shared_secret()), &reg).await.expect("stranger");
    let token = r.access_token.expect("token");
    (r.user_id.to_string(), synapse.with_token(token.clone()), token)
}

/// GET on Synapse with `token`: (status, body).
async fn get(token: &str, path: &str) -> (u16, Value) {
    let url = format!("{}{path}", platform().synapse_url());
    let resp = reqwest::Client::new().get(url).bearer_auth(token).send().await.expect("synapse answers");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

fn enc(s: &str) -> String {
    exo_matrix_operator::synapse::enc(s).to_string()
}

/// The room's timeline from its creation, as a server admin reads it.
async fn timeline(admin_token: &str, room: &str) -> Vec<Value> {
    let (status, body) =
        get(admin_token, &format!("/_synapse/admin/v1/rooms/{}/messages?dir=f&limit=1000", enc(room))).await;
    assert_eq!(status, 200, "admin messages: {body}");
    body["chunk"].as_array().cloned().unwrap_or_default()
}

fn join_rule(events: &[Value]) -> Option<String> {
    events
        .iter()
        .rev()
        .find(|e| e["type"] == "m.room.join_rules")
        .and_then(|e| e["content"]["join_rule"].as_str())
        .map(str::to_owned)
}

#[tokio::test]
async fn a_stranger_watching_everything_never_gets_into_a_room_populated_in_one_event_per_member() {
    let s = setup("oej", 24).await;
    let group = format!("secret_{}", s.ns.rsplit('-').next().unwrap_or("x"));
    let alias = format!("#space_{group}:{}", s.server);
    let (stranger_id, me, secret) = stranger().await;
    let token = me.clone();
    let _op = Operator::start(&s.ns, "matrix", &["--one-event-joins", "--join-concurrency", "1"]);

    // The stranger polls what a Kubernetes reader sees (the link's status) and what any Matrix user
    // can ask (the guessable alias), and tries to join and read every room id it learns.
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (stop, links, alias) = (stop.clone(), s.links.clone(), alias.clone());
        tokio::spawn(async move {
            let (mut attempts, mut breaches) = (0usize, Vec::<String>::new());
            while !stop.load(Ordering::Relaxed) {
                let mut ids = Vec::new();
                if let Ok(l) = links.get("team").await {
                    ids.extend(l.status.as_ref().and_then(|st| st.room_id.clone()));
                }
                if let Ok(Some(id)) = token.resolve_alias(&support::alias(&alias)).await {
                    ids.push(id.to_string());
                }
                for id in ids {
                    attempts += 1;
                    if token.join(&support::rid(&id)).await.is_ok() {
                        breaches.push(format!("joined {id}"));
                    }
                    if token.full_state(&support::rid(&id)).await.is_ok() {
                        breaches.push(format!("read the state of {id}"));
                    }
                    let (status, _) =
                        get(secret.expose(), &format!("/_matrix/client/v3/rooms/{}/messages", enc(&id))).await;
                    if status == 200 {
                        breaches.push(format!("read the messages of {id}"));
                    }
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            (attempts, breaches)
        })
    };
    create_link(&s, &group).await;
    let room = link_ready(&s).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::Relaxed);
    let (attempts, breaches) = watcher.await.expect("watcher");
    assert!(attempts > 0, "the stranger saw the room id and tried it");
    assert!(breaches.is_empty(), "the stranger got in: {breaches:?}");

    let admin = synapse_admin().await;
    let admin_token = admin_token().await;
    let mut members = admin.room_members(&support::rid(&room)).await.expect("members");
    members.sort();
    let mut expected: Vec<String> = s.users.iter().map(|u| format!("@{u}:{}", s.server)).collect();
    expected.push(s.operator.clone());
    expected.sort();
    assert_eq!(members, expected, "exactly the listed people and the operator");
    assert!(!members.contains(&support::uid(&stranger_id)));
    assert_eq!(
        admin.resolve_alias(&support::alias(&alias)).await.expect("alias"),
        Some(support::rid(&room)),
        "the alias comes at the end"
    );
    let events = timeline(admin_token.expose(), &room).await;
    assert_eq!(join_rule(&events).as_deref(), Some("invite"), "the room is closed again");
    let members_events: Vec<&Value> =
        events.iter().filter(|e| e["type"] == "m.room.member" && e["state_key"] != s.operator.as_str()).collect();
    let invites = members_events.iter().filter(|e| e["content"]["membership"] == "invite").count();
    let joins = members_events.iter().filter(|e| e["content"]["membership"] == "join").count();
    assert_eq!((invites, joins), (0, s.users.len()), "one event (a join) per first member, no invites");
    assert!(me.join(&support::rid(&room)).await.is_err(), "and the closed room refuses the stranger");
}

#[tokio::test]
async fn a_crash_while_the_room_is_open_is_closed_first_on_restart_and_whoever_got_in_is_removed() {
    let s = setup("oejcrash", 40).await;
    let group = format!("crash_{}", s.ns.rsplit('-').next().unwrap_or("x"));
    let alias = format!("#space_{group}:{}", s.server);
    let (stranger_id, me, _) = stranger().await;
    let admin = synapse_admin().await;
    let admin_token = admin_token().await;
    let op = Operator::start(&s.ns, "matrix", &["--one-event-joins", "--join-concurrency", "1"]);
    create_link(&s, &group).await;

    // The room's id, as only a server admin can read it while the room is open: from the operator's account data.
    let record = format!("dev.exomatrix.room.space_{group}");
    let path = format!("/_synapse/admin/v1/users/{}/accountdata", enc(&s.operator));
    let room = eventually("the room recorded and open", Duration::from_secs(60), || async {
        let (_, body) = get(admin_token.expose(), &path).await;
        let id = body["account_data"]["global"][&record]["roomId"].as_str()?.to_owned();
        let (_, d) = get(admin_token.expose(), &format!("/_synapse/admin/v1/rooms/{}", enc(&id))).await;
        (d["join_rules"] == "public").then_some(id)
    })
    .await;
    let _ = std::process::Command::new("kill").args(["-9", &op.pid().to_string()]).status();
    drop(op);

    // Kubernetes readers saw nothing of it, nor does the alias name it.
    let l = s.links.get("team").await.expect("link");
    assert_eq!(l.status.as_ref().and_then(|st| st.room_id.clone()), None, "no room id in status while open");
    assert_eq!(admin.resolve_alias(&support::alias(&alias)).await.expect("alias"), None, "no alias while open");
    let (_, d) = get(admin_token.expose(), &format!("/_synapse/admin/v1/rooms/{}", enc(&room))).await;
    assert_eq!(d["join_rules"], "public", "killed with the room open");
    // The worst case: someone who was handed the id gets in while the room is open.
    me.join(&support::rid(&room)).await.expect("the open room takes anyone who knows its id");

    // Restarted without the flag: the open room is closed first, the stranger removed.
    let _op = Operator::start(&s.ns, "matrix", &[]);
    let linked = link_ready(&s).await;
    assert_eq!(linked, room, "the recorded room is the link's room");
    let events = timeline(admin_token.expose(), &room).await;
    assert_eq!(join_rule(&events).as_deref(), Some("invite"), "closed again");
    let after_stranger = events
        .iter()
        .skip_while(|e| !(e["type"] == "m.room.member" && e["state_key"] == stranger_id.as_str()))
        .skip(1)
        .find(|e| e["sender"] == s.operator.as_str())
        .cloned()
        .expect("the restarted operator acted");
    assert_eq!(
        (after_stranger["type"].as_str(), after_stranger["content"]["join_rule"].as_str()),
        (Some("m.room.join_rules"), Some("invite")),
        "the first thing the restarted operator does is close the room: {after_stranger}"
    );
    let mut members = admin.room_members(&support::rid(&room)).await.expect("members");
    members.sort();
    let mut expected: Vec<String> = s.users.iter().map(|u| format!("@{u}:{}", s.server)).collect();
    expected.push(s.operator.clone());
    expected.sort();
    assert_eq!(members, expected, "every listed person in, the stranger out");
    assert!(me.join(&support::rid(&room)).await.is_err(), "the stranger cannot come back");
    assert_eq!(
        admin.resolve_alias(&support::alias(&alias)).await.expect("alias"),
        Some(support::rid(&room)),
        "the alias is out now"
    );
}
