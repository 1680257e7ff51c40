//! MAS admin API shapes (JSON:API: `{"data": {"type", "id", "attributes"}}`), as
//! MAS's OpenAPI document (`docs/api/spec.json`) defines them.

use serde::{Deserialize, Serialize};

use crate::secret::SecretString;

#[derive(Deserialize)]
pub(super) struct Single<T> {
    pub data: Resource<T>,
}

#[derive(Deserialize)]
pub(super) struct Page<T> {
    /// `null` or absent on an empty page.
    #[serde(default = "Option::default")]
    pub data: Option<Vec<Resource<T>>>,
    #[serde(default)]
    pub links: PageLinks,
}

#[derive(Deserialize, Default)]
pub(super) struct PageLinks {
    #[serde(default)]
    pub next: Option<String>,
}

#[derive(Deserialize)]
pub(super) struct Resource<T> {
    pub id: String,
    pub attributes: T,
}

#[derive(Deserialize)]
pub(super) struct UserAttributes {
    pub username: String,
    #[serde(default)]
    pub locked_at: Option<String>,
    #[serde(default)]
    pub deactivated_at: Option<String>,
    #[serde(default)]
    pub admin: bool,
}

/// A MAS user. `id` (a ULID) is what every other call takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: String,
    pub username: String,
    pub admin: bool,
    pub locked: bool,
    pub deactivated: bool,
}

impl From<Resource<UserAttributes>> for User {
    fn from(r: Resource<UserAttributes>) -> Self {
        User {
            id: r.id,
            username: r.attributes.username,
            admin: r.attributes.admin,
            locked: r.attributes.locked_at.is_some(),
            deactivated: r.attributes.deactivated_at.is_some(),
        }
    }
}

/// Body of `POST /users`.
#[derive(Debug, Clone, Serialize)]
pub struct NewUser {
    pub username: String,
    pub skip_homeserver_check: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub displayname: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub avatar_url: Option<String>,
}

#[derive(Deserialize)]
pub(super) struct UserEmailAttributes {
    pub email: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserEmail {
    pub id: String,
    pub email: String,
}

impl From<Resource<UserEmailAttributes>> for UserEmail {
    fn from(r: Resource<UserEmailAttributes>) -> Self {
        UserEmail { id: r.id, email: r.attributes.email }
    }
}

#[derive(Deserialize)]
pub(super) struct PersonalSessionAttributes {
    pub actor_user_id: String,
    #[serde(default)]
    pub human_name: String,
    #[serde(default)]
    pub scope: String,
    #[serde(default)]
    pub revoked_at: Option<String>,
    #[serde(default)]
    pub expires_at: Option<String>,
    #[serde(default)]
    pub access_token: Option<String>,
}

/// A personal session: a token acting as `actor_user_id`. The token is only
/// returned when the session is created or regenerated.
#[derive(Debug, Clone)]
pub struct PersonalSession {
    pub id: String,
    pub actor_user_id: String,
    pub human_name: String,
    pub scope: String,
    pub revoked: bool,
    pub expires_at: Option<jiff::Timestamp>,
    pub access_token: Option<SecretString>,
}

impl From<Resource<PersonalSessionAttributes>> for PersonalSession {
    fn from(r: Resource<PersonalSessionAttributes>) -> Self {
        let a = r.attributes;
        PersonalSession {
            id: r.id,
            actor_user_id: a.actor_user_id,
            human_name: a.human_name,
            scope: a.scope,
            revoked: a.revoked_at.is_some(),
            // An unreadable expiry counts as none: the session is then renewed when Synapse refuses it.
            expires_at: a.expires_at.and_then(|t| t.parse().ok()),
            access_token: a.access_token.map(SecretString::new),
        }
    }
}

/// `{"errors": [{"title": …}]}`
#[derive(Deserialize)]
pub(super) struct ErrorResponse {
    #[serde(default)]
    pub errors: Vec<ErrorTitle>,
}

#[derive(Deserialize)]
pub(super) struct ErrorTitle {
    #[serde(default)]
    pub title: String,
}

/// The OAuth 2.0 token endpoint's answer (client credentials grant).
#[derive(Deserialize)]
pub(super) struct TokenResponse {
    pub access_token: String,
    #[serde(default)]
    pub expires_in: Option<u64>,
}

/// An OAuth 2.0 error (RFC 6749 §5.2).
#[derive(Deserialize)]
pub(super) struct OAuthError {
    #[serde(default)]
    pub error: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_openapi_examples() {
        let user: Single<UserAttributes> = serde_json::from_str(
            r#"{"data":{"type":"user","id":"030C1G60R30C1G60R30C1G60R3","attributes":{"username":"charlie",
            "created_at":"1970-01-01T00:00:00Z","locked_at":"1970-01-01T00:00:00Z","deactivated_at":null,
            "admin":false,"legacy_guest":true},"links":{"self":"/api/admin/v1/users/030C1G60R30C1G60R30C1G60R3"}},
            "links":{"self":"/x"}}"#,
        )
        .expect("user");
        let user = User::from(user.data);
        assert_eq!((user.username.as_str(), user.locked, user.deactivated), ("charlie", true, false));

        let page: Page<PersonalSessionAttributes> = serde_json::from_str(
            r#"{"meta":{"count":1},"data":[{"type":"personal-session","id":"01FSHN9AG0CJ6AC5HQ9X6H4RP6",
            "attributes":{"created_at":"2022-01-16T13:02:00Z","revoked_at":null,"owner_user_id":null,
            "owner_client_id":"01FSHN9AG0DJ6AC5HQ9X6H4RP7","actor_user_id":"01FSHN9AG0MZAA6S4AF7CTV32E",
            "human_name":"CI/CD Pipeline Token","scope":"openid urn:mas:admin","last_active_at":null,
            "last_active_ip":null,"expires_at":"2022-01-24T04:36:40Z"},"links":{"self":"/x"}}],
            "links":{"self":"/x","first":"/x","last":"/x"}}"#,
        )
        .expect("page");
        assert!(page.links.next.is_none());
        let s = PersonalSession::from(page.data.into_iter().flatten().next().expect("one"));
        assert_eq!(s.expires_at, Some("2022-01-24T04:36:40Z".parse().expect("ts")));
        assert!(!s.revoked && s.access_token.is_none());

        let empty: Page<UserEmailAttributes> = serde_json::from_str(r#"{"data":null,"links":{"self":"/x"}}"#).unwrap();
        assert!(empty.data.is_none());
    }
}
