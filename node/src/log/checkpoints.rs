//! Checkpoints: signed when someone needs one, and stored before anyone gets one, so
//! the stored checkpoint is the log's high-water mark.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use silkgate_core::checkpoint::Checkpoint;
use silkgate_core::merkle::ProofError;

use super::handle::{self, Shared};
use super::storage::{self, LogFile};
use super::store::{Index, LogError};

/// The checkpoint history file, appended under its own lock by whoever signs.
pub(super) struct History {
    pub(super) file: Arc<dyn LogFile>,
    pub(super) len: u64,
}

/// The checkpoint over every durable entry, signed and stored now if the latest one is
/// older.
///
/// Checkpoints are signed when someone needs one (a checkpoint or proof request, the
/// writer's [`GroupCommit::checkpoint_interval`], shutdown), not per group commit: a
/// signature per commit cost more than the commit's own work. Whatever it covers is on
/// disk (the tree holds only synced entries), and the checkpoint itself is on disk,
/// appended to the history and written to the `checkpoint` file with their syncs,
/// before anyone gets it: it is the high-water mark recovery never goes below. A
/// checkpoint that cannot be stored is not given out, and the log stops taking entries
/// (a full or failing disk), so no decision is answered that a later checkpoint could
/// not cover.
pub(super) fn latest(shared: &Shared) -> Result<(String, Checkpoint), LogError> {
    let current = |idx: &Index| idx.checkpoint.clone().filter(|c| c.1.size == idx.tree.len());
    if let Some(cp) = current(&handle::read_lock(shared)) {
        return Ok(cp);
    }
    let mut history = shared.history.lock().unwrap_or_else(|e| e.into_inner());
    // Signing happens outside the index lock, so the writer is never kept waiting.
    let cp = {
        let idx = handle::read_lock(shared);
        if let Some(cp) = current(&idx) {
            return Ok(cp);
        }
        let root = idx.tree.root_at(idx.tree.len()).map_err(|e| proof_error(shared, e))?;
        Checkpoint { origin: shared.origin.clone(), size: idx.tree.len(), root, extensions: Vec::new() }
    };
    if shared.poisoned.load(Ordering::Acquire) {
        return Err(LogError::Poisoned);
    }
    let note = cp.sign(shared.signer.signing_key());
    if let Err(e) = store_checkpoint(shared, &mut history, &note) {
        tracing::error!(error = %e, "could not store a checkpoint; refusing further decisions");
        shared.poisoned.store(true, Ordering::Release);
        return Err(e);
    }
    let mut idx = shared.index.write().unwrap_or_else(|e| e.into_inner());
    if idx.checkpoint.as_ref().is_none_or(|c| c.1.size < cp.size) {
        idx.checkpoint = Some((note.clone(), cp.clone()));
    }
    Ok((note, cp))
}

/// A proof or root the tree could not give: a node file failing is an I/O error; the
/// rest are the caller's bad arguments.
pub(super) fn proof_error(shared: &Shared, e: ProofError) -> LogError {
    match e {
        ProofError::Storage(e) => super::store::nodes_error(&shared.dir, e),
        e => LogError::Invalid(e.to_string()),
    }
}

/// Appends `note` to the history and syncs it, then replaces the `checkpoint` file.
fn store_checkpoint(shared: &Shared, history: &mut History, note: &str) -> Result<(), LogError> {
    let hpath = || shared.dir.join("checkpoints");
    let mut rec = (note.len() as u32).to_be_bytes().to_vec();
    rec.extend_from_slice(note.as_bytes());
    history.file.write_at(&rec, history.len).map_err(|source| LogError::Io { path: hpath(), source })?;
    history.file.sync_data().map_err(|source| LogError::Io { path: hpath(), source })?;
    history.len += rec.len() as u64;
    let path = shared.dir.join("checkpoint");
    storage::replace(shared.fs.as_ref(), &path, note.as_bytes()).map_err(|source| LogError::Io { path, source })
}
