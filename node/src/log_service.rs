//! The `DecisionLog` gRPC service: checkpoints, proofs and entries for auditors.

use tonic::{Request, Response, Status};

use crate::log::{LogError, LogHandle};
use crate::proto::{self, decision_log_server::DecisionLog};
use silkgate_core::checkpoint::Checkpoint;
use silkgate_core::request::echo;

/// Most entries one GetEntries page returns.
pub const MAX_PAGE: u64 = 256;

pub struct DecisionLogService {
    log: LogHandle,
}

impl DecisionLogService {
    pub fn new(log: LogHandle) -> Self {
        DecisionLogService { log }
    }
}

fn checkpoint(note: String, cp: &Checkpoint) -> proto::Checkpoint {
    proto::Checkpoint { note, origin: cp.origin.clone(), size: cp.size, root_hash: cp.root.to_vec() }
}

fn status(e: LogError) -> Status {
    match e {
        LogError::NotFound(m) => Status::not_found(m),
        LogError::OutOfRange(m) => Status::out_of_range(m),
        LogError::Invalid(m) => Status::invalid_argument(m),
        e @ (LogError::Io { .. } | LogError::Poisoned | LogError::Stopped) => Status::unavailable(e.to_string()),
        e => Status::internal(e.to_string()),
    }
}

/// Runs `f` on the log off the async workers: it reads files, and signing a checkpoint
/// syncs one to disk.
async fn blocking<T: Send + 'static>(
    log: &LogHandle,
    f: impl FnOnce(&LogHandle) -> Result<T, LogError> + Send + 'static,
) -> Result<T, Status> {
    let log = log.clone();
    match tokio::task::spawn_blocking(move || f(&log)).await {
        Ok(r) => r.map_err(status),
        Err(e) => Err(Status::internal(format!("log task failed: {e}"))),
    }
}

#[tonic::async_trait]
impl DecisionLog for DecisionLogService {
    async fn get_checkpoint(
        &self,
        _: Request<proto::GetCheckpointRequest>,
    ) -> Result<Response<proto::Checkpoint>, Status> {
        let (note, cp) = blocking(&self.log, |l| l.checkpoint()).await?;
        Ok(Response::new(checkpoint(note, &cp)))
    }

    async fn get_inclusion_proof(
        &self,
        request: Request<proto::GetInclusionProofRequest>,
    ) -> Result<Response<proto::InclusionProof>, Status> {
        let r = request.into_inner();
        let tree_size = r.tree_size;
        let (index, inc) = match r.target {
            Some(proto::get_inclusion_proof_request::Target::Index(i)) => {
                (i, blocking(&self.log, move |l| l.inclusion(i, tree_size)).await?)
            }
            Some(proto::get_inclusion_proof_request::Target::DecisionId(id)) => {
                blocking(&self.log, move |l| {
                    let i = l.index_of(&id)?.ok_or_else(|| {
                        LogError::NotFound(format!("decision_id: `{}` is not in this log", echo(&id)))
                    })?;
                    Ok((i, l.inclusion(i, tree_size)?))
                })
                .await?
            }
            None => return Err(Status::invalid_argument("target: give index or decision_id")),
        };
        Ok(Response::new(proto::InclusionProof {
            index,
            tree_size: inc.size,
            hashes: inc.proof.iter().map(|h| h.to_vec()).collect(),
            entry: inc.entry,
            checkpoint: inc.checkpoint.map(|(note, cp)| checkpoint(note, &cp)),
        }))
    }

    async fn get_consistency_proof(
        &self,
        request: Request<proto::GetConsistencyProofRequest>,
    ) -> Result<Response<proto::ConsistencyProof>, Status> {
        let r = request.into_inner();
        if r.size1 == 0 {
            return Err(Status::invalid_argument(
                "size1: must be at least 1 (every tree is consistent with the empty one)",
            ));
        }
        let (size1, size2) = (r.size1, r.size2);
        let (size2, hashes) = blocking(&self.log, move |l| l.consistency(size1, size2)).await?;
        Ok(Response::new(proto::ConsistencyProof {
            size1: r.size1,
            size2,
            hashes: hashes.iter().map(|h| h.to_vec()).collect(),
        }))
    }

    async fn get_entries(
        &self,
        request: Request<proto::GetEntriesRequest>,
    ) -> Result<Response<proto::GetEntriesResponse>, Status> {
        let r = request.into_inner();
        let count = match u64::from(r.count) {
            0 => MAX_PAGE,
            n => n.min(MAX_PAGE),
        };
        let size = self.log.size();
        if r.start > size {
            return Err(Status::out_of_range(format!("start: {} is past the end of the log ({size})", r.start)));
        }
        let start = r.start;
        let entries = blocking(&self.log, move |l| l.entries(start, count)).await?;
        let next = r.start + entries.len() as u64;
        Ok(Response::new(proto::GetEntriesResponse {
            entries: entries.into_iter().map(|(index, data)| proto::LogEntry { index, data }).collect(),
            next,
        }))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use silkgate_core::decision::Signer;
    use silkgate_core::request::MAX_ECHO_CHARS;

    async fn not_found(service: &DecisionLogService, id: String) -> String {
        let target = Some(proto::get_inclusion_proof_request::Target::DecisionId(id));
        let request = Request::new(proto::GetInclusionProofRequest { target, tree_size: 0 });
        let e = service.get_inclusion_proof(request).await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::NotFound, "{}", e.message());
        e.message().to_string()
    }

    /// An unknown decision id is repeated in the error up to [`MAX_ECHO_CHARS`]
    /// characters, and cut with an ellipsis past that (a 1 MB id once made megabytes of
    /// error metadata).
    #[tokio::test]
    async fn an_unknown_decision_id_is_echoed_up_to_the_bound() {
        let dir = tempfile::tempdir().unwrap();
        let signer = Arc::new(Signer::new(ed25519_dalek::SigningKey::from_bytes(&[7; 32])));
        let service = DecisionLogService::new(crate::log::open(dir.path(), "node-test", signer).unwrap());

        let at = "a".repeat(MAX_ECHO_CHARS);
        assert_eq!(not_found(&service, at.clone()).await, format!("decision_id: `{at}` is not in this log"));
        let past = "a".repeat(MAX_ECHO_CHARS + 1);
        assert_eq!(not_found(&service, past).await, format!("decision_id: `{at}…` is not in this log"));
        let huge = not_found(&service, "\u{1}".repeat(1 << 20)).await;
        assert!(huge.len() < 2 * MAX_ECHO_CHARS, "{} bytes", huge.len());
    }
}
