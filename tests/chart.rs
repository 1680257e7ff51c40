//! The Helm chart at the repo root, checked with the real helm CLI.

mod support;

use std::process::Command;

use support::{platform, repo_root};

fn helm(args: &[&str]) -> (bool, String) {
    let out = Command::new(platform().helm()).args(args).current_dir(repo_root()).output().expect("helm runs");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

#[test]
fn chart_lints_and_renders_the_operator() {
    let (ok, out) = helm(&["lint", "--strict", ".", "--set", "matrix.credentials.sharedSecret=s3cret"]);
    assert!(ok, "{out}");
    let (ok, out) = helm(&[
        "template",
        "demo",
        ".",
        "--namespace",
        "matrix",
        "--set",
        "matrix.homeserverUrl=http://synapse:8008",
        "--set",
        "matrix.credentials.sharedSecret=s3cret",
    ]);
    assert!(ok, "{out}");
    assert!(out.contains("--credentials-secret=matrix/demo-exo-matrix-operator-credentials"), "{out}");
    assert!(out.contains("--homeserver-url=http://synapse:8008"), "{out}");
    assert!(out.contains("sharedSecret: \"s3cret\""), "the chart writes the Secret from values: {out}");
    for expected in
        ["path: /healthz", "path: /readyz", "--leader-election", "readOnlyRootFilesystem: true", "runAsNonRoot: true"]
    {
        assert!(out.contains(expected), "{expected} missing: {out}");
    }
    // An existing Secret is used as it is, and no Secret is rendered.
    let (ok, out) = helm(&["template", "demo", ".", "--namespace", "matrix", "--set", "matrix.existingSecret=creds"]);
    assert!(ok, "{out}");
    assert!(out.contains("--credentials-secret=matrix/creds") && !out.contains("kind: Secret"), "{out}");
}

#[test]
fn chart_lints_and_renders_on_default_values() {
    // GitOps tools and chart-testing render before anything exists: no value is required.
    let (ok, out) = helm(&["lint", "--strict", "."]);
    assert!(ok, "{out}");
    let (ok, out) = helm(&["template", "."]);
    assert!(ok, "{out}");
    let (ok, out) = helm(&["template", "demo", ".", "--namespace", "matrix"]);
    assert!(ok, "{out}");
    // The operator reads the conventional Secret, which the chart does not write without a credential.
    assert!(out.contains("--credentials-secret=matrix/demo-exo-matrix-operator-credentials"), "{out}");
    assert!(!out.contains("kind: Secret"), "{out}");
    // The notes say the Secret is missing and how to make it.
    let (ok, out) = helm(&["install", "--dry-run=client", "demo", ".", "--namespace", "matrix"]);
    assert!(ok, "{out}");
    let notes = out.split("NOTES:").nth(1).unwrap_or_else(|| panic!("no notes: {out}"));
    assert!(notes.contains("ACTION NEEDED"), "{notes}");
    assert!(notes.contains("kubectl create secret generic demo-exo-matrix-operator-credentials -n matrix"), "{notes}");
    assert!(notes.contains("CredentialsUnavailable"), "{notes}");
    // With credentials given, no such warning.
    let (ok, out) = helm(&["install", "--dry-run=client", "demo", ".", "--set", "matrix.existingSecret=creds"]);
    assert!(ok && !out.contains("ACTION NEEDED"), "{out}");
}

/// kube-score's findings on the rendered chart, as `[LEVEL] object: finding` lines (OK and skipped left out).
fn kube_score(values: &[&str]) -> Vec<String> {
    let mut args = vec!["template", "demo", ".", "--namespace", "matrix"];
    args.extend(values);
    let (ok, manifests) = helm(&args);
    assert!(ok, "{manifests}");
    let path = std::path::PathBuf::from(tempdir()).join("rendered.yaml");
    std::fs::write(&path, manifests).expect("manifests written");
    // No CPU limit on purpose (values.yaml says why): the flag is kube-score's own switch for it.
    let out = Command::new(platform().var("KUBE_SCORE"))
        .args(["score", "--ignore-container-cpu-limit", "--output-format", "ci"])
        .arg(&path)
        .output()
        .expect("kube-score runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(text.contains("[OK]"), "kube-score checked nothing: {text}{}", String::from_utf8_lossy(&out.stderr));
    text.lines().filter(|l| !l.starts_with("[OK]") && !l.starts_with("[SKIPPED]")).map(str::to_owned).collect()
}

#[test]
fn kube_score_finds_nothing_unexplained_in_the_rendered_chart() {
    assert_eq!(kube_score(&[]), Vec::<String>::new(), "default values");
    let addon = ["--set", "addonApi.enabled=true", "--set", "addonApi.tokenSecret=t"];
    assert_eq!(kube_score(&addon), Vec::<String>::new(), "with the addon API");
    let ca = ["--set", "extraCA.configMap=corp-ca"];
    assert_eq!(kube_score(&ca), Vec::<String>::new(), "with an extra CA");
    // The checks left out are named, with their reasons, where they are switched off.
    let deployment = std::fs::read_to_string(repo_root().join("templates/deployment.yaml")).expect("template");
    for check in ["container-image-pull-policy", "deployment-replicas"] {
        assert!(deployment.contains(&format!("# - {check}: ")), "{check} is ignored without a reason");
    }
}

#[test]
fn chart_refuses_invalid_values() {
    let (ok, out) = helm(&["template", "demo", ".", "--set", "matrix.existingSecret=c", "--set", "resync=ten minutes"]);
    assert!(!ok, "invalid resync accepted: {out}");
    assert!(out.contains("resync"), "{out}");
}

#[test]
fn chart_mounts_an_extra_ca_and_passes_it_to_the_operator() {
    let (ok, out) = helm(&["template", "demo", ".", "--set", "matrix.existingSecret=c"]);
    assert!(ok && !out.contains("extra-ca"), "no extra CA by default: {out}");
    for (kind, source) in [("configMap", "name: corp-ca"), ("secret", "secretName: corp-ca")] {
        let set = format!("extraCA.{kind}=corp-ca");
        let (ok, out) = helm(&[
            "template",
            "demo",
            ".",
            "--set",
            "matrix.existingSecret=c",
            "--set",
            &set,
            "--set",
            "extraCA.key=root.pem",
        ]);
        assert!(ok, "{out}");
        assert!(out.contains("- --extra-ca-file=/etc/exo-matrix-operator/extra-ca/root.pem"), "{out}");
        assert!(
            out.contains("mountPath: /etc/exo-matrix-operator/extra-ca") && out.contains("readOnly: true"),
            "{out}"
        );
        assert!(out.contains(source) && out.contains("key: \"root.pem\""), "{out}");
    }
    let (ok, out) = helm(&[
        "template",
        "demo",
        ".",
        "--set",
        "matrix.existingSecret=c",
        "--set",
        "extraCA.configMap=a",
        "--set",
        "extraCA.secret=b",
    ]);
    assert!(!ok, "a ConfigMap and a Secret at once are refused: {out}");
}

#[test]
fn packaged_chart_carries_crds_and_no_rust_sources() {
    let dir = tempdir();
    let (ok, out) = helm(&["package", ".", "-d", &dir]);
    assert!(ok, "{out}");
    let tgz = std::fs::read_dir(&dir).expect("package dir").next().expect("a package").expect("entry").path();
    let list = Command::new("tar").arg("tzf").arg(&tgz).output().expect("tar runs");
    let list = String::from_utf8_lossy(&list.stdout);
    assert!(list.contains("crds/spaceroomlinks.exomatrix.dev.yaml"), "{list}");
    assert!(!list.contains(".rs") && !list.contains("Cargo.toml"), "{list}");
}

fn tempdir() -> String {
    let dir = std::env::temp_dir().join(support::unique("chart"));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir.to_string_lossy().into_owned()
}

#[test]
fn chart_rbac_has_no_wildcards_and_is_namespaced_when_asked() {
    let (ok, out) =
        helm(&["template", "demo", ".", "--show-only", "templates/rbac.yaml", "--set", "matrix.existingSecret=c"]);
    assert!(ok, "{out}");
    assert!(!out.contains("'*'") && !out.contains("\"*\"") && !out.contains("[*]") && !out.contains("- *"), "{out}");
    assert!(out.contains("kind: ClusterRole"), "{out}");
    let (ok, out) = helm(&[
        "template",
        "demo",
        ".",
        "--namespace",
        "spaces",
        "--show-only",
        "templates/rbac.yaml",
        "--set",
        "matrix.existingSecret=c",
        "--set",
        "watchNamespace=spaces",
    ]);
    assert!(ok, "{out}");
    assert!(out.contains("kind: Role\n") && out.contains("kind: RoleBinding") && !out.contains("ClusterRole"), "{out}");
}

#[tokio::test]
async fn the_operator_reconciles_under_the_charts_own_rbac() {
    use exo_matrix_operator::crd::{MatrixUser, SpaceRoomLink};
    use kube::Api;
    use kube::api::PostParams;
    use serde_json::json;

    let p = platform();
    let client = support::kube_client().await;
    let ns = support::namespace(&client, "helm").await;
    // The ClusterRole is cluster-wide: each run needs its own release name.
    let release = support::unique("rel");
    let fullname = format!("{release}-exo-matrix-operator");
    let out = Command::new(p.helm())
        .args(["install", &release, ".", "--namespace", &ns, "--set", "matrix.existingSecret=matrix", "--wait=false"])
        .env("KUBECONFIG", p.kubeconfig())
        .current_dir(repo_root())
        .output()
        .expect("helm runs");
    assert!(out.status.success(), "helm install: {}", String::from_utf8_lossy(&out.stderr));
    let (ok, _, err) = p.kubectl_run(&["get", "deployment", &fullname, "-n", &ns], None);
    assert!(ok, "the chart's Deployment exists: {err}");

    let kubeconfig = support::service_account_kubeconfig(&ns, &fullname);
    // The ServiceAccount may not do what the chart did not grant.
    let out = Command::new(p.kubectl())
        .args(["auth", "can-i", "delete", "namespaces"])
        .env("KUBECONFIG", &kubeconfig)
        .output()
        .expect("kubectl");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "no");

    support::shared_secret_credentials(&client, &ns).await;
    // With leader election on, as the chart runs it: the Lease needs RBAC too.
    let _op = support::Operator::start_as(&kubeconfig, &ns, "matrix", &["--leader-election"]);
    let users: Api<MatrixUser> = Api::namespaced(client.clone(), &ns);
    let links: Api<SpaceRoomLink> = Api::namespaced(client.clone(), &ns);
    let username = support::unique("rbac").replace('-', "_");
    let user = serde_json::from_value(json!({"apiVersion": "exomatrix.dev/v1alpha1", "kind": "MatrixUser",
        "metadata": {"name": "rbac"}, "spec": {"username": username, "email": "rbac@example.org"}}))
    .expect("user");
    users.create(&PostParams::default(), &user).await.expect("user created");
    let link = serde_json::from_value(json!({"apiVersion": "exomatrix.dev/v1alpha1", "kind": "SpaceRoomLink",
        "metadata": {"name": "rbac"}, "spec": {"spaceGroupId": format!("rbac_{username}"), "create": true, "members": [username]}}))
    .expect("link");
    links.create(&PostParams::default(), &link).await.expect("link created");
    for kind in ["mxu", "srl"] {
        let (ok, _, err) = p
            .kubectl_run(&["wait", "-n", &ns, "--for=condition=Ready", &format!("{kind}/rbac"), "--timeout=40s"], None);
        assert!(ok, "{kind}/rbac not Ready under the chart's RBAC: {err}");
    }
}

#[test]
fn plain_manifests_are_accepted_by_the_api_server_and_match_the_chart() {
    let p = platform();
    // A server-side dry run creates nothing, so the namespace it would create must exist already.
    let _ = p.kubectl_run(&["create", "namespace", "exo-matrix"], None);
    let (ok, out, err) = p.kubectl_run(&["apply", "-k", "deploy/", "--dry-run=server"], None);
    assert!(ok, "kubectl apply -k deploy/ --dry-run=server: {err}");
    assert!(out.contains("deployment.apps/exo-matrix-operator"), "{out}");
    // deploy/operator/operator.yaml is the chart rendered with its documented arguments.
    let (ok, rendered) = helm(&[
        "template",
        "exo-matrix-operator",
        ".",
        "--namespace",
        "exo-matrix",
        "--set",
        "matrix.homeserverUrl=http://synapse.matrix:8008",
        "--set",
        "matrix.existingSecret=matrix-credentials",
    ]);
    assert!(ok, "{rendered}");
    let strip = |text: &str| -> Vec<String> {
        text.lines()
            .filter(|l| !l.starts_with('#') && !l.contains("helm.sh/chart") && !l.contains("managed-by: Helm"))
            .map(str::to_owned)
            .collect()
    };
    let on_disk = std::fs::read_to_string(repo_root().join("deploy/operator/operator.yaml")).expect("operator.yaml");
    assert!(strip(&on_disk) == strip(&rendered), "deploy/operator/operator.yaml is stale: re-render it from the chart");
}

#[test]
fn chart_app_version_is_the_crate_version() {
    let chart = std::fs::read_to_string(repo_root().join("Chart.yaml")).expect("Chart.yaml");
    let app_version = chart.lines().find_map(|l| l.strip_prefix("appVersion:")).map(|v| v.trim().trim_matches('"'));
    assert_eq!(app_version, Some(env!("CARGO_PKG_VERSION")));
}
