//! Controllers: wire the Kubernetes and Synapse adapters to the pure plans.

mod avatar;
pub mod conditions;
pub mod link;
pub mod source;
pub mod space;
mod status;
pub mod user;

use std::sync::Arc;
use std::time::Duration;

use kube::Client;
use kube::runtime::controller::Action;
use kube::runtime::events::Recorder;
use rand::Rng;
use tokio::sync::watch;

use crate::session::{Session, SessionState};
use crate::synapse::{self, RetryKind};

/// How accounts are created.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum UserCreation {
    /// `PUT /_synapse/admin/v2/users/<id>`: no password needed, 20–40× faster.
    AdminApi,
    /// Shared-secret registration, as the original eXo addon did (bcrypt-bound).
    SharedSecret,
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub resync: Duration,
    pub user_creation: UserCreation,
    pub concurrency: u16,
    /// Room aliases are `#<alias_prefix><spaceGroupId>:<server>`.
    pub alias_prefix: String,
    pub blast_radius: crate::plan::room::BlastRadius,
    /// Joins into one room run at most this many at a time.
    pub join_concurrency: usize,
    /// An eXo answer with more than this share fewer spaces or users than the last good one is not acted on.
    pub exo_max_drop: f64,
}

/// Shared by all reconciles.
pub struct Context {
    pub kube: Client,
    pub session: watch::Receiver<SessionState>,
    pub recorder: Recorder,
    pub settings: Settings,
    pub http: reqwest::Client,
    /// Every MatrixUser the operator watches: localpart collisions, and later
    /// the username → account mapping of room members.
    pub users: Option<kube::runtime::reflector::Store<crate::crd::MatrixUser>>,
    /// Every SpaceRoomLink the operator watches: conflicts between links.
    pub links: Option<kube::runtime::reflector::Store<crate::crd::SpaceRoomLink>>,
    /// Turns true once the MatrixUser cache holds the whole list. (A controller
    /// store's own `wait_until_ready` wakes only one of several waiters.)
    pub caches_ready: watch::Receiver<bool>,
    /// Rung when Synapse refuses the session's token, so a new one is made.
    pub session_refresh: Arc<tokio::sync::Notify>,
}

impl Context {
    #[allow(clippy::result_large_err)] // the controller's one error type; not on a hot path
    pub fn session(&self) -> Result<Arc<Session>, Error> {
        match &*self.session.borrow() {
            SessionState::Ready(s) => Ok(s.clone()),
            SessionState::Starting => Err(Error::NoSession("connecting to Synapse".into())),
            SessionState::Failed(why) => Err(Error::NoSession(why.clone())),
        }
    }

    /// Waits until the MatrixUser cache holds the whole list once (a link's own
    /// cache is full before its controller starts reconciling).
    pub async fn caches_ready(&self) -> Result<(), Error> {
        let mut ready = self.caches_ready.clone();
        ready.wait_for(|r| *r).await.map(|_| ()).map_err(|_| Error::Invalid("the operator is shutting down".into()))
    }

    /// Reacts to a failed reconcile where the session is concerned: a token
    /// Synapse no longer accepts (401) asks for a new session.
    pub fn note_failure(&self, err: &Error) {
        if let Error::Synapse { source, .. } = err
            && source.status() == Some(401)
        {
            self.session_refresh.notify_one();
        }
    }

    /// The periodic resync, jittered by ±10% so objects do not all wake together.
    pub fn resync(&self) -> Action {
        let base = self.settings.resync.as_secs_f64();
        let jitter = rand::rng().random_range(0.9..1.1);
        Action::requeue(Duration::from_secs_f64((base * jitter).max(1.0)))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("no Synapse session: {0}")]
    NoSession(String),
    #[error("{action} failed")]
    Synapse {
        action: String,
        #[source]
        source: synapse::Error,
    },
    #[error("{0}")]
    Kube(String, #[source] kube::Error),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    RoomNotFound(String),
}

impl Error {
    pub fn synapse(action: impl Into<String>) -> impl FnOnce(synapse::Error) -> Error {
        let action = action.into();
        move |source| Error::Synapse { action, source }
    }

    /// The condition reason this error shows as.
    pub fn reason(&self) -> &'static str {
        match self {
            Error::NoSession(_) => "CredentialsUnavailable",
            Error::Synapse { source, .. } => match source.retry_kind() {
                RetryKind::Permanent => "SynapseRefused",
                _ => "SynapseUnavailable",
            },
            Error::Kube(..) => "KubernetesError",
            Error::Invalid(_) => "InvalidSpec",
            Error::RoomNotFound(_) => "RoomNotFound",
        }
    }

    /// When to try again.
    pub fn retry_after(&self) -> Duration {
        match self {
            Error::NoSession(_) => Duration::from_secs(10),
            Error::Synapse { source, .. } => match source.retry_kind() {
                RetryKind::After(d) => d.max(Duration::from_millis(100)),
                RetryKind::Transient => Duration::from_secs(5),
                RetryKind::Permanent => Duration::from_secs(60),
            },
            Error::Kube(..) => Duration::from_secs(5),
            Error::Invalid(_) => Duration::from_secs(300),
            Error::RoomNotFound(_) => Duration::from_secs(60),
        }
    }
}

/// Error policy shared by the controllers: the error knows when to retry.
pub fn error_policy<K>(_obj: Arc<K>, err: &Error, _ctx: Arc<Context>) -> Action {
    let jitter = rand::rng().random_range(1.0..1.5);
    Action::requeue(err.retry_after().mul_f64(jitter))
}
