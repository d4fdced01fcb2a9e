//! Checking a signed decision: the DSSE v1 envelope around a `Decision` payload, signed
//! with Ed25519.
//!
//! The signature covers `PAE(payload_type, payload)` as DSSE v1 defines it:
//! `"DSSEv1" SP len(type) SP type SP len(payload) SP payload`, lengths in ASCII decimal.
//! The payload is the protobuf encoding of `Decision`, checked as signed and decoded,
//! never re-encoded.
//!
//! ```
//! use silkgate_verify::decision::{self, VerifyError};
//! use silkgate_verify::proto::SignedDecision;
//! # let key = ed25519_dalek::SigningKey::from_bytes(&[1; 32]).verifying_key();
//! let envelope = SignedDecision::default(); // as received from a node, or decoded from a log entry
//! let refused = decision::verify(&envelope, &[key], None);
//! assert!(matches!(refused, Err(VerifyError::PayloadType(_))));
//! ```

use ed25519_dalek::VerifyingKey;
use prost::Message;
use sha2::{Digest, Sha256};

use crate::proto;
use crate::time::UnixTime;

/// The DSSE payload type of a decision.
pub const PAYLOAD_TYPE: &str = "application/vnd.silkgate.decision.v1+protobuf";

/// DSSE v1 pre-authentication encoding.
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + payload_type.len() + 32);
    out.extend_from_slice(b"DSSEv1 ");
    out.extend_from_slice(payload_type.len().to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(payload_type.as_bytes());
    out.push(b' ');
    out.extend_from_slice(payload.len().to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(payload);
    out
}

/// Key id: lowercase hex SHA-256 of the raw 32-byte Ed25519 public key.
pub fn key_id(key: &VerifyingKey) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("payload type is `{0}`, expected `{PAYLOAD_TYPE}`")]
    PayloadType(String),
    #[error("no signature by a known key (signature key ids: {0})")]
    UnknownKey(String),
    #[error("signature by key `{0}` does not verify")]
    BadSignature(String),
    #[error("payload is not a Decision: {0}")]
    Payload(String),
    #[error("decision names key `{inner}` but is signed by `{outer}`")]
    KeyMismatch { inner: String, outer: String },
    #[error("decision expired at {0}")]
    Expired(String),
}

/// Verifies a signed decision against trusted public keys and returns the decision.
/// At least one signature must be by a trusted key and verify (strict Ed25519); the
/// payload must decode and name that key. `now`, when given, must not be past `not_after`.
pub fn verify(
    env: &proto::SignedDecision,
    keys: &[VerifyingKey],
    now: Option<UnixTime>,
) -> Result<proto::Decision, VerifyError> {
    if env.payload_type != PAYLOAD_TYPE {
        return Err(VerifyError::PayloadType(env.payload_type.clone()));
    }
    let message = pae(&env.payload_type, &env.payload);
    let mut verified = None;
    for s in &env.signatures {
        let Some(key) = keys.iter().find(|k| key_id(k) == s.keyid) else {
            continue;
        };
        let sig =
            ed25519_dalek::Signature::from_slice(&s.sig).map_err(|_| VerifyError::BadSignature(s.keyid.clone()))?;
        key.verify_strict(&message, &sig).map_err(|_| VerifyError::BadSignature(s.keyid.clone()))?;
        verified = Some(s.keyid.clone());
        break;
    }
    let Some(outer) = verified else {
        let ids: Vec<&str> = env.signatures.iter().map(|s| s.keyid.as_str()).collect();
        return Err(VerifyError::UnknownKey(ids.join(", ")));
    };
    let d = proto::Decision::decode(env.payload.as_slice()).map_err(|e| VerifyError::Payload(e.to_string()))?;
    if d.key_id != outer {
        return Err(VerifyError::KeyMismatch { inner: d.key_id, outer });
    }
    if let (Some(now), Some(na)) = (now, &d.not_after)
        && (now.secs, now.nanos as i32) > (na.seconds, na.nanos)
    {
        return Err(VerifyError::Expired(UnixTime::from_secs(na.seconds).rfc3339()));
    }
    Ok(d)
}

/// The DSSE JSON envelope: `{"payloadType", "payload" (base64), "signatures": [{"keyid",
/// "sig" (base64)}]}`, as DSSE tooling reads and writes it.
pub fn to_dsse_json(env: &proto::SignedDecision) -> serde_json::Value {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    serde_json::json!({
        "payloadType": env.payload_type,
        "payload": b64.encode(&env.payload),
        "signatures": env.signatures.iter().map(|s| serde_json::json!({
            "keyid": s.keyid,
            "sig": b64.encode(&s.sig),
        })).collect::<Vec<_>>(),
    })
}

/// Reads a DSSE JSON envelope.
pub fn from_dsse_json(text: &str) -> Result<proto::SignedDecision, String> {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let v: serde_json::Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    let field = |name: &str| v.get(name).and_then(|x| x.as_str()).ok_or_else(|| format!("missing string `{name}`"));
    let payload = b64.decode(field("payload")?).map_err(|e| format!("payload: {e}"))?;
    let mut signatures = Vec::new();
    for (i, s) in v.get("signatures").and_then(|s| s.as_array()).ok_or("missing array `signatures`")?.iter().enumerate()
    {
        let keyid = s.get("keyid").and_then(|x| x.as_str()).unwrap_or_default().to_string();
        let sig = s.get("sig").and_then(|x| x.as_str()).ok_or_else(|| format!("signatures[{i}]: missing `sig`"))?;
        let sig = b64.decode(sig).map_err(|e| format!("signatures[{i}].sig: {e}"))?;
        signatures.push(proto::Signature { sig, keyid });
    }
    Ok(proto::SignedDecision { payload, payload_type: field("payloadType")?.to_string(), signatures })
}

/// A decision as readable JSON (enum names, hex digests, RFC 3339 times).
pub fn decision_json(d: &proto::Decision) -> serde_json::Value {
    let time = |t: &Option<prost_types::Timestamp>| t.as_ref().map(|t| UnixTime::from_secs(t.seconds).rfc3339());
    let verdict = proto::Verdict::try_from(d.verdict).map(|v| v.as_str_name()).unwrap_or("UNKNOWN");
    serde_json::json!({
        "decision_id": d.decision_id,
        "verdict": verdict,
        "jurisdiction": d.jurisdiction,
        "matched_rules": d.matched_rules.iter().map(|r| serde_json::json!({
            "id": r.id,
            "effect": proto::Effect::try_from(r.effect).map(|e| e.as_str_name()).unwrap_or("UNKNOWN"),
            "message": r.message,
            "citation": r.citation,
            "url": r.url,
        })).collect::<Vec<_>>(),
        "policy": d.policy.as_ref().map(|p| serde_json::json!({
            "id": p.id, "version": p.version, "sha256": hex::encode(&p.sha256),
        })),
        "request_sha256": hex::encode(&d.request_sha256),
        "request_id": d.request_id,
        "node_id": d.node_id,
        "key_id": d.key_id,
        "issued_at": time(&d.issued_at),
        "not_after": time(&d.not_after),
        "default_applied": d.default_applied,
    })
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pae_matches_the_dsse_spec_example() {
        // From the DSSE v1 protocol document.
        let got = pae("http://example.com/HelloWorld", b"hello world");
        assert_eq!(got, b"DSSEv1 29 http://example.com/HelloWorld 11 hello world");
    }
}
