//! Fuzz targets for requests as they arrive over gRPC: `EvaluateRequest`,
//! `EvaluateBatchRequest` and `DeploymentRequest` bytes through prost decoding (the
//! generated types and the server's `wire` types), `Request::try_from`, and the server's
//! own path from decoded message to signed decision, `ComplianceService::decide`.
//!
//! Properties: no input panics or hangs; the server's `wire` types accept whatever the
//! generated types accept, and read the same values; a refusal names a field and a code
//! (INVALID_ARGUMENT or NOT_FOUND); an accepted request yields a decision that verifies,
//! hashes the request bytes as received, has the verdict the policy gives that request
//! (deny overrides), and explains every rule when asked to.
//!
//! `SILKGATE_FUZZ_CASES=N` sets the cases per property (see README, "Fuzzing"). Inputs
//! that once crashed live in `tests/data/fuzz-corpus/wire/` (each file is the bytes of
//! one `EvaluateRequest` message).

mod fuzz_common;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use ed25519_dalek::{SigningKey, VerifyingKey};
use fuzz_common::*;
use proptest::prelude::*;
use prost::Message;
use sha2::{Digest, Sha256};
use silkgate::limits::{LimitConfig, Limits};
use silkgate::proto;
use silkgate::service::{ComplianceService, NodeState};
use silkgate::tls::Authz;
use silkgate::wire;
use silkgate_core::decision::{self, Signer};
use silkgate_core::policy::Verdict;
use silkgate_core::request::Request;
use silkgate_core::time::UnixTime;

/// A service over the shipped policies, without a decision log (`decide` never logs).
fn service() -> &'static (ComplianceService, VerifyingKey) {
    static SERVICE: OnceLock<(ComplianceService, VerifyingKey)> = OnceLock::new();
    SERVICE.get_or_init(|| {
        let policies = silkgate::loader::load_dir(&policy_dir(), None).unwrap();
        let signer = Arc::new(Signer::new(SigningKey::from_bytes(&[9; 32])));
        let vk = signer.verifying_key();
        let state = NodeState::new("fuzz-node".into(), policies, signer, UnixTime::from_secs(0), 86_400, None);
        let limits = Arc::new(Limits::new(LimitConfig::default()));
        (ComplianceService::new(Arc::new(state), limits, Arc::new(Authz::default())), vk)
    })
}

/// 2026-11-28T12:00:00Z.
const NOW: i64 = 1_795_867_200;

/// Runs one decoded item through the server's `decide` and checks the answer.
fn check_decide(item: wire::EvaluateRequest, now: UnixTime) {
    let (svc, vk) = service();
    let jurisdiction = item.jurisdiction.clone();
    let inner = item.request.clone();
    let explain = item.explain;
    match timed("decide", || svc.decide(item, now)) {
        Err(f) => {
            assert!(
                matches!(f.code, tonic::Code::InvalidArgument | tonic::Code::NotFound),
                "unexpected code {:?}: {}",
                f.code,
                f.message
            );
            // A message that cannot be read at all has no field to name; it says so.
            let named = !f.field.is_empty() || f.message.starts_with("not an EvaluateRequest");
            assert!(named && !f.message.is_empty(), "a refusal without field or reason: {f:?}");
        }
        Ok(decided) => {
            let inner = inner.expect("decided without a request");
            let resp = &decided.response;
            let env = proto::SignedDecision::decode(resp.decision.clone().expect("no decision")).unwrap();
            let d = decision::verify(&env, std::slice::from_ref(vk), None).expect("the decision verifies");
            assert_eq!(
                d.request_sha256,
                Sha256::digest(&inner).to_vec(),
                "request_sha256 is not of the bytes received"
            );
            assert_eq!(d.decision_id, resp.decision_id);
            let req = Request::try_from(proto::DeploymentRequest::decode(inner).unwrap())
                .expect("decided an invalid request");
            // The node reads the code upper-cased, as every other region code.
            let policy =
                shipped().get(&jurisdiction.to_ascii_uppercase()).expect("decided for a jurisdiction without policy");
            assert_eq!(d.jurisdiction, policy.jurisdiction);
            let outcome = check_outcome(policy, &req, now.day());
            let verdict = match outcome.verdict {
                Verdict::Allow => proto::Verdict::Allow,
                Verdict::Deny => proto::Verdict::Deny,
            };
            assert_eq!(d.verdict, verdict as i32, "signed verdict differs from the policy's");
            let ids: Vec<&str> = outcome.matched.iter().map(|&i| policy.rules[i as usize].id.as_str()).collect();
            let signed_ids: Vec<&str> = d.matched_rules.iter().map(|r| r.id.as_str()).collect();
            assert_eq!(ids, signed_ids);
            if d.matched_rules.iter().any(|r| r.effect == proto::Effect::Deny as i32) {
                assert_eq!(d.verdict, proto::Verdict::Deny as i32, "ALLOW signed although a deny rule matched");
            }
            assert_eq!(resp.explanation.len(), if explain { policy.rules.len() } else { 0 });
        }
    }
}

