//! Deployment certificates: one gateway node's signed statement binding every
//! jurisdiction's own signed decision on one request, each with its log inclusion proof,
//! checked offline against a verified roster.
//!
//! The certificate is a DSSE v1 envelope (the `SignedDecision` message) with payload type
//! [`PAYLOAD_TYPE`] around the protobuf encoding of `DeploymentCertificate`. The gateway
//! checks each answer with [`check_evidence`] before it signs; a verifier runs
//! [`verify`], which repeats every check and recomputes the verdict.

use std::collections::BTreeSet;

use ed25519_dalek::VerifyingKey;
use prost::Message;

use crate::checkpoint::{self, Checkpoint};
use crate::decision::{self, key_id, pae};
use crate::merkle;
use crate::proto::{self, CertificateVerdict, Verdict};
use crate::roster::{VerifiedRoster, node_keys};
use crate::time::UnixTime;

/// The DSSE payload type of a deployment certificate.
pub const PAYLOAD_TYPE: &str = "application/vnd.silkgate.certificate.v1+protobuf";

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum CertificateError {
    #[error("payload type is `{0}`, expected `{PAYLOAD_TYPE}`")]
    PayloadType(String),
    #[error("payload is not a DeploymentCertificate: {0}")]
    Payload(String),
    #[error("certificate names roster {named}, but the roster given is {given}")]
    Roster { named: String, given: String },
    #[error("gateway: {0}")]
    Gateway(String),
    #[error("evidence for {jurisdiction}: {reason}")]
    Evidence { jurisdiction: String, reason: String },
    #[error("{field}: {reason}")]
    Inconsistent { field: String, reason: String },
    #[error("certificate expired at {0}")]
    Expired(String),
}

fn inconsistent(field: &str, reason: impl Into<String>) -> CertificateError {
    CertificateError::Inconsistent { field: field.into(), reason: reason.into() }
}

/// A certificate whose every check passed.
#[derive(Debug)]
pub struct Verified {
    pub certificate: proto::DeploymentCertificate,
    pub verdict: CertificateVerdict,
    /// The decisions, in the order of `certificate.evidence`.
    pub decisions: Vec<proto::Decision>,
}

/// Checks one jurisdiction's evidence against the roster: the decision is signed by a
/// key of the named member node, which enforces the jurisdiction; the decision is for
/// that jurisdiction, by that node, about the request of `request_sha256`; and it is
/// leaf `log_index` of the node's log under a checkpoint signed with the node's log key.
pub fn check_evidence(
    roster: &VerifiedRoster,
    jurisdiction: &str,
    request_sha256: &[u8],
    ev: &proto::JurisdictionEvidence,
) -> Result<proto::Decision, String> {
    let proto::JurisdictionEvidence {
        jurisdiction: ev_j,
        node_id,
        decision: signed,
        log_index,
        tree_size,
        inclusion_proof,
        checkpoint: note,
    } = ev;
    if ev_j != jurisdiction {
        return Err(format!("evidence is for `{ev_j}`"));
    }
    let node = roster.node(node_id).ok_or_else(|| format!("node `{node_id}` is not in the roster"))?;
    if !node.jurisdictions.iter().any(|j| j == jurisdiction) {
        return Err(format!("node `{node_id}` does not enforce {jurisdiction} in the roster"));
    }
    let env =
        proto::SignedDecision::decode(signed.as_slice()).map_err(|e| format!("decision: not a SignedDecision: {e}"))?;
    let d = decision::verify(&env, &node_keys(node), None).map_err(|e| format!("decision of node `{node_id}`: {e}"))?;
    if d.jurisdiction != jurisdiction {
        return Err(format!("decision is for jurisdiction `{}`", d.jurisdiction));
    }
    if d.node_id != *node_id {
        return Err(format!("decision names node `{}`, not `{node_id}`", d.node_id));
    }
    if d.request_sha256 != request_sha256 {
        return Err("decision is about another request (request_sha256 differs)".into());
    }
    if d.verdict != Verdict::Allow as i32 && d.verdict != Verdict::Deny as i32 {
        return Err(format!("decision verdict {} is neither ALLOW nor DENY", d.verdict));
    }
    let (origin, key) = checkpoint::parse_vkey(&node.log_verifier_key).map_err(|e| format!("roster log key: {e}"))?;
    let cp = Checkpoint::open(note, &origin, &key).map_err(|e| format!("checkpoint of `{origin}`: {e}"))?;
    if cp.size != *tree_size {
        return Err(format!("tree_size {tree_size} is not the checkpoint's size {}", cp.size));
    }
    let mut proof = Vec::with_capacity(inclusion_proof.len());
    for (i, h) in inclusion_proof.iter().enumerate() {
        let h: merkle::Hash = h.as_slice().try_into().map_err(|_| format!("inclusion_proof[{i}]: not 32 bytes"))?;
        proof.push(h);
    }
    merkle::verify_inclusion(&merkle::leaf_hash(signed), *log_index, *tree_size, &proof, &cp.root)
        .map_err(|e| format!("inclusion proof of entry {log_index} in `{origin}`: {e}"))?;
    Ok(d)
}

