//! The node as a witness of other logs (C2SP tlog-witness `add-checkpoint`), its
//! configuration, its durable state per witnessed origin, and split-view evidence.
//!
//! State: `DATA_DIR/witness/<id>/checkpoint` holds the last checkpoint note cosigned for
//! an origin, where `<id>` is the first 32 hex digits of SHA-256 of the origin (and
//! `DATA_DIR/witness/<id>/origin` names it). The note is replaced (temporary file, sync,
//! rename, directory sync, as the decision log does) before the cosignature leaves the
//! node, and the check and the replace run under one lock, so the witness never cosigns
//! two inconsistent checkpoints of one origin, across crashes and restarts.
//!
//! A split view (a checkpoint signed by the log's key that contradicts the one
//! cosigned: same size and another root, or a consistency proof that leads to the new
//! root from another old root) is refused with 409 and kept as evidence in
//! `DATA_DIR/witness/<id>/split-view-<n>.json`: both notes, the proof, and the time.
//! It raises the alarm: the `silkgate_witness_split_views_total` metric, an error trace
//! event, and `NodeInfo.witness_split_views` / `witness_last_split_view`.
//!
//! Architecture invariant: the decisions are the pure `silkgate_verify::witness::check`;
//! this module stores and answers.

pub mod collect;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use ed25519_dalek::VerifyingKey;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use silkgate_core::decision::Signer;
use silkgate_verify::checkpoint::{self, Checkpoint, CheckpointError};
use silkgate_verify::cosignature::{self, Witness as WitnessKey};
use silkgate_verify::witness::{AddCheckpoint, Cosigned, Refusal, check};

use crate::log::storage::{self, Disk, Storage};
use crate::metrics::Metrics;

/// Largest witness configuration file read.
pub const MAX_CONFIG_BYTES: u64 = 1 << 20;
/// Most logs one witness follows, and most witnesses a node submits to.
pub const MAX_CONFIG_ENTRIES: usize = 1024;

/// A log this node witnesses: its origin and its checkpoint key. The network roster
/// names the same for each member node (log origin, log verifier key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WitnessedLog {
    pub origin: String,
    pub key: VerifyingKey,
}

/// A witness this node submits its checkpoints to: where, and its cosigning key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cosigner {
    /// The witness's submission prefix (`http://host:port`); `None` when it is only
    /// trusted for verification.
    pub url: Option<String>,
    pub witness: WitnessKey,
}

/// What `--witness-config` holds, validated. The roster will fill the same types.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WitnessConfig {
    /// The logs this node witnesses.
    pub logs: Vec<WitnessedLog>,
    /// The witnesses this node asks to cosign its own checkpoints.
    pub witnesses: Vec<Cosigner>,
    /// Valid cosignatures needed for a checkpoint to count as witnessed.
    pub quorum: usize,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    #[serde(default)]
    log: Vec<LogEntry>,
    #[serde(default)]
    witness: Vec<WitnessEntry>,
    witness_quorum: Option<usize>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LogEntry {
    /// The log's verifier key string, `<origin>+<hex key hash>+<base64(0x01 || key)>`.
    verifier_key: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WitnessEntry {
    /// `<name>+<hex key hash>+<base64(0x04 || key)>`.
    verifier_key: String,
    url: Option<String>,
}

impl WitnessConfig {
    /// Parses the TOML text of a witness configuration; errors name the entry.
    pub fn parse(text: &str) -> Result<WitnessConfig, String> {
        let f: ConfigFile = toml::from_str(text).map_err(|e| e.to_string())?;
        if f.log.len() > MAX_CONFIG_ENTRIES || f.witness.len() > MAX_CONFIG_ENTRIES {
            return Err(format!("at most {MAX_CONFIG_ENTRIES} logs and {MAX_CONFIG_ENTRIES} witnesses"));
        }
        let mut logs = Vec::new();
        for (i, l) in f.log.iter().enumerate() {
            let (origin, key) =
                checkpoint::parse_vkey(&l.verifier_key).map_err(|e| format!("log[{i}].verifier_key: {e}"))?;
            if logs.iter().any(|x: &WitnessedLog| x.origin == origin) {
                return Err(format!("log[{i}]: origin `{origin}` is listed twice"));
            }
            logs.push(WitnessedLog { origin, key });
        }
        let mut witnesses = Vec::new();
        for (i, w) in f.witness.iter().enumerate() {
            let witness =
                WitnessKey::parse_vkey(&w.verifier_key).map_err(|e| format!("witness[{i}].verifier_key: {e}"))?;
            if let Some(u) = &w.url
                && !(u.starts_with("http://") && u.len() < 2048)
            {
                return Err(format!("witness[{i}].url: `{u}` must be an http:// URL"));
            }
            witnesses.push(Cosigner { url: w.url.clone(), witness });
        }
        let quorum = f.witness_quorum.unwrap_or(witnesses.len().min(1));
        if quorum > witnesses.len() {
            return Err(format!("witness_quorum: {quorum} is more than the {} witnesses listed", witnesses.len()));
        }
        Ok(WitnessConfig { logs, witnesses, quorum })
    }

    /// Reads and parses a configuration file (bounded).
    pub fn load(path: &Path) -> Result<WitnessConfig, String> {
        let meta = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
        if meta.len() > MAX_CONFIG_BYTES {
            return Err(format!("{}: over {MAX_CONFIG_BYTES} bytes", path.display()));
        }
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        Self::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }
}

/// The name this node cosigns under: `silkgate/<node id>/witness`.
pub fn witness_name(node_id: &str) -> String {
    format!("silkgate/{node_id}/witness")
}

/// An HTTP answer of the witness: status, content type, body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    pub content_type: &'static str,
    pub body: String,
}

