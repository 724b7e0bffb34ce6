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

/// Labels of per-partner metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BrandLabels {
    pub brand: String,
}

/// Labels of evidence counts.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EvidenceLabels {
    pub brand: String,
    pub kind: String,
}

/// Labels of the commits of a node with a standby.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HaCommitLabels {
    /// `standby` (acknowledged by the in-sync standby) or `alone`.
    pub with: String,
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
    pub partner_frozen: Family<BrandLabels, Gauge>,
    pub partner_verified: Family<BrandLabels, Gauge>,
    pub partner_lag: Family<BrandLabels, Gauge>,
    pub mirrored_entries: Family<BrandLabels, Counter>,
    pub sync_failures: Family<BrandLabels, Counter>,
    pub evidence: Family<EvidenceLabels, Counter>,
    pub cosigned_for: Family<BrandLabels, Counter>,
    pub cosignatures_gathered: Family<BrandLabels, Counter>,
    /// Client connections open now.
    pub connections_open: Gauge,
    /// Connections closed at once because `limits.connections_max` were open.
    pub connections_refused: Counter,
    /// Failed accepts (e.g. no file descriptor left); each is retried.
    pub accept_errors: Counter,
    /// Requests answered 503 `overloaded` after waiting `limits.queue_wait_ms` for a slot.
    pub admission_refused: Counter,
    /// 1 while writes are stopped by a forward jump of the system clock.
    pub clock_jump_held: Gauge,
    /// The size of the last forward clock jump found, in milliseconds.
    pub clock_jump_ms: Gauge,
    /// A node with a standby (node/src/ha): time to ship a batch and get the standby's ack.
    pub ha_replicate_latency: Histogram,
    /// Time of the compare-and-swap that records a commit in the coordination store.
    pub ha_commit_point_latency: Histogram,
    /// Committed batches, with the standby in sync or alone.
    pub ha_batches: Family<HaCommitLabels, Counter>,
    /// 1 while the standby is in the in-sync set.
    pub ha_standby_in_sync: Gauge,
    /// RocksDB's estimates of the node's own store's memory, by part.
    pub store_memory: Family<PartLabels, Gauge>,
}

