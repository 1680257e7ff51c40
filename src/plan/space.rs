//! What must change in a space room, and in the rooms it groups, so they match a `MatrixSpace`.
//!
//! The space is a private (invite-only) room of type `m.space`. Its members are the
//! people with an account who are listed in at least one selected room, plus its
//! managers; each selected room is an `m.space.child` of the space (via the server
//! name) and carries an `m.space.parent` (canonical) pointing back. Being in the
//! space gives no access to a room: the rooms keep their own invite-only rules.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use ruma_events::TimelineEventType;

use super::AvatarWish;
use super::room::{self, BlastRadius, DesiredRoom, Membership, ObservedRoom, PowerLevels, RoomAction, StateError};
use crate::crd::MembershipMode;
use crate::ids::{self, OwnedRoomId, OwnedUserId, RoomId, ServerName};
use crate::synapse::RoomStateEvent;

/// The marker state event recording which MatrixSpace owns a space room
/// (state key `<namespace>/<name>`).
pub const SPACE_MARKER_TYPE: &str = "dev.exomatrix.space";
pub const CHILD: &str = "m.space.child";
pub const PARENT: &str = "m.space.parent";
/// Aliases longer than this are shortened with a hash (Matrix allows 255 bytes in all).
const ALIAS_LOCALPART_MAX: usize = 180;

pub fn marker_key(namespace: &str, name: &str) -> String {
    format!("{namespace}/{name}")
}

pub fn marker(namespace: &str, name: &str) -> Value {
    json!({"namespace": namespace, "name": name, "managedBy": crate::MANAGER})
}

/// The space's alias localpart, its idempotency key: `<prefix>space=<namespace>=<name>`.
/// `=` cannot occur in a `spaceGroupId` (so no link's alias is ever taken) nor in a
/// namespace or object name (so two namespaces never meet).
pub fn alias_localpart(prefix: &str, namespace: &str, name: &str) -> String {
    let full = format!("{prefix}space={namespace}={name}");
    if full.len() <= ALIAS_LOCALPART_MAX {
        return full;
    }
    let hash = hex::encode(Sha256::digest(full.as_bytes()));
    let keep: String = full.chars().take(ALIAS_LOCALPART_MAX - 9).collect();
    format!("{keep}-{}", &hash[..8])
}

pub fn child_content(server_name: &ServerName) -> Value {
    json!({"via": [server_name]})
}

pub fn parent_content(server_name: &ServerName) -> Value {
    json!({"via": [server_name], "canonical": true})
}

/// What the space needs to know of one MatrixUser: membership follows intent, not
/// health, so an account that exists, is enabled and is not being deleted counts
/// whether or not it is Ready.
#[derive(Debug, Clone, PartialEq)]
pub struct Account {
    pub user_id: Option<OwnedUserId>,
    pub enabled: bool,
    pub deleting: bool,
}

