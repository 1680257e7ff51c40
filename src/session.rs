//! The operator's connection to Synapse: resolved from the credentials Secret,
//! bootstrapping its own admin account through the shared secret when no
//! access token is given, and re-established whenever the Secret changes.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{ObjectMeta, Patch, PatchParams};
use kube::runtime::watcher;
use kube::{Api, Client};
use rand::distr::{Alphanumeric, SampleString};
use tokio::sync::watch;

use crate::credentials::{self, Credentials, CredentialsError};
use crate::ids;
use crate::retry::ErrorClass;
use crate::secret::SecretString;
use crate::synapse::{self, Registration, Synapse};

/// Where the credentials live and how to use them.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    pub secret_namespace: String,
    pub secret_name: String,
    pub homeserver_url: Option<String>,
    pub server_name: Option<String>,
    /// Localpart of the account the operator registers for itself.
    pub admin_localpart: String,
}

impl SessionConfig {
    /// The Secret the operator owns, holding its bootstrapped token.
    pub fn token_secret_name(&self) -> String {
        format!("{}-operator-token", self.secret_name)
    }
}

/// A working admin connection.
#[derive(Clone)]
pub struct Session {
    pub admin: Synapse,
    pub user_id: String,
    pub server_name: String,
    pub shared_secret: Option<SecretString>,
}

