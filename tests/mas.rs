//! The operator in MAS mode: a real Synapse delegating authentication to the
//! fake MAS (written from the contract and MAS's OpenAPI document), the real
//! kube-apiserver, the operator binary.

mod support;

use std::time::Duration;

use exo_matrix_operator::crd::{MatrixUser, SecretKeyRef, SpaceRoomLink, UserDeletionPolicy};
use exo_matrix_operator::synapse::Synapse;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::json;
use support::mas::MasPlatform;
use support::*;

// Generous: each test runs its own Synapse, and they run side by side on small machines.
const WAIT: Duration = Duration::from_secs(90);

struct Setup {
    pair: MasPlatform,
    client: Client,
    ns: String,
    users: Api<MatrixUser>,
    admin: Synapse,
}

async fn setup(prefix: &str) -> Setup {
    let pair = MasPlatform::start().await;
    let client = kube_client().await;
    let ns = namespace(&client, prefix).await;
    let creds = pair.credentials();
    let pairs: Vec<(&str, &str)> = creds.iter().map(|(k, v)| (*k, v.as_str())).collect();
    credentials_secret(&client, &ns, "matrix", &pairs).await;
    let admin = pair.synapse_admin().await;
    Setup { users: Api::namespaced(client.clone(), &ns), pair, client, ns, admin }
}

/// Waits for the Ready condition to have `status` at the current generation; returns (reason, message).
async fn ready(api: &Api<MatrixUser>, name: &str, status: &str) -> (String, String) {
    eventually(&format!("{name} Ready={status}"), WAIT, || async {
        let u = api.get(name).await.ok()?;
        let s = serde_json::to_value(&u.status).ok()?;
        let (st, reason, message) = condition(Some(&s), "Ready")?;
        let current = u.status.as_ref()?.observed_generation == u.metadata.generation;
        (st == status && current).then_some((reason, message))
    })
    .await
}

async fn patch(api: &Api<MatrixUser>, name: &str, spec: serde_json::Value) {
    api.patch(name, &PatchParams::default(), &Patch::Merge(json!({ "spec": spec }))).await.expect("patched");
}

/// The requests the delegating Synapse saw to endpoints MAS mode must never call.
fn forbidden_calls(log: &str) -> Vec<&str> {
    log.lines()
        .filter(|l| {
            l.contains("\"POST /_synapse/admin/v1/register")
                || (l.contains("/_synapse/admin/v1/users/") && l.contains("/login"))
                || (l.contains("\"PUT /_synapse/admin/v2/users/") && l.contains(" 403 "))
        })
        .collect()
}

#[tokio::test]
async fn accounts_are_made_in_mas_with_profile_email_and_pusher_and_renamed() {
    let s = setup("mas-create").await;
    let op = Operator::start(&s.ns, "matrix", &[]);
    let name = unique("ann");
    s.users.create(&PostParams::default(), &MatrixUser::new("ann", user_spec(&name))).await.expect("created");
    let (_, message) = ready(&s.users, "ann", "True").await;
    assert!(message.contains("MAS"), "the condition says which mode: {message}");

    let (mas_id, account) = s.pair.mas.user_by_name(&name).expect("the account lives in MAS");
    assert!(!account.admin && !account.locked && !account.deactivated);
    assert_eq!(s.pair.mas.emails_of(&mas_id), vec![format!("{name}@example.org")]);
    let user_id = format!("@{name}:exo.test");
    let synapse_account = s.admin.get_user(&support::uid(&user_id)).await.expect("answers").expect("in Synapse");
    assert_eq!(synapse_account.displayname, Some(format!("{name} Display")));
    eventually("the email pusher", WAIT, || async {
        let pushers = s.admin.pushers(&support::uid(&user_id)).await.ok()?;
        pushers.iter().any(|p| p.kind == "email" && p.pushkey == format!("{name}@example.org")).then_some(())
    })
    .await;
    // The helper session that set the pusher is revoked right after: no token left behind.
    eventually("the helper session revoked", WAIT, || async {
        s.pair.mas.active_sessions_of(&mas_id).is_empty().then_some(())
    })
    .await;

    patch(&s.users, "ann", json!({"displayName": "Ann Renamed", "email": "ann.new@example.org", "admin": true})).await;
    eventually("renamed in Synapse", WAIT, || async {
        let a = s.admin.get_user(&support::uid(&user_id)).await.ok()??;
        (a.displayname.as_deref() == Some("Ann Renamed")).then_some(())
    })
    .await;
    eventually("email and admin flag changed in MAS", WAIT, || async {
        let (_, u) = s.pair.mas.user_by_name(&name)?;
        (u.admin && s.pair.mas.emails_of(&mas_id) == vec!["ann.new@example.org".to_owned()]).then_some(())
    })
    .await;

    let log = op.log_text();
    assert!(log.contains("delegates authentication to MAS"), "the log says which mode");
    // The operator's own account: an admin in MAS with exactly one session of its own.
    let (op_id, op_account) = s.pair.mas.user_by_name(&format!("op-{}", s.ns)).expect("operator account in MAS");
    assert!(op_account.admin);
    assert_eq!(s.pair.mas.active_sessions_of(&op_id).len(), 1);
    let stored = Api::<Secret>::namespaced(s.client.clone(), &s.ns).get("matrix-operator-token").await.expect("stored");
    assert!(stored.data.expect("data").contains_key("personalSessionId"));
    assert_eq!(forbidden_calls(&s.pair.synapse.log()), Vec::<&str>::new());
}

