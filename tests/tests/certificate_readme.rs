//! A deployment certificate from a real two-node network (CN and EU, in this process),
//! checked by a verifier written from the README's "The network roster" and
//! "Deployment certificates" only: SHA-256, Ed25519 and the protobuf messages; no call
//! into `silkgate_verify`'s roster or certificate code.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use prost::Message;
use sha2::{Digest, Sha256};
use silkgate::proto;
use silkgate::service::NodeState;
use silkgate_tests::{
    allowed_request, readme_leaf_hash, readme_open_checkpoint, readme_pae, readme_verify, readme_verify_inclusion,
};

const ROSTER_TYPE: &str = "application/vnd.silkgate.roster.v1+protobuf";
const CERT_TYPE: &str = "application/vnd.silkgate.certificate.v1+protobuf";

fn key_id(raw: &[u8]) -> String {
    hex::encode(Sha256::digest(raw))
}

async fn start(dir: &std::path::Path, id: &str, j: &str) -> (String, Arc<NodeState>) {
    let pdir = dir.join(id).join("policy");
    std::fs::create_dir_all(&pdir).unwrap();
    let policy = format!(
        "[policy]\nid = \"{id}\"\njurisdiction = \"{j}\"\nname = \"{j}\"\nversion = \"1\"\ndefault = \"allow\"\n\n[[rule]]\nid = \"{id}.permissionless\"\neffect = \"deny\"\nwhen = 'permission_model == \"permissionless\"'\nmessage = \"no\"\ncitation = \"s. 1\"\n"
    );
    std::fs::write(pdir.join("p.toml"), policy).unwrap();
    let policies = silkgate::loader::load_dir(&pdir, None).unwrap();
    let key = silkgate::keys::load_or_create(&dir.join(id).join("node.key")).unwrap();
    let signer = Arc::new(key.signer);
    let log = silkgate::log::open(&dir.join(id), id, signer.clone()).unwrap();
    let state = Arc::new(NodeState::new(id.into(), policies, signer, key.valid_from, 3600, Some(log)));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(silkgate::server::run(listener, state.clone(), std::future::pending()));
    (url, state)
}

/// Verifies a roster envelope per the README: the threshold is the higher of the
/// roster's and `least`; a signature counts when its key is trusted and listed.
fn readme_roster(env: &proto::SignedDecision, trusted: &[VerifyingKey], least: u32) -> Result<proto::Roster, String> {
    if env.payload_type != ROSTER_TYPE {
        return Err("payload type".into());
    }
    let r = proto::Roster::decode(env.payload.as_slice()).map_err(|e| e.to_string())?;
    let listed: BTreeSet<&str> = r.governance_keys.iter().map(|k| k.key_id.as_str()).collect();
    let pae = readme_pae(&env.payload_type, &env.payload);
    let mut counted = BTreeSet::new();
    for s in &env.signatures {
        let Some(k) = trusted.iter().find(|k| key_id(k.as_bytes()) == s.keyid) else { continue };
        if !listed.contains(s.keyid.as_str()) {
            continue;
        }
        let Ok(sig) = Signature::from_slice(&s.sig) else { continue };
        if k.verify_strict(&pae, &sig).is_ok() {
            counted.insert(s.keyid.clone());
        }
    }
    if counted.len() < r.threshold.max(least) as usize {
        return Err(format!("{} signatures, {} needed", counted.len(), r.threshold.max(least)));
    }
    Ok(r)
}

