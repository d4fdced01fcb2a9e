//! The browser console: read-only pages for operators and auditors, and the small JSON
//! API they read, as an axum [`Router`] for the node's HTTP listener.
//!
//! Everything lives under `/console/`. The assets (plain HTML, CSS and JavaScript modules
//! under `node/console/`) are embedded in the binary: no build step, no CDN, no request
//! leaves the node's origin. Every answer carries a strict Content-Security-Policy (no
//! inline script or style), `nosniff` and `no-referrer`. The Verify page checks evidence
//! in the browser and sends nothing to the server.
//!
//! API (JSON, `GET` unless said):
//! - `/console/api/node`: what NodeInfo says, plus the latest checkpoint note;
//! - `/console/api/activity?window=hour|day`: decision counts from [`Activity`];
//! - `/console/api/recent`: the latest decisions (id, time, jurisdiction, verdict, rules);
//! - `POST /console/api/try`: evaluates a request file against the node's policies with
//!   the rule-by-rule explanation, without signing or logging; off unless enabled.

pub mod activity;

use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use prost::Message;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use silkgate_core::request::Request as Deployment;
use silkgate_core::request::file::RequestFile;
use silkgate_core::time::UnixTime;

pub use activity::{Activity, Window};

use crate::service::NodeState;

/// The Content-Security-Policy of every answer: same-origin script, style and fetches
/// only, no inline code, no framing.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// Largest `POST /console/api/try` body, in bytes.
pub const MAX_TRY_BODY: usize = 64 * 1024;
/// Decisions `/console/api/recent` returns.
pub const RECENT_SHOWN: usize = 50;

/// The console's settings.
#[derive(Clone, Copy, Debug, Default)]
pub struct Options {
    /// Serve `POST /console/api/try` (`--console-try`).
    pub try_enabled: bool,
}

/// One embedded file: its path under `/console/`, content type and bytes.
struct Asset {
    path: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

macro_rules! asset {
    ($path:literal, $file:literal, $ty:expr) => {
        Asset { path: $path, content_type: $ty, body: include_bytes!(concat!("../console/", $file)) }
    };
}

const HTML: &str = "text/html; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";

static ASSETS: &[Asset] = &[
    asset!("/console/", "index.html", HTML),
    asset!("/console/decisions", "decisions.html", HTML),
    asset!("/console/verify", "verify.html", HTML),
    asset!("/console/try", "try.html", HTML),
    asset!("/console/assets/console.css", "assets/console.css", CSS),
    asset!("/console/assets/common.js", "assets/common.js", JS),
    asset!("/console/assets/node.js", "assets/node.js", JS),
    asset!("/console/assets/decisions.js", "assets/decisions.js", JS),
    asset!("/console/assets/chart.js", "assets/chart.js", JS),
    asset!("/console/assets/verify.js", "assets/verify.js", JS),
    asset!("/console/assets/checks.js", "assets/checks.js", JS),
    asset!("/console/assets/protobuf.js", "assets/protobuf.js", JS),
    asset!("/console/assets/try.js", "assets/try.js", JS),
    asset!("/console/assets/favicon.svg", "assets/favicon.svg", "image/svg+xml"),
];

/// The console with default options (Try off).
pub fn router(state: Arc<NodeState>) -> Router {
    router_with(state, Options::default())
}

/// The console's routes, all under `/console/`, with strict headers on every answer.
pub fn router_with(state: Arc<NodeState>, options: Options) -> Router {
    let console = Arc::new(Console { state, options });
    let mut r = Router::new();
    for a in ASSETS {
        r = r.route(a.path, get(move || async move { asset(a) }));
    }
    r.route("/console", get(|| async { redirect("/console/") }))
        .route("/console/api/node", get(node))
        .route("/console/api/activity", get(activity))
        .route("/console/api/recent", get(recent))
        .route("/console/api/try", post(try_request))
        .fallback(|| async { error(StatusCode::NOT_FOUND, "not found") })
        .method_not_allowed_fallback(|| async { error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed") })
        .with_state(console)
        .layer(axum::middleware::map_response(strict_headers))
}

/// Serves `router` alone over HTTP/1.1 on `listener` until the task is dropped, for
/// tests (`silkgate serve` mounts the console on its HTTP listener: `crate::http`).
pub async fn serve(listener: tokio::net::TcpListener, router: Router) {
    let mut backoff = crate::server::Backoff::default();
    loop {
        let sock = match listener.accept().await {
            Ok((sock, _)) => {
                backoff.reset();
                sock
            }
            Err(_) => {
                // Out of file descriptors, most often: retrying at once would spin.
                backoff.wait().await;
                continue;
            }
        };
        let router = router.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                let mut router = router.clone();
                async move { tower_service::Service::call(&mut router, req.map(Body::new)).await }
            });
            // The router is always ready (axum's `Router::poll_ready` returns `Ready`).
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(sock), service);
            let _ = tokio::time::timeout(std::time::Duration::from_secs(30), conn).await;
        });
    }
}

