//! The private population window of a new room (`--one-event-joins`, see `plan::creation`):
//! record the room privately, open it (`public`), join the first members with one event
//! each, close it (`invite`), remove whoever got in unlisted, then publish the alias.
//! Until the alias and `status.roomId` appear, the room's id is known only to Synapse
//! and the operator's own account data; nothing written to Kubernetes names it.

use std::collections::BTreeSet;

use futures::StreamExt;
use kube::runtime::events::EventType;
use serde_json::json;

use super::resolve_members;
use crate::controller::status::publish;
use crate::controller::{Context, Error};
use crate::crd::SpaceRoomLink;
use crate::ids::{OwnedRoomId, OwnedUserId, RoomAliasId, RoomId};
use crate::plan::creation;
use crate::session::Session;
use crate::synapse::{Synapse, enc};

const JOIN_RULES: &str = "m.room.join_rules";

pub(super) fn record_type(link: &SpaceRoomLink, ctx: &Context) -> String {
    creation::record_type(&format!("{}{}", ctx.settings.alias_prefix, link.spec.space_group_id))
}

/// The room an earlier pass recorded for this link, if it still exists.
pub(super) async fn recorded(
    link: &SpaceRoomLink,
    ctx: &Context,
    session: &Session,
) -> Result<Option<OwnedRoomId>, Error> {
    let admin = &session.admin;
    let kind = record_type(link, ctx);
    let content =
        admin.account_data(&session.user_id, &kind).await.map_err(Error::synapse("reading the room record"))?;
    let Some(id) = content.and_then(|c| creation::recorded_room(&c, &link.spec.space_group_id)) else {
        return Ok(None);
    };
    // A room deleted since (deletionPolicy: Delete) is no room to finish.
    let details = admin.room_details(&id).await.map_err(hidden(&id, "looking up the recorded room"))?;
    Ok(details.filter(|d| d.joined_local_members > 0).map(|_| id))
}

/// Records the room, opens it, joins `members` (one event each), and closes it again
/// whatever happened in between. Joins that failed are left to the ordinary pass.
pub(super) async fn populate(
    link: &SpaceRoomLink,
    ctx: &Context,
    session: &Session,
    room_id: &RoomId,
    members: &BTreeSet<OwnedUserId>,
) -> Result<(), Error> {
    let admin = &session.admin;
    // Durable before the window opens: a restart finds the room here and closes it first.
    let record = creation::record_content(room_id, &link.spec.space_group_id);
    admin
        .put_account_data(&session.user_id, &record_type(link, ctx), &record)
        .await
        .map_err(hidden(room_id, "recording the new room"))?;
    let opened = async {
        admin
            .put_state(room_id, JOIN_RULES, "", &json!({"join_rule": "public"}))
            .await
            .map_err(hidden(room_id, "opening the room to its first members"))?;
        let first: Vec<OwnedUserId> = members.iter().filter(|m| **m != session.user_id).cloned().collect();
        let failed: Vec<Option<(OwnedUserId, crate::synapse::Error)>> = futures::stream::iter(first)
            .map(|user| join(admin, room_id, user))
            .buffer_unordered(ctx.settings.join_concurrency.max(1))
            .collect()
            .await;
        for (user, e) in failed.into_iter().flatten() {
            let why = creation::redact(&crate::error_chain::chain(&e), &[room_id.as_str(), &enc(room_id.as_str())]);
            tracing::warn!(%user, error = %why, "first join failed; the next pass joins the ordinary way");
        }
        Ok::<(), Error>(())
    }
    .await;
    close(link, ctx, session, room_id).await?;
    opened
}

async fn join(admin: &Synapse, room_id: &RoomId, user: OwnedUserId) -> Option<(OwnedUserId, crate::synapse::Error)> {
    admin.admin_join(room_id, &user).await.err().map(|e| (user, e))
}

/// Closes the window (join rule back to `invite`; the same content again makes no new
/// event) and removes everyone who is joined without being listed.
pub(super) async fn close(
    link: &SpaceRoomLink,
    ctx: &Context,
    session: &Session,
    room_id: &RoomId,
) -> Result<(), Error> {
    let admin = &session.admin;
    admin
        .put_state(room_id, JOIN_RULES, "", &json!({"join_rule": "invite"}))
        .await
        .map_err(hidden(room_id, "closing the room to strangers"))?;
    let joined = admin.room_members(room_id).await.map_err(hidden(room_id, "listing the room's first members"))?;
    let members = super::user_ids(&resolve_members(link, ctx, []).await?.members);
    for intruder in creation::intruders(&joined, &members, &session.user_id) {
        let reason = "joined while the room was being set up, without being a member of the space";
        admin.kick(room_id, &intruder, reason).await.map_err(hidden(room_id, format!("removing {intruder}")))?;
        let note = format!("removed {intruder}, who joined the new room before it was closed, unlisted");
        publish(ctx, link, EventType::Warning, "IntruderRemoved", &note).await;
    }
    Ok(())
}

/// Publishes the alias (and the room's canonical alias) once the window is closed.
/// An alias someone else took meanwhile stalls the link, as before creation.
pub(super) async fn publish_alias(session: &Session, room_id: &RoomId, alias: &RoomAliasId) -> Result<(), Error> {
    let admin = &session.admin;
    if !admin.put_alias(alias, room_id).await.map_err(Error::synapse("publishing the room alias"))? {
        match admin.resolve_alias(alias).await.map_err(Error::synapse("resolving the room alias"))? {
            Some(id) if id == room_id => {}
            Some(other) => {
                return Err(Error::needs_person(
                    "AliasTaken",
                    format!("the alias {alias} was taken by room {other} while this link's room was being set up"),
                ));
            }
            None => return Err(Error::waiting("AliasPending", format!("the alias {alias} is being changed"))),
        }
    }
    admin
        .put_state(room_id, "m.room.canonical_alias", "", &json!({"alias": alias}))
        .await
        .map_err(Error::synapse("setting the canonical alias"))?;
    Ok(())
}

/// A Synapse failure about a room in its window, with the room's id taken out of the
/// message: it goes to the link's status, its Events and the log.
fn hidden(room_id: &RoomId, action: impl Into<String>) -> impl FnOnce(crate::synapse::Error) -> Error {
    let (room_id, action) = (room_id.to_string(), action.into());
    move |e| {
        let message = creation::redact(&crate::error_chain::chain(&e), &[&room_id, &enc(&room_id)]);
        Error::waiting("RoomSetup", format!("{action} failed: {message}"))
    }
}
