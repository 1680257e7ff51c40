//! What an `ExoSource` must write so the cluster matches what eXo says.
//!
//! Object names (stable, collision-free, valid Kubernetes names):
//! - a space's link is `exo-space-<id>`, eXo's numeric space id (it survives renames);
//! - a user's MatrixUser is `exo-user-<name>`: the username lowercased with
//!   anything but `a-z 0-9 . -` turned into `-`, plus `-<8 hex of SHA-256>` of the
//!   original username whenever that changed it (so `John` and `john` differ).

use std::collections::{BTreeMap, BTreeSet};

use sha2::{Digest, Sha256};

use crate::crd::{LinkDeletionPolicy, MatrixUserSpec, SpaceRoomLinkSpec, UserDeletionPolicy};
use crate::exo::{Snapshot, Space};

pub fn link_name(space: &Space) -> String {
    format!("exo-space-{}", dns_safe(&space.id))
}

pub fn user_name(username: &str) -> String {
    let safe = dns_safe(username);
    if safe == username {
        format!("exo-user-{safe}")
    } else {
        let hash = hex::encode(Sha256::digest(username.as_bytes()));
        format!("exo-user-{safe}-{}", &hash[..8])
    }
}

fn dns_safe(s: &str) -> String {
    let mapped: String = s
        .chars()
        .map(|c| c.to_ascii_lowercase())
        .map(|c| if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '-' { c } else { '-' })
        .collect();
    mapped.trim_matches(|c| c == '-' || c == '.').chars().take(200).collect()
}

#[derive(Debug, thiserror::Error)]
#[error("spaces.{field}: invalid pattern {pattern:?}")]
pub struct PatternError {
    pub field: &'static str,
    pub pattern: String,
    #[source]
    source: globset::Error,
}

/// `spaces.include` / `spaces.exclude`: `*` and `?` globs on the pretty name (any
/// other character is literal). Each list is compiled once into one automaton
/// (globset, on the regex crate), so matching is linear in the name whatever the patterns.
#[derive(Debug, Clone, Default)]
pub struct SpaceMatcher {
    include: Option<globset::GlobSet>,
    exclude: Option<globset::GlobSet>,
}

impl SpaceMatcher {
    pub fn new(include: &[String], exclude: &[String]) -> Result<Self, PatternError> {
        fn set(field: &'static str, patterns: &[String]) -> Result<Option<globset::GlobSet>, PatternError> {
            if patterns.is_empty() {
                return Ok(None);
            }
            let mut builder = globset::GlobSetBuilder::new();
            for pattern in patterns {
                let glob: String = pattern
                    .chars()
                    .map(|c| if c == '*' || c == '?' { c.to_string() } else { globset::escape(&c.to_string()) })
                    .collect();
                let glob = globset::GlobBuilder::new(&glob)
                    .literal_separator(false)
                    .build()
                    .map_err(|source| PatternError { field, pattern: pattern.clone(), source })?;
                builder.add(glob);
            }
            let err = |source| PatternError { field, pattern: patterns.join(", "), source };
            builder.build().map(Some).map_err(err)
        }
        Ok(Self { include: set("include", include)?, exclude: set("exclude", exclude)? })
    }

    /// Included (by any pattern, or no include list) and not excluded.
    pub fn matches(&self, name: &str) -> bool {
        self.include.as_ref().is_none_or(|g| g.is_match(name))
            && !self.exclude.as_ref().is_some_and(|g| g.is_match(name))
    }
}

#[derive(Debug, Clone, Default)]
pub struct SourceSettings {
    pub base_url: String,
    pub spaces: SpaceMatcher,
    pub create_rooms: bool,
    pub deletion_policy: LinkDeletionPolicy,
}

/// An object already in the namespace, and whether this source owns it.
#[derive(Debug, Clone, PartialEq)]
pub struct Existing<S> {
    pub owned: bool,
    /// Its labels are those the source writes (objects from before a label was added are rewritten).
    pub labelled: bool,
    /// The space group id (links) or username (users) it is about.
    pub key: String,
    pub spec: S,
}

#[derive(Debug, Clone, PartialEq)]
pub enum SourceAction {
    ApplyLink { name: String, spec: SpaceRoomLinkSpec },
    DeleteLink { name: String },
    ApplyUser { name: String, spec: MatrixUserSpec },
    DisableUser { name: String },
}

#[derive(Debug, Default, PartialEq)]
pub struct SourcePlan {
    pub actions: Vec<SourceAction>,
    /// Spaces or users a hand-written object already covers: left alone, reported.
    pub conflicts: Vec<String>,
    /// Spaces whose roster eXo did not confirm: their links are left as they are.
    pub held: Vec<String>,
    pub spaces_synced: usize,
    pub users_synced: usize,
}

/// Patterns match the pretty name; X5 spaces have none, their group suffix stands in.
fn wanted(space: &Space, s: &SourceSettings) -> bool {
    s.spaces.matches(space.pretty_name.as_deref().or(space.group_suffix()).unwrap_or(""))
}

/// Why a space's roster cannot be taken as the truth: the space says it has
/// members (or managers) and the roster lists none, as eXo 6's caller-only
/// memberships would. A space whose count is 0 (or unknown) is believed.
pub fn unconfirmed_roster(space: &Space, members: &BTreeSet<String>, managers: &BTreeSet<String>) -> Option<String> {
    for (what, count, roster) in
        [("members", space.members_count, members), ("managers", space.managers_count, managers)]
    {
        if let Some(n) = count.filter(|n| *n > 0 && roster.is_empty()) {
            return Some(format!("eXo says it has {n} {what} but listed none"));
        }
    }
    None
}