#[tokio::test]
async fn disable_enable_and_the_three_deletion_policies_go_through_mas() {
    let s = setup("mas-life").await;
    let _op = Operator::start(&s.ns, "matrix", &[]);
    let mut names = Vec::new();
    for (object, policy) in [
        ("keep", UserDeletionPolicy::Retain),
        ("off", UserDeletionPolicy::Deactivate),
        ("gone", UserDeletionPolicy::Erase),
    ] {
        let name = unique(object);
        let mut sp = user_spec(&name);
        sp.deletion_policy = policy;
        s.users.create(&PostParams::default(), &MatrixUser::new(object, sp)).await.expect("created");
        names.push(name);
    }
    for object in ["keep", "off", "gone"] {
        ready(&s.users, object, "True").await;
    }

    // Disable → deactivated in MAS without erasure; enable → back, unlocked, pusher again.
    let off_id = format!("@{}:exo.test", names[1]);
    patch(&s.users, "off", json!({"enabled": false})).await;
    let (reason, _) = ready(&s.users, "off", "True").await;
    assert_eq!(reason, "Disabled");
    eventually("deactivated in Synapse", WAIT, || async {
        s.admin.get_user(&support::uid(&off_id)).await.ok()??.deactivated.then_some(())
    })
    .await;
    let (_, u) = s.pair.mas.user_by_name(&names[1]).expect("in MAS");
    assert!(u.locked);
    assert!(
        s.pair.mas.edit(|st| st.jobs_done.iter().any(|j| matches!(j, support::mas::Job::Delete { erase: false, .. }))),
        "disabling must not erase"
    );
    patch(&s.users, "off", json!({"enabled": true})).await;
    eventually("reactivated, unlocked, pusher back", WAIT, || async {
        let (_, u) = s.pair.mas.user_by_name(&names[1])?;
        let a = s.admin.get_user(&support::uid(&off_id)).await.ok()??;
        let pushers = s.admin.pushers(&support::uid(&off_id)).await.ok()?;
        (!u.locked && !u.deactivated && !a.deactivated && !pushers.is_empty()).then_some(())
    })
    .await;

    for object in ["keep", "off", "gone"] {
        s.users.delete(object, &DeleteParams::default()).await.expect("deleted");
    }
    for object in ["keep", "off", "gone"] {
        eventually(&format!("{object} removed"), WAIT, || async {
            s.users.get_opt(object).await.ok()?.is_none().then_some(())
        })
        .await;
    }
    let erased = |name: &str| {
        let localpart = name.to_owned();
        s.pair.mas.edit(move |st| {
            st.jobs_done.iter().find_map(|j| match j {
                support::mas::Job::Delete { localpart: l, erase, .. } if *l == localpart => Some(*erase),
                _ => None,
            })
        })
    };
    eventually("deletions carried to Synapse", WAIT, || async {
        (erased(&names[2]).is_some() && s.pair.mas.user_by_name(&names[1]).is_some_and(|(_, u)| u.deactivated))
            .then_some(())
    })
    .await;
    let (_, keep) = s.pair.mas.user_by_name(&names[0]).expect("kept");
    assert!(!keep.deactivated && !keep.locked, "Retain keeps the account");
    assert_eq!(erased(&names[0]), None);
    assert_eq!(erased(&names[2]), Some(true), "Erase erases");
    let gone =
        s.admin.get_user(&support::uid(format!("@{}:exo.test", names[2]))).await.expect("answers").expect("exists");
    assert!(gone.deactivated);
    assert!(
        !s.pair
            .mas
            .edit(|st| st.jobs_done.iter().any(
                |j| matches!(j, support::mas::Job::Delete { localpart, erase: true, .. } if *localpart == names[1])
            )),
        "Deactivate must not erase"
    );
    assert_eq!(forbidden_calls(&s.pair.synapse.log()), Vec::<&str>::new());
}

