//! Controllers: wire the Kubernetes and Synapse adapters to the pure plans.

mod adopt;
mod avatar;
pub mod cascade;
pub mod conditions;
pub mod directory;
mod error;
mod lasting;
pub mod link;
pub mod link_index;
pub mod outage;
pub mod secret_refs;
pub mod shared;
pub mod source;
pub mod space;
pub mod status;
pub mod throttle;
pub mod user;
pub mod user_index;

use std::sync::Arc;
use std::time::Duration;

use kube::runtime::controller::Action;
use kube::runtime::events::Recorder;
use kube::{Client, Resource};
use rand::Rng;
use tokio::sync::watch;

pub use error::{Error, error_policy};

use crate::retry::{Backoffs, ErrorClass};
use crate::session::{Session, SessionState};

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
    /// MatrixUser passes at once (`concurrency` is for the other kinds).
    pub user_concurrency: u16,
    /// Room aliases are `#<alias_prefix><spaceGroupId>:<server>`.
    pub alias_prefix: String,
    pub blast_radius: crate::plan::room::BlastRadius,
    /// Joins into one room run at most this many at a time.
    pub join_concurrency: usize,
    /// Populate new rooms through the private window (`plan::creation`): one event per first member.
    pub one_event_joins: bool,
    /// A link's pass waits this long after the last change concerning it (changes arriving meanwhile join it).
    pub link_debounce: Duration,
    /// A space follows its links and people at most this late, once per period (see `throttle`).
    pub space_debounce: Duration,
    /// How often a space's child room has its `m.space.parent` read though nothing says it changed.
    pub space_parent_check: Duration,
    /// An eXo answer with more than this share fewer spaces or users than the last good one is not acted on.
    pub exo_max_drop: f64,
    /// How often each account's email addresses and email pushers (which the bulk account list does not
    /// show) are read; the profile itself is checked every resync through the bulk list.
    pub account_check: Duration,
    /// A failure lasting this long says since when in the Ready message.
    pub lasting_failure: Duration,
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
    /// Consecutive failures per object, for exponential backoff.
    pub backoffs: Backoffs,
    /// MatrixUsers by localpart and by (namespace, username), fed by the MatrixUser watch.
    pub user_index: Arc<user_index::UserIndex>,
    /// Every Synapse account, listed in bulk once per resync.
    pub directory: directory::UserDirectory,
    /// This process's last status write per object, to tell whether a cached copy is current.
    pub written: status::Written,
    /// Avatar download validators, for conditional requests.
    pub avatars: avatar::AvatarCache,
    /// Synapse outages: every object is woken when it answers again.
    pub outage: Arc<outage::Outage>,
    /// When an account last got its id: new rooms wait for accounts while they keep appearing.
    pub accounts_made: Arc<link::AccountsMade>,
    /// When each space's child rooms next have their parent read.
    pub space_parents: space::ParentChecks,
}

/// How long a pass waits for the operator's first session before it reports "connecting to Synapse".
const SESSION_WAIT: Duration = Duration::from_secs(30);

impl Context {
    /// The session, once the first attempt at one has settled (at most `SESSION_WAIT`). A pass that failed
    /// while the operator was still connecting showed every restart as a blip: Ready=False and a Warning.
    pub async fn session(&self) -> Result<Arc<Session>, Error> {
        let mut state = self.session.clone();
        let settled = state.wait_for(|s| !matches!(s, SessionState::Starting));
        let _ = tokio::time::timeout(SESSION_WAIT, settled).await;
        self.session_now()
    }

    #[allow(clippy::result_large_err)] // the controller's one error type; not on a hot path
    fn session_now(&self) -> Result<Arc<Session>, Error> {
        match &*self.session.borrow() {
            SessionState::Ready(s) => Ok(s.clone()),
            SessionState::Starting => {
                Err(Error::NoSession { message: "connecting to Synapse".into(), class: ErrorClass::Transient })
            }
            SessionState::Failed(why, class) => Err(Error::NoSession { message: why.clone(), class: *class }),
        }
    }

    /// Waits until the MatrixUser cache holds the whole list once (a link's own
    /// cache is full before its controller starts reconciling).
    pub async fn caches_ready(&self) -> Result<(), Error> {
        let mut ready = self.caches_ready.clone();
        ready.wait_for(|r| *r).await.map(|_| ()).map_err(|_| Error::ShuttingDown)
    }

    /// Reacts to a failed reconcile where the session is concerned: a token
    /// Synapse no longer accepts (401) asks for a new session.
    pub fn note_failure(&self, err: &Error) {
        if let Error::Synapse { source, .. } = err {
            if source.status() == Some(401) {
                self.session_refresh.notify_one();
            }
            self.outage.note(source);
        }
    }

    /// Forgets `obj`'s failures after a successful reconcile.
    pub fn succeeded<K: Resource<DynamicType = ()>>(&self, obj: &K) {
        self.backoffs.succeeded(&error::backoff_key(obj));
    }

    /// The periodic resync, jittered by ±10% so objects do not all wake together.
    pub fn resync(&self) -> Action {
        let base = self.settings.resync.as_secs_f64();
        let jitter = rand::rng().random_range(0.9..1.1);
        Action::requeue(Duration::from_secs_f64((base * jitter).max(1.0)))
    }
}
