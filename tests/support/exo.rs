//! A fake eXo REST server, written only from `../shared/docs/exo-rest-contract.md`:
//! Basic auth on `/rest/private`, paged collections with `offset`/`limit`/`returnSize`,
//! the Meeds 7, eXo 6.x and eXo 5.3 shapes (`State::version`), and switches for
//! the ways eXo misbehaves.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::extract::{Query, State as AxState};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::net::TcpListener;

/// The account the fake accepts: `root` / `gtn`.
pub const USERNAME: &str = "root";
pub const PASSWORD: &str = "gtn";
const AUTH: &str = "Basic cm9vdDpndG4=";
/// The Secret `credentials_secret` describes.
pub const CREDENTIALS: &str = "exo-admin";

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Misbehaviour {
    /// HTTP 500 on any page after the first.
    ServerErrorOnPage2,
    /// Truncated JSON.
    Malformed,
    /// An empty list of spaces, as a broken search index would give.
    NoSpaces,
    /// Every roster empty while the spaces still count their members.
    EmptyRosters,
    /// No `size`, `offset` ignored: the same full page forever.
    EndlessFullPages,
    /// HTTP 500 with a text body on every request (§1: error bodies are never JSON).
    ServerError,
    /// HTTP 200 with something other than the contract's JSON.
    Garbage(Garbage),
    /// Every M6/M7 page holds half of what it would (at least one entry) while more exist;
    /// `size`, the total in M6/M7, stays right (§3.1). X5 is not shortened: there `size` is the
    /// page length, and a short page is its only end marker.
    HalfPages,
    /// `Content-Length` announces the whole body, the connection closes half-way through it.
    TruncatedBodies,
}

/// The shapes of a wrong 200 answer.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Garbage {
    /// An HTML page, as a login proxy or an error page in front of eXo gives.
    Html,
    /// The list key holds an object instead of an array.
    ListNotArray,
    /// The list's entries are numbers.
    EntriesNotObjects,
    /// Every other roster entry (spacesMemberships, `/spaces/{id}/users`) lacks its `username`:
    /// eXo drops null or empty fields (§3.1), so a client must not read such a roster as complete.
    RosterEntriesWithoutUsername,
}

impl Garbage {
    pub const ALL: [Garbage; 4] =
        [Garbage::Html, Garbage::ListNotArray, Garbage::EntriesNotObjects, Garbage::RosterEntriesWithoutUsername];
}

/// Which eXo answers (contract §7).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub enum Version {
    /// Meeds / eXo 7: rosters through `spacesMemberships?space={id}`.
    #[default]
    Meeds7,
    /// eXo 6.x: `spacesMemberships` lists only the caller's memberships (`space` is a
    /// display name); rosters through `/spaces/{id}/users?role=`.
    Exo6,
    /// eXo 5.3: spaces without `prettyName` and counts, users without filters
    /// (`userType`, `isDisabled` ignored), `size` is the page length.
    Exo5,
}

#[derive(Default)]
pub struct State {
    /// id → (prettyName, displayName, description)
    pub spaces: BTreeMap<String, (String, String, String)>,
    pub members: BTreeMap<String, Vec<String>>,
    pub managers: BTreeMap<String, Vec<String>>,
    /// username → (fullname, email, enabled)
    pub users: BTreeMap<String, (String, String, bool)>,
    pub misbehave: Option<Misbehaviour>,
    pub version: Version,
    /// Longest page served whatever `limit` asks, so that paging is exercised.
    pub page_cap: usize,
    pub requests: usize,
    /// How long every answer takes: a slow eXo keeps a source's pass under way for a while.
    pub delay: Option<std::time::Duration>,
}

#[derive(Clone)]
pub struct FakeExo {
    pub state: Arc<Mutex<State>>,
    pub url: String,
}

impl FakeExo {
    pub async fn start() -> FakeExo {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let state = Arc::new(Mutex::new(State { page_cap: 2, ..State::default() }));
        let app = axum::Router::new().fallback(handle).with_state(state.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        FakeExo { state, url }
    }

    pub fn edit(&self, f: impl FnOnce(&mut State)) {
        f(&mut self.state.lock().expect("lock"));
    }

    /// The basic-auth Secret `CREDENTIALS` that lets an ExoSource in (`kubectl apply` it).
    pub fn credentials_secret(&self) -> String {
        credentials_with(PASSWORD)
    }
}

/// The basic-auth Secret `CREDENTIALS` with `password` (the fake accepts only `PASSWORD`).
pub fn credentials_with(password: &str) -> String {
    json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": CREDENTIALS},
        "type": "kubernetes.io/basic-auth", "stringData": {"username": USERNAME, "password": password}})
    .to_string()
}

impl State {
    /// An enabled user named `{u} Full`, mailed at `{u}@example.org`.
    pub fn add_user(&mut self, u: &str) {
        self.users.insert(u.to_owned(), (format!("{u} Full"), format!("{u}@example.org"), true));
    }
}

