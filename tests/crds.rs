//! The CRDs against the real kube-apiserver: they install, accept the examples,
//! print their columns, and refuse bad objects with a message naming the field.

mod support;

use kube::api::{DynamicObject, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::{Api, Client};
use serde_json::{Value, json};
use support::{kube_client, namespace, platform, repo_root};

fn api(client: &Client, ns: &str, kind: &str) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk("exomatrix.dev", "v1alpha1", kind);
    Api::namespaced_with(client.clone(), ns, &ApiResource::from_gvk(&gvk))
}

fn object(kind: &str, name: &str, spec: Value) -> DynamicObject {
    serde_json::from_value(json!({
        "apiVersion": "exomatrix.dev/v1alpha1",
        "kind": kind,
        "metadata": {"name": name},
        "spec": spec,
    }))
    .expect("object literal")
}

/// Creates the object and returns the API server's refusal message, failing the
/// test if it was accepted or refused for another reason than validation.
async fn refusal(client: &Client, ns: &str, kind: &str, spec: Value) -> String {
    let name = support::unique("bad");
    match api(client, ns, kind).create(&PostParams::default(), &object(kind, &name, spec.clone())).await {
        Ok(_) => panic!("{kind} with spec {spec} was accepted"),
        Err(kube::Error::Api(status)) => {
            assert_eq!(status.code, 422, "{kind} {spec}: {}", status.message);
            status.message
        }
        Err(e) => panic!("{kind} {spec}: unexpected error {e}"),
    }
}

#[tokio::test]
async fn crds_are_established_with_short_names() {
    platform();
    let client = kube_client().await;
    let crds: Api<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition> =
        Api::all(client);
    for (name, short) in [
        ("spaceroomlinks.exomatrix.dev", "srl"),
        ("matrixusers.exomatrix.dev", "mxu"),
        ("exosources.exomatrix.dev", "exo"),
        ("matrixspaces.exomatrix.dev", "mxs"),
    ] {
        let crd = crds.get(name).await.expect("CRD installed");
        let established = crd
            .status
            .and_then(|s| s.conditions)
            .unwrap_or_default()
            .into_iter()
            .any(|c| c.type_ == "Established" && c.status == "True");
        assert!(established, "{name} is not Established");
        assert_eq!(crd.spec.names.short_names, Some(vec![short.to_owned()]));
    }
}

#[tokio::test]
async fn examples_are_accepted_and_listed_with_printer_columns() {
    let p = platform();
    let client = kube_client().await;
    let ns = namespace(&client, "examples").await;
    let dir = repo_root().join("deploy/examples");
    for file in ["matrixuser.yaml", "matrixuser-john.yaml", "spaceroomlink.yaml", "exosource.yaml", "matrixspace.yaml"]
    {
        let path = dir.join(file);
        let (ok, _, err) = p.kubectl_run(&["apply", "-n", &ns, "-f", path.to_str().expect("utf-8")], None);
        assert!(ok, "{file} refused: {err}");
    }
    let (ok, out, err) = p.kubectl_run(&["get", "srl", "-n", &ns], None);
    assert!(ok, "{err}");
    let header: Vec<&str> = out.lines().next().unwrap_or_default().split_whitespace().collect();
    assert_eq!(header, ["NAME", "SPACE", "ROOM", "MEMBERS", "READY", "AGE"]);
    assert!(out.contains("support-team") && out.contains("support_team"), "{out}");

    let (ok, out, err) = p.kubectl_run(&["get", "mxu", "-n", &ns], None);
    assert!(ok, "{err}");
    let header: Vec<&str> = out.lines().next().unwrap_or_default().split_whitespace().collect();
    assert_eq!(header, ["NAME", "USER", "MATRIX", "ID", "EMAIL", "ENABLED", "READY", "AGE"]);
    assert!(out.contains("mary@example.org"), "{out}");

    let (ok, out, err) = p.kubectl_run(&["get", "mxs", "-n", &ns], None);
    assert!(ok, "{err}");
    let header: Vec<&str> = out.lines().next().unwrap_or_default().split_whitespace().collect();
    assert_eq!(header, ["NAME", "ROOMS", "MEMBERS", "READY", "AGE"]);
    assert!(out.contains("intranet"), "{out}");

    // Defaults are filled in by the API server.
    let link = api(&client, &ns, "SpaceRoomLink").get("support-team").await.expect("link stored");
    assert_eq!(link.data["spec"]["membership"], "Enforce");
    let user = api(&client, &ns, "MatrixUser").get("mary").await.expect("user stored");
    assert_eq!(user.data["spec"]["enabled"], true);
    assert_eq!(user.data["spec"]["deletionPolicy"], "Deactivate");
    let source = api(&client, &ns, "ExoSource").get("intranet").await.expect("source stored");
    assert_eq!(source.data["spec"]["interval"], "5m");
    let space = api(&client, &ns, "MatrixSpace").get("intranet").await.expect("space stored");
    assert_eq!(space.data["spec"]["deletionPolicy"], "Retain");
}