/// The overall verdict: DENY when any decision denied, else INCOMPLETE when any
/// jurisdiction is missing (or none answered), else ALLOW. Never ALLOW with a gap.
pub fn verdict(decisions: &[proto::Decision], any_missing: bool) -> CertificateVerdict {
    if decisions.iter().any(|d| d.verdict != Verdict::Allow as i32) {
        CertificateVerdict::Deny
    } else if any_missing || decisions.is_empty() {
        CertificateVerdict::Incomplete
    } else {
        CertificateVerdict::Allow
    }
}

/// The earliest `not_after` of the decisions, or `issued_at` when there is none.
pub fn not_after(decisions: &[proto::Decision], issued_at: prost_types::Timestamp) -> prost_types::Timestamp {
    decisions.iter().filter_map(|d| d.not_after).min_by_key(|t| (t.seconds, t.nanos)).unwrap_or(issued_at)
}

fn verify_signature(env: &proto::SignedDecision, keys: &[VerifyingKey], want: &str) -> Result<(), String> {
    let message = pae(&env.payload_type, &env.payload);
    let key = keys
        .iter()
        .find(|k| key_id(k) == want)
        .ok_or_else(|| format!("key `{want}` is not one of its keys in the roster"))?;
    let s =
        env.signatures.iter().find(|s| s.keyid == want).ok_or_else(|| format!("no signature by its key `{want}`"))?;
    let sig =
        ed25519_dalek::Signature::from_slice(&s.sig).map_err(|_| format!("signature by `{want}` does not verify"))?;
    key.verify_strict(&message, &sig).map_err(|_| format!("signature by `{want}` does not verify"))
}

fn sorted_unique<'a>(field: &str, items: impl Iterator<Item = &'a str>) -> Result<Vec<&'a str>, CertificateError> {
    let v: Vec<&str> = items.collect();
    if v.windows(2).any(|w| w[0] >= w[1]) {
        return Err(inconsistent(field, "not sorted by jurisdiction, or a jurisdiction appears twice"));
    }
    Ok(v)
}

