//! A failure that lasts says since when. Kubernetes keeps `Ready=False` with the
//! time it turned False; the message names it too once it is old, so a long
//! outage (a room whose state Synapse has not served for minutes) reads
//! differently from a blip, in `kubectl get` and in alerts on the message.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;

use super::conditions::Progress;

/// From how long a failure is named as lasting, by default (`--lasting-failure`).
pub const LASTING: jiff::SignedDuration = jiff::SignedDuration::from_secs(60);

/// `progress` for a failed pass, given the conditions before it: a retried
/// failure of an object not Ready for `after` or more says since when.
pub fn lasting(
    conditions: &[Condition],
    progress: Progress,
    now: jiff::Timestamp,
    after: jiff::SignedDuration,
) -> Progress {
    let Progress::Reconciling { reason, message } = progress else { return progress };
    let since = conditions.iter().find(|c| c.type_ == "Ready" && c.status == "False").map(|c| c.last_transition_time.0);
    match since.filter(|s| now.duration_since(*s) >= after) {
        Some(since) => {
            let minutes = now.duration_since(since).as_secs() / 60;
            let since = since.round(jiff::Unit::Second).unwrap_or(since);
            Progress::reconciling(reason, format!("not Ready since {since} ({minutes} min), retrying: {message}"))
        }
        None => Progress::Reconciling { reason, message },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn ready(status: &str, since: jiff::Timestamp) -> Vec<Condition> {
        vec![Condition {
            type_: "Ready".into(),
            status: status.into(),
            reason: "SynapseUnavailable".into(),
            message: "x".into(),
            observed_generation: None,
            last_transition_time: Time(since),
        }]
    }

    #[test]
    fn a_failure_older_than_a_minute_names_since_when() {
        let now: jiff::Timestamp = "2026-11-26T12:00:00Z".parse().expect("time");
        let since: jiff::Timestamp = "2026-11-26T11:53:00Z".parse().expect("time");
        let p = lasting(
            &ready("False", since),
            Progress::reconciling("SynapseUnavailable", "cannot reach Synapse"),
            now,
            LASTING,
        );
        assert_eq!(p.message(), "not Ready since 2026-11-26T11:53:00Z (7 min), retrying: cannot reach Synapse");
        assert_eq!(p.reason(), "SynapseUnavailable");
    }

    #[test]
    fn a_blip_or_a_first_failure_is_told_as_it_is() {
        let now: jiff::Timestamp = "2026-11-26T12:00:00Z".parse().expect("time");
        let recent: jiff::Timestamp = "2026-11-26T11:59:30Z".parse().expect("time");
        let p = Progress::reconciling("SynapseUnavailable", "down");
        assert_eq!(lasting(&ready("False", recent), p.clone(), now, LASTING), p, "30 s is a blip");
        assert_eq!(lasting(&ready("True", recent - jiff::SignedDuration::from_hours(1)), p.clone(), now, LASTING), p);
        assert_eq!(lasting(&[], p.clone(), now, LASTING), p);
        let shorter = jiff::SignedDuration::from_secs(20);
        assert!(lasting(&ready("False", recent), p.clone(), now, shorter).message().contains("not Ready since"));
        let stalled = Progress::stalled("Conflict", "taken");
        assert_eq!(
            lasting(&ready("False", recent - LASTING), stalled.clone(), now, LASTING),
            stalled,
            "no retrying to speak of"
        );
    }
}
