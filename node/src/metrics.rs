//! Prometheus metrics, and the small HTTP endpoint that serves them.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Method, Request, Response, StatusCode};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;

use crate::server::Backoff;
use crate::service::NodeState;

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

/// Time a client has to send its request's headers.
const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// Time one connection may last, request and answer together.
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(30);

/// Serves `GET /metrics` (and `GET /healthz`) over HTTP/1.1 on `listener`, with hyper's
/// HTTP/1 server (the one tonic runs on): one request per connection, headers within
/// 5 s, the whole exchange within 30 s.
pub async fn serve(listener: TcpListener, metrics: Arc<Metrics>, state: Arc<NodeState>) {
    let mut backoff = Backoff::default();
    loop {
        let sock = match listener.accept().await {
            Ok((sock, _)) => {
                backoff.reset();
                sock
            }
            Err(e) => {
                // Out of file descriptors, most often: retrying at once would spin.
                tracing::warn!(error = %e, retry_ms = backoff.delay().as_millis() as u64, "metrics accept failed");
                backoff.wait().await;
                continue;
            }
        };
        let (metrics, state) = (metrics.clone(), state.clone());
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let response = answer(&req, &metrics, &state);
                async move { Ok::<_, Infallible>(response) }
            });
            let mut http = hyper::server::conn::http1::Builder::new();
            http.timer(hyper_util::rt::TokioTimer::new()).header_read_timeout(HEADER_TIMEOUT).keep_alive(false);
            let conn = http.serve_connection(hyper_util::rt::TokioIo::new(sock), service);
            let _ = tokio::time::timeout(CONNECTION_TIMEOUT, conn).await;
        });
    }
}

fn answer<B>(req: &Request<B>, metrics: &Metrics, state: &NodeState) -> Response<Full<Bytes>> {
    let (status, body) = match (req.method(), req.uri().path()) {
        (&Method::GET, "/metrics") => {
            if let Some(log) = &state.log {
                metrics.observe_log(log);
            }
            metrics.observe_reload(&state.reload);
            (StatusCode::OK, metrics.encode())
        }
        (&Method::GET, "/healthz") => (StatusCode::OK, "ok\n".to_string()),
        _ => (StatusCode::NOT_FOUND, "not found\n".to_string()),
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(hyper::header::CONTENT_TYPE, hyper::header::HeaderValue::from_static("text/plain; version=0.0.4"));
    response
}
