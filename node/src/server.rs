//! Runs the gRPC server on an already bound listener until `shutdown` resolves.
//!
//! Taking the listener (not an address) lets tests bind `127.0.0.1:0` and read the port.
//! Besides `Compliance` and `DecisionLog` the server answers `grpc.health.v1.Health`
//! (SERVING only while policies, key and log are usable) and server reflection (v1 and
//! v1alpha), so grpcurl works without the proto files.
//!
//! Every connection is bounded (see [`ConnectionLimits`]): its handshake and HTTP/2
//! preface must arrive in time, it holds a bounded number of calls, idle peers are
//! pinged and old connections retired; each call holds its admission permit until its
//! answer is sent, and no status message leaves longer than [`MAX_GRPC_MESSAGE`].
//!
//! The transport tuning lives here too, public so that the load generator's reference
//! servers run with exactly the node's: the allocator ([`Allocator`]), the runtime
//! ([`runtime`]), the connection bounds ([`builder`]) and the connections ([`serve`]:
//! Nagle off, handshake deadline, writes coalesced by `Coalesced`).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tonic::service::Routes;
use tonic::transport::server::{Connected, Router};

use crate::limits::{Admitted, ConnectionSlot, Connections, LimitConfig, Limits};
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
    pub connections: ConnectionLimits,
    /// Serve TLS (and mTLS when the state has a client CA).
    pub tls: Option<Arc<TlsState>>,
    pub authz: Authz,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            max_request_bytes: MAX_MESSAGE_BYTES,
            limits: LimitConfig::default(),
            connections: ConnectionLimits::default(),
            tls: None,
            authz: Authz::default(),
        }
    }
}

/// What one client connection may hold: bounds against slow or silent peers.
#[derive(Clone, Debug)]
pub struct ConnectionLimits {
    /// Calls (HTTP/2 streams) open at once on one connection; more are refused
    /// (REFUSED_STREAM) until one ends. A stream stays open until its answer is sent, so
    /// a client that reads nothing holds at most this many.
    pub max_streams: u32,
    /// Time from accept to a complete TLS handshake and HTTP/2 client preface; a
    /// connection that has not sent them by then is closed.
    pub handshake_timeout: Duration,
    /// Idle time after which the server pings the client; `None` sends no pings.
    pub keepalive_interval: Option<Duration>,
    /// Time a ping may go unanswered before the connection is closed.
    pub keepalive_timeout: Duration,
    /// Age at which a connection is asked to close (GOAWAY; the client reconnects);
    /// `None` lets connections live for ever.
    pub max_age: Option<Duration>,
    /// Time a connection past its age has to finish its calls before it is closed.
    pub max_age_grace: Duration,
    /// Largest block of request headers accepted, in bytes.
    pub max_header_list_bytes: u32,
    /// Connections open at once, in all (counted from accept, so connections still in
    /// their handshake count); one more is closed at once. 0 is no limit.
    pub max_connections: usize,
    /// Connections open at once from one client address (an IPv6 client by its /64);
    /// one more is closed at once. 0 is no limit.
    pub max_connections_per_client: usize,
}

/// The default bound on connections open at once, in all.
pub const DEFAULT_MAX_CONNECTIONS: usize = 4096;
/// The default bound on connections open at once from one client address.
pub const DEFAULT_MAX_CONNECTIONS_PER_CLIENT: usize = 128;

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            max_streams: 256,
            handshake_timeout: Duration::from_secs(10),
            keepalive_interval: Some(Duration::from_secs(60)),
            keepalive_timeout: Duration::from_secs(20),
            max_age: Some(Duration::from_secs(3600)),
            max_age_grace: Duration::from_secs(60),
            max_header_list_bytes: 16 << 10,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_connections_per_client: DEFAULT_MAX_CONNECTIONS_PER_CLIENT,
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
    let metrics = state.metrics.clone();
    let log =
        state.log.clone().map(|l| DecisionLogServer::with_interceptor(DecisionLogService::new(l), gate(Group::Log)));
    let network = crate::proto::server::network_server::NetworkServer::new(
        crate::network::certify::NetworkService::new(state.clone(), limits.clone(), authz.clone()),
    )
    .max_decoding_message_size(options.max_request_bytes);
    let compliance = ComplianceServer::new(ComplianceService::new(state, limits, authz.clone()))
        .max_decoding_message_size(options.max_request_bytes);
    let router = builder(&options.connections)
        .layer(AnswerLayer)
        .add_service(health_service)
        .add_service(compliance)
        .add_service(network)
        .add_optional_service(log)
        .add_optional_service(reflection_v1)
        .add_optional_service(reflection_v1alpha);
    let connections = Connections::new(
        options.connections.max_connections,
        options.connections.max_connections_per_client,
        Some(Box::new(move |reason| metrics.reject(reason))),
    );
    serve(router, listener, options.connections.handshake_timeout, connections, options.tls, shutdown).await
}

