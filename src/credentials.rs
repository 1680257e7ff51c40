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
    /// MAS's base URL and the admin client's id and secret (when Synapse delegates to MAS).
    pub mas_url: Option<String>,
    pub mas_client_id: Option<String>,
    pub mas_client_secret: Option<SecretString>,
}

/// The MAS admin client, all three parts present.
#[derive(Debug, Clone, PartialEq)]
pub struct MasCredentials {
    pub url: String,
    pub client_id: String,
    pub client_secret: SecretString,
}

impl Credentials {
    /// The MAS admin client, or the short names of the keys that are missing.
    pub fn mas(&self) -> Result<MasCredentials, Vec<&'static str>> {
        match (&self.mas_url, &self.mas_client_id, &self.mas_client_secret) {
            (Some(url), Some(client_id), Some(client_secret)) => Ok(MasCredentials {
                url: url.clone(),
                client_id: client_id.clone(),
                client_secret: client_secret.clone(),
            }),
            (url, id, secret) => {
                let keys = [(url.is_none(), MAS_URL[0]), (id.is_none(), MAS_CLIENT_ID[0])];
                let keys = keys.into_iter().chain([(secret.is_none(), MAS_CLIENT_SECRET[0])]);
                Err(keys.filter_map(|(missing, key)| missing.then_some(key)).collect())
            }
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum CredentialsError {
    #[error(
        "the credentials Secret has neither an access token (`accessToken` or `exo.matrix.access_token`), nor a registration shared secret (`sharedSecret` or `exo.matrix.shared_secret_registration`), nor a MAS admin client (`masUrl`, `masClientId`, `masClientSecret`)"
    )]
    Empty,
    #[error("the credentials Secret names a MAS admin client but lacks {}", .0.join(", "))]
    MasIncomplete(Vec<&'static str>),
    #[error("key {0:?} of the credentials Secret is not UTF-8 text")]
    NotText(&'static str),
}

const ACCESS_TOKEN: [&str; 2] = ["accessToken", "exo.matrix.access_token"];
const SHARED_SECRET: [&str; 2] = ["sharedSecret", "exo.matrix.shared_secret_registration"];
const SERVER_URL: [&str; 2] = ["serverUrl", "exo.matrix.server.url"];
const SERVER_NAME: [&str; 2] = ["serverName", "exo.matrix.server.name"];
// The original addon predates MAS; its property style is kept for these too.
pub const MAS_URL: [&str; 2] = ["masUrl", "exo.matrix.mas.url"];
pub const MAS_CLIENT_ID: [&str; 2] = ["masClientId", "exo.matrix.mas.client_id"];
pub const MAS_CLIENT_SECRET: [&str; 2] = ["masClientSecret", "exo.matrix.mas.client_secret"];

/// Parses a Secret's `data`. Values are trimmed: a trailing newline from
/// `echo … | kubectl create secret` must not break authentication.
pub fn parse(data: &BTreeMap<String, ByteString>) -> Result<Credentials, CredentialsError> {
    let creds = Credentials {
        server_url: value(data, SERVER_URL)?,
        server_name: value(data, SERVER_NAME)?,
        access_token: value(data, ACCESS_TOKEN)?.map(SecretString::new),
        shared_secret: value(data, SHARED_SECRET)?.map(SecretString::new),
        mas_url: value(data, MAS_URL)?,
        mas_client_id: value(data, MAS_CLIENT_ID)?,
        mas_client_secret: value(data, MAS_CLIENT_SECRET)?.map(SecretString::new),
    };
    if creds.access_token.is_none() && creds.shared_secret.is_none() {
        let any_mas = creds.mas_url.is_some() || creds.mas_client_id.is_some() || creds.mas_client_secret.is_some();
        match creds.mas() {
            Ok(_) => {}
            Err(missing) if any_mas => return Err(CredentialsError::MasIncomplete(missing)),
            Err(_) => return Err(CredentialsError::Empty),
        }
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
    fn accepts_a_mas_admin_client_alone() {
        let c = parse(&data(&[
            ("masUrl", "http://mas:8080"),
            ("exo.matrix.mas.client_id", "01J"),
            ("masClientSecret", "s"),
            ("serverUrl", "http://synapse:8008"),
        ]))
        .expect("valid");
        let mas = c.mas().expect("complete");
        assert_eq!((mas.url.as_str(), mas.client_id.as_str()), ("http://mas:8080", "01J"));
        assert_eq!(c.access_token, None);
    }

    #[test]
    fn names_the_missing_mas_keys() {
        let err = parse(&data(&[("masUrl", "http://mas:8080")])).expect_err("incomplete");
        assert_eq!(err, CredentialsError::MasIncomplete(vec!["masClientId", "masClientSecret"]));
        assert!(err.to_string().contains("masClientId, masClientSecret"), "{err}");
        let classic = parse(&data(&[("sharedSecret", "s")])).expect("valid");
        assert_eq!(classic.mas(), Err(vec!["masUrl", "masClientId", "masClientSecret"]));
    }

    #[test]
    fn refuses_a_secret_without_any_credential() {
        assert_eq!(parse(&data(&[("serverUrl", "http://x")])), Err(CredentialsError::Empty));
        let err = parse(&data(&[])).expect_err("empty").to_string();
        assert!(err.contains("accessToken") && err.contains("exo.matrix.shared_secret_registration"), "{err}");
    }
}
