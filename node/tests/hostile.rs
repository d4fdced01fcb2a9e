//! Hostile input against the real server: requests crafted byte by byte (a field
//! repeated, invalid UTF-8, truncated messages, huge values), each answered
//! INVALID_ARGUMENT or NOT_FOUND naming the field, with a bounded message.

mod common;

use std::path::Path;
use std::sync::Arc;

use bytes::{Buf, BufMut};
use prost::Message;
use silkgate::proto;
use silkgate::server::Options;
use silkgate::service::{MAX_MESSAGE_LEN, NodeState};
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
    let policy = dir.join("policy");
    std::fs::create_dir_all(&policy).unwrap();
    std::fs::write(policy.join("xx.toml"), format!("{}{EXCHANGE_RULE}", common::POLICY)).unwrap();
    let policies = silkgate::loader::load_dir(&policy, None).unwrap();
    let key = silkgate::keys::load_or_create(&dir.join("node.key")).unwrap();
    let signer = Arc::new(key.signer);
    let log = silkgate::log::open(dir, "hostile", signer.clone()).unwrap();
    let state = Arc::new(NodeState::new("hostile".into(), policies, signer, key.valid_from, 60, Some(log)));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(silkgate::server::run_with(listener, state, options, std::future::pending()));
    addr
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

    let item = [field(1, huge[..1 << 19].as_bytes()), field(2, &deployment(&[]))].concat();
    let r = batch(addr, &[item]).await.unwrap();
    let Some(proto::batch_result::Result::Error(e)) = &r.results[0].result else { panic!() };
    assert_eq!(e.code, Code::NotFound as i32);
    assert!(e.message.len() <= MAX_MESSAGE_LEN);
}