struct Console {
    state: Arc<NodeState>,
    options: Options,
}

type Shared = State<Arc<Console>>;

async fn strict_headers(mut response: Response) -> Response {
    let h = response.headers_mut();
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert("cross-origin-opener-policy", HeaderValue::from_static("same-origin"));
    h.insert("cross-origin-resource-policy", HeaderValue::from_static("same-origin"));
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

fn asset(a: &'static Asset) -> Response {
    let mut h = HeaderMap::new();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(a.content_type));
    // Assets change only with the binary; revalidate so an upgrade shows at once.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    (h, a.body).into_response()
}

fn redirect(to: &'static str) -> Response {
    (StatusCode::MOVED_PERMANENTLY, [(header::LOCATION, to)]).into_response()
}

fn json<T: Serialize>(status: StatusCode, value: &T) -> Response {
    // Serializing these plain structs cannot fail.
    let body = serde_json::to_vec(value).unwrap_or_default();
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    #[derive(Serialize)]
    struct E {
        error: String,
    }
    json(status, &E { error: crate::service::capped(message.into()) })
}

#[derive(Serialize)]
struct NodeView {
    node_id: String,
    build_version: &'static str,
    now: i64,
    try_enabled: bool,
    jurisdictions: Vec<JurisdictionView>,
    keys: Vec<KeyView>,
    policy_reloads: u64,
    policy_reload_errors: u64,
    last_reload_error: String,
    last_reload_attempt: Option<i64>,
    log: Option<LogView>,
}

#[derive(Serialize)]
struct JurisdictionView {
    jurisdiction: String,
    name: String,
    policy_id: String,
    policy_version: String,
    policy_sha256: String,
    rule_count: usize,
    loaded_at: Option<i64>,
    last_error: String,
}

#[derive(Serialize)]
struct KeyView {
    key_id: String,
    algorithm: &'static str,
    /// Raw 32-byte Ed25519 public key, hex.
    public_key: String,
    valid_from: i64,
    purposes: Vec<&'static str>,
}

#[derive(Serialize)]
struct LogView {
    origin: String,
    size: u64,
    healthy: bool,
    verifier_key: String,
    /// The latest signed checkpoint note, or why there is none.
    checkpoint: Option<String>,
    checkpoint_error: Option<String>,
}

