//! The ExoSource controller: reads an eXo server and writes the SpaceRoomLinks
//! and MatrixUsers it owns. Nothing is deleted or disabled unless eXo gave a
//! complete, plausible answer.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, OwnerReference};
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::{Api, Resource, ResourceExt};
use serde_json::json;

use super::conditions::{self, Progress};
use super::status::{self, publish};
use super::{Context, Error, cascade};
use crate::crd::{
    ExoSource, ExoSourceStatus, MatrixSpace, MatrixSpaceSpec, MatrixUser, SpaceDeletionPolicy, SpaceRoomLink,
};
use crate::error_chain::chain;
use crate::exo::{ExoClient, ExoError};
use crate::plan::source::{Existing, SourceAction, SourceSettings, SpaceMatcher, plan_source, shrink_guard};
use crate::secret::SecretString;

/// Field manager of what an ExoSource writes (not the operator's own status manager).
const SOURCE_MANAGER: &str = "exo-matrix-operator-exosource";
pub const MANAGED_BY: &str = "app.kubernetes.io/managed-by";
/// Carries the name of the ExoSource that wrote an object: its MatrixSpace selects links by it.
pub const SOURCE_LABEL: &str = "exomatrix.dev/source";

pub async fn reconcile(source: Arc<ExoSource>, ctx: Arc<Context>) -> Result<Action, Error> {
    let _in_flight = crate::metrics::global().reconcile_started("source");
    let ns = source.namespace().unwrap_or_default();
    let api: Api<ExoSource> = Api::namespaced(ctx.kube.clone(), &ns);
    let Some(source) = status::fresh(&api, &source).await? else { return Ok(Action::await_change()) };
    // Being deleted (foreground: its dependents are being collected first): writing them again
    // would re-create what the garbage collector just deleted.
    if source.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let interval = interval(&source);
    let mut st = status::begin(&*source);
    let result = match sync(&source, &ctx, &mut st).await {
        Ok(Some(message)) => status::show(&*source, &ctx, &mut st, Progress::ready("Synced", message)).await,
        Ok(None) => return status::finish(&*source, &ctx, Ok(Action::await_change())).await,
        // What this pass learnt (counts, conflicts) is kept with the failure.
        Err(e) => {
            status::record_failure(&*source, &ctx, st, &e).await;
            Err(e)
        }
    };
    status::finish(&*source, &ctx, result.map(|()| Action::requeue(interval))).await
}

/// How often eXo is read.
pub(super) fn interval(source: &ExoSource) -> std::time::Duration {
    crate::duration::parse_duration(&source.spec.interval).unwrap_or(std::time::Duration::from_secs(300))
}

/// Kubernetes errors while writing what eXo said.
fn kube_err(e: kube::Error) -> Error {
    Error::Kube("writing the objects eXo describes".into(), e)
}

/// What a failed eXo read asks for: wrong credentials or URL need a person; the rest passes.
fn exo_failure(e: &ExoError) -> Error {
    let message = format!("{}; nothing was changed", chain(e));
    match e {
        ExoError::Status { status: 401 | 403, .. } => Error::needs_person("CredentialsRefused", message),
        ExoError::Status { status, .. } if *status != 429 && *status < 500 => {
            Error::needs_person("ExoRefused", message)
        }
        // An eXo that never says where a list ends will not change by itself.
        ExoError::TooManyPages { .. } => Error::needs_person("ExoUnbounded", message),
        ExoError::Url(_) => Error::invalid_spec("InvalidURL", message),
        _ => Error::waiting("ExoUnavailable", message),
    }
}

