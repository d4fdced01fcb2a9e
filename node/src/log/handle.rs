//! The running log as the service sees it: a handle to append (and wait for the sync),
//! to read entries and to get checkpoints and proofs; and the state it shares with the
//! writer thread.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::sync::oneshot;

use super::checkpoints::{self, History};
use super::queue::{Entry, Job, Queue};
use super::storage::{LogFile, Storage};
use super::store::{Index, LogError, Store, decision_id_of};
use super::{RECORD_OVERHEAD, dispatch, writer};
use silkgate_core::checkpoint::Checkpoint;
use silkgate_core::decision::Signer;
use silkgate_core::merkle::Hash;

/// Default [`GroupCommit::checkpoint_interval`].
pub const DEFAULT_CHECKPOINT_INTERVAL: Duration = Duration::from_secs(1);
/// Default [`GroupCommit::delay`], in microseconds.
pub const DEFAULT_COMMIT_DELAY_US: u64 = 2000;
/// Default [`GroupCommit::siblings`].
pub const DEFAULT_COMMIT_SIBLINGS: usize = 8;

/// Counters for metrics and benchmarks.
#[derive(Default)]
pub struct Stats {
    pub syncs: AtomicU64,
    pub sync_nanos: AtomicU64,
    pub entries: AtomicU64,
    pub bytes: AtomicU64,
}

/// Held by every [`LogHandle`] clone; the last one dropped closes the queue, and the
/// writer finishes what is queued and stops.
struct Feed(Arc<Queue>);

impl Drop for Feed {
    fn drop(&mut self) {
        self.0.close();
    }
}

/// One call being served by a node that logs (see [`LogHandle::serving`]); counted
/// until dropped.
pub struct Serving(Arc<Shared>);

impl Drop for Serving {
    fn drop(&mut self) {
        self.0.serving.fetch_sub(1, Ordering::Relaxed);
    }
}

/// How the writer forms groups (see `writer::Writer::gather`) and how often it signs a
/// checkpoint nobody asked for.
#[derive(Clone, Copy, Debug)]
pub struct GroupCommit {
    /// Longest a group waits for more calls before it is synced; zero syncs at once.
    pub delay: Duration,
    /// Calls being served at which the writer starts waiting; below it, syncs at once.
    pub siblings: usize,
    /// When the log has grown, a checkpoint is signed and stored at least this often.
    pub checkpoint_interval: Duration,
}

impl Default for GroupCommit {
    fn default() -> Self {
        GroupCommit {
            delay: Duration::from_micros(DEFAULT_COMMIT_DELAY_US),
            siblings: DEFAULT_COMMIT_SIBLINGS,
            checkpoint_interval: DEFAULT_CHECKPOINT_INTERVAL,
        }
    }
}

pub(super) struct Shared {
    /// Calls being served: between [`LogHandle::serving`] and the guard's drop.
    pub(super) serving: AtomicUsize,
    pub(super) commit: GroupCommit,
    pub(super) index: RwLock<Index>,
    pub(super) reader: Arc<dyn LogFile>,
    pub(super) signer: Arc<Signer>,
    pub(super) origin: String,
    pub(super) poisoned: AtomicBool,
    pub(super) stats: Stats,
    pub(super) fs: Arc<dyn Storage>,
    pub(super) dir: PathBuf,
    /// Held while a checkpoint is signed and stored: one at a time, in order of size.
    pub(super) history: Mutex<History>,
    /// Witness cosignature lines gathered for one checkpoint (size, root, lines); see
    /// [`LogHandle::add_cosignatures`].
    pub(super) cosignatures: Mutex<Option<(u64, Hash, String)>>,
}

/// An inclusion proof with what an auditor needs beside it.
pub struct Inclusion {
    pub size: u64,
    pub proof: Vec<Hash>,
    /// The entry's data (a SignedDecision).
    pub entry: Vec<u8>,
    /// The checkpoint the proof is against, when asked for the latest.
    pub checkpoint: Option<(String, Checkpoint)>,
}

/// A cheap, clonable handle to the running log.
#[derive(Clone)]
pub struct LogHandle {
    feed: Arc<Feed>,
    shared: Arc<Shared>,
    writer: Arc<Mutex<Option<JoinHandle<()>>>>,
}

