//! Group commit: one thread appends and syncs; requests wait for their sync.
//!
//! Requests put their entries in a shared queue and wait. The writer takes every job
//! that is waiting, writes them in one `write`, calls `fdatasync` once, then adds the
//! leaves to the tree and answers every job. Checkpoints are signed on demand over the
//! tree, which holds only synced entries. So concurrent requests share one sync.
//!
//! Under load the writer also waits a little for a group to fill before syncing (see
//! [`Writer::gather`]): each sync costs about 50 us of CPU and two thread switches
//! whatever its size, so on a busy node bigger groups leave more CPU for requests.
//! A group's answers are sent by one task on the service's runtime (see [`dispatcher`]).

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::storage::{self, LogFile, Storage};
use super::store::{Index, LogError, Store, decision_id_of, encode_record};
use super::{MAX_WRITE, RECORD_OVERHEAD};
use crate::checkpoint::Checkpoint;
use crate::decision::Signer;
use crate::merkle::{Hash, ProofError};

/// Most entries one group commit takes.
const MAX_GROUP: usize = 4096;
/// The entries file grows in zero-filled steps of this many bytes.
const PREALLOCATE: u64 = 4 << 20;
/// Default [`GroupCommit::checkpoint_interval`].
pub const DEFAULT_CHECKPOINT_INTERVAL: Duration = Duration::from_secs(1);
/// A group with this many entries syncs without waiting for more: a sync's cost is then
/// about 1 us per entry. A batch of 64 or more reaches it alone.
const GATHER_ENOUGH: usize = 64;
/// A group commit slower than this is logged as a warning, with the time of each step.
const SLOW_COMMIT: Duration = Duration::from_millis(100);
/// Default [`GroupCommit::delay`], in microseconds.
pub const DEFAULT_COMMIT_DELAY_US: u64 = 2000;
/// Default [`GroupCommit::siblings`].
pub const DEFAULT_COMMIT_SIBLINGS: usize = 8;

/// One entry to append: the data and, for decisions, the decision id.
pub struct Entry {
    pub data: bytes::Bytes,
    pub id: Option<u128>,
}

type Reply = oneshot::Sender<Result<u64, LogError>>;

struct Job {
    entries: Vec<Entry>,
    reply: Reply,
}

/// Carries a committed group's answers to a task on the runtime that started the log.
type Dispatch = tokio::sync::mpsc::UnboundedSender<Vec<(Reply, u64)>>;

/// Starts the task that answers committed groups, on the current runtime if there is
/// one.
///
/// Answered from the writer thread, each call's task went to the runtime's shared queue
/// on its own and a worker took it up as soon as it came, so each answer left in a
/// write of its own. Answered from a task on a worker, the whole group's tasks are
/// queued together on that worker, ahead of the connections' tasks they wake, and the
/// answers of a group leave together (with the connections' writes coalesced; see
/// `server::Coalesced`).
fn dispatcher() -> Option<Dispatch> {
    let rt = tokio::runtime::Handle::try_current().ok()?;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Vec<(Reply, u64)>>();
    rt.spawn(async move {
        while let Some(answers) = rx.recv().await {
            for (reply, first) in answers {
                let _ = reply.send(Ok(first));
            }
        }
    });
    Some(tx)
}

/// Counters for metrics and benchmarks.
#[derive(Default)]
pub struct Stats {
    pub syncs: AtomicU64,
    pub sync_nanos: AtomicU64,
    pub entries: AtomicU64,
    pub bytes: AtomicU64,
}

/// The queue between requests and the writer thread.
struct Queue {
    state: Mutex<Waiting>,
    /// Signalled when the writer asked to be woken (`Waiting::wake`).
    ready: Condvar,
}

/// What a new job should do about the writer.
#[derive(Default, Clone, Copy, PartialEq)]
enum Wake {
    /// It is awake (or about to be): leave it.
    #[default]
    No,
    /// It is idle: wake it.
    FirstJob,
    /// It gathers a group: wake it once the group is complete.
    Gathered,
}

#[derive(Default)]
struct Waiting {
    jobs: Vec<Job>,
    /// Entries in `jobs`.
    entries: usize,
    /// While the writer sleeps: what should wake it.
    wake: Wake,
    /// No more jobs are taken: every handle is gone, or the log failed.
    closed: bool,
}

