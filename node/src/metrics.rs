//! Prometheus metrics: requests by route and status with latencies, the write queue, batches,
//! commit latency and the log size.

use std::time::Duration;

use prometheus_client::encoding::{text::encode, EncodeLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// Labels of request metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub method: String,
    pub route: String,
    pub status: u16,
}

/// Labels of request latency.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub route: String,
}

/// Every metric the node exports.
pub struct Metrics {
    registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    pub request_latency: Family<RouteLabels, Histogram>,
    pub queue_depth: Gauge,
    pub batch_size: Histogram,
    pub commit_latency: Histogram,
    pub batches: Counter,
    pub log_size: Gauge,
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("loyalty");
        let requests = Family::<RequestLabels, Counter>::default();
        let request_latency = Family::<RouteLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.0001, 2.0, 18))
        });
        let queue_depth = Gauge::default();
        let batch_size = Histogram::new(exponential_buckets(1.0, 2.0, 14));
        let commit_latency = Histogram::new(exponential_buckets(0.0001, 2.0, 16));
        let batches = Counter::default();
        let log_size = Gauge::default();
        registry.register(
            "http_requests",
            "HTTP requests by route and status",
            requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency by route",
            request_latency.clone(),
        );
        registry.register(
            "write_queue_depth",
            "Writes waiting for the sequencer",
            queue_depth.clone(),
        );
        registry.register(
            "batch_writes",
            "Writes per committed batch",
            batch_size.clone(),
        );
        registry.register(
            "commit_duration_seconds",
            "Time to apply, write (synced) and sign one batch",
            commit_latency.clone(),
        );
        registry.register("batches", "Committed batches", batches.clone());
        registry.register("log_size_entries", "Entries in the log", log_size.clone());
        Metrics {
            registry,
            requests,
            request_latency,
            queue_depth,
            batch_size,
            commit_latency,
            batches,
            log_size,
        }
    }

    /// Records one committed batch.
    pub fn observe_batch(&self, writes: usize, took: Duration) {
        self.batches.inc();
        self.batch_size.observe(writes as f64);
        self.commit_latency.observe(took.as_secs_f64());
    }

    /// Records one answered request.
    pub fn observe_request(&self, method: &str, route: &str, status: u16, took: Duration) {
        self.requests
            .get_or_create(&RequestLabels {
                method: method.to_owned(),
                route: route.to_owned(),
                status,
            })
            .inc();
        self.request_latency
            .get_or_create(&RouteLabels {
                route: route.to_owned(),
            })
            .observe(took.as_secs_f64());
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut s = String::new();
        encode(&mut s, &self.registry).expect("writing to a String cannot fail");
        s
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}
