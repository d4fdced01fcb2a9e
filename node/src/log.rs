//! The decision log: every returned decision, appended durably to an RFC 6962 Merkle
//! log in the data directory before the answer is sent.
//!
//! Layout of `DATA_DIR/log/`:
//! - `origin`: the log's origin line (text), fixed when the log is created;
//! - `entries`: records `len (u32 big-endian) || data || SHA-256(0x00 || data)`, where
//!   `data` is the exact `SignedDecision` protobuf returned to the client and the trailing
//!   32 bytes are the RFC 6962 leaf hash, so every record checks itself; then zeros: the
//!   file is preallocated in zero-filled steps so a commit's `fdatasync` flushes only data;
//! - `checkpoint`: the latest signed checkpoint note; a checkpoint is on disk (here and
//!   in the history) before it leaves the node, so it is the log's high-water mark;
//! - `checkpoints`: a history of signed checkpoints, records `len (u32 BE) || note`;
//! - `sealed/N/`: earlier logs, sealed with `silkgate log seal`, each with its own origin.
//!
//! In the order an entry goes: [`handle`] is what the service holds (append, read,
//! prove); calls wait in the [`queue`]; the [`writer`] thread runs group commit and
//! [`dispatch`] sends the answers; [`checkpoints`] are signed on demand and stored
//! first. [`storage`] is the file I/O seam ([`sim`] simulates crashes behind it);
//! [`store`] opens and recovers the files; [`hashes`] keeps the tree's nodes in files;
//! [`seal`] seals a log; [`audit`] checks one offline.

pub mod audit;
mod checkpoints;
mod dispatch;
pub mod handle;
pub mod hashes;
mod queue;
pub mod seal;
pub mod sim;
pub mod storage;
pub mod store;
mod writer;

pub use handle::{GroupCommit, Inclusion, LogHandle, Serving, Stats};
pub use queue::Entry;
pub use store::{LogError, Store};

/// Largest entry accepted, in bytes.
pub const MAX_ENTRY_BYTES: usize = 1 << 20;

/// Largest entry appended: C2SP tlog-tiles entry bundles frame each entry with a
/// big-endian `u16` length, so a longer entry could not be served on the read path. A
/// decision that would be longer (hundreds of matched rules with long messages) is
/// refused with an error, never answered unlogged. Logs written before this limit may
/// hold entries up to [`MAX_ENTRY_BYTES`]; their entry bundles then fail to serve.
pub const MAX_APPEND_BYTES: usize = u16::MAX as usize;

/// Bytes of framing each record adds to its data: the length prefix and the leaf hash.
pub const RECORD_OVERHEAD: usize = 4 + 32;

/// The most bytes of records the writer writes before a sync: a group larger than this
/// is written and synced in several steps. So at a crash at most this many bytes past
/// the last sync can be on disk, which is what recovery accepts as a torn tail.
pub const MAX_WRITE: u64 = 2 << 20;

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
    signer: std::sync::Arc<silkgate_core::decision::Signer>,
) -> Result<LogHandle, LogError> {
    open_with(data_dir, node_id, signer, GroupCommit::default())
}

/// [`open`] with group commit settings.
pub fn open_with(
    data_dir: &std::path::Path,
    node_id: &str,
    signer: std::sync::Arc<silkgate_core::decision::Signer>,
    commit: GroupCommit,
) -> Result<LogHandle, LogError> {
    let dir = data_dir.join("log");
    let fs = storage::Disk;
    storage::create_dir_all(&fs, &dir).map_err(|source| LogError::Io { path: dir.clone(), source })?;
    let lock = store::lock(&dir)?;
    seal::finish(&fs, &dir)?;
    let epoch = seal::sealed(&fs, &dir)?.last().copied().unwrap_or(0) + 1;
    let nodes = Store::node_files(&dir)?;
    let mut store =
        Store::open_on_with(std::sync::Arc::new(fs), &dir, &origin(node_id, epoch), &signer.verifying_key(), nodes)?;
    store.lock = Some(lock);
    tracing::info!(log_origin = %store.origin, log_size = store.index.tree.len(), "decision log open");
    LogHandle::start(store, signer, commit)
}

/// Node ids name the log's origin, so they are restricted to a safe alphabet.
pub fn valid_node_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}
