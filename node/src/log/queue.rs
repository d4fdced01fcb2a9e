//! The queue between the calls that append and the writer thread, and when a call
//! wakes the writer.
//!
//! Calls put their entries in the queue (a mutex and a condvar) and wait on a oneshot.
//! The writer sleeps until the first job of an idle period, or, while it gathers a
//! group on a busy node, until the group is complete (see `writer::Writer::gather`).

use std::sync::{Condvar, Mutex, MutexGuard};

use tokio::sync::oneshot;

use super::store::LogError;

/// A group with this many entries syncs without waiting for more: a sync's cost is then
/// about 1 us per entry. A batch of 64 or more reaches it alone.
pub(super) const GATHER_ENOUGH: usize = 64;

/// One entry to append: the data and, for decisions, the decision id.
pub struct Entry {
    pub data: bytes::Bytes,
    pub id: Option<u128>,
}

pub(super) type Reply = oneshot::Sender<Result<u64, LogError>>;

pub(super) struct Job {
    pub(super) entries: Vec<Entry>,
    pub(super) reply: Reply,
}

/// The queue between requests and the writer thread.
pub(super) struct Queue {
    pub(super) state: Mutex<Waiting>,
    /// Signalled when the writer asked to be woken (`Waiting::wake`).
    pub(super) ready: Condvar,
}

/// What a new job should do about the writer.
#[derive(Default, Clone, Copy, PartialEq)]
pub(super) enum Wake {
    /// It is awake (or about to be): leave it.
    #[default]
    No,
    /// It is idle: wake it.
    FirstJob,
    /// It gathers a group: wake it once the group is complete.
    Gathered,
}

#[derive(Default)]
pub(super) struct Waiting {
    pub(super) jobs: Vec<Job>,
    /// Entries in `jobs`.
    pub(super) entries: usize,
    /// While the writer sleeps: what should wake it.
    pub(super) wake: Wake,
    /// No more jobs are taken: every handle is gone, or the log failed.
    pub(super) closed: bool,
}

impl Queue {
    pub(super) fn new() -> Queue {
        Queue { state: Mutex::new(Waiting::default()), ready: Condvar::new() }
    }

    /// Queues a job, or gives it back when the queue is closed. `serving` is the number
    /// of calls being served (read only while the writer gathers a group).
    ///
    /// The writer is woken only when it asked for it: at the first job when idle; while
    /// it gathers a group, once every call being served has joined (no one else is
    /// coming) or the group is full. Other jobs cost no wake-up.
    pub(super) fn push(&self, job: Job, serving: impl Fn() -> usize) -> Result<(), Job> {
        let mut q = self.lock();
        if q.closed {
            return Err(job);
        }
        q.entries += job.entries.len();
        q.jobs.push(job);
        let wake = match q.wake {
            Wake::No => false,
            Wake::FirstJob => true,
            Wake::Gathered => q.jobs.len() >= serving() || q.entries >= GATHER_ENOUGH,
        };
        if wake {
            q.wake = Wake::No;
            self.ready.notify_one();
        }
        Ok(())
    }
    pub(super) fn lock(&self) -> MutexGuard<'_, Waiting> {
        // Nothing panics while holding this lock; a poisoned one is still consistent.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn close(&self) {
        self.lock().closed = true;
        self.ready.notify_all();
    }

    /// Closes the queue and answers every job still in it with `error`.
    pub(super) fn refuse_all(&self, error: impl Fn() -> LogError) {
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
