//! Shared-secret registration (`/_synapse/admin/v1/register`): how the operator
//! bootstraps its own admin account, and an optional way to create users.

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha1::Sha1;

use super::{Error, Synapse};
use crate::secret::SecretString;

/// The account to register.
#[derive(Debug, Clone)]
pub struct Registration {
    pub username: String,
    pub password: SecretString,
    pub admin: bool,
    pub displayname: Option<String>,
}

/// What Synapse answers: the new account and a token for it.
#[derive(Debug, Deserialize)]
pub struct Registered {
    pub user_id: crate::ids::OwnedUserId,
    #[serde(default)]
    pub access_token: Option<SecretString>,
    #[serde(default)]
    pub device_id: Option<String>,
}

#[derive(Deserialize)]
struct Nonce {
    nonce: String,
}

#[derive(Serialize)]
struct RegisterBody<'a> {
    nonce: &'a str,
    username: &'a str,
    password: &'a str,
    admin: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    displayname: Option<&'a str>,
    mac: String,
}

/// hex HMAC-SHA1 keyed with the shared secret over
/// `nonce \0 username \0 password \0 admin|notadmin`.
pub fn registration_mac(secret: &SecretString, nonce: &str, username: &str, password: &str, admin: bool) -> String {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = Hmac::<Sha1>::new_from_slice(secret.expose().as_bytes()).expect("HMAC takes any key length");
    for (i, part) in [nonce, username, password].into_iter().enumerate() {
        if i > 0 {
            mac.update(b"\0");
        }
        mac.update(part.as_bytes());
    }
    mac.update(b"\0");
    mac.update(if admin { b"admin" as &[u8] } else { b"notadmin" });
    hex::encode(mac.finalize().into_bytes())
}

impl Synapse {
    /// GET then POST /_synapse/admin/v1/register
    pub async fn register_with_shared_secret(
        &self,
        shared_secret: &SecretString,
        reg: &Registration,
    ) -> Result<Registered, Error> {
        let path = "/_synapse/admin/v1/register";
        let Nonce { nonce } = self.get(path).await?;
        let body = RegisterBody {
            nonce: &nonce,
            username: &reg.username,
            password: reg.password.expose(),
            admin: reg.admin,
            displayname: reg.displayname.as_deref(),
            mac: registration_mac(shared_secret, &nonce, &reg.username, reg.password.expose(), reg.admin),
        };
        self.post(path, &body).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_matches_synapse_reference() {
        // Reference value from Python:
        // hmac.new(b"secret", b"abc\0alice\0pw\0notadmin", hashlib.sha1).hexdigest()
        let secret = SecretString::new("secret");
        assert_eq!(registration_mac(&secret, "abc", "alice", "pw", false), "42e32623fe124933c326f9d2d67ff7c617915a10");
    }
}
