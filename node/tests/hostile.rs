//! Hostile clients against the real server: requests crafted byte by byte (a field
//! repeated, invalid UTF-8, truncated messages, huge values), each answered
//! INVALID_ARGUMENT or NOT_FOUND naming the field with a bounded message; and
//! connections that send half a preface or read no answers, which hold bounded
//! resources for a bounded time.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut};
use prost::Message;
use silkgate::proto;
use silkgate::server::{ConnectionLimits, Options};
use silkgate::service::{MAX_MESSAGE_LEN, NodeState};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tonic::Code;

const EXCHANGE_RULE: &str = r#"
[[rule]]
id = "xx.exchange"
effect = "deny"
when = 'any services in ["exchange"]'
message = "no exchanges"
citation = "XX Act s. 3"
"#;

/// Starts the node in this process on a free port, with a log in `dir`.
async fn start(dir: &Path, options: Options) -> std::net::SocketAddr {
    start_with_state(dir, options).await.0
}

async fn start_with_state(dir: &Path, options: Options) -> (std::net::SocketAddr, Arc<NodeState>) {
    common::start_in_process(dir, &format!("{}{EXCHANGE_RULE}", common::POLICY), "hostile", options).await
}

/// A message sent as the exact bytes given.
#[derive(Clone, Debug, Default, PartialEq)]
struct Raw(Vec<u8>);

impl Message for Raw {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        buf.put_slice(&self.0);
    }
    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: prost::encoding::WireType,
        buf: &mut impl Buf,
        ctx: prost::encoding::DecodeContext,
    ) -> Result<(), prost::DecodeError> {
        prost::encoding::skip_field(wire_type, tag, buf, ctx)
    }
    fn encoded_len(&self) -> usize {
        self.0.len()
    }
    fn clear(&mut self) {
        self.0.clear()
    }
}

async fn call<T: Message + Default + Send + 'static>(
    addr: std::net::SocketAddr,
    method: &str,
    body: Vec<u8>,
) -> Result<T, tonic::Status> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}")).unwrap().connect().await.unwrap();
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.unwrap();
    let path = format!("/silkgate.v1.Compliance/{method}").parse().unwrap();
    let codec = tonic_prost::ProstCodec::<Raw, T>::default();
    grpc.unary(tonic::Request::new(Raw(body)), path, codec).await.map(|r| r.into_inner())
}

async fn evaluate(addr: std::net::SocketAddr, body: Vec<u8>) -> Result<proto::EvaluateResponse, tonic::Status> {
    call(addr, "Evaluate", body).await
}

async fn batch(addr: std::net::SocketAddr, items: &[Vec<u8>]) -> Result<proto::EvaluateBatchResponse, tonic::Status> {
    let mut body = Vec::new();
    for item in items {
        prost::encoding::bytes::encode(1, item, &mut body);
    }
    call(addr, "EvaluateBatch", body).await
}

/// One length-delimited field.
fn field(tag: u32, value: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    prost::encoding::bytes::encode(tag, &value.to_vec(), &mut out);
    out
}

fn deployment(services: &[proto::Service]) -> Vec<u8> {
    let mut r = common::request("XX", "dup").request.unwrap();
    r.services = services.iter().map(|&s| s as i32).collect();
    r.encode_to_vec()
}

fn assert_invalid(result: Result<impl std::fmt::Debug, tonic::Status>, message: &str) {
    let status = result.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert_eq!(status.message(), message);
}

