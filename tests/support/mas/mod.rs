//! A fake Matrix Authentication Service, written only from
//! `../shared/docs/mas-contract.md` and MAS's OpenAPI document (`docs/api/spec.json`),
//! plus what Synapse itself asks of MAS (token introspection, `/_synapse/mas/*`).
//! Every behaviour neither source states is marked ASSUMED.
//!
//! Like MAS, it keeps Synapse in step in the background: a created user is
//! provisioned in Synapse (`/_synapse/mas/provision_user`), emails are copied there,
//! deactivation and reactivation are forwarded (`delete_user`, `reactivate_user`).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State as AxState;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use rand::Rng;
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};

mod admin;
mod jobs;
mod synapse;

use admin::admin;
use jobs::run_jobs;
pub use synapse::DelegatedSynapse;

pub const CLIENT_ID: &str = "01JEXOMATRIXOPERATOR00000A";
pub const CLIENT_SECRET: &str = "fake-mas-client-secret";

#[derive(Clone, Debug, Default)]
pub struct User {
    pub username: String,
    pub admin: bool,
    pub locked: bool,
    pub deactivated: bool,
    pub password: Option<String>,
    pub displayname: Option<String>,
    pub avatar_url: Option<String>,
}

#[derive(Clone, Debug)]
pub struct Session {
    pub actor: String,
    pub human_name: String,
    pub scope: String,
    pub token: String,
    pub revoked: bool,
    pub expires_at: Option<jiff::Timestamp>,
}

/// A call the fake asked of Synapse, as the tests can check it.
#[derive(Clone, Debug, PartialEq)]
pub enum Job {
    Provision(String),
    Delete { localpart: String, erase: bool, user_id: String },
    Reactivate { localpart: String, user_id: String },
}

#[derive(Default)]
pub struct State {
    pub users: BTreeMap<String, User>,
    /// email id → (user id, address)
    pub emails: BTreeMap<String, (String, String)>,
    pub sessions: BTreeMap<String, Session>,
    /// admin token → expiry
    pub admin_tokens: BTreeMap<String, jiff::Timestamp>,
    /// Lifetime of admin tokens from the token endpoint.
    pub admin_token_lifetime: i64,
    pub admin_tokens_issued: usize,
    /// "METHOD /path" of every admin API call, in order.
    pub calls: Vec<String>,
    pub jobs_done: Vec<Job>,
    pub synapse_url: Option<String>,
    pub synapse_secret: String,
}

struct Inner {
    state: Mutex<State>,
    reachable: AtomicBool,
    http: reqwest::Client,
    jobs: tokio::sync::mpsc::UnboundedSender<Job>,
}

#[derive(Clone)]
pub struct FakeMas {
    inner: Arc<Inner>,
    pub url: String,
}

/// The listener, which drops every connection while the fake plays unreachable.
struct Gate {
    listener: TcpListener,
    inner: Arc<Inner>,
}

impl axum::serve::Listener for Gate {
    type Io = TcpStream;
    type Addr = SocketAddr;
    async fn accept(&mut self) -> (TcpStream, SocketAddr) {
        loop {
            match self.listener.accept().await {
                Ok((sock, addr)) if self.inner.reachable.load(Ordering::SeqCst) => return (sock, addr),
                Ok(_) => continue,
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(10)).await,
            }
        }
    }
    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }
}

impl FakeMas {
    /// Starts on a free loopback port; `synapse_secret` is the one shared with Synapse.
    pub async fn start(synapse_secret: &str) -> FakeMas {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let state = State { admin_token_lifetime: 300, synapse_secret: synapse_secret.into(), ..State::default() };
        let inner = Arc::new(Inner {
            state: Mutex::new(state),
            reachable: AtomicBool::new(true),
            http: reqwest::Client::new(),
            jobs: tx,
        });
        tokio::spawn(run_jobs(inner.clone(), rx));
        let app = axum::Router::new().fallback(handle).with_state(inner.clone());
        let gate = Gate { listener, inner: inner.clone() };
        tokio::spawn(async move { axum::serve(gate, app).await });
        FakeMas { inner, url }
    }

    pub fn edit<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        f(&mut self.inner.state.lock().expect("lock"))
    }

    /// Unreachable: every new connection is dropped (responses close their connection, so none lingers).
    pub fn set_reachable(&self, up: bool) {
        self.inner.reachable.store(up, Ordering::SeqCst);
    }

    pub fn user_by_name(&self, username: &str) -> Option<(String, User)> {
        self.edit(|s| s.users.iter().find(|(_, u)| u.username == username).map(|(id, u)| (id.clone(), u.clone())))
    }

    pub fn emails_of(&self, user_id: &str) -> Vec<String> {
        self.edit(|s| s.emails.values().filter(|(u, _)| u == user_id).map(|(_, e)| e.clone()).collect())
    }

    pub fn active_sessions_of(&self, user_id: &str) -> Vec<Session> {
        self.edit(|s| s.sessions.values().filter(|x| x.actor == user_id && !x.revoked).cloned().collect())
    }

    pub fn calls_matching(&self, needle: &str) -> usize {
        self.edit(|s| s.calls.iter().filter(|c| c.contains(needle)).count())
    }
}

