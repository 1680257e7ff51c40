//! Synapse's admin API for accounts, media and rate limits.

use serde::{Deserialize, Serialize};

use super::client::enc;
use super::{Error, Synapse};
use crate::secret::SecretString;

/// An account as `GET /_synapse/admin/v2/users/<id>` shows it.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct AdminUser {
    pub name: String,
    #[serde(default)]
    pub admin: bool,
    #[serde(default)]
    pub deactivated: bool,
    #[serde(default)]
    pub displayname: Option<String>,
    #[serde(default)]
    pub avatar_url: Option<String>,
    #[serde(default)]
    pub threepids: Vec<Threepid>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
pub struct Threepid {
    pub medium: String,
    pub address: String,
}

impl Threepid {
    pub fn email(address: &str) -> Self {
        Self { medium: "email".into(), address: address.to_owned() }
    }
}

/// Body of `PUT /_synapse/admin/v2/users/<id>`: absent fields are left as they are.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct UserUpdate {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub displayname: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub threepids: Option<Vec<Threepid>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub avatar_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admin: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deactivated: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "expose_opt")]
    pub password: Option<SecretString>,
    /// A password set by the operator must not sign the person out everywhere.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub logout_devices: Option<bool>,
}

fn expose_opt<S: serde::Serializer>(v: &Option<SecretString>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(secret) => s.serialize_str(secret.expose()),
        None => s.serialize_none(),
    }
}

/// An email (or HTTP) pusher of an account.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct Pusher {
    pub kind: String,
    pub app_id: String,
    pub pushkey: String,
}

#[derive(Deserialize)]
struct Pushers {
    #[serde(default)]
    pushers: Vec<Pusher>,
}

#[derive(Deserialize)]
struct Token {
    access_token: SecretString,
}

#[derive(Deserialize)]
struct ContentUri {
    content_uri: String,
}

#[derive(Serialize)]
struct Empty {}

#[derive(Deserialize)]
struct Ignored {}

impl Synapse {
    /// GET /_synapse/admin/v2/users/{userId} — `None` for an unknown account.
    pub async fn get_user(&self, user_id: &str) -> Result<Option<AdminUser>, Error> {
        match self.get(&format!("/_synapse/admin/v2/users/{}", enc(user_id))).await {
            Ok(u) => Ok(Some(u)),
            Err(e) if e.is(404, "M_NOT_FOUND") => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// PUT /_synapse/admin/v2/users/{userId} — creates or updates the account.
    pub async fn put_user(&self, user_id: &str, update: &UserUpdate) -> Result<AdminUser, Error> {
        self.put(&format!("/_synapse/admin/v2/users/{}", enc(user_id)), update).await
    }

    /// POST /_synapse/admin/v1/deactivate/{userId}
    pub async fn deactivate_user(&self, user_id: &str, erase: bool) -> Result<(), Error> {
        #[derive(Serialize)]
        struct Body {
            erase: bool,
        }
        let _: Ignored = self.post(&format!("/_synapse/admin/v1/deactivate/{}", enc(user_id)), &Body { erase }).await?;
        Ok(())
    }

    /// POST /_synapse/admin/v1/users/{userId}/override_ratelimit with 0/0: no limits at all.
    pub async fn exempt_from_rate_limits(&self, user_id: &str) -> Result<(), Error> {
        let path = format!("/_synapse/admin/v1/users/{}/override_ratelimit", enc(user_id));
        let _: Ignored = self.post(&path, &serde_json::json!({"messages_per_second": 0, "burst_count": 0})).await?;
        Ok(())
    }

    /// POST /_synapse/admin/v1/users/{userId}/login — a token acting as that account.
    pub async fn login_as(&self, user_id: &str) -> Result<SecretString, Error> {
        let t: Token = self.post(&format!("/_synapse/admin/v1/users/{}/login", enc(user_id)), &Empty {}).await?;
        Ok(t.access_token)
    }

    /// GET /_synapse/admin/v1/users/{userId}/pushers
    pub async fn pushers(&self, user_id: &str) -> Result<Vec<Pusher>, Error> {
        let p: Pushers = self.get(&format!("/_synapse/admin/v1/users/{}/pushers", enc(user_id))).await?;
        Ok(p.pushers)
    }

    /// POST /_synapse/admin/v1/users/{userId}/login, then, as that account,
    /// POST /_matrix/client/v3/pushers/set with an `m.email` pusher to `email`.
    /// The address must already be one of the account's threepids.
    pub async fn add_email_pusher(&self, user_id: &str, email: &str) -> Result<(), Error> {
        let as_user = self.with_token(self.login_as(user_id).await?);
        let body = serde_json::json!({
            "kind": "email",
            "app_id": "m.email",
            "pushkey": email,
            "app_display_name": "Email Notifications",
            "device_display_name": email,
            "lang": "en",
            "data": {},
            "append": false,
        });
        let _: Ignored = as_user.post("/_matrix/client/v3/pushers/set", &body).await?;
        Ok(())
    }

    /// POST /_matrix/media/v3/upload?filename=… — returns the `mxc://` URI.
    pub async fn upload_media(&self, filename: &str, content_type: &str, bytes: Vec<u8>) -> Result<String, Error> {
        let path = format!("/_matrix/media/v3/upload?filename={}", enc(filename));
        let c: ContentUri = self.post_bytes(&path, content_type, bytes).await?;
        Ok(c.content_uri)
    }

    /// POST /_matrix/client/v3/login with a password (the operator's own account).
    pub async fn login_with_password(&self, localpart: &str, password: &SecretString) -> Result<SecretString, Error> {
        let body = serde_json::json!({
            "type": "m.login.password",
            "identifier": {"type": "m.id.user", "user": localpart},
            "password": password.expose(),
            "initial_device_display_name": "exo-matrix-operator",
        });
        let t: Token = self.post("/_matrix/client/v3/login", &body).await?;
        Ok(t.access_token)
    }
}
