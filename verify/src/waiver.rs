//! Signed waivers: parsing and checking.
//!
//! A waiver is a [`proto::Waiver`], encoded once and signed as a DSSE v1 envelope (the
//! `SignedDecision` message) with payload type [`WAIVER_PAYLOAD_TYPE`] by its
//! jurisdiction's policy authority, to the authority's threshold (the same rules as a
//! policy release: [`crate::release::verified_signers`]). Its digest is SHA-256 of the
//! payload bytes, so signatures added later do not change it.

use prost::Message;
use sha2::{Digest, Sha256};

use crate::proto;
use crate::release::{Authority, MAX_SIGNATURES, verified_signers};
use crate::time::UnixTime;

/// The DSSE payload type of a waiver.
pub const WAIVER_PAYLOAD_TYPE: &str = "application/vnd.silkgate.waiver.v1+protobuf";

/// Most rule ids one waiver may name.
pub const MAX_RULE_IDS: usize = 64;
/// Longest justification or ticket, in bytes.
pub const MAX_TEXT_BYTES: usize = 4096;

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum WaiverError {
    #[error("payload type is `{0}`, expected `{WAIVER_PAYLOAD_TYPE}`")]
    PayloadType(String),
    #[error("more than {MAX_SIGNATURES} signatures")]
    TooManySignatures,
    #[error("signature by authority key `{0}` does not verify")]
    BadSignature(String),
    #[error("signed by {got} of the authority's keys, {need} needed")]
    UnderThreshold { got: usize, need: usize },
    #[error("payload is not a Waiver: {0}")]
    Payload(String),
    #[error("{field}: {reason}")]
    Field { field: &'static str, reason: String },
}

fn field(field: &'static str, reason: impl Into<String>) -> WaiverError {
    WaiverError::Field { field, reason: reason.into() }
}

/// A waiver whose signatures met the threshold and whose fields are well formed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedWaiver {
    pub waiver: proto::Waiver,
    /// SHA-256 of the payload.
    pub digest: [u8; 32],
    pub signers: Vec<String>,
    pub not_before: UnixTime,
    pub expires: UnixTime,
}

/// Checks a waiver envelope against its jurisdiction's `authority`: payload type,
/// signatures and threshold, then every field (see [`check_fields`]).
pub fn verify_waiver(
    env: &proto::SignedDecision,
    authority: &Authority,
    jurisdiction: &str,
) -> Result<VerifiedWaiver, WaiverError> {
    if env.payload_type != WAIVER_PAYLOAD_TYPE {
        return Err(WaiverError::PayloadType(env.payload_type.clone()));
    }
    if env.signatures.len() > MAX_SIGNATURES {
        return Err(WaiverError::TooManySignatures);
    }
    let signers = verified_signers(env, &authority.keys).map_err(WaiverError::BadSignature)?;
    if signers.len() < authority.threshold {
        return Err(WaiverError::UnderThreshold { got: signers.len(), need: authority.threshold });
    }
    let waiver = proto::Waiver::decode(env.payload.as_slice()).map_err(|e| WaiverError::Payload(e.to_string()))?;
    if waiver.jurisdiction != jurisdiction {
        return Err(field("jurisdiction", format!("`{}`, expected `{jurisdiction}`", waiver.jurisdiction)));
    }
    let (not_before, expires) = check_fields(&waiver)?;
    Ok(VerifiedWaiver { waiver, digest: Sha256::digest(&env.payload).into(), signers, not_before, expires })
}

/// The jurisdiction a waiver envelope says it is for, before it is checked (to find the
/// authority to check it with).
pub fn jurisdiction_of(env: &proto::SignedDecision) -> Result<String, WaiverError> {
    proto::Waiver::decode(env.payload.as_slice())
        .map(|w| w.jurisdiction)
        .map_err(|e| WaiverError::Payload(e.to_string()))
}

fn valid_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_' | b'.'))
}

