//! Writing status and Events: the same for every kind the operator manages.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType};
use kube::{Api, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;

use super::conditions::{self, Progress};
use super::{Context, Error};
use crate::crd::{
    ExoSource, ExoSourceStatus, MatrixSpace, MatrixSpaceStatus, MatrixUser, MatrixUserStatus, SpaceRoomLink,
    SpaceRoomLinkStatus,
};

/// The status fields every kind shares.
pub trait CommonStatus: Serialize + PartialEq + Clone + Default {
    fn conditions_mut(&mut self) -> &mut Vec<Condition>;
    fn observed_generation_mut(&mut self) -> &mut Option<i64>;
}

/// A kind this operator reconciles; `reconciled!` implements it.
pub trait Reconciled:
    Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope> + Clone + DeserializeOwned + std::fmt::Debug
{
    type Status: CommonStatus;
    fn current_status(&self) -> Option<&Self::Status>;

    /// The longest a failed object waits before the next try, when the kind
    /// promises one (an ExoSource polls at its interval, failing or not).
    fn retry_cap(&self) -> Option<std::time::Duration> {
        None
    }
}

macro_rules! common_status {
    ($status:ty) => {
        impl CommonStatus for $status {
            fn conditions_mut(&mut self) -> &mut Vec<Condition> {
                &mut self.conditions
            }
            fn observed_generation_mut(&mut self) -> &mut Option<i64> {
                &mut self.observed_generation
            }
        }
    };
}

/// Makes a kind usable with the helpers below and `error_policy`: its status
/// must have `conditions: Vec<Condition>` and `observed_generation: Option<i64>`.
macro_rules! reconciled {
    ($kind:ty, $status:ty) => {
        common_status!($status);
        impl Reconciled for $kind {
            type Status = $status;
            fn current_status(&self) -> Option<&$status> {
                self.status.as_ref()
            }
        }
    };
}

reconciled!(SpaceRoomLink, SpaceRoomLinkStatus);
reconciled!(MatrixUser, MatrixUserStatus);
reconciled!(MatrixSpace, MatrixSpaceStatus);
common_status!(ExoSourceStatus);
impl Reconciled for ExoSource {
    type Status = ExoSourceStatus;
    fn current_status(&self) -> Option<&ExoSourceStatus> {
        self.status.as_ref()
    }
    fn retry_cap(&self) -> Option<std::time::Duration> {
        Some(super::source::interval(self))
    }
}

/// The status to work on in a reconcile. An object that shows no `Ready` yet
/// (just created) shows `Reconciling` in any status written on the way (a new
/// room id), so kstatus does not read it as done before it is.
pub fn begin<K: Reconciled>(obj: &K) -> K::Status {
    let mut status = obj.current_status().cloned().unwrap_or_default();
    if !status.conditions_mut().iter().any(|c| c.type_ == conditions::READY) {
        let progress = Progress::reconciling("Progressing", "working towards the spec");
        conditions::show(status.conditions_mut(), &progress, obj.meta().generation);
    }
    status
}

/// Shows `progress` as of the object's generation (now observed) and writes the status.
pub async fn show<K: Reconciled>(
    obj: &K,
    ctx: &Context,
    status: &mut K::Status,
    progress: Progress,
) -> Result<(), Error> {
    let generation = obj.meta().generation;
    conditions::show(status.conditions_mut(), &progress, generation);
    *status.observed_generation_mut() = generation;
    save(obj, ctx, status).await
}

/// Writes `status` unless the object already shows it.
pub async fn save<K: Reconciled>(obj: &K, ctx: &Context, status: &K::Status) -> Result<(), Error> {
    write(obj, obj.current_status(), ctx, status).await
}

/// Records a failed reconcile in `status` (conditions by the error's class, a
/// Warning Event, a log line). A failure to record is logged, never fatal.
pub async fn record_failure<K: Reconciled>(obj: &K, ctx: &Context, mut status: K::Status, err: &Error) {
    if matches!(err, Error::ShuttingDown) {
        return;
    }
    ctx.note_failure(err);
    let progress = err.progress();
    let message = progress.message().to_owned();
    // The condition says since when a lasting failure lasts; the Event keeps the plain message (one series).
    let after = jiff::SignedDuration::try_from(ctx.settings.lasting_failure).unwrap_or(super::lasting::LASTING);
    let progress = super::lasting::lasting(status.conditions_mut(), progress, jiff::Timestamp::now(), after);
    let (kind, name, ns) = (K::kind(&()), obj.name_any(), obj.namespace());
    tracing::warn!(%kind, %name, namespace = ?ns, class = ?err.class(), error = %message, "reconcile failed");
    if let Err(e) = show(obj, ctx, &mut status, progress).await {
        tracing::warn!(error = %crate::error_chain::chain(&e), "cannot record the failure in status");
    }
    publish(ctx, obj, EventType::Warning, err.reason(), &message).await;
}

/// The end of every reconcile: a success forgets the object's failures; a
/// failure is recorded on the object (from its current status) and retried by
/// `error_policy`.
pub async fn finish<K: Reconciled>(obj: &K, ctx: &Context, result: Result<Action, Error>) -> Result<Action, Error> {
    match result {
        Ok(action) => {
            ctx.succeeded(obj);
            Ok(action)
        }
        Err(e) => {
            // Status written on the way (a new room id) is kept: start from what the API server has now.
            let api: Api<K> = Api::namespaced(ctx.kube.clone(), &obj.namespace().unwrap_or_default());
            let now = api.get_opt(&obj.name_any()).await.ok().flatten();
            let status = now.as_ref().unwrap_or(obj).current_status().cloned().unwrap_or_default();
            record_failure(now.as_ref().unwrap_or(obj), ctx, status, &e).await;
            Err(e)
        }
    }
}

/// Server-side applies `status` unless it is what the object already shows. A
/// field this manager no longer sends (a dropped avatar) is removed.
pub async fn write<K, S>(obj: &K, current: Option<&S>, ctx: &Context, status: &S) -> Result<(), Error>
where
    K: Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug,
    S: Serialize + PartialEq,
{
    if current == Some(status) {
        return Ok(());
    }
    let api: Api<K> = Api::namespaced(ctx.kube.clone(), &obj.namespace().unwrap_or_default());
    let body = json!({"apiVersion": K::api_version(&()), "kind": K::kind(&()), "status": status});
    let written = api
        .patch_status(&obj.name_any(), &PatchParams::apply(crate::MANAGER).force(), &Patch::Apply(body))
        .await
        .map_err(|e| Error::Kube("writing status".into(), e))?;
    ctx.written.record(&written);
    Ok(())
}

/// A controller's `apply` or `cleanup`, boxed so that one helper serves every kind.
pub type Step<K> = for<'a> fn(&'a K, &'a Context) -> futures::future::BoxFuture<'a, Result<Action, Error>>;

/// One reconcile of a kind with a finalizer: the object as it is now (`current`: the cache may lag a
/// status write), its finalizer handled (`finalized`), and the outcome recorded (`finish`).
pub async fn reconcile_finalized<K: Reconciled + Serialize>(
    controller: &'static str,
    finalizer_name: &str,
    obj: std::sync::Arc<K>,
    ctx: &Context,
    apply: Step<K>,
    cleanup: Step<K>,
) -> Result<Action, Error> {
    let _in_flight = crate::metrics::global().reconcile_started(controller);
    let api: Api<K> = Api::namespaced(ctx.kube.clone(), &obj.namespace().unwrap_or_default());
    let Some(obj) = current(&api, &obj, ctx).await? else { return Ok(Action::await_change()) };
    let result = finalized(&api, finalizer_name, obj.clone(), ctx, apply, cleanup).await;
    finish(&*obj, ctx, result).await
}

/// Finalizer patches refused as conflicts (the object changed since the copy patched) that are retried at
/// once on a fresh read; one more is a failure of the pass, shown in status and retried by `error_policy`.
const FINALIZER_CONFLICTS: usize = 2;

/// `apply` or `cleanup` with `ours` handled as `plan::finalizer::step` says. A missing finalizer is added and
/// the same pass applies the patched object: the patch's own watch event is no news to the controller (see
/// `shared::generation_fingerprint`), so a new object costs one pass. A finalizer a person strips by hand is
/// therefore not seen at once either: it comes back at the object's next pass (its resync at the latest, a
/// spec edit or a failure's retry sooner). Until then a deletion would skip the cleanup, as it does for an
/// object deleted while the operator is down before ever seeing it; watching for it would cost the second
/// pass of every new object again.
async fn finalized<K: Reconciled + Serialize>(
    api: &Api<K>,
    ours: &str,
    mut obj: std::sync::Arc<K>,
    ctx: &Context,
    apply: Step<K>,
    cleanup: Step<K>,
) -> Result<Action, Error> {
    use crate::plan::finalizer::{Refusal, Step, refusal, step};
    // The cleanup's answer once it succeeded: a conflict removing ours does not run it again.
    let mut cleaned: Option<Action> = None;
    let mut conflicts = 0;
    loop {
        let meta = obj.meta();
        let finalizers = meta.finalizers.as_deref().unwrap_or_default();
        let patch = match step(finalizers, meta.deletion_timestamp.is_some(), ours) {
            Step::Apply => return apply(&obj, ctx).await,
            Step::Nothing => return Ok(cleaned.unwrap_or_else(Action::await_change)),
            Step::AddThenApply(patch) => patch,
            Step::CleanUpThenRemove(patch) => {
                if cleaned.is_none() {
                    cleaned = Some(cleanup(&obj, ctx).await?);
                }
                patch
            }
        };
        match api.patch(&obj.name_any(), &PatchParams::default(), &Patch::Json::<()>(patch)).await {
            Ok(patched) => {
                // The patched object is the API server's now: the next pass need not read it again.
                ctx.written.record(&patched);
                obj = std::sync::Arc::new(patched);
            }
            Err(e) => {
                let code = match &e {
                    kube::Error::Api(status) => Some(status.code),
                    _ => None,
                };
                match refusal(code) {
                    Refusal::Gone => return Ok(cleaned.unwrap_or_else(Action::await_change)),
                    Refusal::Conflict if conflicts < FINALIZER_CONFLICTS => {
                        conflicts += 1;
                        tracing::debug!(kind = %K::kind(&()), name = %obj.name_any(), error = %e,
                            "finalizer patch conflicted; reading the object again");
                        let Some(now) = fresh(api, &obj).await? else {
                            return Ok(cleaned.unwrap_or_else(Action::await_change));
                        };
                        ctx.written.record(&*now);
                        obj = now;
                    }
                    Refusal::Conflict | Refusal::Failed => {
                        return Err(Error::Kube("updating the finalizer".into(), e));
                    }
                }
            }
        }
    }
}

/// Per object uid, the resourceVersion of this process's last status write (or of a later read): a cached
/// copy showing that version holds what was written, so the next reconcile need not read the object again.
#[derive(Default)]
pub struct Written(std::sync::Mutex<std::collections::HashMap<String, String>>);

impl Written {
    pub fn record(&self, obj: &impl Resource) {
        if let (Some(uid), Some(version)) = (obj.uid(), obj.resource_version()) {
            self.0.lock().unwrap_or_else(|p| p.into_inner()).insert(uid, version);
        }
    }

    /// Whether the cached `obj` may be stale: this process wrote its status since, as far as the copy shows.
    pub fn behind(&self, obj: &impl Resource) -> bool {
        let Some(uid) = obj.uid() else { return true };
        let seen = self.0.lock().unwrap_or_else(|p| p.into_inner());
        seen.get(&uid).is_some_and(|v| obj.resource_version().as_ref() != Some(v))
    }
}

/// The object to reconcile: the cached copy when it shows this process's last status write (or there was
/// none: the watch then delivered everything since the start), else the API server's (see `fresh`). A
/// restart over 10,000 objects read each one again only to find the cached copy right.
pub async fn current<K>(
    api: &Api<K>,
    obj: &std::sync::Arc<K>,
    ctx: &Context,
) -> Result<Option<std::sync::Arc<K>>, Error>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    // Being deleted: always read, so that the cleanup starts from the newest status (a rare pass). A copy
    // without our finalizer yet needs no read: the patch adding it tests the list it saw (see `finalized`).
    if obj.meta().deletion_timestamp.is_none() && !ctx.written.behind(&**obj) {
        return Ok(Some(obj.clone()));
    }
    let now = fresh(api, obj).await?;
    if let Some(now) = &now {
        // This version holds every write so far: a cached copy showing it is current too.
        ctx.written.record(&**now);
    }
    Ok(now)
}

