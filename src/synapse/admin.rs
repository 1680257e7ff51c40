//! Synapse's admin API for accounts, media and rate limits.

use serde::{Deserialize, Serialize};

use super::client::enc;
use super::{Error, Synapse};
use crate::ids::UserId;
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

/// One account in the bulk list `GET /_synapse/admin/v2/users`: the profile without threepids.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct ListedUser {
    pub name: String,
    #[serde(default, deserialize_with = "flag")]
    pub admin: bool,
    #[serde(default, deserialize_with = "flag")]
    pub deactivated: bool,
    #[serde(default)]
    pub displayname: Option<String>,
    #[serde(default)]
    pub avatar_url: Option<String>,
}

impl From<&AdminUser> for ListedUser {
    fn from(u: &AdminUser) -> Self {
        ListedUser {
            name: u.name.clone(),
            admin: u.admin,
            deactivated: u.deactivated,
            displayname: u.displayname.clone(),
            avatar_url: u.avatar_url.clone(),
        }
    }
}

/// Older Synapse versions list flags as 0/1.
fn flag<'de, D: serde::Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Flag {
        Bool(bool),
        Int(i64),
    }
    Ok(match Option::<Flag>::deserialize(d)? {
        Some(Flag::Bool(b)) => b,
        Some(Flag::Int(i)) => i != 0,
        None => false,
    })
}

#[derive(Deserialize)]
struct UserPage {
    #[serde(default)]
    users: Vec<ListedUser>,
    /// A string in current Synapse, a number in older ones.
    #[serde(default)]
    next_token: Option<serde_json::Value>,
    #[serde(default)]
    total: u64,
}

/// One page of the bulk account list.
#[derive(Debug, Clone, Default)]
pub struct UserListPage {
    pub users: Vec<ListedUser>,
    /// Where the next page starts; `None` on the last one.
    pub next: Option<String>,
    /// Accounts in all pages.
    pub total: u64,
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
    pub async fn get_user(&self, user_id: &UserId) -> Result<Option<AdminUser>, Error> {
        match self.get(&format!("/_synapse/admin/v2/users/{}", enc(user_id.as_str()))).await {
            Ok(u) => Ok(Some(u)),
            Err(e) if e.is(404, "M_NOT_FOUND") => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// GET /_synapse/admin/v2/users?from=…&limit=…&deactivated=true&guests=false — one page of every
    /// account (deactivated ones included), and where the next page starts.
    pub async fn list_users(&self, from: &str, limit: u32) -> Result<UserListPage, Error> {
        let path = format!("/_synapse/admin/v2/users?from={}&limit={limit}&deactivated=true&guests=false", enc(from));
        let page: UserPage = self.get(&path).await?;
        let next = match page.next_token {
            Some(serde_json::Value::String(s)) => Some(s),
            Some(serde_json::Value::Number(n)) => Some(n.to_string()),
            _ => None,
        };
        Ok(UserListPage { users: page.users, next, total: page.total })
    }

    /// PUT /_synapse/admin/v2/users/{userId} — creates or updates the account.
    pub async fn put_user(&self, user_id: &UserId, update: &UserUpdate) -> Result<AdminUser, Error> {
        self.put(&format!("/_synapse/admin/v2/users/{}", enc(user_id.as_str())), update).await
    }

    /// The same PUT; also says whether it created the account (201) rather than updated one that existed.
    pub async fn put_user_created(&self, user_id: &UserId, update: &UserUpdate) -> Result<bool, Error> {
        let path = format!("/_synapse/admin/v2/users/{}", enc(user_id.as_str()));
        let (_, status): (Ignored, u16) = self.put_with_status(&path, update).await?;
        Ok(status == 201)
    }

    /// POST /_synapse/admin/v1/deactivate/{userId}
    pub async fn deactivate_user(&self, user_id: &UserId, erase: bool) -> Result<(), Error> {
        #[derive(Serialize)]
        struct Body {
            erase: bool,
        }
        let _: Ignored =
            self.post(&format!("/_synapse/admin/v1/deactivate/{}", enc(user_id.as_str())), &Body { erase }).await?;
        Ok(())
    }

    /// POST /_synapse/admin/v1/users/{userId}/override_ratelimit with 0/0: no limits at all.
    pub async fn exempt_from_rate_limits(&self, user_id: &UserId) -> Result<(), Error> {
        let path = format!("/_synapse/admin/v1/users/{}/override_ratelimit", enc(user_id.as_str()));
        let _: Ignored = self.post(&path, &serde_json::json!({"messages_per_second": 0, "burst_count": 0})).await?;
        Ok(())
    }

    /// POST /_synapse/admin/v1/users/{userId}/login — a token acting as that account.
    pub async fn login_as(&self, user_id: &UserId) -> Result<SecretString, Error> {
        let t: Token =
            self.post(&format!("/_synapse/admin/v1/users/{}/login", enc(user_id.as_str())), &Empty {}).await?;
        Ok(t.access_token)
    }

    /// GET /_synapse/admin/v1/users/{userId}/pushers
    pub async fn pushers(&self, user_id: &UserId) -> Result<Vec<Pusher>, Error> {
        let p: Pushers = self.get(&format!("/_synapse/admin/v1/users/{}/pushers", enc(user_id.as_str()))).await?;
        Ok(p.pushers)
    }

    /// POST /_synapse/admin/v1/users/{userId}/login with `valid_until_ms` — a token acting as that account
    /// that Synapse stops accepting after `valid_for`.
    pub async fn login_as_briefly(
        &self,
        user_id: &UserId,
        valid_for: std::time::Duration,
    ) -> Result<SecretString, Error> {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        let body = serde_json::json!({"valid_until_ms": (now + valid_for).as_millis() as u64});
        let t: Token = self.post(&format!("/_synapse/admin/v1/users/{}/login", enc(user_id.as_str())), &body).await?;
        Ok(t.access_token)
    }

    /// POST /_synapse/admin/v1/users/{userId}/login (a token valid for one minute), then, as that account,
    /// POST /_matrix/client/v3/pushers/set with an `m.email` pusher to `email`.
    /// The address must already be one of the account's threepids.
    pub async fn add_email_pusher(&self, user_id: &UserId, email: &str) -> Result<(), Error> {
        // The token is not logged out: Synapse deletes the pushers a token created when it is logged out.
        // It expires instead, so tokens never pile up as working credentials.
        let token = self.login_as_briefly(user_id, std::time::Duration::from_secs(60)).await?;
        self.with_token(token).set_own_email_pusher(email).await
    }

    /// POST /_matrix/client/v3/pushers/set: an `m.email` pusher to `email` for
    /// the account this client's token acts as.
    pub async fn set_own_email_pusher(&self, email: &str) -> Result<(), Error> {
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
        let _: Ignored = self.post("/_matrix/client/v3/pushers/set", &body).await?;
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
