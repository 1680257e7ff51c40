//! A fake eXo REST server, written only from `../shared/docs/exo-rest-contract.md`
//! (Meeds 7 shapes): Basic auth on `/rest/private`, paged collections with
//! `offset`/`limit`/`returnSize`, and switches for the ways eXo misbehaves.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// The account the fake accepts: `root` / `gtn`.
pub const USERNAME: &str = "root";
pub const PASSWORD: &str = "gtn";
const AUTH: &str = "Basic cm9vdDpndG4=";

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Misbehaviour {
    /// HTTP 500 on any page after the first.
    ServerErrorOnPage2,
    /// Truncated JSON.
    Malformed,
    /// An empty list of spaces, as a broken search index would give.
    NoSpaces,
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
    /// Longest page served whatever `limit` asks, so that paging is exercised.
    pub page_cap: usize,
    pub requests: usize,
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
        let shared = state.clone();
        tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                let state = shared.clone();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 16384];
                    let n = sock.read(&mut buf).await.unwrap_or(0);
                    let request = String::from_utf8_lossy(&buf[..n]).into_owned();
                    let (status, body) = respond(&request, &state);
                    let head = format!(
                        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        body.len()
                    );
                    let _ = sock.write_all(head.as_bytes()).await;
                    let _ = sock.write_all(body.as_bytes()).await;
                });
            }
        });
        FakeExo { state, url }
    }

    pub fn edit(&self, f: impl FnOnce(&mut State)) {
        f(&mut self.state.lock().expect("lock"));
    }
}

fn query(target: &str) -> BTreeMap<String, String> {
    target
        .split_once('?')
        .map(|(_, q)| q)
        .unwrap_or("")
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// One page of `items` under `key`, as `CollectionEntity` shapes it.
fn page(key: &str, items: Vec<Value>, q: &BTreeMap<String, String>, cap: usize) -> (&'static str, String) {
    let offset: usize = q.get("offset").and_then(|v| v.parse().ok()).unwrap_or(0);
    // Spaces: an absent limit is bound as 0 and gives an empty page (contract §3.1).
    let default_limit = if key == "spaces" { 0 } else { 20 };
    let limit: usize = q.get("limit").and_then(|v| v.parse().ok()).unwrap_or(default_limit);
    let slice: Vec<Value> = items.iter().skip(offset).take(limit.min(cap)).cloned().collect();
    let mut body = json!({key: slice, "offset": offset, "limit": limit});
    if q.get("returnSize").map(String::as_str) == Some("true") {
        body["size"] = json!(items.len());
    }
    ("200 OK", body.to_string())
}

fn respond(request: &str, state: &Arc<Mutex<State>>) -> (&'static str, String) {
    let target = request.split_whitespace().nth(1).unwrap_or("/");
    let authorized = request.lines().any(|l| l.trim().eq_ignore_ascii_case(&format!("authorization: {AUTH}")));
    if !authorized {
        return ("401 Unauthorized", String::new());
    }
    let mut s = state.lock().expect("lock");
    s.requests += 1;
    let q = query(target);
    let path = target.split('?').next().unwrap_or("");
    let offset: usize = q.get("offset").and_then(|v| v.parse().ok()).unwrap_or(0);
    match s.misbehave {
        Some(Misbehaviour::ServerErrorOnPage2) if offset > 0 => return ("500 Internal Server Error", "oops".into()),
        Some(Misbehaviour::Malformed) => return ("200 OK", "{\"spaces\": [{\"id\": \"12\", ".into()),
        _ => {}
    }
    match path {
        "/rest/private/v1/social/spaces" => {
            if s.misbehave == Some(Misbehaviour::NoSpaces) {
                return page("spaces", vec![], &q, s.page_cap);
            }
            let items = s
                .spaces
                .iter()
                .map(|(id, (pretty, display, description))| {
                    json!({"id": id, "displayName": display, "prettyName": pretty, "groupId": format!("/spaces/{pretty}"),
                           "description": description, "visibility": "private", "subscription": "validation",
                           "membersCount": s.members.get(id).map_or(0, Vec::len)})
                })
                .collect();
            page("spaces", items, &q, s.page_cap)
        }
        "/rest/private/v1/social/spacesMemberships" => {
            let space = q.get("space").cloned().unwrap_or_default();
            let role = q.get("status").cloned().unwrap_or_else(|| "member".into());
            let Some((pretty, _, _)) = s.spaces.get(&space).cloned() else {
                return ("401 Unauthorized", String::new());
            };
            let names = if role == "manager" { s.managers.get(&space) } else { s.members.get(&space) };
            let items = names
                .into_iter()
                .flatten()
                .filter(|u| s.users.get(*u).is_some_and(|(_, _, enabled)| *enabled))
                .map(|u| json!({"id": format!("{pretty}:{u}:{role}"), "username": u, "spaceId": space, "role": role, "status": "approved"}))
                .collect();
            page("spacesMemberships", items, &q, s.page_cap)
        }
        "/rest/private/v1/social/users" => {
            let disabled = q.get("isDisabled").map(String::as_str) == Some("true");
            let items = s
                .users
                .iter()
                .filter(|(_, (_, _, enabled))| *enabled != disabled)
                .map(|(u, (full, email, enabled))| {
                    json!({"id": u, "username": u, "userName": u, "fullname": full, "email": email,
                           "enabled": enabled, "deleted": false, "isDefaultAvatar": true})
                })
                .collect();
            page("users", items, &q, s.page_cap)
        }
        _ => ("404 Not Found", String::new()),
    }
}