#[tokio::test]
async fn both_room_id_forms_are_accepted() {
    platform();
    let client = kube_client().await;
    let ns = namespace(&client, "roomids").await;
    let links = api(&client, &ns, "SpaceRoomLink");
    for (i, room) in [
        "!Mey68DZqlq4QApwTqAvHHZiL0O_t1XO-nKDCDkkVPfI",
        "!aHFCqecCavmiGbedHU:exo.test",
        "!aHFCqecCavmiGbedHU:matrix.example.org:8448",
        "!aHFCqecCavmiGbedHU:[::1]:8448",
        "!aHFCqecCavmiGbedHU:127.0.0.1",
    ]
    .into_iter()
    .enumerate()
    {
        let obj = object("SpaceRoomLink", &format!("r{i}"), json!({"spaceGroupId": format!("s{i}"), "roomId": room}));
        links.create(&PostParams::default(), &obj).await.unwrap_or_else(|e| panic!("{room} refused: {e}"));
    }
}

#[tokio::test]
async fn invalid_objects_are_refused_naming_the_field() {
    platform();
    let client = kube_client().await;
    let ns = namespace(&client, "invalid").await;
    let cases: Vec<(&str, Value, &str)> = vec![
        ("SpaceRoomLink", json!({"spaceGroupId": "ok", "roomId": "room-without-bang"}), "spec.roomId"),
        ("SpaceRoomLink", json!({"spaceGroupId": "ok", "roomId": "!abc:bad server"}), "spec.roomId"),
        ("SpaceRoomLink", json!({"spaceGroupId": "Support Team"}), "spec.spaceGroupId"),
        ("SpaceRoomLink", json!({"create": true}), "spec.spaceGroupId: Required value"),
        ("SpaceRoomLink", json!({"spaceGroupId": "ok", "managerPowerLevel": 0}), "spec.managerPowerLevel"),
        ("SpaceRoomLink", json!({"spaceGroupId": "ok", "managerPowerLevel": 100}), "spec.managerPowerLevel"),
        ("SpaceRoomLink", json!({"spaceGroupId": "ok", "deletionPolicy": "Destroy"}), "spec.deletionPolicy"),
        ("SpaceRoomLink", json!({"spaceGroupId": "ok", "membership": "Force"}), "spec.membership"),
        ("SpaceRoomLink", json!({"spaceGroupId": "ok", "avatarUrl": "ftp://exo.example.org/a.png"}), "spec.avatarUrl"),
        ("SpaceRoomLink", json!({"spaceGroupId": "ok", "members": ["mary smith"]}), "spec.members[0]"),
        ("SpaceRoomLink", json!({"spaceGroupId": "ok", "members": ["mary", "mary"]}), "spec.members[1]"),
        ("MatrixUser", json!({"displayName": "No Name"}), "spec.username: Required value"),
        ("MatrixUser", json!({"username": "mary", "email": "not-an-email"}), "spec.email"),
        ("MatrixUser", json!({"username": "mary", "deletionPolicy": "Delete"}), "spec.deletionPolicy"),
        ("MatrixUser", json!({"username": "mary", "avatarUrl": "javascript:alert(1)"}), "spec.avatarUrl"),
        ("MatrixUser", json!({"username": "-mary"}), "spec.username"),
        ("ExoSource", json!({"url": "exo.example.org", "credentialsSecretRef": {"name": "c"}}), "spec.url"),
        (
            "ExoSource",
            json!({"url": "https://exo.example.org", "credentialsSecretRef": {"name": "c"}, "interval": "5 minutes"}),
            "spec.interval",
        ),
        // The string form of v1alpha1's first release is refused, naming the field.
        (
            "ExoSource",
            json!({"url": "https://exo.example.org", "credentialsSecretRef": "c"}),
            "spec.credentialsSecretRef",
        ),
        (
            "ExoSource",
            json!({"url": "https://exo.example.org", "credentialsSecretRef": {}}),
            "spec.credentialsSecretRef.name",
        ),
        ("MatrixSpace", json!({"managerPowerLevel": 100}), "spec.managerPowerLevel"),
        ("MatrixSpace", json!({"deletionPolicy": "Archive"}), "spec.deletionPolicy"),
        ("MatrixSpace", json!({"managers": ["mary smith"]}), "spec.managers[0]"),
        ("MatrixSpace", json!({"avatarUrl": "file:///etc/passwd"}), "spec.avatarUrl"),
        (
            "MatrixSpace",
            json!({"linkSelector": {"matchExpressions": [{"key": "team", "operator": "Sometimes"}]}}),
            "spec.linkSelector",
        ),
    ];
    assert!(cases.len() >= 12);
    for (kind, spec, field) in cases {
        let message = refusal(&client, &ns, kind, spec.clone()).await;
        assert!(message.contains(field), "{kind} {spec}: message {message:?} does not name {field}");
    }
}

