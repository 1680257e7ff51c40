//! A new MatrixUser costs one reconcile pass (the pass that adds the finalizer does the work; the finalizer's
//! own watch event starts none), deletion still cleans up, an object deleted before it got our finalizer is left
//! alone, and a finalizer stripped by hand comes back at the next resync.

mod support;

use std::time::Duration;

use exo_matrix_operator::crd::MatrixUser;
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;
use support::*;

const FINALIZER: &str = "exomatrix.dev/account";
const WAIT: Duration = Duration::from_secs(30);

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("free port")
}

/// The operator's `exomatrix_reconciles_total{controller="user"}`.
async fn user_passes(port: u16) -> u64 {
    let text =
        reqwest::get(format!("http://127.0.0.1:{port}/metrics")).await.expect("metrics").text().await.expect("text");
    let line = text.lines().find(|l| l.starts_with("exomatrix_reconciles_total{controller=\"user\"}"));
    line.and_then(|l| l.rsplit(' ').next()).and_then(|v| v.parse::<f64>().ok()).map_or(0, |n| n as u64)
}

async fn create(api: &Api<MatrixUser>, name: &str, username: &str, finalizers: &[&str]) {
    let mut user = MatrixUser::new(name, user_spec(username));
    user.metadata.finalizers = (!finalizers.is_empty()).then(|| finalizers.iter().map(|f| f.to_string()).collect());
    api.create(&PostParams::default(), &user).await.expect("MatrixUser created");
}

/// Waits until `name` is Ready for its generation and shows our finalizer; returns its user id.
async fn ready(api: &Api<MatrixUser>, name: &str) -> String {
    eventually(&format!("{name} Ready with the finalizer"), WAIT, || async {
        let u = api.get(name).await.ok()?;
        let st = serde_json::to_value(&u.status).ok()?;
        let (ready, _, _) = condition(Some(&st), "Ready")?;
        let current = u.status.as_ref()?.observed_generation == u.metadata.generation;
        let ours = u.metadata.finalizers.as_ref()?.iter().any(|f| f == FINALIZER);
        (ready == "True" && current && ours).then_some(())?;
        u.status?.user_id
    })
    .await
}

async fn gone(api: &Api<MatrixUser>, name: &str) {
    eventually(&format!("{name} removed"), WAIT, || async { api.get_opt(name).await.ok()?.is_none().then_some(()) })
        .await;
}

#[tokio::test]
async fn a_new_matrix_user_costs_one_pass_and_deleting_it_still_cleans_up() {
    let client = kube_client().await;
    let ns = namespace(&client, "onepass").await;
    shared_secret_credentials(&client, &ns).await;
    let api: Api<MatrixUser> = Api::namespaced(client.clone(), &ns);
    let admin = synapse_admin().await;
    let prefix = unique("p").replace('-', "_");

    // Deleted before the operator ever saw it, held by someone else's finalizer: ours is never added, no
    // account is made, and the object goes once the other finalizer is removed.
    let early = format!("{prefix}_early");
    create(&api, "early", &early, &["tests.exomatrix.dev/hold"]).await;
    api.delete("early", &DeleteParams::default()).await.expect("deleted");

    let port = free_port();
    let _op = Operator::start(&ns, "matrix", &["--resync", "1h", "--metrics-addr", &format!("127.0.0.1:{port}")]);
    // A first user, so the session and the caches are up and the passes counted next cannot be retries.
    create(&api, "warm", &format!("{prefix}_warm"), &[]).await;
    ready(&api, "warm").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = user_passes(port).await;

    let names = ["ann", "bob", "cid"];
    for name in names {
        create(&api, name, &format!("{prefix}_{name}"), &[]).await;
    }
    let mut ids = Vec::new();
    for name in names {
        ids.push(ready(&api, name).await);
    }
    // Room for a second pass, had the finalizer's event started one.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let passes = user_passes(port).await - before;
    assert_eq!(passes, names.len() as u64, "{passes} passes for {} new MatrixUsers", names.len());

    let held = api.get("early").await.expect("still held by the other finalizer");
    assert_eq!(held.metadata.finalizers, Some(vec!["tests.exomatrix.dev/hold".to_owned()]), "ours never added");
    let server = platform().server_name().to_owned();
    let early_id = format!("@{early}:{server}");
    assert!(admin.get_user(&uid(&early_id)).await.expect("Synapse answers").is_none(), "no account for it");
    api.patch("early", &PatchParams::default(), &Patch::Merge(json!({"metadata": {"finalizers": null}})))
        .await
        .expect("hold released");
    gone(&api, "early").await;

    // Deletion still runs the cleanup (the default policy deactivates) before the object goes.
    api.delete("bob", &DeleteParams::default()).await.expect("deleted");
    gone(&api, "bob").await;
    let bob = admin.get_user(&uid(&ids[1])).await.expect("Synapse answers").expect("account kept");
    assert!(bob.deactivated, "bob's account deactivated by the cleanup");
}

#[tokio::test]
async fn a_finalizer_stripped_by_hand_comes_back_at_the_next_resync() {
    let client = kube_client().await;
    let ns = namespace(&client, "strip").await;
    shared_secret_credentials(&client, &ns).await;
    let api: Api<MatrixUser> = Api::namespaced(client.clone(), &ns);
    let admin = synapse_admin().await;
    let _op = Operator::start(&ns, "matrix", &["--resync", "2s"]);
    create(&api, "dee", &unique("strip").replace('-', "_"), &[]).await;
    let id = ready(&api, "dee").await;

    api.patch("dee", &PatchParams::default(), &Patch::Merge(json!({"metadata": {"finalizers": null}})))
        .await
        .expect("finalizer stripped");
    eventually("the finalizer back", Duration::from_secs(10), || async {
        let u = api.get("dee").await.ok()?;
        u.metadata.finalizers?.iter().any(|f| f == FINALIZER).then_some(())
    })
    .await;
    api.delete("dee", &DeleteParams::default()).await.expect("deleted");
    gone(&api, "dee").await;
    let account = admin.get_user(&uid(&id)).await.expect("Synapse answers").expect("account kept");
    assert!(account.deactivated, "the cleanup ran: the account is deactivated");
}
