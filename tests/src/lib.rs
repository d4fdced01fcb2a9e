//! Helpers shared by the end-to-end tests: start a real node on 127.0.0.1:0, connect a
//! client, and verify signed decisions the way an outside verifier would.
//!
//! The verifier here is written from the README's "Formats for verifiers" section only:
//! it does not call `silkgate_core::decision`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ed25519_dalek::{Signature, VerifyingKey};
use sha2::{Digest, Sha256};
use silkgate::proto;
use silkgate::proto::compliance_client::ComplianceClient;
use silkgate::service::NodeState;
use tokio::sync::oneshot;
use tonic::transport::Channel;

/// The shipped policy directory.
pub fn shipped_policy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../policy")
}

/// A small policy used by tests that must not depend on the shipped pack.
pub const TEST_POLICY: &str = r#"
[policy]
id = "xx-test"
jurisdiction = "XX"
name = "Test jurisdiction"
version = "1.0.0"
default = "allow"

[[rule]]
id = "xx.permissionless"
effect = "deny"
when = 'permission_model == "permissionless"'
message = "permissionless chains are not hosted"
citation = "Test Act s. 1"
url = "https://example.org/test-act"

[[rule]]
id = "xx.retail"
effect = "warn"
when = 'serves_retail'
message = "retail service needs a consumer notice"
citation = "Test Act s. 2"
"#;

pub struct TestNode {
    pub addr: SocketAddr,
    pub dir: tempfile::TempDir,
    stop: Option<oneshot::Sender<()>>,
    handle: tokio::task::JoinHandle<()>,
}

impl TestNode {
    /// Starts a node on 127.0.0.1:0 over `policy_dir` (or the test policy when `None`).
    pub async fn start(policy_dir: Option<&Path>) -> TestNode {
        let dir = tempfile::tempdir().unwrap();
        let pdir = match policy_dir {
            Some(p) => p.to_path_buf(),
            None => {
                let p = dir.path().join("policy");
                std::fs::create_dir_all(&p).unwrap();
                std::fs::write(p.join("xx.toml"), TEST_POLICY).unwrap();
                p
            }
        };
        let policies = silkgate::loader::load_dir(&pdir, None).unwrap();
        let key = silkgate::keys::load_or_create(&dir.path().join("data/node.key")).unwrap();
        let signer = Arc::new(key.signer);
        let log = silkgate::log::open(&dir.path().join("data"), "test-node", signer.clone()).unwrap();
        let state = Arc::new(NodeState::new("test-node".into(), policies, signer, key.valid_from, 3600, Some(log)));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = oneshot::channel();
        let handle = tokio::spawn(async move {
            silkgate::server::run(listener, state, async {
                let _ = rx.await;
            })
            .await
            .unwrap();
        });
        TestNode { addr, dir, stop: Some(tx), handle }
    }

    pub async fn client(&self) -> ComplianceClient<Channel> {
        ComplianceClient::connect(format!("http://{}", self.addr)).await.unwrap()
    }

    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        let _ = (&mut self.handle).await;
    }
}

/// A request the test policy allows.
pub fn allowed_request(id: &str) -> proto::DeploymentRequest {
    proto::DeploymentRequest {
        request_id: id.into(),
        deployment_kind: proto::DeploymentKind::PermissionedApp as i32,
        protocol: Some(proto::Protocol { name: "hyperledger-fabric".into(), ..Default::default() }),
        permission_model: proto::PermissionModel::Permissioned as i32,
        ..Default::default()
    }
}

/// DSSE v1 PAE, from the README: "DSSEv1" SP len(type) SP type SP len(payload) SP payload.
pub fn readme_pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut m = format!("DSSEv1 {} {} {} ", payload_type.len(), payload_type, payload.len()).into_bytes();
    m.extend_from_slice(payload);
    m
}

/// Verifies an envelope with the README's rules and returns the decoded decision.
pub fn readme_verify(env: &proto::SignedDecision, keys: &[proto::PublicKey]) -> Result<proto::Decision, String> {
    use prost::Message;
    if env.payload_type != "application/vnd.silkgate.decision.v1+protobuf" {
        return Err(format!("payload type {}", env.payload_type));
    }
    let sig = env.signatures.first().ok_or("no signature")?;
    let key = keys.iter().find(|k| k.key_id == sig.keyid).ok_or("unknown key id")?;
    if hex::encode(Sha256::digest(&key.public_key)) != key.key_id {
        return Err("key id is not the SHA-256 of the public key".into());
    }
    let vk = VerifyingKey::from_bytes(key.public_key.as_slice().try_into().map_err(|_| "key length")?)
        .map_err(|e| e.to_string())?;
    let s = Signature::from_slice(&sig.sig).map_err(|e| e.to_string())?;
    vk.verify_strict(&readme_pae(&env.payload_type, &env.payload), &s).map_err(|e| e.to_string())?;
    let d = proto::Decision::decode(env.payload.as_slice()).map_err(|e| e.to_string())?;
    if d.key_id != sig.keyid {
        return Err("decision key id differs from signature key id".into());
    }
    Ok(d)
}

