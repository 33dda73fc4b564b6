//! Prometheus metrics (`GET /metrics`, OpenMetrics text through the
//! `prometheus-client` crate). Counters count events; gauges are read at
//! scrape time where they describe a current state (pool, connections).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    pub result: &'static str,
}

/// Every metric of the hub.
pub struct Metrics {
    registry: Registry,
    /// Batches by outcome: stored, duplicate, refused (4xx), limited (429),
    /// failed (5xx).
    pub batches: Family<ResultLabel, Counter>,
    pub scores_stored: Counter,
    /// From the first byte of a batch to its acknowledgement.
    pub batch_seconds: Histogram,
    /// Waiting for a pooled database connection (ingest).
    pub db_wait_seconds: Histogram,
    /// The ingest statement: insert and commit.
    pub batch_store_seconds: Histogram,
    /// |hub - box| clock difference per stored batch.
    pub clock_skew_seconds: Histogram,
    pub desks_connected: Gauge,
    pub session_pushes: Counter,
    pub clips: Family<ResultLabel, Counter>,
    pub clip_bytes: Counter,
    pub clip_views: Counter,
    pub notify_connected: Gauge,
    pub db_pool_size: Gauge,
    pub db_pool_available: Gauge,
    pub db_pool_waiting: Gauge,
    pub live_rows_written: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut r = Registry::with_prefix("invigil_hub");
        let m = Metrics {
            batches: Family::default(),
            scores_stored: Counter::default(),
            batch_seconds: Histogram::new(exponential_buckets(0.001, 2.0, 15)),
            db_wait_seconds: Histogram::new(exponential_buckets(0.0001, 2.0, 18)),
            batch_store_seconds: Histogram::new(exponential_buckets(0.0005, 2.0, 15)),
            clock_skew_seconds: Histogram::new([0.1, 1.0, 2.0, 10.0, 60.0, 600.0, 3600.0, 86400.0, 864000.0]),
            desks_connected: Gauge::default(),
            session_pushes: Counter::default(),
            clips: Family::default(),
            clip_bytes: Counter::default(),
            clip_views: Counter::default(),
            notify_connected: Gauge::default(),
            db_pool_size: Gauge::default(),
            db_pool_available: Gauge::default(),
            db_pool_waiting: Gauge::default(),
            live_rows_written: Counter::default(),
            registry: Registry::default(),
        };
        r.register("batches", "Score batches by outcome", m.batches.clone());
        r.register("scores_stored", "Scores stored (replays not counted)", m.scores_stored.clone());
        r.register("batch_seconds", "Time from a batch's arrival to its acknowledgement", m.batch_seconds.clone());
        r.register("db_wait_seconds", "Ingest: waiting for a database connection", m.db_wait_seconds.clone());
        r.register(
            "batch_store_seconds",
            "Ingest: the statement storing a batch, commit included",
            m.batch_store_seconds.clone(),
        );
        r.register("clock_skew_seconds", "Clock difference |hub - box| per stored batch", m.clock_skew_seconds.clone());
        r.register("desks_connected", "Desks connected to this hub by WebSocket", m.desks_connected.clone());
        r.register("session_pushes", "Session messages sent to desks", m.session_pushes.clone());
        r.register("clips", "Clip uploads by outcome", m.clips.clone());
        r.register("clip_bytes", "Clip bytes stored", m.clip_bytes.clone());
        r.register("clip_views", "Clips served to console users", m.clip_views.clone());
        r.register("notify_connected", "1 while the LISTEN connection is up", m.notify_connected.clone());
        r.register("db_pool_size", "Open database connections in the pool", m.db_pool_size.clone());
        r.register("db_pool_available", "Idle database connections in the pool", m.db_pool_available.clone());
        r.register("db_pool_waiting", "Requests waiting for a database connection", m.db_pool_waiting.clone());
        r.register("live_rows_written", "Desk live-state rows written to desk_live", m.live_rows_written.clone());
        Metrics { registry: r, ..m }
    }

    pub fn batch(&self, result: &'static str) {
        self.batches.get_or_create(&ResultLabel { result }).inc();
    }

    pub fn clip(&self, result: &'static str) {
        self.clips.get_or_create(&ResultLabel { result }).inc();
    }

    /// The OpenMetrics text.
    pub fn encode(&self) -> String {
        let mut s = String::new();
        prometheus_client::encoding::text::encode(&mut s, &self.registry).expect("writing to a String");
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_show_in_the_text() {
        let m = Metrics::new();
        m.batch("stored");
        m.batch("stored");
        m.scores_stored.inc_by(90);
        let t = m.encode();
        assert!(t.contains("invigil_hub_batches_total{result=\"stored\"} 2"), "{t}");
        assert!(t.contains("invigil_hub_scores_stored_total 90"), "{t}");
        assert!(t.ends_with("# EOF\n"));
    }
}
