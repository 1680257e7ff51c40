//! Finding a MatrixSpace's room: already known, or created idempotently through
//! its alias (Synapse's createRoom is not atomic: a failed one may leave the room).

use std::collections::BTreeSet;

use kube::ResourceExt;
use kube::runtime::events::EventType;
use serde_json::{Value, json};

use super::write_status;
use crate::controller::adopt::{Claim, adopt_by_alias};
use crate::controller::status::publish;
use crate::controller::{Context, Error};
use crate::crd::{MatrixSpace, MatrixSpaceStatus};
use crate::ids::{self, IdError, OwnedRoomAliasId, OwnedRoomId, OwnedUserId, RoomAliasId};
use crate::plan::room;
use crate::plan::space::{self, DesiredSpace, SPACE_MARKER_TYPE};
use crate::session::Session;
use crate::synapse::{CreateRoom, StateEvent};

fn alias_of(space: &MatrixSpace, ctx: &Context, session: &Session) -> Result<(String, OwnedRoomAliasId), IdError> {
    let localpart =
        space::alias_localpart(&ctx.settings.alias_prefix, &space.namespace().unwrap_or_default(), &space.name_any());
    let alias = ids::alias_on(&localpart, &session.server_name)?;
    Ok((localpart, alias))
}

/// The space room: the one in status, or the one behind the alias if this operator
/// made it for this object, or a new one. Writes `status.roomId` as soon as it is known.
pub(super) async fn space_room(
    space: &MatrixSpace,
    ctx: &Context,
    session: &Session,
    desired: &DesiredSpace,
    st: &mut MatrixSpaceStatus,
) -> Result<OwnedRoomId, Error> {
    if let Some(id) = &st.room_id {
        return Ok(ids::room_id(id)?);
    }
    let (localpart, alias) = alias_of(space, ctx, session)?;
    if let Some(id) = adoptable(session, &alias, &desired.marker_key, &desired.marker).await? {
        return record(space, ctx, st, id, alias).await;
    }
    let request = create_request(session, desired, localpart).await?;
    let id = match session.admin.create_room(&request).await {
        Ok(id) => id,
        Err(e) => match adoptable(session, &alias, &desired.marker_key, &desired.marker).await? {
            Some(id) => id,
            None => return Err(Error::synapse("creating the space")(e)),
        },
    };
    publish(ctx, space, EventType::Normal, "RoomCreated", &format!("created the space {id} ({alias})")).await;
    record(space, ctx, st, id, alias).await
}

async fn record(
    space: &MatrixSpace,
    ctx: &Context,
    st: &mut MatrixSpaceStatus,
    id: OwnedRoomId,
    alias: OwnedRoomAliasId,
) -> Result<OwnedRoomId, Error> {
    st.room_id = Some(id.to_string());
    st.room_alias = Some(alias.to_string());
    write_status(space, ctx, st).await?;
    Ok(id)
}

/// The room behind `alias`, if this operator made it for this MatrixSpace.
async fn adoptable(
    session: &Session,
    alias: &RoomAliasId,
    key: &str,
    marker: &Value,
) -> Result<Option<OwnedRoomId>, Error> {
    let remedy = "this operator did not create for this MatrixSpace";
    adopt_by_alias(session, &Claim { what: "space", alias, marker: (SPACE_MARKER_TYPE, key, marker), remedy }).await
}

/// A private, invite-only room of type `m.space` with its state and power levels
/// in createRoom itself; members, rooms and avatar follow in the same reconcile.
async fn create_request(session: &Session, d: &DesiredSpace, localpart: String) -> Result<CreateRoom, Error> {
    let version = session.admin.default_room_version().await.map_err(Error::synapse("reading the room versions"))?;
    let creators: BTreeSet<OwnedUserId> =
        if room::version_has_creator_power(&version) { [session.user_id.clone()].into() } else { BTreeSet::new() };
    // The operator is listed at 100 where creators have no power of their own.
    let power_levels = space::desired_power_levels(d, &room::creation_base(), &creators);
    let state =
        |kind: &str, key: &str, content: Value| StateEvent { kind: kind.into(), state_key: key.into(), content };
    let mut initial_state = vec![
        state("m.room.guest_access", "", json!({"guest_access": "forbidden"})),
        state("m.room.history_visibility", "", json!({"history_visibility": "shared"})),
        state("m.room.join_rules", "", json!({"join_rule": "invite"})),
        state(SPACE_MARKER_TYPE, &d.marker_key, d.marker.clone()),
    ];
    if let Some(topic) = &d.topic {
        initial_state.push(state("m.room.topic", "", room::topic_content(topic)));
    }
    Ok(CreateRoom {
        preset: Some("private_chat"),
        room_version: Some(version),
        name: Some(d.name.clone()),
        room_alias_name: Some(localpart),
        visibility: Some("private"),
        initial_state,
        power_level_content_override: Some(power_levels.content()),
        creation_content: [("type".to_owned(), json!("m.space"))].into(),
        ..CreateRoom::default()
    })
}