pub(super) fn read_lock(s: &Shared) -> std::sync::RwLockReadGuard<'_, Index> {
    // A panic while holding the lock cannot leave the index half-updated: every update
    // below is a push after the data is on disk. So a poisoned lock is still usable.
    s.index.read().unwrap_or_else(|e| e.into_inner())
}

impl LogHandle {
    /// Starts the writer thread over a recovered store. Signs a checkpoint first when the
    /// store has entries the latest checkpoint does not cover (or no checkpoint at all).
    pub fn start(store: Store, signer: Arc<Signer>, commit: GroupCommit) -> Result<LogHandle, LogError> {
        let Store { fs, dir, origin, file, end, index, history, torn: _, lock } = store;
        let shared = Arc::new(Shared {
            serving: AtomicUsize::new(0),
            commit,
            index: RwLock::new(index),
            reader: file.clone(),
            signer: signer.clone(),
            origin,
            poisoned: AtomicBool::new(false),
            stats: Stats::default(),
            fs,
            dir,
            history: Mutex::new(History { file: history.0, len: history.1 }),
            cosignatures: Mutex::new(None),
        });
        checkpoints::latest(&shared)?;
        let queue = Arc::new(Queue::new());
        let (q, s) = (queue.clone(), shared.clone());
        let dispatch = dispatch::dispatcher();
        let thread = std::thread::Builder::new()
            .name("silkgate-log".into())
            .spawn(move || {
                writer::run(q, file, end, s, dispatch);
                drop(lock);
            })
            .map_err(|source| LogError::Io { path: shared.dir.clone(), source })?;
        Ok(LogHandle { feed: Arc::new(Feed(queue)), shared, writer: Arc::new(Mutex::new(Some(thread))) })
    }

    /// Stops the log: refuses new entries, lets the writer finish every group already
    /// queued, waits for its thread, and stores the final checkpoint. Called once the
    /// server has drained; later appends get [`LogError::Stopped`]. Idempotent.
    pub fn close(&self) -> Result<(), LogError> {
        self.feed.0.close();
        let thread = self.writer.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(t) = thread
            && t.join().is_err()
        {
            return Err(LogError::Poisoned);
        }
        if self.shared.poisoned.load(Ordering::Acquire) {
            return Err(LogError::Poisoned);
        }
        checkpoints::latest(&self.shared).map(|_| ())
    }

    /// Counts one call as being served until the guard is dropped (taken by the service
    /// for each Evaluate and EvaluateBatch). The writer reads the count to tell a busy
    /// node, where waiting for a fuller group pays, from a quiet one; see
    /// `writer::Writer::gather`.
    pub fn serving(&self) -> Serving {
        self.shared.serving.fetch_add(1, Ordering::Relaxed);
        Serving(self.shared.clone())
    }

    /// Appends entries as one group and returns the index of the first, once they are
    /// on disk.
    pub async fn append(&self, entries: Vec<Entry>) -> Result<u64, LogError> {
        if self.shared.poisoned.load(Ordering::Acquire) {
            return Err(LogError::Poisoned);
        }
        // Entry bundles (the tiles read path) frame each entry with a u16 length.
        if let Some(e) = entries.iter().find(|e| e.data.len() > super::MAX_APPEND_BYTES) {
            return Err(LogError::TooLarge(e.data.len()));
        }
        let (reply, rx) = oneshot::channel();
        let serving = || self.shared.serving.load(Ordering::Relaxed);
        if self.feed.0.push(Job { entries, reply }, serving).is_err() {
            return Err(if self.shared.poisoned.load(Ordering::Acquire) {
                LogError::Poisoned
            } else {
                LogError::Stopped
            });
        }
        rx.await.map_err(|_| LogError::Stopped)?
    }

    pub fn origin(&self) -> &str {
        &self.shared.origin
    }

    pub fn is_healthy(&self) -> bool {
        !self.shared.poisoned.load(Ordering::Acquire) && !self.feed.0.lock().closed
    }

    pub fn stats(&self) -> &Stats {
        &self.shared.stats
    }

    /// Number of durable entries.
    pub fn size(&self) -> u64 {
        read_lock(&self.shared).tree.len()
    }

