//! The SpaceRoomLink controller: one eXo space, one Matrix room.

mod create;
mod delete;
pub mod leave;
mod window;

pub use create::{AccountsMade, worth_waking};

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use futures::StreamExt;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::reflector::ObjectRef;
use kube::{Api, ResourceExt};
use serde_json::json;

use super::conditions::{self, Progress};
use super::status::{self, publish};
use super::{Context, Error, avatar};
use crate::crd::{MatrixUser, PlanSummary, SpaceRoomLink, SpaceRoomLinkStatus};
use crate::ids::{self, OwnedRoomId, OwnedUserId, RoomId};
use crate::plan::AvatarWish;
use crate::plan::members::{self, Members, UserFacts};
use crate::plan::room::{self, DesiredRoom, MARKER_TYPE, RoomAction, plan_room};
use crate::session::Session;

pub const FINALIZER: &str = "exomatrix.dev/room";
/// Lets one pass exceed the blast-radius limit; removed after that pass.
pub const ALLOW_MASS_CHANGE: &str = "exomatrix.dev/allow-mass-change";
/// Pending usernames listed in status; the count covers the rest.
const PENDING_LISTED: usize = 20;
const FIRST_ACTIONS: usize = 10;

pub async fn reconcile(link: Arc<SpaceRoomLink>, ctx: Arc<Context>) -> Result<Action, Error> {
    let (apply, cleanup): (status::Step<_>, status::Step<_>) =
        (|o, c| Box::pin(apply(o, c)), |o, c| Box::pin(delete::cleanup(o, c)));
    status::reconcile_finalized("link", FINALIZER, link, &ctx, apply, cleanup).await
}

/// What of a link starts a pass of its own controller: its spec and deletion (see
/// `shared::generation_fingerprint`) and the one-pass annotation; not its status or finalizer, which passes write.
pub fn fingerprint(link: &SpaceRoomLink) -> u64 {
    let allow = link.annotations().get(ALLOW_MASS_CHANGE);
    super::shared::fingerprint_of(&(super::shared::generation_fingerprint(link), allow))
}

/// What of a MatrixUser matters to links: which account, if any, may be a member.
type Standing = Option<String>;

/// Remembers each MatrixUser's standing so that only changes of intent (an
/// account getting its id, disabled, deleted) wake the links, not every status
/// write. Readiness is not part of it: a failing account keeps its rooms.
#[derive(Default)]
pub struct ReadinessCache(std::sync::Mutex<BTreeMap<String, Standing>>);

impl ReadinessCache {
    /// True when `user`'s standing differs from the last time it was seen.
    /// Call `forget` when nothing could be woken, so the change is not lost.
    pub fn changed(&self, user: &MatrixUser) -> bool {
        let now = facts(user).member_id().map(str::to_owned);
        let key = format!("{}/{}", user.namespace().unwrap_or_default(), user.spec.username);
        let mut seen = self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        seen.insert(key, now.clone()) != Some(now)
    }

    pub fn forget(&self, user: &MatrixUser) {
        let key = format!("{}/{}", user.namespace().unwrap_or_default(), user.spec.username);
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).remove(&key);
    }
}

/// The intent a MatrixUser expresses, as the membership plan reads it.
fn facts(user: &MatrixUser) -> UserFacts {
    UserFacts {
        username: user.spec.username.clone(),
        user_id: user.status.as_ref().and_then(|s| s.user_id.clone()),
        enabled: user.spec.enabled,
        deleting: user.metadata.deletion_timestamp.is_some(),
    }
}

/// How often a link holding its room's creation for accounts looks again without being woken.
const HOLD_RECHECK: std::time::Duration = std::time::Duration::from_secs(30);

/// The older of two links claiming the same space or room wins; the other one conflicts.
/// Runs on every link pass over every link: nothing is copied until a link claims the same space or room (the
/// per-link copies of ids and names were a fifth of the operator's CPU while B10k's 1,000 links converged).
fn conflicting_owner(link: &SpaceRoomLink, ctx: &Context) -> Option<Arc<SpaceRoomLink>> {
    fn room_of(l: &SpaceRoomLink) -> Option<&str> {
        l.spec.room_id.as_deref().or_else(|| l.status.as_ref()?.room_id.as_deref())
    }
    fn key(l: &SpaceRoomLink) -> (Option<jiff::Timestamp>, Option<&str>, Option<&str>) {
        let meta = &l.metadata;
        (meta.creation_timestamp.as_ref().map(|t| t.0), meta.namespace.as_deref(), meta.name.as_deref())
    }
    let mine = room_of(link);
    let claims_mine =
        |l: &SpaceRoomLink| l.spec.space_group_id == link.spec.space_group_id || (mine.is_some() && room_of(l) == mine);
    ctx.links
        .as_ref()?
        .state()
        .into_iter()
        .filter(|l| claims_mine(l) && l.metadata.uid != link.metadata.uid && key(l) < key(link))
        .min_by(|a, b| key(a).cmp(&key(b)))
}

