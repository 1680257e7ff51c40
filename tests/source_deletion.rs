//! Deleting an ExoSource: Kubernetes' garbage collector then deletes every link and
//! MatrixUser it wrote. The test platform has no garbage collector, so the tests
//! delete the dependents as it would, in both propagation modes. By default
//! (`onSourceDeletion: Retain`) every account stays active and every room stays
//! with its members, although the links say `Delete` and the users `Deactivate`.

mod support;

use std::time::Duration;

use exo_matrix_operator::crd::{ExoSource, MatrixUser, SpaceRoomLink};
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use serde_json::json;
use support::exo::{CREDENTIALS, FakeExo};
use support::*;

const WAIT: Duration = Duration::from_secs(90);

struct Imported {
    exo: FakeExo,
    _op: Operator,
    sources: Api<ExoSource>,
    links: Api<SpaceRoomLink>,
    users: Api<MatrixUser>,
    /// Matrix user ids of everyone imported.
    accounts: Vec<String>,
    /// (alias, room id, joined members without the operator)
    rooms: Vec<(String, String, Vec<String>)>,
}

/// An ExoSource importing two spaces (links `deletionPolicy: Delete`) and four people, all in Synapse.
async fn import(prefix: &str, on_source_deletion: Option<&str>) -> Imported {
    let p = platform();
    let client = kube_client().await;
    let ns = namespace(&client, prefix).await;
    shared_secret_credentials(&client, &ns).await;
    let tag = unique("d").replace('-', "");
    let [ann, bob, cat, dan] = ["ann", "bob", "cat", "dan"].map(|u| format!("{u}{tag}"));
    let exo = FakeExo::start().await;
    exo.edit(|s| {
        s.spaces.insert("21".into(), (format!("sales{tag}"), "Sales".into(), "Deals".into()));
        s.spaces.insert("22".into(), (format!("legal{tag}"), "Legal".into(), "Contracts".into()));
        s.members.insert("21".into(), vec![ann.clone(), bob.clone(), cat.clone()]);
        s.managers.insert("21".into(), vec![ann.clone()]);
        s.members.insert("22".into(), vec![cat.clone(), dan.clone()]);
        s.managers.insert("22".into(), vec![dan.clone()]);
        for u in [&ann, &bob, &cat, &dan] {
            s.add_user(u);
        }
    });
    platform().apply(&ns, &exo.credentials_secret());
    let op = Operator::start(&ns, "matrix", &[]);
    let sources: Api<ExoSource> = Api::namespaced(client.clone(), &ns);
    let mut spec = json!({"url": exo.url, "credentialsSecretRef": {"name": CREDENTIALS}, "interval": "2s",
        "deletionPolicy": "Delete"});
    if let Some(choice) = on_source_deletion {
        spec["onSourceDeletion"] = json!(choice);
    }
    let source = serde_json::from_value(json!({"apiVersion": "exomatrix.dev/v1alpha1", "kind": "ExoSource",
        "metadata": {"name": "intranet"}, "spec": spec}))
    .expect("source");
    sources.create(&PostParams::default(), &source).await.expect("source created");

    let links: Api<SpaceRoomLink> = Api::namespaced(client.clone(), &ns);
    let users: Api<MatrixUser> = Api::namespaced(client.clone(), &ns);
    let server = p.server_name().to_owned();
    let id = |u: &str| format!("@{u}:{server}");
    let mut rooms = Vec::new();
    for (space, group, people) in [("21", "sales", vec![&ann, &bob, &cat]), ("22", "legal", vec![&cat, &dan])] {
        let room = eventually(&format!("room of space {space} with its members"), WAIT, || async {
            let st = links.get(&format!("exo-space-{space}")).await.ok()?.status?;
            (st.joined_members == Some(people.len() as i64)).then_some(st.room_id?)
        })
        .await;
        let mut members: Vec<String> = people.iter().map(|u| id(u)).collect();
        members.sort();
        rooms.push((format!("#space_{group}{tag}:{server}"), room, members));
    }
    let accounts = [&ann, &bob, &cat, &dan].iter().map(|u| id(u)).collect();
    Imported { exo, _op: op, sources, links, users, accounts, rooms }
}

impl Imported {
    /// Deletes the dependents as the garbage collector would, people first (the worst order:
    /// links get a pass while their members' MatrixUsers are going), and waits until they are gone.
    async fn collect_garbage(&self) {
        let users: Vec<String> =
            self.users.list(&Default::default()).await.expect("users").items.iter().map(|u| u.name_any()).collect();
        assert_eq!(users.len(), 4, "every imported person has a MatrixUser");
        for name in &users {
            self.users.delete(name, &DeleteParams::background()).await.expect("user deleted");
        }
        eventually("MatrixUsers gone", WAIT, || async {
            self.users.list(&Default::default()).await.ok()?.items.is_empty().then_some(())
        })
        .await;
        // The links notice their people gone (pending again) before they go themselves.
        eventually("links see their members' MatrixUsers gone", WAIT, || async {
            let list = self.links.list(&Default::default()).await.ok()?.items;
            list.iter()
                .all(|l| {
                    let st = l.status.as_ref();
                    st.and_then(|s| s.pending_member_count) == Some(l.spec.members.len() as i64)
                })
                .then_some(())
        })
        .await;
        for link in self.links.list(&Default::default()).await.expect("links").items {
            self.links.delete(&link.name_any(), &DeleteParams::background()).await.expect("link deleted");
        }
        eventually("links gone", WAIT, || async {
            self.links.list(&Default::default()).await.ok()?.items.is_empty().then_some(())
        })
        .await;
    }

