//! Prometheus metrics: reconciles and errors per controller, Synapse calls and
//! latency per endpoint, objects Ready / not Ready.

use std::sync::OnceLock;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ControllerLabel {
    pub controller: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EndpointLabel {
    pub method: String,
    pub endpoint: String,
    pub status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReadyLabel {
    pub kind: String,
    pub ready: String,
}

pub struct Metrics {
    registry: Registry,
    reconciles: Family<ControllerLabel, Counter>,
    reconcile_errors: Family<ControllerLabel, Counter>,
    synapse_calls: Family<EndpointLabel, Counter>,
    synapse_seconds: Family<EndpointLabel, Histogram>,
    objects: Family<ReadyLabel, Gauge>,
    in_flight: Family<ControllerLabel, Gauge>,
}

/// Counts one running reconcile until dropped.
pub struct InFlight(Gauge);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// The process's metrics (the Synapse client records into them from anywhere).
pub fn global() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::new)
}

impl Metrics {
    fn new() -> Self {
        let mut registry = Registry::with_prefix("exomatrix");
        let reconciles = Family::<ControllerLabel, Counter>::default();
        let reconcile_errors = Family::<ControllerLabel, Counter>::default();
        let synapse_calls = Family::<EndpointLabel, Counter>::default();
        let synapse_seconds = Family::<EndpointLabel, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.005, 2.0, 12))
        });
        let objects = Family::<ReadyLabel, Gauge>::default();
        let in_flight = Family::<ControllerLabel, Gauge>::default();
        registry.register("reconciles", "Reconciles run, per controller", reconciles.clone());
        registry.register("reconcile_errors", "Reconciles that failed, per controller", reconcile_errors.clone());
        registry.register("synapse_calls", "Requests sent to Synapse, per endpoint and status", synapse_calls.clone());
        registry.register("synapse_request_seconds", "Synapse request latency", synapse_seconds.clone());
        registry.register("objects", "Objects watched, by kind and Ready condition", objects.clone());
        // kube-runtime does not expose its scheduler queue; the work under way is the nearest measure.
        registry.register("reconciles_in_flight", "Reconciles running now, per controller", in_flight.clone());
        Self { registry, reconciles, reconcile_errors, synapse_calls, synapse_seconds, objects, in_flight }
    }

    pub fn reconciled(&self, controller: &str, ok: bool) {
        let label = ControllerLabel { controller: controller.to_owned() };
        self.reconciles.get_or_create(&label).inc();
        if !ok {
            self.reconcile_errors.get_or_create(&label).inc();
        }
    }

    /// Marks a reconcile as running until the returned guard is dropped.
    pub fn reconcile_started(&self, controller: &str) -> InFlight {
        let gauge = self.in_flight.get_or_create(&ControllerLabel { controller: controller.to_owned() }).clone();
        gauge.inc();
        InFlight(gauge)
    }

    pub fn synapse_call(&self, method: &str, path: &str, status: u16, elapsed: Duration) {
        let label = EndpointLabel { method: method.to_owned(), endpoint: endpoint(path), status: status.to_string() };
        self.synapse_calls.get_or_create(&label).inc();
        self.synapse_seconds.get_or_create(&label).observe(elapsed.as_secs_f64());
    }

    pub fn set_objects(&self, kind: &str, ready: i64, not_ready: i64) {
        for (state, n) in [("true", ready), ("false", not_ready)] {
            self.objects.get_or_create(&ReadyLabel { kind: kind.to_owned(), ready: state.to_owned() }).set(n);
        }
    }

    /// The text exposition format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

/// The path with ids replaced, so endpoints stay few: `/rooms/%21abc/state` → `/rooms/{id}/state`.
/// The path as a label: ids, account-data types and state keys (which name spaces) hidden, so the
/// number of series does not grow with the number of rooms.
pub fn endpoint(path: &str) -> String {
    let segs: Vec<&str> = path.split('?').next().unwrap_or(path).split('/').collect();
    segs.iter()
        .enumerate()
        .map(|(i, seg)| match (i.checked_sub(1).map(|j| segs[j]), i.checked_sub(2).map(|j| segs[j])) {
            _ if seg.starts_with('%') || seg.starts_with('!') || seg.starts_with('@') => "{id}",
            (Some("account_data"), _) => "{type}",
            (_, Some("state")) if !seg.is_empty() => "{key}",
            _ => seg,
        })
        .collect::<Vec<_>>()
        .join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_hide_ids() {
        assert_eq!(endpoint("/_synapse/admin/v2/users/%40ann%3Aexo.test"), "/_synapse/admin/v2/users/{id}");
        assert_eq!(
            endpoint("/_matrix/client/v3/rooms/%21r/state/m.room.name/"),
            "/_matrix/client/v3/rooms/{id}/state/m.room.name/"
        );
        assert_eq!(endpoint("/_matrix/media/v3/upload?filename=a.png"), "/_matrix/media/v3/upload");
        assert_eq!(
            endpoint("/_matrix/client/v3/user/%40op%3Ax/account_data/dev.exomatrix.room.space_team"),
            "/_matrix/client/v3/user/{id}/account_data/{type}"
        );
        assert_eq!(
            endpoint("/_matrix/client/v3/rooms/%21r/state/dev.exomatrix.link/support_team"),
            "/_matrix/client/v3/rooms/{id}/state/dev.exomatrix.link/{key}"
        );
    }

    #[test]
    fn counts_show_in_the_exposition() {
        let m = Metrics::new();
        m.reconciled("link", false);
        m.synapse_call("GET", "/_synapse/admin/v2/users/%40a%3Ab", 200, Duration::from_millis(12));
        let text = m.encode();
        assert!(text.contains("exomatrix_reconcile_errors_total{controller=\"link\"} 1"), "{text}");
        assert!(text.contains("endpoint=\"/_synapse/admin/v2/users/{id}\""), "{text}");
    }
}