impl Answer {
    fn text(status: u16, body: impl Into<String>) -> Answer {
        let mut body = body.into();
        body.push('\n');
        Answer { status, content_type: "text/plain; charset=utf-8", body }
    }
}

/// Why the witness could not start.
#[derive(Debug, thiserror::Error)]
pub enum WitnessError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: {reason}")]
    State { path: PathBuf, reason: String },
}

/// The last split view seen, for NodeInfo.
#[derive(Debug, Clone, Default)]
pub struct Alarm {
    pub origin: String,
    pub reason: String,
    pub evidence: PathBuf,
}

struct Origin {
    key: VerifyingKey,
    dir: PathBuf,
    /// The last cosigned checkpoint and its note, if any.
    last: Option<(Cosigned, String)>,
    /// Evidence files written so far (numbers them).
    evidence: u64,
}

/// The witness: its key, the logs it follows and their state.
pub struct Witness {
    name: String,
    signer: Arc<Signer>,
    fs: Arc<dyn Storage>,
    /// Check-then-store runs under this lock, so two requests never both pass a check
    /// against the same old state.
    origins: Mutex<HashMap<String, Origin>>,
    split_views: AtomicU64,
    last_alarm: Mutex<Option<Alarm>>,
    metrics: Arc<Metrics>,
}

