//! Sends a committed group's answers from one task on the service's runtime.

use super::queue::Reply;

/// Carries a committed group's answers to a task on the runtime that started the log.
pub(super) type Dispatch = tokio::sync::mpsc::UnboundedSender<Vec<(Reply, u64)>>;

/// Starts the task that answers committed groups, on the current runtime if there is
/// one.
///
/// Answered from the writer thread, each call's task went to the runtime's shared queue
/// on its own and a worker took it up as soon as it came, so each answer left in a
/// write of its own. Answered from a task on a worker, the whole group's tasks are
/// queued together on that worker, ahead of the connections' tasks they wake, and the
/// answers of a group leave together (with the connections' writes coalesced; see
/// `server::Coalesced`).
pub(super) fn dispatcher() -> Option<Dispatch> {
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

/// Answers a committed group's calls: through the runtime's task when it runs, from the
/// calling thread when it does not (no runtime, or it has shut down).
pub(super) fn answer(dispatch: Option<&Dispatch>, answers: Vec<(Reply, u64)>) {
    let answers = match dispatch {
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
