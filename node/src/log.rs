//! The decision log: every returned decision, appended durably to an RFC 6962 Merkle
//! log in the data directory before the answer is sent.
//!
//! Layout of `DATA_DIR/log/`:
//! - `origin`: the log's origin line (text), fixed when the log is created;
//! - `entries`: records `len (u32 big-endian) || data || SHA-256(0x00 || data)`, where
//!   `data` is the exact `SignedDecision` protobuf returned to the client and the trailing
//!   32 bytes are the RFC 6962 leaf hash, so every record checks itself; then zeros: the
//!   file is preallocated in zero-filled steps so a commit's `fdatasync` flushes only data;
//! - `checkpoint`: the latest signed checkpoint note, rewritten at most once a second,
//!   when idle, and at shutdown (checkpoints are signed in memory when asked for);
//! - `checkpoints`: a history of signed checkpoints, records `len (u32 BE) || note`,
//!   appended with each rewrite of `checkpoint`;
//! - `sealed/N/`: earlier logs, sealed with `silkgate log seal`, each with its own origin.
//!
//! [`store`] opens and recovers the files; [`writer`] runs group commit on its own thread.

pub mod audit;
pub mod hashes;
pub mod store;
pub mod writer;

pub use store::{LogError, Store};
pub use writer::{GroupCommit, LogHandle};

/// Largest entry accepted, in bytes.
pub const MAX_ENTRY_BYTES: usize = 1 << 20;

/// Bytes of framing each record adds to its data: the length prefix and the leaf hash.
pub const RECORD_OVERHEAD: usize = 4 + 32;

/// The origin of a node's log: `silkgate/<node id>/<epoch>`; the epoch starts at 1 and
/// grows by one each time a log is sealed.
pub fn origin(node_id: &str, epoch: u64) -> String {
    format!("silkgate/{node_id}/{epoch}")
}

/// Opens (or creates) the log in `DATA_DIR/log` and starts its writer, with the default
/// group commit settings.
pub fn open(
    data_dir: &std::path::Path,
    node_id: &str,
    signer: std::sync::Arc<crate::decision::Signer>,
) -> Result<LogHandle, LogError> {
    open_with(data_dir, node_id, signer, GroupCommit::default())
}

/// [`open`] with group commit settings.
pub fn open_with(
    data_dir: &std::path::Path,
    node_id: &str,
    signer: std::sync::Arc<crate::decision::Signer>,
    commit: GroupCommit,
) -> Result<LogHandle, LogError> {
    let dir = data_dir.join("log");
    let sealed = std::fs::read_dir(dir.join("sealed")).map(|d| d.count() as u64).unwrap_or(0);
    let store = Store::open(&dir, &origin(node_id, sealed + 1), &signer.verifying_key())?;
    if store.truncated > 0 {
        tracing::warn!(bytes = store.truncated, "recovered the decision log after a crash");
    }
    tracing::info!(log.origin = %store.origin, log.size = store.index.tree.len(), "decision log open");
    LogHandle::start(store, signer, commit)
}

/// Node ids name the log's origin, so they are restricted to a safe alphabet.
pub fn valid_node_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}
