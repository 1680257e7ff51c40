//! The HTTP side of the MAS adapter: an admin token through the client
//! credentials grant (cached, re-requested before it expires), and typed calls
//! to `/api/admin/v1`. Every method names the wire call it makes.

use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::{Method, Url};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::Error;
use super::model::*;
use crate::secret::SecretString;
use crate::synapse::enc;

const ADMIN: &str = "/api/admin/v1";
/// Page size for list calls; lists are followed to their end.
const PAGE: usize = 100;
/// A list longer than this many pages is not believed (a cursor that never ends).
const MAX_PAGES: usize = 100;

/// A client for one MAS, acting as one admin client. Cheap to clone; clones share the token.
#[derive(Clone)]
pub struct Mas {
    http: reqwest::Client,
    base: Url,
    client_id: String,
    client_secret: SecretString,
    token: Arc<tokio::sync::Mutex<Option<CachedToken>>>,
}

struct CachedToken {
    token: SecretString,
    renew_at: Instant,
}

#[derive(Serialize)]
struct Empty {}

impl Mas {
    pub fn new(base_url: &str, client_id: &str, client_secret: SecretString) -> Result<Self, Error> {
        let base = Url::parse(base_url.trim_end_matches('/')).map_err(|_| Error::InvalidUrl(base_url.to_owned()))?;
        if !matches!(base.scheme(), "http" | "https") {
            return Err(Error::InvalidUrl(base_url.to_owned()));
        }
        let http = crate::tls::client_builder()
            .timeout(Duration::from_secs(30))
            .connect_timeout(Duration::from_secs(5))
            .build()
            .map_err(Error::Client)?;
        Ok(Self { http, base, client_id: client_id.to_owned(), client_secret, token: Arc::default() })
    }

    pub fn base_url(&self) -> &Url {
        &self.base
    }

    fn url(&self, path: &str) -> Result<Url, Error> {
        // `join` would drop a path prefix of the base URL (MAS behind `/auth`), so append instead.
        let text = format!("{}{path}", self.base.as_str().trim_end_matches('/'));
        Url::parse(&text).map_err(|_| Error::InvalidUrl(text))
    }

    /// POST /oauth2/token (client_credentials, scope `urn:mas:admin`), cached
    /// until 80% of its lifetime has passed.
    pub async fn admin_token(&self) -> Result<SecretString, Error> {
        let mut cached = self.token.lock().await;
        if let Some(c) = cached.as_ref()
            && Instant::now() < c.renew_at
        {
            return Ok(c.token.clone());
        }
        let path = "/oauth2/token";
        let resp = self
            .http
            .post(self.url(path)?)
            .basic_auth(&self.client_id, Some(self.client_secret.expose()))
            .form(&[("grant_type", "client_credentials"), ("scope", "urn:mas:admin")])
            .send()
            .await
            .map_err(|source| Error::Network { method: "POST", path: path.into(), source })?;
        let status = resp.status();
        let bytes =
            resp.bytes().await.map_err(|source| Error::Network { method: "POST", path: path.into(), source })?;
        if !status.is_success() {
            let error = serde_json::from_slice::<OAuthError>(&bytes).map(|e| e.error).unwrap_or_default();
            return Err(Error::ClientRefused { status: status.as_u16(), error });
        }
        let t: TokenResponse = serde_json::from_slice(&bytes).map_err(|source| Error::Decode {
            method: "POST",
            path: path.into(),
            source,
        })?;
        let lifetime = Duration::from_secs(t.expires_in.unwrap_or(300));
        let token = SecretString::new(t.access_token);
        *cached = Some(CachedToken { token: token.clone(), renew_at: Instant::now() + lifetime.mul_f64(0.8) });
        Ok(token)
    }

    async fn forget_token(&self) {
        *self.token.lock().await = None;
    }