#[tokio::test]
async fn identity_fields_are_immutable() {
    platform();
    let client = kube_client().await;
    let ns = namespace(&client, "immutable").await;
    let cases = [
        (
            "SpaceRoomLink",
            json!({"spaceGroupId": "before"}),
            json!({"spec": {"spaceGroupId": "after"}}),
            "spaceGroupId is immutable",
        ),
        ("MatrixUser", json!({"username": "before"}), json!({"spec": {"username": "after"}}), "username is immutable"),
    ];
    for (kind, spec, change, message) in cases {
        let api = api(&client, &ns, kind);
        api.create(&PostParams::default(), &object(kind, "x", spec)).await.expect("valid object accepted");
        match api.patch("x", &PatchParams::default(), &Patch::Merge(&change)).await {
            Ok(_) => panic!("{kind}: {change} was accepted"),
            Err(kube::Error::Api(status)) => {
                assert_eq!(status.code, 422);
                assert!(status.message.contains(message), "{}", status.message);
            }
            Err(e) => panic!("{kind}: unexpected error {e}"),
        }
        // Other fields stay editable.
        let edit = json!({"spec": {"displayName": "Renamed"}});
        api.patch("x", &PatchParams::default(), &Patch::Merge(&edit)).await.expect("displayName editable");
    }
}

#[test]
fn kubectl_explain_describes_the_fields() {
    let p = platform();
    // Every property has a description (a unit test walks the schema); the API server serves them.
    for (path, words) in [
        ("exosources.spec.credentialsSecretRef", "Secret in this namespace"),
        ("exosources.spec.credentialsSecretRef.name", "Name of the Secret"),
        ("spaceroomlinks.status.conditions", "Stalled=True"),
        ("matrixusers.spec.passwordSecretRef.key", "`password` when absent"),
    ] {
        let (ok, out, err) = p.kubectl_run(&["explain", path], None);
        assert!(ok, "kubectl explain {path}: {err}");
        assert!(out.contains(words), "kubectl explain {path}: {out}");
    }
}