/// Checks a waiver's fields: an id, 1 to [`MAX_RULE_IDS`] distinct rule ids, a
/// justification and a ticket, a scope that is one request digest or at least one
/// attribute, and `not_before` before `expires`. Returns the two times.
pub fn check_fields(w: &proto::Waiver) -> Result<(UnixTime, UnixTime), WaiverError> {
    if !valid_id(&w.waiver_id) {
        return Err(field("waiver_id", "must be 1 to 64 characters of a-z, 0-9, `-`, `_` and `.`"));
    }
    if w.rule_ids.is_empty() || w.rule_ids.len() > MAX_RULE_IDS {
        return Err(field("rule_ids", format!("must name 1 to {MAX_RULE_IDS} rules, got {}", w.rule_ids.len())));
    }
    for (i, r) in w.rule_ids.iter().enumerate() {
        if !valid_id(r) || w.rule_ids[..i].contains(r) {
            return Err(field("rule_ids", format!("`{}` is not a rule id, or is named twice", r.escape_debug())));
        }
    }
    for (name, text) in [("justification", &w.justification), ("ticket", &w.ticket)] {
        if text.trim().is_empty() || text.len() > MAX_TEXT_BYTES {
            return Err(field(name, format!("required, at most {MAX_TEXT_BYTES} bytes")));
        }
    }
    let scope = w.scope.as_ref().ok_or_else(|| field("scope", "required"))?;
    let attributes =
        !scope.operator_entity_country.is_empty() || !scope.protocol_name.is_empty() || scope.deployment_kind != 0;
    match (scope.request_sha256.len(), attributes) {
        (32, false) | (0, true) => {}
        (0, false) => {
            return Err(field("scope", "names no request digest and no attribute: it would cover everything"));
        }
        (32, true) => return Err(field("scope", "a request digest and attributes: give one or the other")),
        (n, _) => return Err(field("scope", format!("request_sha256 is {n} bytes, not 32"))),
    }
    if scope.deployment_kind != 0 && proto::DeploymentKind::try_from(scope.deployment_kind).is_err() {
        return Err(field("scope", format!("deployment_kind {} is not a DeploymentKind", scope.deployment_kind)));
    }
    let time = |t: &Option<prost_types::Timestamp>, name: &'static str| {
        t.as_ref().map(|t| UnixTime { secs: t.seconds, nanos: 0 }).ok_or_else(|| field(name, "required"))
    };
    let (not_before, expires) = (time(&w.not_before, "not_before")?, time(&w.expires, "expires")?);
    if expires.secs <= not_before.secs {
        return Err(field("expires", "must be after not_before"));
    }
    Ok((not_before, expires))
}

/// Whether a waiver applies at `at`: from `not_before` (inclusive) to `expires`
/// (exclusive), in whole seconds.
pub fn in_force(w: &VerifiedWaiver, at: UnixTime) -> bool {
    w.not_before.secs <= at.secs && at.secs < w.expires.secs
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::release::{add_signature, envelope};
    use ed25519_dalek::SigningKey;

    fn waiver() -> proto::Waiver {
        proto::Waiver {
            jurisdiction: "XX".into(),
            waiver_id: "w-1".into(),
            rule_ids: vec!["xx.soft".into()],
            scope: Some(proto::WaiverScope { protocol_name: "ethereum".into(), ..Default::default() }),
            justification: "pilot".into(),
            ticket: "T-1".into(),
            not_before: Some(prost_types::Timestamp { seconds: 100, nanos: 0 }),
            expires: Some(prost_types::Timestamp { seconds: 200, nanos: 0 }),
        }
    }

    fn authority() -> Authority {
        Authority::new(vec![SigningKey::from_bytes(&[1; 32]).verifying_key()], 1).unwrap()
    }

    #[test]
    fn a_signed_waiver_verifies_and_applies_until_it_expires() {
        let mut env = envelope(WAIVER_PAYLOAD_TYPE, waiver().encode_to_vec());
        assert!(matches!(verify_waiver(&env, &authority(), "XX"), Err(WaiverError::UnderThreshold { got: 0, .. })));
        add_signature(&mut env, &SigningKey::from_bytes(&[1; 32]));
        let w = verify_waiver(&env, &authority(), "XX").unwrap();
        assert_eq!(w.digest, <[u8; 32]>::from(Sha256::digest(&env.payload)));
        let at = |secs| UnixTime { secs, nanos: 0 };
        assert!(!in_force(&w, at(99)));
        assert!(in_force(&w, at(100)));
        assert!(in_force(&w, at(199)));
        assert!(!in_force(&w, at(200)), "a waiver applies at its expiry second");
        assert!(verify_waiver(&env, &authority(), "YY").is_err());
    }

    #[test]
    fn fields_are_checked() {
        type Change = fn(&mut proto::Waiver);
        let cases: [(Change, &str); 6] = [
            (|w| w.rule_ids.clear(), "rule_ids"),
            (|w| w.rule_ids.push("xx.soft".into()), "rule_ids"),
            (|w| w.scope = Some(Default::default()), "would cover everything"),
            (|w| w.scope.as_mut().unwrap().request_sha256 = vec![1; 32], "a request digest and attributes"),
            (|w| w.expires = w.not_before, "expires"),
            (|w| w.ticket.clear(), "ticket"),
        ];
        for (change, want) in cases {
            let mut w = waiver();
            change(&mut w);
            let e = check_fields(&w).unwrap_err().to_string();
            assert!(e.contains(want), "{e}");
        }
    }
}
