//! Leader election through a `coordination.k8s.io` Lease: one replica
//! reconciles, the others wait and take over when its lease runs out.
//!
//! One writer: the leader stops writing (see `fence`) at the renew deadline,
//! counted from the start of its last successful renewal, which is shorter than
//! the lease; a standby takes the lease only once it has seen the record
//! unchanged for a whole lease duration on its own clock (as client-go does), so
//! clocks that disagree between nodes do not matter, only their rates.

pub mod fence;

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};
use tokio::sync::watch;

#[derive(Debug, Clone)]
pub struct LeaseConfig {
    pub namespace: String,
    pub name: String,
    pub identity: String,
    /// How long a lease holds without renewal; a standby takes over after it.
    pub duration: Duration,
    /// The leader stops writing when it has not renewed for this long; shorter than `duration`.
    pub renew_deadline: Duration,
}

impl LeaseConfig {
    /// Between renewal attempts (and between a standby's looks at the lease).
    fn retry_period(&self) -> Duration {
        (self.renew_deadline / 5).max(Duration::from_millis(100))
    }

    /// Why this configuration cannot keep one writer, if it cannot.
    pub fn validate(&self) -> Result<(), String> {
        if self.renew_deadline >= self.duration {
            return Err(format!(
                "the renew deadline ({:?}) must be shorter than the lease duration ({:?}): the leader must stop \
                 writing before a standby may take over",
                self.renew_deadline, self.duration
            ));
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LeaderError {
    #[error("lost the lease {0}: another replica holds it now")]
    Lost(String),
    #[error("could not renew the lease {0} within the renew deadline ({1:?})")]
    RenewDeadline(String, Duration),
}

enum Attempt {
    Acquired,
    HeldByOther(String),
}

/// When the lease record last changed, on this replica's clock.
#[derive(Default)]
struct Observed {
    version: Option<String>,
    since: Option<Instant>,
}

impl Observed {
    /// Notes the record's version; true once it has not changed for `duration`.
    fn stale_for(&mut self, version: Option<String>, duration: Duration, now: Instant) -> bool {
        if self.since.is_none() || self.version != version {
            self.version = version;
            self.since = Some(now);
        }
        self.since.is_some_and(|since| now.saturating_duration_since(since) > duration)
    }
}

/// What to do with `lease` as `me` at `now`: `None` keeps it as it is. `expired`
/// says whether the holder let it run out (judged by the caller on its own clock).
fn claim(lease: &Lease, cfg: &LeaseConfig, now: jiff::Timestamp, expired: bool) -> Option<Lease> {
    let spec = lease.spec.clone().unwrap_or_default();
    let holder = spec.holder_identity.clone().unwrap_or_default();
    let free = holder.is_empty() || expired;
    if holder != cfg.identity && !free {
        return None;
    }
    let mut next = lease.clone();
    let transitions = spec.lease_transitions.unwrap_or(0);
    next.spec = Some(LeaseSpec {
        holder_identity: Some(cfg.identity.clone()),
        lease_duration_seconds: Some(cfg.duration.as_secs().max(1) as i32),
        acquire_time: if holder == cfg.identity { spec.acquire_time.clone() } else { Some(MicroTime(now)) },
        renew_time: Some(MicroTime(now)),
        lease_transitions: Some(if holder == cfg.identity { transitions } else { transitions + 1 }),
        ..spec
    });
    Some(next)
}

async fn try_once(api: &Api<Lease>, cfg: &LeaseConfig, observed: &mut Observed) -> Result<Attempt, kube::Error> {
    let now = jiff::Timestamp::now();
    let Some(lease) = api.get_opt(&cfg.name).await? else {
        let fresh =
            Lease { metadata: ObjectMeta { name: Some(cfg.name.clone()), ..ObjectMeta::default() }, spec: None };
        let new = claim(&fresh, cfg, now, true).unwrap_or(fresh);
        return match api.create(&PostParams::default(), &new).await {
            Ok(_) => Ok(Attempt::Acquired),
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(Attempt::HeldByOther("another replica".into())),
            Err(e) => Err(e),
        };
    };
    let spec = lease.spec.clone().unwrap_or_default();
    let holder = spec.holder_identity.clone().unwrap_or_default();
    // The holder's own duration, not ours: replicas of different versions may disagree.
    let duration = spec.lease_duration_seconds.map_or(cfg.duration, |s| Duration::from_secs(s.max(1) as u64));
    let expired = observed.stale_for(lease.metadata.resource_version.clone(), duration, Instant::now());
    match claim(&lease, cfg, now, expired) {
        None => Ok(Attempt::HeldByOther(holder)),
        // resourceVersion makes the replace fail if someone else wrote in between.
        Some(next) => match api.replace(&cfg.name, &PostParams::default(), &next).await {
            Ok(_) => Ok(Attempt::Acquired),
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(Attempt::HeldByOther(holder)),
            Err(e) => Err(e),
        },
    }
}

/// Waits until this replica holds the lease; returns when the winning attempt
/// started, from which the renew deadline counts. Writes stay fenced until then.
pub async fn acquire(client: &Client, cfg: &LeaseConfig) -> Instant {
    fence::close();
    let api: Api<Lease> = Api::namespaced(client.clone(), &cfg.namespace);
    let mut announced = false;
    let mut observed = Observed::default();
    loop {
        let started = Instant::now();
        match try_once(&api, cfg, &mut observed).await {
            Ok(Attempt::Acquired) => {
                fence::allow_until(started + cfg.renew_deadline);
                tracing::info!(lease = %cfg.name, identity = %cfg.identity, "became the leader");
                return started;
            }
            Ok(Attempt::HeldByOther(holder)) if !announced => {
                tracing::info!(lease = %cfg.name, %holder, "standing by: another replica leads");
                announced = true;
            }
            Ok(Attempt::HeldByOther(_)) => {}
            Err(e) => tracing::warn!(lease = %cfg.name, error = %crate::error_chain::chain(&e), "leader election"),
        }
        tokio::time::sleep(cfg.retry_period()).await;
    }
}

/// Renews the lease every retry period. Returns an error, with writes fenced,
/// when another replica holds it or no renewal succeeded within the renew
/// deadline; returns `Ok` after releasing it once `release` turns true.
pub async fn hold(
    client: &Client,
    cfg: &LeaseConfig,
    renewed: Instant,
    mut release: watch::Receiver<bool>,
) -> Result<(), LeaderError> {
    let api: Api<Lease> = Api::namespaced(client.clone(), &cfg.namespace);
    let mut observed = Observed::default();
    let mut deadline = renewed + cfg.renew_deadline;
    let result = loop {
        tokio::select! {
            _ = tokio::time::sleep(cfg.retry_period()) => {}
            // The guard `wait_for` returns must not live across the release below.
            _ = async { release.wait_for(|r| *r).await.is_ok() } => {
                release_lease(&api, cfg).await;
                return Ok(());
            }
        }
        let started = Instant::now();
        if started >= deadline {
            break Err(LeaderError::RenewDeadline(cfg.name.clone(), cfg.renew_deadline));
        }
        // A hung API server must not carry the attempt past the deadline.
        match tokio::time::timeout_at(deadline.into(), try_once(&api, cfg, &mut observed)).await {
            Ok(Ok(Attempt::Acquired)) => {
                deadline = started + cfg.renew_deadline;
                fence::allow_until(deadline);
            }
            Ok(Ok(Attempt::HeldByOther(_))) => break Err(LeaderError::Lost(cfg.name.clone())),
            Ok(Err(e)) => {
                tracing::warn!(lease = %cfg.name, error = %crate::error_chain::chain(&e), "renewing the lease")
            }
            Err(_) => break Err(LeaderError::RenewDeadline(cfg.name.clone(), cfg.renew_deadline)),
        }
    };
    fence::close();
    result
}

async fn release_lease(api: &Api<Lease>, cfg: &LeaseConfig) {
    fence::close();
    if let Ok(Some(mut lease)) = api.get_opt(&cfg.name).await
        && let Some(spec) = lease.spec.as_mut().filter(|s| s.holder_identity.as_deref() == Some(cfg.identity.as_str()))
    {
        spec.holder_identity = None;
        if api.replace(&cfg.name, &PostParams::default(), &lease).await.is_ok() {
            tracing::info!(lease = %cfg.name, "released the lease");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(identity: &str) -> LeaseConfig {
        LeaseConfig {
            namespace: "ns".into(),
            name: "l".into(),
            identity: identity.into(),
            duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
        }
    }

    fn held_by(holder: &str, renewed: jiff::Timestamp) -> Lease {
        Lease {
            metadata: ObjectMeta::default(),
            spec: Some(LeaseSpec {
                holder_identity: Some(holder.into()),
                renew_time: Some(MicroTime(renewed)),
                lease_duration_seconds: Some(15),
                lease_transitions: Some(3),
                ..LeaseSpec::default()
            }),
        }
    }

    #[test]
    fn a_live_lease_of_another_replica_is_left_alone() {
        let now = jiff::Timestamp::now();
        assert!(claim(&held_by("a", now), &cfg("b"), now, false).is_none());
    }

    #[test]
    fn an_expired_lease_is_taken_over_and_counted() {
        let now = jiff::Timestamp::now();
        let next = claim(&held_by("a", now), &cfg("b"), now, true).expect("taken over");
        let spec = next.spec.expect("spec");
        assert_eq!(spec.holder_identity.as_deref(), Some("b"));
        assert_eq!(spec.lease_transitions, Some(4));
    }

    #[test]
    fn the_holder_renews_without_a_transition() {
        let now = jiff::Timestamp::now();
        let next =
            claim(&held_by("a", now - jiff::SignedDuration::from_secs(5)), &cfg("a"), now, false).expect("renewed");
        assert_eq!(next.spec.expect("spec").lease_transitions, Some(3));
    }

    #[test]
    fn a_released_lease_is_free() {
        let now = jiff::Timestamp::now();
        let mut lease = held_by("a", now);
        lease.spec.as_mut().expect("spec").holder_identity = None;
        assert!(claim(&lease, &cfg("b"), now, false).is_some());
    }

    #[test]
    fn expiry_is_judged_on_the_standbys_clock_not_the_renew_time() {
        // The holder's clock may run ahead or behind: only an unchanged record counts.
        let (mut seen, start, d) = (Observed::default(), Instant::now(), Duration::from_secs(15));
        assert!(!seen.stale_for(Some("1".into()), d, start), "first sight starts the count");
        assert!(!seen.stale_for(Some("1".into()), d, start + Duration::from_secs(14)));
        assert!(!seen.stale_for(Some("2".into()), d, start + Duration::from_secs(16)), "renewed: counts again");
        assert!(!seen.stale_for(Some("2".into()), d, start + Duration::from_secs(30)));
        assert!(seen.stale_for(Some("2".into()), d, start + Duration::from_secs(32)));
    }

    #[test]
    fn the_renew_deadline_must_be_shorter_than_the_lease() {
        assert!(cfg("a").validate().is_ok());
        let equal = LeaseConfig { renew_deadline: Duration::from_secs(15), ..cfg("a") };
        assert!(equal.validate().unwrap_err().contains("shorter"));
    }
}