/// Verifies a certificate per the README's seven steps; returns its verdict number.
fn readme_certificate(
    env: &proto::SignedDecision,
    roster_env: &proto::SignedDecision,
    r: &proto::Roster,
) -> Result<i32, String> {
    if env.payload_type != CERT_TYPE {
        return Err("payload type".into());
    }
    let c = proto::DeploymentCertificate::decode(env.payload.as_slice()).map_err(|e| e.to_string())?;
    let rref = c.roster.as_ref().ok_or("no roster")?;
    if rref.network_id != r.network_id
        || rref.version != r.version
        || rref.sha256 != Sha256::digest(&roster_env.payload).to_vec()
    {
        return Err("roster reference".into());
    }
    let node = |id: &str| r.nodes.iter().find(|n| n.node_id == id);
    let gw = node(&c.node_id).ok_or("gateway not in roster")?;
    let gw_key = gw.keys.iter().find(|k| k.key_id == c.key_id).ok_or("gateway key")?;
    let sig = env.signatures.iter().find(|s| s.keyid == c.key_id).ok_or("no gateway signature")?;
    let vk = VerifyingKey::from_bytes(gw_key.public_key.as_slice().try_into().unwrap()).map_err(|e| e.to_string())?;
    vk.verify_strict(
        &readme_pae(&env.payload_type, &env.payload),
        &Signature::from_slice(&sig.sig).map_err(|e| e.to_string())?,
    )
    .map_err(|_| "gateway signature")?;
    // Step 4.
    let table = |region: &str| r.regions.iter().find(|x| x.region == region).map(|x| x.jurisdiction.clone());
    let mapped: BTreeSet<String> = c
        .regions
        .iter()
        .map(|x| {
            assert_eq!(table(&x.region), Some(x.jurisdiction.clone()));
            x.jurisdiction.clone()
        })
        .collect();
    if mapped.into_iter().collect::<Vec<_>>() != c.jurisdictions {
        return Err("jurisdictions".into());
    }
    let mut all: Vec<&str> = c
        .evidence
        .iter()
        .map(|e| e.jurisdiction.as_str())
        .chain(c.missing.iter().map(|m| m.jurisdiction.as_str()))
        .collect();
    all.sort();
    if all != c.jurisdictions.iter().map(String::as_str).collect::<Vec<_>>() {
        return Err("evidence and missing".into());
    }
    // Step 5.
    let mut any_deny = false;
    let mut earliest: Option<(i64, i32)> = None;
    for ev in &c.evidence {
        let n = node(&ev.node_id).ok_or("evidence node not in roster")?;
        if !n.jurisdictions.contains(&ev.jurisdiction) {
            return Err("node does not enforce the jurisdiction".into());
        }
        let signed = proto::SignedDecision::decode(ev.decision.as_slice()).map_err(|e| e.to_string())?;
        let keys: Vec<proto::PublicKey> = n
            .keys
            .iter()
            .map(|k| proto::PublicKey {
                public_key: k.public_key.clone(),
                key_id: k.key_id.clone(),
                ..Default::default()
            })
            .collect();
        let d = readme_verify(&signed, &keys)?;
        if d.jurisdiction != ev.jurisdiction
            || d.node_id != n.node_id
            || d.request_sha256 != c.request_sha256
            || d.request_id != c.request_id
        {
            return Err(format!("decision of {} does not match", ev.jurisdiction));
        }
        // The checkpoint key: the verifier key's third part (everything after the second
        // `+`; base64 may hold `+`) is base64 of 0x01 || key.
        use base64::Engine as _;
        let b64 = n.log_verifier_key.splitn(3, '+').nth(2).ok_or("verifier key")?;
        let typed = base64::engine::general_purpose::STANDARD.decode(b64).map_err(|e| e.to_string())?;
        let (origin, size, root) = readme_open_checkpoint(&ev.checkpoint, &typed[1..]).ok_or("checkpoint signature")?;
        if origin != n.log_origin || size != ev.tree_size {
            return Err("checkpoint origin or size".into());
        }
        if !readme_verify_inclusion(
            readme_leaf_hash(&ev.decision),
            ev.log_index,
            ev.tree_size,
            &ev.inclusion_proof,
            &root,
        ) {
            return Err(format!("inclusion proof of {}", ev.jurisdiction));
        }
        any_deny |= d.verdict == proto::Verdict::Deny as i32;
        let na = d.not_after.unwrap();
        earliest = Some(earliest.map_or((na.seconds, na.nanos), |e| e.min((na.seconds, na.nanos))));
    }
    // Steps 6 and 7.
    let verdict = if any_deny {
        2
    } else if !c.missing.is_empty() || c.evidence.is_empty() {
        3
    } else {
        1
    };
    if verdict != c.verdict {
        return Err("verdict".into());
    }
    let issued = c.issued_at.unwrap();
    let until = earliest.unwrap_or((issued.seconds, issued.nanos));
    let na = c.not_after.unwrap();
    if (na.seconds, na.nanos) != until {
        return Err("not_after".into());
    }
    Ok(verdict)
}

