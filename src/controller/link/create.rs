//! Finding a link's room: already known, linked by id, or created idempotently.

use std::collections::{BTreeMap, BTreeSet};

use kube::ResourceExt;
use kube::runtime::events::EventType;
use kube::runtime::reflector::{ObjectRef, Store};
use serde_json::{Value, json};

use super::{desired_room, resolve_members, window, write_status};
use crate::controller::adopt::{Claim, adopt_by_alias};
use crate::controller::status::publish;
use crate::controller::user_index::UserIndex;
use crate::controller::{Context, Error};
use crate::crd::{MatrixUser, SpaceRoomLink, SpaceRoomLinkStatus};
use crate::ids::{self, IdError, OwnedRoomAliasId, OwnedRoomId, OwnedUserId, RoomAliasId, RoomId};
use crate::plan::AvatarWish;
use crate::plan::creation::{self, Population};
use crate::plan::members::Members;
use crate::plan::room::{self, MARKER_TYPE};
use crate::session::Session;
use crate::synapse::{CreateRoom, StateEvent};

pub(super) fn alias_of(link: &SpaceRoomLink, ctx: &Context, session: &Session) -> Result<OwnedRoomAliasId, IdError> {
    ids::alias_on(&format!("{}{}", ctx.settings.alias_prefix, link.spec.space_group_id), &session.server_name)
}

/// The room of this link: already known, linked by id, or created (idempotently
/// through its alias). Writes `status.roomId` as soon as it is known.
pub(super) async fn room_of(
    link: &SpaceRoomLink,
    ctx: &Context,
    session: &Session,
    status: &mut SpaceRoomLinkStatus,
) -> Result<Option<OwnedRoomId>, Error> {
    let admin = &session.admin;
    if let Some(id) = status.room_id.clone().filter(|id| link.spec.room_id.as_ref().is_none_or(|wanted| wanted == id)) {
        return Ok(Some(ids::room_id(&id)?));
    }
    if let Some(id) = &link.spec.room_id {
        let id = &ids::room_id(id)?;
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
    let alias = alias_of(link, ctx, session)?;
    // A room recorded privately by an earlier pass whose alias is not out yet: its
    // population window may still be open (a crash, a failure). Close it before anything else.
    if let Some(id) = window::recorded(link, ctx, session).await? {
        if admin.resolve_alias(&alias).await.map_err(Error::synapse("resolving the room alias"))? != Some(id.clone()) {
            window::close(link, ctx, session, &id).await?;
            window::publish_alias(session, &id, &alias).await?;
            publish(ctx, link, EventType::Normal, "RoomCreated", &format!("created room {id} ({alias})")).await;
        }
        record_room(link, ctx, status, &id, Some(&alias)).await?;
        return Ok(Some(id));
    }
    if let Some(id) = adoptable(link, session, &alias).await? {
        record_room(link, ctx, status, &id, Some(&alias)).await?;
        return Ok(Some(id));
    }
    let members = resolve_members(link, ctx, []).await?;
    let population = creation::population(ctx.settings.one_event_joins, members.members.len());
    let request = create_request(link, ctx, session, members.clone(), population).await?;
    let id = match (admin.create_room(&request).await, population) {
        (Ok(id), _) => id,
        // createRoom is not atomic: a failed one may still have made the room and its alias.
        (Err(e), Population::Ordinary) => match adoptable(link, session, &alias).await? {
            Some(id) => id,
            None => return Err(Error::synapse("creating the room")(e)),
        },
        // Without an alias or a record, a half-made room is an invite-only room nobody is in: left alone.
        (Err(e), Population::Window) => return Err(Error::synapse("creating the room")(e)),
    };
    if population == Population::Window {
        window::populate(link, ctx, session, &id, &super::user_ids(&members.members)).await?;
        window::publish_alias(session, &id, &alias).await?;
    }
    publish(ctx, link, EventType::Normal, "RoomCreated", &format!("created room {id} ({alias})")).await;
    record_room(link, ctx, status, &id, Some(&alias)).await?;
    Ok(Some(id))
}

/// The `RoomReady` reason while creation is held for accounts being made.
pub(super) const HOLDING: &str = "WaitingForAccounts";

pub(super) fn holding(status: &SpaceRoomLinkStatus) -> bool {
    status.conditions.iter().any(|c| c.type_ == "RoomReady" && c.status == "False" && c.reason == HOLDING)
}

/// Whether to hold the room's creation for listed people whose accounts are being
/// made right now (see `creation::hold_creation`); `Some(how many)` when so.
pub(super) fn accounts_in_progress(link: &SpaceRoomLink, ctx: &Context) -> Option<usize> {
    let unborn = link.status.as_ref().is_none_or(|s| s.room_id.is_none()) && link.spec.room_id.is_none();
    if !unborn || !link.spec.create || link.spec.suspend {
        return None;
    }
    let in_progress = listed_in_progress(link, ctx.users.as_ref()?, &ctx.user_index);
    let age = link
        .creation_timestamp()
        .map(|t| jiff::Timestamp::now().duration_since(t.0).unsigned_abs())
        .unwrap_or_default();
    creation::hold_creation(in_progress, age, ctx.accounts_made.since()).then_some(in_progress)
}

/// How many of the link's listed people have an account being made right now: enabled MatrixUsers never
/// reconciled. Through the index: a scan of every MatrixUser per pass cost 11 s of CPU in the first minute of
/// B10k (1,000 young links polling every 5 s against 10,000 MatrixUsers).
pub fn listed_in_progress(link: &SpaceRoomLink, users: &Store<MatrixUser>, index: &UserIndex) -> usize {
    let listed: BTreeSet<&String> = link.spec.members.iter().chain(&link.spec.managers).collect();
    let ns = link.namespace().unwrap_or_default();
    listed
        .iter()
        .flat_map(|username| index.named(&ns, username))
        .filter_map(|name| users.get(&ObjectRef::new(&name).within(&ns)))
        .filter(|u| u.spec.enabled && u.metadata.deletion_timestamp.is_none())
        .filter(|u| u.status.as_ref().is_none_or(|s| s.observed_generation.is_none() && s.user_id.is_none()))
        .count()
}

/// Whether an account change is worth a pass of `link`: a link holding its room's creation for accounts looks
/// again only once none of its listed people's accounts is still being made (its 30 s recheck covers an account
/// that fails). Waking it as each of its accounts appeared cost ~10 passes and status writes per link at B10k.
pub fn worth_waking(link: &SpaceRoomLink, users: &Store<MatrixUser>, index: &UserIndex) -> bool {
    !link.status.as_ref().is_some_and(holding) || listed_in_progress(link, users, index) == 0
}

/// When an account last got its id: whether accounts are still appearing (see `creation::hold_creation`).
#[derive(Default)]
pub struct AccountsMade(std::sync::Mutex<Option<std::time::Instant>>);

impl AccountsMade {
    pub fn mark(&self) {
        *self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(std::time::Instant::now());
    }

    pub fn since(&self) -> Option<std::time::Duration> {
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).map(|t| t.elapsed())
    }
}

