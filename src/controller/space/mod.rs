//! The MatrixSpace controller: one Matrix space grouping the rooms of the
//! SpaceRoomLinks it selects, joined by the people of those rooms.

mod create;
mod parent_checks;
pub mod wake;

pub use parent_checks::ParentChecks;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use kube::api::{Patch, PatchParams};
use kube::core::{Selector, SelectorExt};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::reflector::ObjectRef;
use kube::{Api, ResourceExt};
use serde_json::{Value, json};

use super::conditions::{self, Progress};
use super::link::ALLOW_MASS_CHANGE;
use super::status::{self, publish};
use super::{Context, Error, avatar};
use crate::crd::{MatrixSpace, MatrixSpaceStatus, MatrixUser, SpaceDeletionPolicy, SpaceRoomLink};
use crate::ids::{self, OwnedRoomId, RoomId};
use crate::plan::space::{self, Account, DesiredSpace, PARENT, SpaceAction, parents, plan_space};
use crate::session::Session;

pub const FINALIZER: &str = "exomatrix.dev/space";

pub async fn reconcile(space: Arc<MatrixSpace>, ctx: Arc<Context>) -> Result<Action, Error> {
    let (apply, cleanup): (status::Step<_>, status::Step<_>) =
        (|o, c| Box::pin(apply(o, c)), |o, c| Box::pin(cleanup(o, c)));
    status::reconcile_finalized("space", FINALIZER, space, &ctx, apply, cleanup).await
}

/// Spaces to reconcile when a link or a user of their namespace changes.
pub fn spaces_in(namespace: Option<String>, spaces: &[Arc<MatrixSpace>]) -> Vec<ObjectRef<MatrixSpace>> {
    spaces.iter().filter(|s| s.namespace() == namespace).map(|s| ObjectRef::from_obj(&**s)).collect()
}

/// Remembers what of each MatrixUser matters to spaces (its account, enabled, being
/// deleted), so a status write that changes none of it wakes nothing.
#[derive(Default)]
pub struct AccountCache(std::sync::Mutex<BTreeMap<String, Account>>);

impl AccountCache {
    pub fn changed(&self, user: &MatrixUser) -> bool {
        let key = format!("{}/{}", user.namespace().unwrap_or_default(), user.spec.username);
        let mut seen = self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let now = account(user);
        seen.insert(key, now.clone()) != Some(now)
    }
}

fn account(user: &MatrixUser) -> Account {
    Account {
        // Written from a parsed id; one a person edited into something else is no account.
        user_id: user.status.as_ref().and_then(|s| ids::user_id(s.user_id.as_deref()?).ok()),
        enabled: user.spec.enabled,
        deleting: user.metadata.deletion_timestamp.is_some(),
    }
}

/// The links this space selects: none without a selector, every one with `{}`.
fn selected_links(space: &MatrixSpace, ctx: &Context) -> Result<Vec<Arc<SpaceRoomLink>>, String> {
    let Some(selector) = space.spec.link_selector.clone() else { return Ok(Vec::new()) };
    let selector = Selector::try_from(selector).map_err(|e| format!("linkSelector: {e}"))?;
    let links = ctx.links.as_ref().map(|s| s.state()).unwrap_or_default();
    Ok(links
        .into_iter()
        .filter(|l| l.namespace() == space.namespace() && l.metadata.deletion_timestamp.is_none())
        .filter(|l| selector.matches(l.labels()))
        .collect())
}

/// A link's room once it is the link's own (known, and not claimed by an older link). The link wrote
/// it from a parsed id; one a person edited into something else is no room yet.
fn room_of_link(link: &SpaceRoomLink) -> Option<OwnedRoomId> {
    let st = link.status.as_ref()?;
    let conflict = st.conditions.iter().any(|c| c.type_ == "Conflict" && c.status == "True");
    st.room_id.as_deref().filter(|_| !conflict).and_then(|id| ids::room_id(id).ok())
}

/// What the space should be, from the selected links and the MatrixUser cache.
/// `Err` says why the selector cannot be used.
fn desired(space: &MatrixSpace, ctx: &Context, session: &Session) -> Result<(DesiredSpace, usize), String> {
    // Only links whose room exists (and is theirs) are rooms of the space, and only their people its members.
    let rooms: Vec<(OwnedRoomId, Arc<SpaceRoomLink>)> =
        selected_links(space, ctx)?.into_iter().filter_map(|l| Some((room_of_link(&l)?, l))).collect();
    let listed: BTreeSet<String> =
        rooms.iter().flat_map(|(_, l)| l.spec.members.iter().chain(&l.spec.managers)).cloned().collect();
    let users = ctx.users.as_ref().map(|s| s.state()).unwrap_or_default();
    let accounts: BTreeMap<String, Account> = users
        .iter()
        .filter(|u| u.namespace() == space.namespace())
        .map(|u| (u.spec.username.clone(), account(u)))
        .collect();
    let managed = users.iter().filter_map(|u| ids::user_id(u.status.as_ref()?.user_id.as_deref()?).ok()).collect();
    let m = space::space_members(&listed, &space.spec.managers, &accounts);
    let (ns, name) = (space.namespace().unwrap_or_default(), space.name_any());
    let desired = DesiredSpace {
        marker_key: space::marker_key(&ns, &name),
        marker: space::marker(&ns, &name),
        name: space.spec.display_name.clone().unwrap_or_else(|| name.clone()),
        topic: space.spec.topic.clone(),
        avatar: crate::plan::AvatarWish::Leave,
        members: m.members,
        managers: m.managers,
        manager_level: space.spec.manager_power_level,
        managed,
        operator: session.user_id.clone(),
        kick_reason: format!("no longer in any room of the space {name}"),
        children: rooms.into_iter().map(|(room, _)| room).collect(),
        via: session.server_name.clone(),
    };
    Ok((desired, m.pending.len()))
}