    /// One admin API call; a 401 (token expired or revoked early) gets one retry with a fresh token.
    async fn call<B: Serialize, R: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<&B>,
    ) -> Result<R, Error> {
        let method_name = match method {
            Method::GET => "GET",
            Method::POST => "POST",
            Method::DELETE => "DELETE",
            _ => "OTHER",
        };
        let url = self.url(&format!("{ADMIN}{path}"))?;
        for attempt in 0..2 {
            let token = self.admin_token().await?;
            let mut req = self.http.request(method.clone(), url.clone()).bearer_auth(token.expose()).query(query);
            if let Some(b) = body {
                req = req.json(b);
            }
            let net = |source| Error::Network { method: method_name, path: path.to_owned(), source };
            let resp = req.send().await.map_err(net)?;
            let status = resp.status();
            let bytes = resp.bytes().await.map_err(net)?;
            tracing::debug!(method = method_name, path, status = status.as_u16(), "mas call");
            if status.as_u16() == 401 && attempt == 0 {
                self.forget_token().await;
                continue;
            }
            if status.is_success() {
                let bytes: &[u8] = if bytes.is_empty() { b"{}" } else { &bytes };
                return serde_json::from_slice(bytes).map_err(|source| Error::Decode {
                    method: method_name,
                    path: path.to_owned(),
                    source,
                });
            }
            let title = serde_json::from_slice::<ErrorResponse>(&bytes)
                .ok()
                .and_then(|e| e.errors.into_iter().next().map(|t| t.title))
                .unwrap_or_else(|| String::from_utf8_lossy(&bytes).chars().take(200).collect());
            return Err(Error::Api { method: method_name, path: path.to_owned(), status: status.as_u16(), title });
        }
        unreachable!("the loop returns on its second attempt")
    }

    async fn get<R: DeserializeOwned>(&self, path: &str, query: &[(&str, &str)]) -> Result<R, Error> {
        self.call::<Empty, R>(Method::GET, path, query, None).await
    }

    async fn post<B: Serialize, R: DeserializeOwned>(&self, path: &str, body: &B) -> Result<R, Error> {
        self.call(Method::POST, path, &[], Some(body)).await
    }

    /// Every item of a paged list, following `page[after]` cursors.
    async fn list<T: DeserializeOwned>(&self, path: &str, filters: &[(&str, &str)]) -> Result<Vec<Resource<T>>, Error> {
        let mut all = Vec::new();
        let mut after: Option<String> = None;
        let size = PAGE.to_string();
        for _ in 0..MAX_PAGES {
            let mut query: Vec<(&str, &str)> = filters.to_vec();
            query.push(("page[first]", &size));
            if let Some(a) = &after {
                query.push(("page[after]", a));
            }
            let page: Page<T> = self.get(path, &query).await?;
            let data = page.data.unwrap_or_default();
            let more = page.links.next.is_some() && !data.is_empty();
            after = data.last().map(|r| r.id.clone());
            all.extend(data);
            if !more {
                return Ok(all);
            }
        }
        Err(Error::Api { method: "GET", path: path.to_owned(), status: 500, title: "the list never ends".into() })
    }

    /// GET /users/by-username/{username} — `None` when MAS has no such user.
    pub async fn user_by_username(&self, localpart: &str) -> Result<Option<User>, Error> {
        match self.get::<Single<UserAttributes>>(&format!("/users/by-username/{}", enc(localpart)), &[]).await {
            Ok(u) => Ok(Some(u.data.into())),
            Err(e) if e.status() == Some(404) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// POST /users
    pub async fn create_user(&self, user: &NewUser) -> Result<User, Error> {
        let u: Single<UserAttributes> = self.post("/users", user).await?;
        Ok(u.data.into())
    }

    /// POST /users/{id}/set-admin
    pub async fn set_admin(&self, id: &str, admin: bool) -> Result<User, Error> {
        let body = serde_json::json!({ "admin": admin });
        let u: Single<UserAttributes> = self.post(&format!("/users/{}/set-admin", enc(id)), &body).await?;
        Ok(u.data.into())
    }

    /// POST /users/{id}/set-password (204). The password comes from the person's
    /// Secret, so MAS's complexity check is skipped: the Secret is the decision.
    pub async fn set_password(&self, id: &str, password: &SecretString) -> Result<(), Error> {
        let body = serde_json::json!({ "password": password.expose(), "skip_password_check": true });
        let _: serde_json::Value = self.post(&format!("/users/{}/set-password", enc(id)), &body).await?;
        Ok(())
    }

    /// POST /users/{id}/deactivate — MAS erases the account's data unless `skip_erase`.
    pub async fn deactivate(&self, id: &str, skip_erase: bool) -> Result<User, Error> {
        let body = serde_json::json!({ "skip_erase": skip_erase });
        let u: Single<UserAttributes> = self.post(&format!("/users/{}/deactivate", enc(id)), &body).await?;
        Ok(u.data.into())
    }

    /// POST /users/{id}/reactivate — does not unlock.
    pub async fn reactivate(&self, id: &str) -> Result<User, Error> {
        let u: Single<UserAttributes> = self.post(&format!("/users/{}/reactivate", enc(id)), &Empty {}).await?;
        Ok(u.data.into())
    }

    /// POST /users/{id}/unlock
    pub async fn unlock(&self, id: &str) -> Result<User, Error> {
        let u: Single<UserAttributes> = self.post(&format!("/users/{}/unlock", enc(id)), &Empty {}).await?;
        Ok(u.data.into())
    }

    /// GET /user-emails?filter[user]={id}
    pub async fn user_emails(&self, user_id: &str) -> Result<Vec<UserEmail>, Error> {
        let items = self.list::<UserEmailAttributes>("/user-emails", &[("filter[user]", user_id)]).await?;
        Ok(items.into_iter().map(UserEmail::from).collect())
    }

    /// POST /user-emails
    pub async fn add_user_email(&self, user_id: &str, email: &str) -> Result<UserEmail, Error> {
        let body = serde_json::json!({ "user_id": user_id, "email": email });
        let e: Single<UserEmailAttributes> = self.post("/user-emails", &body).await?;
        Ok(e.data.into())
    }

    /// DELETE /user-emails/{id} (204)
    pub async fn delete_user_email(&self, id: &str) -> Result<(), Error> {
        let _: serde_json::Value =
            self.call::<Empty, _>(Method::DELETE, &format!("/user-emails/{}", enc(id)), &[], None).await?;
        Ok(())
    }

    /// POST /personal-sessions — a token acting as `actor_user_id`.
    pub async fn create_personal_session(
        &self,
        actor_user_id: &str,
        human_name: &str,
        scope: &str,
        expires_in: Option<u32>,
    ) -> Result<PersonalSession, Error> {
        let body = serde_json::json!({
            "actor_user_id": actor_user_id, "human_name": human_name, "scope": scope, "expires_in": expires_in,
        });
        let s: Single<PersonalSessionAttributes> = self.post("/personal-sessions", &body).await?;
        Ok(s.data.into())
    }

    /// POST /personal-sessions/{id}/regenerate — a new token for the same session; the old one stops working.
    pub async fn regenerate_personal_session(
        &self,
        id: &str,
        expires_in: Option<u32>,
    ) -> Result<PersonalSession, Error> {
        let body = serde_json::json!({ "expires_in": expires_in });
        let s: Single<PersonalSessionAttributes> =
            self.post(&format!("/personal-sessions/{}/regenerate", enc(id)), &body).await?;
        Ok(s.data.into())
    }

    /// POST /personal-sessions/{id}/revoke — an already revoked session (409) counts as done.
    pub async fn revoke_personal_session(&self, id: &str) -> Result<(), Error> {
        match self.post::<_, serde_json::Value>(&format!("/personal-sessions/{}/revoke", enc(id)), &Empty {}).await {
            Ok(_) => Ok(()),
            Err(e) if matches!(e.status(), Some(409 | 404)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// GET /personal-sessions?filter[actor_user]={id}&filter[status]=active
    pub async fn active_personal_sessions(&self, actor_user_id: &str) -> Result<Vec<PersonalSession>, Error> {
        let filters = [("filter[actor_user]", actor_user_id), ("filter[status]", "active")];
        let items = self.list::<PersonalSessionAttributes>("/personal-sessions", &filters).await?;
        Ok(items.into_iter().map(PersonalSession::from).collect())
    }
}