/// The room behind the alias, if this operator made it for this link.
async fn adoptable(link: &SpaceRoomLink, session: &Session, alias: &RoomAliasId) -> Result<Option<OwnedRoomId>, Error> {
    let sgid = &link.spec.space_group_id;
    let marker = room::marker(sgid);
    let remedy = "this operator did not create; set roomId to link it";
    adopt_by_alias(session, &Claim { what: "room", alias, marker: (MARKER_TYPE, sgid, &marker), remedy }).await
}

async fn create_request(
    link: &SpaceRoomLink,
    ctx: &Context,
    session: &Session,
    m: Members,
    population: Population,
) -> Result<CreateRoom, Error> {
    let version = default_room_version(session).await?;
    let creators: BTreeSet<OwnedUserId> =
        if room::version_has_creator_power(&version) { [session.user_id.clone()].into() } else { BTreeSet::new() };
    // Members (unless populated in the window) and avatar come in the first reconcile after
    // creation; the power levels, with every manager known now, and all state go into createRoom.
    let desired = desired_room(link, session, m, AvatarWish::Leave);
    // The operator is listed at 100 where creators have no power of their own.
    let power_levels = room::desired_power_levels(&desired, &room::creation_base(), &creators);
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
        // In the window the alias, which anyone can guess, comes only once the room is closed again.
        room_alias_name: (population == Population::Ordinary)
            .then(|| format!("{}{}", ctx.settings.alias_prefix, link.spec.space_group_id)),
        visibility: Some("private"),
        initial_state,
        power_level_content_override: Some(power_levels.content()),
        ..CreateRoom::default()
    })
}

