//! Kubernetes-style conditions, kept stable across reconciles, and the kstatus
//! "abnormal-true" pair that Flux, kpt and Argo CD read: `Reconciling=True`
//! while work is under way, `Stalled=True` when a person must act.

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

/// Where an object stands, as kstatus reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    /// Converged, or doing what it was told (a suspended link): `Ready=True`.
    Ready { reason: &'static str, message: String },
    /// Work under way, or waiting for something that may still appear (a Secret
    /// GitOps has not created yet): `Ready=False`, `Reconciling=True`.
    Reconciling { reason: &'static str, message: String },
    /// Cannot go on until a person acts: `Ready=False`, `Stalled=True`.
    Stalled { reason: &'static str, message: String },
}

impl Progress {
    pub fn ready(reason: &'static str, message: impl Into<String>) -> Self {
        Progress::Ready { reason, message: message.into() }
    }

    pub fn reconciling(reason: &'static str, message: impl Into<String>) -> Self {
        Progress::Reconciling { reason, message: message.into() }
    }

    pub fn stalled(reason: &'static str, message: impl Into<String>) -> Self {
        Progress::Stalled { reason, message: message.into() }
    }

    pub fn reason(&self) -> &'static str {
        match self {
            Progress::Ready { reason, .. }
            | Progress::Reconciling { reason, .. }
            | Progress::Stalled { reason, .. } => reason,
        }
    }

    pub fn message(&self) -> &str {
        match self {
            Progress::Ready { message, .. }
            | Progress::Reconciling { message, .. }
            | Progress::Stalled { message, .. } => message,
        }
    }
}

/// Shows `progress` as the `Ready`, `Reconciling` and `Stalled` conditions; at
/// most one of the last two is present, and only while it is true (kstatus
/// reads their presence with status True, Flux writes them the same way).
pub fn show(conditions: &mut Vec<Condition>, progress: &Progress, generation: Option<i64>) {
    let (ready, active, reason, message) = match progress {
        Progress::Ready { reason, message } => (true, None, reason, message),
        Progress::Reconciling { reason, message } => (false, Some(RECONCILING), reason, message),
        Progress::Stalled { reason, message } => (false, Some(STALLED), reason, message),
    };
    set(conditions, READY, ready, reason, message, generation);
    for type_ in [RECONCILING, STALLED] {
        if Some(type_) == active {
            set(conditions, type_, true, reason, message, generation);
        } else {
            remove(conditions, type_);
        }
    }
}

/// True when the object shows `type_` with status True.
pub fn is_true(conditions: &[Condition], type_: &str) -> bool {
    conditions.iter().any(|c| c.type_ == type_ && c.status == "True")
}

pub const READY: &str = "Ready";
pub const RECONCILING: &str = "Reconciling";
pub const STALLED: &str = "Stalled";

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

    fn shown(c: &[Condition]) -> Vec<(String, String, String)> {
        c.iter().map(|c| (c.type_.clone(), c.status.clone(), c.reason.clone())).collect()
    }

    fn row(t: &str, s: &str, r: &str) -> (String, String, String) {
        (t.into(), s.into(), r.into())
    }

    #[test]
    fn progress_maps_to_the_abnormal_true_pair() {
        let mut c = Vec::new();
        show(&mut c, &Progress::reconciling("SecretNotFound", "waiting"), Some(3));
        assert_eq!(shown(&c), [row("Ready", "False", "SecretNotFound"), row("Reconciling", "True", "SecretNotFound")]);
        assert!(c.iter().all(|c| c.observed_generation == Some(3)));

        show(&mut c, &Progress::stalled("Conflict", "taken"), Some(4));
        assert_eq!(shown(&c), [row("Ready", "False", "Conflict"), row("Stalled", "True", "Conflict")]);
        assert!(c.iter().all(|c| c.observed_generation == Some(4)));

        show(&mut c, &Progress::ready("Synced", "ok"), Some(4));
        assert_eq!(shown(&c), [row("Ready", "True", "Synced")]);
    }

    #[test]
    fn other_conditions_are_left_alone() {
        let mut c = Vec::new();
        set(&mut c, "Conflict", true, "AlreadyLinked", "x", Some(1));
        show(&mut c, &Progress::stalled("Conflict", "x"), Some(1));
        show(&mut c, &Progress::ready("Suspended", "nothing to do"), Some(1));
        assert_eq!(shown(&c), [row("Conflict", "True", "AlreadyLinked"), row("Ready", "True", "Suspended")]);
        assert!(is_true(&c, "Conflict") && is_true(&c, "Ready") && !is_true(&c, "Stalled"));
    }
}
