//! What must change in a room so it matches its `SpaceRoomLink`.

use std::collections::{BTreeMap, BTreeSet};

use js_int::Int;
use ruma_common::RoomVersionId;
use ruma_events::TimelineEventType;
use serde_json::{Value, json};

use super::AvatarWish;
use crate::crd::MembershipMode;
use crate::ids::{self, OwnedUserId};
use crate::synapse::RoomStateEvent;

mod power;
pub use power::PowerLevels;

/// Power needed to change what the space owns: name, topic, avatar, power levels.
pub const SPACE_OWNED_LEVEL: i64 = 100;
/// The marker state event recording which space owns a room.
pub const MARKER_TYPE: &str = "dev.exomatrix.link";

/// What one room should be. It names no room: the plan is about whichever room the
/// caller observed, and the caller sends the actions to that room.
#[derive(Debug, Clone)]
pub struct DesiredRoom {
    pub space_group_id: String,
    pub name: Option<String>,
    /// The space description (may hold HTML).
    pub description: Option<String>,
    pub avatar: AvatarWish,
    /// Accounts that belong in the room (listed, enabled, not deleted); managers included.
    pub members: BTreeSet<OwnedUserId>,
    pub managers: BTreeSet<OwnedUserId>,
    pub manager_level: i64,
    pub mode: MembershipMode,
    /// Accounts the operator manages (a MatrixUser stands for them): only these are ever kicked or demoted.
    /// Only those the room's state or the list names matter (`ObservedRoom::named`), so only those need be here.
    pub managed: BTreeSet<OwnedUserId>,
    /// The operator's own account.
    pub operator: OwnedUserId,
    pub kick_reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Membership {
    Join,
    Invite,
    Leave,
    Ban,
    Knock,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct ObservedRoom {
    pub version: String,
    /// Creators hold unlimited power in room version 12 and must not be in `users`.
    pub creators: BTreeSet<OwnedUserId>,
    pub name: Option<String>,
    pub topic: Option<Value>,
    pub avatar_url: Option<String>,
    pub power_levels: PowerLevels,
    pub membership: BTreeMap<OwnedUserId, Membership>,
    /// Who removed each person whose leave someone else sent (a kick): a
    /// person the operator removed has not chosen to leave.
    pub removed_by: BTreeMap<OwnedUserId, OwnedUserId>,
    pub marker: Option<Value>,
}

impl ObservedRoom {
    /// Everyone the room's state names (members in any state, power-level entries): besides the listed
    /// people, the only accounts whose being managed can change a plan (see `DesiredRoom::managed`).
    pub fn named(&self) -> impl Iterator<Item = &OwnedUserId> {
        self.membership.keys().chain(self.power_levels.levels.users.keys())
    }
}

/// One call that brings the observed room closer to the desired one.
#[derive(Debug, Clone, PartialEq)]
pub enum RoomAction {
    SetRoomName { name: String },
    SetRoomTopic { content: Value },
    SetRoomAvatar { url: String },
    SetPowerLevels { levels: PowerLevels },
    SetMarker { space_group_id: String, content: Value },
    JoinUser { user_id: OwnedUserId },
    InviteUser { user_id: OwnedUserId },
    KickUser { user_id: OwnedUserId, reason: String },
}

impl RoomAction {
    /// The action's kind, as counted in `status.plan`.
    pub fn kind(&self) -> &'static str {
        match self {
            RoomAction::SetRoomName { .. } => "SetRoomName",
            RoomAction::SetRoomTopic { .. } => "SetRoomTopic",
            RoomAction::SetRoomAvatar { .. } => "SetRoomAvatar",
            RoomAction::SetPowerLevels { .. } => "SetPowerLevels",
            RoomAction::SetMarker { .. } => "SetMarker",
            RoomAction::JoinUser { .. } => "JoinUser",
            RoomAction::InviteUser { .. } => "InviteUser",
            RoomAction::KickUser { .. } => "KickUser",
        }
    }

    pub fn describe(&self) -> String {
        match self {
            RoomAction::SetRoomName { name, .. } => format!("set the room name to {name:?}"),
            RoomAction::SetRoomTopic { .. } => "set the room topic".into(),
            RoomAction::SetRoomAvatar { url, .. } => format!("set the room avatar to {url}"),
            RoomAction::SetPowerLevels { .. } => "set the power levels".into(),
            RoomAction::SetMarker { space_group_id, .. } => {
                format!("marked the room as space {space_group_id}'s")
            }
            RoomAction::JoinUser { user_id, .. } => format!("joined {user_id}"),
            RoomAction::InviteUser { user_id, .. } => format!("invited {user_id}"),
            RoomAction::KickUser { user_id, .. } => format!("removed {user_id}"),
        }
    }

    pub fn is_membership(&self) -> bool {
        matches!(self, RoomAction::JoinUser { .. } | RoomAction::InviteUser { .. } | RoomAction::KickUser { .. })
    }

    fn member(&self) -> Option<&OwnedUserId> {
        match self {
            RoomAction::JoinUser { user_id }
            | RoomAction::InviteUser { user_id }
            | RoomAction::KickUser { user_id, .. } => Some(user_id),
            _ => None,
        }
    }
}

/// People named in one membership Event; the rest are counted.
const NAMED_PER_EVENT: usize = 20;

/// One Event per kind of membership change a pass made (reason, note), not one per person: at B10k an Event per
/// join was a fifth of the API server's writes.
pub fn membership_events(done: &[RoomAction]) -> Vec<(&'static str, String)> {
    let mut by_kind: BTreeMap<&'static str, (&'static str, Vec<&OwnedUserId>)> = BTreeMap::new();
    for action in done {
        let Some(user) = action.member() else { continue };
        let verb = match action {
            RoomAction::JoinUser { .. } => "joined",
            RoomAction::InviteUser { .. } => "invited",
            _ => "removed",
        };
        by_kind.entry(action.kind()).or_insert((verb, Vec::new())).1.push(user);
    }
    by_kind
        .into_iter()
        .map(|(kind, (verb, users))| {
            let named: Vec<&str> = users.iter().take(NAMED_PER_EVENT).map(|u| u.as_str()).collect();
            let more = users.len().saturating_sub(NAMED_PER_EVENT);
            let tail = if more > 0 { format!(" and {more} more") } else { String::new() };
            (kind, format!("{verb} {}{tail}", named.join(", ")))
        })
        .collect()
}