type Q = BTreeMap<String, String>;

async fn handle(
    AxState(state): AxState<Arc<Mutex<State>>>,
    uri: Uri,
    Query(q): Query<Q>,
    headers: HeaderMap,
) -> Response {
    let authorized = headers.get(header::AUTHORIZATION).is_some_and(|v| v.as_bytes() == AUTH.as_bytes());
    let (status, body) = if authorized {
        respond(&percent_encoding::percent_decode_str(uri.path()).decode_utf8_lossy(), &q, &state)
    } else {
        (StatusCode::UNAUTHORIZED, String::new())
    };
    let (misbehave, delay) = {
        let s = state.lock().expect("lock");
        (s.misbehave, s.delay)
    };
    if let Some(delay) = delay {
        tokio::time::sleep(delay).await;
    }
    let body = match misbehave {
        Some(Misbehaviour::Garbage(g)) if status == StatusCode::OK => garbage(g, uri.path(), body),
        _ => body,
    };
    // Connection: close, as before: no idle connection outlives a change of misbehaviour.
    let headers = [(header::CONTENT_TYPE, "application/json"), (header::CONNECTION, "close")];
    if misbehave == Some(Misbehaviour::TruncatedBodies) {
        // The announced length, then half the bytes and an aborted stream: hyper closes the connection.
        let length = body.len().to_string();
        let half = body.as_bytes()[..body.len() / 2].to_vec();
        let chunks: [Result<Vec<u8>, std::io::Error>; 2] = [Ok(half), Err(std::io::Error::other("cut"))];
        let stream = axum::body::Body::from_stream(futures::stream::iter(chunks));
        return (status, headers, [(header::CONTENT_LENGTH, length)], stream).into_response();
    }
    (status, headers, body).into_response()
}

/// A 200 answer `body` to `path` made wrong in the way `g` says.
fn garbage(g: Garbage, path: &str, body: String) -> String {
    let Ok(Value::Object(mut page)) = serde_json::from_str::<Value>(&body) else { return body };
    let Some(key) = ["spaces", "users", "spacesMemberships"].into_iter().find(|k| page.contains_key(*k)) else {
        return body;
    };
    match g {
        Garbage::Html => return "<html><head><title>Login</title></head><body>Session expired</body></html>".into(),
        Garbage::ListNotArray => page[key] = json!({"error": "unavailable"}),
        Garbage::EntriesNotObjects => page[key] = json!([1, 2, 3]),
        Garbage::RosterEntriesWithoutUsername
            if path.ends_with("/spacesMemberships") || path.ends_with("/users") && path.contains("/spaces/") =>
        {
            for entry in page[key].as_array_mut().into_iter().flatten().skip(1).step_by(2) {
                if let Some(entry) = entry.as_object_mut() {
                    entry.remove("username");
                }
            }
        }
        Garbage::RosterEntriesWithoutUsername => {}
    }
    Value::Object(page).to_string()
}

/// One page of `items` under `key`, as `CollectionEntity` shapes it.
fn page(key: &str, items: Vec<Value>, q: &Q, s: &State) -> (StatusCode, String) {
    let offset: usize = q.get("offset").and_then(|v| v.parse().ok()).unwrap_or(0);
    // Spaces: an absent limit is bound as 0 and gives an empty page (M6/M7, contract §3.1); X5 defaults to 20.
    let default_limit = if key == "spaces" && s.version != Version::Exo5 { 0 } else { 20 };
    let limit: usize = q.get("limit").and_then(|v| v.parse().ok()).unwrap_or(default_limit);
    if s.misbehave == Some(Misbehaviour::EndlessFullPages) {
        let slice: Vec<Value> = items.iter().cycle().take(limit).cloned().collect();
        return (StatusCode::OK, json!({key: slice, "offset": offset, "limit": limit}).to_string());
    }
    // An explicit limit is used uncapped by the real servers; the cap makes M6/M7 paging visible in tests.
    let cap = match s.version {
        Version::Exo5 => usize::MAX,
        _ if s.misbehave == Some(Misbehaviour::HalfPages) => (s.page_cap.min(limit) / 2).max(1),
        _ => s.page_cap,
    };
    let slice: Vec<Value> = items.iter().skip(offset).take(limit.min(cap)).cloned().collect();
    let mut body = json!({key: slice, "offset": offset, "limit": limit});
    if q.get("returnSize").map(String::as_str) == Some("true") {
        // X5: returnSize gives the page length, not the total.
        body["size"] = json!(if s.version == Version::Exo5 { slice.len() } else { items.len() });
    }
    (StatusCode::OK, body.to_string())
}

/// Enabled usernames of a roster (disabled users drop out of rosters and counts, §3.2).
fn roster<'a>(s: &'a State, space: &str, role: &str) -> Vec<&'a String> {
    let names = if role == "manager" { s.managers.get(space) } else { s.members.get(space) };
    names.into_iter().flatten().filter(|u| s.users.get(*u).is_some_and(|(_, _, enabled)| *enabled)).collect()
}

