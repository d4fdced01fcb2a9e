//! An auditor's check, written from the README ("Policy releases, activations and
//! waivers") alone: a decision is traced through the log to its policy activation and
//! the release its jurisdiction's authority signed, with two inclusion proofs against one
//! checkpoint. The release is made here from the README too (PAE, key ids), not with the
//! node's code, so the node is also shown to accept what the README specifies.

use std::sync::Arc;

use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use prost::Message;
use sha2::{Digest, Sha256};
use silkgate::proto;
use silkgate::proto::decision_log_client::DecisionLogClient;
use silkgate_tests::*;

const RELEASE_TYPE: &str = "application/vnd.silkgate.policy-release.v1+protobuf";
const ACTIVATION_TYPE: &str = "application/vnd.silkgate.policy-activation.v1+protobuf";

fn key_id(k: &VerifyingKey) -> String {
    hex::encode(Sha256::digest(k.as_bytes()))
}

/// The README's policy digest over one policy file with no data files.
fn policy_digest(name: &str, text: &str) -> Vec<u8> {
    let mut h = Sha256::new();
    h.update(b"silkgate-policy-v1\n");
    h.update(format!("{name}\n{}\n", text.len()).as_bytes());
    h.update(text.as_bytes());
    h.update(b"\n");
    h.finalize().to_vec()
}

/// The README's release check: signatures by authority keys verify, at least
/// `threshold` distinct ones; then the payload.
fn check_release(
    env: &proto::SignedDecision,
    keys: &[VerifyingKey],
    threshold: usize,
) -> Result<proto::PolicyRelease, String> {
    if env.payload_type != RELEASE_TYPE {
        return Err(format!("payload type {}", env.payload_type));
    }
    let mut signers = Vec::new();
    for s in &env.signatures {
        let Some(k) = keys.iter().find(|k| key_id(k) == s.keyid) else { continue };
        let sig = Signature::from_slice(&s.sig).map_err(|e| e.to_string())?;
        k.verify_strict(&readme_pae(&env.payload_type, &env.payload), &sig).map_err(|e| e.to_string())?;
        if !signers.contains(&s.keyid) {
            signers.push(s.keyid.clone());
        }
    }
    if signers.len() < threshold {
        return Err(format!("{} of {threshold} signatures", signers.len()));
    }
    proto::PolicyRelease::decode(env.payload.as_slice()).map_err(|e| e.to_string())
}

