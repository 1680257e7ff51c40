//! The long-running operator: the session watcher and the controllers.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::{Stream, StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Secret;
use kube::core::PartialObjectMeta;
use kube::runtime::controller::{Config as ControllerConfig, Controller};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};
use tokio::sync::watch;

use crate::controller::shared::{self, SharedWatch};
use crate::controller::{self, Context, Settings, secret_refs};
use crate::crd::{ExoSource, MatrixSpace, MatrixUser, SpaceRoomLink};
use crate::session::{self, SessionConfig, SessionState};

/// An ExoSource's pass (a whole eXo read) waits this long after the last change concerning it: a GitOps sync
/// that applies a source and its credentials Secret together reads eXo once.
const SOURCE_DEBOUNCE: Duration = Duration::from_secs(1);

#[derive(Debug, Clone)]
pub struct RunConfig {
    pub session: SessionConfig,
    /// Watch one namespace; all when `None`.
    pub namespace: Option<String>,
    pub settings: Settings,
    /// Where `/healthz`, `/readyz` and `/metrics` are served; not at all when `None`.
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// Leader election; every replica acts when `None`.
    pub lease: Option<crate::leader::LeaseConfig>,
    /// The original addon's REST endpoints; off when `None`.
    pub addon_api: Option<AddonApiConfig>,
}

#[derive(Debug, Clone)]
pub struct AddonApiConfig {
    pub addr: std::net::SocketAddr,
    /// (namespace, name) of the Secret holding the bearer token under `token`.
    pub token_secret: (String, String),
    pub namespace: String,
}