/// A ULID-shaped id (26 Crockford base-32 characters).
fn ulid() -> String {
    const ALPHABET: &[u8] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
    let mut rng = rand::rng();
    (0..26).map(|_| ALPHABET[rng.random_range(0..32)] as char).collect()
}

fn token(prefix: &str) -> String {
    format!("{prefix}_{}", rand::distr::SampleString::sample_string(&rand::distr::Alphanumeric, &mut rand::rng(), 30))
}

fn now() -> jiff::Timestamp {
    jiff::Timestamp::now()
}

fn reply(status: StatusCode, body: Value) -> Response {
    // Connection: close keeps no idle connection that would outlive `set_reachable(false)`.
    (status, [(header::CONNECTION, "close"), (header::CONTENT_TYPE, "application/json")], body.to_string())
        .into_response()
}

fn error(status: StatusCode, title: &str) -> Response {
    reply(status, json!({"errors": [{"title": title}]}))
}

fn form(body: &[u8]) -> BTreeMap<String, String> {
    let text = String::from_utf8_lossy(body);
    reqwest::Url::parse(&format!("http://x/?{text}"))
        .map(|u| u.query_pairs().map(|(k, v)| (k.into_owned(), v.into_owned())).collect())
        .unwrap_or_default()
}

fn user_json(id: &str, u: &User) -> Value {
    let at = |b: bool| if b { json!("2026-11-26T00:00:00Z") } else { Value::Null };
    json!({"type": "user", "id": id, "attributes": {"username": u.username, "created_at": "2026-11-26T00:00:00Z",
        "locked_at": at(u.locked), "deactivated_at": at(u.deactivated), "admin": u.admin, "legacy_guest": false},
        "links": {"self": format!("/api/admin/v1/users/{id}")}})
}

fn single(data: Value) -> Response {
    let link = data["links"]["self"].clone();
    reply(StatusCode::OK, json!({"data": data, "links": {"self": link}}))
}

fn session_json(id: &str, s: &Session, with_token: bool) -> Value {
    json!({"type": "personal-session", "id": id, "attributes": {"created_at": "2026-11-26T00:00:00Z",
        "revoked_at": if s.revoked { json!("2026-11-26T00:00:00Z") } else { Value::Null },
        "owner_user_id": Value::Null, "owner_client_id": CLIENT_ID, "actor_user_id": s.actor,
        "human_name": s.human_name, "scope": s.scope, "last_active_at": Value::Null, "last_active_ip": Value::Null,
        "expires_at": s.expires_at.map(|t| json!(t.to_string())).unwrap_or(Value::Null),
        "access_token": if with_token { json!(s.token) } else { Value::Null }},
        "links": {"self": format!("/api/admin/v1/personal-sessions/{id}")}})
}

/// MAS's rule for usernames (OpenAPI: 400 "Username is not valid").
fn username_valid(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('_')
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "=_-./+".contains(c))
}

async fn handle(
    AxState(inner): AxState<Arc<Inner>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_owned();
    let query = form(uri.query().unwrap_or("").as_bytes());
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_owned);
    match (method.as_str(), path.as_str()) {
        ("POST", "/oauth2/token") => token_endpoint(&inner, &headers, &body),
        ("POST", "/oauth2/introspect") => introspect(&inner, bearer.as_deref(), &body),
        (_, p) if p.starts_with("/api/admin/v1/") => {
            let authorized = {
                let mut s = inner.state.lock().expect("lock");
                s.calls.push(format!("{method} {p}"));
                bearer.as_ref().and_then(|t| s.admin_tokens.get(t)).is_some_and(|exp| *exp > now())
            };
            if !authorized {
                // ASSUMED: a missing, unknown or expired admin token answers 401 in the errors shape.
                return error(StatusCode::UNAUTHORIZED, "Invalid access token");
            }
            let json: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            admin(&inner, method.as_str(), &p["/api/admin/v1".len()..], &query, json).await
        }
        _ => error(StatusCode::NOT_FOUND, "Not found"),
    }
}

/// Client credentials grant, HTTP Basic (contract: observed).
fn token_endpoint(inner: &Inner, headers: &HeaderMap, body: &[u8]) -> Response {
    use base64::Engine as _;
    let decode =
        |b: &str| base64::engine::general_purpose::STANDARD.decode(b).ok().and_then(|v| String::from_utf8(v).ok());
    let basic = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Basic "));
    let pair = basic.and_then(decode).unwrap_or_default();
    let params = form(body);
    if pair != format!("{CLIENT_ID}:{CLIENT_SECRET}") {
        // ASSUMED: RFC 6749 §5.2 — 401 `invalid_client`.
        return reply(StatusCode::UNAUTHORIZED, json!({"error": "invalid_client"}));
    }
    if params.get("grant_type").map(String::as_str) != Some("client_credentials")
        || params.get("scope").map(String::as_str) != Some("urn:mas:admin")
    {
        return reply(StatusCode::BAD_REQUEST, json!({"error": "invalid_request"}));
    }
    let mut s = inner.state.lock().expect("lock");
    let t = token("mat");
    let lifetime = s.admin_token_lifetime;
    s.admin_tokens.insert(t.clone(), now() + jiff::SignedDuration::from_secs(lifetime));
    s.admin_tokens_issued += 1;
    reply(
        StatusCode::OK,
        json!({"access_token": t, "token_type": "Bearer", "expires_in": lifetime, "scope": "urn:mas:admin"}),
    )
}

