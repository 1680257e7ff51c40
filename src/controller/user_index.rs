//! MatrixUsers by Matrix localpart and by (namespace, username), and the accounts they stand for, kept up
//! to date from the MatrixUser watch: a reconcile looks up what it needs instead of scanning every object
//! (which made a resync O(users²)).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::RwLock;

use kube::ResourceExt;
use kube::runtime::watcher;

use crate::crd::MatrixUser;
use crate::ids;

/// Oldest first: the owner of a localpart is the first key of its set.
type OwnerKey = (Option<jiff::Timestamp>, String, String, String);

#[derive(Default)]
pub struct UserIndex {
    current: RwLock<Inner>,
    /// Filled during a (re)list, swapped in when it is complete.
    pending: RwLock<Option<Inner>>,
}

/// The lookups are flat sets searched by range, not a map of small sets: a set of one element allocates a
/// whole B-tree node (about 1 KiB for an `OwnerKey`), and 10,000 MatrixUsers made the index 18 MiB.
#[derive(Default, Clone)]
struct Inner {
    by_uid: BTreeMap<String, Entry>,
    /// (localpart, owner key): the first of a localpart is its owner.
    by_localpart: BTreeSet<(String, OwnerKey)>,
    /// (namespace, username, name).
    by_username: BTreeSet<(String, String, String)>,
    /// Accounts a MatrixUser stands for (`status.userId`), with how many do.
    managed: BTreeMap<String, usize>,
    /// MatrixUsers with a deletion timestamp: (namespace, name).
    deleting: BTreeSet<(String, String)>,
}

#[derive(Clone)]
struct Entry {
    key: OwnerKey,
    localpart: String,
    username: (String, String),
    user_id: Option<String>,
    deleting: bool,
}

impl Inner {
    fn insert(&mut self, user: &MatrixUser) {
        let uid = user.uid().unwrap_or_else(|| format!("{:?}/{}", user.namespace(), user.name_any()));
        self.remove(&uid);
        let ns = user.namespace().unwrap_or_default();
        let entry = Entry {
            key: (user.creation_timestamp().map(|t| t.0), ns.clone(), user.name_any(), uid.clone()),
            localpart: ids::localpart(&user.spec.username),
            username: (ns, user.spec.username.clone()),
            user_id: user.status.as_ref().and_then(|s| s.user_id.clone()),
            deleting: user.metadata.deletion_timestamp.is_some(),
        };
        if entry.deleting {
            self.deleting.insert((entry.username.0.clone(), entry.key.2.clone()));
        }
        self.by_localpart.insert((entry.localpart.clone(), entry.key.clone()));
        self.by_username.insert((entry.username.0.clone(), entry.username.1.clone(), entry.key.2.clone()));
        if let Some(id) = &entry.user_id {
            *self.managed.entry(id.clone()).or_default() += 1;
        }
        self.by_uid.insert(uid, entry);
    }

    fn remove(&mut self, uid: &str) {
        let Some(old) = self.by_uid.remove(uid) else { return };
        self.by_localpart.remove(&(old.localpart, old.key.clone()));
        let (ns, username) = old.username;
        self.by_username.remove(&(ns.clone(), username, old.key.2.clone()));
        if old.deleting {
            self.deleting.remove(&(ns, old.key.2));
        }
        if let Some(id) = &old.user_id
            && let Some(n) = self.managed.get_mut(id)
        {
            *n -= 1;
            if *n == 0 {
                self.managed.remove(id);
            }
        }
    }
}

impl UserIndex {
    /// Follows one event of the MatrixUser watch.
    pub fn observe(&self, event: &watcher::Event<MatrixUser>) {
        match event {
            watcher::Event::Apply(u) => write(&self.current).insert(u),
            watcher::Event::Delete(u) => {
                let uid = u.uid().unwrap_or_else(|| format!("{:?}/{}", u.namespace(), u.name_any()));
                write(&self.current).remove(&uid)
            }
            watcher::Event::Init => *write(&self.pending) = Some(Inner::default()),
            watcher::Event::InitApply(u) => write(&self.pending).get_or_insert_with(Inner::default).insert(u),
            watcher::Event::InitDone => {
                if let Some(fresh) = write(&self.pending).take() {
                    *write(&self.current) = fresh;
                }
            }
        }
    }

    /// The oldest MatrixUser claiming `localpart`: (namespace, name, uid).
    pub fn owner(&self, localpart: &str) -> Option<(String, String, String)> {
        let inner = read(&self.current);
        let from = (localpart.to_owned(), (None, String::new(), String::new(), String::new()));
        let (found, (_, ns, name, uid)) = inner.by_localpart.range(from..).next()?;
        (found == localpart).then(|| (ns.clone(), name.clone(), uid.clone()))
    }