/// Starts the addon endpoints; their token is watched, so it may come (or change) later.
fn start_addon_api(client: &Client, cfg: &AddonApiConfig, shutdown: impl Future<Output = ()> + Send + 'static) {
    let (ns, name) = &cfg.token_secret;
    let api = crate::addon_api::AddonApi {
        kube: client.clone(),
        namespace: cfg.namespace.clone(),
        token: crate::addon_api::watch_token(client.clone(), ns, name),
    };
    let addr = cfg.addr;
    tokio::spawn(async move {
        if let Err(e) = crate::addon_api::serve(addr, api, shutdown).await {
            tracing::error!(error = %crate::error_chain::chain(&e), "the addon API stopped");
        }
    });
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

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("leadership lost; in-flight reconciles were cancelled so that the leader is the only one acting")]
    Leadership(#[from] crate::leader::LeaderError),
    #[error("invalid leader election settings: {0}")]
    LeaseConfig(String),
    #[error("cannot serve the health and metrics endpoints")]
    Http(#[source] std::io::Error),
}

/// Runs until `shutdown` completes, then lets in-flight reconciles finish
/// (still renewing the lease) and releases it. With leader election, it first
/// waits for the lease; when the lease cannot be renewed, in-flight reconciles
/// are cancelled at once and it returns an error.
pub async fn run(
    client: Client,
    cfg: RunConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), RunError> {
    if let Some(lease) = &cfg.lease {
        lease.validate().map_err(RunError::LeaseConfig)?;
        crate::leader::fence::close();
    }
    let (stop_tx, stop) = watch::channel(false);
    let stop_on_signal = stop_tx.clone();
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_on_signal.send(true);
    });
    let stopped = {
        let stop = stop.clone();
        move || {
            let mut stop = stop.clone();
            async move {
                let _ = stop.wait_for(|s| *s).await;
            }
        }
    };
    // The lease and the addon API use `client`; everything a controller writes goes through
    // `writer`, whose writes stop at the renew deadline (see leader::fence).
    let writer = match &cfg.lease {
        Some(_) => crate::leader::fence::kube_client(client.clone()),
        None => client.clone(),
    };

    let (leading_tx, leading) = watch::channel(cfg.lease.is_none());
    let (session_tx, session_rx) = watch::channel(SessionState::Starting);
    // One watch per kind, shared by the controllers, their triggers and the caches (see controller::shared).
    let user_index = Arc::new(controller::user_index::UserIndex::default());
    let mut user_watch = SharedWatch::<MatrixUser>::default();
    let users = user_watch.store();
    // A status write is no news to the object's own controller (it would start a second pass).
    let user_changes = user_watch.subscribe_changes(shared::generation_fingerprint::<MatrixUser>);
    let users_for_links = user_watch.subscribe();
    let users_for_spaces = user_watch.subscribe();
    let (users_tx, users_listed) = watch::channel(false);
    let index = user_index.clone();
    let user_events = watcher(api::<MatrixUser>(&client, &cfg.namespace), watcher::Config::default())
        .default_backoff()
        .modify(shared::trim)
        .inspect_ok(move |e| index.observe(e));
    let user_watch = tokio::spawn(user_watch.run(user_events, Some(users_tx)));

    let mut link_watch = SharedWatch::<SpaceRoomLink>::default();
    let links = link_watch.store();
    let link_changes = link_watch.subscribe_changes(controller::link::fingerprint);
    let links_for_spaces = link_watch.subscribe();
    let link_index = Arc::new(controller::link_index::LinkIndex::default());
    let index = link_index.clone();
    let link_events = watcher(api::<SpaceRoomLink>(&client, &cfg.namespace), watcher::Config::default())
        .default_backoff()
        .modify(shared::trim)
        .inspect_ok(move |e| index.observe(e));
    let (links_tx, links_listed) = watch::channel(false);
    let link_watch = tokio::spawn(link_watch.run(link_events, Some(links_tx)));
    // Members and space children are judged from both caches: never from a half-filled one.
    let caches_ready = both_listed(users_listed, links_listed);

    // Spaces and sources: a status write is no news to their own controller either.
    let mut space_watch = SharedWatch::<MatrixSpace>::default();
    let spaces = space_watch.store();
    let space_changes = space_watch.subscribe_changes(controller::space::wake::fingerprint);
    let space_events = watcher(api::<MatrixSpace>(&client, &cfg.namespace), watcher::Config::default())
        .default_backoff()
        .modify(shared::trim);
    let mut source_watch = SharedWatch::<ExoSource>::default();
    let sources = source_watch.store();
    let source_changes = source_watch.subscribe_changes(shared::generation_fingerprint::<ExoSource>);
    let source_events = watcher(api::<ExoSource>(&client, &cfg.namespace), watcher::Config::default())
        .default_backoff()
        .modify(shared::trim);
    // One Secret watch, of names only (a Secret's data never comes through it), for MatrixUsers and ExoSources.
    let secret_events = watcher(api::<PartialObjectMeta<Secret>>(&client, &cfg.namespace), secret_refs::watched())
        .default_backoff()
        .touched_objects()
        .filter_map(|secret| std::future::ready(secret.ok().map(Arc::new)));
    let (mut secret_feeds, secret_watch) = shared::fan_out(secret_events, 2);
    let (secrets_for_sources, secrets_for_users) = match (secret_feeds.pop(), secret_feeds.pop()) {
        (Some(a), Some(b)) => (a, b),
        _ => unreachable!("fan_out gives as many feeds as asked"),
    };
    let _watches = AbortOnDrop(vec![
        user_watch,
        link_watch,
        tokio::spawn(space_watch.run(space_events, None)),
        tokio::spawn(source_watch.run(source_events, None)),
        tokio::spawn(secret_watch),
    ]);

    let controller_config = ControllerConfig::default().concurrency(cfg.settings.concurrency);
    let user_controller = Controller::for_shared_stream(user_changes, users.clone())
        .with_config(controller_config.clone().concurrency(cfg.settings.user_concurrency));
    // A password Secret created or rotated later reaches its MatrixUsers at once.
    let users_for_secrets = users.clone();
    let user_controller = user_controller.watches_shared_stream(secrets_for_users, move |secret| {
        secret_refs::users_of(&*secret, &users_for_secrets.state())
    });
    let link_controller = Controller::for_shared_stream(link_changes, links.clone())
        .with_config(controller_config.clone().debounce(cfg.settings.link_debounce));
    let space_controller =
        Controller::for_shared_stream(space_changes, spaces.clone()).with_config(controller_config.clone());

    let mut http = None;
    if let Some(addr) = cfg.metrics_addr {
        let probe = crate::http::Probe {
            session: session_rx.clone(),
            caches_ready: caches_ready.clone(),
            users: users.clone(),
            links: links.clone(),
            leading: leading.clone(),
        };
        http = Some(tokio::spawn(crate::http::serve(addr, probe, stopped())));
    }

    // Every replica answers the addon API (it only writes objects), so a Service can reach any of them.
    if let Some(addon) = &cfg.addon_api {
        start_addon_api(&client, addon, stopped());
    }

    let (release_tx, release) = watch::channel(false);
    let mut holder = None;
    if let Some(lease) = &cfg.lease {
        let renewed = tokio::select! {
            renewed = crate::leader::acquire(&client, lease) => renewed,
            _ = stopped() => return Ok(()),
        };
        let _ = leading_tx.send(true);
        let (client, lease) = (client.clone(), lease.clone());
        holder = Some(tokio::spawn(async move { crate::leader::hold(&client, &lease, renewed, release).await }));
    }

    // Only the leader talks to Synapse (and may bootstrap the admin account).
    let session_refresh = Arc::new(tokio::sync::Notify::new());
    let session =
        session::watch_session(writer.clone(), cfg.session.clone(), Duration::from_secs(10), session_refresh.clone());
    let mut forward = session.clone();
    tokio::spawn(async move {
        loop {
            let state = forward.borrow_and_update().clone();
            let _ = session_tx.send(state);
            if forward.changed().await.is_err() {
                break;
            }
        }
    });
    let instance = std::env::var("POD_NAME").ok().or_else(|| std::env::var("HOSTNAME").ok());
    let recorder = Recorder::new(writer.clone(), Reporter { controller: crate::MANAGER.into(), instance });

    // A MatrixUser becoming Ready (or going away) re-runs the links that list it.
    let readiness = controller::link::ReadinessCache::default();
    let accounts_made = Arc::new(controller::link::AccountsMade::default());
    let made = accounts_made.clone();
    let (links_for_wake, users_for_wake, index_for_wake) = (links.clone(), users.clone(), user_index.clone());
    let link_controller = link_controller.watches_shared_stream(users_for_links, move |user| {
        if !readiness.changed(&user) {
            return Vec::new();
        }
        if user.status.as_ref().is_some_and(|s| s.user_id.is_some()) {
            made.mark();
        }
        let mut links = link_index.listing(&user.namespace().unwrap_or_default(), &user.spec.username);
        let listed = links.len();
        links.retain(|r| {
            links_for_wake.get(r).is_none_or(|l| controller::link::worth_waking(&l, &users_for_wake, &index_for_wake))
        });
        if links.len() < listed {
            return links;
        }
        // No link to wake (yet: the link cache may still be filling): keep the change pending.
        if links.is_empty() {
            readiness.forget(&user);
        }
        links
    });

    // A space follows what it reads of its links (selection, room, listed people) and their people's accounts,
    // at most --space-debounce late and once per that period (controller::throttle).
    let space_controller =
        space_controller.reconcile_on(space_triggers(links_for_spaces, users_for_spaces, &links, &spaces, &cfg));

    // Synapse back after an outage wakes every object (controller/outage.rs).
    let outage = Arc::new(controller::outage::Outage::default());
    tokio::spawn({
        let (outage, session) = (outage.clone(), session.clone());
        async move { outage.probe(session, Duration::from_secs(2)).await }
    });
    let ctx = Arc::new(Context {
        kube: writer.clone(),
        session: session.clone(),
        recorder,
        settings: cfg.settings.clone(),
        http: crate::avatar::http_client(),
        users: Some(users),
        links: Some(links),
        caches_ready,
        session_refresh,
        backoffs: Default::default(),
        user_index,
        directory: Default::default(),
        avatars: Default::default(),
        written: Default::default(),
        outage: outage.clone(),
        accounts_made,
        space_parents: Default::default(),
    });

    tracing::info!(namespace = cfg.namespace.as_deref().unwrap_or("<all>"), "starting the controllers");
    let woken = || futures::stream::select(session_settled(session.clone()), outage.back());
    let users_done = user_controller
        .reconcile_all_on(woken())
        .graceful_shutdown_on(stopped())
        .run(controller::user::reconcile, controller::error_policy, ctx.clone())
        .for_each(|r| log_result("user", r));
    let source_controller = Controller::for_shared_stream(source_changes, sources.clone())
        .with_config(controller_config.debounce(SOURCE_DEBOUNCE));
    // So do credentials Secrets to their ExoSources.
    let source_controller = source_controller
        .watches_shared_stream(secrets_for_sources, move |secret| secret_refs::sources_of(&*secret, &sources.state()));
    let sources_done = source_controller
        .graceful_shutdown_on(stopped())
        .run(controller::source::reconcile, controller::error_policy, ctx.clone())
        .for_each(|r| log_result("source", r));
    let links_done = link_controller
        .reconcile_all_on(woken())
        .graceful_shutdown_on(stopped())
        .run(controller::link::reconcile, controller::error_policy, ctx.clone())
        .for_each(|r| log_result("link", r));
    let spaces_done = space_controller
        .reconcile_all_on(woken())
        .graceful_shutdown_on(stopped())
        .run(controller::space::reconcile, controller::error_policy, ctx)
        .for_each(|r| log_result("space", r));
    let lost = {
        let controllers = async { futures::join!(users_done, links_done, sources_done, spaces_done) };
        let lease_lost = async {
            match holder.as_mut() {
                Some(holder) => Some(holder.await),
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = controllers => None,
            held = lease_lost => held,
        }
    };
    // Dropping the controllers (above) dropped their in-flight reconciles where they stood:
    // a replica without the lease must not drain for minutes.
    if let Some(held) = lost {
        crate::leader::fence::close();
        let _ = leading_tx.send(false);
        let lost = match held {
            Ok(Err(lost)) => lost,
            _ => crate::leader::LeaderError::Lost(cfg.lease.as_ref().map(|l| l.name.clone()).unwrap_or_default()),
        };
        tracing::error!(error = %crate::error_chain::chain(&lost), "cancelling in-flight reconciles and stopping");
        return Err(lost.into());
    }
    tracing::info!(synapse_calls = crate::synapse::total_calls(), "controllers stopped");

    // Drained while still holding the lease; only now may a standby take over.
    let _ = release_tx.send(true);
    let _ = stop_tx.send(true);
    if let Some(holder) = holder
        && let Ok(Err(lost)) = holder.await
    {
        return Err(lost.into());
    }
    if let Some(http) = http
        && let Ok(Err(e)) = http.await
    {
        return Err(RunError::Http(e));
    }
    Ok(())
}

