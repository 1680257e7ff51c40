//! Who belongs in a room: decided from what people wrote in Kubernetes, never
//! from how healthy an account's last reconcile was.
//!
//! A person leaves a room, or loses manager power, only when no longer listed,
//! when their `MatrixUser` says `enabled: false`, or when it is deleted. A
//! `MatrixUser` that is not Ready for any other reason (a missing password
//! Secret, a Synapse outage, a refused avatar, a restart) keeps every room.

use std::collections::{BTreeMap, BTreeSet};

/// What of one `MatrixUser` matters to links.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserFacts {
    pub username: String,
    /// The account's id as the user controller recorded it (`status.userId`).
    pub user_id: Option<String>,
    pub enabled: bool,
    /// The object carries a deletion timestamp.
    pub deleting: bool,
}

impl UserFacts {
    /// The account that may be a member, if any: it exists (has an id), is
    /// enabled and is not being deleted. Readiness plays no part.
    pub fn member_id(&self) -> Option<&str> {
        (self.enabled && !self.deleting).then_some(self.user_id.as_deref()).flatten()
    }
}

/// Listed people mapped to accounts.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Members {
    /// Account ids that belong in the room; managers included.
    pub members: BTreeSet<String>,
    pub managers: BTreeSet<String>,
    /// Listed usernames without an account that may be a member (yet).
    pub pending: Vec<String>,
    /// Every account a `MatrixUser` stands for: only these are ever removed or demoted.
    pub managed: BTreeSet<String>,
}

/// Maps the link's `members` and `managers` (usernames) through the
/// `MatrixUser`s of the link's namespace (`local`, at least those listed); `managed` is every account a
/// watched `MatrixUser` stands for.
pub fn resolve(
    listed_members: &[String],
    listed_managers: &[String],
    local: &[UserFacts],
    managed: BTreeSet<String>,
) -> Members {
    let listed: BTreeSet<&String> = listed_members.iter().chain(listed_managers).collect();
    let managers: BTreeSet<&String> = listed_managers.iter().collect();
    let by_username: BTreeMap<&str, &UserFacts> = local.iter().map(|u| (u.username.as_str(), u)).collect();
    let mut m = Members { managed, ..Members::default() };
    for username in listed {
        match by_username.get(username.as_str()).and_then(|u| u.member_id()) {
            Some(id) => {
                m.members.insert(id.to_owned());
                if managers.contains(username) {
                    m.managers.insert(id.to_owned());
                }
            }
            None => m.pending.push(username.clone()),
        }
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(name: &str, id: Option<&str>, enabled: bool, deleting: bool) -> UserFacts {
        UserFacts { username: name.into(), user_id: id.map(str::to_owned), enabled, deleting }
    }

    fn ids(users: &[UserFacts]) -> BTreeSet<String> {
        users.iter().filter_map(|u| u.user_id.clone()).collect()
    }

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    fn set(v: &[&str]) -> BTreeSet<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn an_account_with_an_id_stays_a_member_whatever_its_health() {
        // `UserFacts` has no readiness at all: a failing reconcile cannot change the answer.
        let users = [user("ann", Some("@ann:x"), true, false), user("bob", Some("@bob:x"), true, false)];
        let m = resolve(&names(&["ann", "bob"]), &names(&["bob"]), &users, ids(&users));
        assert_eq!(m.members, set(&["@ann:x", "@bob:x"]));
        assert_eq!(m.managers, set(&["@bob:x"]));
        assert!(m.pending.is_empty());
    }

    #[test]
    fn only_intent_takes_a_person_out() {
        let users = [
            user("ann", Some("@ann:x"), false, false), // enabled: false
            user("bob", Some("@bob:x"), true, true),   // MatrixUser deleted
            user("cid", Some("@cid:x"), true, false),  // no longer listed
            user("dan", Some("@dan:x"), true, false),
        ];
        let m = resolve(&names(&["ann", "bob", "dan"]), &names(&["bob"]), &users, ids(&users));
        assert_eq!(m.members, set(&["@dan:x"]));
        assert!(m.managers.is_empty(), "a deleted manager is demoted");
        assert_eq!(m.pending, names(&["ann", "bob"]));
        assert_eq!(m.managed, set(&["@ann:x", "@bob:x", "@cid:x", "@dan:x"]));
    }

    #[test]
    fn a_person_without_an_account_yet_is_pending_and_not_managed() {
        let users = [user("eve", None, true, false)];
        let m = resolve(&names(&["eve", "fay"]), &[], &users, ids(&users));
        assert!(m.members.is_empty());
        assert_eq!(m.pending, names(&["eve", "fay"]));
        assert!(m.managed.is_empty(), "nobody without an id can be kicked");
    }

    #[test]
    fn only_the_links_namespace_maps_usernames_but_every_account_is_managed() {
        let here = [user("ann", Some("@ann:x"), true, false)];
        let all = [here[0].clone(), user("gus", Some("@gus:x"), true, false)];
        let m = resolve(&names(&["ann", "gus"]), &[], &here, ids(&all));
        assert_eq!(m.members, set(&["@ann:x"]));
        assert_eq!(m.pending, names(&["gus"]));
        assert!(m.managed.contains("@gus:x"));
    }

    #[test]
    fn member_id_ignores_nothing_but_intent() {
        assert_eq!(user("a", Some("@a:x"), true, false).member_id(), Some("@a:x"));
        assert_eq!(user("a", Some("@a:x"), false, false).member_id(), None);
        assert_eq!(user("a", Some("@a:x"), true, true).member_id(), None);
        assert_eq!(user("a", None, true, false).member_id(), None);
    }
}