/// A first copy asking for an exchange, then a harmless one: protobuf parsers merge the
/// two (an exchange, which the policy denies), so evaluating the last alone would sign an ALLOW
/// for a request others read as an exchange.
#[tokio::test]
async fn a_request_field_sent_twice_is_invalid_not_the_last_copy() {
    let dir = tempfile::tempdir().unwrap();
    let addr = start(dir.path(), Options::default()).await;
    let (exchange, harmless) = (deployment(&[proto::Service::Exchange]), deployment(&[]));

    // Each copy alone: the exchange is denied, the harmless one allowed.
    for (copy, verdict) in [(&exchange, proto::Verdict::Deny), (&harmless, proto::Verdict::Allow)] {
        let r = evaluate(addr, [field(1, b"XX"), field(2, copy)].concat()).await.unwrap();
        let d = proto::Decision::decode(r.decision.unwrap().payload.as_slice()).unwrap();
        assert_eq!(d.verdict, verdict as i32, "{d:?}");
    }

    let twice = [field(1, b"XX"), field(2, &exchange), field(2, &harmless)].concat();
    assert_invalid(evaluate(addr, twice.clone()).await, "request: appears more than once");

    let r = batch(addr, &[[field(1, b"XX"), field(2, &harmless)].concat(), twice]).await.unwrap();
    assert!(matches!(r.results[0].result, Some(proto::batch_result::Result::Ok(_))));
    let Some(proto::batch_result::Result::Error(e)) = &r.results[1].result else { panic!("{:?}", r.results[1]) };
    assert_eq!((e.code, e.field.as_str()), (Code::InvalidArgument as i32, "request"));
    assert_eq!(e.message, "items[1].request: appears more than once");
}

/// tonic answers INTERNAL for a message its decoder refuses; these are the client's
/// fault, and get INVALID_ARGUMENT naming the field.
#[tokio::test]
async fn undecodable_requests_are_invalid_arguments_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let addr = start(dir.path(), Options::default()).await;
    let harmless = deployment(&[]);

    let bad_utf8 = [field(1, b"C\xffN"), field(2, &harmless)].concat();
    assert_invalid(evaluate(addr, bad_utf8.clone()).await, "jurisdiction: not valid UTF-8");

    // `request` says 100 bytes follow; 3 do.
    let truncated = [field(1, b"XX"), vec![0x12, 100, 1, 2, 3]].concat();
    let status = evaluate(addr, truncated.clone()).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(status.message().starts_with("request: cannot be decoded"), "{status:?}");

    // In a batch each bad item fails alone.
    let r = batch(addr, &[bad_utf8, truncated, [field(1, b"XX"), field(2, &harmless)].concat()]).await.unwrap();
    let codes: Vec<i32> = r
        .results
        .iter()
        .map(|r| match &r.result {
            Some(proto::batch_result::Result::Error(e)) => e.code,
            _ => 0,
        })
        .collect();
    assert_eq!(codes, [Code::InvalidArgument as i32, Code::InvalidArgument as i32, 0]);

    // A batch whose list cannot be read fails as a whole, naming the item.
    let status = call::<proto::EvaluateBatchResponse>(addr, "EvaluateBatch", vec![0x0a, 0x05, 1]).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(status.message().starts_with("items[0]: cannot be decoded"), "{status:?}");
}

/// A megabyte value once came back as megabytes of error metadata.
#[tokio::test]
async fn errors_echo_a_bounded_part_of_the_input() {
    let dir = tempfile::tempdir().unwrap();
    let addr = start(dir.path(), Options::default()).await;
    let huge = "Z".repeat(1 << 20);

    let status = evaluate(addr, [field(1, huge.as_bytes()), field(2, &deployment(&[]))].concat()).await.unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    assert!(status.message().starts_with(&format!("jurisdiction: no policy for `{}…`", "Z".repeat(128))), "{status:?}");
    assert!(status.message().len() <= MAX_MESSAGE_LEN);

    let mut r = common::request("XX", "big").request.unwrap();
    r.node_regions = vec![huge.clone()];
    let status = evaluate(addr, [field(1, b"XX"), field(2, &r.encode_to_vec())].concat()).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(
        status.message(),
        format!("request.node_regions[0]: `{}…` is not a two-letter ISO 3166-1 code", "Z".repeat(128))
    );

    let mut r = common::request("XX", "big").request.unwrap();
    r.labels.insert(huge.clone(), "v".into());
    let status = evaluate(addr, [field(1, b"XX"), field(2, &r.encode_to_vec())].concat()).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().len() < 300, "{}", status.message().len());

    let item = [field(1, &huge.as_bytes()[..1 << 19]), field(2, &deployment(&[]))].concat();
    let r = batch(addr, &[item]).await.unwrap();
    let Some(proto::batch_result::Result::Error(e)) = &r.results[0].result else { panic!() };
    assert_eq!(e.code, Code::NotFound as i32);
    assert!(e.message.len() <= MAX_MESSAGE_LEN);
}