/// The object as the API server has it now. The watch cache may still hold the
/// version from before our last status write, and status is the operator's
/// memory (room id, uploaded avatar): acting on a stale copy would redo work.
pub async fn fresh<K>(api: &Api<K>, obj: &std::sync::Arc<K>) -> Result<Option<std::sync::Arc<K>>, Error>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    api.get_opt(&obj.name_any())
        .await
        .map(|o| o.map(std::sync::Arc::new))
        .map_err(|e| Error::Kube("reading the object".into(), e))
}

/// Publishes an Event on `obj`; a failure to publish is logged, never fatal.
pub async fn publish<K: Resource<DynamicType = ()>>(
    ctx: &Context,
    obj: &K,
    type_: EventType,
    reason: &str,
    note: &str,
) {
    let event = Event {
        type_,
        reason: reason.into(),
        note: Some(note.chars().take(1000).collect()),
        action: reason.into(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&event, &obj.object_ref(&())).await {
        tracing::debug!(error = %crate::error_chain::chain(&e), "cannot publish event");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(version: &str) -> MatrixUser {
        let spec = serde_json::from_value(json!({"username": "ann"})).expect("spec");
        let mut u = MatrixUser::new("ann", spec);
        u.metadata.uid = Some("uid-ann".into());
        u.metadata.resource_version = Some(version.into());
        u
    }

    #[test]
    fn a_cached_copy_is_behind_only_when_it_does_not_show_the_last_write() {
        let written = Written::default();
        assert!(!written.behind(&user("7")), "nothing written by this process: the watch has it all");
        written.record(&user("9"));
        assert!(written.behind(&user("7")), "the copy predates the write");
        assert!(!written.behind(&user("9")), "the copy is the write");
        assert!(written.behind(&user("12")), "someone wrote since: read it to be sure");
    }
}
