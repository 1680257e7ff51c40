//! Telling a Synapse that delegates authentication to MAS from a classic one.

use super::{Error, Synapse};

/// Who owns accounts and logins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMode {
    /// Synapse itself: shared-secret registration and the user admin API work.
    Classic,
    /// Synapse delegates to the Matrix Authentication Service (`matrix_authentication_service`).
    Delegated,
}

impl AuthMode {
    /// Words for logs and conditions.
    pub fn describe(self) -> &'static str {
        match self {
            AuthMode::Classic => "classic Synapse (accounts through Synapse's admin API)",
            AuthMode::Delegated => "Synapse delegates authentication to MAS (accounts through MAS's admin API)",
        }
    }
}

impl Synapse {
    /// GET /_synapse/admin/v1/register (no token): 404 on a delegating Synapse; a
    /// classic one answers 200 with a nonce, or 400 when shared-secret registration is off.
    pub async fn auth_mode(&self) -> Result<AuthMode, Error> {
        match self.get::<serde_json::Value>("/_synapse/admin/v1/register").await {
            Ok(_) => Ok(AuthMode::Classic),
            Err(e) if e.status() == Some(404) => Ok(AuthMode::Delegated),
            Err(e) if e.status() == Some(400) => Ok(AuthMode::Classic),
            Err(e) => Err(e),
        }
    }
}
