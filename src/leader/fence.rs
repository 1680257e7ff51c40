//! The writer's fence: with leader election on, every write this process sends
//! to Synapse or to the Kubernetes API is checked against the time up to which
//! its last lease renewal entitles it to act (renewal start + renew deadline,
//! shorter than the lease). A replica frozen (SIGSTOP, a stalled node) and then
//! resumed finds its fence passed and sends nothing, even from a reconcile that
//! was half-way through when it froze: the check is synchronous, so no task
//! can slip a request in before the lease keeper notices.
//!
//! The fence is process-wide on purpose: it must hold for every Synapse and
//! Kubernetes client the controllers use, wherever they were built.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Instant;

use futures::future::BoxFuture;
use kube::client::Body;

/// No leader election: every write goes through.
const OPEN: u64 = u64::MAX;

/// Milliseconds since `epoch()` up to which writes are allowed; `OPEN` when unfenced.
static UNTIL_MS: AtomicU64 = AtomicU64::new(OPEN);

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

fn millis(at: Instant) -> u64 {
    at.saturating_duration_since(epoch()).as_millis() as u64
}

#[derive(Debug, Clone, thiserror::Error)]
#[error("this replica does not hold the leader lease (or could not renew it in time); the write was not sent")]
pub struct NotLeader;

/// Refuses every write from now on (a standby, or a leader that lost its lease).
pub fn close() {
    epoch();
    UNTIL_MS.store(0, Ordering::SeqCst);
}

/// Allows writes until `deadline` (a renewal's start plus the renew deadline).
pub fn allow_until(deadline: Instant) {
    UNTIL_MS.store(millis(deadline), Ordering::SeqCst);
}

/// Whether a write may be sent now.
pub fn check() -> Result<(), NotLeader> {
    let until = UNTIL_MS.load(Ordering::SeqCst);
    if until == OPEN || millis(Instant::now()) < until { Ok(()) } else { Err(NotLeader) }
}

/// A Kubernetes client whose writes (anything but GET/HEAD/OPTIONS) pass the fence;
/// reads and watches are unaffected.
pub fn kube_client(inner: kube::Client) -> kube::Client {
    let namespace = inner.default_namespace().to_owned();
    kube::Client::new(Fenced(inner), namespace)
}

#[derive(Clone)]
struct Fenced(kube::Client);

impl tower_service::Service<http::Request<Body>> for Fenced {
    type Response = http::Response<Body>;
    type Error = kube::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        let client = self.0.clone();
        Box::pin(async move {
            let read = matches!(*req.method(), http::Method::GET | http::Method::HEAD | http::Method::OPTIONS);
            if !read && let Err(e) = check() {
                tracing::debug!(method = %req.method(), path = %req.uri().path(), "kubernetes write refused: not the leader");
                return Err(kube::Error::Service(Box::new(e)));
            }
            client.send(req).await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    // One test owns the process-wide fence; others in this binary never enable it.
    #[test]
    fn writes_pass_only_before_the_deadline() {
        assert!(check().is_ok(), "unfenced without leader election");
        close();
        assert!(check().is_err(), "a standby writes nothing");
        allow_until(Instant::now() + Duration::from_secs(60));
        assert!(check().is_ok(), "the leader writes within its deadline");
        allow_until(Instant::now() - Duration::from_millis(1));
        assert!(check().is_err(), "a frozen leader resumed past its deadline writes nothing");
        UNTIL_MS.store(OPEN, Ordering::SeqCst);
    }
}