/// RFC 6962 leaf hash, from the README: SHA-256(0x00 || entry bytes).
pub fn readme_leaf_hash(entry: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(entry);
    h.finalize().into()
}

fn node(l: &[u8], r: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update([1u8]);
    h.update(l);
    h.update(r);
    h.finalize().into()
}

/// RFC 9162 section 2.1.3.2 inclusion verification, as the README points to.
pub fn readme_verify_inclusion(leaf: [u8; 32], index: u64, size: u64, proof: &[Vec<u8>], root: &[u8]) -> bool {
    if index >= size {
        return false;
    }
    let (mut f_n, mut s_n) = (index, size - 1);
    let mut r = leaf;
    for p in proof {
        if s_n == 0 {
            return false;
        }
        if f_n & 1 == 1 || f_n == s_n {
            r = node(p, &r);
            if f_n & 1 == 0 {
                while f_n & 1 == 0 && f_n != 0 {
                    f_n >>= 1;
                    s_n >>= 1;
                }
            }
        } else {
            r = node(&r, p);
        }
        f_n >>= 1;
        s_n >>= 1;
    }
    s_n == 0 && r.as_slice() == root
}

/// RFC 9162 section 2.1.4.2 consistency verification.
pub fn readme_verify_consistency(size1: u64, size2: u64, proof: &[Vec<u8>], root1: &[u8], root2: &[u8]) -> bool {
    if size1 == size2 {
        return proof.is_empty() && root1 == root2;
    }
    if size1 == 0 || size1 > size2 || proof.is_empty() {
        return false;
    }
    let mut path: Vec<Vec<u8>> = proof.to_vec();
    if size1.is_power_of_two() {
        path.insert(0, root1.to_vec());
    }
    let (mut f_n, mut s_n) = (size1 - 1, size2 - 1);
    while f_n & 1 == 1 {
        f_n >>= 1;
        s_n >>= 1;
    }
    let mut fr: [u8; 32] = match path[0].clone().try_into() {
        Ok(h) => h,
        Err(_) => return false,
    };
    let mut sr = fr;
    for c in &path[1..] {
        if s_n == 0 {
            return false;
        }
        if f_n & 1 == 1 || f_n == s_n {
            fr = node(c, &fr);
            sr = node(c, &sr);
            if f_n & 1 == 0 {
                while f_n & 1 == 0 && f_n != 0 {
                    f_n >>= 1;
                    s_n >>= 1;
                }
            }
        } else {
            sr = node(&sr, c);
        }
        f_n >>= 1;
        s_n >>= 1;
    }
    fr.as_slice() == root1 && sr.as_slice() == root2 && s_n == 0
}

/// Opens a checkpoint note per the README (C2SP signed note, Ed25519): returns
/// (origin, size, root) when the signature by `key` verifies.
pub fn readme_open_checkpoint(note: &str, key: &[u8]) -> Option<(String, u64, Vec<u8>)> {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let (body, sigs) = note.split_once("\n\n")?;
    let body = format!("{body}\n");
    let mut lines = body.lines();
    let origin = lines.next()?.to_string();
    let size: u64 = lines.next()?.parse().ok()?;
    let root = b64.decode(lines.next()?).ok()?;
    let mut id = Sha256::new();
    id.update(origin.as_bytes());
    id.update(b"\n");
    id.update([1u8]);
    id.update(key);
    let key_hash = &id.finalize()[..4];
    let vk = VerifyingKey::from_bytes(key.try_into().ok()?).ok()?;
    for line in sigs.lines() {
        let rest = line.strip_prefix("\u{2014} ")?;
        let (name, sig) = rest.split_once(' ')?;
        let raw = b64.decode(sig).ok()?;
        if name != origin || raw.len() != 68 || &raw[..4] != key_hash {
            continue;
        }
        let s = Signature::from_slice(&raw[4..]).ok()?;
        if vk.verify_strict(body.as_bytes(), &s).is_ok() {
            return Some((origin, size, root));
        }
    }
    None
}
