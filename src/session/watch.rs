//! Keeps a session current: follows the credentials Secret, retries a failed
//! attempt, and makes a new session when Synapse refuses the current one.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use tokio::sync::watch;

use super::{SessionConfig, SessionError, SessionState, establish};
use crate::credentials;
use crate::error_chain::chain;

/// Watches the credentials Secret and keeps a session current. A failed
/// attempt is retried every `retry` until it works or the Secret changes.
///
/// `refresh` asks for a new session while the current one looks healthy: a
/// controller whose token Synapse no longer accepts (revoked, logged out) rings it.
pub fn watch_session(
    kube: Client,
    cfg: SessionConfig,
    retry: Duration,
    refresh: Arc<tokio::sync::Notify>,
) -> watch::Receiver<SessionState> {
    let (tx, rx) = watch::channel(SessionState::Starting);
    tokio::spawn(async move {
        let instance = std::env::var("POD_NAME").ok().or_else(|| std::env::var("HOSTNAME").ok());
        let recorder = Recorder::new(kube.clone(), Reporter { controller: crate::MANAGER.into(), instance });
        let secrets: Api<Secret> = Api::namespaced(kube.clone(), &cfg.secret_namespace);
        let wc = watcher::Config::default().fields(&format!("metadata.name={}", cfg.secret_name));
        // Backoff: a denied or dropped watch (RBAC, an API server restart) is retried at growing intervals, not in a spin.
        let mut events = watcher(secrets, wc).default_backoff().boxed();
        let label = format!("{}/{}", cfg.secret_namespace, cfg.secret_name);
        let mut current: Option<BTreeMap<String, ByteString>> = None;
        let mut seen_any = false;
        let mut healthy = false;
        // The last failure needs the Secret to change: wait for that, not for a timer.
        let mut stalled = false;
        loop {
            let event = if healthy {
                tokio::select! {
                    e = events.next() => e,
                    _ = refresh.notified() => {
                        tracing::info!("Synapse refused the session's token; establishing a new session");
                        healthy = false;
                        Some(Ok(watcher::Event::InitDone))
                    }
                }
            } else if (current.is_none() || stalled) && seen_any {
                events.next().await
            } else {
                match tokio::time::timeout(retry, events.next()).await {
                    Ok(e) => e,
                    Err(_) => Some(Ok(watcher::Event::InitDone)), // retry tick
                }
            };
            let Some(event) = event else { break };
            match event {
                Ok(watcher::Event::Apply(s) | watcher::Event::InitApply(s)) => {
                    seen_any = true;
                    let data = s.data.unwrap_or_default();
                    if healthy && current.as_ref() == Some(&data) {
                        continue;
                    }
                    current = Some(data);
                }
                Ok(watcher::Event::Delete(_)) => {
                    current = None;
                    healthy = false;
                    let missing = SessionError::SecretMissing(label.clone());
                    let _ = tx.send(SessionState::Failed(missing.to_string(), missing.class()));
                    continue;
                }
                Ok(watcher::Event::Init) => continue,
                Ok(watcher::Event::InitDone) => {
                    seen_any = true;
                    if current.is_none() {
                        let missing = SessionError::SecretMissing(label.clone());
                        let _ = tx.send(SessionState::Failed(missing.to_string(), missing.class()));
                        continue;
                    }
                    if healthy || stalled {
                        continue;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %chain(&e), "watching the credentials Secret");
                    continue;
                }
            }
            let Some(data) = current.clone() else {
                continue;
            };
            let state = match credentials::parse(&data) {
                Err(e) => Err(SessionError::Credentials(label.clone(), e)),
                Ok(creds) => establish(&kube, &cfg, &creds, Some(&recorder)).await,
            };
            match state {
                Ok(session) => {
                    tracing::info!(user_id = %session.user_id, server_name = %session.server_name, mode = session.mode.describe(), "connected to Synapse");
                    healthy = true;
                    stalled = false;
                    if let Some(at) = session.renew_at {
                        // A MAS token is renewed before it expires: the next session regenerates it.
                        let refresh = refresh.clone();
                        let left = at.duration_since(jiff::Timestamp::now()).as_secs_f64();
                        tokio::spawn(async move {
                            tokio::time::sleep(Duration::from_secs_f64(left.max(1.0))).await;
                            refresh.notify_one();
                        });
                    }
                    let _ = tx.send(SessionState::Ready(Arc::new(session)));
                }
                Err(e) => {
                    let message = chain(&e);
                    tracing::error!(error = %message, "no usable Synapse session");
                    healthy = false;
                    stalled = e.needs_secret_change();
                    let _ = tx.send(SessionState::Failed(message, e.class()));
                }
            }
        }
    });
    rx
}