/// The allocator of the node's binary, and of the load generator's reference servers
/// (each binary declares it as its `#[global_allocator]`; a library cannot choose for
/// its users).
///
/// mimalloc instead of glibc's malloc: under load glibc's malloc and free took about 6%
/// of the node's CPU (about 4 us per decision); see the README, "Performance". Built
/// without transparent huge pages (`no_thp`, in the workspace's `Cargo.toml`): with
/// them, idle resident memory was 27 MB instead of 10.
pub use mimalloc::MiMalloc as Allocator;

/// The runtime the node serves on: multi-thread, one worker per core unless the caller
/// sets `worker_threads`, with I/O and timers, and without the "LIFO slot".
///
/// Without the LIFO slot, a task woken by another runs after the tasks already queued
/// instead of next: a connection's task, woken by each answer that becomes ready, then
/// writes all the answers of a group commit at once instead of one at a time (measured in
/// the README, "Performance"). The option needs `--cfg tokio_unstable`, set in
/// `.cargo/config.toml`; a build without it still works.
pub fn runtime() -> tokio::runtime::Builder {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.enable_all();
    #[cfg(tokio_unstable)]
    builder.disable_lifo_slot();
    builder
}

/// tonic's server builder with the per-connection bounds `c` (streams, keepalive pings,
/// connection age, header size); the handshake deadline is applied by [`serve`].
pub fn builder(c: &ConnectionLimits) -> tonic::transport::Server {
    let mut builder = tonic::transport::Server::builder()
        .max_concurrent_streams(c.max_streams)
        .http2_keepalive_interval(c.keepalive_interval)
        .http2_keepalive_timeout(Some(c.keepalive_timeout))
        .http2_max_header_list_size(c.max_header_list_bytes);
    if let Some(age) = c.max_age {
        builder = builder.max_connection_age(age).max_connection_age_grace(c.max_age_grace);
    }
    builder
}

/// Serves `router` on the connections accepted from `listener` until `shutdown`
/// resolves: each admitted by `connections` (else closed at once), with Nagle off, its
/// TLS handshake (when `tls` is set) and HTTP/2 preface done within `handshake_timeout`,
/// and its writes coalesced (see `Coalesced`).
pub async fn serve<L, B>(
    router: Router<L>,
    listener: TcpListener,
    handshake_timeout: Duration,
    connections: Arc<Connections>,
    tls: Option<Arc<TlsState>>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), tonic::transport::Error>
where
    L: tower_layer::Layer<Routes>,
    L::Service:
        tower_service::Service<http::Request<tonic::body::Body>, Response = http::Response<B>> + Clone + Send + 'static,
    <L::Service as tower_service::Service<http::Request<tonic::body::Body>>>::Future: Send,
    <L::Service as tower_service::Service<http::Request<tonic::body::Body>>>::Error: Into<BoxError> + Send,
    B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    match tls {
        None => {
            let incoming = accept(listener, handshake_timeout, connections, |sock| async move { Ok(sock) });
            router.serve_with_incoming_shutdown(incoming, shutdown).await
        }
        Some(tls) => {
            // The configuration current at accept (SIGHUP reloads it).
            let incoming = accept(listener, handshake_timeout, connections, move |sock| tls.acceptor().accept(sock));
            router.serve_with_incoming_shutdown(incoming, shutdown).await
        }
    }
}

