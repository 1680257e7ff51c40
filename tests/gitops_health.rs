//! How GitOps tools see the operator's objects, judged by their own code on
//! objects read from the test API server (both built by tests/platform.sh):
//! - Flux, kpt and cli-utils use kstatus (tests/kstatus runs the Go library):
//!   Current when converged (or suspended: it does what it was told), InProgress
//!   while work is under way or a referenced Secret is still missing, Failed for
//!   each state that needs a person, in every kind.
//! - Argo CD runs the Lua health checks of deploy/argocd/argocd-cm.yaml with
//!   gopher-lua (tests/argocd-health runs them as Argo CD does): Healthy,
//!   Progressing and Degraded in the same states.

mod support;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use exo_matrix_operator::crd::{ExoSource, MatrixSpace, MatrixUser, SpaceRoomLink};
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Resource};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use support::exo::{CREDENTIALS, FakeExo, Misbehaviour, credentials_with};
use support::*;

const WAIT: Duration = Duration::from_secs(60);

const KINDS: [&str; 4] = ["SpaceRoomLink", "MatrixUser", "MatrixSpace", "ExoSource"];

/// kstatus' verdict on one object: (status, message).
fn kstatus(obj: &impl Serialize) -> (String, String) {
    verdict(Command::new(platform().var("KSTATUS")), obj)
}

/// The health Argo CD gives the object: (status, message).
fn argocd_health(obj: &impl Serialize) -> (String, String) {
    let kind = serde_json::to_value(obj).expect("json")["kind"].as_str().unwrap_or_default().to_owned();
    let script = argocd_scripts().get(&kind).unwrap_or_else(|| panic!("no Argo CD health check for {kind}"));
    let mut command = Command::new(platform().var("ARGOCD_HEALTH"));
    command.arg(script);
    verdict(command, obj)
}

/// Argo CD's health checks as Argo CD finds them: deploy/argocd/argocd-cm.yaml
/// applied to the API server and read back; one script file per kind.
fn argocd_scripts() -> &'static BTreeMap<String, PathBuf> {
    static SCRIPTS: OnceLock<BTreeMap<String, PathBuf>> = OnceLock::new();
    SCRIPTS.get_or_init(|| {
        let p = platform();
        let _ = p.kubectl_run(&["create", "namespace", "argocd"], None);
        let file = repo_root().join("deploy/argocd/argocd-cm.yaml");
        let (ok, _, err) = p.kubectl_run(&["apply", "-f", file.to_str().expect("utf-8")], None);
        assert!(ok, "applying argocd-cm.yaml: {err}");
        let (ok, out, err) = p.kubectl_run(&["get", "configmap", "argocd-cm", "-n", "argocd", "-o", "json"], None);
        assert!(ok, "{err}");
        let cm: Value = serde_json::from_str(&out).expect("json");
        let dir = std::env::temp_dir().join(unique("argocd-health"));
        std::fs::create_dir_all(&dir).expect("temp dir");
        KINDS
            .iter()
            .map(|kind| {
                let key = format!("resource.customizations.health.exomatrix.dev_{kind}");
                let script = cm["data"][&key].as_str().unwrap_or_else(|| panic!("{key} missing from argocd-cm"));
                let path = dir.join(format!("{kind}.lua"));
                std::fs::write(&path, script).expect("script written");
                (kind.to_string(), path)
            })
            .collect()
    })
}

