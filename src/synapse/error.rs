//! Errors of the Synapse adapter, classified where they are understood.

use std::time::Duration;

/// What a caller can do about a failed call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryKind {
    /// Synapse asked us to wait (`M_LIMIT_EXCEEDED`).
    After(Duration),
    /// Network trouble or a 5xx: try again with backoff.
    Transient,
    /// Synapse refused the request as such: retrying the same call will not help.
    Permanent,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{method} {path}: Synapse answered {status} {errcode}: {message}")]
    Api {
        method: &'static str,
        path: String,
        status: u16,
        errcode: String,
        message: String,
        retry_after: Option<Duration>,
    },
    #[error("{method} {path}: cannot reach Synapse")]
    Network {
        method: &'static str,
        path: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("{method} {path}: unexpected response body")]
    Decode {
        method: &'static str,
        path: String,
        #[source]
        source: serde_json::Error,
    },
    /// Not sent: this replica is not (or no longer) entitled to write.
    #[error("{method} {path}: not sent")]
    NotLeader {
        method: &'static str,
        path: String,
        #[source]
        source: crate::leader::fence::NotLeader,
    },
    #[error("invalid URL {0:?}")]
    InvalidUrl(String),
    #[error("cannot build the HTTP client")]
    Url(#[source] reqwest::Error),
}

impl Error {
    pub fn retry_kind(&self) -> RetryKind {
        match self {
            Error::Api { retry_after: Some(d), .. } => RetryKind::After(*d),
            Error::Api { status, .. } if *status == 429 || *status >= 500 => RetryKind::Transient,
            Error::Api { .. } | Error::Decode { .. } | Error::InvalidUrl(_) | Error::Url(_) => RetryKind::Permanent,
            Error::Network { .. } | Error::NotLeader { .. } => RetryKind::Transient,
        }
    }

    /// The Matrix `errcode`, when Synapse sent one.
    pub fn errcode(&self) -> Option<&str> {
        match self {
            Error::Api { errcode, .. } => Some(errcode),
            _ => None,
        }
    }

    pub fn status(&self) -> Option<u16> {
        match self {
            Error::Api { status, .. } => Some(*status),
            _ => None,
        }
    }

    pub fn is(&self, status: u16, errcode: &str) -> bool {
        self.status() == Some(status) && self.errcode() == Some(errcode)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(status: u16, errcode: &str, retry_after: Option<Duration>) -> Error {
        Error::Api {
            method: "GET",
            path: "/x".into(),
            status,
            errcode: errcode.into(),
            message: "m".into(),
            retry_after,
        }
    }

    #[test]
    fn classifies_by_status_and_retry_after() {
        let wait = Duration::from_millis(1500);
        assert_eq!(api(429, "M_LIMIT_EXCEEDED", Some(wait)).retry_kind(), RetryKind::After(wait));
        assert_eq!(api(429, "M_LIMIT_EXCEEDED", None).retry_kind(), RetryKind::Transient);
        assert_eq!(api(502, "", None).retry_kind(), RetryKind::Transient);
        assert_eq!(api(403, "M_FORBIDDEN", None).retry_kind(), RetryKind::Permanent);
        assert!(api(403, "M_FORBIDDEN", None).is(403, "M_FORBIDDEN"));
    }
}
