//! The MAS route: when Synapse delegates authentication to MAS, the operator's
//! account and its personal session come from MAS's admin API (`crate::mas::session`).

use k8s_openapi::api::core::v1::Secret;
use kube::{Api, Client};

use super::{Session, SessionConfig, SessionError};
use crate::credentials::Credentials;
use crate::mas::Mas;
use crate::synapse::{AuthMode, Synapse};

pub(super) async fn establish(
    kube: &Client,
    cfg: &SessionConfig,
    creds: &Credentials,
    synapse: &Synapse,
) -> Result<Session, SessionError> {
    let mas_creds = creds.mas().map_err(|missing| SessionError::MasCredentialsMissing(cfg.label(), missing))?;
    let mas = Mas::new(&mas_creds.url, &mas_creds.client_id, mas_creds.client_secret.clone())
        .map_err(|e| SessionError::Mas(mas_creds.url.clone(), e.into()))?;
    let secrets: Api<Secret> = Api::namespaced(kube.clone(), &cfg.secret_namespace);
    let own = crate::mas::session::establish(&mas, synapse, &secrets, &cfg.token_secret_name(), &cfg.admin_localpart)
        .await
        .map_err(|e| SessionError::Mas(mas_creds.url.clone(), e))?;
    let server_name = super::server_name(cfg, creds, &own.user_id)?;
    Ok(Session {
        admin: own.admin,
        user_id: own.user_id,
        server_name,
        shared_secret: None,
        mode: AuthMode::Delegated,
        mas: Some(mas),
        renew_at: own.renew_at,
    })
}
