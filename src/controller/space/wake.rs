//! What wakes a MatrixSpace. Its own status write does not (it started a second pass each time); a link
//! wakes only the spaces it is or was selected by, and only when something a space reads of it changed.
//! During the convergence of 1,000 links every link status write used to wake every space of the
//! namespace: thousands of space passes, each reading the space's whole state.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use kube::ResourceExt;
use kube::core::{Selector, SelectorExt};
use kube::runtime::reflector::ObjectRef;

use crate::controller::link::ALLOW_MASS_CHANGE;
use crate::controller::shared::{fingerprint_of, generation_fingerprint};
use crate::crd::{MatrixSpace, SpaceRoomLink};
use crate::ids::OwnedRoomId;

/// What of a MatrixSpace starts a pass of its own: its spec, deletion, the one-pass annotation.
pub fn fingerprint(space: &MatrixSpace) -> u64 {
    fingerprint_of(&(generation_fingerprint(space), space.annotations().get(ALLOW_MASS_CHANGE)))
}

/// What a space reads of a link (see `space::desired`): its labels (selection), its room once it is the
/// link's own, and the people it lists (the space's members). `None`: gone or being deleted.
#[derive(Debug, Clone, PartialEq)]
pub struct LinkFacts {
    labels: BTreeMap<String, String>,
    room: Option<OwnedRoomId>,
    listed: BTreeSet<String>,
}

impl LinkFacts {
    pub fn of(link: &SpaceRoomLink) -> Option<LinkFacts> {
        if link.metadata.deletion_timestamp.is_some() {
            return None;
        }
        Some(LinkFacts {
            labels: link.labels().clone(),
            room: super::room_of_link(link),
            listed: link.spec.members.iter().chain(&link.spec.managers).cloned().collect(),
        })
    }
}

/// The spaces of the link's namespace that select it now (`now`) or did (`before`); none when nothing
/// a space reads changed. A space without a selector, or with one it cannot use, selects no link.
pub fn spaces_to_wake(
    before: Option<&LinkFacts>,
    now: Option<&LinkFacts>,
    namespace: Option<&str>,
    spaces: &[Arc<MatrixSpace>],
) -> Vec<ObjectRef<MatrixSpace>> {
    if before == now {
        return Vec::new();
    }
    let labels: Vec<&BTreeMap<String, String>> = before.iter().chain(now.iter()).map(|f| &f.labels).collect();
    spaces
        .iter()
        .filter(|s| s.namespace().as_deref() == namespace)
        .filter(|s| {
            let selector = s.spec.link_selector.clone().and_then(|sel| Selector::try_from(sel).ok());
            selector.is_some_and(|sel| labels.iter().any(|l| sel.matches(l)))
        })
        .map(|s| ObjectRef::from_obj(&**s))
        .collect()
}

/// The last facts seen of each link, to tell a change a space reads from one it does not (a status
/// condition, `joinedMembers`, the link's own annotations).
#[derive(Default)]
pub struct LinkWatch(Mutex<BTreeMap<(String, String), LinkFacts>>);

impl LinkWatch {
    /// Records `now` (the link as the cache has it, `None` once gone) and says which spaces to wake.
    pub fn changed(
        &self,
        namespace: String,
        name: String,
        now: Option<LinkFacts>,
        spaces: &[Arc<MatrixSpace>],
    ) -> Vec<ObjectRef<MatrixSpace>> {
        let mut seen = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let key = (namespace, name);
        let before = match &now {
            Some(facts) => seen.insert(key.clone(), facts.clone()),
            None => seen.remove(&key),
        };
        spaces_to_wake(before.as_ref(), now.as_ref(), Some(&key.0), spaces)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn link(labels: serde_json::Value, room: Option<&str>, members: &[&str]) -> SpaceRoomLink {
        let mut l: SpaceRoomLink = serde_json::from_value(json!({"apiVersion": "exomatrix.dev/v1alpha1",
            "kind": "SpaceRoomLink", "metadata": {"name": "l", "namespace": "ns", "labels": labels},
            "spec": {"spaceGroupId": "team", "members": members}, "status": {"roomId": room}}))
        .expect("link");
        l.metadata.uid = Some("uid-l".into());
        l
    }

    fn space(name: &str, ns: &str, selector: serde_json::Value) -> Arc<MatrixSpace> {
        Arc::new(
            serde_json::from_value(json!({"apiVersion": "exomatrix.dev/v1alpha1", "kind": "MatrixSpace",
                "metadata": {"name": name, "namespace": ns}, "spec": {"linkSelector": selector}}))
            .expect("space"),
        )
    }

    fn woken(refs: Vec<ObjectRef<MatrixSpace>>) -> Vec<String> {
        refs.into_iter().map(|r| r.name).collect()
    }

    #[test]
    fn only_changes_a_space_reads_wake_only_the_spaces_that_select_the_link() {
        let spaces = [
            space("x", "ns", json!({"matchLabels": {"team": "x"}})),
            space("y", "ns", json!({"matchLabels": {"team": "y"}})),
            space("everything", "ns", json!({})),
            space("elsewhere", "other", json!({})),
            space("nothing", "ns", serde_json::Value::Null),
        ];
        let watch = LinkWatch::default();
        let wake = |l: &SpaceRoomLink| woken(watch.changed("ns".into(), "l".into(), LinkFacts::of(l), &spaces));
        assert_eq!(wake(&link(json!({"team": "x"}), None, &["ann"])), ["x", "everything"], "first seen");
        let mut status_only = link(json!({"team": "x"}), None, &["ann"]);
        status_only.status.as_mut().expect("status").joined_members = Some(1);
        assert!(wake(&status_only).is_empty(), "a status write that changes nothing a space reads");
        assert_eq!(wake(&link(json!({"team": "x"}), Some("!r"), &["ann"])), ["x", "everything"], "its room");
        assert_eq!(wake(&link(json!({"team": "x"}), Some("!r"), &["ann", "bob"])), ["x", "everything"], "people");
        assert_eq!(wake(&link(json!({"team": "y"}), Some("!r"), &["ann", "bob"])), ["x", "y", "everything"]);
        let mut deleting = link(json!({"team": "y"}), Some("!r"), &["ann", "bob"]);
        deleting.metadata.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(jiff::Timestamp::from_second(1).expect("ts")));
        assert_eq!(wake(&deleting), ["y", "everything"], "being deleted: out of the spaces");
        assert!(wake(&deleting).is_empty(), "and only once");
    }

    #[test]
    fn a_conflicting_link_has_no_room_for_the_spaces() {
        let mut l = link(json!({}), Some("!r"), &[]);
        let conditions = &mut l.status.as_mut().expect("status").conditions;
        crate::controller::conditions::set(conditions, "Conflict", true, "Taken", "an older link has it", None);
        assert_eq!(LinkFacts::of(&l).expect("facts").room, None);
    }
}
