//! End-to-end: the real server on 127.0.0.1:0, a tonic client, README-only verification.

use prost::Message;
use sha2::{Digest, Sha256};
use silkgate::proto;
use silkgate_tests::{TestNode, allowed_request, readme_verify};
use tonic::Code;

fn eval(jurisdiction: &str, request: proto::DeploymentRequest) -> proto::EvaluateRequest {
    proto::EvaluateRequest { jurisdiction: jurisdiction.into(), request: Some(request), explain: false }
}

#[tokio::test]
async fn evaluate_returns_verifiable_decisions() {
    let node = TestNode::start(None).await;
    let mut c = node.client().await;
    let info = c.node_info(proto::NodeInfoRequest {}).await.unwrap().into_inner();
    assert_eq!(info.node_id, "test-node");
    assert_eq!(info.jurisdictions.len(), 1);
    assert_eq!(info.jurisdictions[0].rule_count, 2);
    assert_eq!(info.keys[0].algorithm, "ed25519");
    assert_eq!(info.keys[0].public_key.len(), 32);

    let req = allowed_request("r-allow");
    let resp = c.evaluate(eval("XX", req.clone())).await.unwrap().into_inner();
    let d = readme_verify(resp.decision.as_ref().unwrap(), &info.keys).unwrap();
    assert_eq!(d.verdict, proto::Verdict::Allow as i32);
    assert!(d.default_applied);
    assert_eq!(d.request_sha256, Sha256::digest(req.encode_to_vec()).to_vec());
    assert_eq!(d.request_id, "r-allow");
    assert_eq!(resp.decision_id, d.decision_id);
    assert_eq!(d.jurisdiction, "XX");
    assert_eq!(d.node_id, "test-node");
    let policy = d.policy.unwrap();
    assert_eq!((policy.id.as_str(), policy.version.as_str()), ("xx-test", "1.0.0"));
    assert_eq!(policy.sha256, info.jurisdictions[0].policy_sha256);
    let (issued, until) = (d.issued_at.unwrap(), d.not_after.unwrap());
    assert_eq!(until.seconds - issued.seconds, 3600);

    let mut deny = allowed_request("r-deny");
    deny.permission_model = proto::PermissionModel::Permissionless as i32;
    deny.serves_retail = true;
    let resp = c.evaluate(eval("XX", deny)).await.unwrap().into_inner();
    let d = readme_verify(resp.decision.as_ref().unwrap(), &info.keys).unwrap();
    assert_eq!(d.verdict, proto::Verdict::Deny as i32);
    let ids: Vec<&str> = d.matched_rules.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, ["xx.permissionless", "xx.retail"]);
    assert_eq!(d.matched_rules[0].citation, "Test Act s. 1");
    assert_eq!(d.matched_rules[1].effect, proto::Effect::Warn as i32);

    // A changed payload byte no longer verifies.
    let mut env = resp.decision.unwrap();
    env.payload[3] ^= 0x40;
    assert!(readme_verify(&env, &info.keys).is_err());
    node.stop().await;
}

#[tokio::test]
async fn errors_name_the_field_and_never_allow() {
    let node = TestNode::start(None).await;
    let mut c = node.client().await;

    let e = c.evaluate(eval("", allowed_request("a"))).await.unwrap_err();
    assert_eq!((e.code(), e.message()), (Code::InvalidArgument, "jurisdiction: required"));

    let e = c.evaluate(eval("ZZ", allowed_request("a"))).await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    assert!(e.message().contains("no policy for `ZZ`"), "{}", e.message());

    let mut bad = allowed_request("a");
    bad.deployment_kind = 0;
    let e = c.evaluate(eval("XX", bad)).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert_eq!(e.message(), "request.deployment_kind: required (must not be UNSPECIFIED)");

    let mut bad = allowed_request("a");
    bad.token = Some(proto::Token { kind: 42, ..Default::default() });
    let e = c.evaluate(eval("XX", bad)).await.unwrap_err();
    assert_eq!(e.message(), "request.token.kind: unknown enum value 42");

    let e = c
        .evaluate(proto::EvaluateRequest { jurisdiction: "XX".into(), request: None, explain: false })
        .await
        .unwrap_err();
    assert_eq!((e.code(), e.message()), (Code::InvalidArgument, "request: required"));
    node.stop().await;
}