/// What controllers see: a session, or why there is none.
#[derive(Clone)]
pub enum SessionState {
    Starting,
    Ready(Arc<Session>),
    /// Why there is no session, and whether waiting helps or a person must act.
    Failed(String, ErrorClass),
}

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("credentials Secret {0} not found")]
    SecretMissing(String),
    #[error("credentials Secret {0} is unusable")]
    Credentials(String, #[source] CredentialsError),
    #[error(
        "no homeserver URL: pass --homeserver-url (MATRIX_SERVER_URL) or put `serverUrl` in the credentials Secret"
    )]
    NoUrl,
    #[error("the access token was refused by Synapse")]
    TokenRefused(#[source] synapse::Error),
    #[error("{0} is not a Synapse server admin; the operator needs an admin token")]
    NotAdmin(String),
    #[error(
        "the operator's account {0} exists but its stored password no longer works, and there is no access token; put `accessToken` in the credentials Secret"
    )]
    AccountLost(String),
    #[error("Synapse call failed")]
    Synapse(#[from] synapse::Error),
    #[error("cannot read or write Secret {0}")]
    Kube(String, #[source] kube::Error),
}

impl SessionError {
    /// A Secret GitOps has yet to create, or Synapse out of reach, may pass by
    /// itself; credentials Synapse refuses need a person.
    pub fn class(&self) -> ErrorClass {
        match self {
            SessionError::SecretMissing(_) | SessionError::Kube(..) => ErrorClass::Transient,
            SessionError::Synapse(e) if e.retry_kind() != synapse::RetryKind::Permanent => ErrorClass::Transient,
            SessionError::Credentials(..)
            | SessionError::NoUrl
            | SessionError::TokenRefused(_)
            | SessionError::NotAdmin(_)
            | SessionError::AccountLost(_)
            | SessionError::Synapse(_) => ErrorClass::NeedsPerson,
        }
    }
}

const TOKEN_KEY: &str = "accessToken";
const PASSWORD_KEY: &str = "password";
const USER_KEY: &str = "userId";

/// Builds a session from credentials (the I/O part of bootstrapping).
pub async fn establish(kube: &Client, cfg: &SessionConfig, creds: &Credentials) -> Result<Session, SessionError> {
    let url = cfg.homeserver_url.as_deref().or(creds.server_url.as_deref()).ok_or(SessionError::NoUrl)?;
    let anonymous = Synapse::new(url)?;
    let token = match &creds.access_token {
        Some(t) => t.clone(),
        None => bootstrap_token(kube, cfg, &anonymous, creds).await?,
    };
    let admin = anonymous.with_token(token);
    let me = admin.whoami().await.map_err(|e| match e.status() {
        Some(401) => SessionError::TokenRefused(e),
        _ => SessionError::Synapse(e),
    })?;
    // Exempting ourselves doubles as the admin check: it is an admin-only call.
    match admin.exempt_from_rate_limits(&me.user_id).await {
        Ok(()) => {}
        Err(e) if e.status() == Some(403) => return Err(SessionError::NotAdmin(me.user_id)),
        Err(e) => return Err(e.into()),
    }
    let server_name = cfg
        .server_name
        .clone()
        .or_else(|| creds.server_name.clone())
        .or_else(|| ids::server_of(&me.user_id).map(str::to_owned))
        .unwrap_or_default();
    Ok(Session { admin, user_id: me.user_id, server_name, shared_secret: creds.shared_secret.clone() })
}

/// Finds the operator's own token: the stored one if it still works, a fresh
/// login with the stored password, or a new account through the shared secret.
/// The password is stored before registering, so a crash in between is healed
/// by logging in on the next start.
async fn bootstrap_token(
    kube: &Client,
    cfg: &SessionConfig,
    synapse: &Synapse,
    creds: &Credentials,
) -> Result<SecretString, SessionError> {
    let secrets: Api<Secret> = Api::namespaced(kube.clone(), &cfg.secret_namespace);
    let name = cfg.token_secret_name();
    let stored = secrets.get_opt(&name).await.map_err(|e| SessionError::Kube(name.clone(), e))?;
    let stored = stored.and_then(|s| s.data).unwrap_or_default();
    let text = |k: &str| stored.get(k).and_then(|b| String::from_utf8(b.0.clone()).ok()).map(SecretString::new);

    if let Some(token) = text(TOKEN_KEY) {
        match synapse.with_token(token.clone()).whoami().await {
            Ok(_) => return Ok(token),
            Err(e) if e.status() == Some(401) => {
                tracing::info!("stored operator token refused; logging in again")
            }
            Err(e) => return Err(e.into()),
        }
    }
    let user_id = text(USER_KEY).map(|u| u.expose().to_owned());
    let localpart = user_id
        .as_deref()
        .and_then(ids::localpart_of)
        .map(str::to_owned)
        .unwrap_or_else(|| cfg.admin_localpart.clone());
    let password = match text(PASSWORD_KEY) {
        Some(p) => p,
        None => {
            let p = SecretString::new(Alphanumeric.sample_string(&mut rand::rng(), 40));
            store(&secrets, &name, &[(PASSWORD_KEY, p.expose())]).await?;
            p
        }
    };
    let shared_secret = creds.shared_secret.as_ref().ok_or(SessionError::Credentials(
        format!("{}/{}", cfg.secret_namespace, cfg.secret_name),
        CredentialsError::Empty,
    ))?;
    let reg = Registration {
        username: localpart.clone(),
        password: password.clone(),
        admin: true,
        displayname: Some("eXo Matrix operator".into()),
    };
    let (user_id, token) = match synapse.register_with_shared_secret(shared_secret, &reg).await {
        Ok(r) => {
            let token = r.access_token.ok_or_else(|| SessionError::AccountLost(r.user_id.clone()))?;
            (r.user_id, token)
        }
        Err(e) if e.errcode() == Some("M_USER_IN_USE") => {
            match synapse.login_with_password(&localpart, &password).await {
                Ok(token) => (format!("@{localpart}"), token),
                Err(e) if e.status() == Some(403) => {
                    return Err(SessionError::AccountLost(format!("@{localpart}")));
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(e) => return Err(e.into()),
    };
    let user_id = match synapse.with_token(token.clone()).whoami().await {
        Ok(me) => me.user_id,
        Err(_) => user_id,
    };
    // Server-side apply drops keys this manager stops sending: always send the password too.
    store(&secrets, &name, &[(TOKEN_KEY, token.expose()), (USER_KEY, &user_id), (PASSWORD_KEY, password.expose())])
        .await?;
    tracing::info!(user_id, secret = %name, "bootstrapped the operator's admin account through the shared secret");
    Ok(token)
}

async fn store(secrets: &Api<Secret>, name: &str, pairs: &[(&str, &str)]) -> Result<(), SessionError> {
    let data: BTreeMap<String, ByteString> =
        pairs.iter().map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec()))).collect();
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            labels: Some([("app.kubernetes.io/managed-by".to_owned(), "exo-matrix-operator".to_owned())].into()),
            ..ObjectMeta::default()
        },
        data: Some(data),
        ..Secret::default()
    };
    secrets
        .patch(name, &PatchParams::apply("exo-matrix-operator").force(), &Patch::Apply(&secret))
        .await
        .map_err(|e| SessionError::Kube(name.to_owned(), e))?;
    Ok(())
}

