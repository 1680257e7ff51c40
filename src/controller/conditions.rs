//! Kubernetes-style conditions, kept stable across reconciles.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

/// Sets one condition, keeping `lastTransitionTime` when the status does not change.
pub fn set(
    conditions: &mut Vec<Condition>,
    type_: &str,
    ok: bool,
    reason: &str,
    message: &str,
    generation: Option<i64>,
) {
    let status = if ok { "True" } else { "False" };
    let now = Time(jiff::Timestamp::now());
    let message: String = message.chars().take(1024).collect();
    match conditions.iter_mut().find(|c| c.type_ == type_) {
        Some(c) => {
            if c.status != status {
                c.last_transition_time = now;
            }
            c.status = status.into();
            c.reason = reason.into();
            c.message = message;
            c.observed_generation = generation;
        }
        None => conditions.push(Condition {
            type_: type_.into(),
            status: status.into(),
            reason: reason.into(),
            message,
            observed_generation: generation,
            last_transition_time: now,
        }),
    }
    conditions.sort_by(|a, b| a.type_.cmp(&b.type_));
}

pub fn remove(conditions: &mut Vec<Condition>, type_: &str) {
    conditions.retain(|c| c.type_ != type_);
}

pub fn now_rfc3339() -> String {
    jiff::Timestamp::now().round(jiff::Unit::Second).unwrap_or_else(|_| jiff::Timestamp::now()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transition_time_moves_only_when_status_flips() {
        let mut c = Vec::new();
        set(&mut c, "Ready", false, "SynapseUnavailable", "down", Some(1));
        let first = c[0].last_transition_time.clone();
        set(&mut c, "Ready", false, "SynapseUnavailable", "still down", Some(1));
        assert_eq!(c[0].last_transition_time, first);
        assert_eq!(c[0].message, "still down");
        std::thread::sleep(std::time::Duration::from_millis(2));
        set(&mut c, "Ready", true, "Synced", "ok", Some(2));
        assert_ne!(c[0].last_transition_time, first);
        assert_eq!(c.len(), 1);
    }
}