    /// Names of the MatrixUsers of `namespace` with this username.
    pub fn named(&self, namespace: &str, username: &str) -> Vec<String> {
        let inner = read(&self.current);
        inner
            .by_username
            .range((namespace.to_owned(), username.to_owned(), String::new())..)
            .take_while(|(ns, u, _)| ns == namespace && u == username)
            .map(|(_, _, name)| name.clone())
            .collect()
    }

    /// Those of `ids` that a MatrixUser stands for. A link asks only about the accounts its room and its list
    /// name: copying every managed account per link pass (and parsing each into a user id) cost O(users) per
    /// pass, and 1,000 links polling while 10,000 accounts were made pass hundreds of times a second.
    pub fn managed_among<'a>(&self, ids: impl IntoIterator<Item = &'a str>) -> BTreeSet<String> {
        let inner = read(&self.current);
        ids.into_iter().filter(|id| inner.managed.contains_key(*id)).map(str::to_owned).collect()
    }

    /// MatrixUsers being deleted: (namespace, name).
    pub fn deleting(&self) -> Vec<(String, String)> {
        read(&self.current).deleting.iter().cloned().collect()
    }
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|p| p.into_inner())
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::MatrixUserSpec;

    fn user(ns: &str, name: &str, username: &str, created: i64, id: Option<&str>) -> MatrixUser {
        let spec: MatrixUserSpec = serde_json::from_value(serde_json::json!({"username": username})).expect("spec");
        let mut u = MatrixUser::new(name, spec);
        u.metadata.namespace = Some(ns.into());
        u.metadata.uid = Some(format!("{ns}-{name}"));
        u.metadata.creation_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            jiff::Timestamp::from_second(created).expect("ts"),
        ));
        u.status = id.map(|i| crate::crd::MatrixUserStatus { user_id: Some(i.into()), ..Default::default() });
        u
    }

    /// Which of everyone these tests name is managed (`managed_among` leaves out the rest).
    fn managed(index: &UserIndex) -> BTreeSet<String> {
        index.managed_among(["@ann:x", "@mary:x", "@nobody:x"])
    }

    #[test]
    fn the_oldest_claim_owns_a_localpart_and_deletes_and_relists_are_followed() {
        let index = UserIndex::default();
        let (old, young) = (user("a", "mary", "Mary", 10, Some("@mary:x")), user("b", "mary2", "mary", 20, None));
        index.observe(&watcher::Event::Apply(young.clone()));
        index.observe(&watcher::Event::Apply(old.clone()));
        assert_eq!(index.owner("mary"), Some(("a".into(), "mary".into(), "a-mary".into())));
        assert_eq!(index.named("a", "Mary"), vec!["mary".to_owned()]);
        assert_eq!(managed(&index), BTreeSet::from(["@mary:x".to_owned()]));
        index.observe(&watcher::Event::Delete(old.clone()));
        assert_eq!(index.owner("mary").map(|o| o.1), Some("mary2".into()));
        assert!(managed(&index).is_empty());
        // A relist replaces everything once it is complete.
        index.observe(&watcher::Event::Init);
        index.observe(&watcher::Event::InitApply(old));
        assert_eq!(index.owner("mary").map(|o| o.1), Some("mary2".into()), "unchanged until InitDone");
        index.observe(&watcher::Event::InitDone);
        assert_eq!(index.owner("mary").map(|o| o.1), Some("mary".into()));
        assert!(index.named("b", "mary").is_empty());
    }

    #[test]
    fn objects_being_deleted_are_listed_until_they_are_gone() {
        let index = UserIndex::default();
        let mut ann = user("a", "ann", "ann", 1, Some("@ann:x"));
        index.observe(&watcher::Event::Apply(ann.clone()));
        assert!(index.deleting().is_empty());
        ann.metadata.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(jiff::Timestamp::from_second(5).expect("ts")));
        index.observe(&watcher::Event::Apply(ann.clone()));
        assert_eq!(index.deleting(), vec![("a".to_owned(), "ann".to_owned())]);
        assert_eq!(managed(&index), BTreeSet::from(["@ann:x".to_owned()]), "still managed until gone");
        index.observe(&watcher::Event::Delete(ann));
        assert!(index.deleting().is_empty());
        assert!(managed(&index).is_empty());
        assert!(index.named("a", "ann").is_empty());
        assert_eq!(index.owner("ann"), None);
    }

    #[test]
    fn a_status_update_moves_the_managed_account() {
        let index = UserIndex::default();
        index.observe(&watcher::Event::Apply(user("a", "ann", "ann", 1, None)));
        assert!(managed(&index).is_empty());
        index.observe(&watcher::Event::Apply(user("a", "ann", "ann", 1, Some("@ann:x"))));
        assert_eq!(managed(&index), BTreeSet::from(["@ann:x".to_owned()]));
    }
}
