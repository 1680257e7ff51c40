//! HTTP client for eXo's social REST API, `/rest/private/v1/social/...` with Basic auth.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use reqwest::Url;
use serde::Deserialize;
use serde::de::DeserializeOwned;

use super::model::{Dialect, Snapshot, Space, User};
use crate::secret::SecretString;
// Everything but the unreserved characters: a space id never changes the path or adds a parameter.
use crate::synapse::enc;

/// Entries asked per page.
const PAGE: usize = 100;
/// Pages read from one collection at most: 2,000 pages of 100 is far more than any
/// intranet, and ends a listing whose server never says it is done.
const MAX_PAGES: usize = 2_000;

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
    #[error("GET {path}: {nameless} roster entries without a username; the roster is not read as complete")]
    NamelessEntries { path: String, nameless: usize },
    #[error(
        "GET {path}: eXo still answered full pages after {pages} pages ({entries} entries) without saying where the list ends; stopped"
    )]
    TooManyPages { path: String, pages: usize, entries: usize },
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

/// Parses one answer. Only a JSON object is an answer: serde reads a struct from an array
/// too, so `[]` (from a proxy or a broken endpoint) would have been an empty page.
fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, serde_json::Error> {
    let object: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(bytes)?;
    serde_json::from_value(serde_json::Value::Object(object))
}

/// A Meeds 7 membership entry. M6/X5 entries (the caller's own memberships)
/// have neither `username` nor `spaceId`, which is how they are told apart.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Membership {
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    space_id: Option<String>,
}

/// An entry of `/spaces/{id}/users`: a user object.
#[derive(Deserialize)]
struct RosterUser {
    #[serde(default)]
    username: Option<String>,
}

/// The people of one space's roster. An entry about the space that lacks its username (eXo drops
/// null or empty fields) makes the roster unreadable: dropping it would take that person out of the
/// room. Entries about nobody and no space are the caller's own memberships (M6/X5) and are skipped.
fn membership_names(entries: Vec<Membership>, space_id: &str) -> Result<BTreeSet<String>, usize> {
    let mut names = BTreeSet::new();
    let mut nameless = 0;
    for m in entries {
        match (m.username, m.space_id.as_deref()) {
            (None, None) => {}
            (Some(u), Some(id)) if id == space_id => {
                names.insert(u);
            }
            (Some(_), Some(_)) => {}
            (None, Some(id)) if id != space_id => {}
            _ => nameless += 1,
        }
    }
    if nameless == 0 { Ok(names) } else { Err(nameless) }
}

/// The people of a `/spaces/{id}/users` roster; an entry without a username fails it, as above.
fn roster_user_names(entries: Vec<RosterUser>) -> Result<BTreeSet<String>, usize> {
    let nameless = entries.iter().filter(|u| u.username.is_none()).count();
    if nameless > 0 {
        return Err(nameless);
    }
    Ok(entries.into_iter().filter_map(|u| u.username).collect())
}

#[derive(Clone)]
pub struct ExoClient {
    http: reqwest::Client,
    base: Url,
    username: String,
    password: SecretString,
    page: usize,
    max_pages: usize,
}

impl ExoClient {
    pub fn new(base_url: &str, username: &str, password: SecretString) -> Result<Self, ExoError> {
        let base =
            Url::parse(&format!("{}/", base_url.trim_end_matches('/'))).map_err(|_| ExoError::Url(base_url.into()))?;
        let http = crate::tls::client_builder()
            .timeout(Duration::from_secs(30))
            .connect_timeout(Duration::from_secs(5))
            .build()
            .map_err(|_| ExoError::Url(base_url.into()))?;
        Ok(Self { http, base, username: username.to_owned(), password, page: PAGE, max_pages: MAX_PAGES })
    }

    /// Entries asked per page and the most pages read from one collection.
    pub fn with_paging(mut self, page: usize, max_pages: usize) -> Self {
        self.page = page.max(1);
        self.max_pages = max_pages.max(1);
        self
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
        parse(&bytes).map_err(|source| ExoError::Malformed { path: label, source })
    }

    /// Pages through a collection; a page error or a short total fails the whole listing.
    ///
    /// `size` is the total in M6/M7 but the page length in X5, so a full page is
    /// always followed by another request; the listing ends on a short page, and
    /// a server that never gives one is stopped after `max_pages`.
    async fn all<T: DeserializeOwned>(&self, path: &str) -> Result<Vec<T>, ExoError> {
        let sep = if path.contains('?') { '&' } else { '?' };
        let mut items = Vec::new();
        for _ in 0..self.max_pages {
            let page: Page<T> =
                self.get(&format!("{path}{sep}offset={}&limit={}&returnSize=true", items.len(), self.page)).await?;
            let got = page.items.len();
            items.extend(page.items);
            match page.size {
                Some(total) if got == 0 && items.len() < total => {
                    return Err(ExoError::Partial { path: path.to_owned(), announced: total, got: items.len() });
                }
                _ if got == 0 => return Ok(items),
                Some(total) if items.len() < total => continue,
                _ if got >= self.page => continue,
                _ => return Ok(items),
            }
        }
        Err(ExoError::TooManyPages { path: path.to_owned(), pages: self.max_pages, entries: items.len() })
    }

    /// GET /rest/private/v1/social/spaces?filterType=all (all pages; X5 ignores `filterType`
    /// and lists every space to a super manager)
    pub async fn spaces(&self) -> Result<Vec<Space>, ExoError> {
        self.all("rest/private/v1/social/spaces?filterType=all").await
    }

