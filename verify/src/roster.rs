//! The network roster: the signed list of member nodes, their keys and logs, and the
//! region table, checked against the network's governance keys.
//!
//! The roster is a DSSE v1 envelope (the `SignedDecision` message, as decisions use)
//! with payload type [`PAYLOAD_TYPE`] around the protobuf encoding of `Roster`. It
//! counts only signatures by governance keys the verifier trusts (given from outside the
//! roster: a roster naming its own keys proves nothing) that the roster also lists; it
//! needs at least the threshold the roster states, and at least the verifier's own
//! minimum, so one stolen key cannot sign a roster that lowers the threshold.

use std::collections::{BTreeMap, BTreeSet};

use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
use prost::Message;
use sha2::{Digest, Sha256};

use crate::checkpoint;
use crate::decision::{key_id, pae};
use crate::proto;

/// The DSSE payload type of a roster.
pub const PAYLOAD_TYPE: &str = "application/vnd.silkgate.roster.v1+protobuf";

/// Largest roster envelope accepted, in bytes.
pub const MAX_ROSTER_BYTES: usize = 1 << 20;
/// Most member nodes, regions, governance keys, and keys per node.
pub const MAX_NODES: usize = 1000;
pub const MAX_REGIONS: usize = 1000;
pub const MAX_GOVERNANCE_KEYS: usize = 64;
pub const MAX_NODE_KEYS: usize = 16;
/// Most signatures an envelope may carry.
pub const MAX_SIGNATURES: usize = 64;

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum RosterError {
    #[error("roster envelope is {0} bytes, more than the {MAX_ROSTER_BYTES} allowed")]
    TooLarge(usize),
    #[error("payload type is `{0}`, expected `{PAYLOAD_TYPE}`")]
    PayloadType(String),
    #[error("payload is not a Roster: {0}")]
    Payload(String),
    #[error("{field}: {reason}")]
    Invalid { field: String, reason: String },
    #[error("{0} signatures, at most {MAX_SIGNATURES}")]
    TooManySignatures(usize),
    #[error("signed by {got} trusted governance key(s), {need} needed (valid signers: {signers}; ignored: {ignored})")]
    Threshold { got: usize, need: usize, signers: String, ignored: String },
}

fn invalid(field: impl Into<String>, reason: impl Into<String>) -> RosterError {
    RosterError::Invalid { field: field.into(), reason: reason.into() }
}

/// A roster whose signatures met the threshold and whose content is valid.
#[derive(Clone, Debug, PartialEq)]
pub struct VerifiedRoster {
    pub roster: proto::Roster,
    /// SHA-256 of the payload bytes: what certificates name.
    pub digest: [u8; 32],
    /// Key ids of the governance keys whose signatures counted.
    pub signers: Vec<String>,
    /// Region -> jurisdiction.
    pub regions: BTreeMap<String, String>,
}

impl VerifiedRoster {
    pub fn node(&self, id: &str) -> Option<&proto::RosterNode> {
        self.roster.nodes.iter().find(|n| n.node_id == id)
    }

    /// The member nodes that enforce `jurisdiction`, in roster order.
    pub fn nodes_for(&self, jurisdiction: &str) -> impl Iterator<Item = &proto::RosterNode> {
        self.roster.nodes.iter().filter(move |n| n.jurisdictions.iter().any(|j| j == jurisdiction))
    }

    /// The jurisdiction of `region` when a member node that enforces it hosts the region.
    pub fn jurisdiction_of(&self, region: &str) -> Option<&str> {
        let j = self.regions.get(region)?;
        self.nodes_for(j).any(|n| n.regions.iter().any(|r| r == region)).then_some(j.as_str())
    }

    pub fn reference(&self) -> proto::RosterRef {
        proto::RosterRef {
            network_id: self.roster.network_id.clone(),
            version: self.roster.version,
            sha256: self.digest.to_vec(),
        }
    }
}

