//! Synapse stopped while the operator runs: a condition, then convergence.
//! In its own test binary because it stops the shared Synapse.

mod support;

use std::time::Duration;

use exo_matrix_operator::crd::{MatrixUser, MatrixUserSpec};
use kube::Api;
use kube::api::PostParams;
use support::*;

fn user(username: &str) -> MatrixUser {
    let spec: MatrixUserSpec = serde_json::from_value(serde_json::json!({"username": username})).expect("spec");
    MatrixUser::new(username, spec)
}

async fn ready(api: &Api<MatrixUser>, name: &str, status: &str, timeout: Duration) -> (String, String) {
    eventually(&format!("{name} Ready={status}"), timeout, || async {
        let u = api.get(name).await.ok()?;
        let (st, reason, message) = condition(serde_json::to_value(&u.status).ok().as_ref(), "Ready")?;
        (st == status).then_some((reason, message))
    })
    .await
}

fn synapse_pid() -> String {
    let path = repo_root().join("target/platform/synapse.pid");
    std::fs::read_to_string(path).expect("Synapse pid file").trim().to_owned()
}

#[tokio::test]
async fn synapse_down_is_a_condition_and_everything_converges_when_it_is_back() {
    let client = kube_client().await;
    let ns = namespace(&client, "outage").await;
    shared_secret_credentials(&client, &ns).await;
    let api: Api<MatrixUser> = Api::namespaced(client.clone(), &ns);
    let op = Operator::start(&ns, "matrix", &["--resync", "2s"]);
    let before = unique("before");
    api.create(&PostParams::default(), &user(&before)).await.expect("created");
    ready(&api, &before, "True", Duration::from_secs(30)).await;

    let status = std::process::Command::new("kill").arg(synapse_pid()).status().expect("kill runs");
    assert!(status.success());
    let during = unique("during");
    api.create(&PostParams::default(), &user(&during)).await.expect("created");
    let (reason, message) = ready(&api, &during, "False", Duration::from_secs(30)).await;
    assert_eq!(reason, "SynapseUnavailable", "{message}");
    assert!(message.contains("cannot reach Synapse"), "{message}");
    // The resync of an existing account reports the outage too, and deletes nothing.
    let (reason, _) = ready(&api, &before, "False", Duration::from_secs(30)).await;
    assert_eq!(reason, "SynapseUnavailable");

    let up = std::process::Command::new(repo_root().join("tests/platform.sh")).arg("up").status().expect("platform.sh");
    assert!(up.success(), "Synapse restarted");
    // Failed reconciles back off exponentially (at most ~1 min apart for a transient failure).
    for name in [&before, &during] {
        ready(&api, name, "True", Duration::from_secs(120)).await;
    }
    let admin = synapse_admin().await;
    let user_id = format!("@{during}:{}", platform().server_name());
    let account =
        admin.get_user(&support::uid(&user_id)).await.expect("synapse").expect("account made after the outage");
    assert!(!account.deactivated);
    assert!(!op.log_text().contains("panicked"), "{}", op.log_text());
}