/// Maps listed usernames to accounts of the same namespace (see `plan::members`). A MatrixUser
/// being deleted along with its ExoSource, and kept by it (see `cascade`), counts as gone already:
/// neither added nor removed. Else one `kubectl delete exo` would empty every room.
///
/// `managed` is judged for the listed accounts and for `in_room` (the accounts the room's state names,
/// see `ObservedRoom::named`): the plan consults it for no one else.
pub(super) async fn resolve_members<'a>(
    link: &SpaceRoomLink,
    ctx: &Context,
    in_room: impl IntoIterator<Item = &'a str>,
) -> Result<Members, Error> {
    let (mut members, kept) = resolve_listed(link, ctx).await?;
    manage_named(&mut members, &kept, ctx, in_room);
    Ok(members)
}

/// `resolve_members` for the listed people only, and the ids of the kept accounts: a pass judges the
/// accounts its room names (`manage_named`) once it has read the room, without reading the ExoSources again.
async fn resolve_listed(link: &SpaceRoomLink, ctx: &Context) -> Result<(Members, BTreeSet<String>), Error> {
    let Some(store) = &ctx.users else { return Ok(Default::default()) };
    let mut sources = crate::controller::cascade::Sources::default();
    let (mut kept, mut kept_ids) = (BTreeSet::new(), BTreeSet::new());
    for (ns, name) in ctx.user_index.deleting() {
        let Some(user) = store.get(&ObjectRef::new(&name).within(&ns)) else { continue };
        if user.metadata.deletion_timestamp.is_some() && sources.retained(&*user, ctx).await?.is_some() {
            kept.insert(user.uid());
            kept_ids.extend(user.status.as_ref().and_then(|s| s.user_id.clone()));
        }
    }
    // Listed people through the index: scanning every MatrixUser per link made a resync O(users × links).
    let ns = link.namespace().unwrap_or_default();
    let listed: Vec<Arc<MatrixUser>> = link
        .spec
        .members
        .iter()
        .chain(&link.spec.managers)
        .flat_map(|username| ctx.user_index.named(&ns, username))
        .filter_map(|name| store.get(&ObjectRef::new(&name).within(&ns)))
        .collect();
    let local: Vec<UserFacts> = listed.iter().filter(|u| !kept.contains(&u.uid())).map(|u| facts(u)).collect();
    let mut members = members::resolve(&link.spec.members, &link.spec.managers, &local, BTreeSet::new());
    manage_named(&mut members, &kept_ids, ctx, local.iter().filter_map(|u| u.user_id.as_deref()));
    Ok((members, kept_ids))
}

/// Adds to `members.managed` those of `ids` that a MatrixUser stands for, the kept accounts excepted.
fn manage_named<'a>(
    members: &mut Members,
    kept: &BTreeSet<String>,
    ctx: &Context,
    ids: impl IntoIterator<Item = &'a str>,
) {
    let managed = ctx.user_index.managed_among(ids);
    members.managed.extend(managed.into_iter().filter(|id| !kept.contains(id)));
}

async fn apply(link: &SpaceRoomLink, ctx: &Context) -> Result<Action, Error> {
    let session = ctx.session().await?;
    // Members and conflicts are judged from the caches: never from half-filled ones.
    ctx.caches_ready().await?;
    let mut status = status::begin(link);
    sync(link, ctx, &session, &mut status).await?;
    if create::holding(&status) {
        // Woken as each account gets its id (see `ReadinessCache`), but one that fails wakes nobody, and the hold
        // lapses when accounts stop appearing: look again now and then. Every 5 s, 1,000 holding links made
        // 200 passes a second for the half hour B10k's accounts took.
        return Ok(Action::requeue(HOLD_RECHECK));
    }
    Ok(ctx.resync())
}

