//! Group commit: one thread appends, syncs and signs; requests wait for their sync.
//!
//! Requests hand their entries to the writer thread and wait. The writer takes every
//! job that is waiting, writes them in one `write`, calls `fdatasync` once, then adds
//! the leaves to the tree, signs a checkpoint over the new size and answers every job.
//! So a checkpoint is only ever signed over entries already on disk, and concurrent
//! requests share one sync.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

use super::store::{Index, LogError, Store, encode_record, replace_file};
use crate::checkpoint::Checkpoint;
use crate::decision::Signer;
use crate::merkle::Hash;

/// Most entries one group commit takes.
const MAX_GROUP: usize = 4096;
/// The entries file grows in zero-filled steps of this many bytes.
const PREALLOCATE: u64 = 4 << 20;
/// How often the `checkpoint` file is rewritten and the history grows, at most.
const PERSIST_INTERVAL: Duration = Duration::from_secs(1);

/// One entry to append: the data and, for decisions, the decision id.
pub struct Entry {
    pub data: Vec<u8>,
    pub id: Option<u128>,
}

struct Job {
    entries: Vec<Entry>,
    reply: oneshot::Sender<Result<u64, LogError>>,
}

/// Counters for metrics and benchmarks.
#[derive(Default)]
pub struct Stats {
    pub syncs: AtomicU64,
    pub sync_nanos: AtomicU64,
    pub entries: AtomicU64,
    pub bytes: AtomicU64,
}

struct Shared {
    index: RwLock<Index>,
    reader: File,
    signer: Arc<Signer>,
    origin: String,
    poisoned: AtomicBool,
    stats: Stats,
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
    tx: mpsc::Sender<Job>,
    shared: Arc<Shared>,
}

fn read_lock(s: &Shared) -> std::sync::RwLockReadGuard<'_, Index> {
    // A panic while holding the lock cannot leave the index half-updated: every update
    // below is a push after the data is on disk. So a poisoned lock is still usable.
    s.index.read().unwrap_or_else(|e| e.into_inner())
}

impl LogHandle {
    /// Starts the writer thread over a recovered store. Signs a checkpoint first when the
    /// store has entries the latest checkpoint does not cover (or no checkpoint at all).
    pub fn start(store: Store, signer: Arc<Signer>) -> Result<LogHandle, LogError> {
        let Store { dir, origin, file, end, mut index, truncated: _, lock } = store;
        let reader = file.try_clone().map_err(|source| LogError::Io { path: dir.join("entries"), source })?;
        let history_path = dir.join("checkpoints");
        let mut history = OpenOptions::new()
            .append(true)
            .create(true)
            .open(&history_path)
            .map_err(|source| LogError::Io { path: history_path.clone(), source })?;
        let needs = index.checkpoint.as_ref().is_none_or(|(_, c)| c.size < index.tree.len());
        if needs {
            let (note, cp) = sign_checkpoint(&origin, &index, &signer);
            persist_now(&dir, &note, &mut history).map_err(|source| LogError::Io { path: dir.clone(), source })?;
            index.checkpoint = Some((note, cp));
        }
        let shared = Arc::new(Shared {
            index: RwLock::new(index),
            reader,
            signer: signer.clone(),
            origin,
            poisoned: AtomicBool::new(false),
            stats: Stats::default(),
        });
        let (tx, rx) = mpsc::channel(8192);
        let s = shared.clone();
        std::thread::Builder::new()
            .name("silkgate-log".into())
            .spawn(move || {
                run(rx, file, end, s, dir, history);
                drop(lock);
            })
            .map_err(|source| LogError::Io { path: history_path, source })?;
        Ok(LogHandle { tx, shared })
    }

