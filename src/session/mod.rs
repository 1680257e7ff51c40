//! The operator's connection to Synapse. `establish` is the one place that
//! decides how a session is obtained (`Route`); `own_account` keeps the
//! operator's own account working through the shared secret; `watch` keeps a
//! session current as the credentials Secret changes or Synapse refuses it.

mod mas;
mod own_account;
mod store;
mod watch;

use std::sync::Arc;

use kube::Client;
use kube::runtime::events::{Event, EventType, Recorder};

use crate::credentials::{Credentials, CredentialsError};
use crate::ids::{self, IdError, OwnedServerName, OwnedUserId, UserId};
use crate::mas::Mas;
use crate::mas::session::MasSessionError;
use crate::retry::ErrorClass;
use crate::secret::SecretString;
use crate::synapse::{self, AuthMode, Synapse};
pub use own_account::Outcome;
pub use watch::watch_session;

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
    /// The Secret the operator owns, holding its own account's token.
    pub fn token_secret_name(&self) -> String {
        format!("{}-operator-token", self.secret_name)
    }

    fn label(&self) -> String {
        format!("{}/{}", self.secret_namespace, self.secret_name)
    }
}

/// A working admin connection.
#[derive(Clone)]
pub struct Session {
    pub admin: Synapse,
    pub user_id: OwnedUserId,
    pub server_name: OwnedServerName,
    pub shared_secret: Option<SecretString>,
    pub mode: AuthMode,
    /// MAS's admin API, when Synapse delegates to it: accounts are managed there.
    pub mas: Option<Mas>,
    /// When the session's token should be renewed (MAS personal sessions expire).
    pub renew_at: Option<jiff::Timestamp>,
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
    /// Only a person can fix this: there is no shared secret to heal with.
    #[error(
        "Synapse refused the access token in Secret {0} (revoked, expired, or of a deleted account): put a working server-admin access token under `accessToken` there, or add the registration shared secret under `sharedSecret` so the operator keeps its own account working"
    )]
    TokenRefused(String, #[source] synapse::Error),
    #[error("{0} is not a Synapse server admin; the operator needs an admin token")]
    NotAdmin(OwnedUserId),
    /// A server name (flag or Secret) or an id Synapse or the token store gave that is not one.
    #[error(transparent)]
    InvalidId(#[from] IdError),
    #[error("recovering the operator's account through a helper admin failed: {0}")]
    Helper(&'static str),
    #[error("Synapse call failed")]
    Synapse(#[from] synapse::Error),
    #[error("cannot read or write Secret {0}")]
    Kube(String, #[source] kube::Error),
    #[error(
        "Synapse delegates authentication to MAS (GET /_synapse/admin/v1/register answers 404), and the credentials Secret {0} lacks {keys}: accounts can only be managed through MAS's admin API",
        keys = .1.join(", ")
    )]
    MasCredentialsMissing(String, Vec<&'static str>),
    #[error("cannot work through MAS at {0}")]
    Mas(String, #[source] MasSessionError),
}

impl SessionError {
    /// A Secret GitOps has yet to create, Synapse out of reach, or a failed
    /// recovery may pass by itself; credentials Synapse refuses and that the
    /// shared secret cannot heal need a person.
    pub fn class(&self) -> ErrorClass {
        match self {
            SessionError::SecretMissing(_) | SessionError::Kube(..) | SessionError::Helper(_) => ErrorClass::Transient,
            SessionError::Synapse(e) if e.retry_kind() != synapse::RetryKind::Permanent => ErrorClass::Transient,
            SessionError::Mas(_, MasSessionError::Mas(e)) if e.retry_kind() != synapse::RetryKind::Permanent => {
                ErrorClass::Transient
            }
            SessionError::Mas(_, MasSessionError::Synapse(e)) if e.retry_kind() != synapse::RetryKind::Permanent => {
                ErrorClass::Transient
            }
            SessionError::Mas(_, MasSessionError::Kube(..)) => ErrorClass::Transient,
            SessionError::MasCredentialsMissing(..) | SessionError::Mas(..) => ErrorClass::NeedsPerson,
            SessionError::Credentials(..)
            | SessionError::NoUrl
            | SessionError::TokenRefused(..)
            | SessionError::NotAdmin(_)
            | SessionError::InvalidId(_)
            | SessionError::Synapse(_) => ErrorClass::NeedsPerson,
        }
    }

    /// Errors only a change of the Secret can fix: not retried on a timer.
    pub fn needs_secret_change(&self) -> bool {
        match self {
            SessionError::Credentials(..) | SessionError::MasCredentialsMissing(..) | SessionError::NoUrl => true,
            // Refused client credentials and the like: MAS will answer the same until someone acts.
            SessionError::Mas(_, MasSessionError::Mas(e)) => e.retry_kind() == synapse::RetryKind::Permanent,
            _ => false,
        }
    }
}

/// How the session is obtained from a classic Synapse (a delegating one takes the MAS route, `mas`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// The access token a person put in the credentials Secret.
    GivenToken,
    /// The operator's own account, kept working through the shared secret.
    OwnAccount,
    /// A given token first; the own account when Synapse refuses it.
    GivenTokenThenOwnAccount,
}

/// Picks the route from what the credentials Secret holds (`parse` guarantees one of the two).
pub fn route(creds: &Credentials) -> Route {
    match (creds.access_token.is_some(), creds.shared_secret.is_some()) {
        (true, true) => Route::GivenTokenThenOwnAccount,
        (true, false) => Route::GivenToken,
        (false, _) => Route::OwnAccount,
    }
}

/// Builds a session from credentials.
pub async fn establish(
    kube: &Client,
    cfg: &SessionConfig,
    creds: &Credentials,
    recorder: Option<&Recorder>,
) -> Result<Session, SessionError> {
    let url = cfg.homeserver_url.as_deref().or(creds.server_url.as_deref()).ok_or(SessionError::NoUrl)?;
    let anonymous = Synapse::new(url)?;
    // A delegating Synapse has no registration and no log-in-as-user: MAS is the route.
    if anonymous.auth_mode().await? == AuthMode::Delegated {
        return mas::establish(kube, cfg, creds, &anonymous).await;
    }
    match (route(creds), &creds.access_token, &creds.shared_secret) {
        (Route::GivenToken, Some(token), _) => connect(cfg, creds, anonymous.with_token(token.clone())).await,
        (Route::GivenTokenThenOwnAccount, Some(token), Some(secret)) => {
            match connect(cfg, creds, anonymous.with_token(token.clone())).await {
                Err(SessionError::TokenRefused(..)) => {
                    tracing::warn!(secret = %cfg.label(), "Synapse refused the given access token; using the operator's own account through the shared secret");
                    own(kube, cfg, creds, &anonymous, secret, recorder).await
                }
                other => other,
            }
        }
        (_, _, Some(secret)) => own(kube, cfg, creds, &anonymous, secret, recorder).await,
        _ => Err(SessionError::Credentials(cfg.label(), CredentialsError::Empty)),
    }
}

async fn own(
    kube: &Client,
    cfg: &SessionConfig,
    creds: &Credentials,
    anonymous: &Synapse,
    secret: &SecretString,
    recorder: Option<&Recorder>,
) -> Result<Session, SessionError> {
    let store = store::TokenStore::new(kube, &cfg.secret_namespace, &cfg.token_secret_name());
    let (token, outcome) = own_account::session(anonymous, &store, &cfg.admin_localpart, secret).await?;
    let session = connect(cfg, creds, anonymous.with_token(token)).await?;
    let (reason, note) = match &outcome {
        Outcome::Reused => return Ok(session),
        Outcome::Registered => (
            "AccountBootstrapped",
            format!("registered the operator's account {} through the shared secret", session.user_id),
        ),
        Outcome::LoggedIn { why } => {
            ("SessionRecovered", format!("logged in again as {} with the stored password: {why}", session.user_id))
        }
        Outcome::Recovered { why } => (
            "SessionRecovered",
            format!(
                "gave {} a new password through a short-lived helper admin (other sessions kept) and logged in: {why}",
                session.user_id
            ),
        ),
    };
    tracing::info!(user_id = %session.user_id, secret = %store.name(), reason, "{note}");
    if let Some(recorder) = recorder {
        let event = Event {
            type_: EventType::Normal,
            reason: reason.into(),
            note: Some(note),
            action: reason.into(),
            secondary: None,
        };
        if let Err(e) = recorder.publish(&event, &store.reference()).await {
            tracing::debug!(error = %crate::error_chain::chain(&e), "cannot publish event");
        }
    }
    Ok(session)
}

/// Checks the token and learns who it is.
async fn connect(cfg: &SessionConfig, creds: &Credentials, admin: Synapse) -> Result<Session, SessionError> {
    let me = admin.whoami().await.map_err(|e| match e.status() {
        Some(401) => SessionError::TokenRefused(cfg.label(), e),
        _ => SessionError::Synapse(e),
    })?;
    // Exempting ourselves doubles as the admin check: it is an admin-only call.
    match admin.exempt_from_rate_limits(&me.user_id).await {
        Ok(()) => {}
        Err(e) if e.status() == Some(403) => return Err(SessionError::NotAdmin(me.user_id)),
        Err(e) => return Err(e.into()),
    }
    let server_name = server_name(cfg, creds, &me.user_id)?;
    Ok(Session {
        admin,
        user_id: me.user_id,
        server_name,
        shared_secret: creds.shared_secret.clone(),
        mode: AuthMode::Classic,
        mas: None,
        renew_at: None,
    })
}

/// The server name of the ids the operator makes: the flag, else the Secret's, else its own account's.
fn server_name(cfg: &SessionConfig, creds: &Credentials, me: &UserId) -> Result<OwnedServerName, IdError> {
    match cfg.server_name.as_deref().or(creds.server_name.as_deref()) {
        Some(name) => ids::server_name(name),
        None => Ok(me.server_name().to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds(token: bool, secret: bool) -> Credentials {
        Credentials {
            access_token: token.then(|| SecretString::new("t")),
            shared_secret: secret.then(|| SecretString::new("s")),
            ..Credentials::default()
        }
    }

    #[test]
    fn the_shared_secret_always_leaves_a_way_back() {
        assert_eq!(route(&creds(false, true)), Route::OwnAccount);
        assert_eq!(route(&creds(true, true)), Route::GivenTokenThenOwnAccount);
        assert_eq!(route(&creds(true, false)), Route::GivenToken);
    }

    #[test]
    fn only_a_refused_token_without_a_shared_secret_needs_a_person() {
        let refused = SessionError::TokenRefused(
            "ns/matrix".into(),
            synapse::Error::Api {
                method: "GET",
                path: "/whoami".into(),
                status: 401,
                errcode: "M_UNKNOWN_TOKEN".into(),
                message: "Unknown access token".into(),
                retry_after: None,
            },
        );
        assert_eq!(refused.class(), ErrorClass::NeedsPerson);
        let text = refused.to_string();
        assert!(
            text.contains("ns/matrix") && text.contains("`accessToken`") && text.contains("`sharedSecret`"),
            "{text}"
        );
        assert_eq!(SessionError::Helper("x").class(), ErrorClass::Transient);
    }
}