fn verdict(mut command: Command, obj: &impl Serialize) -> (String, String) {
    let mut child =
        command.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("kstatus starts");
    child.stdin.take().expect("stdin").write_all(&serde_json::to_vec(obj).expect("json")).expect("write");
    let out = child.wait_with_output().expect("kstatus runs");
    assert!(out.status.success(), "{command:?}: {}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).expect("one JSON line");
    (v["status"].as_str().unwrap_or_default().to_owned(), v["message"].as_str().unwrap_or_default().to_owned())
}

/// Waits until kstatus judges `name` as `expected` (Current, InProgress, Failed)
/// and Argo CD as its counterpart (Healthy, Progressing, Degraded), both with a
/// message that contains `words`.
async fn judged<K>(api: &Api<K>, name: &str, expected: &str, words: &str)
where
    K: Resource + Clone + DeserializeOwned + Serialize + std::fmt::Debug,
{
    let argocd = match expected {
        "Current" => "Healthy",
        "InProgress" => "Progressing",
        "Failed" => "Degraded",
        other => panic!("no Argo CD counterpart for {other}"),
    };
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut last = None;
    while tokio::time::Instant::now() < deadline {
        if let Ok(obj) = api.get(name).await {
            let (status, message) = kstatus(&obj);
            let (health, health_message) = argocd_health(&obj);
            if status == expected && health == argocd && message.contains(words) && health_message.contains(words) {
                return;
            }
            last = Some((status, message, health, health_message));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("{name}: waited for kstatus {expected} and Argo CD {argocd} ({words:?}); last seen {last:?}");
}

fn link(space: &str, extra: Value) -> SpaceRoomLink {
    let mut spec = json!({"spaceGroupId": space, "create": true});
    spec.as_object_mut().expect("object").extend(extra.as_object().cloned().unwrap_or_default());
    serde_json::from_value(json!({"apiVersion": "exomatrix.dev/v1alpha1", "kind": "SpaceRoomLink",
        "metadata": {"name": "placeholder"}, "spec": spec}))
    .expect("link")
}

async fn create<K>(api: &Api<K>, name: &str, mut obj: K)
where
    K: Resource + Clone + DeserializeOwned + Serialize + std::fmt::Debug,
{
    obj.meta_mut().name = Some(name.to_owned());
    api.create(&PostParams::default(), &obj).await.unwrap_or_else(|e| panic!("creating {name}: {e}"));
}

fn user(username: &str, extra: Value) -> MatrixUser {
    let mut spec = json!({"username": username});
    spec.as_object_mut().expect("object").extend(extra.as_object().cloned().unwrap_or_default());
    serde_json::from_value(json!({"apiVersion": "exomatrix.dev/v1alpha1", "kind": "MatrixUser",
        "metadata": {"name": "placeholder"}, "spec": spec}))
    .expect("user")
}

#[tokio::test]
async fn links_are_current_in_progress_or_failed_as_a_person_would_expect() {
    let client = kube_client().await;
    let ns = namespace(&client, "ks-link").await;
    shared_secret_credentials(&client, &ns).await;
    // Any kick is above these limits: the blast-radius guard holds it.
    let _op = Operator::start(&ns, "matrix", &["--max-kicks", "0", "--max-kick-share", "0"]);
    let links: Api<SpaceRoomLink> = Api::namespaced(client.clone(), &ns);
    let users: Api<MatrixUser> = Api::namespaced(client.clone(), &ns);
    let tag = unique("s").replace('-', "");
    let ann = format!("ann{tag}");
    create(&users, &format!("ann{tag}"), user(&ann, json!({}))).await;

    create(&links, "ok", link(&format!("ok{tag}"), json!({"members": [ann]}))).await;
    create(&links, "suspended", link(&format!("susp{tag}"), json!({"suspend": true}))).await;
    create(&links, "idle", link(&format!("idle{tag}"), json!({"create": false}))).await;
    let ghost = format!("!doesnotexist{tag}:{}", platform().server_name());
    create(&links, "ghost", link(&format!("ghost{tag}"), json!({"roomId": ghost}))).await;
    // A room the operator did not make holds the alias this link would create.
    let admin = synapse_admin().await;
    let foreign = exo_matrix_operator::synapse::CreateRoom {
        room_alias_name: Some(format!("space_taken{tag}")),
        ..Default::default()
    };
    admin.create_room(&foreign).await.expect("a foreign room with the alias");
    create(&links, "taken", link(&format!("taken{tag}"), json!({}))).await;

    judged(&links, "ok", "Current", "").await;
    eventually("ann in the room", WAIT, || async {
        (links.get("ok").await.ok()?.status?.joined_members == Some(1)).then_some(())
    })
    .await;
    judged(&links, "suspended", "Current", "").await;
    for (name, words) in [("idle", "create: true"), ("ghost", "does not exist"), ("taken", "did not create")] {
        judged(&links, name, "Failed", words).await;
    }
    create(&links, "second", link(&format!("ok{tag}"), json!({}))).await;
    judged(&links, "second", "Failed", "already links").await;

    // Removing ann would kick her: held by the guard until a person allows it.
    let patch = json!({"spec": {"members": null}});
    links.patch("ok", &PatchParams::default(), &Patch::Merge(&patch)).await.expect("patched");
    judged(&links, "ok", "Failed", "nothing was changed").await;
}

#[tokio::test]
async fn spaces_are_current_when_converged_and_failed_when_a_guard_holds_them() {
    let client = kube_client().await;
    let ns = namespace(&client, "ks-space").await;
    shared_secret_credentials(&client, &ns).await;
    let _op = Operator::start(&ns, "matrix", &["--max-kicks", "0", "--max-kick-share", "0"]);
    let links: Api<SpaceRoomLink> = Api::namespaced(client.clone(), &ns);
    let users: Api<MatrixUser> = Api::namespaced(client.clone(), &ns);
    let spaces: Api<MatrixSpace> = Api::namespaced(client.clone(), &ns);
    let tag = unique("m").replace('-', "");
    let ann = format!("ann{tag}");
    create(&users, "ann", user(&ann, json!({}))).await;
    let mut team = link(&format!("team{tag}"), json!({"members": [ann]}));
    team.metadata.labels = Some([("team".to_owned(), "x".to_owned())].into());
    create(&links, "team", team).await;
    let space: MatrixSpace = serde_json::from_value(json!({"apiVersion": "exomatrix.dev/v1alpha1",
        "kind": "MatrixSpace", "metadata": {"name": "placeholder"},
        "spec": {"linkSelector": {"matchLabels": {"team": "x"}}}}))
    .expect("space");
    create(&spaces, "intranet", space).await;
    judged(&links, "team", "Current", "").await;
    judged(&spaces, "intranet", "Current", "").await;
    eventually("ann in the space", WAIT, || async {
        (spaces.get("intranet").await.ok()?.status?.members == Some(1)).then_some(())
    })
    .await;

    // Nobody listed any more: the space would remove ann, and the guard holds it for a person.
    let patch = json!({"spec": {"members": null}});
    links.patch("team", &PatchParams::default(), &Patch::Merge(&patch)).await.expect("patched");
    judged(&spaces, "intranet", "Failed", "nothing was changed").await;
}

#[tokio::test]
async fn links_wait_in_progress_for_a_credentials_secret_and_fail_on_refused_credentials() {
    let client = kube_client().await;
    let ns = namespace(&client, "ks-creds").await;
    let links: Api<SpaceRoomLink> = Api::namespaced(client.clone(), &ns);
    let users: Api<MatrixUser> = Api::namespaced(client.clone(), &ns);
    let tag = unique("c").replace('-', "");
    let _op = Operator::start(&ns, "later", &[]);
    create(&links, "team", link(&format!("team{tag}"), json!({}))).await;
    create(&users, "joe", user(&format!("joe{tag}"), json!({}))).await;
    // The Secret GitOps has yet to create: in progress, not failed.
    judged(&links, "team", "InProgress", "not found").await;
    judged(&users, "joe", "InProgress", "not found").await;

    let p = platform();
    credentials_secret(&client, &ns, "later", &[("serverUrl", p.synapse_url()), ("accessToken", "syt_refused")]).await;
    judged(&links, "team", "Failed", "refused").await;
    judged(&users, "joe", "Failed", "refused").await;

    let token = admin_token().await;
    credentials_secret(&client, &ns, "later", &[("serverUrl", p.synapse_url()), ("accessToken", token.expose())]).await;
    judged(&links, "team", "Current", "").await;
    judged(&users, "joe", "Current", "").await;
}

#[tokio::test]
async fn users_are_current_in_progress_or_failed_as_a_person_would_expect() {
    let client = kube_client().await;
    let ns = namespace(&client, "ks-user").await;
    shared_secret_credentials(&client, &ns).await;
    let _op = Operator::start(&ns, "matrix", &[]);
    let users: Api<MatrixUser> = Api::namespaced(client.clone(), &ns);
    let tag = unique("u").replace('-', "");
    create(&users, "ok", user(&format!("ok{tag}"), json!({}))).await;
    create(&users, "off", user(&format!("off{tag}"), json!({"enabled": false}))).await;
    let secret_ref = json!({"passwordSecretRef": {"name": "pw", "key": "password"}});
    create(&users, "pw", user(&format!("pw{tag}"), secret_ref)).await;

    judged(&users, "ok", "Current", "").await;
    judged(&users, "off", "Current", "").await;
    // The password Secret may still come from GitOps.
    judged(&users, "pw", "InProgress", "not found").await;
    credentials_secret(&client, &ns, "pw", &[("other", "x")]).await;
    judged(&users, "pw", "Failed", "no key").await;
    credentials_secret(&client, &ns, "pw", &[("password", "a-long-password-1")]).await;
    judged(&users, "pw", "Current", "").await;

    // Same localpart as `ok` (usernames are lowercased into localparts).
    create(&users, "twin", user(&format!("ok{tag}").to_uppercase(), json!({}))).await;
    judged(&users, "twin", "Failed", "already claimed").await;
}

#[tokio::test]
async fn sources_are_current_in_progress_or_failed_as_a_person_would_expect() {
    let p = platform();
    let client = kube_client().await;
    let ns = namespace(&client, "ks-source").await;
    shared_secret_credentials(&client, &ns).await;
    let exo = FakeExo::start().await;
    let tag = unique("x").replace('-', "");
    exo.edit(|s| {
        s.spaces.insert("12".into(), (format!("mkt{tag}"), "Marketing".into(), String::new()));
        s.users.insert(format!("ann{tag}"), ("Ann".into(), format!("ann{tag}@example.org"), true));
        s.members.insert("12".into(), vec![format!("ann{tag}")]);
    });
    let _op = Operator::start(&ns, "matrix", &[]);
    let sources: Api<ExoSource> = Api::namespaced(client.clone(), &ns);
    let source = |secret: &str| -> ExoSource {
        serde_json::from_value(json!({"apiVersion": "exomatrix.dev/v1alpha1", "kind": "ExoSource",
            "metadata": {"name": "placeholder"},
            "spec": {"url": exo.url, "credentialsSecretRef": {"name": secret}, "interval": "2s"}}))
        .expect("source")
    };
    create(&sources, "intranet", source(CREDENTIALS)).await;
    // No Secret yet: GitOps may still create it.
    judged(&sources, "intranet", "InProgress", "not found").await;

    p.apply(&ns, &credentials_with("wrong-password"));
    judged(&sources, "intranet", "Failed", "401").await;

    p.apply(&ns, &exo.credentials_secret());
    judged(&sources, "intranet", "Current", "").await;

    // An answer the shrink guard holds back needs a person to look.
    exo.edit(|s| s.misbehave = Some(Misbehaviour::NoSpaces));
    judged(&sources, "intranet", "Failed", "nothing was").await;
    exo.edit(|s| s.misbehave = None);
    judged(&sources, "intranet", "Current", "").await;

    // A Secret without the keys it needs.
    create(&sources, "broken", source("no-keys")).await;
    credentials_secret(&client, &ns, "no-keys", &[("user", "x")]).await;
    judged(&sources, "broken", "Failed", "`username` and `password`").await;
}

#[test]
fn every_kind_has_the_argocd_health_check_and_the_readme_shows_it() {
    let script = std::fs::read_to_string(repo_root().join("deploy/argocd/health.lua")).expect("health.lua");
    for kind in KINDS {
        let applied = std::fs::read_to_string(&argocd_scripts()[kind]).expect("script");
        assert_eq!(applied, script, "{kind}: argocd-cm.yaml and health.lua differ");
    }
    let snippet = std::fs::read_to_string(repo_root().join("deploy/argocd/argocd-cm.yaml")).expect("argocd-cm.yaml");
    let readme = std::fs::read_to_string(repo_root().join("README.md")).expect("README");
    assert!(readme.contains(&snippet), "README.md must show deploy/argocd/argocd-cm.yaml as it is");
}
