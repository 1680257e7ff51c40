//! Membership follows intent, never health: a room of three people with a
//! manager, in `Enforce` and `Invite` mode, keeps everyone and every power
//! level while one fault at a time makes accounts fail. Checked in Synapse
//! before, during and after each fault. (Synapse outages: `membership_outage.rs`.)

mod support;

use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use serde_json::json;
use support::http::{Files, png, serve};
use support::team::{MANAGER, PEOPLE, Team};
use support::*;

const DURING: Duration = Duration::from_secs(8);
const AFTER: Duration = Duration::from_secs(4);

fn start(team: &Team) -> Operator {
    Operator::start(&team.ns, "matrix", &["--resync", "2s"])
}

/// A loopback port nobody listens on: an avatar host that is down.
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

#[tokio::test]
async fn a_missing_password_secret_removes_nobody() {
    let mut team = Team::new("mf-secret", platform().synapse_url()).await;
    let op = start(&team);
    team.populate(json!({})).await;
    let before = team.snapshot().await;

    // A member and the manager now name a password Secret that does not exist yet.
    for short in ["ann", MANAGER] {
        team.patch_user(short, json!({"spec": {"passwordSecretRef": {"name": "not-yet"}}})).await;
    }
    for short in ["ann", MANAGER] {
        let (_, message) = team.user_ready(short, "False").await;
        assert!(message.contains("not found"), "{message}");
    }
    team.unchanged_for(&before, DURING, "while the password Secret is missing").await;
    team.ids_kept().await;

    let p = std::collections::BTreeMap::from([("password".to_owned(), "a-long-password-1".to_owned())]);
    let secret = Secret {
        metadata: kube::api::ObjectMeta { name: Some("not-yet".into()), ..Default::default() },
        string_data: Some(p),
        ..Default::default()
    };
    Api::<Secret>::namespaced(team.client.clone(), &team.ns)
        .create(&Default::default(), &secret)
        .await
        .expect("Secret created");
    for short in ["ann", MANAGER] {
        // Password Secrets are not watched: a touch wakes the account instead of its retry timer.
        team.patch_user(short, json!({"metadata": {"annotations": {"test/touch": "1"}}})).await;
        team.user_ready(short, "True").await;
    }
    team.unchanged_for(&before, AFTER, "after the Secret arrived").await;
    assert!(!op.log_text().contains("panicked"));
}

#[tokio::test]
async fn an_avatar_host_that_is_down_removes_nobody() {
    let files = Files::default();
    files.set("/a.png", "image/png", &png(7));
    let base = serve(files).await;
    let mut team = Team::new("mf-avahost", platform().synapse_url()).await;
    let _op = start(&team);
    team.populate(json!({"avatarUrl": format!("{base}/a.png")})).await;
    let before = team.snapshot().await;

    let down = format!("http://127.0.0.1:{}/a.png", closed_port());
    for short in PEOPLE {
        team.patch_user(short, json!({"spec": {"avatarUrl": down}})).await;
    }
    for short in PEOPLE {
        let message = team.user_condition(short, "AvatarSynced", "False").await;
        assert!(message.contains("cannot download"), "{message}");
    }
    team.unchanged_for(&before, DURING, "while the avatar host is down").await;
    team.ids_kept().await;
}

#[tokio::test]
async fn an_avatar_upload_synapse_refuses_removes_nobody() {
    // Only the upload call is refused; everything else reaches the real Synapse.
    let stub = support::proxy::refusing_uploads(platform().synapse_url()).await;
    let mut team = Team::new("mf-upload", &stub).await;
    let _op = start(&team);
    team.populate(json!({})).await;
    let before = team.snapshot().await;

    let files = Files::default();
    files.set("/b.png", "image/png", &png(9));
    let base = serve(files).await;
    for short in ["ann", MANAGER] {
        team.patch_user(short, json!({"spec": {"avatarUrl": format!("{base}/b.png")}})).await;
    }
    for short in ["ann", MANAGER] {
        let message = team.user_condition(short, "AvatarSynced", "False").await;
        assert!(message.contains("refused") && message.contains("M_TOO_LARGE"), "{message}");
    }
    team.unchanged_for(&before, DURING, "while Synapse refuses the avatars").await;
    // A picture Synapse will not take is the picture's problem: the account itself is in sync.
    for short in ["ann", MANAGER] {
        team.user_ready(short, "True").await;
    }
    team.ids_kept().await;
}

#[tokio::test]
async fn a_revoked_operator_session_removes_nobody() {
    let mut team = Team::new("mf-revoke", platform().synapse_url()).await;
    let op = start(&team);
    team.populate(json!({})).await;
    let before = team.snapshot().await;

    let secrets: Api<Secret> = Api::namespaced(team.client.clone(), &team.ns);
    let stored = || async {
        let s = secrets.get("matrix-operator-token").await.expect("token Secret");
        String::from_utf8(s.data.expect("data")["accessToken"].0.clone()).expect("utf-8")
    };
    let token = stored().await;
    let resp = reqwest::Client::new()
        .post(format!("{}/_matrix/client/v3/logout", platform().synapse_url()))
        .bearer_auth(&token)
        .json(&json!({}))
        .send()
        .await
        .expect("logout");
    assert!(resp.status().is_success(), "{}", resp.status());

    team.unchanged_for(&before, DURING, "after the session was revoked").await;
    eventually("a new session", Duration::from_secs(30), || async { (stored().await != token).then_some(()) }).await;
    for short in PEOPLE {
        team.user_ready(short, "True").await;
    }
    team.unchanged_for(&before, AFTER, "with the new session").await;
    team.ids_kept().await;
    assert!(op.log_text().contains("establishing a new session"), "{}", op.log_text());
}

#[tokio::test]
async fn a_deleted_matrix_user_leaves_its_rooms_even_when_its_account_is_retained() {
    let mut team = Team::new("mf-delete", platform().synapse_url()).await;
    let _op = start(&team);
    team.populate(json!({"deletionPolicy": "Retain"})).await;
    team.users.delete(&team.username("ann"), &Default::default()).await.expect("deleted");
    let ann = team.id("ann");
    let snap = eventually("ann removed from both rooms", Duration::from_secs(30), || async {
        let snap = team.try_snapshot().await?;
        let gone = |mode: &str| snap.get(&(mode.to_owned(), ann.clone())).is_some_and(|m| m.0 == "leave");
        (gone("Enforce") && gone("Invite")).then_some(snap)
    })
    .await;
    // The account itself is retained, and the others stay.
    let account = synapse_admin().await.get_user(&support::uid(&ann)).await.expect("synapse").expect("account");
    assert!(!account.deactivated);
    for short in ["bob", "cat"] {
        assert_eq!(snap[&("Enforce".to_owned(), team.id(short))].0, "join");
    }
}
