//! Offline audit of a log directory: rebuild the tree from the entries, check every
//! stored leaf hash, every entry's signature (decisions and policy activations), that
//! every decision names an earlier activation of its jurisdiction and policy digest, every
//! checkpoint signature, and that all checkpoints are consistent with one another and
//! with the entries.

use std::path::{Path, PathBuf};

use ed25519_dalek::VerifyingKey;

use super::store::scan;
use crate::proto;
use sha2::Digest as _;
use silkgate_core::checkpoint::Checkpoint;
use silkgate_core::decision;
use silkgate_core::merkle::{self, Tree};
use silkgate_verify::release;

/// The first problem an audit found, located precisely.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: entry {index} at byte {offset}: {reason}")]
    Entry { path: PathBuf, index: u64, offset: u64, reason: String },
    #[error("{path}: checkpoint {which}: {reason}")]
    Checkpoint { path: PathBuf, which: String, reason: String },
}

#[derive(Debug)]
pub struct AuditReport {
    pub origin: String,
    pub entries: u64,
    pub checkpoints: usize,
    pub latest_size: u64,
    pub root: merkle::Hash,
}

fn read(path: &Path) -> Result<Vec<u8>, AuditError> {
    std::fs::read(path).map_err(|source| AuditError::Io { path: path.to_path_buf(), source })
}

/// Audits the log in `dir` against the node's public key. `progress(done, total)` is
/// called as entries are checked.
pub fn audit(dir: &Path, key: &VerifyingKey, mut progress: impl FnMut(u64, u64)) -> Result<AuditReport, AuditError> {
    let origin_path = dir.join("origin");
    let origin = String::from_utf8_lossy(&read(&origin_path)?).trim().to_string();
    let entries_path = dir.join("entries");
    let bytes = read(&entries_path)?;
    let scanned = scan(&bytes);
    let records = scanned.records;
    if let Some(stop) = scanned.stop {
        return Err(AuditError::Entry {
            path: entries_path,
            index: records.len() as u64,
            offset: stop.offset,
            reason: stop.reason,
        });
    }
    let total = records.len() as u64;
    let mut tree = Tree::new();
    let mut activations = Activations::default();
    for (i, r) in records.iter().enumerate() {
        let fail = |reason: String| AuditError::Entry {
            path: entries_path.clone(),
            index: i as u64,
            offset: r.offset,
            reason,
        };
        let env = <proto::SignedDecision as prost::Message>::decode(r.data.as_slice())
            .map_err(|e| fail(format!("not a SignedDecision: {e}")))?;
        // Every leaf is a DSSE envelope; its payload type says what it holds.
        match env.payload_type.as_str() {
            decision::PAYLOAD_TYPE => {
                let d = decision::verify(&env, std::slice::from_ref(key), None)
                    .map_err(|e| fail(format!("decision signature: {e}")))?;
                activations.check_decision(i as u64, &d).map_err(fail)?;
                activations.check_waivers(&d).map_err(fail)?;
            }
            release::ACTIVATION_PAYLOAD_TYPE => {
                let a = release::verify_activation(&env, std::slice::from_ref(key))
                    .map_err(|e| fail(format!("policy activation: {e}")))?;
                activations.record(i as u64, a);
            }
            // Signed by the jurisdiction's authority, whose keys the log does not hold: its
            // signature is checked by whoever holds them (README "Waivers"), its digest here.
            silkgate_verify::waiver::WAIVER_PAYLOAD_TYPE => {
                let w = <proto::Waiver as prost::Message>::decode(env.payload.as_slice())
                    .map_err(|e| fail(format!("waiver: not a Waiver: {e}")))?;
                activations.record_waiver(i as u64, w.jurisdiction, sha2::Sha256::digest(&env.payload).into());
            }
            // Deployment certificates (README "Deployment certificates"), signed by this node.
            silkgate_verify::certificate::PAYLOAD_TYPE => {
                silkgate_verify::certificate::verify_signed_by(&env, key)
                    .map_err(|e| fail(format!("certificate signature: {e}")))?;
            }
            other => return Err(fail(format!("unknown payload type `{other}`"))),
        }
        tree.push(r.hash);
        if i % 4096 == 0 {
            progress(i as u64, total);
        }
    }
    progress(total, total);

    let mut notes: Vec<(String, String)> = Vec::new();
    let history_path = dir.join("checkpoints");
    if history_path.exists() {
        let h = read(&history_path)?;
        let mut pos = 0usize;
        let mut n = 0usize;
        while pos < h.len() {
            let bad = |reason: &str| AuditError::Checkpoint {
                path: history_path.clone(),
                which: format!("#{n} at byte {pos}"),
                reason: reason.to_string(),
            };
            if h.len() - pos < 4 {
                return Err(bad("incomplete length prefix"));
            }
            let len = u32::from_be_bytes([h[pos], h[pos + 1], h[pos + 2], h[pos + 3]]) as usize;
            let note = h.get(pos + 4..pos + 4 + len).ok_or_else(|| bad("incomplete record"))?;
            let note = String::from_utf8(note.to_vec()).map_err(|_| bad("not UTF-8"))?;
            notes.push((format!("{} #{n}", history_path.display()), note));
            pos += 4 + len;
            n += 1;
        }
    }
    let latest_path = dir.join("checkpoint");
    let latest = String::from_utf8_lossy(&read(&latest_path)?).into_owned();
    notes.push((latest_path.display().to_string(), latest));

    let mut previous: Option<Checkpoint> = None;
    let mut latest_size = 0;
    for (which, note) in &notes {
        let fail = |reason: String| AuditError::Checkpoint { path: dir.to_path_buf(), which: which.clone(), reason };
        let cp = Checkpoint::open(note, &origin, key).map_err(|e| fail(format!("signature: {e}")))?;
        if cp.size > tree.len() {
            return Err(fail(format!("covers {} entries but the log holds {}", cp.size, tree.len())));
        }
        let root = tree.root_at(cp.size).map_err(|e| fail(e.to_string()))?;
        if root != cp.root {
            return Err(fail(format!("root differs from the root of the first {} entries", cp.size)));
        }
        if let Some(prev) = &previous {
            if cp.size < prev.size {
                return Err(fail(format!("size {} is smaller than the previous checkpoint's {}", cp.size, prev.size)));
            }
            if prev.size > 0 && cp.size > prev.size {
                let proof = tree.consistency_proof(prev.size, cp.size).map_err(|e| fail(e.to_string()))?;
                merkle::verify_consistency(prev.size, cp.size, &proof, &prev.root, &cp.root)
                    .map_err(|e| fail(format!("not consistent with the previous checkpoint: {e}")))?;
            }
        }
        latest_size = cp.size;
        previous = Some(cp);
    }
    Ok(AuditReport { origin, entries: tree.len(), checkpoints: notes.len(), latest_size, root: tree.root() })
}

