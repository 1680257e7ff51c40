//! What a failure asks of whoever retries it, and per-object exponential
//! backoff: kube-runtime requeues on whatever `error_policy` says, with no
//! memory of earlier failures, so the memory is kept here.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};

/// The class of a failure: it picks the condition (kstatus) and the backoff.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ErrorClass {
    /// Likely to pass by itself: a network error, a 5xx, a Secret GitOps has not
    /// created yet. Shown as `Reconciling`; retried after 1 s, then less often,
    /// at most about a minute apart (an outage must not leave objects waiting long).
    Transient,
    /// Progress needs a person: refused credentials, an alias held by a foreign
    /// room, a guard that held an answer back. Shown as `Stalled`; retried less
    /// and less often, up to every 5 to 10 minutes (a Secret the object names wakes
    /// it when fixed: see `controller::secret_refs`).
    NeedsPerson,
    /// The spec cannot work as written. Shown as `Stalled`; a spec change wakes
    /// the object, so retries are only a safety net.
    InvalidSpec,
}

impl ErrorClass {
    /// True when a person must act: kstatus `Stalled`, Flux and kpt report `Failed`.
    pub fn stalls(self) -> bool {
        !matches!(self, ErrorClass::Transient)
    }

    fn builder(self) -> ExponentialBuilder {
        let (min, max) = match self {
            ErrorClass::Transient => (1, 30),
            ErrorClass::NeedsPerson => (5, 300),
            ErrorClass::InvalidSpec => (30, 1800),
        };
        // Jitter adds up to one more delay, so objects failing together spread out.
        ExponentialBuilder::default()
            .with_min_delay(Duration::from_secs(min))
            .with_max_delay(Duration::from_secs(max))
            .with_factor(2.0)
            .with_jitter()
            .without_max_times()
    }
}

/// Consecutive failures per object, forgotten on the first success.
#[derive(Default)]
pub struct Backoffs(Mutex<BTreeMap<String, (ErrorClass, ExponentialBackoff)>>);

impl Backoffs {
    /// The delay before retrying `key` after one more failure of `class`. A
    /// failure of another class than the previous one starts a new sequence.
    pub fn failed(&self, key: &str, class: ErrorClass) -> Duration {
        let mut all = self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let entry = all.entry(key.to_owned()).or_insert_with(|| (class, class.builder().build()));
        if entry.0 != class {
            *entry = (class, class.builder().build());
        }
        entry.1.next().unwrap_or(Duration::from_secs(300))
    }

    pub fn succeeded(&self, key: &str) {
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).remove(key);
    }

    pub fn len(&self) -> usize {
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_with_jitter_and_reset_on_success() {
        let b = Backoffs::default();
        let delays: Vec<Duration> = (0..10).map(|_| b.failed("a", ErrorClass::Transient)).collect();
        // Each delay lies in [d, 2d) for d = 1, 2, 4, … capped at 30 s.
        for (i, d) in delays.iter().enumerate() {
            let base = Duration::from_secs((1u64 << i).min(30));
            assert!(*d >= base && *d < base * 2, "failure {i}: {d:?}");
        }
        assert_eq!(b.len(), 1);
        b.succeeded("a");
        assert!(b.is_empty());
        assert!(b.failed("a", ErrorClass::Transient) < Duration::from_secs(2), "a success starts over");
    }

    #[test]
    fn objects_and_classes_back_off_separately() {
        let b = Backoffs::default();
        for _ in 0..5 {
            b.failed("a", ErrorClass::Transient);
        }
        assert!(b.failed("b", ErrorClass::Transient) < Duration::from_secs(2), "another object starts at 1 s");
        let stalled = b.failed("a", ErrorClass::NeedsPerson);
        assert!(stalled >= Duration::from_secs(5) && stalled < Duration::from_secs(10), "{stalled:?}");
        let invalid = b.failed("c", ErrorClass::InvalidSpec);
        assert!(invalid >= Duration::from_secs(30), "{invalid:?}");
    }

    #[test]
    fn only_transient_failures_keep_reconciling() {
        assert!(!ErrorClass::Transient.stalls());
        assert!(ErrorClass::NeedsPerson.stalls());
        assert!(ErrorClass::InvalidSpec.stalls());
    }
}
