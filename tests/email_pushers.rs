//! New accounts get their email pusher from Synapse itself (the test platform sets `email.enable_notifs` and
//! `notif_for_new_users`): the operator neither logs in as them nor sets a pusher. A reactivated account,
//! which Synapse gives no pusher, still gets one from the operator.

mod support;

use std::time::Duration;

use exo_matrix_operator::crd::MatrixUser;
use exo_matrix_operator::synapse::Synapse;
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use serde_json::json;
use support::*;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("free port")
}

/// The operator's Synapse calls so far to the endpoints whose label contains `endpoint`.
async fn calls_to(port: u16, endpoint: &str) -> u64 {
    let text =
        reqwest::get(format!("http://127.0.0.1:{port}/metrics")).await.expect("metrics").text().await.expect("text");
    text.lines()
        .filter(|l| l.starts_with("exomatrix_synapse_calls_total{") && l.contains(endpoint))
        .map(|l| l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()).expect("a count") as u64)
        .sum()
}

/// The account's email pushers' addresses.
async fn email_pushers(admin: &Synapse, user_id: &str) -> Option<Vec<String>> {
    let pushers = admin.pushers(&support::uid(user_id)).await.ok()?;
    Some(pushers.into_iter().filter(|p| p.kind == "email").map(|p| p.pushkey).collect())
}

#[tokio::test]
async fn new_accounts_get_one_email_pusher_without_a_login_and_a_reactivated_one_gets_it_back() {
    let client = kube_client().await;
    let ns = namespace(&client, "pushers").await;
    shared_secret_credentials(&client, &ns).await;
    let port = free_port();
    let _op = Operator::start(&ns, "matrix", &["--metrics-addr", &format!("127.0.0.1:{port}")]);
    let users: Api<MatrixUser> = Api::namespaced(client.clone(), &ns);
    let admin = synapse_admin().await;
    let server = platform().server_name().to_owned();

    let prefix = unique("p").replace('-', "_");
    let names: Vec<String> = (0..3).map(|i| format!("{prefix}_{i}")).collect();
    for name in &names {
        let user = serde_json::from_value(json!({"apiVersion": "exomatrix.dev/v1alpha1", "kind": "MatrixUser",
            "metadata": {"name": name.replace('_', "-")},
            "spec": {"username": name, "email": format!("{name}@Example.org")}}))
        .expect("user");
        users.create(&PostParams::default(), &user).await.expect("user created");
    }
    for name in &names {
        let user_id = format!("@{name}:{server}");
        let email = format!("{name}@example.org");
        eventually("the account with exactly its one email pusher", Duration::from_secs(60), || async {
            let ready = users.get(&name.replace('_', "-")).await.ok()?.status?.conditions;
            let ready = ready.iter().any(|c| c.type_ == "Ready" && c.status == "True");
            (ready && email_pushers(&admin, &user_id).await? == vec![email.clone()]).then_some(())
        })
        .await;
    }
    assert_eq!(calls_to(port, "/users/{id}/login").await, 0, "no admin login for new accounts");
    assert_eq!(calls_to(port, "/pushers/set").await, 0, "no pusher set for new accounts");

    // Deactivation drops the pusher and Synapse makes none on reactivation: the operator sets it.
    let (name, obj) = (&names[0], names[0].replace('_', "-"));
    let user_id = format!("@{name}:{server}");
    for enabled in [false, true] {
        let patch = Patch::Merge(json!({"spec": {"enabled": enabled}}));
        users.patch(&obj, &PatchParams::default(), &patch).await.expect("patched");
        eventually("the account switched", Duration::from_secs(60), || async {
            let a = admin.get_user(&support::uid(&user_id)).await.ok()??;
            (a.deactivated != enabled).then_some(())
        })
        .await;
    }
    eventually("the reactivated account's email pusher", Duration::from_secs(60), || async {
        (email_pushers(&admin, &user_id).await? == vec![format!("{name}@example.org")]).then_some(())
    })
    .await;
    assert_eq!(calls_to(port, "/pushers/set").await, 1, "one pusher set, for the reactivated account");
}
