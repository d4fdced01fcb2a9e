//! Group commit: one thread appends and syncs; calls wait for their sync.
//!
//! The writer takes every job waiting in the [`queue`](super::queue), writes their
//! records in writes of at most 2 MiB each followed by `fdatasync`, then adds the leaves
//! to the tree and answers every job (see [`dispatch`](super::dispatch)). The tree holds
//! only synced entries, so checkpoints signed over it cover only durable entries.
//!
//! Under load the writer also waits a little for a group to fill before syncing (see
//! [`Writer::gather`]): each sync costs about 50 us of CPU and two thread switches
//! whatever its size, so on a busy node bigger groups leave more CPU for requests.

use std::sync::Arc;
use std::sync::MutexGuard;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::dispatch::{self, Dispatch};
use super::handle::{GroupCommit, Shared};
use super::queue::{GATHER_ENOUGH, Job, Queue, Waiting, Wake};
use super::storage::LogFile;
use super::store::{LogError, encode_record};
use super::{MAX_WRITE, RECORD_OVERHEAD, checkpoints};

/// Most entries one group commit takes.
const MAX_GROUP: usize = 4096;
/// The entries file grows in zero-filled steps of this many bytes.
const PREALLOCATE: u64 = 4 << 20;
/// A group commit slower than this is logged as a warning, with the time of each step.
const SLOW_COMMIT: Duration = Duration::from_millis(100);

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
    /// See [`dispatch::dispatcher`].
    dispatch: Option<Dispatch>,
}

pub(super) fn run(
    queue: Arc<Queue>,
    file: Arc<dyn LogFile>,
    end: u64,
    shared: Arc<Shared>,
    dispatch: Option<Dispatch>,
) {
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

    /// Makes sure a stored checkpoint covers every entry (see [`checkpoints::latest`]).
    fn checkpoint(&mut self) {
        self.last_checkpoint = Instant::now();
        if let Err(e) = checkpoints::latest(&self.shared) {
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
        dispatch::answer(
            self.dispatch.as_ref(),
            jobs.into_iter().zip(firsts).map(|(j, first)| (j.reply, first)).collect(),
        );
        true
    }
}

#[cfg(test)]
mod tests {
    use ed25519_dalek::SigningKey;
    use silkgate_core::decision::Signer;

    use super::*;
    use crate::log::{Entry, LogHandle, Serving, Store};

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