    /// The latest signed checkpoint, covering every durable entry; it is on disk.
    pub fn checkpoint(&self) -> Result<(String, Checkpoint), LogError> {
        checkpoints::latest(&self.shared).map(|c| self.cosigned(c))
    }

    /// Keeps witness cosignature lines (already verified by the caller) for checkpoint
    /// `cp`; they are appended to that checkpoint's note wherever it is served, until
    /// lines for a larger checkpoint replace them. Held in memory: after a restart the
    /// collector gathers them again (a witness cosigns the same checkpoint again).
    pub fn add_cosignatures(&self, cp: &Checkpoint, lines: &str) {
        let mut c = self.shared.cosignatures.lock().unwrap_or_else(|e| e.into_inner());
        match c.as_mut() {
            Some((size, root, have)) if *size == cp.size && *root == cp.root => {
                let merged = silkgate_verify::cosignature::append(have, lines);
                *have = merged;
            }
            Some((size, _, _)) if *size > cp.size => {}
            _ => *c = Some((cp.size, cp.root, silkgate_verify::cosignature::append("", lines))),
        }
    }

    /// `note` with the cosignature lines gathered for its checkpoint, if any.
    fn cosigned(&self, (note, cp): (String, Checkpoint)) -> (String, Checkpoint) {
        let c = self.shared.cosignatures.lock().unwrap_or_else(|e| e.into_inner());
        match c.as_ref() {
            Some((size, root, lines)) if *size == cp.size && *root == cp.root => {
                (silkgate_verify::cosignature::append(&note, lines), cp)
            }
            _ => (note, cp),
        }
    }

    /// The log index of a decision id.
    pub fn index_of(&self, decision_id: &str) -> Result<Option<u64>, LogError> {
        let Ok(id) = uuid::Uuid::parse_str(decision_id) else { return Ok(None) };
        let id = id.as_u128();
        let candidates = read_lock(&self.shared).ids.candidates(id);
        for i in candidates {
            let data = self.read(i)?;
            if decision_id_of(&data) == Some(id) {
                return Ok(Some(i));
            }
        }
        Ok(None)
    }

    /// Reads entry `i`, which must be below the tree size. Entries are never rewritten,
    /// so the file is read without holding the index lock.
    fn read(&self, i: u64) -> Result<Vec<u8>, LogError> {
        let base = read_lock(&self.shared).offsets.base(i);
        let base = base.ok_or_else(|| LogError::OutOfRange(format!("index: {i} is past the end of the log")))?;
        Store::read_entry(self.shared.reader.as_ref(), base, i)
            .map_err(|source| LogError::Io { path: self.shared.dir.join("entries"), source })
    }

    /// Makes sure a stored checkpoint covers `size` entries before anything about them
    /// leaves the node (a proof or entries let a client compute that size's root), so
    /// the high-water mark is never below what a client could hold. Sizes past the log
    /// are left to the caller's range checks.
    fn stored(&self, size: u64) -> Result<(), LogError> {
        let covered = {
            let idx = read_lock(&self.shared);
            size > idx.tree.len() || idx.checkpoint.as_ref().is_some_and(|c| c.1.size >= size)
        };
        if !covered {
            checkpoints::latest(&self.shared)?;
        }
        Ok(())
    }

    /// An inclusion proof of entry `index` in the tree of `size` entries (0: the latest
    /// checkpoint), with the entry data and, for size 0, that checkpoint.
    pub fn inclusion(&self, index: u64, size: u64) -> Result<Inclusion, LogError> {
        let cp = if size == 0 {
            Some(self.cosigned(checkpoints::latest(&self.shared)?))
        } else {
            self.stored(size).map(|()| None)?
        };
        let size = cp.as_ref().map_or(size, |c| c.1.size);
        if index >= size {
            return Err(LogError::OutOfRange(format!("index: {index} is not below tree size {size}")));
        }
        let proof = {
            let idx = read_lock(&self.shared);
            if size > idx.tree.len() {
                return Err(LogError::Invalid(format!("tree size {size} is larger than the log ({})", idx.tree.len())));
            }
            idx.tree.inclusion_proof(index, size).map_err(|e| checkpoints::proof_error(&self.shared, e))?
        };
        let entry = self.read(index)?;
        Ok(Inclusion { size, proof, entry, checkpoint: cp })
    }