/// Reads eXo and writes what it describes; the message of the `Ready` condition, or `None` when the source
/// went (or started going) during the pass and nothing was written.
async fn sync(source: &ExoSource, ctx: &Context, st: &mut ExoSourceStatus) -> Result<Option<String>, Error> {
    let ns = source.namespace().unwrap_or_default();
    let spaces = SpaceMatcher::new(&source.spec.spaces.include, &source.spec.spaces.exclude)
        .map_err(|e| Error::invalid_spec("InvalidSpec", format!("{}; nothing was changed", chain(&e))))?;
    let client = exo_client(source, ctx).await?;
    let snapshot = client.snapshot().await.map_err(|e| exo_failure(&e))?;
    let seen = (snapshot.spaces.len(), snapshot.users.len());
    let previous = st.spaces_seen.zip(st.users_seen).map(|(s, u)| (s as usize, u as usize));
    if let Some(why) = shrink_guard(previous, seen, ctx.settings.exo_max_drop) {
        return Err(Error::needs_person("SuspiciousAnswer", why));
    }

    let links_api: Api<SpaceRoomLink> = Api::namespaced(ctx.kube.clone(), &ns);
    let users_api: Api<MatrixUser> = Api::namespaced(ctx.kube.clone(), &ns);
    let uid = source.uid().unwrap_or_default();
    let owned = |refs: &[OwnerReference]| refs.iter().any(|r| r.uid == uid);
    let source_name = source.name_any();
    let labelled = |labels: &BTreeMap<String, String>| labels.get(SOURCE_LABEL) == Some(&source_name);
    // From the watch caches, complete once listed: a list from the API server at every pass held every
    // MatrixUser of the namespace twice over (JSON and objects) each interval, 10,000 of them at scale. A cache
    // a little behind costs at most a write that changes nothing, or a deletion already done.
    ctx.caches_ready().await?;
    let link_list: Vec<Arc<SpaceRoomLink>> = ctx.links.as_ref().map(|s| s.state()).unwrap_or_default();
    let link_list: Vec<_> = link_list.into_iter().filter(|l| l.namespace().as_deref() == Some(ns.as_str())).collect();
    let user_list: Vec<Arc<MatrixUser>> = ctx.users.as_ref().map(|s| s.state()).unwrap_or_default();
    let user_list: Vec<_> = user_list.into_iter().filter(|u| u.namespace().as_deref() == Some(ns.as_str())).collect();
    let space = Api::<MatrixSpace>::namespaced(ctx.kube.clone(), &ns).get_opt(&source_name).await.map_err(kube_err)?;
    // The source is read again after its dependents (the caches only lag: they show the dependents as of then
    // or earlier): still there, then the garbage collector, which deletes them once it is gone, had deleted
    // none of them yet, and nothing below re-creates one. (A pass that read eXo while its source and the
    // dependents were being deleted wrote them all again.)
    if !still_here(source, ctx).await? {
        return Ok(None);
    }
    // Each dependent carries the source's onSourceDeletion, for when the source is gone (see cascade).
    let mark = cascade::annotation(source.spec.on_source_deletion);
    let unmarked = |meta: &kube::api::ObjectMeta| {
        meta.owner_references.iter().flatten().any(|r| r.uid == uid)
            && meta.annotations.as_ref().and_then(|a| a.get(cascade::ON_SOURCE_DELETION)).map(String::as_str) != mark
    };
    let note = json!({"metadata": {"annotations": {cascade::ON_SOURCE_DELETION: mark}}});
    for link in link_list.iter().filter(|l| unmarked(&l.metadata)) {
        links_api.patch(&link.name_any(), &PatchParams::default(), &Patch::Merge(&note)).await.map_err(kube_err)?;
    }
    for user in user_list.iter().filter(|u| unmarked(&u.metadata)) {
        users_api.patch(&user.name_any(), &PatchParams::default(), &Patch::Merge(&note)).await.map_err(kube_err)?;
    }
    let links: BTreeMap<String, Existing<_>> = link_list
        .into_iter()
        .map(|l| {
            let (owned, labelled) = (owned(l.owner_references()), labelled(l.labels()));
            (l.name_any(), Existing { owned, labelled, key: l.spec.space_group_id.clone(), spec: l.spec.clone() })
        })
        .collect();
    let users: BTreeMap<String, Existing<_>> = user_list
        .into_iter()
        .map(|u| {
            let (owned, labelled) = (owned(u.owner_references()), labelled(u.labels()));
            (u.name_any(), Existing { owned, labelled, key: u.spec.username.clone(), spec: u.spec.clone() })
        })
        .collect();
    let settings = SourceSettings {
        base_url: source.spec.url.clone(),
        spaces,
        create_rooms: source.spec.create_rooms,
        deletion_policy: source.spec.deletion_policy,
    };
    let plan = plan_source(&snapshot, &settings, &links, &users);

    let owner = source.controller_owner_ref(&()).into_iter().collect::<Vec<_>>();
    let apply = PatchParams::apply(SOURCE_MANAGER).force();
    let mut written = 0;
    for action in &plan.actions {
        let meta = |name: &str| {
            let annotations = mark.map(|m| json!({cascade::ON_SOURCE_DELETION: m})).unwrap_or_else(|| json!({}));
            json!({"name": name, "labels": {MANAGED_BY: crate::MANAGER, SOURCE_LABEL: &source_name},
                   "annotations": annotations, "ownerReferences": owner})
        };
        match action {
            SourceAction::ApplyLink { name, spec } => {
                let body = json!({"apiVersion": "exomatrix.dev/v1alpha1", "kind": "SpaceRoomLink", "metadata": meta(name), "spec": spec});
                links_api.patch(name, &apply, &Patch::Apply(body)).await.map_err(kube_err)?;
            }
            SourceAction::ApplyUser { name, spec } => {
                let body = json!({"apiVersion": "exomatrix.dev/v1alpha1", "kind": "MatrixUser", "metadata": meta(name), "spec": spec});
                users_api.patch(name, &apply, &Patch::Apply(body)).await.map_err(kube_err)?;
            }
            SourceAction::DeleteLink { name } => {
                match links_api.delete(name, &DeleteParams::default()).await {
                    Ok(_) => {}
                    // Gone since the cache saw it: done.
                    Err(kube::Error::Api(e)) if e.code == 404 => continue,
                    Err(e) => return Err(kube_err(e)),
                }
                publish(ctx, source, EventType::Normal, "LinkDeleted", &format!("space gone from eXo: deleted {name}"))
                    .await;
            }
            SourceAction::DisableUser { name } => {
                let body = json!({"spec": {"enabled": false}});
                users_api.patch(name, &PatchParams::default(), &Patch::Merge(body)).await.map_err(kube_err)?;
            }
        }
        written += 1;
    }
    let mut conflicts = plan.conflicts.clone();
    conflicts.extend(sync_matrix_space(source, ctx, &owner, space).await?);
    st.spaces_seen = Some(seen.0 as i64);
    st.users_seen = Some(seen.1 as i64);
    st.objects_written = Some(st.objects_written.unwrap_or(0) + written);
    // The time of the last change, not of the last read: a quiet pass writes no status (the Ready message
    // and the counts above say the same again).
    if written > 0 || st.last_sync_time.is_none() {
        st.last_sync_time = Some(conditions::now_rfc3339());
    }
    let generation = source.metadata.generation;
    if conflicts.is_empty() {
        conditions::remove(&mut st.conditions, "Conflict");
    } else {
        let message = conflicts.join("; ");
        conditions::set(&mut st.conditions, "Conflict", true, "HandWrittenObject", &message, generation);
    }
    if plan.held.is_empty() {
        conditions::remove(&mut st.conditions, "RosterHeld");
    } else {
        let message = format!("{}; their links were left as they are", plan.held.join("; "));
        conditions::set(&mut st.conditions, "RosterHeld", true, "RosterUnconfirmed", &message, generation);
        publish(ctx, source, EventType::Warning, "RosterHeld", &message).await;
    }
    let mut message = format!(
        "{} spaces and {} users in sync from {} ({} written this pass)",
        plan.spaces_synced, plan.users_synced, snapshot.dialect, written
    );
    if !plan.held.is_empty() {
        message.push_str(&format!("; {} spaces held, see RosterHeld", plan.held.len()));
    }
    Ok(Some(message))
}

