//! Signed policy releases and policy activations: parsing and checking.
//!
//! A jurisdiction's policy authority releases a policy as a [`proto::PolicyRelease`],
//! encoded once and signed as a DSSE v1 envelope (the `SignedDecision` message) with
//! payload type [`RELEASE_PAYLOAD_TYPE`] by one or more authority keys. A node that starts
//! enforcing a policy logs a [`proto::PolicyActivation`] (payload type
//! [`ACTIVATION_PAYLOAD_TYPE`], signed by the node key) before any decision under it.
//!
//! The envelope rules are the decisions' ones: the signature is Ed25519 over
//! `PAE(payload_type, payload)`, the key id is the lowercase hex SHA-256 of the raw public
//! key. A release counts the distinct configured keys whose signatures verify; a signature
//! by a configured key that does not verify refuses the release, and signatures by other
//! keys are ignored. An authority's threshold is at least 1, so an unsigned release never
//! passes, however many keys are configured.

use std::cmp::Ordering;

use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
use prost::Message;

use crate::decision::{key_id, pae};
use crate::proto;

/// The DSSE payload type of a policy release.
pub const RELEASE_PAYLOAD_TYPE: &str = "application/vnd.silkgate.policy-release.v1+protobuf";
/// The DSSE payload type of a policy activation (a log entry).
pub const ACTIVATION_PAYLOAD_TYPE: &str = "application/vnd.silkgate.policy-activation.v1+protobuf";

/// Most signatures a release envelope may carry.
pub const MAX_SIGNATURES: usize = 64;

/// A jurisdiction's policy authority: its keys and how many of them must sign.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Authority {
    pub keys: Vec<VerifyingKey>,
    /// At least 1 and at most `keys.len()`.
    pub threshold: usize,
}

impl Authority {
    /// An authority, refusing a threshold of 0 or above the number of distinct keys.
    pub fn new(keys: Vec<VerifyingKey>, threshold: usize) -> Result<Self, String> {
        let mut ids: Vec<String> = keys.iter().map(key_id).collect();
        ids.sort();
        ids.dedup();
        if ids.len() != keys.len() {
            return Err("the same key is listed twice".into());
        }
        if threshold == 0 || threshold > keys.len() {
            return Err(format!(
                "threshold must be between 1 and the number of keys ({}), got {threshold}",
                keys.len()
            ));
        }
        Ok(Authority { keys, threshold })
    }
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReleaseError {
    #[error("payload type is `{0}`, expected `{RELEASE_PAYLOAD_TYPE}`")]
    PayloadType(String),
    #[error("more than {MAX_SIGNATURES} signatures")]
    TooManySignatures,
    #[error("signature by authority key `{0}` does not verify")]
    BadSignature(String),
    #[error("signed by {got} of the authority's keys, {need} needed (signature key ids: {ids})")]
    UnderThreshold { got: usize, need: usize, ids: String },
    #[error("payload is not a PolicyRelease: {0}")]
    Payload(String),
    #[error("release is for jurisdiction `{got}`, expected `{want}`")]
    Jurisdiction { got: String, want: String },
    #[error("version: {0}")]
    Version(String),
}

/// A release whose signatures met the threshold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedRelease {
    pub release: proto::PolicyRelease,
    /// Key ids of the authority keys whose signatures verified, sorted.
    pub signers: Vec<String>,
}