fn respond(path: &str, q: &Q, state: &Mutex<State>) -> (StatusCode, String) {
    let mut s = state.lock().expect("lock");
    s.requests += 1;
    let offset: usize = q.get("offset").and_then(|v| v.parse().ok()).unwrap_or(0);
    match s.misbehave {
        Some(Misbehaviour::ServerErrorOnPage2) if offset > 0 => {
            return (StatusCode::INTERNAL_SERVER_ERROR, "oops".into());
        }
        Some(Misbehaviour::ServerError) => {
            return (StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error".into());
        }
        Some(Misbehaviour::Malformed) => return (StatusCode::OK, "{\"spaces\": [{\"id\": \"12\", ".into()),
        _ => {}
    }
    match path {
        "/rest/private/v1/social/spaces" => {
            if s.misbehave == Some(Misbehaviour::NoSpaces) {
                return page("spaces", vec![], q, &s);
            }
            let items = s
                .spaces
                .iter()
                .map(|(id, (pretty, display, description))| {
                    let mut space = json!({"id": id, "displayName": display, "groupId": format!("/spaces/{pretty}"),
                           "description": description, "visibility": "private", "subscription": "validation"});
                    if s.version != Version::Exo5 {
                        space["prettyName"] = json!(pretty);
                        space["membersCount"] = json!(roster(&s, id, "member").len());
                        space["managersCount"] = json!(roster(&s, id, "manager").len());
                    }
                    space
                })
                .collect();
            page("spaces", items, q, &s)
        }
        "/rest/private/v1/social/spacesMemberships" => {
            let space = q.get("space").cloned().unwrap_or_default();
            let role = q.get("status").cloned().unwrap_or_else(|| "member".into());
            if s.version != Version::Meeds7 {
                // M6/X5: the caller's own memberships, `space` filtering on the display name.
                let items = s
                    .spaces
                    .iter()
                    .filter(|(_, (_, display, _))| *display == space)
                    .filter(|(id, _)| roster(&s, id, "member").iter().any(|u| *u == USERNAME))
                    .map(|(_, (pretty, _, _))| json!({"id": format!("{pretty}:{USERNAME}:member"), "role": "member"}))
                    .collect();
                return page("spacesMemberships", items, q, &s);
            }
            let Some((pretty, _, _)) = s.spaces.get(&space).cloned() else {
                return (StatusCode::UNAUTHORIZED, String::new());
            };
            let items = if s.misbehave == Some(Misbehaviour::EmptyRosters) { Vec::new() } else { roster(&s, &space, &role) }
                .into_iter()
                .map(|u| json!({"id": format!("{pretty}:{u}:{role}"), "username": u, "spaceId": space, "role": role, "status": "approved"}))
                .collect();
            page("spacesMemberships", items, q, &s)
        }
        "/rest/private/v1/social/users" => {
            let disabled = q.get("isDisabled").map(String::as_str) == Some("true");
            let items = s
                .users
                .iter()
                // X5 has no `isDisabled` filter: one listing of everyone.
                .filter(|(_, (_, _, enabled))| s.version == Version::Exo5 || *enabled != disabled)
                .map(|(u, (full, email, enabled))| user_json(&s, u, full, email, *enabled))
                .collect();
            page("users", items, q, &s)
        }
        _ => match path.strip_prefix("/rest/private/v1/social/spaces/").and_then(|p| p.strip_suffix("/users")) {
            // Every version serves a space's roster here (M7: deprecated, still present).
            Some(id) if s.spaces.contains_key(id) => {
                let role = q.get("role").cloned().unwrap_or_else(|| "member".into());
                let items =
                    if s.misbehave == Some(Misbehaviour::EmptyRosters) { Vec::new() } else { roster(&s, id, &role) }
                        .into_iter()
                        .filter_map(|u| {
                            let (full, email, enabled) = s.users.get(u)?;
                            let mut entry = user_json(&s, u, full, email, *enabled);
                            entry["isMember"] = json!(true);
                            entry["isManager"] = json!(roster(&s, id, "manager").contains(&u));
                            Some(entry)
                        })
                        .collect();
                page("users", items, q, &s)
            }
            Some(_) => (StatusCode::UNAUTHORIZED, String::new()),
            None => (StatusCode::NOT_FOUND, String::new()),
        },
    }
}

/// A user object: X5 has no `userName` nor `isDefaultAvatar`.
fn user_json(s: &State, u: &str, full: &str, email: &str, enabled: bool) -> Value {
    let mut user =
        json!({"id": u, "username": u, "fullname": full, "email": email, "enabled": enabled, "deleted": false});
    if s.version != Version::Exo5 {
        user["userName"] = json!(u);
        user["isDefaultAvatar"] = json!(true);
    }
    user
}