/// What tonic accepts as an error from a service or a body.
type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The HTTP/2 client connection preface (RFC 9113, section 3.4).
const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Accepts connections until the server stops taking them, and hands over each one
/// whose `handshake` (TLS, or nothing) and HTTP/2 preface complete within `timeout`.
///
/// hyper waits for the preface for ever, so without the timeout a client that sends half
/// of it holds a socket and a task for good. Each connection does its handshake in its
/// own task, so a slow or failing client holds up no one. Accept errors (out of file
/// descriptors, most often) are retried after a [`Backoff`], not at once in a loop.
/// A connection past the bounds of `connections` is closed at once; an admitted one
/// keeps its place until it is dropped.
fn accept<S, H, F>(
    listener: TcpListener,
    timeout: Duration,
    connections: Arc<Connections>,
    handshake: H,
) -> impl tokio_stream::Stream<Item = std::io::Result<Coalesced<S>>>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    H: Fn(TcpStream) -> F + Send + 'static,
    F: Future<Output = std::io::Result<S>> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(128);
    tokio::spawn(async move {
        let mut backoff = Backoff::default();
        loop {
            let accepted = tokio::select! {
                a = listener.accept() => a,
                // The server dropped the stream: stop, and close the listening socket.
                () = tx.closed() => break,
            };
            let (sock, peer) = match accepted {
                Ok(a) => {
                    backoff.reset();
                    a
                }
                Err(e) => {
                    tracing::warn!(error = %e, retry_ms = backoff.delay().as_millis() as u64, "accept failed");
                    backoff.wait().await;
                    continue;
                }
            };
            let Some(slot) = connections.admit(peer.ip()) else {
                tracing::debug!(peer = %peer, "connection refused: too many connections");
                drop(sock);
                continue;
            };
            // Small gRPC answers must not wait for delayed ACKs (40 ms stalls on
            // sequential calls otherwise).
            let _ = sock.set_nodelay(true);
            let ready = handshake(sock);
            let tx = tx.clone();
            tokio::spawn(async move {
                let ready = async {
                    let mut stream = ready.await?;
                    let mut got = [0u8; PREFACE.len()];
                    stream.read_exact(&mut got).await?;
                    if &got != PREFACE {
                        return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, "not an HTTP/2 preface"));
                    }
                    Ok(stream)
                };
                match tokio::time::timeout(timeout, ready).await {
                    Ok(Ok(stream)) => {
                        let _ = tx.send(Ok(Coalesced::prefaced(stream, slot))).await;
                    }
                    Ok(Err(e)) => tracing::debug!(peer = %peer, error = %e, "connection handshake failed"),
                    Err(_) => tracing::debug!(peer = %peer, "connection handshake timed out"),
                }
            });
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

/// The wait between failed accepts: 10 ms, doubling to 1 s, back to 10 ms on success.
#[derive(Debug)]
pub(crate) struct Backoff(Duration);

impl Backoff {
    const FIRST: Duration = Duration::from_millis(10);
    const MOST: Duration = Duration::from_secs(1);

    pub(crate) fn delay(&self) -> Duration {
        self.0
    }

    pub(crate) fn reset(&mut self) {
        self.0 = Self::FIRST;
    }

    /// The delay to wait now; the next one is twice as long, up to a second.
    fn next(&mut self) -> Duration {
        let now = self.0;
        self.0 = (self.0 * 2).min(Self::MOST);
        now
    }

    pub(crate) async fn wait(&mut self) {
        tokio::time::sleep(self.next()).await;
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff(Self::FIRST)
    }
}

/// Around every call, once its handler has answered: moves the call's admission permit
/// ([`Admitted`], left in the response's extensions by the service) into the response
/// body, so it is released when the answer has been sent or the stream dropped; and cuts
/// `grpc-message` in headers and trailers to [`MAX_GRPC_MESSAGE`] bytes, whatever
/// service built the status.
#[derive(Clone, Copy)]
struct AnswerLayer;

impl<S> tower_layer::Layer<S> for AnswerLayer {
    type Service = Answer<S>;

    fn layer(&self, inner: S) -> Answer<S> {
        Answer(inner)
    }
}

#[derive(Clone)]
struct Answer<S>(S);

impl<S, R, B> tower_service::Service<R> for Answer<S>
where
    S: tower_service::Service<R, Response = http::Response<B>>,
{
    type Response = http::Response<HeldBody<B>>;
    type Error = S::Error;
    type Future = AnswerFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, req: R) -> Self::Future {
        AnswerFuture { inner: self.0.call(req) }
    }
}

