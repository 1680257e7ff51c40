//! Writing status and Events: the same for every kind the operator manages.

use kube::api::{Patch, PatchParams};
use kube::runtime::events::{Event, EventType};
use kube::{Api, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;

use super::{Context, Error};

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
    api.patch_status(&obj.name_any(), &PatchParams::apply(crate::MANAGER).force(), &Patch::Apply(body))
        .await
        .map_err(|e| Error::Kube("writing status".into(), e))?;
    Ok(())
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
        tracing::debug!(error = %e, "cannot publish event");
    }
}
