//! Operating the operator: leader election between two replicas, health and metrics endpoints.

mod support;

use std::time::Duration;

use exo_matrix_operator::crd::MatrixUser;
use kube::Api;
use kube::api::PostParams;
use serde_json::json;
use support::*;

async fn user_ready(api: &Api<MatrixUser>, username: &str, timeout: Duration) {
    let user = serde_json::from_value(json!({"apiVersion": "exomatrix.dev/v1alpha1", "kind": "MatrixUser",
        "metadata": {"name": username}, "spec": {"username": username}}))
    .expect("user");
    api.create(&PostParams::default(), &user).await.expect("user created");
    eventually(&format!("{username} Ready"), timeout, || async {
        let u = api.get(username).await.ok()?;
        condition(serde_json::to_value(&u.status).ok().as_ref(), "Ready").filter(|c| c.0 == "True")
    })
    .await;
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("free port")
}

#[tokio::test]
async fn a_standby_replica_takes_over_when_the_leader_dies() {
    let client = kube_client().await;
    let ns = namespace(&client, "leader").await;
    shared_secret_credentials(&client, &ns).await;
    let api: Api<MatrixUser> = Api::namespaced(client.clone(), &ns);
    let args = |id: &'static str| ["--leader-election", "--lease-duration", "3s", "--identity", id];
    let first = Operator::start(&ns, "matrix", &args("first"));
    eventually("first leads", Duration::from_secs(20), || async {
        first.log_text().contains("became the leader").then_some(())
    })
    .await;
    let second = Operator::start(&ns, "matrix", &args("second"));
    user_ready(&api, &unique("one"), Duration::from_secs(30)).await;
    eventually("second stands by", Duration::from_secs(10), || async {
        second.log_text().contains("standing by").then_some(())
    })
    .await;
    assert!(!second.log_text().contains("reconcile"), "a standby must not reconcile:\n{}", second.log_text());

    let _ = std::process::Command::new("kill").args(["-9", &first.pid().to_string()]).status();
    let started = std::time::Instant::now();
    eventually("second takes over", Duration::from_secs(20), || async {
        second.log_text().contains("became the leader").then_some(())
    })
    .await;
    println!("takeover after {:.1}s (lease 3s)", started.elapsed().as_secs_f64());
    user_ready(&api, &unique("two"), Duration::from_secs(30)).await;
}

#[tokio::test]
async fn health_readiness_and_metrics_are_served() {
    let client = kube_client().await;
    let ns = namespace(&client, "probes").await;
    shared_secret_credentials(&client, &ns).await;
    let port = free_port();
    let _op = Operator::start(&ns, "matrix", &["--metrics-addr", &format!("127.0.0.1:{port}")]);
    let api: Api<MatrixUser> = Api::namespaced(client.clone(), &ns);
    user_ready(&api, &unique("probe"), Duration::from_secs(30)).await;

    let get = |path: &'static str| async move {
        let resp = reqwest::get(format!("http://127.0.0.1:{port}{path}")).await.ok()?;
        Some((resp.status().as_u16(), resp.text().await.ok()?))
    };
    let (status, _) = eventually("/healthz", Duration::from_secs(10), || get("/healthz")).await;
    assert_eq!(status, 200);
    let (status, body) = get("/readyz").await.expect("/readyz answers");
    assert_eq!((status, body.as_str()), (200, "ready"));
    let (status, metrics) = get("/metrics").await.expect("/metrics answers");
    assert_eq!(status, 200);
    for needle in [
        "exomatrix_reconciles_total{controller=\"user\"}",
        "exomatrix_synapse_calls_total{",
        "endpoint=\"/_synapse/admin/v2/users/{id}\"",
        "exomatrix_synapse_request_seconds_bucket{",
        "exomatrix_objects{kind=\"MatrixUser\",ready=\"true\"} 1",
        "exomatrix_reconciles_in_flight{controller=\"user\"}",
    ] {
        assert!(metrics.contains(needle), "{needle} missing from:\n{metrics}");
    }
}