#[tokio::test]
async fn a_password_from_a_secret_is_set_in_mas() {
    let s = setup("mas-pw").await;
    let _op = Operator::start(&s.ns, "matrix", &[]);
    credentials_secret(&s.client, &s.ns, "pw", &[("password", "correct horse battery")]).await;
    let name = unique("pat");
    let mut sp = user_spec(&name);
    sp.password_secret_ref = Some(SecretKeyRef { name: "pw".into(), key: "password".into() });
    s.users.create(&PostParams::default(), &MatrixUser::new("pat", sp)).await.expect("created");
    ready(&s.users, "pat", "True").await;
    let (_, u) = s.pair.mas.user_by_name(&name).expect("in MAS");
    assert_eq!(u.password.as_deref(), Some("correct horse battery"));
}

#[tokio::test]
async fn a_revoked_session_is_replaced_and_the_old_one_stays_revoked() {
    let mut s = setup("mas-heal").await;
    let _op = Operator::start(&s.ns, "matrix", &[]);
    s.users.create(&PostParams::default(), &MatrixUser::new("one", user_spec(&unique("one")))).await.expect("created");
    ready(&s.users, "one", "True").await;
    let (op_id, _) = s.pair.mas.user_by_name(&format!("op-{}", s.ns)).expect("operator account");
    let before = s.pair.mas.active_sessions_of(&op_id);
    assert_eq!(before.len(), 1);
    // Revoked in MAS; a Synapse restart drops its 2-minute introspection cache, so it refuses the token at once.
    s.pair.mas.edit(|st| st.sessions.values_mut().for_each(|x| x.revoked = x.actor == op_id || x.revoked));
    s.pair.synapse.restart().await;
    s.users.create(&PostParams::default(), &MatrixUser::new("two", user_spec(&unique("two")))).await.expect("created");
    ready(&s.users, "two", "True").await;
    // Found revoked at the operator's next Synapse call (here: whether MAS copied two's email), then replaced.
    let after = eventually("a new session", WAIT, || async {
        let after = s.pair.mas.active_sessions_of(&op_id);
        (!after.is_empty()).then_some(after)
    })
    .await;
    assert_eq!(after.len(), 1, "one working session, the revoked one not revived");
    assert_ne!(after[0].token, before[0].token);
}