/// Checks a release envelope against `authority`, for `jurisdiction`: the payload type,
/// every signature by an authority key, the threshold of distinct authority keys, the
/// payload, its jurisdiction and its version syntax.
pub fn verify_release(
    env: &proto::SignedDecision,
    authority: &Authority,
    jurisdiction: &str,
) -> Result<VerifiedRelease, ReleaseError> {
    if env.payload_type != RELEASE_PAYLOAD_TYPE {
        return Err(ReleaseError::PayloadType(env.payload_type.clone()));
    }
    if env.signatures.len() > MAX_SIGNATURES {
        return Err(ReleaseError::TooManySignatures);
    }
    let signers = verified_signers(env, &authority.keys).map_err(ReleaseError::BadSignature)?;
    if signers.len() < authority.threshold {
        let ids: Vec<&str> = env.signatures.iter().map(|s| s.keyid.as_str()).collect();
        let ids = if ids.is_empty() { "none".to_string() } else { ids.join(", ") };
        return Err(ReleaseError::UnderThreshold { got: signers.len(), need: authority.threshold, ids });
    }
    let release =
        proto::PolicyRelease::decode(env.payload.as_slice()).map_err(|e| ReleaseError::Payload(e.to_string()))?;
    if release.jurisdiction != jurisdiction {
        return Err(ReleaseError::Jurisdiction { got: release.jurisdiction, want: jurisdiction.to_string() });
    }
    parse_version(&release.version).map_err(ReleaseError::Version)?;
    if release.rollback {
        parse_version(&release.supersedes).map_err(|e| ReleaseError::Version(format!("supersedes: {e}")))?;
    }
    Ok(VerifiedRelease { release, signers })
}

/// The sorted, distinct key ids among `keys` whose signatures on `env` verify; `Err`
/// names the first key of `keys` whose signature does not.
pub fn verified_signers(env: &proto::SignedDecision, keys: &[VerifyingKey]) -> Result<Vec<String>, String> {
    let message = pae(&env.payload_type, &env.payload);
    let mut signers: Vec<String> = Vec::new();
    for s in &env.signatures {
        let Some(key) = keys.iter().find(|k| key_id(k) == s.keyid) else {
            continue;
        };
        let sig = ed25519_dalek::Signature::from_slice(&s.sig).map_err(|_| s.keyid.clone())?;
        key.verify_strict(&message, &sig).map_err(|_| s.keyid.clone())?;
        if !signers.contains(&s.keyid) {
            signers.push(s.keyid.clone());
        }
    }
    signers.sort();
    Ok(signers)
}

/// A version: dot-separated decimal numbers (`2026.12.1`), at most 8 parts of at most 9
/// digits each. Versions compare part by part as numbers, a missing part counting as 0.
pub fn parse_version(v: &str) -> Result<Vec<u64>, String> {
    let bad = || {
        format!(
            "`{}` is not dot-separated numbers like `2026.12.1`",
            v.chars().take(64).collect::<String>().escape_debug()
        )
    };
    if v.is_empty() {
        return Err(bad());
    }
    let parts: Vec<&str> = v.split('.').collect();
    if parts.len() > 8 {
        return Err(bad());
    }
    parts
        .iter()
        .map(|p| {
            if p.is_empty() || p.len() > 9 || !p.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad());
            }
            p.parse::<u64>().map_err(|_| bad())
        })
        .collect()
}

/// Compares two versions (see [`parse_version`]).
pub fn compare_versions(a: &str, b: &str) -> Result<Ordering, String> {
    let (a, b) = (parse_version(a)?, parse_version(b)?);
    let n = a.len().max(b.len());
    let part = |v: &[u64], i: usize| v.get(i).copied().unwrap_or(0);
    Ok((0..n).map(|i| part(&a, i).cmp(&part(&b, i))).find(|o| o.is_ne()).unwrap_or(Ordering::Equal))
}

/// The policy in force for a jurisdiction, as a release replaces it.
pub struct InForce<'a> {
    pub version: &'a str,
    pub sha256: &'a [u8],
}

/// Whether `release` may replace the policy `in_force` (none at a node's start): a
/// different policy needs a higher version, or a lower one with an explicit rollback
/// (`rollback = true` and `supersedes` naming the version in force). The same digest is
/// no change.
pub fn check_succession(release: &proto::PolicyRelease, in_force: Option<InForce<'_>>) -> Result<(), String> {
    let Some(old) = in_force else { return Ok(()) };
    if release.policy_sha256 == old.sha256 {
        return Ok(());
    }
    match compare_versions(&release.version, old.version)? {
        Ordering::Greater if !release.rollback => Ok(()),
        Ordering::Greater | Ordering::Equal if release.rollback => Err(format!(
            "release {} is marked as a rollback but is not lower than the version in force, {}",
            release.version, old.version
        )),
        Ordering::Equal => Err(format!(
            "release {} has the version in force but another digest: a changed policy needs a higher version",
            release.version
        )),
        _ if release.rollback && release.supersedes == old.version => Ok(()),
        _ if release.rollback => Err(format!(
            "rollback release {} supersedes {}, but the version in force is {}",
            release.version, release.supersedes, old.version
        )),
        _ => Err(format!(
            "release {} is lower than the version in force, {}: a rollback needs its own signed release (`rollback`, `supersedes = \"{}\"`)",
            release.version, old.version, old.version
        )),
    }
}