    /// Every account active, every room resolvable by its alias and with all its members joined.
    async fn assert_everything_kept(&self) {
        let admin = synapse_admin().await;
        for account in &self.accounts {
            let user = admin.get_user(&support::uid(account)).await.expect("read account").expect("account exists");
            assert!(!user.deactivated, "{account} must stay active");
        }
        for (alias, room, expected) in &self.rooms {
            assert_eq!(
                admin.resolve_alias(&support::alias(alias)).await.expect("alias"),
                Some(support::rid(room)),
                "{alias} kept"
            );
            let mut members = admin.room_members(&support::rid(room)).await.expect("members");
            members.retain(|m| !m.as_str().starts_with("@op-"));
            members.sort();
            assert_eq!(&members, expected, "members of {alias}");
        }
    }
}

#[tokio::test]
async fn background_cascade_keeps_accounts_and_rooms() {
    let s = import("gc-bg", None).await;
    // Background propagation: the owner goes first, the collector deletes the dependents after.
    s.sources.delete("intranet", &DeleteParams::background()).await.expect("source deleted");
    eventually("ExoSource gone", WAIT, || async { s.sources.get_opt("intranet").await.ok()?.is_none().then_some(()) })
        .await;
    s.collect_garbage().await;
    s.assert_everything_kept().await;
}

#[tokio::test]
async fn a_pass_under_way_when_its_source_goes_re_creates_nothing() {
    let s = import("gc-race", None).await;
    // A slow eXo: the source's next pass reads its source, then waits on eXo while the source and its
    // dependents go, then lists the dependents and writes what eXo describes.
    s.exo.edit(|st| st.delay = Some(Duration::from_millis(400)));
    let before = s.exo.state.lock().expect("lock").requests;
    eventually("a pass under way", WAIT, || async {
        (s.exo.state.lock().expect("lock").requests > before).then_some(())
    })
    .await;
    s.sources.delete("intranet", &DeleteParams::background()).await.expect("source deleted");
    eventually("ExoSource gone", WAIT, || async { s.sources.get_opt("intranet").await.ok()?.is_none().then_some(()) })
        .await;
    for user in s.users.list(&Default::default()).await.expect("users").items {
        s.users.delete(&user.name_any(), &DeleteParams::background()).await.expect("user deleted");
    }
    eventually("MatrixUsers gone", WAIT, || async {
        s.users.list(&Default::default()).await.ok()?.items.is_empty().then_some(())
    })
    .await;
    // The pass reads eXo for a few seconds more (a page at a time), then lists the dependents.
    let mut last = s.exo.state.lock().expect("lock").requests;
    loop {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let now = s.exo.state.lock().expect("lock").requests;
        if now == last {
            break;
        }
        last = now;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let users: Vec<String> =
        s.users.list(&Default::default()).await.expect("users").items.iter().map(|u| u.name_any()).collect();
    assert!(users.is_empty(), "MatrixUsers re-created after their source and they were deleted: {users:?}");
}

#[tokio::test]
async fn foreground_cascade_keeps_accounts_and_rooms() {
    let s = import("gc-fg", Some("Retain")).await;
    // Foreground propagation: the owner stays, marked, until the collector has deleted the dependents.
    s.sources.delete("intranet", &DeleteParams::foreground()).await.expect("source deleted");
    let marked = s.sources.get("intranet").await.expect("source still there");
    assert!(marked.metadata.deletion_timestamp.is_some());
    assert!(marked.finalizers().iter().any(|f| f == "foregroundDeletion"), "{:?}", marked.finalizers());
    s.collect_garbage().await;
    s.assert_everything_kept().await;
    // A source being deleted writes nothing: the collected dependents stay collected.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(s.links.list(&Default::default()).await.expect("links").items.is_empty(), "links re-created");
    assert!(s.users.list(&Default::default()).await.expect("users").items.is_empty(), "users re-created");
    // What the collector does last.
    let patch = json!({"metadata": {"finalizers": null}});
    s.sources.patch("intranet", &PatchParams::default(), &Patch::Merge(&patch)).await.expect("finalizer removed");
}

#[tokio::test]
async fn apply_policies_makes_a_cascade_apply_each_deletion_policy() {
    let s = import("gc-apply", Some("ApplyPolicies")).await;
    // The source's choice is noted on every dependent, since a background cascade cannot read it any more.
    eventually("dependents note the source's choice", WAIT, || async {
        let links = s.links.list(&Default::default()).await.ok()?.items;
        let users = s.users.list(&Default::default()).await.ok()?.items;
        let noted = |a: &std::collections::BTreeMap<String, String>| {
            a.get("exomatrix.dev/on-source-deletion").map(String::as_str) == Some("ApplyPolicies")
        };
        (links.iter().all(|l| noted(l.annotations())) && users.iter().all(|u| noted(u.annotations()))).then_some(())
    })
    .await;
    s.sources.delete("intranet", &DeleteParams::background()).await.expect("source deleted");
    eventually("ExoSource gone", WAIT, || async { s.sources.get_opt("intranet").await.ok()?.is_none().then_some(()) })
        .await;
    for link in s.links.list(&Default::default()).await.expect("links").items {
        s.links.delete(&link.name_any(), &DeleteParams::background()).await.expect("link deleted");
    }
    for user in s.users.list(&Default::default()).await.expect("users").items {
        s.users.delete(&user.name_any(), &DeleteParams::background()).await.expect("user deleted");
    }
    let admin = synapse_admin().await;
    eventually("every account deactivated and every room deleted", WAIT, || async {
        for account in &s.accounts {
            if !admin.get_user(&support::uid(account)).await.ok()??.deactivated {
                return None;
            }
        }
        for (alias, _, _) in &s.rooms {
            if admin.resolve_alias(&support::alias(alias)).await.ok()?.is_some() {
                return None;
            }
        }
        Some(())
    })
    .await;
}