/// Full error chain in one line, for conditions and logs (never holds secrets).
pub fn chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// Watches the credentials Secret and keeps a session current. A failed
/// attempt is retried every `retry` until it works or the Secret changes.
///
/// `refresh` asks for a new session while the current one looks healthy: a
/// controller whose token Synapse no longer accepts (revoked, logged out) rings it.
pub fn watch_session(
    kube: Client,
    cfg: SessionConfig,
    retry: Duration,
    refresh: Arc<tokio::sync::Notify>,
) -> watch::Receiver<SessionState> {
    let (tx, rx) = watch::channel(SessionState::Starting);
    tokio::spawn(async move {
        let secrets: Api<Secret> = Api::namespaced(kube.clone(), &cfg.secret_namespace);
        let wc = watcher::Config::default().fields(&format!("metadata.name={}", cfg.secret_name));
        let mut events = watcher(secrets, wc).boxed();
        let label = format!("{}/{}", cfg.secret_namespace, cfg.secret_name);
        let mut current: Option<BTreeMap<String, ByteString>> = None;
        let mut seen_any = false;
        let mut healthy = false;
        loop {
            let event = if healthy {
                tokio::select! {
                    e = events.next() => e,
                    _ = refresh.notified() => {
                        tracing::info!("Synapse refused the session's token; establishing a new session");
                        healthy = false;
                        Some(Ok(watcher::Event::InitDone))
                    }
                }
            } else if current.is_none() && seen_any {
                events.next().await
            } else {
                match tokio::time::timeout(retry, events.next()).await {
                    Ok(e) => e,
                    Err(_) => Some(Ok(watcher::Event::InitDone)), // retry tick
                }
            };
            let Some(event) = event else { break };
            match event {
                Ok(watcher::Event::Apply(s) | watcher::Event::InitApply(s)) => {
                    seen_any = true;
                    let data = s.data.unwrap_or_default();
                    if healthy && current.as_ref() == Some(&data) {
                        continue;
                    }
                    current = Some(data);
                }
                Ok(watcher::Event::Delete(_)) => {
                    current = None;
                    healthy = false;
                    let missing = SessionError::SecretMissing(label.clone());
                    let _ = tx.send(SessionState::Failed(missing.to_string(), missing.class()));
                    continue;
                }
                Ok(watcher::Event::Init) => continue,
                Ok(watcher::Event::InitDone) => {
                    seen_any = true;
                    if current.is_none() {
                        let missing = SessionError::SecretMissing(label.clone());
                        let _ = tx.send(SessionState::Failed(missing.to_string(), missing.class()));
                        continue;
                    }
                    if healthy {
                        continue;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "watching the credentials Secret");
                    continue;
                }
            }
            let Some(data) = current.clone() else {
                continue;
            };
            let state = match credentials::parse(&data) {
                Err(e) => Err(SessionError::Credentials(label.clone(), e)),
                Ok(creds) => establish(&kube, &cfg, &creds).await,
            };
            match state {
                Ok(session) => {
                    tracing::info!(user_id = %session.user_id, server_name = %session.server_name, "connected to Synapse");
                    healthy = true;
                    let _ = tx.send(SessionState::Ready(Arc::new(session)));
                }
                Err(e) => {
                    let message = chain(&e);
                    tracing::error!(error = %message, "no usable Synapse session");
                    healthy = false;
                    let _ = tx.send(SessionState::Failed(message, e.class()));
                }
            }
        }
    });
    rx
}