/// Verifies a certificate envelope against a verified roster. `now`, when given, must
/// not be past the certificate's `not_after`.
pub fn verify(
    env: &proto::SignedDecision,
    roster: &VerifiedRoster,
    now: Option<UnixTime>,
) -> Result<Verified, CertificateError> {
    if env.payload_type != PAYLOAD_TYPE {
        return Err(CertificateError::PayloadType(env.payload_type.chars().take(128).collect()));
    }
    let c = proto::DeploymentCertificate::decode(env.payload.as_slice())
        .map_err(|e| CertificateError::Payload(e.to_string()))?;
    let given = roster.reference();
    if c.roster.as_ref() != Some(&given) {
        let show =
            |r: &proto::RosterRef| format!("`{}` version {} ({})", r.network_id, r.version, hex::encode(&r.sha256));
        let named = c.roster.as_ref().map_or_else(|| "none".to_string(), show);
        return Err(CertificateError::Roster { named, given: show(&given) });
    }
    let gateway = roster
        .node(&c.node_id)
        .ok_or_else(|| CertificateError::Gateway(format!("node `{}` is not in the roster", c.node_id)))?;
    verify_signature(env, &node_keys(gateway), &c.key_id)
        .map_err(|e| CertificateError::Gateway(format!("node `{}`: {e}", c.node_id)))?;

    if uuid_text(&c.certificate_id).is_none() {
        return Err(inconsistent("certificate_id", "not a UUID"));
    }
    if c.request_sha256.len() != 32 {
        return Err(inconsistent("request_sha256", "not 32 bytes"));
    }
    let issued_at = c.issued_at.ok_or_else(|| inconsistent("issued_at", "missing"))?;
    let required = sorted_unique("jurisdictions", c.jurisdictions.iter().map(String::as_str))?;
    if required.is_empty() {
        return Err(inconsistent("jurisdictions", "empty"));
    }
    let mut mapped = BTreeSet::new();
    for (i, rj) in c.regions.iter().enumerate() {
        if roster.regions.get(&rj.region) != Some(&rj.jurisdiction) {
            return Err(inconsistent(
                &format!("regions[{i}]"),
                format!("the roster does not map `{}` to `{}`", rj.region, rj.jurisdiction),
            ));
        }
        mapped.insert(rj.jurisdiction.as_str());
    }
    if mapped.into_iter().collect::<Vec<_>>() != required {
        return Err(inconsistent("jurisdictions", "not the jurisdictions of the regions"));
    }
    let answered = sorted_unique("evidence", c.evidence.iter().map(|e| e.jurisdiction.as_str()))?;
    let missing = sorted_unique("missing", c.missing.iter().map(|m| m.jurisdiction.as_str()))?;
    let mut all: Vec<&str> = answered.iter().chain(missing.iter()).copied().collect();
    all.sort_unstable();
    if all != required {
        return Err(inconsistent(
            "evidence",
            "evidence and missing together are not the required jurisdictions, once each",
        ));
    }
    let mut decisions = Vec::with_capacity(c.evidence.len());
    for ev in &c.evidence {
        let d = check_evidence(roster, &ev.jurisdiction, &c.request_sha256, ev)
            .map_err(|reason| CertificateError::Evidence { jurisdiction: ev.jurisdiction.clone(), reason })?;
        if d.request_id != c.request_id {
            return Err(CertificateError::Evidence {
                jurisdiction: ev.jurisdiction.clone(),
                reason: format!("decision echoes request id `{}`, not `{}`", d.request_id, c.request_id),
            });
        }
        decisions.push(d);
    }
    let v = verdict(&decisions, !missing.is_empty());
    if c.verdict != v as i32 {
        return Err(inconsistent("verdict", format!("is {}, the evidence gives {}", c.verdict, v.as_str_name())));
    }
    let until = not_after(&decisions, issued_at);
    if c.not_after != Some(until) {
        return Err(inconsistent("not_after", "is not the earliest not_after of the decisions"));
    }
    if let Some(now) = now
        && (now.secs, now.nanos as i32) > (until.seconds, until.nanos)
    {
        return Err(CertificateError::Expired(UnixTime::from_secs(until.seconds).rfc3339()));
    }
    Ok(Verified { certificate: c, verdict: v, decisions })
}

/// True for the canonical lowercase hyphenated UUID text form.
fn uuid_text(s: &str) -> Option<()> {
    let b = s.as_bytes();
    (b.len() == 36
        && b.iter().enumerate().all(|(i, &c)| {
            if [8, 13, 18, 23].contains(&i) { c == b'-' } else { c.is_ascii_digit() || (b'a'..=b'f').contains(&c) }
        }))
    .then_some(())
}

/// Checks only the gateway's signature, with a key given by the caller, and decodes the
/// certificate: what a log audit does for a certificate leaf (without the roster, the
/// evidence inside cannot be judged).
pub fn verify_signed_by(
    env: &proto::SignedDecision,
    key: &VerifyingKey,
) -> Result<proto::DeploymentCertificate, CertificateError> {
    if env.payload_type != PAYLOAD_TYPE {
        return Err(CertificateError::PayloadType(env.payload_type.chars().take(128).collect()));
    }
    let id = key_id(key);
    verify_signature(env, std::slice::from_ref(key), &id).map_err(CertificateError::Gateway)?;
    let c = proto::DeploymentCertificate::decode(env.payload.as_slice())
        .map_err(|e| CertificateError::Payload(e.to_string()))?;
    if c.key_id != id {
        return Err(CertificateError::Gateway(format!("certificate names key `{}` but is signed by `{id}`", c.key_id)));
    }
    Ok(c)
}
