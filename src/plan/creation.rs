//! How a new room gets its first members.
//!
//! Synapse's admin join (`POST /_synapse/admin/v1/join/<room>`) sends an invite
//! before the join unless the room's join rule is exactly `public` at that moment
//! (`JoinRoomAliasServlet.on_POST`): two events per member in the invite-only rooms
//! the operator makes. With `--one-event-joins` a new room is populated through a
//! *private window*: created invite-only without its (guessable) alias, its id
//! recorded only in the operator account's own account data (not in the link's
//! status, which anyone with read access to the object sees), switched to `public`,
//! its first members joined (one event each), switched back to `invite`, anyone
//! who joined without being listed removed, and only then the alias published and
//! the id written to status. A restart that finds a recorded room without its
//! alias closes the window before anything else.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::{Value, json};

use crate::ids::{self, OwnedRoomId, OwnedUserId, RoomId, UserId};

/// The account-data type under which the room id of a link's room is recorded
/// (keyed like the alias, so two installations with different prefixes never meet).
pub fn record_type(alias_localpart: &str) -> String {
    format!("dev.exomatrix.room.{alias_localpart}")
}

pub fn record_content(room_id: &RoomId, space_group_id: &str) -> Value {
    json!({"roomId": room_id, "spaceGroupId": space_group_id})
}

/// The room a record names, if it is a record for `space_group_id` (and names a room id).
pub fn recorded_room(content: &Value, space_group_id: &str) -> Option<OwnedRoomId> {
    (content.get("spaceGroupId")?.as_str()? == space_group_id)
        .then(|| ids::room_id(content.get("roomId")?.as_str()?).ok())
        .flatten()
}

/// Fewer members than this are joined the ordinary way: the window itself costs two
/// join-rule events and a few calls, so it pays from a handful of members on.
pub const WINDOW_MIN_MEMBERS: usize = 4;

/// How a new room is populated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Population {
    /// Created with its alias; members joined afterwards (invite + join each).
    Ordinary,
    /// Through the private window (one event per first member).
    Window,
}

pub fn population(one_event_joins: bool, members: usize) -> Population {
    if one_event_joins && members >= WINDOW_MIN_MEMBERS { Population::Window } else { Population::Ordinary }
}

/// A link waits at least this long, from its creation, for the accounts of listed
/// people that are still being made; longer only while accounts keep appearing.
pub const ACCOUNT_WAIT: Duration = Duration::from_secs(90);

/// A link never waits longer than this for accounts, however steadily they appear.
pub const ACCOUNT_WAIT_MAX: Duration = Duration::from_secs(3600);

/// Whether to hold the room's creation: some listed people's accounts are being
/// made right now (their MatrixUser was never reconciled), and either the link is
/// young or accounts are still appearing (`since_progress`: since the last account
/// got its id, if any has). Creating once they exist puts every first member and
/// manager into the room in one go (power levels in `createRoom`, one population)
/// instead of one pass, one state read and possibly one power-level write per account
/// that turns up. At 10,000 accounts made at Synapse's pace (~30 min) a fixed wait
/// from the link's creation ran out long before most accounts existed. A stalled
/// account queue (nothing appeared for `ACCOUNT_WAIT`) or `ACCOUNT_WAIT_MAX` ends the wait.
pub fn hold_creation(accounts_in_progress: usize, link_age: Duration, since_progress: Option<Duration>) -> bool {
    let progressing = since_progress.is_some_and(|d| d < ACCOUNT_WAIT);
    accounts_in_progress > 0 && link_age < ACCOUNT_WAIT_MAX && (link_age < ACCOUNT_WAIT || progressing)
}

/// Joined accounts that are neither listed nor the operator: people who got into
/// the room while its join rule was `public`.
pub fn intruders(joined: &[OwnedUserId], members: &BTreeSet<OwnedUserId>, operator: &UserId) -> Vec<OwnedUserId> {
    joined.iter().filter(|u| *u != operator && !members.contains(*u)).cloned().collect()
}

/// Replaces every form of the room id (raw, percent-encoded in a path) in a message: nothing
/// about a room in its window may reach the link's status or Events, which more people read.
pub fn redact(message: &str, forms: &[&str]) -> String {
    forms.iter().filter(|f| !f.is_empty()).fold(message.to_owned(), |m, f| m.replace(f, "(the new room)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_names_its_room_only_for_its_own_space() {
        let r = record_content(&ids::room_id("!abc").unwrap(), "team");
        assert_eq!(recorded_room(&r, "team"), Some(ids::room_id("!abc").unwrap()));
        assert_eq!(recorded_room(&r, "other"), None);
        assert_eq!(recorded_room(&json!({}), "team"), None);
        assert_eq!(recorded_room(&json!({"spaceGroupId": "team", "roomId": 3}), "team"), None);
        assert_eq!(record_type("space_team"), "dev.exomatrix.room.space_team");
    }

    #[test]
    fn the_window_is_used_only_when_asked_for_and_worth_it() {
        assert_eq!(population(false, 40), Population::Ordinary);
        assert_eq!(population(true, 40), Population::Window);
        assert_eq!(population(true, WINDOW_MIN_MEMBERS - 1), Population::Ordinary);
        assert_eq!(population(true, 0), Population::Ordinary);
    }

    #[test]
    fn creation_waits_only_for_accounts_being_made_and_not_for_ever() {
        let (young, old) = (Duration::from_secs(5), ACCOUNT_WAIT + Duration::from_secs(1));
        let recent = Some(Duration::from_secs(2));
        assert!(hold_creation(3, young, None));
        assert!(!hold_creation(0, young, recent));
        // Past the first wait, only while accounts keep appearing.
        assert!(!hold_creation(3, old, None));
        assert!(hold_creation(3, old, recent));
        assert!(!hold_creation(3, old, Some(ACCOUNT_WAIT)));
        // And never past the cap.
        assert!(!hold_creation(3, ACCOUNT_WAIT_MAX, recent));
    }

    #[test]
    fn everyone_joined_but_the_listed_and_the_operator_is_an_intruder() {
        let id = |u: &str| ids::user_id(u).unwrap();
        let members: BTreeSet<OwnedUserId> = [id("@a:x"), id("@b:x")].into();
        let joined = ["@op:x", "@a:x", "@eve:x", "@b:x"].map(id);
        assert_eq!(intruders(&joined, &members, &id("@op:x")), vec![id("@eve:x")]);
    }

    #[test]
    fn redaction_hides_the_room_id_everywhere_in_a_message() {
        assert_eq!(
            redact("POST /_synapse/admin/v1/join/%21r failed: !r not found", &["!r", "%21r"]),
            "POST /_synapse/admin/v1/join/(the new room) failed: (the new room) not found"
        );
    }
}
