//! ExoSource end to end: a fake eXo (from the contract doc) → SpaceRoomLinks and
//! MatrixUsers → rooms in the real Synapse; nothing removed when eXo misbehaves.

mod support;

use std::time::Duration;

use exo_matrix_operator::crd::{ExoSource, MatrixSpace, MatrixUser, SpaceRoomLink};
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use serde_json::{Value, json};
use support::exo::{CREDENTIALS, FakeExo, Misbehaviour};
use support::*;

const WAIT: Duration = Duration::from_secs(60);

async fn source_condition(api: &Api<ExoSource>, reason: &str) -> String {
    eventually(&format!("ExoSource reason {reason}"), WAIT, || async {
        let s = api.get("intranet").await.ok()?;
        let (_, r, message) = condition(serde_json::to_value(&s.status).ok().as_ref(), "Ready")?;
        (r == reason).then_some(message)
    })
    .await
}

async fn link_count(api: &Api<SpaceRoomLink>) -> usize {
    api.list(&Default::default()).await.map(|l| l.items.len()).unwrap_or(0)
}

#[tokio::test]
async fn exo_spaces_become_rooms_and_misbehaviour_removes_nothing() {
    let p = platform();
    let client = kube_client().await;
    let ns = namespace(&client, "exo").await;
    shared_secret_credentials(&client, &ns).await;
    let tag = unique("x").replace('-', "");
    let (ann, bob, cat, dan) = (format!("ann{tag}"), format!("bob{tag}"), format!("cat{tag}"), format!("dan{tag}"));
    let exo = FakeExo::start().await;
    exo.edit(|s| {
        s.spaces
            .insert("12".into(), (format!("marketing{tag}"), "Marketing".into(), "Campaigns <b>and</b> brand".into()));
        s.spaces.insert("15".into(), (format!("support{tag}"), "Support".into(), "Helpdesk".into()));
        s.spaces.insert("16".into(), (format!("sandbox{tag}"), "Sandbox".into(), "Play".into()));
        s.members.insert("12".into(), vec![ann.clone(), bob.clone(), dan.clone()]);
        s.managers.insert("12".into(), vec![ann.clone(), dan.clone()]);
        s.members.insert("15".into(), vec![cat.clone()]);
        for u in [&ann, &bob, &cat, &dan] {
            s.add_user(u);
        }
    });
    platform().apply(&ns, &exo.credentials_secret());
    let _op = Operator::start(&ns, "matrix", &[]);
    let sources: Api<ExoSource> = Api::namespaced(client.clone(), &ns);
    let source = serde_json::from_value(json!({"apiVersion": "exomatrix.dev/v1alpha1", "kind": "ExoSource",
        "metadata": {"name": "intranet"},
        "spec": {"url": exo.url, "credentialsSecretRef": {"name": CREDENTIALS}, "interval": "2s",
                 "spaces": {"exclude": ["sandbox*"]}, "matrixSpace": {"displayName": "Intranet"}}}))
    .expect("source");
    sources.create(&PostParams::default(), &source).await.expect("source created");

    let links: Api<SpaceRoomLink> = Api::namespaced(client.clone(), &ns);
    let users: Api<MatrixUser> = Api::namespaced(client.clone(), &ns);
    let admin = synapse_admin().await;
    let room = eventually("the marketing room with its members", WAIT, || async {
        let l = links.get("exo-space-12").await.ok()?;
        let st = l.status?;
        (st.joined_members == Some(3)).then_some(st.room_id?)
    })
    .await;
    let server = p.server_name().to_owned();
    let state = admin.admin_room_state(&support::rid(&room)).await.expect("state");
    let content = |kind: &str| state.iter().find(|e| e.kind == kind).map_or(Value::Null, |e| e.content.clone());
    assert_eq!(content("m.room.name")["name"], "Marketing");
    assert_eq!(content("m.room.topic")["topic"], "Campaigns and brand");
    assert_eq!(content("m.room.power_levels")["users"][format!("@{ann}:{server}")], 50);
    assert!(links.get_opt("exo-space-16").await.expect("get").is_none(), "sandbox is excluded");
    eventually("support linked", WAIT, || async { links.get_opt("exo-space-15").await.ok()?.map(|_| ()) }).await;
    let owned = users.get(&format!("exo-user-{ann}")).await.expect("ann's MatrixUser");
    assert_eq!(owned.labels().get("app.kubernetes.io/managed-by").map(String::as_str), Some("exo-matrix-operator"));
    assert_eq!(owned.spec.email.as_deref(), Some(format!("{ann}@example.org").as_str()));
    source_condition(&sources, "Synced").await;

    // The intranet as one space, owned by the source, grouping the rooms it links.
    let spaces: Api<MatrixSpace> = Api::namespaced(client.clone(), &ns);
    let intranet = eventually("the source's MatrixSpace with both rooms", WAIT, || async {
        let s = spaces.get("intranet").await.ok()?;
        (s.status.as_ref()?.rooms == Some(2)).then_some(s)
    })
    .await;
    let source_uid = sources.get("intranet").await.expect("source").metadata.uid;
    assert!(intranet.owner_references().iter().any(|r| Some(&r.uid) == source_uid.as_ref()), "owned by the source");
    let space_room = intranet.status.and_then(|s| s.room_id).expect("space room");
    let space_state = admin.admin_room_state(&support::rid(&space_room)).await.expect("space state");
    assert!(space_state.iter().any(|e| e.kind == "m.space.child" && e.state_key == room), "marketing is a child");

    // eXo misbehaves: nothing is deleted or disabled, and the condition says why.
    for (misbehaviour, reason) in [
        (Misbehaviour::ServerErrorOnPage2, "ExoUnavailable"),
        (Misbehaviour::Malformed, "ExoUnavailable"),
        (Misbehaviour::NoSpaces, "SuspiciousAnswer"),
    ] {
        exo.edit(|s| s.misbehave = Some(misbehaviour));
        let message = source_condition(&sources, reason).await;
        assert!(message.contains("nothing was"), "{message}");
        assert_eq!(link_count(&links).await, 2, "{misbehaviour:?} must not delete links");
        let u = users.get(&format!("exo-user-{bob}")).await.expect("bob");
        assert!(u.spec.enabled, "{misbehaviour:?} must not disable users");
    }
    exo.edit(|s| s.misbehave = None);
    source_condition(&sources, "Synced").await;

    // Real changes flow through: rename, demotion, a disabled user, a deleted space.
    exo.edit(|s| {
        s.spaces.get_mut("12").expect("space").1 = "Marketing & Brand".into();
        // ann is demoted (demoting every manager at once would be blocked by the blast-radius guard)
        s.managers.insert("12".into(), vec![dan.clone()]);
        s.users.get_mut(&bob).expect("bob").2 = false;
        s.spaces.remove("15");
    });
    eventually("eXo's changes mirrored", WAIT, || async {
        let state = admin.admin_room_state(&support::rid(&room)).await.ok()?;
        let content = |kind: &str| state.iter().find(|e| e.kind == kind).map_or(Value::Null, |e| e.content.clone());
        let renamed = content("m.room.name")["name"] == "Marketing & Brand";
        let demoted = content("m.room.power_levels")["users"].get(format!("@{ann}:{server}")).is_none();
        let bob_off = users.get(&format!("exo-user-{bob}")).await.ok().is_some_and(|u| !u.spec.enabled);
        let support_gone = links.get_opt("exo-space-15").await.ok()?.is_none();
        let one_room = spaces.get("intranet").await.ok()?.status?.rooms == Some(1);
        (renamed && demoted && bob_off && support_gone && one_room).then_some(())
    })
    .await;
    eventually("bob deactivated", WAIT, || async {
        admin.get_user(&support::uid(format!("@{bob}:{server}"))).await.ok()??.deactivated.then_some(())
    })
    .await;

    // matrixSpace removed from the source: the MatrixSpace it wrote goes too.
    let drop_space = json!({"spec": {"matrixSpace": null}});
    sources.patch("intranet", &PatchParams::default(), &Patch::Merge(&drop_space)).await.expect("patched");
    eventually("the source's MatrixSpace deleted", WAIT, || async {
        spaces.get_opt("intranet").await.ok()?.is_none().then_some(())
    })
    .await;
}