/// Whether the source still exists (the same object) and is not being deleted.
async fn still_here(source: &ExoSource, ctx: &Context) -> Result<bool, Error> {
    let api: Api<ExoSource> = Api::namespaced(ctx.kube.clone(), &source.namespace().unwrap_or_default());
    let now = api.get_opt(&source.name_any()).await.map_err(|e| Error::Kube("reading the ExoSource".into(), e))?;
    Ok(now.is_some_and(|s| s.uid() == source.uid() && s.metadata.deletion_timestamp.is_none()))
}

/// Writes the MatrixSpace of `spec.matrixSpace` (named after the source, selecting
/// the links it labels; `existing`: that MatrixSpace as read), or deletes the one it wrote when the field is
/// gone. Returns a conflict when that name is taken by a MatrixSpace it did not write.
async fn sync_matrix_space(
    source: &ExoSource,
    ctx: &Context,
    owner: &[OwnerReference],
    existing: Option<MatrixSpace>,
) -> Result<Option<String>, Error> {
    let api: Api<MatrixSpace> = Api::namespaced(ctx.kube.clone(), &source.namespace().unwrap_or_default());
    let name = source.name_any();
    let uid = source.uid().unwrap_or_default();
    let owned = existing.as_ref().map(|s| s.owner_references().iter().any(|r| r.uid == uid));
    let Some(wanted) = &source.spec.matrix_space else {
        if owned == Some(true) {
            api.delete(&name, &DeleteParams::default()).await.map_err(kube_err)?;
            publish(ctx, source, EventType::Normal, "SpaceDeleted", &format!("matrixSpace removed: deleted {name}"))
                .await;
        }
        return Ok(None);
    };
    if owned == Some(false) {
        return Ok(Some(format!("MatrixSpace {name} already exists and was not written by this ExoSource")));
    }
    let spec = MatrixSpaceSpec {
        display_name: wanted.display_name.clone(),
        topic: wanted.topic.clone(),
        avatar_url: wanted.avatar_url.clone(),
        link_selector: Some(LabelSelector {
            match_labels: Some([(SOURCE_LABEL.to_owned(), name.clone())].into()),
            ..LabelSelector::default()
        }),
        managers: Vec::new(),
        manager_power_level: 50,
        deletion_policy: SpaceDeletionPolicy::Retain,
    };
    if existing.is_some_and(|s| s.spec == spec) {
        return Ok(None);
    }
    let body = json!({"apiVersion": "exomatrix.dev/v1alpha1", "kind": "MatrixSpace",
        "metadata": {"name": name, "labels": {MANAGED_BY: crate::MANAGER, SOURCE_LABEL: &name}, "ownerReferences": owner},
        "spec": spec});
    api.patch(&name, &PatchParams::apply(SOURCE_MANAGER).force(), &Patch::Apply(body)).await.map_err(kube_err)?;
    Ok(None)
}

/// The eXo client with the credentials of the source's basic-auth Secret.
async fn exo_client(source: &ExoSource, ctx: &Context) -> Result<ExoClient, Error> {
    let ns = source.namespace().unwrap_or_default();
    let name = &source.spec.credentials_secret_ref.name;
    let secret = Api::<Secret>::namespaced(ctx.kube.clone(), &ns)
        .get_opt(name)
        .await
        .map_err(|e| Error::Kube(format!("reading eXo credentials Secret {ns}/{name}"), e))?
        // GitOps may create the Secret after the ExoSource: wait for it.
        .ok_or_else(|| Error::waiting("SecretNotFound", format!("eXo credentials Secret {ns}/{name} not found")))?;
    let data = secret.data.unwrap_or_default();
    let text = |k: &str| data.get(k).and_then(|v| String::from_utf8(v.0.clone()).ok());
    let (Some(user), Some(password)) = (text("username"), text("password")) else {
        return Err(Error::needs_person(
            "CredentialsUnavailable",
            format!("eXo credentials Secret {ns}/{name} needs the keys `username` and `password`"),
        ));
    };
    ExoClient::new(&source.spec.url, user.trim(), SecretString::new(password.trim_end_matches('\n')))
        .map_err(|e| exo_failure(&e))
}
