//! Extra trust roots for every outgoing HTTPS client (Synapse, MAS, eXo, avatar downloads): intranets
//! often serve these behind TLS signed by an internal CA that the built-in webpki roots do not know.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// Set once at startup, before any client is built; a process-wide setting like the roots themselves.
static EXTRA_ROOTS: OnceLock<Vec<reqwest::Certificate>> = OnceLock::new();

#[derive(Debug, thiserror::Error)]
pub enum CaFileError {
    #[error("cannot read the CA file {0}")]
    Read(PathBuf, #[source] std::io::Error),
    #[error("the CA file {0} is not a PEM certificate bundle")]
    Parse(PathBuf, #[source] reqwest::Error),
    #[error("the CA file {0} holds no PEM certificate")]
    Empty(PathBuf),
    #[error("the extra CA certificates were already set")]
    AlreadySet,
}

/// The certificates of a PEM bundle (one or more `BEGIN CERTIFICATE` blocks; anything else is skipped).
pub fn parse_bundle(path: &Path, pem: &[u8]) -> Result<Vec<reqwest::Certificate>, CaFileError> {
    let certs = reqwest::Certificate::from_pem_bundle(pem).map_err(|e| CaFileError::Parse(path.into(), e))?;
    if certs.is_empty() {
        return Err(CaFileError::Empty(path.into()));
    }
    // A block that is PEM but not a certificate only fails when a client is built: find out now.
    for cert in &certs {
        reqwest::Client::builder()
            .add_root_certificate(cert.clone())
            .build()
            .map_err(|e| CaFileError::Parse(path.into(), e))?;
    }
    Ok(certs)
}

/// Reads the bundle and makes every client built by [`client_builder`] trust it (besides the built-in roots).
/// Returns how many certificates it added.
pub fn install(path: &Path) -> Result<usize, CaFileError> {
    let pem = std::fs::read(path).map_err(|e| CaFileError::Read(path.into(), e))?;
    let certs = parse_bundle(path, &pem)?;
    let count = certs.len();
    EXTRA_ROOTS.set(certs).map_err(|_| CaFileError::AlreadySet)?;
    Ok(count)
}

/// The start of every outgoing HTTP client: the built-in roots plus the installed extra CA, if any.
pub fn client_builder() -> reqwest::ClientBuilder {
    EXTRA_ROOTS
        .get()
        .into_iter()
        .flatten()
        .fold(reqwest::Client::builder(), |b, cert| b.add_root_certificate(cert.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOT_A_CERT: &str = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIA==\n-----END PRIVATE KEY-----\n";

    #[test]
    fn a_file_without_certificates_is_refused() {
        let path = Path::new("ca.pem");
        assert!(matches!(parse_bundle(path, b""), Err(CaFileError::Empty(_))));
        assert!(matches!(parse_bundle(path, b"hello"), Err(CaFileError::Empty(_))));
        assert!(matches!(parse_bundle(path, NOT_A_CERT.as_bytes()), Err(CaFileError::Empty(_))));
    }

    #[test]
    fn garbage_inside_a_certificate_block_is_refused() {
        let pem = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        assert!(matches!(parse_bundle(Path::new("ca.pem"), pem.as_bytes()), Err(CaFileError::Parse(..))));
    }

    #[test]
    fn a_missing_file_is_a_read_error_naming_it() {
        let err = install(Path::new("/nonexistent/ca.pem")).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/ca.pem"), "{err}");
    }
}
