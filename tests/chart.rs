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
    let (ok, out) = helm(&["lint", "--strict", "."]);
    assert!(ok, "{out}");
    let (ok, out) =
        helm(&["template", "demo", ".", "--namespace", "matrix", "--set", "matrix.homeserverUrl=http://synapse:8008"]);
    assert!(ok, "{out}");
    assert!(out.contains("--credentials-secret=matrix/matrix-credentials"), "{out}");
    assert!(out.contains("--homeserver-url=http://synapse:8008"), "{out}");
}

#[test]
fn chart_refuses_invalid_values() {
    let (ok, out) = helm(&["template", "demo", ".", "--set", "resync=ten minutes"]);
    assert!(!ok, "invalid resync accepted: {out}");
    assert!(out.contains("resync"), "{out}");
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