impl Queue {
    fn lock(&self) -> MutexGuard<'_, Waiting> {
        // Nothing panics while holding this lock; a poisoned one is still consistent.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn close(&self) {
        self.lock().closed = true;
        self.ready.notify_all();
    }

    /// Closes the queue and answers every job still in it with `error`.
    fn refuse_all(&self, error: impl Fn() -> LogError) {
        let rest = {
            let mut q = self.lock();
            q.closed = true;
            q.entries = 0;
            std::mem::take(&mut q.jobs)
        };
        for j in rest {
            let _ = j.reply.send(Err(error()));
        }
    }
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

/// How the writer forms groups (see [`Writer::gather`]) and how often it signs a
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

/// The checkpoint history file, appended under its own lock by whoever signs.
struct History {
    file: Arc<dyn LogFile>,
    len: u64,
}

struct Shared {
    /// Calls being served: between [`LogHandle::serving`] and the guard's drop.
    serving: AtomicUsize,
    commit: GroupCommit,
    index: RwLock<Index>,
    reader: Arc<dyn LogFile>,
    signer: Arc<Signer>,
    origin: String,
    poisoned: AtomicBool,
    stats: Stats,
    fs: Arc<dyn Storage>,
    dir: PathBuf,
    /// Held while a checkpoint is signed and stored: one at a time, in order of size.
    history: Mutex<History>,
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

fn read_lock(s: &Shared) -> std::sync::RwLockReadGuard<'_, Index> {
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
        });
        latest(&shared)?;
        let queue = Arc::new(Queue { state: Mutex::new(Waiting::default()), ready: Condvar::new() });
        let (q, s) = (queue.clone(), shared.clone());
        let dispatch = dispatcher();
        let thread = std::thread::Builder::new()
            .name("silkgate-log".into())
            .spawn(move || {
                run(q, file, end, s, dispatch);
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
        latest(&self.shared).map(|_| ())
    }

    /// Counts one call as being served until the guard is dropped (taken by the service
    /// for each Evaluate and EvaluateBatch). The writer reads the count to tell a busy
    /// node, where waiting for a fuller group pays, from a quiet one; see
    /// [`Writer::gather`].
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
        if let Some(e) = entries.iter().find(|e| e.data.len() > super::MAX_ENTRY_BYTES) {
            return Err(LogError::TooLarge(e.data.len()));
        }
        let (reply, rx) = oneshot::channel();
        {
            let queue = &self.feed.0;
            let mut q = queue.lock();
            if q.closed {
                return Err(if self.shared.poisoned.load(Ordering::Acquire) {
                    LogError::Poisoned
                } else {
                    LogError::Stopped
                });
            }
            q.entries += entries.len();
            q.jobs.push(Job { entries, reply });
            // Wake the writer only when it asked for it: at the first job when idle; while
            // it gathers a group, once every call being served has joined (no one else is
            // coming) or the group is full. Other jobs cost no wake-up.
            let wake = match q.wake {
                Wake::No => false,
                Wake::FirstJob => true,
                Wake::Gathered => {
                    q.jobs.len() >= self.shared.serving.load(Ordering::Relaxed) || q.entries >= GATHER_ENOUGH
                }
            };
            if wake {
                q.wake = Wake::No;
                queue.ready.notify_one();
            }
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
        latest(&self.shared)
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
            latest(&self.shared)?;
        }
        Ok(())
    }

    /// An inclusion proof of entry `index` in the tree of `size` entries (0: the latest
    /// checkpoint), with the entry data and, for size 0, that checkpoint.
    pub fn inclusion(&self, index: u64, size: u64) -> Result<Inclusion, LogError> {
        let cp = if size == 0 { Some(latest(&self.shared)?) } else { self.stored(size).map(|()| None)? };
        let size = cp.as_ref().map_or(size, |c| c.1.size);
        if index >= size {
            return Err(LogError::OutOfRange(format!("index: {index} is not below tree size {size}")));
        }
        let proof = {
            let idx = read_lock(&self.shared);
            if size > idx.tree.len() {
                return Err(LogError::Invalid(format!("tree size {size} is larger than the log ({})", idx.tree.len())));
            }
            idx.tree.inclusion_proof(index, size).map_err(|e| proof_error(&self.shared, e))?
        };
        let entry = self.read(index)?;
        Ok(Inclusion { size, proof, entry, checkpoint: cp })
    }

    /// A consistency proof from `size1` to `size2` (0: the latest checkpoint).
    pub fn consistency(&self, size1: u64, size2: u64) -> Result<(u64, Vec<Hash>), LogError> {
        let size2 = if size2 == 0 { latest(&self.shared)?.1.size } else { size2 };
        self.stored(size2)?;
        let idx = read_lock(&self.shared);
        if size1 > size2 || size2 > idx.tree.len() {
            return Err(LogError::Invalid(format!(
                "sizes must satisfy size1 <= size2 <= log size ({}), got {size1} and {size2}",
                idx.tree.len()
            )));
        }
        let proof = idx.tree.consistency_proof(size1, size2).map_err(|e| proof_error(&self.shared, e))?;
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
fn latest(shared: &Shared) -> Result<(String, Checkpoint), LogError> {
    let current = |idx: &Index| idx.checkpoint.clone().filter(|c| c.1.size == idx.tree.len());
    if let Some(cp) = current(&read_lock(shared)) {
        return Ok(cp);
    }
    let mut history = shared.history.lock().unwrap_or_else(|e| e.into_inner());
    // Signing happens outside the index lock, so the writer is never kept waiting.
    let cp = {
        let idx = read_lock(shared);
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
fn proof_error(shared: &Shared, e: ProofError) -> LogError {
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

/// The writer thread's state.
struct Writer {
    queue: Arc<Queue>,
    file: Arc<dyn LogFile>,
    /// Where the records end (the next record goes here).
    end: u64,
    /// Length of the entries file: records, then zero-filled preallocated space.
    allocated: u64,
    shared: Arc<Shared>,
    buf: Vec<u8>,
    /// When the writer last made sure a checkpoint covers the log.
    last_checkpoint: Instant,
    /// See [`dispatcher`].
    dispatch: Option<Dispatch>,
}

fn run(queue: Arc<Queue>, file: Arc<dyn LogFile>, end: u64, shared: Arc<Shared>, dispatch: Option<Dispatch>) {
    let allocated = file.len().unwrap_or(end);
    // However the writer ends, even by a panic, no call waits for it: the queue closes
    // and what is queued is refused.
    let _closer = CloseOnExit(queue.clone(), shared.clone());
    let w = Writer { queue, file, end, allocated, shared, buf: Vec::new(), last_checkpoint: Instant::now(), dispatch };
    w.run();
}

struct CloseOnExit(Arc<Queue>, Arc<Shared>);

impl Drop for CloseOnExit {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.1.poisoned.store(true, Ordering::Release);
        }
        let poisoned = self.1.poisoned.load(Ordering::Acquire);
        self.0.refuse_all(|| if poisoned { LogError::Poisoned } else { LogError::Stopped });
    }
}

impl Writer {
    fn run(mut self) {
        loop {
            let Some(jobs) = self.next_group() else { break };
            if !self.commit(jobs) {
                return;
            }
            if self.last_checkpoint.elapsed() >= self.shared.commit.checkpoint_interval {
                self.checkpoint();
            }
        }
        self.checkpoint();
    }

    /// Makes sure a stored checkpoint covers every entry (see [`latest`]).
    fn checkpoint(&mut self) {
        self.last_checkpoint = Instant::now();
        if let Err(e) = latest(&self.shared) {
            tracing::warn!(error = %e, "could not sign and store a checkpoint");
        }
    }

    /// Waits for the next group of jobs; `None` once the queue is closed and empty.
    /// Rewrites the checkpoint file when idle for [`PERSIST_INTERVAL`].
    fn next_group(&mut self) -> Option<Vec<Job>> {
        let queue = self.queue.clone();
        let mut q = queue.lock();
        while q.jobs.is_empty() {
            if q.closed {
                return None;
            }
            q.wake = Wake::FirstJob;
            let interval = self.shared.commit.checkpoint_interval;
            let (guard, timeout) = queue.ready.wait_timeout(q, interval).unwrap_or_else(|e| e.into_inner());
            q = guard;
            q.wake = Wake::No;
            if timeout.timed_out() && q.jobs.is_empty() {
                drop(q);
                self.checkpoint();
                q = queue.lock();
            }
        }
        q = self.gather(q);
        if q.entries <= MAX_GROUP {
            q.entries = 0;
            return Some(std::mem::take(&mut q.jobs));
        }
        // A very large backlog is written in several groups, oldest first.
        let (mut n, mut take) = (0, 0);
        while take < q.jobs.len() && n < MAX_GROUP {
            n += q.jobs[take].entries.len();
            take += 1;
        }
        q.entries -= n;
        Some(q.jobs.drain(..take).collect())
    }

    /// Group commit with a delay, as databases do it (PostgreSQL's `commit_delay` and
    /// `commit_siblings`): when at least `siblings` calls are being served, wait up to
    /// `delay` for more of them to join the group before syncing, and stop waiting as
    /// soon as every call being served has joined or the group holds [`GATHER_ENOUGH`]
    /// entries. On a quiet node, sync at once.
    ///
    /// A sync costs about 50 us of CPU and two thread switches here whatever its size.
    /// Measured on 2 cores at 64 calls in flight: syncing at once made groups of about 5,
    /// and the log cost about 15 us of CPU per decision; see the README, "Performance".
    fn gather<'a>(&self, mut q: MutexGuard<'a, Waiting>) -> MutexGuard<'a, Waiting> {
        let GroupCommit { delay, siblings, .. } = self.shared.commit;
        let serving = || self.shared.serving.load(Ordering::Relaxed);
        if delay.is_zero() || serving() < siblings.max(2) {
            return q;
        }
        let until = Instant::now() + delay;
        while !q.closed && q.jobs.len() < serving() && q.entries < GATHER_ENOUGH {
            let Some(left) = until.checked_duration_since(Instant::now()) else { break };
            q.wake = Wake::Gathered;
            q = self.queue.ready.wait_timeout(q, left).unwrap_or_else(|e| e.into_inner()).0;
            q.wake = Wake::No;
        }
        q
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
            self.file.write_at(&zeros[..n], at)?;
            at += n as u64;
        }
        // For speed, not durability: with the new length on disk, the commits' own
        // `fdatasync`s flush only data (`fdatasync` alone would keep a record durable).
        self.file.sync_all()?;
        self.allocated = target;
        Ok(())
    }

    /// Answers a committed group's calls: through the runtime's task when it runs, from
    /// this thread when it does not (no runtime, or it has shut down).
    fn answer(&self, answers: Vec<(Reply, u64)>) {
        let answers = match &self.dispatch {
            Some(d) => match d.send(answers) {
                Ok(()) => return,
                Err(e) => e.0,
            },
            None => answers,
        };
        for (reply, first) in answers {
            let _ = reply.send(Ok(first));
        }
    }

    /// Stops the log for good: marks it poisoned, refuses what is queued and `jobs`.
    /// Returns false, for [`Writer::commit`] to return.
    fn refuse(&self, jobs: Vec<Job>) -> bool {
        self.shared.poisoned.store(true, Ordering::Release);
        self.queue.refuse_all(|| LogError::Poisoned);
        for j in jobs {
            let _ = j.reply.send(Err(LogError::Poisoned));
        }
        false
    }

    /// One group commit: the jobs' records in one write, one sync, then the tree and the
    /// answers. Returns false when the log can take no more entries.
    fn commit(&mut self, jobs: Vec<Job>) -> bool {
        if self.shared.poisoned.load(Ordering::Acquire) {
            // A checkpoint could not be stored: the disk is full or failing.
            return self.refuse(jobs);
        }
        let n = jobs.iter().map(|j| j.entries.len()).sum();
        self.buf.clear();
        let mut hashes = Vec::with_capacity(n);
        // Writes of at most MAX_WRITE bytes, cut at record boundaries, each synced before
        // the next: at a crash at most one write is unfinished (see `Store::open_on`).
        let mut writes = Vec::new();
        let mut from = 0;
        for j in &jobs {
            for e in &j.entries {
                let start = self.buf.len();
                hashes.push(encode_record(&e.data, &mut self.buf));
                if self.buf.len() - from > MAX_WRITE as usize && start > from {
                    writes.push(from..start);
                    from = start;
                }
            }
        }
        writes.push(from..self.buf.len());
        let base = self.end;
        let started = Instant::now();
        let mut phases = [Duration::ZERO; 3];
        let mut written = self.preallocate(base + self.buf.len() as u64);
        phases[0] = started.elapsed();
        for w in writes {
            let t = Instant::now();
            written = written.and_then(|()| self.file.write_at(&self.buf[w.clone()], base + w.start as u64));
            phases[1] += t.elapsed();
            let t = Instant::now();
            written = written.and_then(|()| self.file.sync_data());
            phases[2] += t.elapsed();
        }
        if started.elapsed() >= SLOW_COMMIT {
            tracing::warn!(
                entries = n,
                bytes = self.buf.len(),
                preallocate_ms = phases[0].as_millis() as u64,
                write_ms = phases[1].as_millis() as u64,
                sync_ms = phases[2].as_millis() as u64,
                "slow decision log commit: every call in the group waited for it"
            );
        }
        if let Err(e) = written {
            // The file's state is unknown now: stop accepting entries; recovery on the
            // next start truncates whatever was half written.
            tracing::error!(error = %e, "decision log write failed; refusing further decisions");
            return self.refuse(jobs);
        }
        self.end += self.buf.len() as u64;
        let stats = &self.shared.stats;
        stats.syncs.fetch_add(1, Ordering::Relaxed);
        stats.sync_nanos.fetch_add(started.elapsed().as_nanos() as u64, Ordering::Relaxed);
        stats.entries.fetch_add(n as u64, Ordering::Relaxed);
        stats.bytes.fetch_add(self.buf.len() as u64, Ordering::Relaxed);

        let mut firsts = Vec::with_capacity(jobs.len());
        let pushed = {
            let mut idx = self.shared.index.write().unwrap_or_else(|e| e.into_inner());
            let mut offset = base;
            let mut h = hashes.into_iter();
            idx.ids.reserve(n);
            let mut pushed = Ok(());
            'jobs: for j in &jobs {
                firsts.push(idx.tree.len());
                for e in &j.entries {
                    let i = match idx.tree.try_push(h.next().unwrap_or_default()) {
                        Ok(i) => i,
                        Err(e) => {
                            pushed = Err(e);
                            break 'jobs;
                        }
                    };
                    idx.offsets.push(offset);
                    offset += (RECORD_OVERHEAD + e.data.len()) as u64;
                    if let Some(id) = e.id {
                        idx.ids.insert(id, i);
                    }
                }
            }
            pushed
        };
        if let Err(e) = pushed {
            // The entries are on disk, but the tree's node files failed: nothing more
            // can be proven, so nothing more is answered. A restart rebuilds the files.
            tracing::error!(error = %e, "decision log tree files failed; refusing further decisions");
            return self.refuse(jobs);
        }
        self.answer(jobs.into_iter().zip(firsts).map(|(j, first)| (j.reply, first)).collect());
        true
    }
}