// Raw HTTP/2, to be a client no library would be: one that stops half-way through the
// preface, or that opens streams and never lets the server send their answers.

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const DATA: u8 = 0;
const HEADERS: u8 = 1;
const RST_STREAM: u8 = 3;
const SETTINGS: u8 = 4;
const PING: u8 = 6;
const ACK: u8 = 1;
const REFUSED_STREAM: u32 = 7;

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = (payload.len() as u32).to_be_bytes()[1..].to_vec();
    out.extend([kind, flags]);
    out.extend(stream.to_be_bytes());
    out.extend(payload);
    out
}

/// The next frame: its type, flags, stream and payload; `None` once the server closed
/// the connection or sent nothing within `wait`.
async fn next_frame(sock: &mut TcpStream, wait: Duration) -> Option<(u8, u8, u32, Vec<u8>)> {
    tokio::time::timeout(wait, async {
        let mut head = [0u8; 9];
        sock.read_exact(&mut head).await.ok()?;
        let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
        let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
        let mut payload = vec![0u8; len];
        sock.read_exact(&mut payload).await.ok()?;
        Some((head[3], head[4], stream, payload))
    })
    .await
    .ok()
    .flatten()
}

/// The server's SETTINGS, as (identifier, value) pairs.
async fn server_settings(sock: &mut TcpStream) -> Vec<(u16, u32)> {
    loop {
        let (kind, flags, _, payload) = next_frame(sock, Duration::from_secs(5)).await.expect("server SETTINGS");
        if kind == SETTINGS && flags & ACK == 0 {
            return payload
                .chunks(6)
                .map(|c| (u16::from_be_bytes([c[0], c[1]]), u32::from_be_bytes([c[2], c[3], c[4], c[5]])))
                .collect();
        }
    }
}

/// HPACK: each header a literal without indexing, names and values not Huffman-coded.
fn header_block(headers: &[(&str, &str)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, value) in headers {
        out.push(0);
        out.push(name.len() as u8);
        out.extend(name.as_bytes());
        out.push(value.len() as u8);
        out.extend(value.as_bytes());
    }
    out
}

/// Frames opening `stream` with one Evaluate call, request sent in full.
fn evaluate_call(stream: u32, id: &str) -> Vec<u8> {
    let headers = header_block(&[
        (":method", "POST"),
        (":scheme", "http"),
        (":path", "/silkgate.v1.Compliance/Evaluate"),
        (":authority", "silkgate"),
        ("content-type", "application/grpc"),
        ("te", "trailers"),
    ]);
    let message = common::request("XX", id).encode_to_vec();
    let mut body = vec![0];
    body.extend((message.len() as u32).to_be_bytes());
    body.extend(message);
    [frame(HEADERS, 0x4, stream, &headers), frame(DATA, 0x1, stream, &body)].concat()
}