/// A room state the plan cannot work from.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("the room's m.room.power_levels cannot be read as power levels")]
    PowerLevels(#[source] serde_json::Error),
}

/// Reads the observation out of the room's full state. Senders and member keys that are not user
/// ids are passed over: they cannot be accounts the operator manages, and so are never acted on.
pub fn observe(state: &[RoomStateEvent], space_group_id: &str) -> Result<ObservedRoom, StateError> {
    let mut o = ObservedRoom::default();
    for e in state {
        match (e.kind.as_str(), e.state_key.as_str()) {
            ("m.room.create", "") => {
                o.version = e.content.get("room_version").and_then(Value::as_str).unwrap_or("1").to_owned();
                if version_has_creator_power(&o.version) {
                    o.creators.extend(ids::user_id(&e.sender).ok());
                    if let Some(extra) = e.content.get("additional_creators").and_then(Value::as_array) {
                        o.creators.extend(extra.iter().filter_map(Value::as_str).filter_map(|c| ids::user_id(c).ok()));
                    }
                }
            }
            ("m.room.name", "") => o.name = e.content.get("name").and_then(Value::as_str).map(str::to_owned),
            ("m.room.topic", "") => o.topic = Some(e.content.clone()).filter(|c| c.get("topic").is_some()),
            ("m.room.avatar", "") => o.avatar_url = e.content.get("url").and_then(Value::as_str).map(str::to_owned),
            ("m.room.power_levels", "") => {
                o.power_levels = PowerLevels::parse(&e.content).map_err(StateError::PowerLevels)?
            }
            ("m.room.member", user) => {
                let Ok(user) = ids::user_id(user) else { continue };
                let m = match e.content.get("membership").and_then(Value::as_str) {
                    Some("join") => Membership::Join,
                    Some("invite") => Membership::Invite,
                    Some("ban") => Membership::Ban,
                    Some("knock") => Membership::Knock,
                    _ => Membership::Leave,
                };
                if m == Membership::Leave
                    && e.sender != user.as_str()
                    && let Ok(sender) = ids::user_id(&e.sender)
                {
                    o.removed_by.insert(user.clone(), sender);
                }
                o.membership.insert(user, m);
            }
            (MARKER_TYPE, key) if key == space_group_id => o.marker = Some(e.content.clone()),
            _ => {}
        }
    }
    Ok(o)
}