/// The Ed25519 public keys of a node in the roster (validated: they decode).
pub fn node_keys(node: &proto::RosterNode) -> Vec<VerifyingKey> {
    node.keys.iter().filter_map(|k| decode_key(&k.public_key).ok()).collect()
}

fn decode_key(raw: &[u8]) -> Result<VerifyingKey, String> {
    let raw: [u8; 32] = raw.try_into().map_err(|_| format!("an Ed25519 key is 32 bytes, got {}", raw.len()))?;
    VerifyingKey::from_bytes(&raw).map_err(|_| "not a valid Ed25519 public key".to_string())
}

/// Adds an Ed25519 signature over the DSSE PAE of the envelope's payload. A signature
/// by the same key is replaced, so signing twice does not count twice.
pub fn add_signature(env: &mut proto::SignedDecision, key: &SigningKey) {
    let id = key_id(&key.verifying_key());
    let sig = key.sign(&pae(&env.payload_type, &env.payload));
    env.signatures.retain(|s| s.keyid != id);
    env.signatures.push(proto::Signature { sig: sig.to_bytes().to_vec(), keyid: id });
}

/// Reads an envelope file: DSSE JSON (`{"payloadType", "payload", "signatures"}`) when
/// it starts with `{`, else the protobuf encoding of `SignedDecision`.
pub fn parse_envelope(bytes: &[u8]) -> Result<proto::SignedDecision, String> {
    if bytes.len() > 2 * MAX_ROSTER_BYTES {
        return Err(format!("{} bytes, more than the {} allowed", bytes.len(), 2 * MAX_ROSTER_BYTES));
    }
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{') {
        let text = std::str::from_utf8(bytes).map_err(|_| "DSSE JSON that is not UTF-8".to_string())?;
        crate::decision::from_dsse_json(text)
    } else {
        proto::SignedDecision::decode(bytes)
            .map_err(|e| format!("neither DSSE JSON nor a protobuf SignedDecision: {e}"))
    }
}

/// An unsigned roster envelope: the roster encoded once, as it will be signed.
pub fn envelope(roster: &proto::Roster) -> proto::SignedDecision {
    proto::SignedDecision { payload: roster.encode_to_vec(), payload_type: PAYLOAD_TYPE.into(), signatures: vec![] }
}

fn code(field: &str, c: &str) -> Result<(), RosterError> {
    if c.len() == 2 && c.bytes().all(|b| b.is_ascii_uppercase()) {
        Ok(())
    } else {
        Err(invalid(field, format!("`{}` is not a two-letter upper-case code", echo(c))))
    }
}

/// At most 64 characters of client text in errors.
fn echo(s: &str) -> String {
    let mut out: String = s.chars().take(64).collect();
    if out.len() < s.len() {
        out.push('…');
    }
    out
}

fn key_of(field: &str, k: &proto::RosterKey) -> Result<VerifyingKey, RosterError> {
    let key = decode_key(&k.public_key).map_err(|r| invalid(format!("{field}.public_key"), r))?;
    if k.key_id != key_id(&key) {
        return Err(invalid(
            format!("{field}.key_id"),
            format!("`{}` is not the key's id {}", echo(&k.key_id), key_id(&key)),
        ));
    }
    Ok(key)
}