/// The room version new rooms get, read once per homeserver: it changes only with Synapse's configuration.
async fn default_room_version(session: &Session) -> Result<String, Error> {
    static KNOWN: std::sync::Mutex<BTreeMap<String, String>> = std::sync::Mutex::new(BTreeMap::new());
    let key = session.admin.base_url().to_string();
    if let Some(v) = KNOWN.lock().unwrap_or_else(|p| p.into_inner()).get(&key) {
        return Ok(v.clone());
    }
    let version = session.admin.default_room_version().await.map_err(Error::synapse("reading the room versions"))?;
    KNOWN.lock().unwrap_or_else(|p| p.into_inner()).insert(key, version.clone());
    Ok(version)
}

async fn record_room(
    link: &SpaceRoomLink,
    ctx: &Context,
    status: &mut SpaceRoomLinkStatus,
    room_id: &RoomId,
    alias: Option<&RoomAliasId>,
) -> Result<(), Error> {
    status.room_id = Some(room_id.to_string());
    status.room_alias = alias.map(ToString::to_string);
    write_status(link, ctx, status).await
}

#[cfg(test)]
mod tests {
    use kube::runtime::reflector::store::Writer;
    use kube::runtime::watcher;

    use super::*;
    use crate::controller::conditions;
    use crate::crd::{MatrixUserSpec, MatrixUserStatus, SpaceRoomLinkSpec};

    fn person(name: &str, id: Option<&str>) -> MatrixUser {
        let spec: MatrixUserSpec = serde_json::from_value(json!({"username": name})).expect("spec");
        let mut u = MatrixUser::new(name, spec);
        u.metadata.namespace = Some("ns".into());
        u.metadata.uid = Some(name.into());
        u.status = id.map(|i| MatrixUserStatus { user_id: Some(i.into()), ..Default::default() });
        u
    }

    fn link(holding_status: bool) -> SpaceRoomLink {
        let spec: SpaceRoomLinkSpec =
            serde_json::from_value(json!({"spaceGroupId": "team", "create": true, "members": ["ann", "bob"]}))
                .expect("spec");
        let mut l = SpaceRoomLink::new("team", spec);
        l.metadata.namespace = Some("ns".into());
        let mut status = SpaceRoomLinkStatus::default();
        if holding_status {
            conditions::set(&mut status.conditions, "RoomReady", false, HOLDING, "waiting", Some(1));
        }
        l.status = Some(status);
        l
    }

    /// The MatrixUser cache and index as the watch leaves them after `users`.
    fn seen(users: &[MatrixUser]) -> (Store<MatrixUser>, UserIndex) {
        let (mut writer, index) = (Writer::default(), UserIndex::default());
        for u in users {
            let event = watcher::Event::Apply(u.clone());
            writer.apply_watcher_event(&event);
            index.observe(&event);
        }
        (writer.as_reader(), index)
    }

    #[test]
    fn a_holding_link_is_woken_only_when_its_last_account_is_made() {
        let (ann_made, bob_made) = (person("ann", Some("@ann:x")), person("bob", Some("@bob:x")));
        let (users, index) = seen(&[ann_made.clone(), person("bob", None)]);
        assert_eq!(listed_in_progress(&link(true), &users, &index), 1);
        assert!(!worth_waking(&link(true), &users, &index), "bob's account is still being made");
        assert!(worth_waking(&link(false), &users, &index), "a link not holding follows every account");
        let (users, index) = seen(&[ann_made, bob_made]);
        assert!(worth_waking(&link(true), &users, &index), "the last account is made: create the room");
    }

    #[test]
    fn a_disabled_or_already_reconciled_person_is_not_waited_for() {
        let mut off = person("bob", None);
        off.spec.enabled = false;
        let mut failed = person("ann", None);
        failed.status = Some(MatrixUserStatus { observed_generation: Some(1), ..Default::default() });
        let (users, index) = seen(&[off, failed]);
        assert_eq!(listed_in_progress(&link(true), &users, &index), 0);
        assert!(worth_waking(&link(true), &users, &index));
    }
}
