//! Group commit: one thread appends, syncs and signs; requests wait for their sync.
//!
//! Requests hand their entries to the writer thread and wait. The writer takes every
//! job that is waiting, writes them in one `write`, calls `fdatasync` once, then adds
//! the leaves to the tree, signs a checkpoint over the new size and answers every job.
//! So a checkpoint is only ever signed over entries already on disk, and concurrent
//! requests share one sync.

use std::fs::{File, OpenOptions};
use std::io::Write;
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
/// How often the checkpoint history grows, at most.
const HISTORY_INTERVAL: Duration = Duration::from_secs(1);

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
            persist(&dir, &note, &mut history).map_err(|source| LogError::Io { path: dir.clone(), source })?;
            index.checkpoint = Some((note, cp));
        }
        let shared = Arc::new(Shared {
            index: RwLock::new(index),
            reader,
            origin,
            poisoned: AtomicBool::new(false),
            stats: Stats::default(),
        });
        let (tx, rx) = mpsc::channel(8192);
        let s = shared.clone();
        std::thread::Builder::new()
            .name("silkgate-log".into())
            .spawn(move || {
                run(rx, file, end, s, signer, dir, history);
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
        let idx = read_lock(&self.shared);
        // `start` always signs one before the handle exists.
        idx.checkpoint.clone().expect("a checkpoint is signed at start")
    }

    pub fn index_of(&self, decision_id: &str) -> Option<u64> {
        let id = uuid::Uuid::parse_str(decision_id).ok()?.as_u128();
        read_lock(&self.shared).ids.get(&id).copied()
    }

    /// An inclusion proof of entry `index` in the tree of `size` entries (0: the latest
    /// checkpoint), with the entry data and, for size 0, that checkpoint.
    pub fn inclusion(&self, index: u64, size: u64) -> Result<Inclusion, LogError> {
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

fn sign_checkpoint(origin: &str, index: &Index, signer: &Signer) -> (String, Checkpoint) {
    let cp = Checkpoint {
        origin: origin.to_string(),
        size: index.tree.len(),
        root: index.tree.root(),
        extensions: Vec::new(),
    };
    (cp.sign(signer.signing_key()), cp)
}

fn persist(dir: &std::path::Path, note: &str, history: &mut File) -> std::io::Result<()> {
    replace_file(&dir.join("checkpoint"), note.as_bytes())?;
    append_history(history, note)
}

fn append_history(history: &mut File, note: &str) -> std::io::Result<()> {
    let mut rec = (note.len() as u32).to_be_bytes().to_vec();
    rec.extend_from_slice(note.as_bytes());
    history.write_all(&rec)
}

#[allow(clippy::too_many_arguments)]
fn run(
    mut rx: mpsc::Receiver<Job>,
    mut file: File,
    mut end: u64,
    shared: Arc<Shared>,
    signer: Arc<Signer>,
    dir: std::path::PathBuf,
    mut history: File,
) {
    let mut last_history = Instant::now();
    let mut buf = Vec::new();
    while let Some(first) = rx.blocking_recv() {
        let mut jobs = vec![first];
        let mut n = jobs[0].entries.len();
        while n < MAX_GROUP {
            match rx.try_recv() {
                Ok(j) => {
                    n += j.entries.len();
                    jobs.push(j);
                }
                Err(_) => break,
            }
        }
        buf.clear();
        let mut hashes = Vec::with_capacity(n);
        for j in &jobs {
            for e in &j.entries {
                hashes.push(encode_record(&e.data, &mut buf));
            }
        }
        let base = end;
        let started = Instant::now();
        let written = file.write_all(&buf).and_then(|()| file.sync_data());
        if let Err(e) = written {
            // The file's state is unknown now: stop accepting entries; recovery on the
            // next start truncates whatever was half written.
            tracing::error!(error = %e, "decision log write failed; refusing further decisions");
            shared.poisoned.store(true, Ordering::Release);
            for j in jobs {
                let _ = j.reply.send(Err(LogError::Poisoned));
            }
            rx.close();
            while let Ok(j) = rx.try_recv() {
                let _ = j.reply.send(Err(LogError::Poisoned));
            }
            return;
        }
        end += buf.len() as u64;
        let stats = &shared.stats;
        stats.syncs.fetch_add(1, Ordering::Relaxed);
        stats.sync_nanos.fetch_add(started.elapsed().as_nanos() as u64, Ordering::Relaxed);
        stats.entries.fetch_add(n as u64, Ordering::Relaxed);
        stats.bytes.fetch_add(buf.len() as u64, Ordering::Relaxed);

        let mut firsts = Vec::with_capacity(jobs.len());
        let note = {
            let mut idx = shared.index.write().unwrap_or_else(|e| e.into_inner());
            let mut offset = base;
            let mut h = hashes.into_iter();
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
            let (note, cp) = sign_checkpoint(&shared.origin, &idx, &signer);
            idx.checkpoint = Some((note.clone(), cp));
            note
        };
        for (j, first) in jobs.into_iter().zip(firsts) {
            let _ = j.reply.send(Ok(first));
        }
        if let Err(e) = replace_file(&dir.join("checkpoint"), note.as_bytes()) {
            tracing::warn!(error = %e, "could not rewrite the latest checkpoint file");
        }
        if last_history.elapsed() >= HISTORY_INTERVAL {
            last_history = Instant::now();
            if let Err(e) = append_history(&mut history, &note) {
                tracing::warn!(error = %e, "could not append to the checkpoint history");
            }
        }
    }
    let idx = read_lock(&shared);
    if let Some((note, _)) = &idx.checkpoint {
        let _ = append_history(&mut history, note);
        let _ = history.sync_all();
    }
}