/// Arbitrary bytes as every request message the server decodes.
fn check_bytes(bytes: &[u8]) {
    let generated = proto::EvaluateRequest::decode(bytes);
    let raw = wire::EvaluateRequest::decode(bytes);
    if let Ok(g) = &generated {
        let r = raw.as_ref().expect("the server's decoder never fails: it flags what is malformed");
        // What the node refuses as malformed (a `request` sent twice, which protobuf would
        // merge) is answered INVALID_ARGUMENT by `decide`, checked below; the rest must
        // read as protobuf reads it.
        if r.malformed.is_none() {
            assert_eq!(g.jurisdiction, r.jurisdiction);
            assert_eq!(g.explain, r.explain);
            assert_eq!(g.request.is_some(), r.request.is_some());
        }
    }
    if let Ok(r) = raw {
        check_decide(r, UnixTime::from_secs(NOW));
    }
    let batch = proto::EvaluateBatchRequest::decode(bytes);
    let raw_batch = wire::EvaluateBatchRequest::decode(bytes);
    if let Ok(g) = &batch {
        let r = raw_batch.as_ref().expect("the server's decoder never fails: it flags what is malformed");
        if r.malformed.is_none() {
            assert_eq!(g.items.len(), r.items.len() + r.extra);
        }
    }
    if let Ok(b) = raw_batch {
        for item in b.items.into_iter().take(8) {
            check_decide(item, UnixTime::from_secs(NOW));
        }
    }
    if let Ok(p) = proto::DeploymentRequest::decode(bytes) {
        check_conversion(p);
    }
}

/// `Request::try_from`: refusals name a field; accepted requests survive an encode and
/// decode unchanged and evaluate consistently under every shipped policy.
fn check_conversion(p: proto::DeploymentRequest) {
    let again = proto::DeploymentRequest::decode(p.encode_to_vec().as_slice()).expect("re-decode");
    let converted = timed("Request::try_from", || Request::try_from(p));
    match converted {
        Err(e) => assert!(!e.field.is_empty() && !e.reason.is_empty(), "{e:?}"),
        Ok(req) => {
            assert_eq!(Request::try_from(again).as_ref(), Ok(&req), "conversion depends on the encoding");
            for policy in shipped().policies.values() {
                check_outcome(policy, &req, UnixTime::from_secs(NOW).day());
            }
        }
    }
}

fn short() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[A-Z]{2}",
        2 => "[a-z0-9_.-]{0,10}",
        2 => "(?s).{0,12}",
        1 => "[a-z]{250,260}",
        1 => proptest::sample::select(vec!["CN", "EU", "SG", "US", "cn", "ethereum", "hyperledger-fabric", "MAS", "x"])
            .prop_map(String::from),
    ]
}

fn list() -> impl Strategy<Value = Vec<String>> {
    prop_oneof![12 => proptest::collection::vec(short(), 0..4), 1 => proptest::collection::vec("[A-Z]{2}", 255..258)]
}

fn num() -> impl Strategy<Value = i32> {
    prop_oneof![8 => 0i32..12, 1 => any::<i32>(), 1 => 60i32..70]
}

fn nums() -> impl Strategy<Value = Vec<i32>> {
    prop_oneof![12 => proptest::collection::vec(num(), 0..4), 1 => proptest::collection::vec(1i32..5, 255..258)]
}

