//! The original eXo addon's REST endpoints, served by the operator so existing
//! callers keep working:
//!
//! - `GET /rest/matrix/linkroom?spaceGroupId=…&roomId=…&create=true` creates the
//!   SpaceRoomLink: 400 without spaceGroupId, 404 when an ExoSource is configured
//!   and does not know the space, 409 when the space is linked by another object,
//!   202 with the link's name while it is being made, 200 with the room id once Ready.
//! - `GET /rest/matrix?spaceId=…` answers the linked room id, 404 when there is none.
//!
//! Every call needs `Authorization: Bearer <token>`; no token configured, no server.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;
use kube::api::{ListParams, PostParams};
use kube::{Api, Client, ResourceExt};
use serde_json::json;

use crate::crd::{ExoSource, SpaceRoomLink, SpaceRoomLinkSpec};
use crate::secret::SecretString;

/// Links made through this API carry this label, so a repeated call recognises them.
const MADE_BY: &str = "exomatrix.dev/made-by";

pub struct AddonApi {
    pub kube: Client,
    /// Where links are created and looked up.
    pub namespace: String,
    pub token: SecretString,
}

pub async fn serve(
    addr: SocketAddr,
    api: AddonApi,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/rest/matrix/linkroom", get(linkroom))
        .route("/rest/matrix", get(room_of_space))
        .with_state(Arc::new(api));
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(%addr, "serving the addon's /rest/matrix endpoints");
    axum::serve(listener, app).with_graceful_shutdown(shutdown).await
}

type Reply = (StatusCode, String);

fn authorized(api: &AddonApi, headers: &HeaderMap) -> bool {
    let given = headers.get("authorization").and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    // Compare without short-circuiting on the first differing byte.
    given.is_some_and(|g| {
        let (a, b) = (g.as_bytes(), api.token.expose().as_bytes());
        a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    })
}

fn link_name(space_group_id: &str) -> String {
    let safe: String = space_group_id
        .chars()
        .map(|c| if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.' { c } else { '-' })
        .collect();
    format!("linkroom-{}", safe.trim_matches('-'))
}

async fn links(api: &AddonApi) -> Result<Vec<SpaceRoomLink>, Reply> {
    Api::<SpaceRoomLink>::namespaced(api.kube.clone(), &api.namespace)
        .list(&ListParams::default())
        .await
        .map(|l| l.items)
        .map_err(|e| (StatusCode::SERVICE_UNAVAILABLE, format!("cannot read links: {e}")))
}

async fn linkroom(
    State(api): State<Arc<AddonApi>>,
    headers: HeaderMap,
    Query(q): Query<BTreeMap<String, String>>,
) -> Reply {
    if !authorized(&api, &headers) {
        return (StatusCode::UNAUTHORIZED, "missing or wrong bearer token".into());
    }
    let Some(space) = q.get("spaceGroupId").filter(|s| !s.is_empty()).cloned() else {
        return (StatusCode::BAD_REQUEST, "spaceGroupId is required".into());
    };
    let room_id = q.get("roomId").filter(|r| !r.is_empty()).cloned();
    let create = q.get("create").is_some_and(|c| c == "true");
    let existing = match links(&api).await {
        Ok(l) => l,
        Err(reply) => return reply,
    };
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
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("cannot create the link: {e}")),
    }
}

async fn room_of_space(
    State(api): State<Arc<AddonApi>>,
    headers: HeaderMap,
    Query(q): Query<BTreeMap<String, String>>,
) -> Reply {
    if !authorized(&api, &headers) {
        return (StatusCode::UNAUTHORIZED, "missing or wrong bearer token".into());
    }
    let Some(space) = q.get("spaceId").filter(|s| !s.is_empty()).cloned() else {
        return (StatusCode::BAD_REQUEST, "spaceId is required".into());
    };
    let existing = match links(&api).await {
        Ok(l) => l,
        Err(reply) => return reply,
    };
    match existing.iter().find(|l| l.spec.space_group_id == space).and_then(|l| l.status.as_ref()?.room_id.clone()) {
        Some(room) => (StatusCode::OK, room),
        None => (StatusCode::NOT_FOUND, format!("no room is linked to space {space}")),
    }
}
