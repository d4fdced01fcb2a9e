//! The signed decision: the `Decision` payload built from an evaluation outcome, and its
//! DSSE v1 envelope signed with Ed25519.
//!
//! This is the one module that makes signed decision bytes. The payload is the protobuf
//! encoding of `Decision`, produced once by [`sign`] and never re-encoded. How the
//! envelope is checked (the PAE, key ids, [`verify`]) lives in `silkgate_verify::decision`
//! and is re-exported here, so signer and verifier share one definition.

use std::fmt;

use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
use prost::Message;

use crate::policy::{Effect, Level, Outcome, Policy, Verdict};
use crate::proto;
use crate::time::UnixTime;

pub use silkgate_verify::decision::{
    PAYLOAD_TYPE, VerifyError, decision_json, from_dsse_json, key_id, pae, to_dsse_json, verify,
};

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
    pub issued_at: UnixTime,
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

pub fn level_to_proto(l: Level) -> proto::Level {
    match l {
        Level::Advisory => proto::Level::Advisory,
        Level::Soft => proto::Level::Soft,
        Level::Hard => proto::Level::Hard,
        Level::None => proto::Level::Unspecified,
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
                level: level_to_proto(r.level) as i32,
                waiver_sha256: Vec::new(),
                waiver_log_index: None,
            }
        })
        .collect();
    let verdict = match outcome.verdict {
        Verdict::Allow => proto::Verdict::Allow,
        Verdict::Deny => proto::Verdict::Deny,
    };
    let not_after = UnixTime { secs: ctx.issued_at.secs.saturating_add(ctx.validity_secs), nanos: ctx.issued_at.nanos };
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
        activation_index: None,
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

/// Encodes `message` once and signs it as a DSSE envelope of `payload_type` with the node
/// key: the other entries a node logs (policy activations) are made here, like decisions.
pub fn sign_as(payload_type: &str, message: &impl Message, signer: &Signer) -> proto::SignedDecision {
    let payload = message.encode_to_vec();
    let sig = signer.sign(&pae(payload_type, &payload));
    proto::SignedDecision {
        payload,
        payload_type: payload_type.to_string(),
        signatures: vec![proto::Signature { sig: sig.to_vec(), keyid: signer.key_id.clone() }],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