/// Checks a roster's content: every field present and well-formed, references
/// resolved, bounds kept. Returns the region table.
pub fn validate(r: &proto::Roster) -> Result<BTreeMap<String, String>, RosterError> {
    let proto::Roster { network_id, version, issued_at, threshold, governance_keys, regions, nodes, witness_quorum } =
        r;
    if network_id.is_empty() || network_id.len() > 128 || !network_id.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(invalid("network_id", "must be 1 to 128 printable ASCII characters without spaces"));
    }
    if *version == 0 {
        return Err(invalid("version", "must be at least 1"));
    }
    if issued_at.is_none() {
        return Err(invalid("issued_at", "required"));
    }
    if governance_keys.is_empty() || governance_keys.len() > MAX_GOVERNANCE_KEYS {
        return Err(invalid(
            "governance_keys",
            format!("1 to {MAX_GOVERNANCE_KEYS} keys, got {}", governance_keys.len()),
        ));
    }
    let mut seen = BTreeSet::new();
    for (i, k) in governance_keys.iter().enumerate() {
        key_of(&format!("governance_keys[{i}]"), k)?;
        if !seen.insert(&k.key_id) {
            return Err(invalid(format!("governance_keys[{i}]"), "listed twice"));
        }
    }
    if *threshold == 0 || *threshold as usize > governance_keys.len() {
        return Err(invalid(
            "threshold",
            format!("must be between 1 and the {} governance keys, got {threshold}", governance_keys.len()),
        ));
    }
    if regions.is_empty() || regions.len() > MAX_REGIONS {
        return Err(invalid("regions", format!("1 to {MAX_REGIONS} regions, got {}", regions.len())));
    }
    let mut table = BTreeMap::new();
    for (i, rj) in regions.iter().enumerate() {
        code(&format!("regions[{i}].region"), &rj.region)?;
        code(&format!("regions[{i}].jurisdiction"), &rj.jurisdiction)?;
        if table.insert(rj.region.clone(), rj.jurisdiction.clone()).is_some() {
            return Err(invalid(format!("regions[{i}].region"), format!("`{}` is listed twice", rj.region)));
        }
    }
    if nodes.is_empty() || nodes.len() > MAX_NODES {
        return Err(invalid("nodes", format!("1 to {MAX_NODES} nodes, got {}", nodes.len())));
    }
    let mut ids = BTreeSet::new();
    let mut origins = BTreeSet::new();
    for (i, n) in nodes.iter().enumerate() {
        let f = |s: &str| format!("nodes[{i}].{s}");
        let proto::RosterNode {
            node_id,
            jurisdictions,
            regions,
            grpc_endpoint,
            http_endpoint,
            keys,
            log_origin,
            log_verifier_key,
        } = n;
        let id_ok = !node_id.is_empty()
            && node_id.len() <= 64
            && node_id.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
        if !id_ok {
            return Err(invalid(f("node_id"), "must be 1 to 64 characters of A-Z, a-z, 0-9, `-`, `_` and `.`"));
        }
        if !ids.insert(node_id.as_str()) {
            return Err(invalid(f("node_id"), format!("`{node_id}` is listed twice")));
        }
        if jurisdictions.is_empty() {
            return Err(invalid(f("jurisdictions"), "at least one"));
        }
        for (k, j) in jurisdictions.iter().enumerate() {
            code(&f(&format!("jurisdictions[{k}]")), j)?;
        }
        for (k, region) in regions.iter().enumerate() {
            let field = f(&format!("regions[{k}]"));
            let Some(j) = table.get(region) else {
                return Err(invalid(field, format!("`{}` is not in the region table", echo(region))));
            };
            if !jurisdictions.contains(j) {
                return Err(invalid(field, format!("`{region}` is under {j}, which the node does not enforce")));
            }
        }
        for (name, url, required) in [("grpc_endpoint", grpc_endpoint, true), ("http_endpoint", http_endpoint, false)] {
            if url.is_empty() && !required {
                continue;
            }
            let ok = (url.starts_with("http://") || url.starts_with("https://"))
                && url.len() <= 512
                && url.bytes().all(|b| b.is_ascii_graphic());
            if !ok {
                return Err(invalid(f(name), format!("`{}` is not an http:// or https:// URL", echo(url))));
            }
        }
        if keys.is_empty() || keys.len() > MAX_NODE_KEYS {
            return Err(invalid(f("keys"), format!("1 to {MAX_NODE_KEYS} keys, got {}", keys.len())));
        }
        for (k, key) in keys.iter().enumerate() {
            key_of(&f(&format!("keys[{k}]")), key)?;
        }
        let (name, _) =
            checkpoint::parse_vkey(log_verifier_key).map_err(|e| invalid(f("log_verifier_key"), e.to_string()))?;
        if &name != log_origin {
            return Err(invalid(
                f("log_origin"),
                format!("`{}` is not the verifier key's name `{name}`", echo(log_origin)),
            ));
        }
        if !origins.insert(log_origin.as_str()) {
            return Err(invalid(f("log_origin"), format!("`{log_origin}` is another node's log")));
        }
    }
    if *witness_quorum as usize > nodes.len() {
        return Err(invalid("witness_quorum", format!("more than the {} member nodes", nodes.len())));
    }
    Ok(table)
}

