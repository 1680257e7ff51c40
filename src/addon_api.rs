//! The original eXo addon's REST endpoints, served by the operator so existing
//! callers keep working:
//!
//! - `GET /rest/matrix/linkroom?spaceGroupId=…&roomId=…&create=true` creates the
//!   SpaceRoomLink: 400 without spaceGroupId, 404 when an ExoSource is configured
//!   and does not know the space, 409 when the space is linked by another object,
//!   202 with the link's name while it is being made, 200 with the room id once Ready.
//! - `GET /rest/matrix?spaceId=…` answers the linked room id, 404 when there is none.
//!
//! Both are served under `/rest/matrix…` and under `/portal/rest/matrix…`, the
//! path eXo administrators call the addon by, so a reverse proxy can forward the
//! old URL unchanged.
//!
//! Every call needs `Authorization: Bearer <token>`, the `token` key of a Secret
//! that is watched: a rotated token is in force without a restart, and while the
//! Secret has none every call is refused with 503.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{ListParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};
use serde_json::json;
use tokio::sync::watch;

use crate::crd::{ExoSource, SpaceRoomLink, SpaceRoomLinkSpec};
use crate::secret::SecretString;

/// Links made through this API carry this label, so a repeated call recognises them.
const MADE_BY: &str = "exomatrix.dev/made-by";

pub struct AddonApi {
    pub kube: Client,
    /// Where links are created and looked up.
    pub namespace: String,
    /// The current bearer token; `None` while the Secret has none.
    pub token: watch::Receiver<Option<SecretString>>,
}

/// The path prefixes the addon is reached under: its own, and the portal's.
pub const PREFIXES: [&str; 2] = ["/rest/matrix", "/portal/rest/matrix"];

/// Keeps the `token` of Secret `namespace/name` current. A watch the API server
/// refuses or drops is retried with backoff; the last token stays in force meanwhile.
pub fn watch_token(kube: Client, namespace: &str, name: &str) -> watch::Receiver<Option<SecretString>> {
    let (tx, rx) = watch::channel(None);
    let secrets: Api<Secret> = Api::namespaced(kube, namespace);
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let label = format!("{namespace}/{name}");
    tokio::spawn(async move {
        let mut events = watcher(secrets, config).default_backoff().boxed();
        let mut seen = false;
        while let Some(event) = events.next().await {
            let token = match event {
                Ok(watcher::Event::Apply(s) | watcher::Event::InitApply(s)) => {
                    seen = true;
                    token_of(&s)
                }
                Ok(watcher::Event::Delete(_)) => None,
                Ok(watcher::Event::Init) => {
                    seen = false;
                    continue;
                }
                Ok(watcher::Event::InitDone) if !seen => None,
                Ok(watcher::Event::InitDone) => continue,
                Err(e) => {
                    tracing::warn!(secret = %label, error = %crate::error_chain::chain(&e), "watching the addon API token Secret");
                    continue;
                }
            };
            if token.is_none() {
                tracing::error!(secret = %label, "no `token` in the addon API Secret; the /rest/matrix endpoints answer 503");
            } else if tx.borrow().as_ref() != token.as_ref() {
                tracing::info!(secret = %label, "addon API token loaded");
            }
            tx.send_if_modified(|current| {
                let changed = *current != token;
                *current = token;
                changed
            });
        }
    });
    rx
}

fn token_of(secret: &Secret) -> Option<SecretString> {
    let raw = secret.data.as_ref()?.get("token")?;
    let token = String::from_utf8(raw.0.clone()).ok()?;
    Some(SecretString::new(token.trim())).filter(|t| !t.is_empty())
}

pub async fn serve(
    addr: SocketAddr,
    api: AddonApi,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let mut app = Router::new();
    for prefix in PREFIXES {
        app = app.route(&format!("{prefix}/linkroom"), get(linkroom)).route(prefix, get(room_of_space));
    }
    let app = app.with_state(Arc::new(api));
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(%addr, "serving the addon's /rest/matrix and /portal/rest/matrix endpoints");
    axum::serve(listener, app).with_graceful_shutdown(shutdown).await
}

type Reply = (StatusCode, String);

/// `Err` with the reply when the call does not carry the current token.
fn authorize(api: &AddonApi, headers: &HeaderMap) -> Result<(), Reply> {
    let token = api.token.borrow().clone();
    let Some(token) = token else {
        return Err((StatusCode::SERVICE_UNAVAILABLE, "the addon API has no token configured yet".into()));
    };
    let given = headers.get("authorization").and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    // Constant time in the content (only the length may show): a wrong guess learns nothing of the token.
    let ok = given.is_some_and(|g| bool::from(subtle::ConstantTimeEq::ct_eq(g.as_bytes(), token.expose().as_bytes())));
    if ok { Ok(()) } else { Err((StatusCode::UNAUTHORIZED, "missing or wrong bearer token".into())) }
}