/// RFC 7662 introspection as Synapse calls it (bearer = the shared secret, form `token=`).
/// ASSUMED: a revoked or expired session, or one whose user is locked or deactivated, is inactive.
fn introspect(inner: &Inner, bearer: Option<&str>, body: &[u8]) -> Response {
    let s = inner.state.lock().expect("lock");
    if bearer != Some(s.synapse_secret.as_str()) {
        return reply(StatusCode::UNAUTHORIZED, json!({"error": "invalid_client"}));
    }
    let presented = form(body).remove("token").unwrap_or_default();
    let found = s.sessions.iter().find(|(_, x)| x.token == presented);
    let Some((id, session)) = found else { return reply(StatusCode::OK, json!({"active": false})) };
    let user = s.users.get(&session.actor);
    let expired = session.expires_at.is_some_and(|t| t <= now());
    if session.revoked || expired || user.is_none_or(|u| u.locked || u.deactivated) {
        return reply(StatusCode::OK, json!({"active": false}));
    }
    let username = user.map(|u| u.username.clone()).unwrap_or_default();
    let mut answer = json!({"active": true, "scope": session.scope, "client_id": CLIENT_ID, "username": username,
        "sub": session.actor, "token_type": "access_token", "jti": id});
    if let Some(t) = session.expires_at {
        answer["expires_in"] = json!(t.duration_since(now()).as_secs().max(0));
    }
    reply(StatusCode::OK, answer)
}

/// The fake MAS and a real Synapse delegating to it, wired both ways.
pub struct MasPlatform {
    pub mas: FakeMas,
    pub synapse: DelegatedSynapse,
}

impl MasPlatform {
    pub async fn start() -> MasPlatform {
        let secret = crate::support::unique("mas-shared-secret");
        let mas = FakeMas::start(&secret).await;
        let smtp: u16 = crate::support::platform().var("SYNAPSE_SMTP_PORT").parse().expect("smtp port");
        let synapse = DelegatedSynapse::start(&mas.url, &secret, smtp).await;
        mas.edit(|s| s.synapse_url = Some(synapse.url.clone()));
        MasPlatform { mas, synapse }
    }

    /// The MAS admin client the operator is given (as the tests' adapter uses it).
    pub fn client(&self) -> exo_matrix_operator::mas::Mas {
        let secret = exo_matrix_operator::secret::SecretString::new(CLIENT_SECRET);
        exo_matrix_operator::mas::Mas::new(&self.mas.url, CLIENT_ID, secret).expect("valid URL")
    }

    /// Credentials Secret pairs for the operator in MAS mode.
    pub fn credentials(&self) -> Vec<(&'static str, String)> {
        vec![
            ("serverUrl", self.synapse.url.clone()),
            ("masUrl", self.mas.url.clone()),
            ("masClientId", CLIENT_ID.to_owned()),
            ("masClientSecret", CLIENT_SECRET.to_owned()),
        ]
    }

    /// A Synapse admin for the tests: a MAS admin account with a personal session holding Synapse's admin scope.
    pub async fn synapse_admin(&self) -> exo_matrix_operator::synapse::Synapse {
        let synapse = exo_matrix_operator::synapse::Synapse::new(&self.synapse.url).expect("valid URL");
        synapse.with_token(self.synapse_admin_token().await)
    }

    /// The token of a fresh test admin, provisioned in Synapse.
    pub async fn synapse_admin_token(&self) -> exo_matrix_operator::secret::SecretString {
        use exo_matrix_operator::mas::{ADMIN_SESSION_SCOPE, NewUser};
        let mas = self.client();
        let name = crate::support::unique("testadmin");
        let new = NewUser { username: name, skip_homeserver_check: false, displayname: None, avatar_url: None };
        let user = mas.create_user(&new).await.expect("test admin created in MAS");
        mas.set_admin(&user.id, true).await.expect("made admin");
        let session = mas.create_personal_session(&user.id, "tests", ADMIN_SESSION_SCOPE, None).await.expect("session");
        let token = session.access_token.expect("token");
        let synapse = exo_matrix_operator::synapse::Synapse::new(&self.synapse.url).expect("valid URL");
        let admin = synapse.with_token(token.clone());
        // MAS provisions the account in Synapse in the background.
        crate::support::eventually("the test admin in Synapse", std::time::Duration::from_secs(20), || async {
            admin.whoami().await.ok()
        })
        .await;
        token
    }
}
