//! The signed decision: the `Decision` payload, its DSSE v1 envelope, Ed25519.
//!
//! This is the one module that defines signed bytes. The payload is the protobuf
//! encoding of `Decision`, produced once by [`sign`] and never re-encoded; the
//! signature covers `PAE(payload_type, payload)` as DSSE v1 defines it:
//! `"DSSEv1" SP len(type) SP type SP len(payload) SP payload`, lengths in ASCII decimal.

use std::fmt;

use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
use prost::Message;
use sha2::{Digest, Sha256};

use crate::policy::{Effect, Outcome, Policy, Verdict};
use crate::proto;
use crate::time::Instant;

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

/// A signing key with its key id. Its `Debug` never shows key material.
pub struct Signer {
    key: SigningKey,
    key_id: String,
}

impl Signer {
    pub fn new(key: SigningKey) -> Self {
        let key_id = key_id(&key.verifying_key());
        Signer { key, key_id }
    }

    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    pub fn verifying_key(&self) -> VerifyingKey {
        self.key.verifying_key()
    }

    pub fn signing_key(&self) -> &SigningKey {
        &self.key
    }

    fn sign(&self, msg: &[u8]) -> [u8; 64] {
        self.key.sign(msg).to_bytes()
    }
}

impl fmt::Debug for Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Signer").field("key_id", &self.key_id).finish_non_exhaustive()
    }
}

/// Everything a decision says besides the evaluation outcome.
pub struct Context<'a> {
    pub decision_id: String,
    pub node_id: &'a str,
    pub request_sha256: [u8; 32],
    pub request_id: &'a str,
    pub issued_at: Instant,
    /// How long the decision stays valid evidence, in seconds.
    pub validity_secs: i64,
}

pub fn effect_to_proto(e: Effect) -> proto::Effect {
    match e {
        Effect::Deny => proto::Effect::Deny,
        Effect::Warn => proto::Effect::Warn,
        Effect::Allow => proto::Effect::Allow,
    }
}

/// Builds the `Decision` message for an outcome of `policy`.
pub fn build(policy: &Policy, outcome: &Outcome, ctx: &Context<'_>, key_id: &str) -> proto::Decision {
    let matched_rules = outcome
        .matched
        .iter()
        .map(|&i| {
            let r = &policy.rules[i as usize];
            proto::MatchedRule {
                id: r.id.clone(),
                effect: effect_to_proto(r.effect) as i32,
                message: r.message.clone(),
                citation: r.citation.clone(),
                url: r.url.clone(),
            }
        })
        .collect();
    let verdict = match outcome.verdict {
        Verdict::Allow => proto::Verdict::Allow,
        Verdict::Deny => proto::Verdict::Deny,
    };
    let not_after = Instant { secs: ctx.issued_at.secs.saturating_add(ctx.validity_secs), nanos: ctx.issued_at.nanos };
    proto::Decision {
        decision_id: ctx.decision_id.clone(),
        verdict: verdict as i32,
        jurisdiction: policy.jurisdiction.clone(),
        matched_rules,
        policy: Some(proto::PolicyRef {
            id: policy.id.clone(),
            version: policy.version.clone(),
            sha256: policy.digest.to_vec(),
        }),
        request_sha256: ctx.request_sha256.to_vec(),
        request_id: ctx.request_id.to_string(),
        node_id: ctx.node_id.to_string(),
        key_id: key_id.to_string(),
        issued_at: Some(ctx.issued_at.to_timestamp()),
        not_after: Some(not_after.to_timestamp()),
        default_applied: outcome.default_applied,
    }
}

/// Encodes `decision` once and signs it.
pub fn sign(decision: &proto::Decision, signer: &Signer) -> proto::SignedDecision {
    let payload = decision.encode_to_vec();
    let sig = signer.sign(&pae(PAYLOAD_TYPE, &payload));
    proto::SignedDecision {
        payload,
        payload_type: PAYLOAD_TYPE.to_string(),
        signatures: vec![proto::Signature { sig: sig.to_vec(), keyid: signer.key_id.clone() }],
    }
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
    now: Option<Instant>,
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
        return Err(VerifyError::Expired(Instant::from_secs(na.seconds).rfc3339()));
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
    let time = |t: &Option<prost_types::Timestamp>| t.as_ref().map(|t| Instant::from_secs(t.seconds).rfc3339());
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

    #[test]
    fn sign_then_verify_and_tamper() {
        let signer = Signer::new(SigningKey::from_bytes(&[9; 32]));
        let d = proto::Decision { decision_id: "d".into(), key_id: signer.key_id().into(), ..Default::default() };
        let env = sign(&d, &signer);
        let keys = [signer.verifying_key()];
        assert_eq!(verify(&env, &keys, None).unwrap(), d);
        for i in 0..env.payload.len() {
            let mut bad = env.clone();
            bad.payload[i] ^= 1;
            assert!(verify(&bad, &keys, None).is_err(), "byte {i}");
        }
        let other = SigningKey::from_bytes(&[8; 32]).verifying_key();
        assert!(matches!(verify(&env, &[other], None), Err(VerifyError::UnknownKey(_))));
        let mut bad = env.clone();
        bad.payload_type.push('x');
        assert!(matches!(verify(&bad, &keys, None), Err(VerifyError::PayloadType(_))));
    }

    #[test]
    fn debug_hides_the_key() {
        let signer = Signer::new(SigningKey::from_bytes(&[9; 32]));
        let shown = format!("{signer:?}");
        assert!(shown.contains("key_id") && !shown.contains("09, 09"), "{shown}");
    }
}