#[tokio::test]
async fn a_certificate_verifies_from_the_readme_alone() {
    let dir = tempfile::tempdir().unwrap();
    let (cn_url, cn) = start(dir.path(), "cn-1", "CN").await;
    let (eu_url, eu) = start(dir.path(), "eu-1", "EU").await;
    let gov: Vec<SigningKey> = (1..=3u8).map(|n| SigningKey::from_bytes(&[n; 32])).collect();
    let rkey = |k: &VerifyingKey| proto::RosterKey { public_key: k.as_bytes().to_vec(), key_id: key_id(k.as_bytes()) };
    let member = |id: &str, j: &str, region: &str, url: &str, s: &NodeState| {
        let origin = s.log.as_ref().unwrap().origin().to_string();
        proto::RosterNode {
            node_id: id.into(),
            jurisdictions: vec![j.into()],
            regions: vec![region.into()],
            grpc_endpoint: url.into(),
            http_endpoint: String::new(),
            keys: vec![rkey(&s.signer.verifying_key())],
            log_verifier_key: silkgate_verify::checkpoint::vkey(&origin, &s.signer.verifying_key()),
            log_origin: origin,
        }
    };
    let roster = proto::Roster {
        network_id: "readme-net".into(),
        version: 1,
        issued_at: Some(prost_types::Timestamp { seconds: 1_764_547_200, nanos: 0 }),
        threshold: 2,
        governance_keys: gov.iter().map(|k| rkey(&k.verifying_key())).collect(),
        regions: vec![
            proto::RegionJurisdiction { region: "CN".into(), jurisdiction: "CN".into() },
            proto::RegionJurisdiction { region: "DE".into(), jurisdiction: "EU".into() },
        ],
        nodes: vec![member("cn-1", "CN", "CN", &cn_url, &cn), member("eu-1", "EU", "DE", &eu_url, &eu)],
        witness_quorum: 0,
    };
    // Signed as the README says: Ed25519 over the PAE of the payload.
    let payload = roster.encode_to_vec();
    let sign = |k: &SigningKey| proto::Signature {
        sig: k.sign(&readme_pae(ROSTER_TYPE, &payload)).to_bytes().to_vec(),
        keyid: key_id(k.verifying_key().as_bytes()),
    };
    let roster_env = proto::SignedDecision {
        payload: payload.clone(),
        payload_type: ROSTER_TYPE.into(),
        signatures: vec![sign(&gov[0]), sign(&gov[2])],
    };
    let trusted: Vec<VerifyingKey> = gov.iter().map(|k| k.verifying_key()).collect();
    let r = readme_roster(&roster_env, &trusted, 1).unwrap();
    let mut short = roster_env.clone();
    short.signatures.pop();
    assert!(readme_roster(&short, &trusted, 1).is_err());
    for s in [&cn, &eu] {
        s.network.configure(
            silkgate::network::Trust { keys: trusted.clone(), threshold: 1 },
            silkgate::network::PeerConfig { deadline: Duration::from_secs(5), tls: None },
        );
        s.network.offer(&roster_env.encode_to_vec()).unwrap();
    }

    let mut req = allowed_request("readme-1");
    req.node_regions = vec!["CN".into()];
    req.data = Some(proto::DataHandling { storage_regions: vec!["DE".into()], ..Default::default() });
    let mut client = proto::network_client::NetworkClient::connect(eu_url.clone()).await.unwrap();
    let resp = client.certify(proto::CertifyRequest { request: Some(req.clone()) }).await.unwrap().into_inner();
    let env = resp.certificate.unwrap();
    assert_eq!(readme_certificate(&env, &roster_env, &r), Ok(1));
    let c = proto::DeploymentCertificate::decode(env.payload.as_slice()).unwrap();
    assert_eq!(c.request_sha256, Sha256::digest(req.encode_to_vec()).to_vec());
    assert_eq!(c.jurisdictions, ["CN", "EU"]);

    // A denial anywhere: DENY, still verifiable.
    let mut deny = req.clone();
    deny.request_id = "readme-2".into();
    deny.permission_model = proto::PermissionModel::Permissionless as i32;
    let resp = client.certify(proto::CertifyRequest { request: Some(deny) }).await.unwrap().into_inner();
    assert_eq!(readme_certificate(resp.certificate.as_ref().unwrap(), &roster_env, &r), Ok(2));

    // One changed byte in the signed certificate: the gateway signature fails.
    let mut bad = env.clone();
    bad.payload[5] ^= 1;
    assert!(readme_certificate(&bad, &roster_env, &r).is_err());
}