/// Space wake-ups: link changes a space reads (`space::wake`) and account changes, gathered per space.
fn space_triggers(
    links_for_spaces: impl Stream<Item = Arc<SpaceRoomLink>> + Send + 'static,
    users_for_spaces: impl Stream<Item = Arc<MatrixUser>> + Send + 'static,
    links: &Store<SpaceRoomLink>,
    spaces: &Store<MatrixSpace>,
    cfg: &RunConfig,
) -> impl Stream<Item = ObjectRef<MatrixSpace>> + Send + 'static {
    let (links, spaces_for_links, spaces_for_users) = (links.clone(), spaces.clone(), spaces.clone());
    let seen = controller::space::wake::LinkWatch::default();
    let from_links = links_for_spaces.flat_map(move |link| {
        // The cache, not the event: it says whether the link is still there (a deletion comes as the object).
        let now = links.get(&ObjectRef::from_obj(&*link)).and_then(|l| controller::space::wake::LinkFacts::of(&l));
        let (ns, name) = (link.namespace().unwrap_or_default(), link.name_any());
        futures::stream::iter(seen.changed(ns, name, now, &spaces_for_links.state()))
    });
    let accounts = controller::space::AccountCache::default();
    let from_users = users_for_spaces.flat_map(move |user| {
        let woken = match accounts.changed(&user) {
            true => controller::space::spaces_in(user.namespace(), &spaces_for_users.state()),
            false => Vec::new(),
        };
        futures::stream::iter(woken)
    });
    controller::throttle::throttle(futures::stream::select(from_links, from_users).boxed(), cfg.settings.space_debounce)
}