/// eXo 6.x answers `spacesMemberships?space=` with the caller's memberships only: the
/// rosters come from `/spaces/{id}/users`, and an empty roster is never taken as the
/// truth while the space counts members.
#[tokio::test]
async fn exo6_rosters_are_read_and_an_unconfirmed_empty_roster_kicks_nobody() {
    let client = kube_client().await;
    let ns = namespace(&client, "exo6").await;
    shared_secret_credentials(&client, &ns).await;
    let tag = unique("x").replace('-', "");
    let (ann, bob) = (format!("ann{tag}"), format!("bob{tag}"));
    let exo = FakeExo::start().await;
    exo.edit(|s| {
        s.version = support::exo::Version::Exo6;
        s.spaces.insert("21".into(), (format!("team{tag}"), "Team".into(), "Our team".into()));
        s.members.insert("21".into(), vec![ann.clone(), bob.clone()]);
        s.managers.insert("21".into(), vec![ann.clone()]);
        for u in [&ann, &bob] {
            s.add_user(u);
        }
    });
    platform().apply(&ns, &exo.credentials_secret());
    let _op = Operator::start(&ns, "matrix", &[]);
    let sources: Api<ExoSource> = Api::namespaced(client.clone(), &ns);
    // A MatrixSpace written by hand holds the name the source would use for its own.
    let spaces: Api<MatrixSpace> = Api::namespaced(client.clone(), &ns);
    let by_hand = serde_json::from_value(json!({"apiVersion": "exomatrix.dev/v1alpha1", "kind": "MatrixSpace",
        "metadata": {"name": "intranet"}, "spec": {"displayName": "Mine"}}))
    .expect("space");
    spaces.create(&PostParams::default(), &by_hand).await.expect("space created");
    let source = serde_json::from_value(json!({"apiVersion": "exomatrix.dev/v1alpha1", "kind": "ExoSource",
        "metadata": {"name": "intranet"},
        "spec": {"url": exo.url, "credentialsSecretRef": {"name": CREDENTIALS}, "interval": "2s", "matrixSpace": {}}}))
    .expect("source");
    sources.create(&PostParams::default(), &source).await.expect("source created");
    let links: Api<SpaceRoomLink> = Api::namespaced(client.clone(), &ns);
    let conflict = eventually("the hand-written MatrixSpace reported", WAIT, || async {
        let s = sources.get("intranet").await.ok()?;
        let (status, _, message) = condition(serde_json::to_value(&s.status).ok().as_ref(), "Conflict")?;
        (status == "True").then_some(message)
    })
    .await;
    assert!(conflict.contains("MatrixSpace intranet"), "{conflict}");
    assert_eq!(spaces.get("intranet").await.expect("kept").spec.display_name.as_deref(), Some("Mine"));
    eventually("the eXo 6 roster in the room", WAIT, || async {
        let l = links.get("exo-space-21").await.ok()?;
        (l.status?.joined_members == Some(2)).then_some(())
    })
    .await;
    let message = source_condition(&sources, "Synced").await;
    assert!(message.contains("eXo 6"), "{message}");

    // The rosters come back empty while the space still counts its members: held, nobody removed.
    exo.edit(|s| s.misbehave = Some(Misbehaviour::EmptyRosters));
    let held = eventually("the space held", WAIT, || async {
        let s = sources.get("intranet").await.ok()?;
        let (status, _, message) = condition(serde_json::to_value(&s.status).ok().as_ref(), "RosterHeld")?;
        (status == "True").then_some(message)
    })
    .await;
    assert!(held.contains("2 members"), "{held}");
    let l = links.get("exo-space-21").await.expect("link kept");
    assert_eq!(l.spec.members.len(), 2, "the link still lists both");
    let users: Api<MatrixUser> = Api::namespaced(client.clone(), &ns);
    assert!(users.get(&format!("exo-user-{bob}")).await.expect("bob").spec.enabled);

    // A real drop to zero goes through.
    exo.edit(|s| {
        s.misbehave = None;
        s.members.insert("21".into(), vec![]);
        s.managers.insert("21".into(), vec![]);
    });
    eventually("the emptied space mirrored", WAIT, || async {
        let l = links.get("exo-space-21").await.ok()?;
        l.spec.members.is_empty().then_some(())
    })
    .await;
}
