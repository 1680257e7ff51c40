//! SpaceRoomLinks by the people they list, kept up to date from the link watch: a MatrixUser change wakes
//! the links listing it through a lookup, not a scan of every link (10,000 MatrixUsers listed at a start
//! against 1,000 links made ten million comparisons).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::RwLock;

use kube::ResourceExt;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;

use crate::crd::SpaceRoomLink;

/// (namespace, username, name of a link listing it as member or manager). One flat set searched by range, not
/// a set per person: a set of one element allocates a whole B-tree node.
type ByPerson = BTreeSet<(String, String, String)>;

#[derive(Default)]
pub struct LinkIndex {
    current: RwLock<Inner>,
    /// Filled during a (re)list, swapped in when it is complete.
    pending: RwLock<Option<Inner>>,
}

#[derive(Default)]
struct Inner {
    by_person: ByPerson,
    /// (namespace, name) → the people it lists, to undo an entry.
    listed: BTreeMap<(String, String), BTreeSet<String>>,
}

impl Inner {
    fn insert(&mut self, link: &SpaceRoomLink) {
        let key = (link.namespace().unwrap_or_default(), link.name_any());
        self.remove(&key);
        let people: BTreeSet<String> = link.spec.members.iter().chain(&link.spec.managers).cloned().collect();
        for person in &people {
            self.by_person.insert((key.0.clone(), person.clone(), key.1.clone()));
        }
        self.listed.insert(key, people);
    }

    fn remove(&mut self, key: &(String, String)) {
        let Some(people) = self.listed.remove(key) else { return };
        for person in people {
            self.by_person.remove(&(key.0.clone(), person, key.1.clone()));
        }
    }
}

impl LinkIndex {
    /// Follows one event of the link watch.
    pub fn observe(&self, event: &watcher::Event<SpaceRoomLink>) {
        match event {
            watcher::Event::Apply(l) => write(&self.current).insert(l),
            watcher::Event::Delete(l) => {
                write(&self.current).remove(&(l.namespace().unwrap_or_default(), l.name_any()));
            }
            watcher::Event::Init => *write(&self.pending) = Some(Inner::default()),
            watcher::Event::InitApply(l) => write(&self.pending).get_or_insert_with(Inner::default).insert(l),
            watcher::Event::InitDone => {
                if let Some(fresh) = write(&self.pending).take() {
                    *write(&self.current) = fresh;
                }
            }
        }
    }

    /// The links of `namespace` listing `username`.
    pub fn listing(&self, namespace: &str, username: &str) -> Vec<ObjectRef<SpaceRoomLink>> {
        let inner = self.current.read().unwrap_or_else(|p| p.into_inner());
        inner
            .by_person
            .range((namespace.to_owned(), username.to_owned(), String::new())..)
            .take_while(|(ns, person, _)| ns == namespace && person == username)
            .map(|(_, _, name)| ObjectRef::new(name).within(namespace))
            .collect()
    }
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(ns: &str, name: &str, members: &[&str], managers: &[&str]) -> SpaceRoomLink {
        let spec = serde_json::from_value(serde_json::json!({
            "spaceGroupId": name, "members": members, "managers": managers,
        }))
        .expect("spec");
        let mut l = SpaceRoomLink::new(name, spec);
        l.metadata.namespace = Some(ns.into());
        l
    }

    fn names(refs: Vec<ObjectRef<SpaceRoomLink>>) -> Vec<String> {
        refs.into_iter().map(|r| format!("{}/{}", r.namespace.unwrap_or_default(), r.name)).collect()
    }

    #[test]
    fn a_person_wakes_the_links_of_their_namespace_listing_them_as_they_are_now() {
        let index = LinkIndex::default();
        index.observe(&watcher::Event::Apply(link("a", "sales", &["ann", "bob"], &["cid"])));
        index.observe(&watcher::Event::Apply(link("a", "legal", &["bob"], &[])));
        index.observe(&watcher::Event::Apply(link("b", "sales", &["ann"], &[])));
        assert_eq!(names(index.listing("a", "bob")), vec!["a/legal", "a/sales"]);
        assert_eq!(names(index.listing("a", "cid")), vec!["a/sales"], "managers too");
        assert_eq!(names(index.listing("b", "ann")), vec!["b/sales"]);
        // Edited: bob is no longer listed in sales.
        index.observe(&watcher::Event::Apply(link("a", "sales", &["ann"], &["cid"])));
        assert_eq!(names(index.listing("a", "bob")), vec!["a/legal"]);
        index.observe(&watcher::Event::Delete(link("a", "legal", &["bob"], &[])));
        assert!(index.listing("a", "bob").is_empty());
    }

    #[test]
    fn a_relist_replaces_everything_once_complete() {
        let index = LinkIndex::default();
        index.observe(&watcher::Event::Apply(link("a", "old", &["ann"], &[])));
        index.observe(&watcher::Event::Init);
        index.observe(&watcher::Event::InitApply(link("a", "new", &["ann"], &[])));
        assert_eq!(names(index.listing("a", "ann")), vec!["a/old"], "unchanged until the list is complete");
        index.observe(&watcher::Event::InitDone);
        assert_eq!(names(index.listing("a", "ann")), vec!["a/new"]);
    }
}
