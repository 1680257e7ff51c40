//! Leader election through a `coordination.k8s.io` Lease: one replica
//! reconciles, the others wait and take over when its lease runs out.

use std::time::Duration;

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
}

impl LeaseConfig {
    fn renew_every(&self) -> Duration {
        self.duration / 3
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LeaderError {
    #[error("lost the lease {0}: another replica holds it now")]
    Lost(String),
    #[error("cannot renew the lease {0} within its duration")]
    RenewFailed(String, #[source] kube::Error),
}

enum Attempt {
    Acquired,
    HeldByOther(String),
}

/// What to do with `lease` as `me` at `now`: `None` keeps it as it is.
fn claim(lease: &Lease, cfg: &LeaseConfig, now: jiff::Timestamp) -> Option<Lease> {
    let spec = lease.spec.clone().unwrap_or_default();
    let holder = spec.holder_identity.clone().unwrap_or_default();
    let renewed = spec.renew_time.as_ref().map(|t| t.0).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
    let duration = spec.lease_duration_seconds.map_or(cfg.duration, |s| Duration::from_secs(s.max(1) as u64));
    let expired = now.duration_since(renewed).unsigned_abs() > duration || now < renewed && holder.is_empty();
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

async fn try_once(api: &Api<Lease>, cfg: &LeaseConfig) -> Result<Attempt, kube::Error> {
    let now = jiff::Timestamp::now();
    let Some(lease) = api.get_opt(&cfg.name).await? else {
        let fresh =
            Lease { metadata: ObjectMeta { name: Some(cfg.name.clone()), ..ObjectMeta::default() }, spec: None };
        let new = claim(&fresh, cfg, now).unwrap_or(fresh);
        return match api.create(&PostParams::default(), &new).await {
            Ok(_) => Ok(Attempt::Acquired),
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(Attempt::HeldByOther("another replica".into())),
            Err(e) => Err(e),
        };
    };
    let holder = lease.spec.as_ref().and_then(|s| s.holder_identity.clone()).unwrap_or_default();
    match claim(&lease, cfg, now) {
        None => Ok(Attempt::HeldByOther(holder)),
        // resourceVersion makes the replace fail if someone else wrote in between.
        Some(next) => match api.replace(&cfg.name, &PostParams::default(), &next).await {
            Ok(_) => Ok(Attempt::Acquired),
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(Attempt::HeldByOther(holder)),
            Err(e) => Err(e),
        },
    }
}

/// Waits until this replica holds the lease.
pub async fn acquire(client: &Client, cfg: &LeaseConfig) {
    let api: Api<Lease> = Api::namespaced(client.clone(), &cfg.namespace);
    let mut announced = false;
    loop {
        match try_once(&api, cfg).await {
            Ok(Attempt::Acquired) => {
                tracing::info!(lease = %cfg.name, identity = %cfg.identity, "became the leader");
                return;
            }
            Ok(Attempt::HeldByOther(holder)) if !announced => {
                tracing::info!(lease = %cfg.name, %holder, "standing by: another replica leads");
                announced = true;
            }
            Ok(Attempt::HeldByOther(_)) => {}
            Err(e) => tracing::warn!(lease = %cfg.name, error = %e, "leader election"),
        }
        tokio::time::sleep(cfg.renew_every()).await;
    }
}

/// Renews the lease until it is lost (returns the reason) or `stop` turns true,
/// in which case the lease is released so a standby takes over at once.
pub async fn hold(client: &Client, cfg: &LeaseConfig, mut stop: watch::Receiver<bool>) -> Result<(), LeaderError> {
    let api: Api<Lease> = Api::namespaced(client.clone(), &cfg.namespace);
    let mut last_renewal = tokio::time::Instant::now();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(cfg.renew_every()) => {}
            // The guard `wait_for` returns must not live across the release below.
            _ = async { stop.wait_for(|s| *s).await.is_ok() } => {
                release(&api, cfg).await;
                return Ok(());
            }
        }
        match try_once(&api, cfg).await {
            Ok(Attempt::Acquired) => last_renewal = tokio::time::Instant::now(),
            Ok(Attempt::HeldByOther(_)) => return Err(LeaderError::Lost(cfg.name.clone())),
            Err(e) if last_renewal.elapsed() > cfg.duration => {
                return Err(LeaderError::RenewFailed(cfg.name.clone(), e));
            }
            Err(e) => tracing::warn!(lease = %cfg.name, error = %e, "renewing the lease"),
        }
    }
}

async fn release(api: &Api<Lease>, cfg: &LeaseConfig) {
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
        assert!(claim(&held_by("a", now), &cfg("b"), now).is_none());
    }

    #[test]
    fn an_expired_lease_is_taken_over_and_counted() {
        let now = jiff::Timestamp::now();
        let old = now - jiff::SignedDuration::from_secs(16);
        let next = claim(&held_by("a", old), &cfg("b"), now).expect("taken over");
        let spec = next.spec.expect("spec");
        assert_eq!(spec.holder_identity.as_deref(), Some("b"));
        assert_eq!(spec.lease_transitions, Some(4));
    }

    #[test]
    fn the_holder_renews_without_a_transition() {
        let now = jiff::Timestamp::now();
        let next = claim(&held_by("a", now - jiff::SignedDuration::from_secs(5)), &cfg("a"), now).expect("renewed");
        assert_eq!(next.spec.expect("spec").lease_transitions, Some(3));
    }

    #[test]
    fn a_released_lease_is_free() {
        let now = jiff::Timestamp::now();
        let mut lease = held_by("a", now);
        lease.spec.as_mut().expect("spec").holder_identity = None;
        assert!(claim(&lease, &cfg("b"), now).is_some());
    }
}
