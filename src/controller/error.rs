//! The controllers' one error type: each error carries its class (transient,
//! needs a person, invalid spec), which picks the kstatus condition and the backoff.

use std::sync::Arc;
use std::time::Duration;

use kube::Resource;
use kube::runtime::controller::Action;
use rand::Rng;

use super::Context;
use super::conditions::Progress;
use super::status::Reconciled;
use crate::retry::ErrorClass;
use crate::synapse::{self, RetryKind};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No Synapse session; its class says whether waiting helps (Synapse
    /// starting) or a person must fix the credentials.
    #[error("no Synapse session: {message}")]
    NoSession { message: String, class: ErrorClass },
    #[error("{action} failed")]
    Synapse {
        action: String,
        #[source]
        source: synapse::Error,
    },
    /// A call to MAS's admin API (accounts when Synapse delegates to MAS).
    #[error("{action} failed")]
    Mas {
        action: String,
        #[source]
        source: crate::mas::Error,
    },
    #[error("{0}")]
    Kube(String, #[source] kube::Error),
    /// A referenced object GitOps may still create (a Secret) is not there yet.
    #[error("{message}")]
    Waiting { reason: &'static str, message: String },
    /// Progress needs a person (an alias held by a foreign room, an unusable Secret).
    #[error("{message}")]
    NeedsPerson { reason: &'static str, message: String },
    /// The spec cannot work as written (a roomId that does not exist).
    #[error("{message}")]
    InvalidSpec { reason: &'static str, message: String },
    /// The operator is stopping: nothing to record, nothing to retry.
    #[error("the operator is shutting down")]
    ShuttingDown,
}

impl Error {
    pub fn synapse(action: impl Into<String>) -> impl FnOnce(synapse::Error) -> Error {
        let action = action.into();
        move |source| Error::Synapse { action, source }
    }

    pub fn mas(action: impl Into<String>) -> impl FnOnce(crate::mas::Error) -> Error {
        let action = action.into();
        move |source| Error::Mas { action, source }
    }

    pub fn waiting(reason: &'static str, message: impl Into<String>) -> Error {
        Error::Waiting { reason, message: message.into() }
    }

    pub fn needs_person(reason: &'static str, message: impl Into<String>) -> Error {
        Error::NeedsPerson { reason, message: message.into() }
    }

    pub fn invalid_spec(reason: &'static str, message: impl Into<String>) -> Error {
        Error::InvalidSpec { reason, message: message.into() }
    }

    /// The condition reason this error shows as.
    pub fn reason(&self) -> &'static str {
        match self {
            Error::NoSession { .. } => "CredentialsUnavailable",
            Error::Synapse { source, .. } => match source.retry_kind() {
                RetryKind::Permanent => "SynapseRefused",
                _ => "SynapseUnavailable",
            },
            Error::Mas { source, .. } => match source.retry_kind() {
                RetryKind::Permanent => "MasRefused",
                _ => "MasUnavailable",
            },
            Error::Kube(..) => "KubernetesError",
            Error::Waiting { reason, .. } | Error::NeedsPerson { reason, .. } | Error::InvalidSpec { reason, .. } => {
                reason
            }
            Error::ShuttingDown => "ShuttingDown",
        }
    }

    /// What the failure asks for: it picks the condition and the backoff.
    pub fn class(&self) -> ErrorClass {
        match self {
            Error::NoSession { class, .. } => *class,
            // A refused token makes a new session (see `Context::note_failure`): worth retrying soon.
            Error::Synapse { source, .. } if source.status() == Some(401) => ErrorClass::Transient,
            Error::Synapse { source, .. } => match source.retry_kind() {
                RetryKind::Permanent => ErrorClass::NeedsPerson,
                RetryKind::After(_) | RetryKind::Transient => ErrorClass::Transient,
            },
            Error::Mas { source, .. } => match source.retry_kind() {
                RetryKind::Permanent => ErrorClass::NeedsPerson,
                RetryKind::After(_) | RetryKind::Transient => ErrorClass::Transient,
            },
            Error::Kube(..) | Error::Waiting { .. } | Error::ShuttingDown => ErrorClass::Transient,
            Error::NeedsPerson { .. } => ErrorClass::NeedsPerson,
            Error::InvalidSpec { .. } => ErrorClass::InvalidSpec,
        }
    }

    /// How the failure shows in kstatus conditions.
    pub fn progress(&self) -> Progress {
        let message = crate::error_chain::chain(self);
        if self.class().stalls() {
            Progress::stalled(self.reason(), message)
        } else {
            Progress::reconciling(self.reason(), message)
        }
    }

    /// The wait Synapse asked for (`M_LIMIT_EXCEEDED`'s `retry_after_ms`), which beats our own backoff.
    pub fn requested_wait(&self) -> Option<Duration> {
        match self {
            Error::Synapse { source, .. } => match source.retry_kind() {
                RetryKind::After(d) => Some(d.max(Duration::from_millis(100))),
                _ => None,
            },
            _ => None,
        }
    }
}

/// A Matrix id that does not parse (a CR field, a status the operator wrote, a name derived
/// from eXo): the spec cannot work as written.
impl From<crate::ids::IdError> for Error {
    fn from(e: crate::ids::IdError) -> Self {
        Error::invalid_spec("InvalidMatrixId", e.to_string())
    }
}

/// A room state the plans cannot read (power levels that are not power levels): overwriting it
/// blindly could lose what someone set, so a person looks first.
impl From<crate::plan::room::StateError> for Error {
    fn from(e: crate::plan::room::StateError) -> Self {
        Error::needs_person("UnreadableRoomState", crate::error_chain::chain(&e))
    }
}

/// The key an object's failures are counted under.
pub(super) fn backoff_key<K: Resource<DynamicType = ()>>(obj: &K) -> String {
    format!(
        "{}/{}/{}",
        K::kind(&()),
        obj.meta().namespace.as_deref().unwrap_or(""),
        obj.meta().name.as_deref().unwrap_or("")
    )
}

/// Error policy shared by the controllers: exponential backoff with jitter per
/// object, by the error's class; Synapse's own `retry_after_ms` when it sent one.
pub fn error_policy<K: Reconciled>(obj: Arc<K>, err: &Error, ctx: Arc<Context>) -> Action {
    if matches!(err, Error::ShuttingDown) {
        return Action::await_change();
    }
    let mut backoff = ctx.backoffs.failed(&backoff_key(&*obj), err.class());
    if let Some(cap) = obj.retry_cap() {
        backoff = backoff.min(cap);
    }
    match err.requested_wait() {
        Some(wait) => Action::requeue(wait.mul_f64(rand::rng().random_range(1.0..1.1))),
        None => Action::requeue(backoff),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn synapse(status: u16, errcode: &str, retry_after: Option<Duration>) -> Error {
        Error::synapse("doing it")(synapse::Error::Api {
            method: "PUT",
            path: "/x".into(),
            status,
            errcode: errcode.into(),
            message: "m".into(),
            retry_after,
        })
    }

    fn shown(e: &Error) -> (&'static str, &'static str) {
        let kind = match e.progress() {
            Progress::Ready { .. } => "Ready",
            Progress::Reconciling { .. } => "Reconciling",
            Progress::Stalled { .. } => "Stalled",
        };
        (kind, e.reason())
    }

    #[test]
    fn what_passes_by_itself_is_reconciling_and_what_needs_a_person_is_stalled() {
        assert_eq!(shown(&synapse(502, "", None)), ("Reconciling", "SynapseUnavailable"));
        assert_eq!(shown(&synapse(401, "M_UNKNOWN_TOKEN", None)), ("Reconciling", "SynapseRefused"));
        assert_eq!(shown(&synapse(403, "M_FORBIDDEN", None)), ("Stalled", "SynapseRefused"));
        assert_eq!(shown(&Error::waiting("SecretNotFound", "no Secret")), ("Reconciling", "SecretNotFound"));
        assert_eq!(shown(&Error::needs_person("AliasTaken", "taken")), ("Stalled", "AliasTaken"));
        assert_eq!(shown(&Error::invalid_spec("RoomNotFound", "no room")), ("Stalled", "RoomNotFound"));
        let starting = Error::NoSession { message: "connecting".into(), class: ErrorClass::Transient };
        assert_eq!(shown(&starting), ("Reconciling", "CredentialsUnavailable"));
        let refused = Error::NoSession { message: "token refused".into(), class: ErrorClass::NeedsPerson };
        assert_eq!(shown(&refused), ("Stalled", "CredentialsUnavailable"));
    }

    #[test]
    fn the_condition_message_is_the_whole_chain() {
        let e = synapse(403, "M_FORBIDDEN", None);
        assert!(e.progress().message().contains("doing it failed: PUT /x: Synapse answered 403"), "{:?}", e.progress());
    }

    #[test]
    fn synapse_rate_limits_beat_the_backoff() {
        let wait = Duration::from_millis(1500);
        let limited = synapse(429, "M_LIMIT_EXCEEDED", Some(wait));
        assert_eq!(limited.class(), ErrorClass::Transient);
        assert_eq!(limited.requested_wait(), Some(wait));
        assert_eq!(
            synapse(429, "M_LIMIT_EXCEEDED", Some(Duration::ZERO)).requested_wait(),
            Some(Duration::from_millis(100))
        );
        assert_eq!(synapse(502, "", None).requested_wait(), None);
    }
}
