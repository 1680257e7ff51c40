//! HTTP client for eXo's social REST API, `/rest/private/v1/social/...` with Basic auth.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use reqwest::Url;
use serde::Deserialize;
use serde::de::DeserializeOwned;

use super::model::{Snapshot, Space, User};
use crate::secret::SecretString;

/// Entries asked per page.
const PAGE: usize = 100;

#[derive(Debug, thiserror::Error)]
pub enum ExoError {
    #[error("GET {path}: cannot reach eXo")]
    Network {
        path: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("GET {path}: eXo answered HTTP {status}")]
    Status { path: String, status: u16 },
    #[error("GET {path}: eXo's answer is not the JSON expected")]
    Malformed {
        path: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("GET {path}: eXo announced {announced} entries but gave {got}")]
    Partial { path: String, announced: usize, got: usize },
    #[error("invalid eXo URL {0:?}")]
    Url(String),
}

#[derive(Deserialize)]
struct Page<T> {
    #[serde(default = "Vec::new", alias = "spaces", alias = "users", alias = "spacesMemberships")]
    items: Vec<T>,
    #[serde(default)]
    size: Option<usize>,
}

#[derive(Deserialize)]
struct Membership {
    #[serde(default)]
    username: Option<String>,
    /// M6/X5 entries have no `username`; their id is `prettyName:username:role`.
    #[serde(default)]
    id: Option<String>,
}

impl Membership {
    fn username(self) -> Option<String> {
        self.username.or_else(|| self.id?.split(':').nth(1).map(str::to_owned))
    }
}

#[derive(Clone)]
pub struct ExoClient {
    http: reqwest::Client,
    base: Url,
    username: String,
    password: SecretString,
}

impl ExoClient {
    pub fn new(base_url: &str, username: &str, password: SecretString) -> Result<Self, ExoError> {
        let base =
            Url::parse(&format!("{}/", base_url.trim_end_matches('/'))).map_err(|_| ExoError::Url(base_url.into()))?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .connect_timeout(Duration::from_secs(5))
            .build()
            .map_err(|_| ExoError::Url(base_url.into()))?;
        Ok(Self { http, base, username: username.to_owned(), password })
    }

    async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ExoError> {
        let url = self.base.join(path.trim_start_matches('/')).map_err(|_| ExoError::Url(path.into()))?;
        let label = path.split('?').next().unwrap_or(path).to_owned();
        let resp = self
            .http
            .get(url)
            .basic_auth(&self.username, Some(self.password.expose()))
            .send()
            .await
            .map_err(|source| ExoError::Network { path: label.clone(), source })?;
        let status = resp.status();
        if !status.is_success() {
            return Err(ExoError::Status { path: label, status: status.as_u16() });
        }
        let bytes = resp.bytes().await.map_err(|source| ExoError::Network { path: label.clone(), source })?;
        serde_json::from_slice(&bytes).map_err(|source| ExoError::Malformed { path: label, source })
    }

    /// Pages through a collection; a page error or a short total fails the whole listing.
    async fn all<T: DeserializeOwned>(&self, path: &str) -> Result<Vec<T>, ExoError> {
        let sep = if path.contains('?') { '&' } else { '?' };
        let mut items = Vec::new();
        loop {
            let page: Page<T> =
                self.get(&format!("{path}{sep}offset={}&limit={PAGE}&returnSize=true", items.len())).await?;
            let got = page.items.len();
            items.extend(page.items);
            match page.size {
                Some(total) if items.len() >= total => return Ok(items),
                Some(total) if got == 0 => {
                    return Err(ExoError::Partial { path: path.to_owned(), announced: total, got: items.len() });
                }
                Some(_) => continue,
                None if got < PAGE => return Ok(items),
                None => continue,
            }
        }
    }

    /// GET /rest/private/v1/social/spaces?filterType=all (all pages)
    pub async fn spaces(&self) -> Result<Vec<Space>, ExoError> {
        self.all("rest/private/v1/social/spaces?filterType=all").await
    }

    /// GET /rest/private/v1/social/spacesMemberships?space={id}&status={role} (all pages)
    pub async fn roster(&self, space_id: &str, role: &str) -> Result<BTreeSet<String>, ExoError> {
        let path = format!("rest/private/v1/social/spacesMemberships?space={space_id}&status={role}");
        let entries: Vec<Membership> = self.all(&path).await?;
        Ok(entries.into_iter().filter_map(Membership::username).collect())
    }

    /// GET /rest/private/v1/social/users?userType=all&isDisabled={false,true} (all pages)
    pub async fn users(&self) -> Result<BTreeMap<String, User>, ExoError> {
        let mut users = BTreeMap::new();
        for disabled in ["false", "true"] {
            let page: Vec<User> =
                self.all(&format!("rest/private/v1/social/users?userType=all&isDisabled={disabled}")).await?;
            for u in page {
                users.insert(u.username.clone(), u);
            }
        }
        Ok(users)
    }

    /// Everything at once; any failure fails the snapshot (nothing is acted on partially).
    pub async fn snapshot(&self) -> Result<Snapshot, ExoError> {
        let spaces = self.spaces().await?;
        let mut snapshot = Snapshot { users: self.users().await?, ..Snapshot::default() };
        for space in &spaces {
            snapshot.members.insert(space.id.clone(), self.roster(&space.id, "member").await?);
            snapshot.managers.insert(space.id.clone(), self.roster(&space.id, "manager").await?);
        }
        snapshot.spaces = spaces;
        Ok(snapshot)
    }
}