/// Any `DeploymentRequest`: valid-looking values mostly, edge values sometimes.
fn deployment() -> impl Strategy<Value = proto::DeploymentRequest> {
    let head = (
        prop_oneof!["[a-z0-9-]{1,12}", "(?s).{0,12}", "[a-z]{127,130}"],
        num(),
        proptest::option::of((short(), num(), short()).prop_map(|(name, variant, version)| proto::Protocol {
            name,
            variant,
            version,
        })),
        num(),
        short(),
        any::<u32>(),
        list(),
        list(),
        list(),
        any::<bool>(),
    );
    let token = proptest::option::of((num(), any::<bool>(), any::<bool>(), short(), any::<bool>(), num()).prop_map(
        |(kind, t, tr, peg, v, b)| proto::Token {
            kind,
            transferable: t,
            tradable: tr,
            peg_currency: peg,
            validator_reward: v,
            backing: b,
        },
    ));
    let crypto =
        proptest::option::of((nums(), nums(), nums()).prop_map(|(signature, hash, cipher)| proto::CryptoSuite {
            signature,
            hash,
            cipher,
        }));
    let data = proptest::option::of(
        (any::<bool>(), any::<bool>(), list(), any::<u64>(), list(), num(), any::<bool>(), nums()).prop_map(
            |(pd, s, sj, a, sr, e, dpia, tm)| proto::DataHandling {
                pd_on_chain: pd,
                sensitive_pd: s,
                subject_jurisdictions: sj,
                annual_subjects: a,
                storage_regions: sr,
                erasure_mechanism: e,
                dpia_done: dpia,
                transfer_mechanisms: tm,
                ..Default::default()
            },
        ),
    );
    let operator = proptest::option::of(
        (
            short(),
            any::<bool>(),
            short(),
            proptest::collection::vec(
                (short(), short(), short()).prop_map(|(regulator, kind, id)| proto::Licence {
                    regulator,
                    kind,
                    id,
                    ..Default::default()
                }),
                0..3,
            ),
            list(),
            any::<bool>(),
        )
            .prop_map(|(entity_country, is_ciio, cac_filing_id, licences, registrations, public_scope_eso)| {
                proto::Operator { entity_country, is_ciio, cac_filing_id, licences, registrations, public_scope_eso }
            }),
    );
    let tail = (
        token,
        num(),
        crypto,
        num(),
        list(),
        short(),
        nums(),
        nums(),
        list(),
        data,
        proptest::option::of((any::<bool>(), any::<u32>())),
        num(),
    );
    let rest = (
        operator,
        proptest::collection::hash_map(prop_oneof!["[a-z_]{1,8}", "(?s).{0,8}", "[a]{64,66}"], short(), 0..3),
        list(),
    );
    (head, tail, rest).prop_map(|(h, t, r)| proto::DeploymentRequest {
        request_id: h.0,
        deployment_kind: h.1,
        protocol: h.2,
        permission_model: h.3,
        consensus: h.4,
        node_count: h.5,
        node_regions: h.6,
        consensus_node_regions: h.7,
        served_jurisdictions: h.8,
        serves_retail: h.9,
        token: t.0,
        gas_payment: t.1,
        crypto: t.2,
        key_custody: t.3,
        contract_languages: t.4,
        vm: t.5,
        services: t.6,
        privacy_features: t.7,
        addresses: t.8,
        data: t.9,
        moderation: t
            .10
            .map(|(takedown_capable, log_retention_days)| proto::Moderation { takedown_capable, log_retention_days }),
        end_user_identity: t.11,
        operator: r.0,
        labels: r.1,
        assets: r.2,
        ..Default::default()
    })
}

fn jurisdiction() -> impl Strategy<Value = String> {
    let known: Vec<String> = shipped().policies.keys().cloned().collect();
    prop_oneof![8 => proptest::sample::select(known), 1 => "(?s).{0,4}", 1 => Just(String::new())]
}

/// Valid `EvaluateRequest` encodings of the seed requests, for mutation.
fn seed_encodings() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for (i, (p, _)) in seed_requests().iter().enumerate() {
        for j in ["CN", "EU", "SG", "US", "XX"] {
            let explain = i % 2 == 0;
            out.push(
                proto::EvaluateRequest { jurisdiction: j.into(), request: Some(p.clone()), explain }.encode_to_vec(),
            );
        }
    }
    out
}

const WIRE_DICT: &[&[u8]] = &[
    &[0x0a, 0x02, b'C', b'N'],
    &[0x12, 0x00],
    &[0x12, 0x7f],
    &[0x12, 0xff, 0xff, 0xff, 0xff, 0x0f],
    &[0x18, 0x01],
    &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01],
    &[0x0a, 0x02, 0xc3, 0x28],
    &[0x08, 0x96, 0x01],
    &[0x10, 0x63],
    &[0x8a, 0x01, 0x01, 0x63],
    &[0x0b],
    &[0x0c],
    &[0x0a, 0x01, b'A'],
];