async fn node(State(c): Shared) -> Response {
    let s = &c.state;
    // The latest checkpoint may have to be signed and stored first: file I/O, so on the
    // blocking pool (as the DecisionLog service does).
    let latest = match &s.log {
        None => None,
        Some(_) => {
            let state = s.clone();
            let stored = tokio::task::spawn_blocking(move || state.log.as_ref().map(|l| l.checkpoint())).await;
            Some(match stored {
                Ok(Some(Ok((note, _)))) => (Some(note), None),
                Ok(Some(Err(e))) => (None, Some(e.to_string())),
                Ok(None) | Err(_) => (None, Some("checkpoint unavailable".to_string())),
            })
        }
    };
    let policies = s.policies.load();
    let status = s.reload.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let jurisdictions = policies
        .policies
        .values()
        .map(|p| JurisdictionView {
            jurisdiction: p.jurisdiction.clone(),
            name: p.name.clone(),
            policy_id: p.id.clone(),
            policy_version: p.version.clone(),
            policy_sha256: p.digest_hex.clone(),
            rule_count: p.rules.len(),
            loaded_at: status.loaded_at.get(&p.jurisdiction).map(|t| t.secs),
            last_error: status.jurisdiction_errors.get(&p.jurisdiction).cloned().unwrap_or_default(),
        })
        .collect();
    let key = s.signer.verifying_key();
    let log = s.log.as_ref().map(|l| {
        let (checkpoint, checkpoint_error) = latest.clone().unwrap_or_default();
        LogView {
            origin: l.origin().to_string(),
            size: l.size(),
            healthy: l.is_healthy(),
            verifier_key: silkgate_core::checkpoint::vkey(l.origin(), &key),
            checkpoint,
            checkpoint_error,
        }
    });
    let mut purposes = vec!["decisions"];
    if log.is_some() {
        purposes.push("checkpoints");
    }
    let view = NodeView {
        node_id: s.node_id.clone(),
        build_version: crate::BUILD_VERSION,
        now: UnixTime::now().secs,
        try_enabled: c.options.try_enabled,
        jurisdictions,
        keys: vec![KeyView {
            key_id: s.signer.key_id().to_string(),
            algorithm: "ed25519",
            public_key: hex::encode(key.as_bytes()),
            valid_from: s.key_valid_from.secs,
            purposes,
        }],
        policy_reloads: status.reloads,
        policy_reload_errors: status.errors,
        last_reload_error: status.last_error,
        last_reload_attempt: status.last_attempt.map(|t| t.secs),
        log,
    };
    json(StatusCode::OK, &view)
}

/// The value of `name` in a query string (no percent-decoding: the console's parameters
/// are plain words).
fn query<'a>(req: &'a Request, name: &str) -> Option<&'a str> {
    req.uri().query()?.split('&').find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
}

async fn activity(State(c): Shared, req: Request) -> Response {
    let w = query(&req, "window").unwrap_or("hour");
    let Some(window) = Window::parse(w) else {
        return error(
            StatusCode::BAD_REQUEST,
            format!("window: must be `hour` or `day`, got `{}`", silkgate_core::request::echo(w)),
        );
    };
    json(StatusCode::OK, &c.state.activity.snapshot(window, UnixTime::now().secs))
}

async fn recent(State(c): Shared) -> Response {
    json(StatusCode::OK, &c.state.activity.recent(RECENT_SHOWN))
}

/// The body of `POST /console/api/try`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TryRequest {
    jurisdiction: String,
    /// `toml` or `json`.
    format: String,
    text: String,
}

#[derive(Serialize)]
struct TryAnswer {
    verdict: &'static str,
    jurisdiction: String,
    policy_id: String,
    policy_version: String,
    policy_sha256: String,
    evaluated_on: String,
    default_applied: bool,
    /// SHA-256 of the request's protobuf encoding, hex: what a decision would carry.
    request_sha256: String,
    matched: Vec<MatchedView>,
    explanation: Vec<TraceView>,
}

#[derive(Serialize)]
struct MatchedView {
    id: String,
    effect: &'static str,
    message: String,
    citation: String,
    url: String,
}

#[derive(Serialize)]
struct TraceView {
    rule_id: String,
    effect: &'static str,
    in_force: bool,
    matched: bool,
    failed_condition: String,
    actual: String,
}