fn link_name(space_group_id: &str) -> String {
    let safe: String = space_group_id
        .chars()
        .map(|c| if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.' { c } else { '-' })
        .collect();
    format!("linkroom-{}", safe.trim_matches('-'))
}

/// What every call starts with: the token checked, the space named by `param`, the links there are.
async fn start(
    api: &AddonApi,
    headers: &HeaderMap,
    q: &BTreeMap<String, String>,
    param: &str,
) -> Result<(String, Vec<SpaceRoomLink>), Reply> {
    authorize(api, headers)?;
    let Some(space) = q.get(param).filter(|s| !s.is_empty()).cloned() else {
        return Err((StatusCode::BAD_REQUEST, format!("{param} is required")));
    };
    let links =
        Api::<SpaceRoomLink>::namespaced(api.kube.clone(), &api.namespace).list(&ListParams::default()).await.map_err(
            |e| (StatusCode::SERVICE_UNAVAILABLE, format!("cannot read links: {}", crate::error_chain::chain(&e))),
        )?;
    Ok((space, links.items))
}

async fn linkroom(
    State(api): State<Arc<AddonApi>>,
    headers: HeaderMap,
    Query(q): Query<BTreeMap<String, String>>,
) -> Reply {
    let (space, existing) = match start(&api, &headers, &q, "spaceGroupId").await {
        Ok(started) => started,
        Err(reply) => return reply,
    };
    let room_id = q.get("roomId").filter(|r| !r.is_empty()).cloned();
    let create = q.get("create").is_some_and(|c| c == "true");
    if let Some(link) = existing.iter().find(|l| l.spec.space_group_id == space) {
        let ours = link.labels().get(MADE_BY).map(String::as_str) == Some("linkroom");
        let ready = link.status.as_ref().and_then(|s| {
            s.conditions.iter().any(|c| c.type_ == "Ready" && c.status == "True").then(|| s.room_id.clone()).flatten()
        });
        return match (ours, ready) {
            (true, Some(room)) => (StatusCode::OK, room),
            (true, None) => (StatusCode::ACCEPTED, link.name_any()),
            (false, _) => (StatusCode::CONFLICT, format!("space {space} is already linked by {}", link.name_any())),
        };
    }
    let sources = Api::<ExoSource>::namespaced(api.kube.clone(), &api.namespace)
        .list(&ListParams::default())
        .await
        .map(|l| l.items.len())
        .unwrap_or(0);
    if sources > 0 {
        // An ExoSource links every space it knows; one it has not linked is unknown to eXo.
        return (StatusCode::NOT_FOUND, format!("the ExoSource does not know the space {space}"));
    }
    let spec = json!({"spaceGroupId": space, "roomId": room_id, "create": create});
    let spec: SpaceRoomLinkSpec = match serde_json::from_value(spec) {
        Ok(s) => s,
        Err(e) => return (StatusCode::BAD_REQUEST, e.to_string()),
    };
    let mut link = SpaceRoomLink::new(&link_name(&space), spec);
    link.metadata.labels = Some([(MADE_BY.to_owned(), "linkroom".to_owned())].into());
    match Api::<SpaceRoomLink>::namespaced(api.kube.clone(), &api.namespace).create(&PostParams::default(), &link).await
    {
        Ok(created) => (StatusCode::ACCEPTED, created.name_any()),
        // The API server's validation message names the bad field.
        Err(kube::Error::Api(e)) if e.code == 422 => (StatusCode::BAD_REQUEST, e.message),
        Err(kube::Error::Api(e)) if e.code == 409 => (StatusCode::CONFLICT, e.message),
        Err(e) => {
            (StatusCode::SERVICE_UNAVAILABLE, format!("cannot create the link: {}", crate::error_chain::chain(&e)))
        }
    }
}

async fn room_of_space(
    State(api): State<Arc<AddonApi>>,
    headers: HeaderMap,
    Query(q): Query<BTreeMap<String, String>>,
) -> Reply {
    let (space, existing) = match start(&api, &headers, &q, "spaceId").await {
        Ok(started) => started,
        Err(reply) => return reply,
    };
    match existing.iter().find(|l| l.spec.space_group_id == space).and_then(|l| l.status.as_ref()?.room_id.clone()) {
        Some(room) => (StatusCode::OK, room),
        None => (StatusCode::NOT_FOUND, format!("no room is linked to space {space}")),
    }
}