/// The policy activations seen so far in a log, to check the decisions that name them.
#[derive(Default)]
struct Activations {
    /// Log index to (jurisdiction, policy digest).
    seen: std::collections::HashMap<u64, (String, Vec<u8>)>,
    /// Log index to (jurisdiction, waiver digest).
    waivers: std::collections::HashMap<u64, (String, [u8; 32])>,
}

impl Activations {
    fn record(&mut self, index: u64, a: proto::PolicyActivation) {
        self.seen.insert(index, (a.jurisdiction, a.policy_sha256));
    }

    fn record_waiver(&mut self, index: u64, jurisdiction: String, digest: [u8; 32]) {
        self.waivers.insert(index, (jurisdiction, digest));
    }

    /// Every waived rule of a decision names an earlier waiver entry of its
    /// jurisdiction with the digest it reports.
    fn check_waivers(&self, d: &proto::Decision) -> Result<(), String> {
        for r in d.matched_rules.iter().filter(|r| !r.waiver_sha256.is_empty()) {
            let Some(at) = r.waiver_log_index else { continue };
            match self.waivers.get(&at) {
                Some((j, digest)) if *j == d.jurisdiction && digest.as_slice() == r.waiver_sha256 => {}
                Some(_) => {
                    return Err(format!(
                        "rule `{}` names waiver entry {at}, whose jurisdiction or digest differs",
                        r.id
                    ));
                }
                None => return Err(format!("rule `{}` names waiver entry {at}, not an earlier waiver", r.id)),
            }
        }
        Ok(())
    }

    /// A decision at `index` must name an activation logged before it, of its jurisdiction
    /// and policy digest. Decisions without one are accepted only before the log's first
    /// activation (logs written before nodes logged activations).
    fn check_decision(&self, index: u64, d: &proto::Decision) -> Result<(), String> {
        let Some(at) = d.activation_index else {
            if self.seen.is_empty() {
                return Ok(());
            }
            return Err("decision names no policy activation, after the log's first activation".into());
        };
        let Some((jurisdiction, digest)) = self.seen.get(&at) else {
            return Err(if at >= index {
                format!("decision names activation {at}, which does not precede it")
            } else {
                format!("decision names activation {at}, which is not a policy activation")
            });
        };
        let policy = d.policy.as_ref().map(|p| p.sha256.as_slice()).unwrap_or_default();
        if *jurisdiction != d.jurisdiction || digest.as_slice() != policy {
            return Err(format!(
                "decision for {} under policy {} names activation {at}, which activated {jurisdiction} policy {}",
                d.jurisdiction,
                hex::encode(policy),
                hex::encode(digest)
            ));
        }
        Ok(())
    }
}