impl Account {
    fn member_id(&self) -> Option<&OwnedUserId> {
        self.user_id.as_ref().filter(|_| self.enabled && !self.deleting)
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct SpaceMembers {
    pub members: BTreeSet<OwnedUserId>,
    pub managers: BTreeSet<OwnedUserId>,
    /// Listed usernames without an account (yet).
    pub pending: BTreeSet<String>,
}

/// Maps the usernames listed in the selected rooms, and the space's managers, to accounts.
pub fn space_members(
    listed: &BTreeSet<String>,
    managers: &[String],
    accounts: &BTreeMap<String, Account>,
) -> SpaceMembers {
    let mut m = SpaceMembers::default();
    for username in listed.iter().chain(managers) {
        match accounts.get(username).and_then(Account::member_id) {
            Some(id) => {
                m.members.insert(id.clone());
                if managers.contains(username) {
                    m.managers.insert(id.clone());
                }
            }
            None => {
                m.pending.insert(username.clone());
            }
        }
    }
    m
}

#[derive(Debug, Clone)]
pub struct DesiredSpace {
    pub marker_key: String,
    pub marker: Value,
    pub name: String,
    pub topic: Option<String>,
    pub avatar: AvatarWish,
    pub members: BTreeSet<OwnedUserId>,
    pub managers: BTreeSet<OwnedUserId>,
    pub manager_level: i64,
    /// Every account the operator manages: only these are ever removed or demoted.
    pub managed: BTreeSet<OwnedUserId>,
    pub operator: OwnedUserId,
    pub kick_reason: String,
    /// Room ids of the selected links.
    pub children: BTreeSet<OwnedRoomId>,
    /// The server name put in `via` (never taken from a room id: v12 ids have no server part).
    pub via: crate::ids::OwnedServerName,
}

impl DesiredSpace {
    /// The same wishes seen as a room's, for the power-level and blast-radius rules rooms use.
    fn as_room(&self) -> DesiredRoom {
        DesiredRoom {
            space_group_id: String::new(),
            name: Some(self.name.clone()),
            description: self.topic.clone(),
            avatar: self.avatar.clone(),
            members: self.members.clone(),
            managers: self.managers.clone(),
            manager_level: self.manager_level,
            mode: MembershipMode::Enforce,
            managed: self.managed.clone(),
            operator: self.operator.clone(),
            kick_reason: self.kick_reason.clone(),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct ObservedSpace {
    pub room: ObservedRoom,
    pub marker: Option<Value>,
    /// Rooms listed as children (non-empty `m.space.child` content).
    pub children: BTreeMap<OwnedRoomId, Value>,
    /// `m.space.parent` of this space in the rooms looked at (desired and current
    /// children); a room without one is absent.
    pub parents: BTreeMap<OwnedRoomId, Value>,
}

/// Reads the space room's full state; `parents` are read from the rooms by the caller (see `parents`).
pub fn observe(state: &[RoomStateEvent], marker_key: &str) -> Result<ObservedSpace, StateError> {
    let mut o = ObservedSpace { room: room::observe(state, "")?, ..ObservedSpace::default() };
    for e in state {
        match e.kind.as_str() {
            SPACE_MARKER_TYPE if e.state_key == marker_key => o.marker = Some(e.content.clone()),
            // A child key that is no room id names no room the operator could link or unlink.
            CHILD if present(&e.content) => {
                if let Ok(room) = ids::room_id(&e.state_key) {
                    o.children.insert(room, e.content.clone());
                }
            }
            _ => {}
        }
    }
    Ok(o)
}

/// A child or parent event counts while its content is non-empty (empty content removes it).
pub fn present(content: &Value) -> bool {
    content.as_object().is_some_and(|c| !c.is_empty())
}

#[derive(Debug, Clone, PartialEq)]
pub enum SpaceAction {
    SetMarker {
        room_id: OwnedRoomId,
        key: String,
        content: Value,
    },
    SetName {
        room_id: OwnedRoomId,
        name: String,
    },
    SetTopic {
        room_id: OwnedRoomId,
        content: Value,
    },
    SetAvatar {
        room_id: OwnedRoomId,
        url: String,
    },
    SetPowerLevels {
        room_id: OwnedRoomId,
        levels: PowerLevels,
    },
    /// `m.space.child` in the space; empty content removes the room.
    SetChild {
        space_id: OwnedRoomId,
        room_id: OwnedRoomId,
        content: Value,
    },
    /// `m.space.parent` in the room; empty content removes the space.
    SetParent {
        room_id: OwnedRoomId,
        space_id: OwnedRoomId,
        content: Value,
    },
    JoinUser {
        room_id: OwnedRoomId,
        user_id: OwnedUserId,
    },
    KickUser {
        room_id: OwnedRoomId,
        user_id: OwnedUserId,
        reason: String,
    },
}

impl SpaceAction {
    pub fn kind(&self) -> &'static str {
        match self {
            SpaceAction::SetMarker { .. } => "SetMarker",
            SpaceAction::SetName { .. } => "SetRoomName",
            SpaceAction::SetTopic { .. } => "SetRoomTopic",
            SpaceAction::SetAvatar { .. } => "SetRoomAvatar",
            SpaceAction::SetPowerLevels { .. } => "SetPowerLevels",
            SpaceAction::SetChild { content, .. } if present(content) => "AddChild",
            SpaceAction::SetChild { .. } => "RemoveChild",
            SpaceAction::SetParent { content, .. } if present(content) => "SetParent",
            SpaceAction::SetParent { .. } => "RemoveParent",
            SpaceAction::JoinUser { .. } => "JoinUser",
            SpaceAction::KickUser { .. } => "KickUser",
        }
    }

    pub fn describe(&self) -> String {
        match self {
            SpaceAction::SetMarker { key, .. } => format!("marked the room as MatrixSpace {key}'s"),
            SpaceAction::SetName { name, .. } => format!("set the space name to {name:?}"),
            SpaceAction::SetTopic { .. } => "set the space topic".into(),
            SpaceAction::SetAvatar { url, .. } => format!("set the space avatar to {url}"),
            SpaceAction::SetPowerLevels { .. } => "set the space's power levels".into(),
            SpaceAction::SetChild { room_id, content, .. } if present(content) => format!("added room {room_id}"),
            SpaceAction::SetChild { room_id, .. } => format!("removed room {room_id}"),
            SpaceAction::SetParent { room_id, content, .. } if present(content) => {
                format!("set the space as parent of room {room_id}")
            }
            SpaceAction::SetParent { room_id, .. } => format!("removed the space as parent of room {room_id}"),
            SpaceAction::JoinUser { user_id, .. } => format!("joined {user_id}"),
            SpaceAction::KickUser { user_id, .. } => format!("removed {user_id}"),
        }
    }

    pub fn is_membership(&self) -> bool {
        matches!(self, SpaceAction::JoinUser { .. } | SpaceAction::KickUser { .. })
    }

    /// The state event this action writes, as (room, type, state key, content).
    pub fn state_event(&self) -> Option<(&RoomId, &str, &str, Value)> {
        Some(match self {
            SpaceAction::SetMarker { room_id, key, content } => (room_id, SPACE_MARKER_TYPE, key, content.clone()),
            SpaceAction::SetName { room_id, name } => (room_id, "m.room.name", "", json!({"name": name})),
            SpaceAction::SetTopic { room_id, content } => (room_id, "m.room.topic", "", content.clone()),
            SpaceAction::SetAvatar { room_id, url } => (room_id, "m.room.avatar", "", json!({"url": url})),
            SpaceAction::SetPowerLevels { room_id, levels } => (room_id, "m.room.power_levels", "", levels.content()),
            SpaceAction::SetChild { space_id, room_id, content } => {
                (space_id, CHILD, room_id.as_str(), content.clone())
            }
            SpaceAction::SetParent { room_id, space_id, content } => {
                (room_id, PARENT, space_id.as_str(), content.clone())
            }
            SpaceAction::JoinUser { .. } | SpaceAction::KickUser { .. } => return None,
        })
    }
}

/// The power levels of the space: those of a room, and only the operator adds or removes rooms.
pub fn desired_power_levels(d: &DesiredSpace, observed: &PowerLevels, creators: &BTreeSet<OwnedUserId>) -> PowerLevels {
    let mut pl = room::desired_power_levels(&d.as_room(), observed, creators);
    pl.levels.events.insert(TimelineEventType::SpaceChild, room::level(room::SPACE_OWNED_LEVEL));
    pl
}

/// The calls that make the space (and its rooms' parent events) match `d`:
/// state first, then membership.
pub fn plan_space(d: &DesiredSpace, space_id: &RoomId, o: &ObservedSpace) -> Vec<SpaceAction> {
    let room_id = space_id.to_owned();
    let mut actions = Vec::new();
    if o.marker.as_ref() != Some(&d.marker) {
        actions.push(SpaceAction::SetMarker {
            room_id: room_id.clone(),
            key: d.marker_key.clone(),
            content: d.marker.clone(),
        });
    }
    if o.room.name.as_ref() != Some(&d.name) {
        actions.push(SpaceAction::SetName { room_id: room_id.clone(), name: d.name.clone() });
    }
    if let Some(topic) = &d.topic {
        let content = room::topic_content(topic);
        if o.room.topic.as_ref() != Some(&content) {
            actions.push(SpaceAction::SetTopic { room_id: room_id.clone(), content });
        }
    }
    match &d.avatar {
        AvatarWish::Set(url) if o.room.avatar_url.as_ref() != Some(url) => {
            actions.push(SpaceAction::SetAvatar { room_id: room_id.clone(), url: url.clone() })
        }
        AvatarWish::Clear if o.room.avatar_url.is_some() => {
            actions.push(SpaceAction::SetAvatar { room_id: room_id.clone(), url: String::new() })
        }
        _ => {}
    }
    let levels = desired_power_levels(d, &o.room.power_levels, &o.room.creators);
    if levels != o.room.power_levels {
        actions.push(SpaceAction::SetPowerLevels { room_id: room_id.clone(), levels });
    }

    let (child, parent) = (child_content(&d.via), parent_content(&d.via));
    // The parent before the child, and removed before it: a room the space lists has its parent (see
    // `parents`), so a pass need not read the parent of every room.
    for child_room in &d.children {
        if o.parents.get(child_room) != Some(&parent) {
            actions.push(SpaceAction::SetParent {
                room_id: child_room.clone(),
                space_id: room_id.clone(),
                content: parent.clone(),
            });
        }
        if o.children.get(child_room) != Some(&child) {
            actions.push(SpaceAction::SetChild {
                space_id: room_id.clone(),
                room_id: child_room.clone(),
                content: child.clone(),
            });
        }
    }
    // A room no longer selected loses both links to the space.
    let former: BTreeSet<&OwnedRoomId> =
        o.children.keys().chain(o.parents.keys()).filter(|r| !d.children.contains(*r)).collect();
    for gone in former {
        if o.parents.contains_key(gone) {
            actions.push(SpaceAction::SetParent {
                room_id: gone.clone(),
                space_id: room_id.clone(),
                content: json!({}),
            });
        }
        if o.children.contains_key(gone) {
            actions.push(SpaceAction::SetChild {
                space_id: room_id.clone(),
                room_id: gone.clone(),
                content: json!({}),
            });
        }
    }

    for user in &d.members {
        if !matches!(o.room.membership.get(user), Some(Membership::Join | Membership::Ban)) {
            actions.push(SpaceAction::JoinUser { room_id: room_id.clone(), user_id: user.clone() });
        }
    }
    for (user, m) in &o.room.membership {
        let present = matches!(m, Membership::Join | Membership::Invite);
        let removable = d.managed.contains(user) && *user != d.operator && !o.room.creators.contains(user);
        if present && removable && !d.members.contains(user) {
            actions.push(SpaceAction::KickUser {
                room_id: room_id.clone(),
                user_id: user.clone(),
                reason: d.kick_reason.clone(),
            });
        }
    }
    actions
}

/// Why a plan removes or demotes too many people to run unattended: the rooms' rule.
pub fn guard(d: &DesiredSpace, o: &ObservedSpace, actions: &[SpaceAction], limits: BlastRadius) -> Option<String> {
    let kicks: Vec<RoomAction> = actions
        .iter()
        .filter_map(|a| match a {
            SpaceAction::KickUser { user_id, reason, .. } => {
                Some(RoomAction::KickUser { user_id: user_id.clone(), reason: reason.clone() })
            }
            _ => None,
        })
        .collect();
    room::guard(&d.as_room(), &o.room, &kicks, limits)
}

/// What Synapse would show after `actions` (the convergence test's model).
pub fn apply(o: &ObservedSpace, actions: &[SpaceAction]) -> ObservedSpace {
    let mut next = o.clone();
    for a in actions {
        match a {
            SpaceAction::SetMarker { content, .. } => next.marker = Some(content.clone()),
            SpaceAction::SetName { name, .. } => next.room.name = Some(name.clone()),
            SpaceAction::SetTopic { content, .. } => next.room.topic = Some(content.clone()),
            SpaceAction::SetAvatar { url, .. } => next.room.avatar_url = Some(url.clone()).filter(|u| !u.is_empty()),
            SpaceAction::SetPowerLevels { levels, .. } => next.room.power_levels = levels.clone(),
            SpaceAction::SetChild { room_id, content, .. } => set_or_remove(&mut next.children, room_id, content),
            SpaceAction::SetParent { room_id, content, .. } => set_or_remove(&mut next.parents, room_id, content),
            SpaceAction::JoinUser { user_id, .. } => {
                next.room.membership.insert(user_id.clone(), Membership::Join);
            }
            SpaceAction::KickUser { user_id, .. } => {
                next.room.membership.insert(user_id.clone(), Membership::Leave);
            }
        }
    }
    next
}

fn set_or_remove(map: &mut BTreeMap<OwnedRoomId, Value>, key: &RoomId, content: &Value) {
    if present(content) {
        map.insert(key.to_owned(), content.clone());
    } else {
        map.remove(key);
    }
}

pub mod parents;
#[cfg(test)]
mod tests;