async fn try_request(State(c): Shared, req: Request) -> Response {
    if !c.options.try_enabled {
        return error(StatusCode::FORBIDDEN, "try is off on this node (enable it with --console-try)");
    }
    if req.method() != Method::POST {
        return error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
    }
    let body: Bytes = match axum::body::to_bytes(req.into_body(), MAX_TRY_BODY).await {
        Ok(b) => b,
        Err(_) => return error(StatusCode::PAYLOAD_TOO_LARGE, format!("body: at most {MAX_TRY_BODY} bytes")),
    };
    match evaluate(&c.state, &body, UnixTime::now()) {
        Ok(answer) => json(StatusCode::OK, &answer),
        Err(e) => error(StatusCode::BAD_REQUEST, e),
    }
}

/// Evaluates a Try body against the node's policies, on the day of `now`: no signature,
/// no log entry, no metrics.
fn evaluate(state: &NodeState, body: &[u8], now: UnixTime) -> Result<TryAnswer, String> {
    let t: TryRequest = serde_json::from_slice(body).map_err(|e| format!("body: {e}"))?;
    let file = match t.format.as_str() {
        "toml" => RequestFile::from_toml(&t.text),
        "json" => RequestFile::from_json(&t.text),
        other => {
            return Err(format!("format: must be `toml` or `json`, got `{}`", silkgate_core::request::echo(other)));
        }
    }
    .map_err(|e| format!("request: {e}"))?;
    let message = file.to_proto().map_err(|e| format!("request: {e}"))?;
    let request_sha256 = hex::encode(Sha256::digest(message.encode_to_vec()));
    let req = Deployment::try_from(message).map_err(|e| format!("request: {e}"))?;
    let policies = state.policies.load();
    let jurisdiction = t.jurisdiction.to_ascii_uppercase();
    let Some(policy) = policies.get(&jurisdiction) else {
        let known: Vec<&str> = policies.policies.keys().map(String::as_str).collect();
        return Err(format!(
            "jurisdiction: no policy for `{}` on this node (it enforces: {})",
            silkgate_core::request::echo(&jurisdiction),
            known.join(", ")
        ));
    };
    let day = now.day();
    let (outcome, traces) = policy.explain(&req, day);
    let matched = outcome
        .matched
        .iter()
        .map(|&i| {
            let r = &policy.rules[i as usize];
            MatchedView {
                id: r.id.clone(),
                effect: r.effect.as_str(),
                message: r.message.clone(),
                citation: r.citation.clone(),
                url: r.url.clone(),
            }
        })
        .collect();
    let explanation = traces
        .into_iter()
        .map(|t| {
            let r = &policy.rules[t.rule];
            let (failed_condition, actual) = t.failed.unwrap_or_default();
            TraceView {
                rule_id: r.id.clone(),
                effect: r.effect.as_str(),
                in_force: t.in_force,
                matched: t.matched,
                failed_condition,
                actual,
            }
        })
        .collect();
    Ok(TryAnswer {
        verdict: outcome.verdict.as_str(),
        jurisdiction: policy.jurisdiction.clone(),
        policy_id: policy.id.clone(),
        policy_version: policy.version.clone(),
        policy_sha256: policy.digest_hex.clone(),
        evaluated_on: day.to_string(),
        default_applied: outcome.matched.is_empty(),
        request_sha256,
        matched,
        explanation,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_asset_is_listed_once_and_has_no_inline_code() {
        let mut paths: Vec<&str> = ASSETS.iter().map(|a| a.path).collect();
        paths.sort();
        paths.dedup();
        assert_eq!(paths.len(), ASSETS.len());
        for a in ASSETS.iter().filter(|a| a.content_type == HTML) {
            let text = std::str::from_utf8(a.body).unwrap();
            assert!(!text.contains("<style"), "{}: inline style", a.path);
            assert!(!text.contains("style="), "{}: inline style attribute", a.path);
            let handler = text.split(" on").skip(1).any(|rest| {
                let name: String = rest.chars().take_while(|c| c.is_ascii_lowercase()).collect();
                !name.is_empty() && rest[name.len()..].starts_with('=')
            });
            assert!(!handler, "{}: inline event handler", a.path);
            for script in text.split("<script").skip(1) {
                assert!(script.trim_start().starts_with("type=\"module\" src="), "{}: inline script", a.path);
            }
        }
    }
}