#[tokio::test]
async fn a_decision_is_traced_to_its_signed_release_through_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let policy_dir = dir.path().join("policy");
    std::fs::create_dir_all(&policy_dir).unwrap();
    std::fs::write(policy_dir.join("xx.toml"), TEST_POLICY).unwrap();
    let authority = [SigningKey::from_bytes(&[31; 32]), SigningKey::from_bytes(&[32; 32])];
    let public: Vec<VerifyingKey> = authority.iter().map(|k| k.verifying_key()).collect();

    // The release, signed by both authority keys (threshold 2), as the README says.
    let release = proto::PolicyRelease {
        jurisdiction: "XX".into(),
        policy_id: "xx-test".into(),
        version: "1.0.0".into(),
        policy_sha256: policy_digest("xx.toml", TEST_POLICY),
        released_at: Some(prost_types::Timestamp { seconds: 1_790_000_000, nanos: 0 }),
        rollback: false,
        supersedes: String::new(),
    };
    let payload = release.encode_to_vec();
    let signatures: Vec<proto::Signature> = authority
        .iter()
        .map(|k| proto::Signature {
            sig: k.sign(&readme_pae(RELEASE_TYPE, &payload)).to_bytes().to_vec(),
            keyid: key_id(&k.verifying_key()),
        })
        .collect();
    let env = proto::SignedDecision { payload, payload_type: RELEASE_TYPE.into(), signatures };
    std::fs::write(policy_dir.join("xx.release"), silkgate_core::decision::to_dsse_json(&env).to_string()).unwrap();
    let keys: Vec<String> = public.iter().map(|k| format!("\"{}\"", hex::encode(k.as_bytes()))).collect();
    let auth_file = dir.path().join("authorities.toml");
    std::fs::write(&auth_file, format!("[jurisdictions.XX]\nthreshold = 2\nkeys = [{}]\n", keys.join(", "))).unwrap();

    // A node as `serve` starts one: releases checked, activations logged, then serving.
    let auth = Arc::new(silkgate::authority::Authorities::load(&auth_file).unwrap());
    let set = silkgate::loader::load_dir(&policy_dir, None).unwrap();
    let prepared = silkgate::authority::prepare(set, None, Some(&auth), None).unwrap();
    let data = dir.path().join("data");
    let key = silkgate::keys::load_or_create(&data.join("node.key")).unwrap();
    let signer = Arc::new(key.signer);
    let log = silkgate::log::open(&data, "audit-node", signer.clone()).unwrap();
    let a = silkgate::authority::Activator { node_id: "audit-node", signer: &signer, log: &log };
    let now = silkgate_core::time::UnixTime::now();
    let logged = prepared.log_activations(None, &a, now, &policy_dir).await.unwrap();
    let (set, _) = prepared.finish(None, Some(logged));
    let mut state =
        silkgate::service::NodeState::new("audit-node".into(), set, signer, key.valid_from, 3600, Some(log));
    state.authorities = Some(auth);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(silkgate::server::run(listener, Arc::new(state), std::future::pending()));

    let mut c = proto::compliance_client::ComplianceClient::connect(url.clone()).await.unwrap();
    let mut logc = DecisionLogClient::connect(url).await.unwrap();
    let info = c.node_info(proto::NodeInfoRequest {}).await.unwrap().into_inner();
    let node_key = info.keys[0].public_key.clone();
    let r = proto::EvaluateRequest { jurisdiction: "XX".into(), request: Some(allowed_request("a-1")), explain: false };
    let answer = c.evaluate(r).await.unwrap().into_inner();
    let decision_env = answer.decision.unwrap();

    // 1. The decision and its inclusion against the latest checkpoint.
    let d = readme_verify(&decision_env, &info.keys).unwrap();
    let proof = |index: u64, tree_size: u64| proto::GetInclusionProofRequest {
        target: Some(proto::get_inclusion_proof_request::Target::Index(index)),
        tree_size,
    };
    let p1 = logc.get_inclusion_proof(proof(answer.log_index, 0)).await.unwrap().into_inner();
    let (_, size, root) = readme_open_checkpoint(&p1.checkpoint.unwrap().note, &node_key).unwrap();
    assert_eq!(p1.entry, decision_env.encode_to_vec());
    assert!(readme_verify_inclusion(readme_leaf_hash(&p1.entry), p1.index, size, &p1.hashes, &root));

    // 2. Its activation, earlier in the same log, proved against the same root.
    let at = d.activation_index.expect("the decision names its activation");
    assert!(at < answer.log_index);
    let p2 = logc.get_inclusion_proof(proof(at, size)).await.unwrap().into_inner();
    assert!(readme_verify_inclusion(readme_leaf_hash(&p2.entry), at, size, &p2.hashes, &root));

    // 3. The activation: signed by the node key, naming the decision's policy.
    let act_env = proto::SignedDecision::decode(p2.entry.as_slice()).unwrap();
    assert_eq!(act_env.payload_type, ACTIVATION_TYPE);
    let sig = &act_env.signatures[0];
    let vk = VerifyingKey::from_bytes(node_key.as_slice().try_into().unwrap()).unwrap();
    assert_eq!(sig.keyid, key_id(&vk));
    vk.verify_strict(&readme_pae(ACTIVATION_TYPE, &act_env.payload), &Signature::from_slice(&sig.sig).unwrap())
        .unwrap();
    let act = proto::PolicyActivation::decode(act_env.payload.as_slice()).unwrap();
    assert_eq!(act.key_id, sig.keyid);
    assert_eq!(act.jurisdiction, d.jurisdiction);
    assert_eq!(act.policy_sha256, d.policy.as_ref().unwrap().sha256);
    assert!(d.issued_at.unwrap().seconds >= act.activated_at.unwrap().seconds);

    // 4. The release inside it, signed by the authority to its threshold.
    let rel_env = proto::SignedDecision::decode(act.release.as_slice()).unwrap();
    let rel = check_release(&rel_env, &public, 2).unwrap();
    assert_eq!(rel, release);
    assert_eq!((rel.policy_id.as_str(), rel.version.as_str()), (act.policy_id.as_str(), act.version.as_str()));
    assert_eq!(rel.policy_sha256, act.policy_sha256);
    // One authority key alone is not enough, and another key's signature proves nothing.
    assert!(check_release(&rel_env, &public[..1], 2).is_err());
    assert!(check_release(&rel_env, &[SigningKey::from_bytes(&[33; 32]).verifying_key()], 1).is_err());
}
