//! The reference server: a bare tonic `Compliance` service that signs one Ed25519
//! signature per decision and does nothing else.
//!
//! It answers with responses of the real shape (a DSSE envelope around a payload as large
//! as the target's real decisions, one signature, a key id), so the gap between it and the
//! target is what silkgate adds on top of "gRPC plus one signature": request decoding and
//! validation, policy evaluation, building the decision, the decision log, and tracing.
//! It runs on its own multi-thread runtime (threads named [`cpu::REFERENCE_THREADS`]) so
//! its CPU time can be read apart from the load client's.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Context as _;
use ed25519_dalek::{Signer as _, SigningKey};
use silkgate::proto::compliance_server::{Compliance, ComplianceServer};
use silkgate::proto::{
    BatchResult, EvaluateBatchRequest, EvaluateBatchResponse, EvaluateRequest, EvaluateResponse, NodeInfoRequest,
    NodeInfoResponse, Signature, SignedDecision, batch_result,
};
use silkgate_core::decision::{PAYLOAD_TYPE, key_id, pae};
use tokio::sync::oneshot;
use tokio_stream::StreamExt as _;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::{Request, Response, Status};

use crate::cpu;

/// A running reference server; [`Reference::stop`] ends it.
pub struct Reference {
    pub addr: SocketAddr,
    runtime: tokio::runtime::Runtime,
    stop: oneshot::Sender<()>,
}

impl Reference {
    pub fn stop(self) {
        let _ = self.stop.send(());
        // Called from inside the client's runtime, where blocking on a drop is not allowed.
        self.runtime.shutdown_background();
    }
}

/// Starts the reference server on 127.0.0.1:0 with `threads` runtime workers, signing
/// payloads of `payload_len` bytes. `info` is what its NodeInfo answers.
pub async fn start(threads: usize, payload_len: usize, info: NodeInfoResponse) -> anyhow::Result<Reference> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .thread_name(cpu::REFERENCE_THREADS)
        .enable_all()
        .build()
        .context("reference server runtime")?;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("reference server: bind 127.0.0.1:0")?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;

    // A fixed key: the reference only measures the cost of signing, its decisions are worthless.
    let key = SigningKey::from_bytes(&[7; 32]);
    let service = Service {
        key_id: key_id(&key.verifying_key()),
        key,
        template: (0..payload_len).map(|i| (i * 131 % 251) as u8).collect(),
        counter: AtomicU64::new(0),
        info,
    };
    let server = ComplianceServer::new(service).max_decoding_message_size(64 << 20);
    let (stop, stopped) = oneshot::channel::<()>();
    let (ready_tx, ready) = oneshot::channel();
    runtime.spawn(async move {
        let listener = match tokio::net::TcpListener::from_std(listener) {
            Ok(l) => l,
            Err(e) => {
                let _ = ready_tx.send(Err(e));
                return;
            }
        };
        let _ = ready_tx.send(Ok(()));
        let shutdown = async {
            let _ = stopped.await;
        };
        // Nagle off on accepted connections, as silkgate's server does: small answers must
        // not wait for delayed ACKs.
        let incoming = TcpListenerStream::new(listener).map(|s| {
            let s = s?;
            s.set_nodelay(true)?;
            Ok::<_, std::io::Error>(s)
        });
        if let Err(e) = tonic::transport::Server::builder()
            .add_service(server)
            .serve_with_incoming_shutdown(incoming, shutdown)
            .await
        {
            eprintln!("reference server: {e}");
        }
    });
    ready.await.context("reference server did not start")?.context("reference server listener")?;
    Ok(Reference { addr, runtime, stop })
}

struct Service {
    key: SigningKey,
    key_id: String,
    /// Payload bytes as large as a real decision; each response stamps its own counter in.
    template: Vec<u8>,
    counter: AtomicU64,
    info: NodeInfoResponse,
}

impl Service {
    /// One signed response: a fresh payload, its PAE, one Ed25519 signature.
    fn sign_one(&self) -> EvaluateResponse {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let mut payload = self.template.clone();
        let stamp = n.to_le_bytes();
        let len = payload.len().min(stamp.len());
        payload[..len].copy_from_slice(&stamp[..len]);
        let sig = self.key.sign(&pae(PAYLOAD_TYPE, &payload)).to_bytes();
        EvaluateResponse {
            decision: Some(SignedDecision {
                payload,
                payload_type: PAYLOAD_TYPE.to_string(),
                signatures: vec![Signature { sig: sig.to_vec(), keyid: self.key_id.clone() }],
            }),
            log_index: n,
            explanation: Vec::new(),
            decision_id: String::new(),
        }
    }
}

#[tonic::async_trait]
impl Compliance for Service {
    async fn evaluate(&self, _request: Request<EvaluateRequest>) -> Result<Response<EvaluateResponse>, Status> {
        Ok(Response::new(self.sign_one()))
    }

    async fn evaluate_batch(
        &self,
        request: Request<EvaluateBatchRequest>,
    ) -> Result<Response<EvaluateBatchResponse>, Status> {
        let results = request
            .into_inner()
            .items
            .iter()
            .map(|_| BatchResult { result: Some(batch_result::Result::Ok(self.sign_one())) })
            .collect();
        Ok(Response::new(EvaluateBatchResponse { results }))
    }

    async fn node_info(&self, _request: Request<NodeInfoRequest>) -> Result<Response<NodeInfoResponse>, Status> {
        Ok(Response::new(self.info.clone()))
    }
}