/// Brings the room in line with the link. A step that ends the pass early (conflict, no room,
/// suspended, blocked) has shown why in status.
async fn sync(
    link: &SpaceRoomLink,
    ctx: &Context,
    session: &Session,
    status: &mut SpaceRoomLinkStatus,
) -> Result<(), Error> {
    if stop_on_conflict(link, ctx, status).await? {
        return Ok(());
    }
    let (mut members, kept) = resolve_listed(link, ctx).await?;
    status.pending_member_count = Some(members.pending.len() as i64);
    status.pending_members = members.pending.iter().take(PENDING_LISTED).cloned().collect();
    let Some(room_id) = find_room(link, ctx, session, status).await? else { return Ok(()) };
    let avatar = resolve_avatar(link, ctx, session, status).await?;
    let state = session.admin.full_state(&room_id).await.map_err(Error::synapse("reading the room state"))?;
    let observed = room::observe(&state, &link.spec.space_group_id)?;
    manage_named(&mut members, &kept, ctx, observed.named().map(|u| u.as_str()));
    let desired = desired_room(link, session, members, avatar);
    let actions = plan_room(&desired, &observed);
    status.plan = Some(summary(&actions));
    if link.spec.suspend {
        let message = format!("suspended: {} change(s) pending, see status.plan", actions.len());
        status::show(link, ctx, status, Progress::ready("Suspended", message)).await?;
        return Ok(());
    }
    let allowed = link.annotations().get(ALLOW_MASS_CHANGE).is_some_and(|v| v != "false");
    if stop_on_blast_radius(link, ctx, status, (&desired, &observed, &actions), allowed).await? {
        return Ok(());
    }
    execute(link, ctx, session, &room_id, &actions).await?;
    if allowed {
        clear_allow_annotation(link, ctx).await?;
    }
    let after = room::apply(&observed, &actions);
    report_synced(link, ctx, session, status, &room_id, &after, !actions.is_empty()).await
}

/// The older of two links claiming the same space or room wins; this one, if younger, changes nothing.
async fn stop_on_conflict(
    link: &SpaceRoomLink,
    ctx: &Context,
    status: &mut SpaceRoomLinkStatus,
) -> Result<bool, Error> {
    let Some(owner) = conflicting_owner(link, ctx) else {
        conditions::remove(&mut status.conditions, "Conflict");
        return Ok(false);
    };
    let message = format!(
        "SpaceRoomLink {}/{} already links space {:?} or this room; nothing is changed for this object",
        owner.namespace().unwrap_or_default(),
        owner.name_any(),
        owner.spec.space_group_id
    );
    conditions::set(&mut status.conditions, "Conflict", true, "AlreadyLinked", &message, link.metadata.generation);
    status::show(link, ctx, status, Progress::stalled("Conflict", message)).await?;
    Ok(true)
}

/// The room, known, linked or created; `None` (shown in status) when there is none to work on.
async fn find_room(
    link: &SpaceRoomLink,
    ctx: &Context,
    session: &Session,
    status: &mut SpaceRoomLinkStatus,
) -> Result<Option<OwnedRoomId>, Error> {
    let generation = link.metadata.generation;
    if let Some(n) = create::accounts_in_progress(link, ctx) {
        // Already shown as holding for this generation: a write per account made (the count, the pending
        // people) was ~9 status writes per link at B10k. The status keeps the figures of the hold's first pass.
        let shown = link.status.as_ref().is_some_and(|s| create::holding(s) && s.observed_generation == generation);
        if shown {
            return Ok(None);
        }
        let message = format!(
            "waiting for listed people's accounts being created ({n} when the wait began), to create the room with them"
        );
        conditions::set(&mut status.conditions, "RoomReady", false, create::HOLDING, &message, generation);
        status::show(link, ctx, status, Progress::reconciling(create::HOLDING, message)).await?;
        return Ok(None);
    }
    if let Some(id) = create::room_of(link, ctx, session, status).await? {
        conditions::set(&mut status.conditions, "RoomReady", true, "RoomLinked", &format!("room {id}"), generation);
        return Ok(Some(id));
    }
    // Suspended, the link does what it was told (nothing): Ready. Without
    // roomId or create it cannot go on until a person sets one: Stalled.
    let progress = if link.spec.suspend {
        status.plan = Some(PlanSummary {
            counts: [("CreateRoom".to_owned(), 1)].into(),
            first_actions: vec![format!("create room {}", create::alias_of(link, ctx, session)?)],
        });
        Progress::ready("Suspended", "suspended: would create the room")
    } else {
        Progress::stalled("WaitingForRoom", "neither roomId nor create: true is set; set one to give this space a room")
    };
    let (reason, message) = (progress.reason(), progress.message().to_owned());
    conditions::set(&mut status.conditions, "RoomReady", false, reason, &message, generation);
    status::show(link, ctx, status, progress).await?;
    Ok(None)
}