proptest! {
    #![proptest_config(config())]

    /// Arbitrary bytes as `EvaluateRequest`, `EvaluateBatchRequest` and `DeploymentRequest`.
    #[test]
    fn wire_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        check_bytes(&bytes);
    }

    /// Valid encodings, mutated: flipped and inserted bytes, truncation, duplicated
    /// ranges (fields repeated), field fragments.
    #[test]
    fn wire_mutated(seed in any::<usize>(), ops in ops(6)) {
        let seeds = seed_encodings();
        let bytes = mutate(&seeds[seed % seeds.len()], &ops, WIRE_DICT, 8 << 10);
        check_bytes(&bytes);
    }

    /// Structured requests: every field random, through conversion and the server.
    #[test]
    fn wire_structured(
        p in deployment(),
        j in jurisdiction(),
        explain in any::<bool>(),
        secs in prop_oneof![Just(NOW), 0i64..4_102_444_800],
    ) {
        check_conversion(p.clone());
        let item = wire::EvaluateRequest { jurisdiction: j, request: Some(Bytes::from(p.encode_to_vec())), explain, malformed: None };
        check_decide(item, UnixTime::from_secs(secs));
    }

    /// The seed requests with one field replaced by random structure: mostly valid
    /// requests, so the evaluation properties get exercised on allowed and denied ones.
    #[test]
    fn wire_seed_patched(seed in any::<usize>(), other in deployment(), field in 0usize..25, j in jurisdiction()) {
        let seeds = seed_requests();
        let mut p = seeds[seed % seeds.len()].0.clone();
        let o = other;
        match field {
            0 => p.request_id = o.request_id,
            1 => p.deployment_kind = o.deployment_kind,
            2 => p.protocol = o.protocol,
            3 => p.permission_model = o.permission_model,
            4 => p.node_regions = o.node_regions,
            5 => p.served_jurisdictions = o.served_jurisdictions,
            6 => p.token = o.token,
            7 => p.crypto = o.crypto,
            8 => p.services = o.services,
            9 => p.privacy_features = o.privacy_features,
            10 => p.addresses = o.addresses,
            11 => p.data = o.data,
            12 => p.moderation = o.moderation,
            13 => p.operator = o.operator,
            14 => p.labels = o.labels,
            15 => p.assets = o.assets,
            16 => p.gas_payment = o.gas_payment,
            17 => p.key_custody = o.key_custody,
            18 => p.end_user_identity = o.end_user_identity,
            19 => p.consensus_node_regions = o.consensus_node_regions,
            20 => p.contract_languages = o.contract_languages,
            21 => p.vm = o.vm,
            22 => p.consensus = o.consensus,
            23 => p.node_count = o.node_count,
            _ => p.serves_retail = o.serves_retail,
        }
        check_conversion(p.clone());
        let item = wire::EvaluateRequest { jurisdiction: j, request: Some(Bytes::from(p.encode_to_vec())), explain: true, malformed: None };
        check_decide(item, UnixTime::from_secs(NOW));
    }
}

/// Inputs that once crashed or hung, replayed on every run.
#[test]
fn corpus_wire() {
    for (name, bytes) in corpus("wire") {
        within(&format!("wire corpus {name}"), Duration::from_secs(30), move || check_bytes(&bytes));
    }
}

/// `EvaluateRequest.request` twice: protobuf merges the two messages, the server's
/// `wire::EvaluateRequest` keeps the last bytes. Either way the node must not crash, and
/// it decides on (and hashes) exactly the bytes it kept.
#[test]
fn duplicated_request_field() {
    let seeds = seed_requests();
    let (a, b) = (&seeds[0].0, &seeds[seeds.len() - 1].0);
    let mut bytes =
        proto::EvaluateRequest { jurisdiction: "CN".into(), request: Some(a.clone()), explain: false }.encode_to_vec();
    bytes.extend(
        proto::EvaluateRequest { jurisdiction: String::new(), request: Some(b.clone()), explain: false }
            .encode_to_vec(),
    );
    check_bytes(&bytes);
    // Protobuf would merge the two copies; the node refuses the request instead.
    let raw = wire::EvaluateRequest::decode(bytes.as_slice()).unwrap();
    assert_eq!(raw.malformed.as_ref().map(|m| m.field.as_str()), Some("request"), "{raw:?}");
}

/// Invalid UTF-8 in `jurisdiction` is a decode error, not a panic.
#[test]
fn invalid_utf8_jurisdiction() {
    let bytes = [0x0a, 0x02, 0xc3, 0x28, 0x12, 0x00];
    let raw = wire::EvaluateRequest::decode(bytes.as_slice()).unwrap();
    assert_eq!(raw.malformed.as_ref().map(|m| m.field.as_str()), Some("jurisdiction"), "{raw:?}");
    assert!(proto::EvaluateRequest::decode(bytes.as_slice()).is_err());
    check_bytes(&bytes);
}
