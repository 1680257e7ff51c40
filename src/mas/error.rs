//! Errors of the MAS adapter, classified like Synapse's (`crate::synapse::RetryKind`).

use crate::synapse::RetryKind;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{method} {path}: MAS answered {status}: {title}")]
    Api { method: &'static str, path: String, status: u16, title: String },
    #[error("MAS refused the admin client's credentials ({status} {error}); check masClientId and masClientSecret")]
    ClientRefused { status: u16, error: String },
    #[error("{method} {path}: cannot reach MAS")]
    Network {
        method: &'static str,
        path: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("{method} {path}: unexpected response body from MAS")]
    Decode {
        method: &'static str,
        path: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("invalid MAS URL {0:?}")]
    InvalidUrl(String),
    #[error("cannot build the HTTP client")]
    Client(#[source] reqwest::Error),
}

impl Error {
    pub fn retry_kind(&self) -> RetryKind {
        match self {
            Error::Api { status, .. } | Error::ClientRefused { status, .. } if *status == 429 || *status >= 500 => {
                RetryKind::Transient
            }
            Error::Network { .. } => RetryKind::Transient,
            Error::Api { .. }
            | Error::ClientRefused { .. }
            | Error::Decode { .. }
            | Error::InvalidUrl(_)
            | Error::Client(_) => RetryKind::Permanent,
        }
    }

    pub fn status(&self) -> Option<u16> {
        match self {
            Error::Api { status, .. } | Error::ClientRefused { status, .. } => Some(*status),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(status: u16) -> Error {
        Error::Api { method: "POST", path: "/api/admin/v1/users".into(), status, title: "t".into() }
    }

    #[test]
    fn classifies_by_status() {
        assert_eq!(api(503).retry_kind(), RetryKind::Transient);
        assert_eq!(api(429).retry_kind(), RetryKind::Transient);
        assert_eq!(api(409).retry_kind(), RetryKind::Permanent);
        assert_eq!(api(404).status(), Some(404));
        let refused = Error::ClientRefused { status: 401, error: "invalid_client".into() };
        assert_eq!(refused.retry_kind(), RetryKind::Permanent);
        assert!(refused.to_string().contains("masClientSecret"));
    }
}