/// The avatar to set; one that cannot be had is said in `AvatarSynced` and the room is still synced.
async fn resolve_avatar(
    link: &SpaceRoomLink,
    ctx: &Context,
    session: &Session,
    status: &mut SpaceRoomLinkStatus,
) -> Result<AvatarWish, Error> {
    let previous = status.avatar.clone();
    let resolved = avatar::resolve(ctx, session, link.spec.avatar_url.as_deref(), previous).await?;
    if let Some(url) = &resolved.uploaded_from {
        publish(ctx, link, EventType::Normal, "AvatarUploaded", &format!("uploaded the room avatar from {url}")).await;
    }
    status.avatar = resolved.status;
    let generation = link.metadata.generation;
    match &resolved.problem {
        Some(p) => conditions::set(&mut status.conditions, "AvatarSynced", false, "AvatarUnavailable", p, generation),
        None => conditions::remove(&mut status.conditions, "AvatarSynced"),
    }
    Ok(resolved.wish)
}

/// Too many removals or changes at once wait for a person, unless `allowed` for this pass.
async fn stop_on_blast_radius(
    link: &SpaceRoomLink,
    ctx: &Context,
    status: &mut SpaceRoomLinkStatus,
    (desired, observed, actions): (&DesiredRoom, &room::ObservedRoom, &[RoomAction]),
    allowed: bool,
) -> Result<bool, Error> {
    let why = room::guard(desired, observed, actions, ctx.settings.blast_radius).filter(|_| !allowed);
    let Some(why) = why else {
        conditions::remove(&mut status.conditions, "Blocked");
        return Ok(false);
    };
    let message = format!(
        "{why}; nothing was changed. Raise the limit or set the annotation {ALLOW_MASS_CHANGE}=true for one pass"
    );
    conditions::set(&mut status.conditions, "Blocked", true, "BlastRadius", &message, link.metadata.generation);
    status::show(link, ctx, status, Progress::stalled("Blocked", message.clone())).await?;
    publish(ctx, link, EventType::Warning, "Blocked", &message).await;
    Ok(true)
}

/// Ready, with what the room now holds.
async fn report_synced(
    link: &SpaceRoomLink,
    ctx: &Context,
    session: &Session,
    status: &mut SpaceRoomLinkStatus,
    room_id: &RoomId,
    after: &room::ObservedRoom,
    changed: bool,
) -> Result<(), Error> {
    let generation = link.metadata.generation;
    let joined =
        after.membership.iter().filter(|(u, m)| **m == room::Membership::Join && **u != session.user_id).count();
    status.joined_members = Some(joined as i64);
    status.plan = None;
    if changed {
        // The time of the last change made in Synapse: a quiet pass writes no status.
        status.last_sync_time = Some(conditions::now_rfc3339());
    }
    let synced = format!("{joined} joined; {} listed people have no Matrix account yet", members_pending(status));
    conditions::set(&mut status.conditions, "MembersSynced", true, "Synced", &synced, generation);
    status::show(link, ctx, status, Progress::ready("Synced", format!("room {room_id} matches the space"))).await
}

fn members_pending(status: &SpaceRoomLinkStatus) -> i64 {
    status.pending_member_count.unwrap_or(0)
}

/// The accounts as the user controller recorded them (`status.userId`, written from a parsed id). One a
/// person edited into something that is not a user id is no account the plan can act on: neither joined
/// nor removed.
pub(super) fn user_ids(recorded: &BTreeSet<String>) -> BTreeSet<OwnedUserId> {
    recorded.iter().filter_map(|id| ids::user_id(id).ok()).collect()
}