async fn apply(space: &MatrixSpace, ctx: &Context) -> Result<Action, Error> {
    let session = ctx.session().await?;
    // Members are judged from the caches: never from half-filled ones.
    ctx.caches_ready().await?;
    let generation = space.metadata.generation;
    let mut st = status::begin(space);
    let (mut desired, pending) =
        desired(space, ctx, &session).map_err(|why| Error::invalid_spec("InvalidSelector", why))?;
    let room_id = create::space_room(space, ctx, &session, &desired, &mut st).await?;

    let resolved = avatar::resolve(ctx, &session, space.spec.avatar_url.as_deref(), st.avatar.clone()).await?;
    if let Some(url) = &resolved.uploaded_from {
        publish(ctx, space, EventType::Normal, "AvatarUploaded", &format!("uploaded the space avatar from {url}"))
            .await;
    }
    st.avatar = resolved.status;
    desired.avatar = resolved.wish;

    let state = session.admin.full_state(&room_id).await.map_err(Error::synapse("reading the space's state"))?;
    let mut observed = space::observe(&state, &desired.marker_key)?;
    // A child's parent is read only when the room is new to the space, leaves it, or is due (plan::space::parents).
    let child = space::child_content(&desired.via);
    let period = ctx.settings.space_parent_check;
    let key = space.uid().unwrap_or_default();
    let to_read = parents::parents_to_read(&desired.children, &observed, &child, |room| {
        ctx.space_parents.due(&key, room, period)
    });
    let mut read = BTreeMap::new();
    for room in to_read {
        read.insert(room.clone(), parent_in(&session, &room, &room_id).await?);
        ctx.space_parents.checked(&key, &room, period);
    }
    observed.parents = parents::observed_parents(&desired.children, &observed, &child, &desired.via, read);
    let known: BTreeSet<OwnedRoomId> = desired.children.iter().chain(observed.children.keys()).cloned().collect();
    ctx.space_parents.keep(&key, &known);
    let actions = plan_space(&desired, &room_id, &observed);
    let allowed = space.annotations().get(ALLOW_MASS_CHANGE).is_some_and(|v| v != "false");
    if let Some(why) = space::guard(&desired, &observed, &actions, ctx.settings.blast_radius).filter(|_| !allowed) {
        let message = format!(
            "{why}; nothing was changed. Raise the limit or set the annotation {ALLOW_MASS_CHANGE}=true for one pass"
        );
        conditions::set(&mut st.conditions, "Blocked", true, "BlastRadius", &message, generation);
        status::show(space, ctx, &mut st, Progress::stalled("Blocked", message.clone())).await?;
        publish(ctx, space, EventType::Warning, "Blocked", &message).await;
        return Ok(ctx.resync());
    }
    conditions::remove(&mut st.conditions, "Blocked");

    execute(space, ctx, &session, &actions).await?;
    if allowed {
        clear_allow_annotation(space, ctx).await?;
    }
    let after = space::apply(&observed, &actions);
    let joined = after
        .room
        .membership
        .iter()
        .filter(|(u, m)| **m == crate::plan::room::Membership::Join && **u != session.user_id)
        .count();
    st.members = Some(joined as i64);
    st.rooms = Some(after.children.len() as i64);
    if !actions.is_empty() {
        st.last_sync_time = Some(conditions::now_rfc3339());
    }
    match &resolved.problem {
        Some(p) => conditions::set(&mut st.conditions, "AvatarSynced", false, "AvatarUnavailable", p, generation),
        None => conditions::remove(&mut st.conditions, "AvatarSynced"),
    }
    let message = format!(
        "space {room_id}: {} rooms, {joined} joined; {pending} listed people have no account yet",
        after.children.len()
    );
    status::show(space, ctx, &mut st, Progress::ready("Synced", message)).await?;
    Ok(ctx.resync())
}

