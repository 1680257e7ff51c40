//! Objects that name a Secret (a MatrixUser's password, an ExoSource's credentials): a Secret
//! created or changed after them wakes them at once, not at their next retry or resync.

use std::sync::Arc;

use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};

use crate::crd::{ExoSource, MatrixUser};

/// The Secrets worth watching: Helm's release records and token Secrets are never referred to.
pub fn watched() -> watcher::Config {
    watcher::Config::default().fields("type!=helm.sh/release.v1,type!=kubernetes.io/service-account-token")
}

/// MatrixUsers whose password is in `secret` (a Secret, or only its metadata as the watch has it).
pub fn users_of(secret: &impl Resource, users: &[Arc<MatrixUser>]) -> Vec<ObjectRef<MatrixUser>> {
    referrers(secret, users, |u| u.spec.password_secret_ref.as_ref().map(|r| r.name.as_str()))
}

/// ExoSources whose credentials are in `secret`.
pub fn sources_of(secret: &impl Resource, sources: &[Arc<ExoSource>]) -> Vec<ObjectRef<ExoSource>> {
    referrers(secret, sources, |s| Some(s.spec.credentials_secret_ref.name.as_str()))
}

/// The objects of `secret`'s namespace whose reference (`name_of`) names it.
fn referrers<K: Resource<DynamicType = ()>>(
    secret: &impl Resource,
    objects: &[Arc<K>],
    name_of: fn(&K) -> Option<&str>,
) -> Vec<ObjectRef<K>> {
    let name = secret.name_any();
    objects
        .iter()
        .filter(|o| o.namespace() == secret.namespace() && name_of(o) == Some(name.as_str()))
        .map(|o| ObjectRef::from_obj(&**o))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::SecretKeyRef;
    use k8s_openapi::api::core::v1::Secret;

    fn user(ns: &str, name: &str, secret: Option<&str>) -> Arc<MatrixUser> {
        let spec = serde_json::json!({"username": name});
        let mut u = MatrixUser::new(name, serde_json::from_value(spec).expect("spec"));
        u.metadata.namespace = Some(ns.into());
        u.spec.password_secret_ref = secret.map(|s| SecretKeyRef { name: s.into(), key: "password".into() });
        Arc::new(u)
    }

    #[test]
    fn only_objects_of_the_same_namespace_naming_the_secret_are_woken() {
        let mut secret = Secret::default();
        secret.metadata.name = Some("pw".into());
        secret.metadata.namespace = Some("a".into());
        let users = [
            user("a", "ann", Some("pw")),
            user("b", "bob", Some("pw")),
            user("a", "cat", Some("other")),
            user("a", "dan", None),
        ];
        let woken = users_of(&secret, &users);
        assert_eq!(woken.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(), ["ann"]);
    }
}
