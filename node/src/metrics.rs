//! Prometheus metrics (served on the HTTP listener, [`crate::http`]).

use std::sync::atomic::{AtomicU64, Ordering};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DecisionLabels {
    pub jurisdiction: String,
    pub verdict: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RejectLabels {
    pub reason: String,
}

/// Every metric the node exports.
pub struct Metrics {
    pub decisions: Family<DecisionLabels, Counter>,
    pub rejected: Family<RejectLabels, Counter>,
    /// Server time per Evaluate / EvaluateBatch call, in seconds.
    pub latency: Histogram,
    pub reloads: Counter,
    pub reload_errors: Counter,
    pub log_size: Gauge,
    pub log_syncs: Counter,
    pub log_sync_seconds: prometheus_client::metrics::counter::Counter<f64, std::sync::atomic::AtomicU64>,
    pub log_bytes: Counter,
    /// Split views this node's witness refused (a log signed two inconsistent trees).
    pub witness_split_views: Counter,
    /// Cosignatures this node's witness gave.
    pub witness_cosignatures: Counter,
    /// Signed waivers in force now, and of those the ones expiring within 7 days.
    pub waivers_in_force: Gauge,
    pub waivers_expiring_7d: Gauge,
    registry: Registry,
    last_syncs: AtomicU64,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let m = Metrics {
            decisions: Family::default(),
            rejected: Family::default(),
            latency: Histogram::new(exponential_buckets(0.000_05, 2.0, 16)),
            reloads: Counter::default(),
            reload_errors: Counter::default(),
            log_size: Gauge::default(),
            log_syncs: Counter::default(),
            log_sync_seconds: Default::default(),
            log_bytes: Counter::default(),
            witness_split_views: Counter::default(),
            witness_cosignatures: Counter::default(),
            waivers_in_force: Gauge::default(),
            waivers_expiring_7d: Gauge::default(),
            registry: Registry::with_prefix("silkgate"),
            last_syncs: AtomicU64::new(0),
        };
        let mut r = Registry::with_prefix("silkgate");
        r.register("decisions", "Decisions returned, by jurisdiction and verdict", m.decisions.clone());
        r.register("rejected_requests", "Requests refused without a decision, by reason", m.rejected.clone());
        r.register("request_duration_seconds", "Server time per evaluation call", m.latency.clone());
        r.register("policy_reloads", "Policy reloads that took effect", m.reloads.clone());
        r.register(
            "policy_reload_errors",
            "Policy reloads rejected (the last good policy stayed)",
            m.reload_errors.clone(),
        );
        r.register("log_entries", "Entries in the decision log", m.log_size.clone());
        r.register("waivers_in_force", "Signed waivers in force", m.waivers_in_force.clone());
        r.register(
            "waivers_expiring_7d",
            "Signed waivers in force that expire within 7 days",
            m.waivers_expiring_7d.clone(),
        );
        r.register("log_syncs", "Group commits (fdatasync calls) of the decision log", m.log_syncs.clone());
        r.register("log_sync_seconds", "Time spent writing and syncing the decision log", m.log_sync_seconds.clone());
        r.register("log_bytes", "Bytes appended to the decision log", m.log_bytes.clone());
        r.register(
            "witness_split_views",
            "Split views refused by this node's witness: checkpoints signed by a log that contradict one already cosigned",
            m.witness_split_views.clone(),
        );
        r.register(
            "witness_cosignatures",
            "Checkpoints cosigned by this node's witness",
            m.witness_cosignatures.clone(),
        );
        Metrics { registry: r, ..m }
    }

    pub fn reject(&self, reason: &str) {
        self.rejected.get_or_create(&RejectLabels { reason: reason.to_string() }).inc();
    }

    /// Copies the log writer's counters in (they live in the writer, without a registry).
    pub fn observe_log(&self, log: &crate::log::LogHandle) {
        let s = log.stats();
        self.log_size.set(log.size() as i64);
        let syncs = s.syncs.load(Ordering::Relaxed);
        let prev = self.last_syncs.swap(syncs, Ordering::Relaxed);
        self.log_syncs.inc_by(syncs.saturating_sub(prev));
        let secs = s.sync_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        let delta = secs - self.log_sync_seconds.get();
        if delta > 0.0 {
            self.log_sync_seconds.inc_by(delta);
        }
        let bytes = s.bytes.load(Ordering::Relaxed);
        self.log_bytes.inc_by(bytes.saturating_sub(self.log_bytes.get()));
    }

    /// Copies the reload counters in (they live in the reload status).
    pub fn observe_reload(&self, status: &std::sync::Mutex<crate::reload::ReloadStatus>) {
        let (ok, err) = {
            let st = status.lock().unwrap_or_else(|e| e.into_inner());
            (st.reloads, st.errors)
        };
        self.reloads.inc_by(ok.saturating_sub(self.reloads.get()));
        self.reload_errors.inc_by(err.saturating_sub(self.reload_errors.get()));
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Encoding into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
