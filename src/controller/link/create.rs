//! Finding a link's room: already known, linked by id, or created idempotently.

use std::collections::BTreeSet;

use kube::runtime::events::EventType;
use serde_json::{Value, json};

use super::{desired_room, resolve_members, write_status};
use crate::controller::adopt::{Claim, adopt_by_alias};
use crate::controller::status::publish;
use crate::controller::{Context, Error};
use crate::crd::{SpaceRoomLink, SpaceRoomLinkStatus};
use crate::plan::AvatarWish;
use crate::plan::room::{self, MARKER_TYPE};
use crate::session::Session;
use crate::synapse::{CreateRoom, StateEvent};

pub(super) fn alias_of(link: &SpaceRoomLink, ctx: &Context, session: &Session) -> String {
    format!("#{}{}:{}", ctx.settings.alias_prefix, link.spec.space_group_id, session.server_name)
}

/// The room of this link: already known, linked by id, or created (idempotently
/// through its alias). Writes `status.roomId` as soon as it is known.
pub(super) async fn room_of(
    link: &SpaceRoomLink,
    ctx: &Context,
    session: &Session,
    status: &mut SpaceRoomLinkStatus,
) -> Result<Option<String>, Error> {
    let admin = &session.admin;
    if let Some(id) = status.room_id.clone().filter(|id| link.spec.room_id.as_ref().is_none_or(|wanted| wanted == id)) {
        return Ok(Some(id));
    }
    if let Some(id) = &link.spec.room_id {
        if link.spec.suspend {
            return Ok(Some(id.clone()));
        }
        admin.room_details(id).await.map_err(Error::synapse("looking up the room"))?.ok_or_else(|| {
            Error::invalid_spec(
                "RoomNotFound",
                format!("room {id} does not exist on this homeserver; nothing was created"),
            )
        })?;
        let members = admin.room_members(id).await.map_err(Error::synapse("listing the room's members"))?;
        if !members.contains(&session.user_id) {
            admin
                .make_room_admin(id, &session.user_id)
                .await
                .map_err(Error::synapse("making the operator room admin"))?;
            admin.join(id).await.map_err(Error::synapse("joining the room"))?;
            publish(ctx, link, EventType::Normal, "RoomLinked", &format!("took over room {id}")).await;
        }
        record_room(link, ctx, status, id, None).await?;
        return Ok(Some(id.clone()));
    }
    if !link.spec.create || link.spec.suspend {
        return Ok(None);
    }
    let alias = alias_of(link, ctx, session);
    if let Some(id) = adoptable(link, session, &alias).await? {
        record_room(link, ctx, status, &id, Some(&alias)).await?;
        return Ok(Some(id));
    }
    let request = create_request(link, ctx, session).await?;
    let id = match admin.create_room(&request).await {
        Ok(id) => id,
        // createRoom is not atomic: a failed one may still have made the room and its alias.
        Err(e) => match adoptable(link, session, &alias).await? {
            Some(id) => id,
            None => return Err(Error::synapse("creating the room")(e)),
        },
    };
    publish(ctx, link, EventType::Normal, "RoomCreated", &format!("created room {id} ({alias})")).await;
    record_room(link, ctx, status, &id, Some(&alias)).await?;
    Ok(Some(id))
}

/// The room behind the alias, if this operator made it for this link.
async fn adoptable(link: &SpaceRoomLink, session: &Session, alias: &str) -> Result<Option<String>, Error> {
    let sgid = &link.spec.space_group_id;
    let marker = room::marker(sgid);
    let remedy = "this operator did not create; set roomId to link it";
    adopt_by_alias(session, &Claim { what: "room", alias, marker: (MARKER_TYPE, sgid, &marker), remedy }).await
}

async fn create_request(link: &SpaceRoomLink, ctx: &Context, session: &Session) -> Result<CreateRoom, Error> {
    let version = session.admin.default_room_version().await.map_err(Error::synapse("reading the room versions"))?;
    let creators: BTreeSet<String> =
        if room::version_has_creator_power(&version) { [session.user_id.clone()].into() } else { BTreeSet::new() };
    // Members and avatar come in the first reconcile after creation; the power
    // levels and all state go into createRoom itself.
    let m = resolve_members(link, ctx).await?;
    let desired = desired_room(link, session, "", m, AvatarWish::Leave);
    let base = json!({"users_default": 0, "events_default": 0, "state_default": 50, "historical": 100});
    let mut power_levels = room::desired_power_levels(&desired, &base, &creators);
    if creators.is_empty() {
        power_levels["users"][&session.user_id] = json!(room::SPACE_OWNED_LEVEL);
    }
    let state =
        |kind: &str, key: &str, content: Value| StateEvent { kind: kind.into(), state_key: key.into(), content };
    let mut initial_state = vec![
        state("m.room.guest_access", "", json!({"guest_access": "forbidden"})),
        state("m.room.history_visibility", "", json!({"history_visibility": "shared"})),
        state("m.room.join_rules", "", json!({"join_rule": "invite"})),
        state(MARKER_TYPE, &link.spec.space_group_id, room::marker(&link.spec.space_group_id)),
    ];
    if let Some(d) = &link.spec.description {
        initial_state.push(state("m.room.topic", "", room::topic_content(d)));
    }
    Ok(CreateRoom {
        preset: Some("private_chat"),
        room_version: Some(version),
        name: link.spec.display_name.clone(),
        room_alias_name: Some(format!("{}{}", ctx.settings.alias_prefix, link.spec.space_group_id)),
        visibility: Some("private"),
        initial_state,
        power_level_content_override: Some(power_levels),
        ..CreateRoom::default()
    })
}

async fn record_room(
    link: &SpaceRoomLink,
    ctx: &Context,
    status: &mut SpaceRoomLinkStatus,
    room_id: &str,
    alias: Option<&str>,
) -> Result<(), Error> {
    status.room_id = Some(room_id.to_owned());
    status.room_alias = alias.map(str::to_owned);
    write_status(link, ctx, status).await
}
