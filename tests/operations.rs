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
    let args =
        |id: &'static str| ["--leader-election", "--lease-duration", "3s", "--renew-deadline", "2s", "--identity", id];
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

fn new_user(username: &str) -> MatrixUser {
    serde_json::from_value(json!({"apiVersion": "exomatrix.dev/v1alpha1", "kind": "MatrixUser",
        "metadata": {"name": username}, "spec": {"username": username, "displayName": format!("User {username}")}}))
    .expect("user")
}

fn signal(pid: u32, sig: &str) {
    let ok = std::process::Command::new("kill").args([sig, &pid.to_string()]).status().is_ok_and(|s| s.success());
    assert!(ok, "kill {sig} {pid}");
}

/// The process is in state T (stopped) per /proc: the signal has landed.
fn stopped(pid: u32) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    stat.rsplit_once(')').is_some_and(|(_, rest)| rest.trim_start().starts_with('T'))
}

async fn all_ready(api: &Api<MatrixUser>, names: &[String]) -> usize {
    let list = api.list(&Default::default()).await.map(|l| l.items).unwrap_or_default();
    list.iter()
        .filter(|u| names.contains(&u.metadata.name.clone().unwrap_or_default()))
        .filter(|u| condition(serde_json::to_value(&u.status).ok().as_ref(), "Ready").is_some_and(|c| c.0 == "True"))
        .count()
}

/// Synapse writes (every method but GET) counted in a replica's /metrics.
async fn synapse_writes(port: u16) -> Option<u64> {
    let text = reqwest::get(format!("http://127.0.0.1:{port}/metrics")).await.ok()?.text().await.ok()?;
    Some(
        text.lines()
            .filter(|l| l.starts_with("exomatrix_synapse_calls_total{") && !l.contains("method=\"GET\""))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum(),
    )
}

/// One writer: a leader frozen past its lease (SIGSTOP), replaced by the standby and then
/// resumed (SIGCONT) sends Synapse nothing more, although its watches bring it work.
#[tokio::test]
async fn a_frozen_leader_resumed_after_the_takeover_writes_nothing() {
    let client = kube_client().await;
    let ns = namespace(&client, "fenced").await;
    shared_secret_credentials(&client, &ns).await;
    let api: Api<MatrixUser> = Api::namespaced(client.clone(), &ns);
    let (port1, port2) = (free_port(), free_port());
    let start = |id: &str, port: u16| {
        let addr = format!("127.0.0.1:{port}");
        let args = ["--leader-election", "--lease-duration", "4s", "--renew-deadline", "3s", "--identity", id];
        Operator::start(&ns, "matrix", &[&args[..], &["--metrics-addr", &addr, "--concurrency", "2"]].concat())
    };
    let mut first = start("first", port1);
    eventually("first leads", Duration::from_secs(20), || async {
        first.log_text().contains("became the leader").then_some(())
    })
    .await;
    user_ready(&api, &unique("warm"), Duration::from_secs(30)).await;
    let second = start("second", port2);
    eventually("second stands by", Duration::from_secs(10), || async {
        second.log_text().contains("standing by").then_some(())
    })
    .await;

    // Work in flight when the leader freezes, and more arriving while it is frozen.
    let tag = unique("f").replace('-', "");
    let before: Vec<String> = (0..30).map(|i| format!("a{i:02}{tag}")).collect();
    for name in &before {
        api.create(&PostParams::default(), &new_user(name)).await.expect("user created");
    }
    eventually("the leader at work", Duration::from_secs(30), || async {
        (all_ready(&api, &before).await >= 2).then_some(())
    })
    .await;
    signal(first.pid(), "-STOP");
    eventually("first frozen", Duration::from_secs(5), || async { stopped(first.pid()).then_some(()) }).await;
    let frozen_at = first.log_text().len();
    let ready_at_freeze = all_ready(&api, &before).await;
    let during: Vec<String> = (0..10).map(|i| format!("b{i:02}{tag}")).collect();
    for name in &during {
        api.create(&PostParams::default(), &new_user(name)).await.expect("user created");
    }
    let started = std::time::Instant::now();
    eventually("second takes over", Duration::from_secs(30), || async {
        second.log_text().contains("became the leader").then_some(())
    })
    .await;
    let takeover = started.elapsed();
    let everyone: Vec<String> = before.iter().chain(&during).cloned().collect();
    eventually("every user Ready through the new leader", Duration::from_secs(60), || async {
        (all_ready(&api, &everyone).await == everyone.len()).then_some(())
    })
    .await;

    // More work for both while the old leader wakes up.
    let after: Vec<String> = (0..5).map(|i| format!("c{i:02}{tag}")).collect();
    signal(first.pid(), "-CONT");
    for name in &after {
        api.create(&PostParams::default(), &new_user(name)).await.expect("user created");
    }
    let exit =
        eventually("the old leader stops", Duration::from_secs(20), || std::future::ready(first.exit_status())).await;
    eventually("users made after the resume Ready", Duration::from_secs(30), || async {
        (all_ready(&api, &after).await == after.len()).then_some(())
    })
    .await;

    let log = first.log_text();
    let resumed = log.get(frozen_at..).unwrap_or_default();
    let old_writes = resumed.lines().filter(|l| l.contains("synapse write")).count();
    let refused = resumed.lines().filter(|l| l.contains("not sent") || l.contains("write refused")).count();
    let new_writes = synapse_writes(port2).await.expect("second's /metrics");
    println!(
        "one writer: {ready_at_freeze}/30 users done at the freeze, takeover {:.1}s after it (lease 4s, renew \
         deadline 3s); Synapse writes after the takeover: old leader {old_writes} ({refused} refused log lines), \
         new leader {new_writes}",
        takeover.as_secs_f64()
    );
    assert_eq!(old_writes, 0, "the resumed leader wrote to Synapse:\n{resumed}");
    assert!(new_writes >= during.len() as u64, "the new leader made the accounts created during the freeze");
    assert!(!exit, "a replica that lost its lease exits with an error:\n{resumed}");
    assert!(resumed.contains("cancelling in-flight reconciles"), "{resumed}");
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