/// Verifies a roster envelope against the governance keys the verifier trusts and the
/// least threshold it accepts (the roster's own threshold applies when higher).
pub fn verify(
    env: &proto::SignedDecision,
    trusted: &[VerifyingKey],
    min_threshold: u32,
) -> Result<VerifiedRoster, RosterError> {
    if env.payload_type != PAYLOAD_TYPE {
        return Err(RosterError::PayloadType(echo(&env.payload_type)));
    }
    if env.payload.len() > MAX_ROSTER_BYTES {
        return Err(RosterError::TooLarge(env.payload.len()));
    }
    if env.signatures.len() > MAX_SIGNATURES {
        return Err(RosterError::TooManySignatures(env.signatures.len()));
    }
    let roster = proto::Roster::decode(env.payload.as_slice()).map_err(|e| RosterError::Payload(e.to_string()))?;
    let regions = validate(&roster)?;
    let listed: BTreeSet<&str> = roster.governance_keys.iter().map(|k| k.key_id.as_str()).collect();
    let message = pae(&env.payload_type, &env.payload);
    let mut signers = Vec::new();
    let mut ignored = Vec::new();
    for s in &env.signatures {
        let key = trusted.iter().find(|k| key_id(k) == s.keyid);
        let why = match key {
            None => Some("not a trusted governance key"),
            Some(_) if !listed.contains(s.keyid.as_str()) => Some("not among the roster's governance keys"),
            Some(_) if signers.contains(&s.keyid) => Some("signed twice"),
            Some(k) => match ed25519_dalek::Signature::from_slice(&s.sig) {
                Ok(sig) if k.verify_strict(&message, &sig).is_ok() => None,
                _ => Some("signature does not verify"),
            },
        };
        match why {
            None => signers.push(s.keyid.clone()),
            Some(why) => ignored.push(format!("{} ({why})", echo(&s.keyid))),
        }
    }
    let need = roster.threshold.max(min_threshold) as usize;
    if signers.len() < need {
        let none = || "none".to_string();
        let list = |v: &[String]| if v.is_empty() { none() } else { v.join(", ") };
        return Err(RosterError::Threshold {
            got: signers.len(),
            need,
            signers: list(&signers),
            ignored: list(&ignored),
        });
    }
    let digest = Sha256::digest(&env.payload).into();
    Ok(VerifiedRoster { roster, digest, signers, regions })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub fn key(n: u8) -> SigningKey {
        SigningKey::from_bytes(&[n; 32])
    }

    pub fn rkey(k: &SigningKey) -> proto::RosterKey {
        let v = k.verifying_key();
        proto::RosterKey { public_key: v.as_bytes().to_vec(), key_id: key_id(&v) }
    }

    pub fn node(id: &str, j: &str, regions: &[&str], k: &SigningKey) -> proto::RosterNode {
        let origin = format!("silkgate/{id}/1");
        proto::RosterNode {
            node_id: id.into(),
            jurisdictions: vec![j.into()],
            regions: regions.iter().map(|r| r.to_string()).collect(),
            grpc_endpoint: format!("http://{id}.example:50051"),
            http_endpoint: String::new(),
            keys: vec![rkey(k)],
            log_verifier_key: checkpoint::vkey(&origin, &k.verifying_key()),
            log_origin: origin,
        }
    }

    pub fn roster(version: u64) -> proto::Roster {
        let region = |r: &str, j: &str| proto::RegionJurisdiction { region: r.into(), jurisdiction: j.into() };
        proto::Roster {
            network_id: "test-net".into(),
            version,
            issued_at: Some(prost_types::Timestamp { seconds: 1_764_547_200, nanos: 0 }),
            threshold: 2,
            governance_keys: vec![rkey(&key(1)), rkey(&key(2)), rkey(&key(3))],
            regions: vec![region("CN", "CN"), region("FR", "EU"), region("DE", "EU"), region("SG", "SG")],
            nodes: vec![node("cn-1", "CN", &["CN"], &key(10)), node("eu-1", "EU", &["FR", "DE"], &key(11))],
            witness_quorum: 0,
        }
    }

    fn trusted() -> Vec<VerifyingKey> {
        [1, 2, 3].map(|n| key(n).verifying_key()).to_vec()
    }

    #[test]
    fn m_of_n_signatures_are_needed() {
        let mut env = envelope(&roster(1));
        add_signature(&mut env, &key(1));
        let e = verify(&env, &trusted(), 1).unwrap_err();
        assert!(matches!(e, RosterError::Threshold { got: 1, need: 2, .. }), "{e}");
        // The same key again does not count twice.
        add_signature(&mut env, &key(1));
        assert_eq!(env.signatures.len(), 1);
        add_signature(&mut env, &key(3));
        let v = verify(&env, &trusted(), 1).unwrap();
        assert_eq!(v.signers.len(), 2);
        assert_eq!(v.digest, <[u8; 32]>::from(Sha256::digest(&env.payload)));
        assert_eq!(v.jurisdiction_of("FR"), Some("EU"));
        // SG is in the table but no member node hosts it.
        assert_eq!(v.jurisdiction_of("SG"), None);
        // The verifier's own minimum applies when higher than the roster's.
        assert!(matches!(verify(&env, &trusted(), 3), Err(RosterError::Threshold { need: 3, .. })));
    }

    #[test]
    fn untrusted_unlisted_and_bad_signatures_do_not_count() {
        let mut env = envelope(&roster(1));
        add_signature(&mut env, &key(1));
        add_signature(&mut env, &key(9)); // not trusted
        let e = verify(&env, &trusted(), 1).unwrap_err().to_string();
        assert!(e.contains("not a trusted governance key"), "{e}");
        // Trusted by the verifier, but not one of the roster's governance keys.
        let mut trusted_more = trusted();
        trusted_more.push(key(9).verifying_key());
        let e = verify(&env, &trusted_more, 1).unwrap_err().to_string();
        assert!(e.contains("not among the roster's governance keys"), "{e}");
        // A changed payload (witness_quorum = 1 appended) breaks every signature.
        add_signature(&mut env, &key(2));
        env.payload.push(0x40);
        env.payload.push(0x01);
        let e = verify(&env, &trusted(), 1).unwrap_err().to_string();
        assert!(e.contains("signature does not verify"), "{e}");
    }

    #[test]
    fn content_errors_name_the_field() {
        let mut r = roster(1);
        r.nodes[1].regions.push("SG".into());
        assert_eq!(
            validate(&r).unwrap_err().to_string(),
            "nodes[1].regions[2]: `SG` is under SG, which the node does not enforce"
        );
        let mut r = roster(1);
        r.threshold = 4;
        assert!(validate(&r).unwrap_err().to_string().starts_with("threshold:"));
        let mut r = roster(1);
        r.nodes[0].keys[0].key_id = "00".into();
        assert!(validate(&r).unwrap_err().to_string().starts_with("nodes[0].keys[0].key_id:"));
        let mut r = roster(1);
        r.nodes[1].node_id = "cn-1".into();
        assert!(validate(&r).unwrap_err().to_string().starts_with("nodes[1].node_id:"));
        let mut r = roster(1);
        r.regions[1].region = "fr".into();
        assert!(validate(&r).unwrap_err().to_string().starts_with("regions[1].region:"));
        let mut r = roster(1);
        r.nodes[0].grpc_endpoint = "tcp://x".into();
        assert!(validate(&r).unwrap_err().to_string().starts_with("nodes[0].grpc_endpoint:"));
    }
}