#[cfg(test)]
mod tests {
    use ed25519_dalek::SigningKey;

    use super::*;

    fn start(dir: &std::path::Path, commit: GroupCommit) -> LogHandle {
        let signer = Arc::new(Signer::new(SigningKey::from_bytes(&[3; 32])));
        let store = Store::open(dir, "silkgate/writer-test/1", &signer.verifying_key()).unwrap();
        LogHandle::start(store, signer, commit).unwrap()
    }

    fn entry(i: usize) -> Entry {
        Entry { data: format!("entry {i}").into_bytes().into(), id: None }
    }

    /// Guards against a hang only; the calls below finish in milliseconds.
    async fn within_30s<T>(f: impl std::future::Future<Output = T>) -> T {
        tokio::time::timeout(Duration::from_secs(30), f).await.expect("no answer within 30 s")
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_busy_node_waits_for_every_call_being_served_and_syncs_once() {
        let dir = tempfile::tempdir().unwrap();
        // A delay far longer than the test: the group must close because every call
        // being served joined it, not because the delay ran out.
        let log =
            start(dir.path(), GroupCommit { delay: Duration::from_secs(600), siblings: 4, ..GroupCommit::default() });
        let calls: Vec<Serving> = (0..10).map(|_| log.serving()).collect();
        let mut tasks = Vec::new();
        for (i, serving) in calls.into_iter().enumerate() {
            let log = log.clone();
            tasks.push(tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(5 * i as u64)).await;
                let index = log.append(vec![entry(i)]).await.unwrap();
                drop(serving);
                index
            }));
        }
        let mut indexes = Vec::new();
        for t in tasks {
            indexes.push(within_30s(t).await.unwrap());
        }
        indexes.sort();
        assert_eq!(indexes, (0..10).collect::<Vec<u64>>());
        assert_eq!(log.stats().syncs.load(Ordering::Relaxed), 1, "ten calls, one group");
        assert_eq!(log.size(), 10);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_big_enough_group_syncs_without_waiting() {
        let dir = tempfile::tempdir().unwrap();
        let log =
            start(dir.path(), GroupCommit { delay: Duration::from_secs(600), siblings: 2, ..GroupCommit::default() });
        let _others: Vec<Serving> = (0..5).map(|_| log.serving()).collect();
        let batch: Vec<Entry> = (0..GATHER_ENOUGH).map(entry).collect();
        assert_eq!(within_30s(log.append(batch)).await.unwrap(), 0);
        assert_eq!(log.stats().syncs.load(Ordering::Relaxed), 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_quiet_node_syncs_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let log =
            start(dir.path(), GroupCommit { delay: Duration::from_secs(600), siblings: 4, ..GroupCommit::default() });
        for i in 0..3 {
            let _serving = log.serving();
            assert_eq!(within_30s(log.append(vec![entry(i)])).await.unwrap(), i as u64);
        }
        assert_eq!(log.stats().syncs.load(Ordering::Relaxed), 3);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn without_a_delay_every_call_gets_its_own_index_once() {
        let dir = tempfile::tempdir().unwrap();
        let log = start(dir.path(), GroupCommit { delay: Duration::ZERO, siblings: 2, ..GroupCommit::default() });
        let serving: Vec<Serving> = (0..20).map(|_| log.serving()).collect();
        let tasks: Vec<_> = (0..20)
            .map(|i| {
                let log = log.clone();
                tokio::spawn(async move { log.append(vec![entry(i)]).await.unwrap() })
            })
            .collect();
        let mut indexes = Vec::new();
        for t in tasks {
            indexes.push(within_30s(t).await.unwrap());
        }
        drop(serving);
        indexes.sort();
        assert_eq!(indexes, (0..20).collect::<Vec<u64>>(), "every call logged once, no index given twice");
        assert_eq!(log.stats().entries.load(Ordering::Relaxed), 20);
    }

    #[test]
    fn answers_arrive_when_the_runtime_that_started_the_log_is_gone() {
        let dir = tempfile::tempdir().unwrap();
        let first = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let log = first.block_on(async { start(dir.path(), GroupCommit::default()) });
        first.block_on(async { within_30s(log.append(vec![entry(0)])).await.unwrap() });
        drop(first);
        let second = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let index = second.block_on(async { within_30s(log.append(vec![entry(1)])).await.unwrap() });
        assert_eq!(index, 1);
    }

    #[test]
    fn answers_arrive_when_the_log_started_outside_a_runtime() {
        let dir = tempfile::tempdir().unwrap();
        let log = start(dir.path(), GroupCommit::default());
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let index = rt.block_on(async { within_30s(log.append(vec![entry(0)])).await.unwrap() });
        assert_eq!(index, 0);
    }

    /// The size of the checkpoint stored on disk.
    fn stored_size(dir: &std::path::Path) -> u64 {
        let note = std::fs::read_to_string(dir.join("checkpoint")).unwrap();
        note.lines().nth(1).unwrap().parse().unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn proofs_and_entries_leave_only_after_their_size_is_stored() {
        let dir = tempfile::tempdir().unwrap();
        let commit = GroupCommit { checkpoint_interval: Duration::from_secs(3600), ..GroupCommit::default() };
        let log = start(dir.path(), commit);
        within_30s(log.append((0..5).map(entry).collect())).await.unwrap();
        assert_eq!(stored_size(dir.path()), 0, "nothing asked for a checkpoint yet");
        log.inclusion(1, 3).unwrap();
        assert!(stored_size(dir.path()) >= 3, "a proof against size 3 left before size 3 was stored");
        within_30s(log.append(vec![entry(5)])).await.unwrap();
        log.consistency(2, 6).unwrap();
        assert_eq!(stored_size(dir.path()), 6, "a consistency proof to size 6");
        within_30s(log.append(vec![entry(6)])).await.unwrap();
        assert_eq!(log.entries(0, 10).unwrap().len(), 7);
        assert_eq!(stored_size(dir.path()), 7, "entries up to 7 let a client compute that root");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_job_larger_than_a_group_is_written_whole() {
        let dir = tempfile::tempdir().unwrap();
        let log = start(dir.path(), GroupCommit::default());
        let big: Vec<Entry> = (0..MAX_GROUP + 10).map(entry).collect();
        let first = within_30s(log.append(big)).await.unwrap();
        assert_eq!(first, 0);
        let next = within_30s(log.append(vec![entry(0)])).await.unwrap();
        assert_eq!(next, (MAX_GROUP + 10) as u64);
    }
}