fn absolute(base: &str, url: &str) -> String {
    if url.starts_with("http://") || url.starts_with("https://") {
        url.to_owned()
    } else {
        format!("{}/{}", base.trim_end_matches('/'), url.trim_start_matches('/'))
    }
}

pub fn plan_source(
    snap: &Snapshot,
    s: &SourceSettings,
    links: &BTreeMap<String, Existing<SpaceRoomLinkSpec>>,
    users: &BTreeMap<String, Existing<MatrixUserSpec>>,
) -> SourcePlan {
    let mut plan = SourcePlan::default();
    let hand_links: BTreeSet<&str> = links.values().filter(|l| !l.owned).map(|l| l.key.as_str()).collect();
    let hand_users: BTreeSet<&str> = users.values().filter(|u| !u.owned).map(|u| u.key.as_str()).collect();
    let mut wanted_links = BTreeSet::new();
    let mut people = BTreeSet::new();

    for space in snap.spaces.iter().filter(|sp| wanted(sp, s)) {
        let Some(group) = space.group_suffix().filter(|g| valid_space_group_id(g)) else { continue };
        let name = link_name(space);
        let members = snap.members.get(&space.id).cloned().unwrap_or_default();
        let managers = snap.managers.get(&space.id).cloned().unwrap_or_default();
        if let Some(why) = unconfirmed_roster(space, &members, &managers) {
            plan.held.push(format!("space {group} (id {}): {why}", space.id));
            // Its link and the accounts of the people it lists stay as they are.
            if let Some(link) = links.get(&name).filter(|l| l.owned) {
                wanted_links.insert(name.clone());
                people.extend(link.spec.members.iter().chain(&link.spec.managers).cloned());
            }
            continue;
        }
        people.extend(members.iter().cloned());
        people.extend(managers.iter().cloned());
        if hand_links.contains(group) {
            plan.conflicts
                .push(format!("space {group} is already linked by a SpaceRoomLink not written by this ExoSource"));
            continue;
        }
        wanted_links.insert(name.clone());
        plan.spaces_synced += 1;
        let spec = SpaceRoomLinkSpec {
            space_group_id: group.to_owned(),
            room_id: links.get(&name).and_then(|l| l.spec.room_id.clone()),
            create: s.create_rooms,
            display_name: space.display_name.clone(),
            description: space.description.clone(),
            avatar_url: space.avatar_url.as_deref().map(|u| absolute(&s.base_url, u)),
            members: members.union(&managers).cloned().collect(),
            managers: managers.into_iter().collect(),
            manager_power_level: links.get(&name).map_or(50, |l| l.spec.manager_power_level),
            membership: links.get(&name).map(|l| l.spec.membership).unwrap_or_default(),
            deletion_policy: s.deletion_policy,
            suspend: links.get(&name).is_some_and(|l| l.spec.suspend),
        };
        if links.get(&name).is_none_or(|l| l.spec != spec || !l.labelled) {
            plan.actions.push(SourceAction::ApplyLink { name, spec });
        }
    }
    for (name, link) in links {
        if link.owned && !wanted_links.contains(name) {
            plan.actions.push(SourceAction::DeleteLink { name: name.clone() });
        }
    }

    for username in &people {
        if hand_users.contains(username.as_str()) {
            plan.conflicts.push(format!("user {username} has a MatrixUser not written by this ExoSource"));
            continue;
        }
        let name = user_name(username);
        let exo = snap.users.get(username);
        plan.users_synced += 1;
        let spec = MatrixUserSpec {
            username: username.clone(),
            display_name: exo.and_then(|u| u.fullname.clone()),
            email: exo.and_then(|u| u.email.clone()).filter(|e| e.contains('@')),
            avatar_url: exo
                .filter(|u| !u.is_default_avatar)
                .and_then(|u| u.avatar.as_deref())
                .map(|a| absolute(&s.base_url, a)),
            enabled: exo.is_some_and(|u| u.enabled && !u.deleted),
            admin: false,
            password_secret_ref: None,
            deletion_policy: UserDeletionPolicy::Deactivate,
        };
        if users.get(&name).is_none_or(|u| u.spec != spec || !u.labelled) {
            plan.actions.push(SourceAction::ApplyUser { name, spec });
        }
    }
    // People no synced space lists any more keep their account, disabled.
    for (name, user) in users {
        if user.owned && !people.contains(&user.key) && user.spec.enabled {
            plan.actions.push(SourceAction::DisableUser { name: name.clone() });
        }
    }
    plan
}

/// Why a snapshot is too small to trust, compared with the last good one.
pub fn shrink_guard(previous: Option<(usize, usize)>, now: (usize, usize), max_drop: f64) -> Option<String> {
    let (spaces, users) = previous?;
    for (what, before, after) in [("spaces", spaces, now.0), ("users", users, now.1)] {
        if before > 0 && (after as f64) < (before as f64) * (1.0 - max_drop) {
            return Some(format!(
                "eXo now lists {after} {what}, down from {before} at the last good sync (more than {:.0}% fewer); nothing was deleted or disabled",
                max_drop * 100.0
            ));
        }
    }
    None
}

/// The CRD's `spaceGroupId` pattern (`patterns::SPACE_GROUP_ID`), checked before writing,
/// so a space eXo names oddly is skipped instead of refused by the API server.
fn valid_space_group_id(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '.' | '-'))
}

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;