    /// Appends entries as one group and returns the index of the first, once they are
    /// on disk.
    pub async fn append(&self, entries: Vec<Entry>) -> Result<u64, LogError> {
        if self.shared.poisoned.load(Ordering::Acquire) {
            return Err(LogError::Poisoned);
        }
        if let Some(e) = entries.iter().find(|e| e.data.len() > super::MAX_ENTRY_BYTES) {
            return Err(LogError::TooLarge(e.data.len()));
        }
        let (reply, rx) = oneshot::channel();
        self.tx.send(Job { entries, reply }).await.map_err(|_| LogError::Stopped)?;
        rx.await.map_err(|_| LogError::Stopped)?
    }

    pub fn origin(&self) -> &str {
        &self.shared.origin
    }

    pub fn is_healthy(&self) -> bool {
        !self.shared.poisoned.load(Ordering::Acquire) && !self.tx.is_closed()
    }

    pub fn stats(&self) -> &Stats {
        &self.shared.stats
    }

    /// Number of durable entries.
    pub fn size(&self) -> u64 {
        read_lock(&self.shared).tree.len()
    }

    /// The latest signed checkpoint.
    pub fn checkpoint(&self) -> (String, Checkpoint) {
        latest(&self.shared)
    }

    pub fn index_of(&self, decision_id: &str) -> Option<u64> {
        let id = uuid::Uuid::parse_str(decision_id).ok()?.as_u128();
        read_lock(&self.shared).ids.get(&id).copied()
    }

    /// An inclusion proof of entry `index` in the tree of `size` entries (0: the latest
    /// checkpoint), with the entry data and, for size 0, that checkpoint.
    pub fn inclusion(&self, index: u64, size: u64) -> Result<Inclusion, LogError> {
        if size == 0 {
            latest(&self.shared);
        }
        let idx = read_lock(&self.shared);
        let (size, cp) = match size {
            0 => {
                let cp = idx.checkpoint.clone().expect("a checkpoint is signed at start");
                (cp.1.size, Some(cp))
            }
            s => (s, None),
        };
        if index >= size {
            return Err(LogError::NotFound(format!("index {index} is not below tree size {size}")));
        }
        if size > idx.tree.len() {
            return Err(LogError::Invalid(format!("tree size {size} is larger than the log ({})", idx.tree.len())));
        }
        let proof = idx.tree.inclusion_proof(index, size).map_err(|e| LogError::Invalid(e.to_string()))?;
        let data = Store::read_entry(&self.shared.reader, &idx.offsets, index)
            .map_err(|source| LogError::Io { path: "entries".into(), source })?;
        Ok(Inclusion { size, proof, entry: data, checkpoint: cp })
    }

    /// A consistency proof from `size1` to `size2` (0: the latest checkpoint).
    pub fn consistency(&self, size1: u64, size2: u64) -> Result<(u64, Vec<Hash>), LogError> {
        if size2 == 0 {
            latest(&self.shared);
        }
        let idx = read_lock(&self.shared);
        let size2 = if size2 == 0 { idx.checkpoint.as_ref().map_or(0, |c| c.1.size) } else { size2 };
        if size1 > size2 || size2 > idx.tree.len() {
            return Err(LogError::Invalid(format!(
                "sizes must satisfy size1 <= size2 <= log size ({}), got {size1} and {size2}",
                idx.tree.len()
            )));
        }
        let proof = idx.tree.consistency_proof(size1, size2).map_err(|e| LogError::Invalid(e.to_string()))?;
        Ok((size2, proof))
    }

    /// Up to `count` entries from `start`.
    pub fn entries(&self, start: u64, count: u64) -> Result<Vec<(u64, Vec<u8>)>, LogError> {
        let idx = read_lock(&self.shared);
        let end = start.saturating_add(count).min(idx.tree.len());
        (start..end)
            .map(|i| {
                Store::read_entry(&self.shared.reader, &idx.offsets, i)
                    .map(|d| (i, d))
                    .map_err(|source| LogError::Io { path: "entries".into(), source })
            })
            .collect()
    }
}