/// A client that sends half the preface and then nothing is closed once the handshake
/// timeout passes; one that sends it all in time is served.
#[tokio::test]
async fn a_half_sent_preface_is_closed_at_the_handshake_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let timeout = Duration::from_millis(400);
    let connections = ConnectionLimits { handshake_timeout: timeout, ..Default::default() };
    let addr = start(dir.path(), Options { connections, ..Default::default() }).await;

    let mut slow = TcpStream::connect(addr).await.unwrap();
    let t = Instant::now();
    slow.write_all(&PREFACE[..10]).await.unwrap();
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(Duration::from_secs(10), slow.read(&mut buf)).await;
    assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "still open after 10 s: {read:?}");
    let took = t.elapsed();
    assert!(took >= timeout - Duration::from_millis(50) && took < timeout * 5, "closed after {took:?}");

    // At the bound: the rest of the preface comes late, but in time.
    let mut late = TcpStream::connect(addr).await.unwrap();
    late.write_all(&PREFACE[..10]).await.unwrap();
    tokio::time::sleep(timeout / 2).await;
    late.write_all(&PREFACE[10..]).await.unwrap();
    late.write_all(&frame(SETTINGS, 0, 0, &[])).await.unwrap();
    server_settings(&mut late).await;
    tokio::time::sleep(timeout * 2).await;
    late.write_all(&frame(PING, 0, 0, b"12345678")).await.unwrap();
    loop {
        let (kind, flags, _, payload) =
            next_frame(&mut late, Duration::from_secs(5)).await.expect("open and answering");
        if kind == PING {
            assert_eq!((flags, payload.as_slice()), (ACK, b"12345678".as_slice()));
            break;
        }
    }
}

/// A client that opens streams and never reads (a zero flow-control window) once had
/// 60,000 calls evaluated and held on one connection; now streams past the limit are
/// refused, and only those within it are evaluated.
#[tokio::test]
async fn a_connection_holds_at_most_max_streams_calls() {
    let dir = tempfile::tempdir().unwrap();
    let connections = ConnectionLimits { max_streams: 4, ..Default::default() };
    let (addr, state) = start_with_state(dir.path(), Options { connections, ..Default::default() }).await;

    let mut sock = TcpStream::connect(addr).await.unwrap();
    sock.write_all(PREFACE).await.unwrap();
    // SETTINGS_INITIAL_WINDOW_SIZE = 0: the server may send no answer's DATA.
    sock.write_all(&frame(SETTINGS, 0, 0, &[0, 4, 0, 0, 0, 0])).await.unwrap();
    let settings = server_settings(&mut sock).await;
    sock.write_all(&frame(SETTINGS, ACK, 0, &[])).await.unwrap();

    let streams: Vec<u32> = (0..20).map(|i| 1 + 2 * i).collect();
    for &s in &streams {
        sock.write_all(&evaluate_call(s, &format!("slow-{s}"))).await.unwrap();
    }
    let mut refused = Vec::new();
    while let Some((kind, _, stream, payload)) = next_frame(&mut sock, Duration::from_secs(1)).await {
        if kind == RST_STREAM && u32::from_be_bytes(payload[..4].try_into().unwrap()) == REFUSED_STREAM {
            refused.push(stream);
        }
    }
    assert_eq!(refused, streams[4..], "streams past the 4th refused");
    let log = state.log.as_ref().unwrap();
    assert_eq!(log.size(), 4, "only the streams within the limit were evaluated");
    assert!(settings.contains(&(3, 4)), "SETTINGS_MAX_CONCURRENT_STREAMS = 4 in {settings:?}");
}