/// This space's `m.space.parent` in `room`. A room the operator can no longer read
/// (deleted, or left) has none as far as the space is concerned.
async fn parent_in(session: &Session, room: &RoomId, space_id: &RoomId) -> Result<Option<Value>, Error> {
    match session.admin.room_state(room, PARENT, space_id.as_str()).await {
        Ok(content) => Ok(content.filter(space::present)),
        Err(e) if matches!(e.status(), Some(403 | 404)) => Ok(None),
        Err(e) => Err(Error::synapse(format!("reading the space parent of room {room}"))(e)),
    }
}

/// State changes in order, then joins and removals concurrently within a bound.
async fn execute(space: &MatrixSpace, ctx: &Context, session: &Session, actions: &[SpaceAction]) -> Result<(), Error> {
    let admin = &session.admin;
    for action in actions {
        let Some((room, kind, key, content)) = action.state_event() else { continue };
        match admin.put_state(room, kind, key, &content).await {
            Ok(_) => {}
            // Removing the space from a room that is gone, or that the operator left, has nothing left to do.
            Err(e) if kind == PARENT && !space::present(&content) && matches!(e.status(), Some(403 | 404)) => {
                tracing::debug!(%room, error = %crate::error_chain::chain(&e), "cannot remove the space parent from a room no longer reachable");
                continue;
            }
            Err(e) => return Err(Error::synapse(action.describe())(e)),
        }
        publish(ctx, space, EventType::Normal, action.kind(), &action.describe()).await;
    }
    let membership: Vec<SpaceAction> = actions.iter().filter(|a| a.is_membership()).cloned().collect();
    let results: Vec<Result<(), Error>> = futures::stream::iter(membership)
        .map(|action| async move {
            let result = match &action {
                SpaceAction::JoinUser { room_id, user_id } => admin.admin_join(room_id, user_id).await,
                SpaceAction::KickUser { room_id, user_id, reason } => admin.kick(room_id, user_id, reason).await,
                _ => Ok(()),
            };
            result.map_err(Error::synapse(action.describe()))?;
            publish(ctx, space, EventType::Normal, action.kind(), &action.describe()).await;
            Ok(())
        })
        .buffer_unordered(ctx.settings.join_concurrency.max(1))
        .collect()
        .await;
    results.into_iter().collect()
}

/// `Retain` leaves the space as it is; `Delete` takes it out of its rooms, then
/// deletes and purges it.
async fn cleanup(space: &MatrixSpace, ctx: &Context) -> Result<Action, Error> {
    ctx.space_parents.keep(&space.uid().unwrap_or_default(), &BTreeSet::new());
    let Some(room_id) = space.status.as_ref().and_then(|s| s.room_id.as_deref()) else {
        return Ok(Action::await_change());
    };
    if space.spec.deletion_policy == SpaceDeletionPolicy::Retain {
        return Ok(Action::await_change());
    }
    let room_id = &ids::room_id(room_id)?;
    let session = ctx.session().await?;
    let admin = &session.admin;
    let state = admin.full_state(room_id).await.map_err(Error::synapse("reading the space's state"))?;
    for room in space::observe(&state, "")?.children.keys() {
        if parent_in(&session, room, room_id).await?.is_some() {
            match admin.put_state(room, PARENT, room_id.as_str(), &json!({})).await {
                Ok(_) => {}
                Err(e) if matches!(e.status(), Some(403 | 404)) => {}
                Err(e) => return Err(Error::synapse(format!("removing the space from room {room}"))(e)),
            }
        }
    }
    let delete_id = admin.delete_room(room_id).await.map_err(Error::synapse("deleting the space"))?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let state = admin.delete_status(&delete_id).await.map_err(Error::synapse("waiting for the space deletion"))?;
        match state.as_str() {
            "complete" => break,
            "failed" => {
                let why = format!("Synapse could not delete the space {room_id}; see Synapse's log");
                return Err(Error::needs_person("RoomDeletionFailed", why));
            }
            _ if tokio::time::Instant::now() > deadline => {
                let why = format!("deletion of the space {room_id} still {state} after 2 minutes");
                return Err(Error::waiting("RoomDeletionPending", why));
            }
            _ => tokio::time::sleep(Duration::from_millis(300)).await,
        }
    }
    publish(ctx, space, EventType::Normal, "RoomDeleted", &format!("deleted and purged the space {room_id}")).await;
    Ok(Action::await_change())
}

async fn clear_allow_annotation(space: &MatrixSpace, ctx: &Context) -> Result<(), Error> {
    let api: Api<MatrixSpace> = Api::namespaced(ctx.kube.clone(), &space.namespace().unwrap_or_default());
    let patch = json!({"metadata": {"annotations": {ALLOW_MASS_CHANGE: null}}});
    let patched = api
        .patch(&space.name_any(), &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map_err(|e| Error::Kube("removing the one-pass annotation".into(), e))?;
    ctx.written.record(&patched);
    Ok(())
}

pub(super) async fn write_status(space: &MatrixSpace, ctx: &Context, st: &MatrixSpaceStatus) -> Result<(), Error> {
    status::save(space, ctx, st).await
}