/// The checkpoint over every durable entry, signed now if the latest signed one is older.
///
/// Checkpoints are signed when someone needs one (a checkpoint or proof request, the
/// once-a-second file rewrite), not per group commit: a signature per commit cost more
/// than the commit's own work. Whatever it covers is on disk: the tree holds only
/// synced entries.
fn latest(shared: &Shared) -> (String, Checkpoint) {
    {
        let idx = read_lock(shared);
        if let Some(cp) = idx.checkpoint.as_ref().filter(|c| c.1.size == idx.tree.len()) {
            return cp.clone();
        }
    }
    let mut idx = shared.index.write().unwrap_or_else(|e| e.into_inner());
    if let Some(cp) = idx.checkpoint.as_ref().filter(|c| c.1.size == idx.tree.len()) {
        return cp.clone();
    }
    let signed = sign_checkpoint(&shared.origin, &idx, &shared.signer);
    idx.checkpoint = Some(signed.clone());
    signed
}

fn sign_checkpoint(origin: &str, index: &Index, signer: &Signer) -> (String, Checkpoint) {
    let cp = Checkpoint {
        origin: origin.to_string(),
        size: index.tree.len(),
        root: index.tree.root(),
        extensions: Vec::new(),
    };
    (cp.sign(signer.signing_key()), cp)
}

fn persist_now(dir: &std::path::Path, note: &str, history: &mut File) -> std::io::Result<()> {
    replace_file(&dir.join("checkpoint"), note.as_bytes())?;
    append_history(history, note)
}

fn append_history(history: &mut File, note: &str) -> std::io::Result<()> {
    let mut rec = (note.len() as u32).to_be_bytes().to_vec();
    rec.extend_from_slice(note.as_bytes());
    history.write_all(&rec)
}

/// The writer thread's state.
struct Writer {
    rx: mpsc::Receiver<Job>,
    file: File,
    /// Where the records end (the next record goes here).
    end: u64,
    /// Length of the entries file: records, then zero-filled preallocated space.
    allocated: u64,
    shared: Arc<Shared>,
    dir: std::path::PathBuf,
    history: File,
    buf: Vec<u8>,
    /// Size of the checkpoint last written to the `checkpoint` file and the history.
    persisted: Option<u64>,
    last_persist: Instant,
}

fn run(rx: mpsc::Receiver<Job>, file: File, end: u64, shared: Arc<Shared>, dir: std::path::PathBuf, history: File) {
    let persisted = read_lock(&shared).checkpoint.as_ref().map(|c| c.1.size);
    let allocated = file.metadata().map_or(end, |m| m.len());
    let w = Writer {
        rx,
        file,
        end,
        allocated,
        shared,
        dir,
        history,
        buf: Vec::new(),
        persisted,
        last_persist: Instant::now(),
    };
    // A runtime of its own only for the idle timer: every call it makes blocks this
    // dedicated thread, never a request thread.
    match tokio::runtime::Builder::new_current_thread().enable_time().build() {
        Ok(rt) => rt.block_on(w.run()),
        Err(e) => {
            tracing::error!(error = %e, "decision log writer could not start; refusing decisions");
            w.shared.poisoned.store(true, Ordering::Release);
        }
    }
}

impl Writer {
    async fn run(mut self) {
        loop {
            match tokio::time::timeout(PERSIST_INTERVAL, self.rx.recv()).await {
                Ok(Some(first)) => {
                    if !self.commit(first) {
                        return;
                    }
                    if self.last_persist.elapsed() >= PERSIST_INTERVAL {
                        self.persist();
                    }
                }
                Ok(None) => break,
                Err(_) => self.persist(),
            }
        }
        self.persist();
        let _ = self.history.sync_all();
    }

    /// Writes the latest checkpoint to the `checkpoint` file and the history, when it
    /// changed. Done at most once a second (and when idle, and at shutdown), not per
    /// group commit: rewriting a file per commit cost more than the commit's fsync.
    fn persist(&mut self) {
        self.last_persist = Instant::now();
        let (note, cp) = latest(&self.shared);
        if self.persisted == Some(cp.size) {
            return;
        }
        if let Err(e) = replace_file(&self.dir.join("checkpoint"), note.as_bytes()) {
            tracing::warn!(error = %e, "could not rewrite the latest checkpoint file");
            return;
        }
        if let Err(e) = append_history(&mut self.history, &note) {
            tracing::warn!(error = %e, "could not append to the checkpoint history");
        }
        self.persisted = Some(cp.size);
    }

