//! Runs the gRPC server on an already bound listener until `shutdown` resolves.
//!
//! Taking the listener (not an address) lets tests bind `127.0.0.1:0` and read the port.
//! Besides `Compliance` and `DecisionLog` the server answers `grpc.health.v1.Health`
//! (SERVING only while policies, key and log are usable) and server reflection (v1 and
//! v1alpha), so grpcurl works without the proto files.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::transport::server::Connected;

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
) -> impl tokio_stream::Stream<Item = std::io::Result<Coalesced<tokio_rustls::server::TlsStream<tokio::net::TcpStream>>>>
{
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
                        let _ = tx.send(Ok(Coalesced(stream))).await;
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
fn incoming(
    listener: TcpListener,
) -> impl tokio_stream::Stream<Item = std::io::Result<Coalesced<tokio::net::TcpStream>>> {
    TcpListenerStream::new(listener).map(|s| {
        let s = s?;
        s.set_nodelay(true)?;
        Ok(Coalesced(s))
    })
}

/// A connection that tells HTTP/2 it has no vectored writes.
///
/// h2 then copies frames of up to 1 KiB into its write buffer instead of sending each
/// DATA frame over 256 bytes as a buffer of its own, which ends the write there. With
/// vectored writes every answer took a `writev` of its own and often a second one for
/// its trailers; copied, the answers and trailers that are ready together leave in one
/// `write`. On loopback each write costs about as much kernel time as signing a
/// decision (see the README, "Performance").
struct Coalesced<T>(T);

impl<T: AsyncRead + Unpin> AsyncRead for Coalesced<T> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Coalesced<T> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_shutdown(cx)
    }

    fn is_write_vectored(&self) -> bool {
        false
    }
}

impl<T: Connected> Connected for Coalesced<T> {
    type ConnectInfo = T::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.0.connect_info()
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// h2 chains DATA frames over 256 bytes instead of copying them when the connection
    /// says it writes vectors, and each answer then takes a write of its own.
    #[tokio::test]
    async fn a_coalesced_connection_writes_no_vectors_and_keeps_its_peer() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut client = tokio::net::TcpStream::connect(addr).await.unwrap();
        let mut accepted = std::pin::pin!(incoming(listener));
        let mut server = accepted.next().await.unwrap().unwrap();
        assert!(server.0.is_write_vectored(), "tokio's TcpStream writes vectors");
        assert!(!server.is_write_vectored());
        assert_eq!(server.connect_info().remote_addr(), Some(client.local_addr().unwrap()));
        assert!(server.0.nodelay().unwrap());

        server.write_all(b"answer").await.unwrap();
        server.flush().await.unwrap();
        let mut got = [0u8; 6];
        client.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"answer");
        client.write_all(b"request").await.unwrap();
        let mut got = [0u8; 7];
        server.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"request");
        server.shutdown().await.unwrap();
        assert_eq!(client.read(&mut got).await.unwrap(), 0, "shut down");
    }
}
