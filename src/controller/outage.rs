//! Synapse coming back after an outage wakes every object at once. Without it,
//! each failed object waits out its own backoff (up to 30 s) and then the
//! objects come back one by one: a minute for 340 objects after a 100 s outage
//! in the fault campaign (bench/README.md).

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::Stream;
use tokio::sync::watch;

use crate::session::SessionState;
use crate::synapse;

pub struct Outage {
    /// A reconcile found Synapse unreachable since the last probe that reached it.
    suspected: AtomicBool,
    /// Bumped each time Synapse answers again after a probe that could not reach it.
    back: watch::Sender<u64>,
}

impl Default for Outage {
    fn default() -> Self {
        Outage { suspected: AtomicBool::new(false), back: watch::channel(0).0 }
    }
}

/// Synapse could not be reached, or its proxy said it is not there (502/503/504).
pub fn unreachable(err: &synapse::Error) -> bool {
    matches!(err, synapse::Error::Network { .. } | synapse::Error::Api { status: 502..=504, .. })
}

/// After a probe: (whether Synapse is known to be down, whether to wake every object).
/// Only an answer after a failed probe wakes them: a single failed call is not an outage.
fn after_probe(down: bool, answered: bool) -> (bool, bool) {
    if answered { (false, down) } else { (true, false) }
}

impl Outage {
    /// Notes a failed Synapse call of a reconcile.
    pub fn note(&self, err: &synapse::Error) {
        if unreachable(err) {
            self.suspected.store(true, Ordering::Relaxed);
        }
    }

    /// Yields once each time Synapse is back (for `Controller::reconcile_all_on`).
    pub fn back(&self) -> impl Stream<Item = ()> + Send + 'static {
        futures::stream::unfold(self.back.subscribe(), |mut rx| async move {
            rx.changed().await.ok()?;
            Some(((), rx))
        })
    }

    /// While an outage is suspected, asks Synapse who the operator is every `every`; says when it is back.
    pub async fn probe(&self, session: watch::Receiver<SessionState>, every: Duration) {
        let mut down = false;
        loop {
            tokio::time::sleep(every).await;
            if !down && !self.suspected.load(Ordering::Relaxed) {
                continue;
            }
            let s = match &*session.borrow() {
                SessionState::Ready(s) => s.clone(),
                _ => continue,
            };
            let answered = !s.admin.whoami().await.as_ref().is_err_and(unreachable);
            self.suspected.store(false, Ordering::Relaxed);
            let wake;
            (down, wake) = after_probe(down, answered);
            if wake {
                tracing::info!("Synapse answers again after an outage: every object is reconciled now");
                self.back.send_modify(|n| *n += 1);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_answer_after_a_failed_probe_wakes_every_object() {
        assert_eq!(after_probe(false, true), (false, false), "a passing error: nothing to wake");
        assert_eq!(after_probe(false, false), (true, false), "down: wait");
        assert_eq!(after_probe(true, false), (true, false), "still down");
        assert_eq!(after_probe(true, true), (false, true), "back: wake everything, once");
    }

    #[test]
    fn refused_connections_and_gateway_errors_are_an_outage_a_refusal_is_not() {
        let api = |status| synapse::Error::Api {
            method: "GET",
            path: "/x".into(),
            status,
            errcode: String::new(),
            message: String::new(),
            retry_after: None,
        };
        assert!(unreachable(&api(502)) && unreachable(&api(503)) && unreachable(&api(504)));
        assert!(!unreachable(&api(500)) && !unreachable(&api(403)) && !unreachable(&api(429)));
    }
}