impl Witness {
    /// Opens (or creates) the witness state in `dir` (`DATA_DIR/witness`) for `logs`.
    /// A state file that does not verify with its log's key stops the start: starting
    /// over from nothing could cosign a fork.
    pub fn open(
        dir: &Path,
        name: String,
        signer: Arc<Signer>,
        logs: &[WitnessedLog],
        metrics: Arc<Metrics>,
    ) -> Result<Witness, WitnessError> {
        let fs: Arc<dyn Storage> = Arc::new(Disk);
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| WitnessError::Io { path, source }
        };
        storage::create_dir_all(fs.as_ref(), dir).map_err(io(dir))?;
        let mut origins = HashMap::new();
        let mut split_views = 0;
        let mut last_alarm = None;
        for log in logs {
            let odir = dir.join(origin_id(&log.origin));
            storage::create_dir_all(fs.as_ref(), &odir).map_err(io(&odir))?;
            let opath = odir.join("origin");
            if fs.kind(&opath).map_err(io(&opath))?.is_none() {
                storage::replace(fs.as_ref(), &opath, format!("{}\n", log.origin).as_bytes()).map_err(io(&opath))?;
            }
            let cpath = odir.join("checkpoint");
            let last = match std::fs::read_to_string(&cpath) {
                Ok(note) => {
                    let cp = Checkpoint::open(&note, &log.origin, &log.key).map_err(|e| WitnessError::State {
                        path: cpath.clone(),
                        reason: format!("does not verify with the log key: {e}"),
                    })?;
                    Some((Cosigned { size: cp.size, root: cp.root }, note))
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                Err(source) => return Err(WitnessError::Io { path: cpath, source }),
            };
            let names = fs.list(&odir).map_err(io(&odir))?;
            let evidence: Vec<&String> =
                names.iter().filter(|n| n.starts_with("split-view-") && n.ends_with(".json")).collect();
            if let Some(last) = evidence.iter().max_by_key(|n| evidence_number(n)) {
                last_alarm = Some(Alarm {
                    origin: log.origin.clone(),
                    reason: "split view recorded before this start".into(),
                    evidence: odir.join(last.as_str()),
                });
            }
            split_views += evidence.len() as u64;
            let next = evidence.iter().map(|n| evidence_number(n)).max().map_or(0, |n| n + 1);
            origins.insert(log.origin.clone(), Origin { key: log.key, dir: odir, last, evidence: next });
        }
        metrics.witness_split_views.inc_by(split_views);
        Ok(Witness {
            name,
            signer,
            fs,
            origins: Mutex::new(origins),
            split_views: AtomicU64::new(split_views),
            last_alarm: Mutex::new(last_alarm),
            metrics,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The witness verifier key string, `<name>+<hex key hash>+<base64(0x04 || key)>`.
    pub fn vkey(&self) -> String {
        WitnessKey { name: self.name.clone(), key: self.signer.verifying_key() }.vkey()
    }

    /// Split views seen (kept as evidence, counted across restarts).
    pub fn split_views(&self) -> u64 {
        self.split_views.load(Ordering::Relaxed)
    }

    pub fn last_alarm(&self) -> Option<Alarm> {
        self.last_alarm.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The last cosigned size of an origin (for tests and operators).
    pub fn cosigned_size(&self, origin: &str) -> Option<u64> {
        let origins = self.origins.lock().unwrap_or_else(|e| e.into_inner());
        origins.get(origin).and_then(|o| o.last.as_ref().map(|l| l.0.size))
    }

    /// Answers an `add-checkpoint` request body at time `now` (POSIX seconds). Blocking:
    /// it syncs files; run it off the async workers.
    pub fn add_checkpoint(&self, body: &[u8], now: u64) -> Answer {
        let req = match AddCheckpoint::parse(body) {
            Ok(r) => r,
            Err(e) => return Answer::text(400, format!("bad request: {e}")),
        };
        let origin_line = req.note.split('\n').next().unwrap_or("");
        let mut origins = self.origins.lock().unwrap_or_else(|e| e.into_inner());
        let Some(origin) = origins.get_mut(origin_line) else {
            return Answer::text(404, format!("unknown log origin `{}`", truncate(origin_line)));
        };
        let cp = match Checkpoint::open(&req.note, origin_line, &origin.key) {
            Ok(cp) => cp,
            Err(e @ (CheckpointError::Unsigned(_) | CheckpointError::BadSignature(_))) => {
                return Answer::text(403, format!("checkpoint signature: {e}"));
            }
            Err(e) => return Answer::text(400, format!("checkpoint: {e}")),
        };
        match check(origin.last.as_ref().map(|l| l.0), req.old_size, &req.proof, &cp) {
            Ok(()) => {}
            Err(Refusal::OldSizeTooLarge { .. }) => {
                return Answer::text(400, "old size is larger than the checkpoint size");
            }
            Err(Refusal::Conflict { known, .. }) => {
                return Answer { status: 409, content_type: "text/x.tlog.size", body: format!("{known}\n") };
            }
            Err(Refusal::BadProof { reason, .. }) => {
                tracing::warn!(witnessed.origin = %cp.origin, old_size = req.old_size, size = cp.size, reason = %reason, "witness: consistency proof does not verify");
                return Answer::text(422, format!("consistency proof: {reason}"));
            }
            Err(Refusal::SplitView(reason)) => {
                let known = origin.last.as_ref().map_or(0, |l| l.0.size);
                self.alarm(origin, &cp, &req, &reason, now);
                return Answer { status: 409, content_type: "text/x.tlog.size", body: format!("{known}\n") };
            }
        }
        // Durable before the cosignature leaves: a crash after this still remembers it.
        let path = origin.dir.join("checkpoint");
        let unchanged = origin.last.as_ref().is_some_and(|l| l.0.size == cp.size);
        if !unchanged && let Err(e) = storage::replace(self.fs.as_ref(), &path, req.note.as_bytes()) {
            tracing::error!(path = %path.display(), error = %e, "witness: could not store the cosigned checkpoint");
            return Answer::text(500, "could not store the witness state");
        }
        if !unchanged {
            origin.last = Some((Cosigned { size: cp.size, root: cp.root }, req.note.clone()));
        }
        drop(origins);
        self.metrics.witness_cosignatures.inc();
        let line = cosignature::sign(&cp.body(), &self.name, self.signer.signing_key(), now.min((1 << 63) - 1));
        Answer { status: 200, content_type: "text/plain; charset=utf-8", body: line }
    }

    /// Keeps both notes as evidence (durably), counts and reports the split view.
    fn alarm(&self, origin: &mut Origin, cp: &Checkpoint, req: &AddCheckpoint, reason: &str, now: u64) {
        let n = origin.evidence;
        origin.evidence += 1;
        let path = origin.dir.join(format!("split-view-{n}.json"));
        let evidence = serde_json::json!({
            "format": "silkgate-split-view-v1",
            "origin": cp.origin,
            "detected_at": now,
            "reason": reason,
            "cosigned_note": origin.last.as_ref().map(|l| l.1.clone()).unwrap_or_default(),
            "refused_note": req.note,
            "old_size": req.old_size,
            "proof": req.proof.iter().map(|h| base64::Engine::encode(&base64::engine::general_purpose::STANDARD, h)).collect::<Vec<_>>(),
        });
        let stored = storage::replace(self.fs.as_ref(), &path, evidence.to_string().as_bytes());
        if let Err(e) = &stored {
            tracing::error!(path = %path.display(), error = %e, "witness: could not store split-view evidence");
        }
        self.split_views.fetch_add(1, Ordering::Relaxed);
        self.metrics.witness_split_views.inc();
        tracing::error!(
            witnessed.origin = %cp.origin,
            size = cp.size,
            cosigned_size = origin.last.as_ref().map_or(0, |l| l.0.size),
            evidence = %path.display(),
            reason,
            "split view: a log signed a checkpoint inconsistent with the one this witness cosigned"
        );
        *self.last_alarm.lock().unwrap_or_else(|e| e.into_inner()) =
            Some(Alarm { origin: cp.origin.clone(), reason: reason.to_owned(), evidence: path });
    }
}

fn evidence_number(name: &str) -> u64 {
    name.trim_start_matches("split-view-").trim_end_matches(".json").parse().unwrap_or(0)
}

/// The directory name of an origin's state: 32 hex digits of SHA-256 of the origin.
pub fn origin_id(origin: &str) -> String {
    hex::encode(&Sha256::digest(origin.as_bytes())[..16])
}

/// Untrusted text echoed in an error, cut to 128 characters.
fn truncate(s: &str) -> String {
    s.chars().take(128).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_parses_and_names_errors() {
        let log =
            checkpoint::vkey("silkgate/node-a/1", &ed25519_dalek::SigningKey::from_bytes(&[1; 32]).verifying_key());
        let w = WitnessKey {
            name: "silkgate/node-b/witness".into(),
            key: ed25519_dalek::SigningKey::from_bytes(&[2; 32]).verifying_key(),
        }
        .vkey();
        let text = format!(
            "witness_quorum = 1\n[[log]]\nverifier_key = \"{log}\"\n[[witness]]\nverifier_key = \"{w}\"\nurl = \"http://127.0.0.1:1\"\n"
        );
        let c = WitnessConfig::parse(&text).unwrap();
        assert_eq!(c.logs[0].origin, "silkgate/node-a/1");
        assert_eq!(c.witnesses[0].witness.name, "silkgate/node-b/witness");
        assert_eq!(c.quorum, 1);
        let e = WitnessConfig::parse(&format!("[[log]]\nverifier_key = \"{w}\"\n")).unwrap_err();
        assert!(e.starts_with("log[0].verifier_key"), "{e}");
        let e =
            WitnessConfig::parse(&format!("witness_quorum = 2\n[[witness]]\nverifier_key = \"{w}\"\n")).unwrap_err();
        assert!(e.starts_with("witness_quorum"), "{e}");
        assert!(WitnessConfig::parse("other = 1").is_err());
    }
}