/// Adds a signature by `key` to an envelope (replacing an earlier one by the same key).
pub fn add_signature(env: &mut proto::SignedDecision, key: &SigningKey) {
    let id = key_id(&key.verifying_key());
    let sig = key.sign(&pae(&env.payload_type, &env.payload)).to_bytes().to_vec();
    env.signatures.retain(|s| s.keyid != id);
    env.signatures.push(proto::Signature { sig, keyid: id });
}

/// An envelope of `payload_type` over `payload`, with no signature yet.
pub fn envelope(payload_type: &str, payload: Vec<u8>) -> proto::SignedDecision {
    proto::SignedDecision { payload, payload_type: payload_type.to_string(), signatures: Vec::new() }
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum ActivationError {
    #[error("payload type is `{0}`, expected `{ACTIVATION_PAYLOAD_TYPE}`")]
    PayloadType(String),
    #[error("no signature by a known key (signature key ids: {0})")]
    UnknownKey(String),
    #[error("signature by key `{0}` does not verify")]
    BadSignature(String),
    #[error("payload is not a PolicyActivation: {0}")]
    Payload(String),
    #[error("activation names key `{inner}` but is signed by `{outer}`")]
    KeyMismatch { inner: String, outer: String },
}

/// Checks an activation envelope against the node's keys, as a decision is checked: a
/// verifying signature by one of `keys`, and the payload naming that key.
pub fn verify_activation(
    env: &proto::SignedDecision,
    keys: &[VerifyingKey],
) -> Result<proto::PolicyActivation, ActivationError> {
    if env.payload_type != ACTIVATION_PAYLOAD_TYPE {
        return Err(ActivationError::PayloadType(env.payload_type.clone()));
    }
    let signers = verified_signers(env, keys).map_err(ActivationError::BadSignature)?;
    let Some(outer) = signers.into_iter().next() else {
        let ids: Vec<&str> = env.signatures.iter().map(|s| s.keyid.as_str()).collect();
        return Err(ActivationError::UnknownKey(ids.join(", ")));
    };
    let a =
        proto::PolicyActivation::decode(env.payload.as_slice()).map_err(|e| ActivationError::Payload(e.to_string()))?;
    if a.key_id != outer {
        return Err(ActivationError::KeyMismatch { inner: a.key_id, outer });
    }
    Ok(a)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u8) -> SigningKey {
        SigningKey::from_bytes(&[n; 32])
    }

    fn release(version: &str, digest: u8) -> proto::PolicyRelease {
        proto::PolicyRelease {
            jurisdiction: "CN".into(),
            policy_id: "cn".into(),
            version: version.into(),
            policy_sha256: vec![digest; 32],
            ..Default::default()
        }
    }

    fn signed(r: &proto::PolicyRelease, by: &[u8]) -> proto::SignedDecision {
        let mut env = envelope(RELEASE_PAYLOAD_TYPE, r.encode_to_vec());
        for &n in by {
            add_signature(&mut env, &key(n));
        }
        env
    }

    fn authority(keys: &[u8], threshold: usize) -> Authority {
        Authority::new(keys.iter().map(|&n| key(n).verifying_key()).collect(), threshold).unwrap()
    }

    #[test]
    fn an_unsigned_release_never_passes_whatever_the_keys() {
        let r = release("1", 1);
        for (keys, t) in [(&[1u8][..], 1), (&[1, 2, 3][..], 1), (&[1, 2, 3][..], 2)] {
            let err = verify_release(&signed(&r, &[]), &authority(keys, t), "CN").unwrap_err();
            assert!(matches!(err, ReleaseError::UnderThreshold { got: 0, .. }), "{err}");
        }
        assert!(Authority::new(vec![key(1).verifying_key()], 0).is_err(), "threshold 0 accepted");
    }

    #[test]
    fn the_threshold_counts_distinct_authority_keys() {
        let r = release("1", 1);
        let a = authority(&[1, 2, 3], 2);
        assert!(matches!(verify_release(&signed(&r, &[1]), &a, "CN"), Err(ReleaseError::UnderThreshold { .. })));
        // Another key's signature does not count; the same key twice counts once.
        assert!(verify_release(&signed(&r, &[1, 9]), &a, "CN").is_err());
        let mut twice = signed(&r, &[1]);
        twice.signatures.push(twice.signatures[0].clone());
        assert!(verify_release(&twice, &a, "CN").is_err());
        let ok = verify_release(&signed(&r, &[3, 1]), &a, "CN").unwrap();
        assert_eq!(ok.signers.len(), 2);
        assert_eq!(ok.release, r);
    }

    #[test]
    fn a_bad_signature_by_an_authority_key_refuses_the_release() {
        let r = release("1", 1);
        let mut env = signed(&r, &[1, 2]);
        env.payload[0] ^= 1;
        assert!(matches!(verify_release(&env, &authority(&[1, 2], 1), "CN"), Err(ReleaseError::BadSignature(_))));
        let env = signed(&r, &[1]);
        assert!(matches!(verify_release(&env, &authority(&[1], 1), "SG"), Err(ReleaseError::Jurisdiction { .. })));
        let mut env = signed(&r, &[1]);
        env.payload_type = crate::decision::PAYLOAD_TYPE.into();
        assert!(matches!(verify_release(&env, &authority(&[1], 1), "CN"), Err(ReleaseError::PayloadType(_))));
    }

    #[test]
    fn versions_compare_as_numbers() {
        assert_eq!(compare_versions("2026.12.10", "2026.12.9"), Ok(Ordering::Greater));
        assert_eq!(compare_versions("1", "1.0"), Ok(Ordering::Equal));
        assert_eq!(compare_versions("1.0.1", "1.1"), Ok(Ordering::Less));
        for bad in ["", "1..2", "v1", "1.-2", "1.2.3.4.5.6.7.8.9", "1234567890"] {
            assert!(parse_version(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn succession_needs_a_higher_version_or_an_explicit_rollback() {
        let in_force = || Some(InForce { version: "2", sha256: &[2; 32] });
        assert!(check_succession(&release("3", 3), in_force()).is_ok());
        assert!(check_succession(&release("2", 2), in_force()).is_ok(), "same policy");
        assert!(check_succession(&release("2", 9), in_force()).is_err(), "same version, other digest");
        assert!(check_succession(&release("1", 1), in_force()).is_err(), "silent rollback");
        let mut rb = release("1", 1);
        rb.rollback = true;
        rb.supersedes = "3".into();
        assert!(check_succession(&rb, in_force()).is_err(), "rollback superseding another version");
        rb.supersedes = "2".into();
        assert!(check_succession(&rb, in_force()).is_ok());
        let mut up = release("3", 3);
        up.rollback = true;
        assert!(check_succession(&up, in_force()).is_err(), "a rollback that goes up");
        assert!(check_succession(&release("1", 1), None).is_ok(), "nothing in force");
    }

    #[test]
    fn activations_verify_like_decisions() {
        let node = key(5);
        let a = proto::PolicyActivation {
            jurisdiction: "CN".into(),
            key_id: key_id(&node.verifying_key()),
            ..Default::default()
        };
        let mut env = envelope(ACTIVATION_PAYLOAD_TYPE, a.encode_to_vec());
        add_signature(&mut env, &node);
        assert_eq!(verify_activation(&env, &[node.verifying_key()]).unwrap(), a);
        assert!(matches!(verify_activation(&env, &[key(6).verifying_key()]), Err(ActivationError::UnknownKey(_))));
        let mut bad = env.clone();
        bad.payload[1] ^= 1;
        assert!(verify_activation(&bad, &[node.verifying_key()]).is_err());
    }
}
