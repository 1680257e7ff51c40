//! Reading the credentials Secret. Both the short keys and the original eXo
//! addon's property names are accepted, so an admin can paste what they have.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;

use crate::secret::SecretString;

/// What the credentials Secret holds; every field optional on its own.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Credentials {
    pub server_url: Option<String>,
    pub server_name: Option<String>,
    pub access_token: Option<SecretString>,
    pub shared_secret: Option<SecretString>,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum CredentialsError {
    #[error(
        "the credentials Secret has neither an access token (`accessToken` or `exo.matrix.access_token`) nor a registration shared secret (`sharedSecret` or `exo.matrix.shared_secret_registration`)"
    )]
    Empty,
    #[error("key {0:?} of the credentials Secret is not UTF-8 text")]
    NotText(&'static str),
}

const ACCESS_TOKEN: [&str; 2] = ["accessToken", "exo.matrix.access_token"];
const SHARED_SECRET: [&str; 2] = ["sharedSecret", "exo.matrix.shared_secret_registration"];
const SERVER_URL: [&str; 2] = ["serverUrl", "exo.matrix.server.url"];
const SERVER_NAME: [&str; 2] = ["serverName", "exo.matrix.server.name"];

/// Parses a Secret's `data`. Values are trimmed: a trailing newline from
/// `echo … | kubectl create secret` must not break authentication.
pub fn parse(data: &BTreeMap<String, ByteString>) -> Result<Credentials, CredentialsError> {
    let creds = Credentials {
        server_url: value(data, SERVER_URL)?,
        server_name: value(data, SERVER_NAME)?,
        access_token: value(data, ACCESS_TOKEN)?.map(SecretString::new),
        shared_secret: value(data, SHARED_SECRET)?.map(SecretString::new),
    };
    if creds.access_token.is_none() && creds.shared_secret.is_none() {
        return Err(CredentialsError::Empty);
    }
    Ok(creds)
}

fn value(data: &BTreeMap<String, ByteString>, keys: [&'static str; 2]) -> Result<Option<String>, CredentialsError> {
    for key in keys {
        if let Some(ByteString(bytes)) = data.get(key) {
            let text = std::str::from_utf8(bytes).map_err(|_| CredentialsError::NotText(key))?.trim();
            if !text.is_empty() {
                return Ok(Some(text.to_owned()));
            }
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(pairs: &[(&str, &str)]) -> BTreeMap<String, ByteString> {
        pairs.iter().map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec()))).collect()
    }

    #[test]
    fn accepts_short_keys() {
        let c = parse(&data(&[("accessToken", "syt_abc\n"), ("serverUrl", "http://synapse:8008")])).expect("valid");
        assert_eq!(c.access_token, Some(SecretString::new("syt_abc")));
        assert_eq!(c.server_url.as_deref(), Some("http://synapse:8008"));
        assert_eq!(c.shared_secret, None);
    }

    #[test]
    fn accepts_the_addon_property_names() {
        let c = parse(&data(&[
            ("exo.matrix.server.url", "http://matrix:8008"),
            ("exo.matrix.server.name", "example.org"),
            ("exo.matrix.shared_secret_registration", "s3cret"),
        ]))
        .expect("valid");
        assert_eq!(c.server_name.as_deref(), Some("example.org"));
        assert_eq!(c.shared_secret, Some(SecretString::new("s3cret")));
        assert_eq!(c.access_token, None);
    }

    #[test]
    fn short_keys_win_and_blank_values_count_as_absent() {
        let c = parse(&data(&[("accessToken", "short"), ("exo.matrix.access_token", "long"), ("sharedSecret", "  ")]))
            .expect("valid");
        assert_eq!(c.access_token, Some(SecretString::new("short")));
        assert_eq!(c.shared_secret, None);
    }

    #[test]
    fn refuses_a_secret_without_any_credential() {
        assert_eq!(parse(&data(&[("serverUrl", "http://x")])), Err(CredentialsError::Empty));
        let err = parse(&data(&[])).expect_err("empty").to_string();
        assert!(err.contains("accessToken") && err.contains("exo.matrix.shared_secret_registration"), "{err}");
    }
}
