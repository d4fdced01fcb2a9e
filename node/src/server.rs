//! Runs the gRPC server on an already bound listener until `shutdown` resolves.
//!
//! Taking the listener (not an address) lets tests bind `127.0.0.1:0` and read the port.
//! Besides `Compliance` and `DecisionLog` the server answers `grpc.health.v1.Health`
//! (SERVING only while policies, key and log are usable) and server reflection (v1 and
//! v1alpha), so grpcurl works without the proto files.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::TcpListenerStream;

use crate::limits::{LimitConfig, Limits};
use crate::log_service::DecisionLogService;
use crate::proto::decision_log_server::DecisionLogServer;
use crate::proto::server::compliance_server::ComplianceServer;
use crate::service::{ComplianceService, NodeState};
use crate::tls::{Authz, Group, TlsState};

/// Largest request message accepted by default, in bytes.
pub const MAX_MESSAGE_BYTES: usize = 4 << 20;

#[derive(Clone)]
pub struct Options {
    pub max_request_bytes: usize,
    pub limits: LimitConfig,
    /// Serve TLS (and mTLS when the state has a client CA).
    pub tls: Option<Arc<TlsState>>,
    pub authz: Authz,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            max_request_bytes: MAX_MESSAGE_BYTES,
            limits: LimitConfig::default(),
            tls: None,
            authz: Authz::default(),
        }
    }
}

/// The services' names as the health service knows them.
pub const HEALTH_SERVICES: [&str; 3] = ["", "silkgate.v1.Compliance", "silkgate.v1.DecisionLog"];

/// True when the node can answer: policies loaded and the log (if any) writable.
pub fn ready(state: &NodeState) -> bool {
    !state.policies.load().policies.is_empty() && state.log.as_ref().is_none_or(|l| l.is_healthy())
}

pub async fn run(
    listener: TcpListener,
    state: Arc<NodeState>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), tonic::transport::Error> {
    run_with(listener, state, Options::default(), shutdown).await
}

pub async fn run_with(
    listener: TcpListener,
    state: Arc<NodeState>,
    options: Options,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), tonic::transport::Error> {
    let (health, health_service) = tonic_health::server::health_reporter();
    // Health follows readiness: checked every second, and set NOT_SERVING at shutdown.
    let watched = state.clone();
    let reporter = health.clone();
    let health_task = tokio::spawn(async move {
        let mut last = None;
        loop {
            let now = ready(&watched);
            if last != Some(now) {
                let status =
                    if now { tonic_health::ServingStatus::Serving } else { tonic_health::ServingStatus::NotServing };
                for s in HEALTH_SERVICES {
                    reporter.set_service_status(s, status).await;
                }
                last = Some(now);
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });
    let shutdown = async move {
        shutdown.await;
        health_task.abort();
        for s in HEALTH_SERVICES {
            health.set_service_status(s, tonic_health::ServingStatus::NotServing).await;
        }
    };
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(crate::proto::DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let authz = Arc::new(options.authz.clone());
    let gate = |group: Group| {
        let authz = authz.clone();
        move |req: tonic::Request<()>| authz.check(req.peer_certs(), group).map(|()| req)
    };
    let reflection_v1 = reflection()
        .build_v1()
        .ok()
        .map(|s| tonic::service::interceptor::InterceptedService::new(s, gate(Group::Admin)));
    let reflection_v1alpha = reflection()
        .build_v1alpha()
        .ok()
        .map(|s| tonic::service::interceptor::InterceptedService::new(s, gate(Group::Admin)));

    let limits = Arc::new(Limits::new(options.limits.clone()));
    let log =
        state.log.clone().map(|l| DecisionLogServer::with_interceptor(DecisionLogService::new(l), gate(Group::Log)));
    let compliance = ComplianceServer::new(ComplianceService::new(state, limits, authz.clone()))
        .max_decoding_message_size(options.max_request_bytes);
    let router = tonic::transport::Server::builder()
        .add_service(health_service)
        .add_service(compliance)
        .add_optional_service(log)
        .add_optional_service(reflection_v1)
        .add_optional_service(reflection_v1alpha);
    match options.tls {
        None => router.serve_with_incoming_shutdown(incoming(listener), shutdown).await,
        Some(tls) => router.serve_with_incoming_shutdown(tls_incoming(listener, tls), shutdown).await,
    }
}

/// TLS connections: each accepted socket completes its handshake in its own task (so a
/// slow or failing client holds up no one), with the configuration current at accept.
fn tls_incoming(
    listener: TcpListener,
    tls: Arc<TlsState>,
) -> impl tokio_stream::Stream<Item = std::io::Result<tokio_rustls::server::TlsStream<tokio::net::TcpStream>>> {
    let (tx, rx) = tokio::sync::mpsc::channel(128);
    tokio::spawn(async move {
        loop {
            let Ok((sock, peer)) = listener.accept().await else { continue };
            if tx.is_closed() {
                break;
            }
            let _ = sock.set_nodelay(true);
            let acceptor = tls.acceptor();
            let tx = tx.clone();
            tokio::spawn(async move {
                match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(sock)).await {
                    Ok(Ok(stream)) => {
                        let _ = tx.send(Ok(stream)).await;
                    }
                    Ok(Err(e)) => tracing::debug!(peer = %peer, error = %e, "TLS handshake failed"),
                    Err(_) => tracing::debug!(peer = %peer, "TLS handshake timed out"),
                }
            });
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

/// Accepted connections with Nagle's algorithm off: small gRPC answers must not wait
/// for delayed ACKs (40 ms stalls on sequential calls otherwise).
fn incoming(listener: TcpListener) -> impl tokio_stream::Stream<Item = std::io::Result<tokio::net::TcpStream>> {
    TcpListenerStream::new(listener).map(|s| {
        let s = s?;
        s.set_nodelay(true)?;
        Ok(s)
    })
}