/// Labels of a part of a store's memory.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PartLabels {
    /// `block_cache`, `block_cache_pinned`, `memtables` or `table_readers`.
    pub part: &'static str,
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
            "Time from applying one batch to its synced write (waiting for the batch before it included)",
            commit_latency.clone(),
        );
        registry.register("batches", "Committed batches", batches.clone());
        let (log_size, store_memory) = register_store(&mut registry);
        let partner_frozen = Family::<BrandLabels, Gauge>::default();
        let partner_verified = Family::<BrandLabels, Gauge>::default();
        let partner_lag = Family::<BrandLabels, Gauge>::default();
        let mirrored_entries = Family::<BrandLabels, Counter>::default();
        let sync_failures = Family::<BrandLabels, Counter>::default();
        let evidence = Family::<EvidenceLabels, Counter>::default();
        let cosigned_for = Family::<BrandLabels, Counter>::default();
        let cosignatures_gathered = Family::<BrandLabels, Counter>::default();
        registry.register(
            "partner_frozen",
            "1 while a partnership is frozen by equivocation evidence (alert on it)",
            partner_frozen.clone(),
        );
        registry.register(
            "partner_verified_entries",
            "Entries of a partner's log verified and mirrored",
            partner_verified.clone(),
        );
        registry.register(
            "partner_lag_entries",
            "Entries of a partner's latest checkpoint not yet mirrored",
            partner_lag.clone(),
        );
        registry.register(
            "mirrored_entries",
            "Entries verified and stored in mirrors",
            mirrored_entries.clone(),
        );
        registry.register(
            "sync_failures",
            "Sync rounds that failed without evidence (partner down, garbage)",
            sync_failures.clone(),
        );
        registry.register(
            "evidence",
            "Equivocation evidence stored, by partner and kind",
            evidence.clone(),
        );
        registry.register(
            "witness_cosignatures",
            "Checkpoints of partners this node cosigned",
            cosigned_for.clone(),
        );
        registry.register(
            "cosignatures_gathered",
            "Cosignatures of this node's checkpoints gathered from partners",
            cosignatures_gathered.clone(),
        );
        let connections_open = Gauge::default();
        let connections_refused = Counter::default();
        let accept_errors = Counter::default();
        let admission_refused = Counter::default();
        let clock_jump_held = Gauge::default();
        let clock_jump_ms = Gauge::default();
        registry.register(
            "http_connections",
            "Client connections open now (at most limits.connections_max)",
            connections_open.clone(),
        );
        registry.register(
            "http_connections_refused",
            "Connections closed at once because limits.connections_max were open",
            connections_refused.clone(),
        );
        registry.register(
            "http_accept_errors",
            "Failed accepts, e.g. no file descriptor left (each is retried)",
            accept_errors.clone(),
        );
        registry.register(
            "http_admission_refused",
            "Requests answered 503 overloaded after waiting limits.queue_wait_ms for a slot",
            admission_refused.clone(),
        );
        registry.register(
            "clock_jump_held",
            "1 while writes are stopped by a forward jump of the system clock (alert on it)",
            clock_jump_held.clone(),
        );
        registry.register(
            "clock_jump_ms",
            "The last forward jump of the system clock found, in milliseconds",
            clock_jump_ms.clone(),
        );
        let ha_replicate_latency = Histogram::new(exponential_buckets(0.0001, 2.0, 16));
        let ha_commit_point_latency = Histogram::new(exponential_buckets(0.0001, 2.0, 16));
        let ha_batches = Family::<HaCommitLabels, Counter>::default();
        let ha_standby_in_sync = Gauge::default();
        registry.register(
            "ha_replicate_duration_seconds",
            "Time to ship a batch to the standby and get its synced acknowledgement",
            ha_replicate_latency.clone(),
        );
        registry.register(
            "ha_commit_point_duration_seconds",
            "Time of the compare-and-swap recording a commit in the coordination store",
            ha_commit_point_latency.clone(),
        );
        registry.register(
            "ha_batches",
            "Batches committed with the standby in sync (with=standby) or alone (with=alone)",
            ha_batches.clone(),
        );
        registry.register(
            "ha_standby_in_sync",
            "1 while the standby is in the in-sync set (alert when 0 for long)",
            ha_standby_in_sync.clone(),
        );
        Metrics {
            ha_replicate_latency,
            ha_commit_point_latency,
            ha_batches,
            ha_standby_in_sync,
            store_memory,
            connections_open,
            connections_refused,
            accept_errors,
            admission_refused,
            clock_jump_held,
            clock_jump_ms,
            partner_frozen,
            partner_verified,
            partner_lag,
            mirrored_entries,
            sync_failures,
            evidence,
            cosigned_for,
            cosignatures_gathered,
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

    /// Records one answered request. `route` must be a matched route template (or
    /// `unmatched`), never a raw path: every label comes from a fixed set, so no request can
    /// create a series (issue 13).
    pub fn observe_request(&self, method: &str, route: &str, status: u16, took: Duration) {
        self.requests
            .get_or_create(&RequestLabels {
                method: method_label(method).to_owned(),
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

    fn brand(brand: &str) -> BrandLabels {
        BrandLabels {
            brand: brand.to_owned(),
        }
    }

    /// Sets a partner's gauges.
    pub fn set_partner(&self, brand: &str, frozen: bool, verified: u64, lag: u64) {
        let b = Self::brand(brand);
        self.partner_frozen.get_or_create(&b).set(frozen as i64);
        self.partner_verified.get_or_create(&b).set(verified as i64);
        self.partner_lag.get_or_create(&b).set(lag as i64);
    }

    /// Counts entries mirrored from a partner.
    pub fn mirrored(&self, brand: &str, n: u64) {
        self.mirrored_entries
            .get_or_create(&Self::brand(brand))
            .inc_by(n);
    }

    /// Counts a failed sync round.
    pub fn sync_failed(&self, brand: &str) {
        self.sync_failures.get_or_create(&Self::brand(brand)).inc();
    }

    /// Counts stored evidence.
    pub fn evidence_found(&self, brand: &str, kind: &str) {
        self.evidence
            .get_or_create(&EvidenceLabels {
                brand: brand.to_owned(),
                kind: kind.to_owned(),
            })
            .inc();
    }

    /// Counts a cosignature given to a partner.
    pub fn cosigned_for(&self, brand: &str) {
        self.cosigned_for.get_or_create(&Self::brand(brand)).inc();
    }

    /// Counts a cosignature received from a partner.
    pub fn cosignature_gathered(&self, brand: &str) {
        self.cosignatures_gathered
            .get_or_create(&Self::brand(brand))
            .inc();
    }

    /// Sets the store's memory gauges (read when the metrics are scraped).
    pub fn store_memory(&self, m: ledger_store::store::MemoryUse) {
        let parts = [
            ("block_cache", m.block_cache),
            ("block_cache_pinned", m.block_cache_pinned),
            ("memtables", m.memtables),
            ("table_readers", m.table_readers),
        ];
        for (part, bytes) in parts {
            self.store_memory
                .get_or_create(&PartLabels { part })
                .set(i64::try_from(bytes).unwrap_or(i64::MAX));
        }
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut s = String::new();
        encode(&mut s, &self.registry).expect("writing to a String cannot fail");
        s
    }
}

/// The metrics of the node's own store: its size, and RocksDB's estimates of its memory.
fn register_store(registry: &mut Registry) -> (Gauge, Family<PartLabels, Gauge>) {
    let log_size = Gauge::default();
    registry.register("log_size_entries", "Entries in the log", log_size.clone());
    let store_memory = Family::<PartLabels, Gauge>::default();
    registry.register(
        "store_memory_bytes",
        "RocksDB's estimate of the memory the node's own store holds, by part",
        store_memory.clone(),
    );
    (log_size, store_memory)
}

/// The label of an HTTP method: one of the methods the API serves, or `other`. A client can
/// send any token as a method; labelling it verbatim would create a series per token.
pub fn method_label(method: &str) -> &'static str {
    const KNOWN: [&str; 7] = ["GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"];
    KNOWN
        .iter()
        .find(|m| **m == method)
        .copied()
        .unwrap_or("other")
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn method_labels_come_from_a_fixed_set() {
        assert_eq!(method_label("GET"), "GET");
        assert_eq!(method_label("get"), "other");
        assert_eq!(method_label(&"X".repeat(1 << 16)), "other");
    }
}