/// Room version 12 (MSC4289) gives creators unlimited power: ruma's rules for the versions it knows;
/// a newer number, or an experimental `hydra` version, is taken to keep that rule.
pub fn version_has_creator_power(version: &str) -> bool {
    match RoomVersionId::try_from(version).ok().and_then(|v| v.rules()) {
        Some(rules) => rules.authorization.explicitly_privilege_room_creators,
        None => version.parse::<u32>().map_or(version.contains("hydra"), |v| v >= 12),
    }
}

/// What createRoom's power levels start from (Synapse's usual base, with `historical` as Synapse sets it):
/// `desired_power_levels` over it, with the operator as the only creator in room v12.
pub fn creation_base() -> PowerLevels {
    let base = json!({"users_default": 0, "events_default": 0, "state_default": 50, "historical": 100});
    PowerLevels::parse(&base).unwrap_or_default()
}

/// A power level as ruma holds it (levels outside JavaScript's safe integers are clamped).
pub fn level(l: i64) -> Int {
    Int::new_saturating(l)
}

/// The marker content for a space.
pub fn marker(space_group_id: &str) -> Value {
    json!({"spaceGroupId": space_group_id, "managedBy": crate::MANAGER})
}

/// Topic content: plain text with HTML stripped, plus the HTML as `m.topic` when there was any.
pub fn topic_content(description: &str) -> Value {
    let plain = strip_html(description);
    let mut text = Vec::new();
    if plain != description.trim() {
        text.push(json!({"mimetype": "text/html", "body": description.trim()}));
    }
    text.push(json!({"mimetype": "text/plain", "body": plain}));
    json!({"topic": plain, "m.topic": {"m.text": text}})
}