#[tokio::test]
async fn missing_or_wrong_mas_credentials_are_a_clear_condition() {
    let s = setup("mas-creds").await;
    // A classic-style Secret against a delegating Synapse.
    let secrets: Api<Secret> = Api::namespaced(s.client.clone(), &s.ns);
    secrets.delete("matrix", &DeleteParams::default()).await.expect("deleted");
    let url = s.pair.synapse.url.clone();
    credentials_secret(&s.client, &s.ns, "matrix", &[("serverUrl", &url), ("sharedSecret", "whatever")]).await;
    let op = Operator::start(&s.ns, "matrix", &[]);
    s.users.create(&PostParams::default(), &MatrixUser::new("amy", user_spec(&unique("amy")))).await.expect("created");
    // While the session is still connecting the condition says so; then it names the missing keys.
    let (reason, message) = eventually("the MAS keys named", WAIT, || async {
        let u = s.users.get("amy").await.ok()?;
        let st = serde_json::to_value(&u.status).ok()?;
        let (status, reason, message) = condition(Some(&st), "Ready")?;
        (status == "False" && message.contains("delegates authentication to MAS")).then_some((reason, message))
    })
    .await;
    assert_eq!(reason, "CredentialsUnavailable");
    for key in ["masUrl", "masClientId", "masClientSecret", "delegates authentication to MAS"] {
        assert!(message.contains(key), "{key} missing from: {message}");
    }
    // Not retried in a loop: one attempt per Secret version.
    tokio::time::sleep(Duration::from_secs(12)).await;
    let attempts = op.log_text().matches("no usable Synapse session").count();
    assert_eq!(attempts, 1, "{}", op.log_text());

    let mas = &s.pair.mas.url;
    let wrong = [("serverUrl", url.as_str()), ("masUrl", mas), ("masClientId", support::mas::CLIENT_ID)];
    let mut wrong = wrong.to_vec();
    wrong.push(("masClientSecret", "wrong"));
    credentials_secret(&s.client, &s.ns, "matrix", &wrong).await;
    eventually("the refused client named", WAIT, || async {
        let u = s.users.get("amy").await.ok()?;
        let st = serde_json::to_value(&u.status).ok()?;
        let (_, _, message) = condition(Some(&st), "Ready")?;
        message.contains("masClientSecret").then_some(())
    })
    .await;

    let fixed: Vec<(&str, String)> = s.pair.credentials();
    let fixed: Vec<(&str, &str)> = fixed.iter().map(|(k, v)| (*k, v.as_str())).collect();
    credentials_secret(&s.client, &s.ns, "matrix", &fixed).await;
    ready(&s.users, "amy", "True").await;
}

#[tokio::test]
async fn mas_unreachable_is_a_condition_and_nobody_is_kicked() {
    let s = setup("mas-down").await;
    let _op = Operator::start(&s.ns, "matrix", &["--resync", "3s"]);
    let names: Vec<String> = ["a", "b", "c"].iter().map(|n| unique(n)).collect();
    for (object, name) in ["a", "b", "c"].iter().zip(&names) {
        s.users.create(&PostParams::default(), &MatrixUser::new(object, user_spec(name))).await.expect("created");
    }
    let links: Api<SpaceRoomLink> = Api::namespaced(s.client.clone(), &s.ns);
    let link_spec = serde_json::from_value(json!({
        "spaceGroupId": unique("team").replace('-', "_"), "create": true, "displayName": "Team",
        "members": names, "managers": [names[0].clone()],
    }))
    .expect("spec");
    links.create(&PostParams::default(), &SpaceRoomLink::new("team", link_spec)).await.expect("link");
    let room = eventually("all three joined", WAIT, || async {
        let l = links.get("team").await.ok()?;
        let room = l.status?.room_id?;
        let members = s.admin.room_members(&support::rid(&room)).await.ok()?;
        names.iter().all(|n| members.contains(&support::uid(format!("@{n}:exo.test")))).then_some(room)
    })
    .await;

    s.pair.mas.set_reachable(false);
    patch(&s.users, "b", json!({"displayName": "B while MAS is down"})).await;
    let (reason, message) = ready(&s.users, "b", "False").await;
    assert_eq!(reason, "MasUnavailable", "{message}");
    // Several resyncs of links and users while MAS is away: nobody leaves the room, nothing is deactivated.
    tokio::time::sleep(Duration::from_secs(10)).await;
    let members = s.admin.room_members(&support::rid(&room)).await.expect("members");
    for n in &names {
        assert!(members.contains(&support::uid(format!("@{n}:exo.test"))), "{n} was kicked: {members:?}");
        assert!(
            !s.admin
                .get_user(&support::uid(format!("@{n}:exo.test")))
                .await
                .expect("answers")
                .expect("exists")
                .deactivated
        );
    }
    s.pair.mas.set_reachable(true);
    ready(&s.users, "b", "True").await;
}
