//! The Secret the operator owns (`<credentials-secret>-operator-token`): its
//! own account's token, password and id.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{ObjectReference, Secret};
use kube::api::{ObjectMeta, Patch, PatchParams};
use kube::{Api, Client};

use super::SessionError;
use crate::secret::SecretString;

const TOKEN_KEY: &str = "accessToken";
const PASSWORD_KEY: &str = "password";
const USER_KEY: &str = "userId";

/// What the token Secret holds; every part may be missing.
#[derive(Debug, Default)]
pub struct Stored {
    pub token: Option<SecretString>,
    pub password: Option<SecretString>,
    pub user_id: Option<String>,
}

pub struct TokenStore {
    api: Api<Secret>,
    namespace: String,
    name: String,
}

impl TokenStore {
    pub fn new(kube: &Client, namespace: &str, name: &str) -> TokenStore {
        TokenStore {
            api: Api::namespaced(kube.clone(), namespace),
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub async fn read(&self) -> Result<Stored, SessionError> {
        let secret = self.api.get_opt(&self.name).await.map_err(|e| SessionError::Kube(self.name.clone(), e))?;
        let data = secret.and_then(|s| s.data).unwrap_or_default();
        let text = |k: &str| data.get(k).and_then(|b| String::from_utf8(b.0.clone()).ok()).filter(|t| !t.is_empty());
        Ok(Stored {
            token: text(TOKEN_KEY).map(SecretString::new),
            password: text(PASSWORD_KEY).map(SecretString::new),
            user_id: text(USER_KEY),
        })
    }

    pub async fn write(
        &self,
        token: &SecretString,
        user_id: &str,
        password: &SecretString,
    ) -> Result<(), SessionError> {
        self.apply(&[(TOKEN_KEY, token.expose()), (USER_KEY, user_id), (PASSWORD_KEY, password.expose())]).await
    }

    /// Stores a new password and keeps what else is there (server-side apply
    /// drops keys this manager stops sending).
    pub async fn write_password(
        &self,
        password: &SecretString,
        token: Option<&SecretString>,
        user_id: Option<&str>,
    ) -> Result<(), SessionError> {
        let mut pairs = vec![(PASSWORD_KEY, password.expose())];
        pairs.extend(token.map(|t| (TOKEN_KEY, t.expose())));
        pairs.extend(user_id.map(|u| (USER_KEY, u)));
        self.apply(&pairs).await
    }

    async fn apply(&self, pairs: &[(&str, &str)]) -> Result<(), SessionError> {
        let data: BTreeMap<String, ByteString> =
            pairs.iter().map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec()))).collect();
        let secret = Secret {
            metadata: ObjectMeta {
                name: Some(self.name.clone()),
                labels: Some([("app.kubernetes.io/managed-by".to_owned(), crate::MANAGER.to_owned())].into()),
                ..ObjectMeta::default()
            },
            data: Some(data),
            ..Secret::default()
        };
        self.api
            .patch(&self.name, &PatchParams::apply(crate::MANAGER).force(), &Patch::Apply(&secret))
            .await
            .map_err(|e| SessionError::Kube(self.name.clone(), e))?;
        Ok(())
    }

    /// Where Events about the operator's session go.
    pub fn reference(&self) -> ObjectReference {
        ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Secret".into()),
            name: Some(self.name.clone()),
            namespace: Some(self.namespace.clone()),
            ..ObjectReference::default()
        }
    }
}
