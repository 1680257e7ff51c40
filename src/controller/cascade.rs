//! Deleting an `ExoSource` makes Kubernetes' garbage collector delete every
//! object it wrote. Those deletions are not decisions about the space or the
//! person, so by default they keep rooms and accounts (`onSourceDeletion`).
//!
//! A dependent's finalizer asks here whether its deletion is such a cascade:
//! its owning ExoSource is being deleted (foreground: `deletionTimestamp` set
//! while dependents go first) or already gone (background: the owner goes
//! first). A gone source can no longer be read, so the source also writes its
//! choice on every dependent (`ON_SOURCE_DELETION`); without it, retain.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::{Api, Resource, ResourceExt};

use super::{Context, Error};
use crate::crd::{ExoSource, GROUP, OnSourceDeletion};

/// Annotation an ExoSource writes on its dependents: its `onSourceDeletion`.
pub const ON_SOURCE_DELETION: &str = "exomatrix.dev/on-source-deletion";

/// The annotation value for a choice (`None` removes it: `Retain` is what its absence means).
pub fn annotation(choice: OnSourceDeletion) -> Option<&'static str> {
    match choice {
        OnSourceDeletion::Retain => None,
        OnSourceDeletion::ApplyPolicies => Some("ApplyPolicies"),
    }
}

fn source_ref(obj: &impl Resource) -> Option<&OwnerReference> {
    obj.meta()
        .owner_references
        .as_deref()?
        .iter()
        .find(|r| r.kind == "ExoSource" && r.api_version.starts_with(&format!("{GROUP}/")))
}

/// Why `obj` keeps what it manages although its own policy would remove it, or
/// `None` when its policy applies (no owning source, the source alive and not
/// being deleted, or the source said `ApplyPolicies`). Errors when the source
/// cannot be read: never apply a policy on a guess.
pub async fn retained_by_source<K: Resource>(obj: &K, ctx: &Context) -> Result<Option<String>, Error> {
    Sources::default().retained(obj, ctx).await
}

/// ExoSources read once per pass, for when many dependents are judged at once.
#[derive(Default)]
pub struct Sources(BTreeMap<(String, String), Option<ExoSource>>);

impl Sources {
    pub async fn retained<K: Resource>(&mut self, obj: &K, ctx: &Context) -> Result<Option<String>, Error> {
        let Some(owner) = source_ref(obj) else { return Ok(None) };
        let ns = obj.meta().namespace.clone().unwrap_or_default();
        let key = (ns.clone(), owner.name.clone());
        if !self.0.contains_key(&key) {
            let api: Api<ExoSource> = Api::namespaced(ctx.kube.clone(), &ns);
            let source = api
                .get_opt(&owner.name)
                .await
                .map_err(|e| Error::Kube(format!("reading the owning ExoSource {ns}/{}", owner.name), e))?;
            self.0.insert(key.clone(), source);
        }
        // A source of the same name created since is not the owner.
        let source =
            self.0.get(&key).and_then(Option::as_ref).filter(|s| s.uid().as_deref() == Some(owner.uid.as_str()));
        let (choice, how) = match source {
            Some(s) if s.metadata.deletion_timestamp.is_none() => return Ok(None),
            Some(s) => (s.spec.on_source_deletion, "is being deleted"),
            None => {
                let noted = obj.annotations().get(ON_SOURCE_DELETION).map(String::as_str);
                let choice = if noted == Some("ApplyPolicies") {
                    OnSourceDeletion::ApplyPolicies
                } else {
                    OnSourceDeletion::Retain
                };
                (choice, "was deleted")
            }
        };
        Ok((choice == OnSourceDeletion::Retain)
            .then(|| format!("its ExoSource {} {how} (onSourceDeletion: Retain): kept as it is in Matrix", owner.name)))
    }
}