    /// Makes sure the file has zero-filled space up to `need`, written and synced.
    ///
    /// Records are written over space that already exists, so the file's size does not
    /// change on a commit and `fdatasync` flushes only data, without a journal commit
    /// for the size: measured here, 0.13 ms instead of 0.21 ms at the median, and
    /// 0.18 ms instead of 0.88 ms at the 90th percentile.
    fn preallocate(&mut self, need: u64) -> std::io::Result<()> {
        if need <= self.allocated {
            return Ok(());
        }
        let target = need.div_ceil(PREALLOCATE) * PREALLOCATE;
        let zeros = vec![0u8; 1 << 20];
        let mut at = self.allocated;
        while at < target {
            let n = (target - at).min(zeros.len() as u64) as usize;
            self.file.write_all_at(&zeros[..n], at)?;
            at += n as u64;
        }
        self.file.sync_all()?;
        self.allocated = target;
        Ok(())
    }

    /// One group commit: every waiting job, one write, one sync, one checkpoint. Returns
    /// false when the log can take no more entries.
    fn commit(&mut self, first: Job) -> bool {
        let mut jobs = vec![first];
        let mut n = jobs[0].entries.len();
        while n < MAX_GROUP {
            match self.rx.try_recv() {
                Ok(j) => {
                    n += j.entries.len();
                    jobs.push(j);
                }
                Err(_) => break,
            }
        }
        self.buf.clear();
        let mut hashes = Vec::with_capacity(n);
        for j in &jobs {
            for e in &j.entries {
                hashes.push(encode_record(&e.data, &mut self.buf));
            }
        }
        let base = self.end;
        let started = Instant::now();
        let written = self
            .preallocate(base + self.buf.len() as u64)
            .and_then(|()| self.file.write_all_at(&self.buf, base))
            .and_then(|()| self.file.sync_data());
        if let Err(e) = written {
            // The file's state is unknown now: stop accepting entries; recovery on the
            // next start truncates whatever was half written.
            tracing::error!(error = %e, "decision log write failed; refusing further decisions");
            self.shared.poisoned.store(true, Ordering::Release);
            for j in jobs {
                let _ = j.reply.send(Err(LogError::Poisoned));
            }
            self.rx.close();
            while let Ok(j) = self.rx.try_recv() {
                let _ = j.reply.send(Err(LogError::Poisoned));
            }
            return false;
        }
        self.end += self.buf.len() as u64;
        let stats = &self.shared.stats;
        stats.syncs.fetch_add(1, Ordering::Relaxed);
        stats.sync_nanos.fetch_add(started.elapsed().as_nanos() as u64, Ordering::Relaxed);
        stats.entries.fetch_add(n as u64, Ordering::Relaxed);
        stats.bytes.fetch_add(self.buf.len() as u64, Ordering::Relaxed);

        let mut firsts = Vec::with_capacity(jobs.len());
        {
            let mut idx = self.shared.index.write().unwrap_or_else(|e| e.into_inner());
            let mut offset = base;
            let mut h = hashes.into_iter();
            idx.ids.reserve(n);
            for j in &jobs {
                firsts.push(idx.tree.len());
                for e in &j.entries {
                    let i = idx.tree.push(h.next().unwrap_or_default());
                    idx.offsets.push(offset);
                    offset += (super::RECORD_OVERHEAD + e.data.len()) as u64;
                    if let Some(id) = e.id {
                        idx.ids.insert(id, i);
                    }
                }
            }
        }
        for (j, first) in jobs.into_iter().zip(firsts) {
            let _ = j.reply.send(Ok(first));
        }
        true
    }
}