#[tokio::test]
async fn garbage_request_bytes_are_invalid_argument() {
    let node = TestNode::start(None).await;
    // Hand-encode EvaluateRequest{jurisdiction="XX", request=<bytes that are not a message>}.
    let mut body = vec![0x0a, 2, b'X', b'X', 0x12, 3, 0xff, 0xff, 0xff];
    let mut framed = vec![0u8];
    framed.extend_from_slice(&(body.len() as u32).to_be_bytes());
    framed.append(&mut body);
    // Send these exact bytes through tonic's generic client with a pass-through codec.
    let raw =
        tonic::transport::Endpoint::from_shared(format!("http://{}", node.addr)).unwrap().connect().await.unwrap();
    let mut grpc = tonic::client::Grpc::new(raw);
    grpc.ready().await.unwrap();
    let path = http::uri::PathAndQuery::from_static("/silkgate.v1.Compliance/Evaluate");
    let req = tonic::Request::new(RawBytes(framed[5..].to_vec()));
    let res: Result<tonic::Response<RawBytes>, _> = grpc.unary(req, path, RawCodec).await;
    let e = res.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    assert!(e.message().starts_with("request: not a DeploymentRequest"), "{}", e.message());
    node.stop().await;
}

#[derive(Clone, Debug)]
struct RawBytes(Vec<u8>);

#[derive(Clone, Default)]
struct RawCodec;

impl tonic::codec::Codec for RawCodec {
    type Encode = RawBytes;
    type Decode = RawBytes;
    type Encoder = RawCodec;
    type Decoder = RawCodec;
    fn encoder(&mut self) -> Self::Encoder {
        RawCodec
    }
    fn decoder(&mut self) -> Self::Decoder {
        RawCodec
    }
}

impl tonic::codec::Encoder for RawCodec {
    type Item = RawBytes;
    type Error = tonic::Status;
    fn encode(&mut self, item: RawBytes, dst: &mut tonic::codec::EncodeBuf<'_>) -> Result<(), tonic::Status> {
        use bytes::BufMut;
        dst.put_slice(&item.0);
        Ok(())
    }
}

impl tonic::codec::Decoder for RawCodec {
    type Item = RawBytes;
    type Error = tonic::Status;
    fn decode(&mut self, src: &mut tonic::codec::DecodeBuf<'_>) -> Result<Option<RawBytes>, tonic::Status> {
        use bytes::Buf;
        let mut v = vec![0; src.remaining()];
        src.copy_to_slice(&mut v);
        Ok(Some(RawBytes(v)))
    }
}

#[tokio::test]
async fn batch_answers_each_item_in_order() {
    let node = TestNode::start(None).await;
    let mut c = node.client().await;
    let info = c.node_info(proto::NodeInfoRequest {}).await.unwrap().into_inner();
    let mut deny = allowed_request("b-2");
    deny.permission_model = proto::PermissionModel::Permissionless as i32;
    let mut bad = allowed_request("b-3");
    bad.node_regions = vec!["Mars".into()];
    let items = vec![
        eval("XX", allowed_request("b-1")),
        eval("XX", deny),
        eval("XX", bad),
        eval("QQ", allowed_request("b-4")),
        eval("XX", allowed_request("b-5")),
    ];
    let resp = c.evaluate_batch(proto::EvaluateBatchRequest { items }).await.unwrap().into_inner();
    assert_eq!(resp.results.len(), 5);
    let mut ids = std::collections::HashSet::new();
    let mut verdicts = Vec::new();
    for (i, r) in resp.results.iter().enumerate() {
        match r.result.as_ref().unwrap() {
            proto::batch_result::Result::Ok(ok) => {
                let d = readme_verify(ok.decision.as_ref().unwrap(), &info.keys).unwrap();
                assert_eq!(d.request_id, format!("b-{}", i + 1));
                assert!(ids.insert(d.decision_id.clone()));
                // Each item carries its decision id outside the payload too, the same one.
                assert_eq!(ok.decision_id, d.decision_id);
                verdicts.push(d.verdict);
            }
            proto::batch_result::Result::Error(e) => verdicts.push(-e.code),
        }
    }
    let (allow, deny) = (proto::Verdict::Allow as i32, proto::Verdict::Deny as i32);
    assert_eq!(verdicts, [allow, deny, -(Code::InvalidArgument as i32), -(Code::NotFound as i32), allow]);
    let proto::batch_result::Result::Error(e) = resp.results[2].result.as_ref().unwrap() else { panic!() };
    assert_eq!(e.field, "request.node_regions[0]");
    node.stop().await;
}

#[tokio::test]
async fn explain_reports_failed_conditions() {
    let node = TestNode::start(None).await;
    let mut c = node.client().await;
    let mut r = eval("XX", allowed_request("e-1"));
    r.explain = true;
    let resp = c.evaluate(r).await.unwrap().into_inner();
    assert_eq!(resp.explanation.len(), 2);
    let t = &resp.explanation[0];
    assert_eq!((t.rule_id.as_str(), t.matched), ("xx.permissionless", false));
    assert_eq!(t.failed_condition, "permission_model == \"permissionless\"");
    assert_eq!(t.actual, "permissioned");
    let plain = c.evaluate(eval("XX", allowed_request("e-2"))).await.unwrap().into_inner();
    assert!(plain.explanation.is_empty());
    node.stop().await;
}
