//! Adopting the room behind an operator-made alias. createRoom is not atomic: a crash or a
//! failed call may leave the room and its alias, and the next pass must take that room over,
//! never a room someone else made under the same alias.

use std::time::Duration;

use serde_json::Value;

use super::Error;
use crate::ids::{OwnedRoomId, RoomAliasId};
use crate::session::Session;

/// How long a room of the operator's holding only its create event may still be in the making.
const CREATION_GRACE: Duration = Duration::from_secs(20);

/// How the room of one object is recognised as this operator's.
pub struct Claim<'a> {
    /// "room" or "space", for messages.
    pub what: &'static str,
    pub alias: &'a RoomAliasId,
    /// The marker state event written at creation: (type, state key, content).
    pub marker: (&'a str, &'a str, &'a Value),
    /// What a person can do when someone else holds the alias.
    pub remedy: &'a str,
}

/// The room behind the alias if this operator made it for this object: its marker says so,
/// or (a room made before markers existed) the operator created it. Another room is AliasTaken.
///
/// A room the operator created that nobody is in is not adopted: Synapse stopped during createRoom
/// leaves the alias on a room holding only its create event (found by the fault campaign), and
/// nobody can ever join a room with no member. Its alias is freed, so that a new room is made;
/// the dead room itself is left as it is. Synapse makes the alias before the creator's join, so a
/// createRoom still under way (sent by a process stopped just before) looks the same for a moment:
/// a room with nothing but its create event is watched for up to `CREATION_GRACE` first.
pub async fn adopt_by_alias(session: &Session, claim: &Claim<'_>) -> Result<Option<OwnedRoomId>, Error> {
    let (admin, what, alias) = (&session.admin, claim.what, claim.alias);
    let Some(id) = admin.resolve_alias(alias).await.map_err(Error::synapse(format!("resolving the {what} alias")))?
    else {
        return Ok(None);
    };
    let (kind, key, wanted) = claim.marker;
    // The marker is read as a member: a room the operator is not in is looked up as admin.
    let ours = match admin.room_state(&id, kind, key).await.ok().flatten() {
        Some(marker) => marker == *wanted,
        None => {
            let room = &id;
            let lookup = || async move {
                admin.room_details(room).await.map_err(Error::synapse(format!("looking up the {what}")))
            };
            let mut details = lookup().await?;
            let mine = details.as_ref().is_some_and(|d| d.creator.as_ref() == Some(&session.user_id));
            let deadline = tokio::time::Instant::now() + CREATION_GRACE;
            while mine
                && details.as_ref().is_some_and(|d| d.joined_local_members == 0 && d.state_events < 2)
                && tokio::time::Instant::now() < deadline
            {
                tokio::time::sleep(Duration::from_secs(1)).await;
                details = lookup().await?;
            }
            if mine && details.is_some_and(|d| d.joined_local_members == 0) {
                admin.delete_alias(alias).await.map_err(Error::synapse(format!("freeing the {what} alias")))?;
                tracing::warn!(%alias, room = %id, "the alias named a room this operator created that nobody is in (a createRoom cut short); alias freed, a new {what} is made");
                return Ok(None);
            }
            mine
        }
    };
    if ours {
        return Ok(Some(id));
    }
    let remedy = claim.remedy;
    Err(Error::needs_person("AliasTaken", format!("the alias {alias} belongs to room {id}, which {remedy}")))
}