    /// A consistency proof from `size1` to `size2` (0: the latest checkpoint).
    pub fn consistency(&self, size1: u64, size2: u64) -> Result<(u64, Vec<Hash>), LogError> {
        let size2 = if size2 == 0 { checkpoints::latest(&self.shared)?.1.size } else { size2 };
        self.stored(size2)?;
        let idx = read_lock(&self.shared);
        if size1 > size2 || size2 > idx.tree.len() {
            return Err(LogError::Invalid(format!(
                "sizes must satisfy size1 <= size2 <= log size ({}), got {size1} and {size2}",
                idx.tree.len()
            )));
        }
        let proof = idx.tree.consistency_proof(size1, size2).map_err(|e| checkpoints::proof_error(&self.shared, e))?;
        Ok((size2, proof))
    }

    /// Up to `count` entries from `start`.
    pub fn entries(&self, start: u64, count: u64) -> Result<Vec<(u64, Vec<u8>)>, LogError> {
        let (end, base) = {
            let idx = read_lock(&self.shared);
            (start.saturating_add(count).min(idx.tree.len()), idx.offsets.base(start))
        };
        let Some(mut at) = base else { return Ok(Vec::new()) };
        self.stored(end)?;
        let path = || self.shared.dir.join("entries");
        let mut out = Vec::new();
        let file = self.shared.reader.as_ref();
        let mut len = [0u8; 4];
        // Follow the length prefixes from the nearest kept offset: entries are contiguous.
        for i in at.0..end {
            file.read_at(&mut len, at.1).map_err(|source| LogError::Io { path: path(), source })?;
            let n = u32::from_be_bytes(len) as u64;
            if i >= start {
                let mut data = vec![0u8; n as usize];
                file.read_at(&mut data, at.1 + 4).map_err(|source| LogError::Io { path: path(), source })?;
                out.push((i, data));
            }
            at = (i + 1, at.1 + RECORD_OVERHEAD as u64 + n);
        }
        Ok(out)
    }

    /// The latest stored checkpoint (the high-water mark), without signing a new one;
    /// `None` only before the first is stored.
    pub fn stored_checkpoint(&self) -> Option<(String, Checkpoint)> {
        let c = read_lock(&self.shared).checkpoint.clone();
        c.map(|c| self.cosigned(c))
    }

    /// Node hashes `start .. start + count` of tree level `level`, 32 bytes each, back to
    /// back: a C2SP tlog-tiles hash tile when `level` is a multiple of 8. Every node
    /// must lie in the tree of the stored checkpoint, and `count` is at most 256.
    pub fn level_hashes(&self, level: u32, start: u64, count: u64) -> Result<Vec<u8>, LogError> {
        use silkgate_core::merkle::NodeStore as _;
        if count > super::hashes::TILE_WIDTH || level >= 64 {
            return Err(LogError::Invalid(format!("level {level}: at most 256 hashes of levels 0 to 63")));
        }
        let idx = read_lock(&self.shared);
        let size = idx.checkpoint.as_ref().map_or(0, |c| c.1.size);
        let end = start.checked_add(count).filter(|&e| e <= size >> level);
        if end.is_none() {
            return Err(LogError::OutOfRange(format!(
                "level {level} nodes {start}+{count}: past the stored checkpoint of size {size}"
            )));
        }
        let mut out = Vec::with_capacity(count as usize * 32);
        for i in start..start + count {
            let h = idx.tree.store().read(level, i).map_err(|e| super::store::nodes_error(&self.shared.dir, e))?;
            out.extend_from_slice(&h);
        }
        Ok(out)
    }

    /// Entries `start .. start + count` (at most 256), all within the stored checkpoint.
    pub fn stored_entries(&self, start: u64, count: u64) -> Result<Vec<Vec<u8>>, LogError> {
        let size = read_lock(&self.shared).checkpoint.as_ref().map_or(0, |c| c.1.size);
        if count > super::hashes::TILE_WIDTH || start.checked_add(count).is_none_or(|e| e > size) {
            return Err(LogError::OutOfRange(format!(
                "entries {start}+{count}: past the stored checkpoint of size {size}"
            )));
        }
        Ok(self.entries(start, count)?.into_iter().map(|(_, d)| d).collect())
    }
}