pin_project_lite::pin_project! {
    struct AnswerFuture<F> {
        #[pin]
        inner: F,
    }
}

impl<F, B, E> Future for AnswerFuture<F>
where
    F: Future<Output = Result<http::Response<B>, E>>,
{
    type Output = Result<http::Response<HeldBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let response = std::task::ready!(self.project().inner.poll(cx))?;
        let (mut parts, body) = response.into_parts();
        cap_grpc_message(&mut parts.headers);
        let permit = parts.extensions.remove::<Admitted>();
        Poll::Ready(Ok(http::Response::from_parts(parts, HeldBody { body, _permit: permit })))
    }
}

pin_project_lite::pin_project! {
    /// A response body that holds its call's admission permit until it is dropped.
    struct HeldBody<B> {
        #[pin]
        body: B,
        _permit: Option<Admitted>,
    }
}

impl<B: http_body::Body> http_body::Body for HeldBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let mut frame = std::task::ready!(self.project().body.poll_frame(cx));
        if let Some(Ok(f)) = &mut frame
            && let Some(trailers) = f.trailers_mut()
        {
            cap_grpc_message(trailers);
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

/// Longest `grpc-message` sent, in bytes as percent-encoded on the wire: room for a
/// [`crate::service::MAX_MESSAGE_LEN`] message of ASCII with a few escapes.
pub const MAX_GRPC_MESSAGE: usize = 2048;

/// Cuts `grpc-message` to [`MAX_GRPC_MESSAGE`] bytes, never inside a `%XX` escape, and
/// marks the cut with an ellipsis.
fn cap_grpc_message(headers: &mut http::HeaderMap) {
    let Some(value) = headers.get("grpc-message") else { return };
    let bytes = value.as_bytes();
    if bytes.len() <= MAX_GRPC_MESSAGE {
        return;
    }
    const ELLIPSIS: &[u8] = b"%E2%80%A6";
    let mut end = MAX_GRPC_MESSAGE - ELLIPSIS.len();
    if let Some(escape) = bytes[end.saturating_sub(2)..end].iter().position(|&b| b == b'%') {
        end = end - 2 + escape;
    }
    let cut = [&bytes[..end], ELLIPSIS].concat();
    // Cut from a valid header value at a byte that starts no escape: still valid.
    if let Ok(v) = http::HeaderValue::from_bytes(&cut) {
        headers.insert("grpc-message", v);
    }
}

/// A connection that tells HTTP/2 it has no vectored writes.
///
/// h2 then copies frames of up to 1 KiB into its write buffer instead of sending each
/// DATA frame over 256 bytes as a buffer of its own, which ends the write there. With
/// vectored writes every answer took a `writev` of its own and often a second one for
/// its trailers; copied, the answers and trailers that are ready together leave in one
/// `write`. On loopback each write costs about as much kernel time as signing a
/// decision (see the README, "Performance").
///
/// It also gives back the HTTP/2 preface that [`accept`] read to check it: `replayed`
/// counts the bytes of [`PREFACE`] already read again. And it holds the connection's
/// place in the bounds on connections until it is dropped.
struct Coalesced<T> {
    io: T,
    replayed: usize,
    _slot: ConnectionSlot,
}

impl<T> Coalesced<T> {
    /// A connection whose preface was read and is to be read again.
    fn prefaced(io: T, slot: ConnectionSlot) -> Self {
        Coalesced { io, replayed: 0, _slot: slot }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Coalesced<T> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if this.replayed < PREFACE.len() {
            let rest = &PREFACE[this.replayed..];
            let n = rest.len().min(buf.remaining());
            buf.put_slice(&rest[..n]);
            this.replayed += n;
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.io).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Coalesced<T> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }

    fn is_write_vectored(&self) -> bool {
        false
    }
}

impl<T: Connected> Connected for Coalesced<T> {
    type ConnectInfo = T::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.io.connect_info()
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncWriteExt;
    use tokio_stream::StreamExt;

    use super::*;

    /// h2 chains DATA frames over 256 bytes instead of copying them when the connection
    /// says it writes vectors, and each answer then takes a write of its own.
    #[tokio::test]
    async fn a_coalesced_connection_writes_no_vectors_and_keeps_its_peer_and_preface() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut client = tokio::net::TcpStream::connect(addr).await.unwrap();
        let table = Connections::new(0, 0, None);
        let mut accepted = std::pin::pin!(accept(listener, Duration::from_secs(5), table, |s| async move { Ok(s) }));
        client.write_all(PREFACE).await.unwrap();
        client.write_all(b"request").await.unwrap();
        let mut server = accepted.next().await.unwrap().unwrap();
        assert!(server.io.is_write_vectored(), "tokio's TcpStream writes vectors");
        assert!(!server.is_write_vectored());
        assert_eq!(server.connect_info().remote_addr(), Some(client.local_addr().unwrap()));
        assert!(server.io.nodelay().unwrap());

        server.write_all(b"answer").await.unwrap();
        server.flush().await.unwrap();
        let mut got = [0u8; 6];
        client.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"answer");
        // The preface, read to check it, is read again, in pieces as small as asked.
        let mut got = [0u8; 31];
        server.read_exact(&mut got[..5]).await.unwrap();
        server.read_exact(&mut got[5..]).await.unwrap();
        assert_eq!(&got[..24], PREFACE);
        assert_eq!(&got[24..], b"request");
        server.shutdown().await.unwrap();
        assert_eq!(client.read(&mut got).await.unwrap(), 0, "shut down");
    }

    /// A connection past a client's bound is closed at once, before its handshake, and
    /// a closed connection gives its place back.
    #[tokio::test]
    async fn a_connection_past_the_bound_is_closed_at_once() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let table = Connections::new(0, 1, None);
        let mut accepted =
            std::pin::pin!(accept(listener, Duration::from_secs(30), table.clone(), |s| async move { Ok(s) }));
        let mut first = tokio::net::TcpStream::connect(addr).await.unwrap();
        first.write_all(PREFACE).await.unwrap();
        let server = accepted.next().await.unwrap().unwrap();
        // The second sends nothing: it is closed without waiting for its preface.
        let mut second = tokio::net::TcpStream::connect(addr).await.unwrap();
        let mut buf = [0u8; 1];
        let n = tokio::time::timeout(Duration::from_secs(10), second.read(&mut buf)).await.expect("closed at once");
        assert!(matches!(n, Ok(0) | Err(_)), "{n:?}");
        assert_eq!(table.open(), 1);
        drop(server);
        assert_eq!(table.open(), 0);
        let mut third = tokio::net::TcpStream::connect(addr).await.unwrap();
        third.write_all(PREFACE).await.unwrap();
        let _third = accepted.next().await.unwrap().unwrap();
        assert_eq!(table.open(), 1);
    }

    #[test]
    fn grpc_messages_are_cut_outside_escapes() {
        for (message, want_end) in [("a".repeat(5000), "aaa%E2%80%A6"), ("%2F".repeat(2000), "%2F%2F%E2%80%A6")] {
            let mut h = http::HeaderMap::new();
            h.insert("grpc-message", http::HeaderValue::from_str(&message).unwrap());
            cap_grpc_message(&mut h);
            let got = h.get("grpc-message").unwrap().to_str().unwrap();
            assert!(got.len() <= MAX_GRPC_MESSAGE && got.len() > MAX_GRPC_MESSAGE - 12, "{}", got.len());
            assert!(got.ends_with(want_end), "{}", &got[got.len() - 20..]);
        }
        let mut h = http::HeaderMap::new();
        h.insert("grpc-message", http::HeaderValue::from_static("short"));
        cap_grpc_message(&mut h);
        assert_eq!(h.get("grpc-message").unwrap(), "short");
    }

    #[test]
    fn accept_errors_back_off_from_10_ms_to_1_s() {
        let mut b = Backoff::default();
        let waits: Vec<u128> = (0..9).map(|_| b.next().as_millis()).collect();
        assert_eq!(waits, [10, 20, 40, 80, 160, 320, 640, 1000, 1000]);
        b.reset();
        assert_eq!(b.delay(), Duration::from_millis(10));
    }
}
