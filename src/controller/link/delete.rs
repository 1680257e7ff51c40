//! What happens to the room when its link is deleted.

use std::time::Duration;

use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use serde_json::{Value, json};

use super::resolve_members;
use crate::controller::status::publish;
use crate::controller::{Context, Error};
use crate::crd::{LinkDeletionPolicy, SpaceRoomLink};
use crate::ids::{self, RoomId};
use crate::plan::room;

pub(super) async fn cleanup(link: &SpaceRoomLink, ctx: &Context) -> Result<Action, Error> {
    let Some(room_id) = link.status.as_ref().and_then(|s| s.room_id.as_deref()) else {
        return Ok(Action::await_change());
    };
    let room_id = &ids::room_id(room_id)?;
    // A conflicting link never owned the room.
    if link.status.as_ref().is_some_and(|s| s.conditions.iter().any(|c| c.type_ == "Conflict" && c.status == "True")) {
        return Ok(Action::await_change());
    }
    // Deleted along with its ExoSource (garbage collection), not by a decision about this space.
    if link.spec.deletion_policy != LinkDeletionPolicy::Retain
        && let Some(why) = crate::controller::cascade::retained_by_source(link, ctx).await?
    {
        publish(ctx, link, EventType::Normal, "RoomRetained", &format!("kept room {room_id}: {why}")).await;
        return Ok(Action::await_change());
    }
    match link.spec.deletion_policy {
        LinkDeletionPolicy::Retain => {}
        LinkDeletionPolicy::Archive => archive(link, ctx, room_id).await?,
        LinkDeletionPolicy::Delete => {
            let session = ctx.session().await?;
            let delete_id = session.admin.delete_room(room_id).await.map_err(Error::synapse("deleting the room"))?;
            let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
            loop {
                let state = session
                    .admin
                    .delete_status(&delete_id)
                    .await
                    .map_err(Error::synapse("waiting for the room deletion"))?;
                match state.as_str() {
                    "complete" => break,
                    "failed" => {
                        return Err(Error::needs_person(
                            "RoomDeletionFailed",
                            format!("Synapse could not delete room {room_id}; see Synapse's log"),
                        ));
                    }
                    _ if tokio::time::Instant::now() > deadline => {
                        // Synapse is still at it: the next attempt starts a new deletion of the same room.
                        return Err(Error::waiting(
                            "RoomDeletionPending",
                            format!("deletion of room {room_id} still {state} after 2 minutes"),
                        ));
                    }
                    _ => tokio::time::sleep(Duration::from_millis(300)).await,
                }
            }
            publish(ctx, link, EventType::Normal, "RoomDeleted", &format!("deleted and purged room {room_id}")).await;
        }
    }
    Ok(Action::await_change())
}

/// Kicks managed members, makes the room read-only and marks its topic as archived.
async fn archive(link: &SpaceRoomLink, ctx: &Context, room_id: &RoomId) -> Result<(), Error> {
    let session = ctx.session().await?;
    let admin = &session.admin;
    let state = admin.full_state(room_id).await.map_err(Error::synapse("reading the room state"))?;
    let observed = room::observe(&state, &link.spec.space_group_id)?;
    let managed = resolve_members(link, ctx, observed.named().map(|u| u.as_str())).await?.managed;
    for (user, m) in &observed.membership {
        let present = matches!(m, room::Membership::Join | room::Membership::Invite);
        if present && managed.contains(user.as_str()) && *user != session.user_id && !observed.creators.contains(user) {
            let reason = format!("the space {} was archived", link.spec.space_group_id);
            admin.kick(room_id, user, &reason).await.map_err(Error::synapse(format!("removing {user}")))?;
        }
    }
    let mut pl = observed.power_levels.clone();
    let owned = room::level(room::SPACE_OWNED_LEVEL);
    (pl.levels.events_default, pl.levels.state_default, pl.levels.invite) = (owned, owned, owned);
    if pl != observed.power_levels {
        admin
            .put_state(room_id, "m.room.power_levels", "", &pl.content())
            .await
            .map_err(Error::synapse("making the room read-only"))?;
    }
    let plain = observed.topic.as_ref().and_then(|t| t.get("topic")).and_then(Value::as_str).unwrap_or("").to_owned();
    if !plain.starts_with("[archived]") {
        let topic = json!({"topic": format!("[archived] {plain}").trim_end().to_owned()});
        admin.put_state(room_id, "m.room.topic", "", &topic).await.map_err(Error::synapse("marking the topic"))?;
    }
    publish(ctx, link, EventType::Normal, "RoomArchived", &format!("archived room {room_id}")).await;
    Ok(())
}
