//! Prometheus metrics of one node, served at `GET /metrics`.

use std::sync::atomic::AtomicI64;

use std::sync::atomic::Ordering;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use registry_api::ConnectionState;
use task_dispatch::Dispatcher;

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
    /// Unfinished tasks in the database (cluster-wide) by status, refreshed at scrape time.
    pub tasks: Family<StatusLabels, Gauge<i64, AtomicI64>>,
    /// 1 for the current registry connection state, 0 for the others.
    pub registry_state: Family<StateLabels, Gauge<i64, AtomicI64>>,
    /// From a task's submission to the moment the owner calls the executor.
    pub dispatch_latency: Histogram,
    /// Open `GET /api/v1/events` streams on this node.
    pub event_streams: Gauge,
    /// 1 while this node's event feed runs (only while a stream is open).
    pub event_feeds: Gauge,
    /// `console_flink_overview_calls_total`: the `GET /jobs/overview` calls of this node's
    /// `flink` executor (its monitoring of every job, whatever their number; added, issue 13).
    pub flink_overview_calls: Counter,
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
        let event_streams = Gauge::default();
        registry.register(
            "event_streams",
            "Open GET /api/v1/events streams",
            event_streams.clone(),
        );
        let event_feeds = Gauge::default();
        registry.register(
            "event_feeds",
            "1 while the event feed runs (only while a stream is open)",
            event_feeds.clone(),
        );
        let flink_overview_calls = Counter::default();
        registry.register(
            "flink_overview_calls",
            "GET /jobs/overview calls of the flink executor (one per Flink cluster per monitor tick at most)",
            flink_overview_calls.clone(),
        );
        Self {
            flink_overview_calls,
            registry,
            http_requests,
            tasks,
            registry_state,
            dispatch_latency,
            event_streams,
            event_feeds,
        }
    }

    /// Adds the dispatcher's own figures (owned apps, finished tasks, adoptions), read at each
    /// scrape.
    #[must_use]
    pub fn with_dispatcher(mut self, dispatcher: Dispatcher) -> Self {
        self.registry
            .register_collector(Box::new(DispatchCollector { dispatcher }));
        self
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

/// The dispatcher's counters, encoded at scrape time.
#[derive(Debug)]
struct DispatchCollector {
    dispatcher: Dispatcher,
}

impl Collector for DispatchCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let stats = self.dispatcher.stats();
        let counters = [
            (
                "tasks_succeeded",
                "Tasks this node finished SUCCEEDED",
                &stats.tasks_succeeded,
            ),
            (
                "tasks_failed",
                "Tasks this node finished FAILED",
                &stats.tasks_failed,
            ),
            ("adoptions", "App leases this node took", &stats.adoptions),
            (
                "apps_found_dead",
                "Apps this node's monitor found dead",
                &stats.apps_found_dead,
            ),
        ];
        for (name, help, value) in counters {
            let counter = ConstCounter::new(value.load(Ordering::Relaxed));
            counter.encode(encoder.encode_descriptor(
                name,
                help,
                None,
                counter.metric_type(),
            )?)?;
        }
        let gauges = [
            (
                "owned_apps",
                "Apps this node owns now",
                u64::try_from(self.dispatcher.owned_apps()).unwrap_or(u64::MAX),
            ),
            (
                "actions_in_flight",
                "Executor calls running now",
                stats.actions_in_flight.load(Ordering::Relaxed),
            ),
        ];
        for (name, help, value) in gauges {
            let gauge = ConstGauge::new(i64::try_from(value).unwrap_or(i64::MAX));
            gauge.encode(encoder.encode_descriptor(name, help, None, gauge.metric_type())?)?;
        }
        Ok(())
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
        assert!(
            text.contains("console_dispatch_latency_seconds_count 1"),
            "{text}"
        );
    }
}