/// True once both caches hold a complete list.
fn both_listed(mut users: watch::Receiver<bool>, mut links: watch::Receiver<bool>) -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        if users.wait_for(|r| *r).await.is_ok() && links.wait_for(|r| *r).await.is_ok() {
            tx.send_replace(true);
            tx.closed().await;
        }
    });
    rx
}

/// Stops the shared watches when `run` returns, however it returns.
struct AbortOnDrop(Vec<tokio::task::JoinHandle<()>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}

async fn log_result<T, E: std::error::Error>(controller: &'static str, result: Result<T, E>) {
    crate::metrics::global().reconciled(controller, result.is_ok());
    if let Err(e) = result {
        tracing::debug!(error = %crate::error_chain::chain(&e), "reconcile error");
    }
}

/// Fires each time a (new) session becomes ready: a rotated Secret or a
/// recovered Synapse re-runs every object at once instead of at its backoff.
/// Yields when the session becomes usable, and when it fails for a new reason: objects reconciled while it was
/// still connecting then show why there is no session at once, not after their backoff. The same failure again
/// (the session retries it) wakes nobody.
fn session_settled(rx: tokio::sync::watch::Receiver<SessionState>) -> impl futures::Stream<Item = ()> + Send {
    // The first session after starting wakes nobody: every pass waits for it (`Context::session`), and a wake
    // would start a second pass of each object already running.
    futures::stream::unfold((rx, None::<String>, false), |(mut rx, mut last_failure, mut settled)| async move {
        loop {
            rx.changed().await.ok()?;
            let wake = match &*rx.borrow_and_update() {
                SessionState::Ready(_) => {
                    last_failure = None;
                    std::mem::replace(&mut settled, true)
                }
                SessionState::Failed(why, _) if last_failure.as_deref() != Some(why.as_str()) => {
                    last_failure = Some(why.clone());
                    settled = true;
                    true
                }
                SessionState::Failed(..) | SessionState::Starting => false,
            };
            if wake {
                return Some(((), (rx, last_failure, settled)));
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::retry::ErrorClass;
    use futures::StreamExt;

    /// The wakes counted so far after each of `states` is sent, in turn, to a session starting out.
    async fn wakes_after(states: Vec<SessionState>) -> Vec<usize> {
        let (tx, rx) = tokio::sync::watch::channel(SessionState::Starting);
        let woken = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = woken.clone();
        let task = tokio::spawn(session_settled(rx).for_each(move |()| {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            async {}
        }));
        let mut seen = Vec::new();
        for state in states {
            tx.send_replace(state);
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            seen.push(woken.load(std::sync::atomic::Ordering::SeqCst));
        }
        drop(tx);
        task.await.expect("the stream ends with the session");
        seen
    }

    fn fail(why: &str, class: ErrorClass) -> SessionState {
        SessionState::Failed(why.to_owned(), class)
    }

    #[tokio::test]
    async fn the_controllers_are_woken_by_a_usable_session_and_by_each_new_failure_only() {
        let states = vec![
            fail("masUrl missing", ErrorClass::NeedsPerson),
            fail("masUrl missing", ErrorClass::NeedsPerson), // the session retried the same failure
            SessionState::Starting,
            fail("masClientSecret refused", ErrorClass::NeedsPerson),
        ];
        assert_eq!(wakes_after(states).await, [1, 1, 1, 2]);
    }

    #[tokio::test]
    async fn the_first_session_wakes_nobody_and_one_after_a_failure_wakes_everyone() {
        let session = || {
            SessionState::Ready(std::sync::Arc::new(crate::session::Session {
                admin: crate::synapse::Synapse::new("http://127.0.0.1:1").expect("url"),
                user_id: crate::ids::user_id("@op:x").expect("id"),
                server_name: crate::ids::server_name("x").expect("name"),
                shared_secret: None,
                mode: crate::synapse::AuthMode::Classic,
                mas: None,
                renew_at: None,
            }))
        };
        let states = vec![session(), fail("Synapse down", ErrorClass::Transient), session()];
        assert_eq!(wakes_after(states).await, [0, 1, 2], "wakes after each state");
    }
}