/// A client holds at most `max_connections_per_client` connections: one more is closed
/// at once, before its preface, and counted; other clients are still served, and a closed
/// connection gives its place back.
#[tokio::test]
async fn a_client_holds_at_most_its_bound_on_connections() {
    let dir = tempfile::tempdir().unwrap();
    let connections = ConnectionLimits { max_connections_per_client: 2, ..Default::default() };
    let (addr, state) = start_with_state(dir.path(), Options { connections, ..Default::default() }).await;
    let open = || async {
        let mut sock = TcpStream::connect(addr).await.unwrap();
        sock.write_all(PREFACE).await.unwrap();
        sock.write_all(&frame(SETTINGS, 0, 0, &[])).await.unwrap();
        sock
    };
    let mut held = vec![open().await, open().await];
    for sock in &mut held {
        server_settings(sock).await;
    }
    let mut third = open().await;
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(Duration::from_secs(10), third.read(&mut buf)).await;
    assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "the third connection is still open: {read:?}");
    let text = state.metrics.encode();
    assert!(text.contains(r#"silkgate_rejected_requests_total{reason="client_connections"} 1"#), "{text}");

    // Another address of this machine is another client.
    let other = tokio::net::TcpSocket::new_v4().unwrap();
    other.bind("127.0.0.2:0".parse().unwrap()).unwrap();
    let mut other = other.connect(addr).await.unwrap();
    other.write_all(PREFACE).await.unwrap();
    other.write_all(&frame(SETTINGS, 0, 0, &[])).await.unwrap();
    server_settings(&mut other).await;

    drop(held.pop());
    // The server sees the close when it next reads; then the place is free again.
    let mut again = None;
    for _ in 0..100 {
        let mut sock = open().await;
        let mut first = [0u8; 9];
        match tokio::time::timeout(Duration::from_secs(5), sock.read_exact(&mut first)).await {
            Ok(Ok(_)) => {
                again = Some(sock);
                break;
            }
            _ => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
    assert!(again.is_some(), "a closed connection gave its place back");
}

#[test]
fn connection_settings_out_of_range_exit_64_naming_the_setting() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for (args, env, needle) in [
        (
            &["--max-streams-per-connection", "0"][..],
            None,
            "max_streams_per_connection: must be between 1 and 65535, got 0",
        ),
        (&["--handshake-timeout-ms", "5"], None, "handshake_timeout_ms: must be between 10 and 300000, got 5"),
        (
            &[],
            Some(("SILKGATE_KEEPALIVE_TIMEOUT_SECS", "0")),
            "keepalive_timeout_secs: must be between 1 and 3600, got 0",
        ),
        (&["--keepalive-interval-secs", "86401"], None, "keepalive_interval_secs: must be between 0 and 86400"),
        (&["--max-connection-age-secs", "31536001"], None, "max_connection_age_secs: must be between 0 and 31536000"),
        (
            &["--max-connection-age-grace-secs", "86401"],
            None,
            "max_connection_age_grace_secs: must be between 0 and 86400",
        ),
        (&["--config", "c.toml"], None, "max_header_list_bytes: must be between 1024 and 1048576, got 10"),
        (
            &["--max-connections-per-client", "1048577"],
            None,
            "max_connections_per_client: must be between 0 and 1048576",
        ),
        (&[], Some(("SILKGATE_MAX_CONNECTIONS", "1048577")), "max_connections: must be between 0 and 1048576"),
    ] {
        std::fs::write(d.join("c.toml"), "max_header_list_bytes = 10\n").unwrap();
        let mut cmd = common::bin();
        cmd.arg("serve").args(args).current_dir(d);
        if let Some((k, v)) = env {
            cmd.env(k, v);
        }
        let out = cmd.output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(64), "{args:?}: {stderr}");
        assert!(stderr.contains(needle), "expected `{needle}` in: {stderr}");
    }
}

/// Deciding 1000 items takes tens of milliseconds of CPU; on an async worker it would
/// hold up every other task of that worker (and the per-call timeout could not
/// interrupt it). On one runtime thread, a task that counts its turns must get turns
/// while the batch is decided; the answers stay in order.
#[test]
fn a_large_batch_is_decided_off_the_async_worker() {
    use silkgate::proto::server::compliance_server::Compliance;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let policy = dir.path().join("policy");
        std::fs::create_dir_all(&policy).unwrap();
        std::fs::write(policy.join("xx.toml"), common::POLICY).unwrap();
        let policies = silkgate::loader::load_dir(&policy, None).unwrap();
        let key = silkgate::keys::load_or_create(&dir.path().join("node.key")).unwrap();
        // No log: its append would give the other task turns whatever the batch does.
        let state = NodeState::new("b".into(), policies, Arc::new(key.signer), key.valid_from, 60, None);
        let limits = silkgate::limits::Limits::new(silkgate::limits::LimitConfig::default());
        let service = silkgate::service::ComplianceService::new(
            Arc::new(state),
            Arc::new(limits),
            Arc::new(silkgate::tls::Authz::default()),
        );

        let (turns, done) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicBool::new(false)));
        let (t, d) = (turns.clone(), done.clone());
        tokio::spawn(async move {
            while !d.load(Ordering::Relaxed) {
                t.fetch_add(1, Ordering::Relaxed);
                tokio::task::yield_now().await;
            }
        });
        let items = (0..silkgate::service::MAX_BATCH)
            .map(|i| silkgate::wire::EvaluateRequest {
                jurisdiction: "XX".into(),
                request: Some(common::request("XX", &format!("b{i}")).request.unwrap().encode_to_vec().into()),
                ..Default::default()
            })
            .collect();
        let batch = silkgate::wire::EvaluateBatchRequest { items, ..Default::default() };
        let before = turns.load(Ordering::Relaxed);
        let r = service.evaluate_batch(tonic::Request::new(batch)).await.unwrap().into_inner();
        let during = turns.load(Ordering::Relaxed) - before;
        done.store(true, Ordering::Relaxed);

        assert!(during > 0, "the other task got no turn while the batch was decided");
        assert_eq!(r.results.len(), silkgate::service::MAX_BATCH);
        for (i, result) in r.results.into_iter().enumerate() {
            let Some(silkgate::wire::batch_result::Result::Ok(ok)) = result.result else { panic!("item {i}") };
            let signed = proto::SignedDecision::decode(ok.decision.unwrap()).unwrap();
            let d = proto::Decision::decode(signed.payload.as_slice()).unwrap();
            assert_eq!(d.request_id, format!("b{i}"));
        }
    });
}

