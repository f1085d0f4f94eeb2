//! Prometheus metrics of one node, served at `GET /metrics`.

use std::sync::atomic::AtomicI64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use registry_api::ConnectionState;

/// Labels of `console_http_requests_total`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub method: String,
    /// The matched route pattern (`/api/v1/apps/{id}`), never the raw path, so ids do not
    /// explode the label space.
    pub route: String,
    pub status: u16,
}

/// Labels of metrics per task status or outcome.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatusLabels {
    pub status: String,
}

/// Labels of `console_registry_state`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabels {
    pub state: String,
}

/// Every metric of the node. Cheap to update from any task.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    pub http_requests: Family<RequestLabels, Counter>,
    /// Tasks in the database by status, refreshed at scrape time.
    pub tasks: Family<StatusLabels, Gauge<i64, AtomicI64>>,
    /// Tasks this node finished, by outcome.
    pub tasks_executed: Family<StatusLabels, Counter>,
    pub owned_apps: Gauge<i64, AtomicI64>,
    /// 1 for the current registry connection state, 0 for the others.
    pub registry_state: Family<StateLabels, Gauge<i64, AtomicI64>>,
    /// From a task's submission to the moment the owner calls the executor.
    pub dispatch_latency: Histogram,
}

const STATES: [(ConnectionState, &str); 4] = [
    (ConnectionState::Connected, "connected"),
    (ConnectionState::Suspended, "suspended"),
    (ConnectionState::Reconnected, "reconnected"),
    (ConnectionState::SessionLost, "session_lost"),
];

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("console");
        let http_requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests answered",
            http_requests.clone(),
        );
        let tasks = Family::<StatusLabels, Gauge<i64, AtomicI64>>::default();
        registry.register("tasks", "Tasks in the database by status", tasks.clone());
        let tasks_executed = Family::<StatusLabels, Counter>::default();
        registry.register(
            "tasks_executed",
            "Tasks this node finished, by outcome",
            tasks_executed.clone(),
        );
        let owned_apps = Gauge::<i64, AtomicI64>::default();
        registry.register("owned_apps", "Apps this node owns now", owned_apps.clone());
        let registry_state = Family::<StateLabels, Gauge<i64, AtomicI64>>::default();
        registry.register(
            "registry_state",
            "Registry connection state (1 = current)",
            registry_state.clone(),
        );
        // 1 ms .. ~16 s.
        let dispatch_latency = Histogram::new(
            prometheus_client::metrics::histogram::exponential_buckets(0.001, 2.0, 15),
        );
        registry.register(
            "dispatch_latency_seconds",
            "Time from a task's submission to the start of its execution on the owner",
            dispatch_latency.clone(),
        );
        Self {
            registry,
            http_requests,
            tasks,
            tasks_executed,
            owned_apps,
            registry_state,
            dispatch_latency,
        }
    }

    /// Marks `state` as the current registry connection state.
    pub fn set_registry_state(&self, current: ConnectionState) {
        for (state, name) in STATES {
            self.registry_state
                .get_or_create(&StateLabels {
                    state: name.to_owned(),
                })
                .set(i64::from(state == current));
        }
    }

    /// The metrics in the Prometheus text format.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_registered_metrics() {
        let metrics = Metrics::new();
        metrics.set_registry_state(ConnectionState::Suspended);
        metrics.owned_apps.set(3);
        metrics.dispatch_latency.observe(0.004);
        let text = metrics.encode();
        assert!(
            text.contains("console_registry_state{state=\"suspended\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("console_registry_state{state=\"connected\"} 0"),
            "{text}"
        );
        assert!(text.contains("console_owned_apps 3"), "{text}");
        assert!(
            text.contains("console_dispatch_latency_seconds_count 1"),
            "{text}"
        );
    }
}
