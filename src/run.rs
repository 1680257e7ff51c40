//! The long-running operator: the session watcher and the controllers.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use kube::runtime::controller::{Config as ControllerConfig, Controller};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::{WatchStreamExt, reflector, watcher};
use kube::{Api, Client};

use crate::controller::{self, Context, Settings};
use crate::crd::{MatrixUser, SpaceRoomLink};
use crate::session::{self, SessionConfig, SessionState};

#[derive(Debug, Clone)]
pub struct RunConfig {
    pub session: SessionConfig,
    /// Watch one namespace; all when `None`.
    pub namespace: Option<String>,
    pub settings: Settings,
}

fn api<K>(client: &Client, namespace: &Option<String>) -> Api<K>
where
    K: kube::Resource<Scope = kube::core::NamespaceResourceScope, DynamicType = ()>,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// Runs until `shutdown` completes, then lets in-flight reconciles finish.
pub async fn run(client: Client, cfg: RunConfig, shutdown: impl Future<Output = ()> + Send + 'static) {
    let session = session::watch_session(client.clone(), cfg.session.clone(), Duration::from_secs(10));
    let instance = std::env::var("POD_NAME").ok().or_else(|| std::env::var("HOSTNAME").ok());
    let recorder = Recorder::new(client.clone(), Reporter { controller: crate::MANAGER.into(), instance });

    let controller_config = ControllerConfig::default().concurrency(cfg.settings.concurrency);
    let user_controller = Controller::new(api::<MatrixUser>(&client, &cfg.namespace), watcher::Config::default())
        .with_config(controller_config);
    let link_controller = Controller::new(api::<SpaceRoomLink>(&client, &cfg.namespace), watcher::Config::default())
        .with_config(ControllerConfig::default().concurrency(cfg.settings.concurrency));
    let links = link_controller.store();
    // A MatrixUser becoming Ready (or going away) re-runs the links that list it.
    let links_for_mapper = links.clone();
    let readiness = controller::link::ReadinessCache::default();
    let link_controller =
        link_controller.watches(api::<MatrixUser>(&client, &cfg.namespace), watcher::Config::default(), move |user| {
            if !readiness.changed(&user) {
                return Vec::new();
            }
            let links = controller::link::links_listing(&user, &links_for_mapper.state());
            // No link to wake (yet: the link cache may still be filling): keep the change pending.
            if links.is_empty() {
                readiness.forget(&user);
            }
            links
        });

    // A MatrixUser cache of our own: the controllers' stores offer no readiness
    // signal that many reconciles can wait on, this one does.
    let (users, caches_ready) = user_cache(api::<MatrixUser>(&client, &cfg.namespace));

    let ctx = Arc::new(Context {
        kube: client.clone(),
        session: session.clone(),
        recorder,
        settings: cfg.settings.clone(),
        http: crate::avatar::http_client(),
        users: Some(users),
        links: Some(links),
        caches_ready,
    });

    let shutdown = shutdown.boxed().shared();
    tracing::info!(namespace = cfg.namespace.as_deref().unwrap_or("<all>"), "starting the controllers");
    let users_done = user_controller
        .reconcile_all_on(session_ready(session.clone()))
        .graceful_shutdown_on(shutdown.clone())
        .run(controller::user::reconcile, controller::error_policy, ctx.clone())
        .for_each(log_result);
    let links_done = link_controller
        .reconcile_all_on(session_ready(session))
        .graceful_shutdown_on(shutdown)
        .run(controller::link::reconcile, controller::error_policy, ctx)
        .for_each(log_result);
    futures::join!(users_done, links_done);
    tracing::info!(synapse_calls = crate::synapse::total_calls(), "controllers stopped");
}

/// A reflector over MatrixUsers driven by its own task, with a flag that turns
/// true once the first full list is in.
fn user_cache(api: Api<MatrixUser>) -> (reflector::Store<MatrixUser>, tokio::sync::watch::Receiver<bool>) {
    let (reader, writer) = reflector::store();
    let (ready_tx, ready_rx) = tokio::sync::watch::channel(false);
    let stream = reflector(writer, watcher(api, watcher::Config::default()).default_backoff());
    tokio::spawn(async move {
        futures::pin_mut!(stream);
        while let Some(event) = stream.next().await {
            if matches!(event, Ok(watcher::Event::InitDone)) {
                let _ = ready_tx.send(true);
            }
        }
    });
    (reader, ready_rx)
}

async fn log_result<T, E: std::fmt::Display>(result: Result<T, E>) {
    if let Err(e) = result {
        tracing::debug!(error = %e, "reconcile error");
    }
}

/// Fires each time a (new) session becomes ready: a rotated Secret or a
/// recovered Synapse re-runs every object at once instead of at its backoff.
fn session_ready(rx: tokio::sync::watch::Receiver<SessionState>) -> impl futures::Stream<Item = ()> + Send {
    futures::stream::unfold(rx, |mut rx| async move {
        loop {
            rx.changed().await.ok()?;
            if matches!(&*rx.borrow_and_update(), SessionState::Ready(_)) {
                return Some(((), rx));
            }
        }
    })
}