/// The text of an HTML description, whitespace collapsed. An HTML parser, not a tag stripper: `1 < 2`
/// stays text, every named and numeric entity is decoded, block elements separate words and inline
/// ones do not (`su<b>pp</b>ort` is one word).
pub fn strip_html(html: &str) -> String {
    let text = html2text::config::with_decorator(html2text::render::TrivialDecorator::new())
        .raw_mode(true)
        .allow_width_overflow()
        .string_from_read(html.as_bytes(), 10_000)
        // Only a write error could fail it, and it writes to memory: keep the description as it is.
        .unwrap_or_else(|_| html.to_owned());
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The power levels the room should have, starting from what it has: only the
/// keys the space owns and the levels of managed accounts are changed; keys
/// nobody here models are kept as read.
pub fn desired_power_levels(d: &DesiredRoom, observed: &PowerLevels, creators: &BTreeSet<OwnedUserId>) -> PowerLevels {
    let mut pl = observed.clone();
    let (manager, owned) = (level(d.manager_level), level(SPACE_OWNED_LEVEL));
    let l = &mut pl.levels;
    (l.invite, l.kick, l.ban, l.redact) = (manager, manager, manager, manager);
    for kind in [
        TimelineEventType::RoomName,
        TimelineEventType::RoomTopic,
        TimelineEventType::RoomAvatar,
        TimelineEventType::RoomPowerLevels,
    ] {
        l.events.insert(kind, owned);
    }
    // Creators (room v12) hold unlimited power already, and Synapse refuses power levels listing them.
    for creator in creators {
        l.users.remove(creator);
    }
    if !creators.contains(&d.operator) {
        l.users.insert(d.operator.clone(), owned);
    }
    for user in &d.managed {
        if creators.contains(user) || *user == d.operator {
            continue;
        }
        if d.managers.contains(user) {
            l.users.insert(user.clone(), manager);
        } else if l.users.get(user).is_some_and(|l| *l > Int::from(0) && *l < owned) {
            // A former manager: back to the default level.
            l.users.remove(user);
        }
    }
    pl
}

/// The calls that make the room match `d`, state first, then membership.
pub fn plan_room(d: &DesiredRoom, o: &ObservedRoom) -> Vec<RoomAction> {
    let mut actions = Vec::new();
    let wanted_marker = marker(&d.space_group_id);
    if o.marker.as_ref() != Some(&wanted_marker) {
        actions.push(RoomAction::SetMarker { space_group_id: d.space_group_id.clone(), content: wanted_marker });
    }
    if let Some(name) = &d.name
        && o.name.as_ref() != Some(name)
    {
        actions.push(RoomAction::SetRoomName { name: name.clone() });
    }
    if let Some(description) = &d.description {
        let content = topic_content(description);
        if o.topic.as_ref() != Some(&content) {
            actions.push(RoomAction::SetRoomTopic { content });
        }
    }
    match &d.avatar {
        AvatarWish::Set(url) if o.avatar_url.as_ref() != Some(url) => {
            actions.push(RoomAction::SetRoomAvatar { url: url.clone() })
        }
        AvatarWish::Clear if o.avatar_url.is_some() => actions.push(RoomAction::SetRoomAvatar { url: String::new() }),
        _ => {}
    }
    let levels = desired_power_levels(d, &o.power_levels, &o.creators);
    if levels != o.power_levels {
        actions.push(RoomAction::SetPowerLevels { levels });
    }
    for user in &d.members {
        let current = o.membership.get(user);
        let action = match (d.mode, current) {
            (_, Some(Membership::Join)) | (_, Some(Membership::Ban)) => None,
            (MembershipMode::Enforce, _) => Some(RoomAction::JoinUser { user_id: user.clone() }),
            // Invite mode respects leaving: only people never in the room, or
            // removed by the operator itself (listed again), are invited.
            (MembershipMode::Invite, None) => Some(RoomAction::InviteUser { user_id: user.clone() }),
            (MembershipMode::Invite, Some(Membership::Leave)) if o.removed_by.get(user) == Some(&d.operator) => {
                Some(RoomAction::InviteUser { user_id: user.clone() })
            }
            (MembershipMode::Invite, Some(_)) => None,
        };
        actions.extend(action);
    }
    for (user, m) in &o.membership {
        let present = matches!(m, Membership::Join | Membership::Invite);
        let removable = d.managed.contains(user) && *user != d.operator && !o.creators.contains(user);
        if present && removable && !d.members.contains(user) {
            actions.push(RoomAction::KickUser { user_id: user.clone(), reason: d.kick_reason.clone() });
        }
    }
    actions
}

/// Limits on what one pass may remove.
#[derive(Debug, Clone, Copy)]
pub struct BlastRadius {
    /// Kicks above this count are checked against `max_share`.
    pub min_kicks: usize,
    /// Largest share of the room's managed members one pass may kick.
    pub max_share: f64,
}

impl Default for BlastRadius {
    fn default() -> Self {
        Self { min_kicks: 5, max_share: 0.5 }
    }
}

/// Why a plan is too destructive to run unattended, if it is.
pub fn guard(d: &DesiredRoom, o: &ObservedRoom, actions: &[RoomAction], limits: BlastRadius) -> Option<String> {
    let kicks = actions.iter().filter(|a| matches!(a, RoomAction::KickUser { .. })).count();
    let managed_present = o
        .membership
        .iter()
        .filter(|(u, m)| {
            matches!(m, Membership::Join | Membership::Invite) && d.managed.contains(*u) && **u != d.operator
        })
        .count();
    if kicks > limits.min_kicks && (kicks as f64) > limits.max_share * managed_present as f64 {
        return Some(format!(
            "this change would remove {kicks} of the room's {managed_present} managed members (more than {} and more than {:.0}%)",
            limits.min_kicks,
            limits.max_share * 100.0
        ));
    }
    let current_managers: BTreeSet<&OwnedUserId> = o
        .power_levels
        .levels
        .users
        .iter()
        .filter(|(id, l)| {
            d.managed.contains(*id) && **id != d.operator && **l > Int::from(0) && **l < level(SPACE_OWNED_LEVEL)
        })
        .map(|(id, _)| id)
        .collect();
    if !current_managers.is_empty() && d.managers.is_empty() {
        return Some(format!("this change would demote all {} managers of the room", current_managers.len()));
    }
    None
}

/// What Synapse would show after `actions` (the convergence test's model).
pub fn apply(o: &ObservedRoom, actions: &[RoomAction]) -> ObservedRoom {
    let mut next = o.clone();
    for a in actions {
        match a {
            RoomAction::SetRoomName { name, .. } => next.name = Some(name.clone()),
            RoomAction::SetRoomTopic { content, .. } => next.topic = Some(content.clone()),
            RoomAction::SetRoomAvatar { url, .. } => next.avatar_url = Some(url.clone()).filter(|u| !u.is_empty()),
            RoomAction::SetPowerLevels { levels } => next.power_levels = levels.clone(),
            RoomAction::SetMarker { content, .. } => next.marker = Some(content.clone()),
            RoomAction::JoinUser { user_id, .. } => {
                next.membership.insert(user_id.clone(), Membership::Join);
            }
            RoomAction::InviteUser { user_id, .. } => {
                next.membership.insert(user_id.clone(), Membership::Invite);
                next.removed_by.remove(user_id);
            }
            RoomAction::KickUser { user_id, .. } => {
                next.membership.insert(user_id.clone(), Membership::Leave);
            }
        }
    }
    next
}

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;
