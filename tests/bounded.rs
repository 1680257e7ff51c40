//! Everything bounded: a credentials-Secret watch the API server denies is retried
//! with backoff (not in a spin), and works as soon as the permission is granted.

mod support;

use std::time::Duration;

use exo_matrix_operator::crd::{MatrixUser, MatrixUserSpec};
use kube::Api;
use kube::api::PostParams;
use serde_json::json;
use support::*;

fn role(ns: &str, secret_verbs: &[&str]) -> String {
    json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": "operator", "namespace": ns},
        "rules": [
            {"apiGroups": ["exomatrix.dev"], "resources": ["spaceroomlinks", "matrixusers", "exosources",
                "spaceroomlinks/status", "matrixusers/status", "exosources/status"],
             "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"]},
            {"apiGroups": [""], "resources": ["secrets"], "verbs": secret_verbs},
            {"apiGroups": ["", "events.k8s.io"], "resources": ["events"], "verbs": ["create", "patch"]}]})
    .to_string()
}

#[tokio::test]
async fn a_denied_credentials_watch_backs_off_and_recovers_when_allowed() {
    let p = platform();
    let client = kube_client().await;
    let ns = namespace(&client, "denied").await;
    shared_secret_credentials(&client, &ns).await;
    let binding = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": {"name": "operator", "namespace": ns},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "operator"},
        "subjects": [{"kind": "ServiceAccount", "name": "operator", "namespace": ns}]});
    for manifest in [
        json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "operator", "namespace": ns}})
            .to_string(),
        role(&ns, &["get", "create", "patch", "update"]),
        binding.to_string(),
    ] {
        let (ok, _, err) = p.kubectl_run(&["apply", "-f", "-"], Some(&manifest));
        assert!(ok, "{err}");
    }
    let kubeconfig = service_account_kubeconfig(&ns, "operator");
    // Secrets may be read one by one but not listed or watched: the watch is refused.
    let op = Operator::start_as(&kubeconfig, &ns, "matrix", &[]);
    let window = Duration::from_secs(12);
    tokio::time::sleep(window).await;
    let log = op.log_text();
    let attempts = log.lines().filter(|l| l.contains("watching the credentials Secret")).count();
    assert!(log.contains("forbidden") || log.contains("Forbidden"), "the watch must be denied:\n{log}");
    println!("denied credentials watch: {attempts} attempts in {}s", window.as_secs());
    assert!((1..=12).contains(&attempts), "{attempts} attempts in {window:?}: a spin, or no attempt at all");

    let (ok, _, err) =
        p.kubectl_run(&["apply", "-f", "-"], Some(&role(&ns, &["get", "list", "watch", "create", "patch", "update"])));
    assert!(ok, "{err}");
    let users: Api<MatrixUser> = Api::namespaced(client.clone(), &ns);
    let name = unique("allowed");
    let spec: MatrixUserSpec = serde_json::from_value(json!({"username": name})).expect("spec");
    users.create(&PostParams::default(), &MatrixUser::new(&name, spec)).await.expect("user created");
    eventually("the operator works once allowed", Duration::from_secs(60), || async {
        let u = users.get(&name).await.ok()?;
        condition(serde_json::to_value(&u.status).ok().as_ref(), "Ready").filter(|c| c.0 == "True")
    })
    .await;
}