/// A call counts against --max-concurrency until its answer is sent: two calls whose
/// answers a client does not read hold both permits, so a third is refused; once that
/// client goes away, calls are served again.
#[tokio::test]
async fn answers_not_yet_sent_count_against_the_concurrency_limit() {
    let dir = tempfile::tempdir().unwrap();
    let limits = silkgate::limits::LimitConfig { max_concurrency: 2, ..Default::default() };
    let (addr, state) = start_with_state(dir.path(), Options { limits, ..Default::default() }).await;

    let mut slow = TcpStream::connect(addr).await.unwrap();
    slow.write_all(PREFACE).await.unwrap();
    slow.write_all(&frame(SETTINGS, 0, 0, &[0, 4, 0, 0, 0, 0])).await.unwrap();
    server_settings(&mut slow).await;
    slow.write_all(&frame(SETTINGS, ACK, 0, &[])).await.unwrap();
    slow.write_all(&[evaluate_call(1, "slow-1"), evaluate_call(3, "slow-3")].concat()).await.unwrap();
    let log = state.log.as_ref().unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while log.size() < 2 {
        assert!(Instant::now() < deadline, "the two calls were not decided");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let mut client = common::connect(&format!("http://{addr}")).await;
    let status = client.evaluate(common::request("XX", "third")).await.unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");

    drop(slow);
    let deadline = Instant::now() + Duration::from_secs(5);
    while client.evaluate(common::request("XX", "after")).await.is_err() {
        assert!(Instant::now() < deadline, "permits not released when the connection closed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Every status leaving the server has a bounded message, also those built by services
/// that repeat input unbounded (the DecisionLog's unknown decision id).
#[tokio::test]
async fn every_status_message_is_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let addr = start(dir.path(), Options::default()).await;
    let mut log = proto::decision_log_client::DecisionLogClient::connect(format!("http://{addr}")).await.unwrap();
    let id = "d".repeat(1 << 20);
    let request = proto::GetInclusionProofRequest {
        target: Some(proto::get_inclusion_proof_request::Target::DecisionId(id)),
        ..Default::default()
    };
    let status = log.get_inclusion_proof(request).await.unwrap_err();
    assert_eq!(status.code(), Code::NotFound, "{status:?}");
    assert!(status.message().starts_with("decision_id: `ddd"), "{}", &status.message()[..40]);
    assert!(status.message().len() <= silkgate::server::MAX_GRPC_MESSAGE, "{}", status.message().len());
}

/// CPU time a process has used, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // After the command name in parentheses: state is field 3, utime 14 and stime 15.
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

/// Out of file descriptors, accept fails for as long as connections wait in the
/// backlog; the accept loops once retried at once, spinning a core. Now they back off,
/// so the node stays idle (measured in CPU ticks, a bound ten times what it uses).
#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_out_of_descriptors_does_not_spin_the_accept_loops() {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy");
    std::fs::create_dir_all(&policy).unwrap();
    std::fs::write(policy.join("xx.toml"), common::POLICY).unwrap();
    let mport = common::free_port();
    let data = dir.path().join("data");
    let metrics = format!("127.0.0.1:{mport}");
    let args: Vec<&std::ffi::OsStr> = [
        "--policy-dir".as_ref(),
        policy.as_os_str(),
        "--data-dir".as_ref(),
        data.as_os_str(),
        "--metrics-listen".as_ref(),
        metrics.as_ref(),
        "--reload-interval-ms".as_ref(),
        "60000".as_ref(),
    ]
    .to_vec();
    let node = common::Node::start(&args);
    drop(common::connect(&node.url).await);
    let pid = node.child.id();

    let open = std::fs::read_dir(format!("/proc/{pid}/fd")).unwrap().count() as u64;
    let mut old = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    let new = libc::rlimit { rlim_cur: open + 1, rlim_max: open + 1 };
    // SAFETY: plain system call on a child of this process, with valid pointers.
    let rc = unsafe { libc::prlimit(pid as libc::pid_t, libc::RLIMIT_NOFILE, &new, &mut old) };
    assert_eq!(rc, 0, "prlimit: {}", std::io::Error::last_os_error());

    let mut waiting = Vec::new();
    for port in [node.port, mport] {
        for _ in 0..8 {
            waiting.push(TcpStream::connect(("127.0.0.1", port)).await.unwrap());
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = cpu_ticks(pid);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let used = cpu_ticks(pid) - before;
    // 2 s is 200 ticks of one core at 100 Hz; spinning used 100 or more.
    assert!(used <= 20, "the node used {used} ticks in 2 s with accept failing");
}

/// /metrics runs on hyper's HTTP/1 server: same route, content type and body as the
/// hand-written one it replaced, and a client that never finishes its headers is
/// closed after the 5 s header timeout.
#[tokio::test]
async fn metrics_answer_over_hyper_and_drop_slow_headers() {
    let dir = tempfile::tempdir().unwrap();
    let (_, state) = start_with_state(dir.path(), Options::default()).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(silkgate::http::serve(
        listener,
        Arc::new(silkgate::http::Http { node: state.clone(), witness: None, console: None }),
    ));

    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    assert!(out.starts_with("HTTP/1.1 200 OK\r\n"), "{out}");
    assert!(out.to_ascii_lowercase().contains("content-type: text/plain; version=0.0.4\r\n"), "{out}");
    assert!(out.contains("silkgate_log_entries"), "{out}");

    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /nothing HTTP/1.1\r\n\r\n").await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    assert!(out.starts_with("HTTP/1.1 404 Not Found\r\n"), "{out}");

    let mut slow = TcpStream::connect(addr).await.unwrap();
    let t = Instant::now();
    slow.write_all(b"GET /metr").await.unwrap();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(15), slow.read_to_end(&mut buf)).await;
    assert!(read.is_ok(), "a client with half its headers still connected after 15 s");
    assert!(t.elapsed() >= Duration::from_secs(4), "closed after {:?}", t.elapsed());
}