    /// GET /rest/private/v1/social/spacesMemberships?space={id}&status={role} (all pages; Meeds 7)
    ///
    /// Only entries about this space count: M6/X5 answer with the caller's own memberships.
    pub async fn memberships(&self, space_id: &str, role: &str) -> Result<BTreeSet<String>, ExoError> {
        let path = format!("rest/private/v1/social/spacesMemberships?space={}&status={}", enc(space_id), enc(role));
        let entries: Vec<Membership> = self.all(&path).await?;
        membership_names(entries, space_id).map_err(|nameless| ExoError::NamelessEntries { path, nameless })
    }

    /// GET /rest/private/v1/social/spaces/{id}/users?role={role} (all pages; eXo 5.3 and 6.x)
    pub async fn space_users(&self, space_id: &str, role: &str) -> Result<BTreeSet<String>, ExoError> {
        let path = format!("rest/private/v1/social/spaces/{}/users?role={}", enc(space_id), enc(role));
        let entries: Vec<RosterUser> = self.all(&path).await?;
        roster_user_names(entries).map_err(|nameless| ExoError::NamelessEntries { path, nameless })
    }

    /// One roster, through the endpoint the dialect has.
    pub async fn roster(&self, dialect: Dialect, space_id: &str, role: &str) -> Result<BTreeSet<String>, ExoError> {
        match dialect {
            Dialect::Meeds7 => self.memberships(space_id, role).await,
            Dialect::Exo6 | Dialect::Exo5 => self.space_users(space_id, role).await,
        }
    }

    /// GET /rest/private/v1/social/users?userType=all&isDisabled={false,true} (all pages);
    /// eXo 5.3 has neither filter: GET /rest/private/v1/social/users
    pub async fn users(&self, dialect: Dialect) -> Result<BTreeMap<String, User>, ExoError> {
        let paths: &[&str] = match dialect {
            Dialect::Exo5 => &["rest/private/v1/social/users"],
            Dialect::Meeds7 | Dialect::Exo6 => &[
                "rest/private/v1/social/users?userType=all&isDisabled=false",
                "rest/private/v1/social/users?userType=all&isDisabled=true",
            ],
        };
        let mut users = BTreeMap::new();
        for path in paths {
            for u in self.all::<User>(path).await? {
                users.insert(u.username.clone(), u);
            }
        }
        Ok(users)
    }

    /// Which API answered, from the spaces it listed and, when that does not tell,
    /// from a roster it should have: X5 spaces carry no `prettyName`; Meeds 7 lists a
    /// space's memberships by its id, eXo 6 only the caller's. With no space that says
    /// it has members, the `/spaces/{id}/users` roster every version serves is used.
    /// Returns the probed roster too, so it is not read twice.
    async fn dialect(&self, spaces: &[Space]) -> Result<(Dialect, Option<(String, BTreeSet<String>)>), ExoError> {
        if !spaces.is_empty() && spaces.iter().all(|s| s.pretty_name.is_none() && s.members_count.is_none()) {
            return Ok((Dialect::Exo5, None));
        }
        let Some(probe) = spaces.iter().find(|s| s.members_count.is_some_and(|n| n > 0)) else {
            return Ok((Dialect::Exo6, None));
        };
        let members = self.memberships(&probe.id, "member").await?;
        if members.is_empty() {
            Ok((Dialect::Exo6, None))
        } else {
            Ok((Dialect::Meeds7, Some((probe.id.clone(), members))))
        }
    }

    /// Everything at once; any failure fails the snapshot (nothing is acted on partially).
    pub async fn snapshot(&self) -> Result<Snapshot, ExoError> {
        let spaces = self.spaces().await?;
        let (dialect, probed) = self.dialect(&spaces).await?;
        let mut snapshot = Snapshot { dialect, users: self.users(dialect).await?, ..Snapshot::default() };
        for space in &spaces {
            let members = match &probed {
                Some((id, members)) if *id == space.id => members.clone(),
                _ => self.roster(dialect, &space.id, "member").await?,
            };
            snapshot.members.insert(space.id.clone(), members);
            snapshot.managers.insert(space.id.clone(), self.roster(dialect, &space.id, "manager").await?);
        }
        snapshot.spaces = spaces;
        Ok(snapshot)
    }
}

#[cfg(test)]
mod proptests;

#[cfg(test)]
mod tests {
    use super::*;

    fn member(username: Option<&str>, space_id: Option<&str>) -> Membership {
        Membership { username: username.map(str::to_owned), space_id: space_id.map(str::to_owned) }
    }

    #[test]
    fn a_roster_entry_without_a_username_fails_the_roster_instead_of_dropping_a_person() {
        let entries = vec![member(Some("ann"), Some("12")), member(None, Some("12")), member(Some("bob"), Some("12"))];
        assert_eq!(membership_names(entries, "12"), Err(1));
        let users = vec![RosterUser { username: Some("ann".into()) }, RosterUser { username: None }];
        assert_eq!(roster_user_names(users), Err(1));
    }

    #[test]
    fn the_callers_own_memberships_and_other_spaces_are_skipped() {
        let entries = vec![
            member(Some("ann"), Some("12")),
            member(None, None),
            member(Some("bob"), Some("15")),
            member(None, Some("15")),
        ];
        assert_eq!(membership_names(entries, "12"), Ok(BTreeSet::from(["ann".to_owned()])));
    }
}