pub(super) fn desired_room(link: &SpaceRoomLink, session: &Session, m: Members, avatar: AvatarWish) -> DesiredRoom {
    let space = link.spec.display_name.clone().unwrap_or_else(|| link.spec.space_group_id.clone());
    DesiredRoom {
        space_group_id: link.spec.space_group_id.clone(),
        name: link.spec.display_name.clone(),
        description: link.spec.description.clone(),
        avatar,
        members: user_ids(&m.members),
        managers: user_ids(&m.managers),
        manager_level: link.spec.manager_power_level,
        mode: link.spec.membership,
        managed: user_ids(&m.managed),
        operator: session.user_id.clone(),
        kick_reason: format!("no longer a member of the space {space}"),
    }
}

fn summary(actions: &[RoomAction]) -> PlanSummary {
    let mut counts = BTreeMap::new();
    for a in actions {
        *counts.entry(a.kind().to_owned()).or_insert(0) += 1;
    }
    PlanSummary { counts, first_actions: actions.iter().take(FIRST_ACTIONS).map(RoomAction::describe).collect() }
}

/// State changes in order, then membership changes concurrently within a bound, all in `room_id`.
async fn execute(
    link: &SpaceRoomLink,
    ctx: &Context,
    session: &Session,
    room_id: &RoomId,
    actions: &[RoomAction],
) -> Result<(), Error> {
    let admin = &session.admin;
    for action in actions.iter().filter(|a| !a.is_membership()) {
        let (kind, key, content) = match action {
            RoomAction::SetRoomName { name, .. } => ("m.room.name", String::new(), json!({"name": name})),
            RoomAction::SetRoomTopic { content, .. } => ("m.room.topic", String::new(), content.clone()),
            RoomAction::SetRoomAvatar { url, .. } => ("m.room.avatar", String::new(), json!({"url": url})),
            RoomAction::SetPowerLevels { levels } => ("m.room.power_levels", String::new(), levels.content()),
            RoomAction::SetMarker { space_group_id, content, .. } => {
                (MARKER_TYPE, space_group_id.clone(), content.clone())
            }
            _ => continue,
        };
        admin.put_state(room_id, kind, &key, &content).await.map_err(Error::synapse(action.describe()))?;
        publish(ctx, link, EventType::Normal, action.kind(), &action.describe()).await;
    }
    let membership: Vec<RoomAction> = actions.iter().filter(|a| a.is_membership()).cloned().collect();
    let results: Vec<(RoomAction, Result<(), Error>)> = futures::stream::iter(membership)
        .map(|action| async move {
            let result = membership_change(session, room_id, &action).await;
            (action, result)
        })
        .buffer_unordered(ctx.settings.join_concurrency.max(1))
        .collect()
        .await;
    let (done, failed): (Vec<_>, Vec<_>) = results.into_iter().partition(|(_, r)| r.is_ok());
    let done: Vec<RoomAction> = done.into_iter().map(|(a, _)| a).collect();
    for (reason, note) in room::membership_events(&done) {
        publish(ctx, link, EventType::Normal, reason, &note).await;
    }
    // The first failure ends the pass, as before; the changes made are reported above.
    match failed.into_iter().next() {
        Some((_, Err(e))) => Err(e),
        _ => Ok(()),
    }
}

async fn membership_change(session: &Session, room_id: &RoomId, action: &RoomAction) -> Result<(), Error> {
    let admin = &session.admin;
    let result = match action {
        RoomAction::JoinUser { user_id } => admin.admin_join(room_id, user_id).await,
        RoomAction::InviteUser { user_id } => admin.invite(room_id, user_id).await,
        RoomAction::KickUser { user_id, reason } => admin.kick(room_id, user_id, reason).await,
        _ => Ok(()),
    };
    result.map_err(Error::synapse(action.describe()))
}

async fn clear_allow_annotation(link: &SpaceRoomLink, ctx: &Context) -> Result<(), Error> {
    let api: Api<SpaceRoomLink> = Api::namespaced(ctx.kube.clone(), &link.namespace().unwrap_or_default());
    let patch = json!({"metadata": {"annotations": {ALLOW_MASS_CHANGE: null}}});
    let patched = api
        .patch(&link.name_any(), &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map_err(|e| Error::Kube("removing the one-pass annotation".into(), e))?;
    ctx.written.record(&patched);
    Ok(())
}

pub(super) async fn write_status(
    link: &SpaceRoomLink,
    ctx: &Context,
    status: &SpaceRoomLinkStatus,
) -> Result<(), Error> {
    status::save(link, ctx, status).await
}
