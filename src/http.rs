//! The operator's own HTTP endpoints: `/healthz`, `/readyz`, `/metrics`.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use kube::runtime::reflector::Store;
use tokio::sync::watch;

use crate::crd::{MatrixUser, SpaceRoomLink};
use crate::session::SessionState;

/// What the endpoints look at.
#[derive(Clone)]
pub struct Probe {
    pub session: watch::Receiver<SessionState>,
    pub caches_ready: watch::Receiver<bool>,
    pub users: Store<MatrixUser>,
    pub links: Store<SpaceRoomLink>,
    /// False while this replica waits for leadership: it is alive but not serving.
    pub leading: watch::Receiver<bool>,
}

pub async fn serve(
    addr: SocketAddr,
    probe: Probe,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(Arc::new(probe));
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(%addr, "serving /healthz, /readyz and /metrics");
    axum::serve(listener, app).with_graceful_shutdown(shutdown).await
}

/// Ready when connected to Synapse with full caches; a standby replica is ready too
/// (it must be able to take over), and says so.
async fn readyz(State(p): State<Arc<Probe>>) -> (StatusCode, String) {
    if !*p.leading.borrow() {
        return (StatusCode::OK, "standby: waiting for leadership".into());
    }
    let session = match &*p.session.borrow() {
        SessionState::Ready(_) => None,
        SessionState::Starting => Some("connecting to Synapse".to_owned()),
        SessionState::Failed(why, _) => Some(why.clone()),
    };
    match session {
        Some(why) => (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {why}")),
        None if !*p.caches_ready.borrow() => (StatusCode::SERVICE_UNAVAILABLE, "not ready: filling caches".into()),
        None => (StatusCode::OK, "ready".into()),
    }
}

async fn metrics(State(p): State<Arc<Probe>>) -> String {
    let m = crate::metrics::global();
    let ready = |conditions: Option<&Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition>>| {
        conditions.is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
    };
    let users = p.users.state();
    let n = users.iter().filter(|u| ready(u.status.as_ref().map(|s| &s.conditions))).count() as i64;
    m.set_objects("MatrixUser", n, users.len() as i64 - n);
    let links = p.links.state();
    let n = links.iter().filter(|l| ready(l.status.as_ref().map(|s| &s.conditions))).count() as i64;
    m.set_objects("SpaceRoomLink", n, links.len() as i64 - n);
    m.encode()
}
