//! The node's HTTP listener (axum routes over hyper's HTTP/1 server): Prometheus
//! `/metrics` and `/healthz`, the decision log as C2SP tlog-tiles (`/checkpoint`,
//! `/tile/<L>/<N>[.p/<W>]`, `/tile/entries/<N>[.p/<W>]`), and the witness's
//! `POST /add-checkpoint` (C2SP tlog-witness), and the browser console under `/console/`
//! (`crate::console`).
//!
//! Everything served from the log lies within the stored checkpoint (the high-water
//! mark), so a tile never names an entry a crash could take back. Request paths are
//! parsed by `silkgate_verify::tiles::parse`, which accepts only canonical tile paths.
//! Plain HTTP, like the metrics endpoint before it: everything here is public or signed.

pub mod client;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use hyper::Request;
use silkgate_verify::tiles::{self, TILE_HEIGHT};
use tokio::net::TcpListener;
use tower_service::Service as _;

use crate::server::Backoff;
use crate::service::NodeState;
use crate::witness::Witness;

/// Time a client has to send a request's headers.
const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// Time one connection may last, all its requests and answers together.
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(30);
/// Connections served at once; more wait in the listen queue.
pub const MAX_CONNECTIONS: usize = 512;

/// Cache headers: tiles (full or partial, each path names fixed bytes) never change; the
/// checkpoint does, every second while the log grows.
const IMMUTABLE: &str = "public, max-age=31536000, immutable";
const SHORT: &str = "public, max-age=1";

/// What the routes read.
pub struct Http {
    pub node: Arc<NodeState>,
    pub witness: Option<Arc<Witness>>,
    /// The browser console's routes (`crate::console::router_with`), served under
    /// `/console`, when it is on.
    pub console: Option<Router>,
}

/// The routes, for [`serve`] and for tests.
pub fn router(state: Arc<Http>) -> Router {
    let mut app = Router::new();
    if let Some(console) = &state.console {
        // The console's router sees the whole path (it routes `/console/...` itself).
        // `{*rest}` matches no empty rest, so `/console/` itself is routed on its own.
        app = app
            .route_service("/console", console.clone())
            .route_service("/console/", console.clone())
            .route_service("/console/{*rest}", console.clone());
    }
    app.route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/checkpoint", get(checkpoint))
        .route(
            "/add-checkpoint",
            post(add_checkpoint).layer(DefaultBodyLimit::max(silkgate_verify::witness::MAX_REQUEST_BYTES)),
        )
        .fallback(tile)
        .with_state(state)
}

/// Serves [`router`] over HTTP/1.1 on `listener` (keep-alive allowed; headers within
/// 5 s; a connection lasts at most 30 s; at most [`MAX_CONNECTIONS`] at once).
pub async fn serve(listener: TcpListener, state: Arc<Http>) {
    let app = router(state);
    let permits = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    let mut backoff = Backoff::default();
    loop {
        let Ok(permit) = permits.clone().acquire_owned().await else { return };
        let sock = match listener.accept().await {
            Ok((sock, _)) => {
                backoff.reset();
                sock
            }
            Err(e) => {
                // Out of file descriptors, most often: retrying at once would spin.
                tracing::warn!(error = %e, retry_ms = backoff.delay().as_millis() as u64, "http accept failed");
                backoff.wait().await;
                continue;
            }
        };
        let app = app.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let mut app = app.clone();
                async move { Ok::<_, Infallible>(app.call(req.map(Body::new)).await.unwrap_or_else(|e| match e {})) }
            });
            let mut http = hyper::server::conn::http1::Builder::new();
            http.timer(hyper_util::rt::TokioTimer::new()).header_read_timeout(HEADER_TIMEOUT);
            let conn = http.serve_connection(hyper_util::rt::TokioIo::new(sock), service);
            let _ = tokio::time::timeout(CONNECTION_TIMEOUT, conn).await;
            drop(permit);
        });
    }
}

fn text(status: StatusCode, body: impl Into<String>) -> Response {
    let mut body = body.into();
    body.push('\n');
    (status, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], body).into_response()
}

async fn metrics(State(s): State<Arc<Http>>) -> Response {
    let node = &s.node;
    if let Some(log) = &node.log {
        node.metrics.observe_log(log);
    }
    node.metrics.observe_reload(&node.reload);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], node.metrics.encode()).into_response()
}

fn no_log() -> Response {
    text(StatusCode::NOT_FOUND, "this node keeps no decision log")
}

async fn checkpoint(State(s): State<Arc<Http>>) -> Response {
    let Some(log) = s.node.log.as_ref() else { return no_log() };
    let Some((note, _)) = log.stored_checkpoint() else {
        return text(StatusCode::SERVICE_UNAVAILABLE, "no checkpoint stored yet");
    };
    let mut r = (StatusCode::OK, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], note).into_response();
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static(SHORT));
    r
}

/// Every path not routed above: tiles and entry bundles, else 404.
async fn tile(State(s): State<Arc<Http>>, method: Method, uri: Uri) -> Response {
    let Some(rel) = uri.path().strip_prefix('/').filter(|p| p.starts_with("tile/")) else {
        return text(StatusCode::NOT_FOUND, "not found");
    };
    if method != Method::GET && method != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "tiles are read with GET");
    }
    let t = match tiles::parse(rel) {
        Ok(t) => t,
        Err(e) => return text(StatusCode::BAD_REQUEST, e.to_string()),
    };
    let Some(log) = s.node.log.clone() else { return no_log() };
    let size = log.stored_checkpoint().map_or(0, |c| c.1.size);
    if !t.exists_in(size) {
        return text(
            StatusCode::NOT_FOUND,
            format!("{} is not in the tree of the stored checkpoint (size {size})", t.path()),
        );
    }
    // File reads: on the blocking pool.
    let read = tokio::task::spawn_blocking(move || match t.level {
        Some(l) => {
            log.level_hashes(u32::from(l) * TILE_HEIGHT, t.start(), u64::from(t.width)).map_err(|e| e.to_string())
        }
        None => {
            let entries = log.stored_entries(t.start(), u64::from(t.width)).map_err(|e| e.to_string())?;
            let mut bundle = Vec::with_capacity(entries.iter().map(|e| e.len() + 2).sum());
            for (i, e) in entries.iter().enumerate() {
                tiles::push_entry(&mut bundle, e).map_err(|e| format!("entry {}: {e}", t.start() + i as u64))?;
            }
            Ok(bundle)
        }
    })
    .await;
    match read {
        Ok(Ok(bytes)) => {
            let mut r = (StatusCode::OK, [(header::CONTENT_TYPE, "application/octet-stream")], Bytes::from(bytes))
                .into_response();
            r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static(IMMUTABLE));
            r
        }
        Ok(Err(e)) => {
            tracing::error!(tile = %t.path(), error = %e, "could not read a tile");
            text(StatusCode::INTERNAL_SERVER_ERROR, "could not read the tile")
        }
        Err(_) => text(StatusCode::INTERNAL_SERVER_ERROR, "could not read the tile"),
    }
}

async fn add_checkpoint(State(s): State<Arc<Http>>, body: Bytes) -> Response {
    let Some(w) = s.witness.clone() else {
        return text(StatusCode::NOT_FOUND, "this node witnesses no logs");
    };
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let Ok(a) = tokio::task::spawn_blocking(move || w.add_checkpoint(&body, now)).await else {
        return text(StatusCode::INTERNAL_SERVER_ERROR, "witness failed");
    };
    let status = StatusCode::from_u16(a.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, [(header::CONTENT_TYPE, a.content_type)], a.body).into_response()
}
