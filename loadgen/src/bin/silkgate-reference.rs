//! `silkgate-reference`: a baseline server for the load generator, in a process of its
//! own, with the node's transport tuning.
//!
//! Two kinds (`--kind`), both a bare tonic `Compliance` service that answers every
//! Evaluate with a decision of the real shape (a DSSE envelope around a payload as large
//! as the target's decisions, one signature, a key id) and does nothing else:
//! - `signed`, the fair reference: one Ed25519 signature over the payload's PAE per
//!   answer. The gap between the node and it is what silkgate adds on top of "gRPC plus
//!   one signature": request validation, policy evaluation, building the decision, the
//!   decision log, tracing, the call limits;
//! - `bare`: the same answers, byte for byte as large, with the signature left as 64
//!   zero bytes instead of computed: tonic alone.
//!
//! The tuning is silkgate's own, taken from `silkgate::server` rather than copied: the
//! allocator (mimalloc), the runtime (no LIFO slot), the per-connection bounds and the
//! accepted connections (Nagle off, handshake deadline, coalesced writes). What the node
//! adds per call (its admission permits, the `grpc-message` cap) is left out: that is
//! part of what is measured.
//!
//! Once bound it prints `listening ADDR` on stdout; it stops when its standard input
//! closes, so it never outlives the load generator that started it and holds its stdin.

use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Context as _;
use clap::Parser;
use ed25519_dalek::{Signer as _, SigningKey};
use silkgate::proto::compliance_server::{Compliance, ComplianceServer};
use silkgate::proto::{
    BatchResult, EvaluateBatchRequest, EvaluateBatchResponse, EvaluateRequest, EvaluateResponse, NodeInfoRequest,
    NodeInfoResponse, Signature, SignedDecision, batch_result,
};
use silkgate::server::{self, ConnectionLimits};
use silkgate_core::decision::{PAYLOAD_TYPE, key_id, pae};
use tokio::net::TcpListener;
use tonic::{Request, Response, Status};

/// The node's allocator (see `silkgate::server::Allocator`).
#[global_allocator]
static ALLOCATOR: server::Allocator = server::Allocator;

/// A baseline `Compliance` server for silkgate-loadgen (`--reference`).
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// `signed` (one Ed25519 signature per answer) or `bare` (no signature computed).
    #[arg(long, value_enum)]
    kind: Kind,
    /// Size of each answer's decision payload, in bytes.
    #[arg(long, value_parser = clap::value_parser!(u32).range(0..=1 << 20))]
    payload_bytes: u32,
    /// Worker threads of the runtime.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=64))]
    threads: u32,
    /// Address to listen on (loopback).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Kind {
    Signed,
    Bare,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let runtime = server::runtime().worker_threads(args.threads as usize).build().context("runtime")?;
    runtime.block_on(async {
        let listener = TcpListener::bind(args.listen).await.with_context(|| format!("bind {}", args.listen))?;
        let mut out = std::io::stdout().lock();
        writeln!(out, "listening {}", listener.local_addr()?)?;
        out.flush()?;
        drop(out);
        run(listener, Service::new(args.kind, args.payload_bytes as usize), stdin_closed()).await
    })
}

/// Serves `service` on `listener` as the node serves, until `shutdown` resolves.
async fn run(
    listener: TcpListener,
    service: Service,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let limits = ConnectionLimits::default();
    let compliance = ComplianceServer::new(service).max_decoding_message_size(server::MAX_MESSAGE_BYTES);
    let router = server::builder(&limits).add_service(compliance);
    // The node's bounds on connections too (refusals are not counted: no metrics here).
    let connections =
        silkgate::limits::Connections::new(limits.max_connections, limits.max_connections_per_client, None);
    server::serve(router, listener, limits.handshake_timeout, connections, None, shutdown).await.context("serve")
}

/// Resolves when standard input reaches its end (or fails).
async fn stdin_closed() {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut std::io::stdin().lock(), &mut std::io::sink());
        let _ = tx.send(());
    });
    let _ = rx.await;
}

struct Service {
    kind: Kind,
    key: SigningKey,
    key_id: String,
    /// Payload bytes as large as a real decision; each answer stamps its own counter in.
    template: Vec<u8>,
    counter: AtomicU64,
}

impl Service {
    fn new(kind: Kind, payload_len: usize) -> Self {
        // A fixed key: the reference only measures the cost of signing, its decisions are worthless.
        let key = SigningKey::from_bytes(&[7; 32]);
        Service {
            kind,
            key_id: key_id(&key.verifying_key()),
            key,
            template: (0..payload_len).map(|i| (i * 131 % 251) as u8).collect(),
            counter: AtomicU64::new(0),
        }
    }

    /// One answer: a fresh payload and, for `signed`, its PAE and one Ed25519 signature.
    fn answer(&self) -> EvaluateResponse {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let mut payload = self.template.clone();
        let stamp = n.to_le_bytes();
        let len = payload.len().min(stamp.len());
        payload[..len].copy_from_slice(&stamp[..len]);
        let sig = match self.kind {
            Kind::Signed => self.key.sign(&pae(PAYLOAD_TYPE, &payload)).to_bytes(),
            Kind::Bare => [0; 64],
        };
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
        Ok(Response::new(self.answer()))
    }

    async fn evaluate_batch(
        &self,
        request: Request<EvaluateBatchRequest>,
    ) -> Result<Response<EvaluateBatchResponse>, Status> {
        let results = request
            .into_inner()
            .items
            .iter()
            .map(|_| BatchResult { result: Some(batch_result::Result::Ok(self.answer())) })
            .collect();
        Ok(Response::new(EvaluateBatchResponse { results }))
    }

    /// Says which kind of baseline answers, so a caller can check it reached the right one.
    async fn node_info(&self, _request: Request<NodeInfoRequest>) -> Result<Response<NodeInfoResponse>, Status> {
        let kind = match self.kind {
            Kind::Signed => "signed",
            Kind::Bare => "bare",
        };
        Ok(Response::new(NodeInfoResponse {
            node_id: format!("silkgate-reference-{kind}"),
            build_version: silkgate::BUILD_VERSION.to_string(),
            ..NodeInfoResponse::default()
        }))
    }
}

#[cfg(test)]
mod tests {
    use ed25519_dalek::Verifier as _;
    use prost::Message as _;
    use silkgate::proto::compliance_client::ComplianceClient;

    use super::*;

    /// Starts a server of `kind` on the tuned runtime's connections and returns a client
    /// and the way to stop it.
    async fn start(kind: Kind, payload_len: usize) -> (ComplianceClient<tonic::transport::Channel>, impl FnOnce()) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(run(listener, Service::new(kind, payload_len), async {
            let _ = stopped.await;
        }));
        let client = ComplianceClient::connect(format!("http://{addr}")).await.unwrap();
        (client, move || {
            let _ = stop.send(());
            drop(server);
        })
    }

    #[tokio::test]
    async fn signed_answers_verify_and_bare_ones_are_as_large_unsigned() {
        let (mut signed, stop_signed) = start(Kind::Signed, 600).await;
        let (mut bare, stop_bare) = start(Kind::Bare, 600).await;
        let key = SigningKey::from_bytes(&[7; 32]).verifying_key();

        let mut sizes = Vec::new();
        for client in [&mut signed, &mut bare] {
            let answer = client.evaluate(EvaluateRequest::default()).await.unwrap().into_inner();
            sizes.push(answer.encoded_len());
            let d = answer.decision.unwrap();
            assert_eq!(d.payload.len(), 600);
            assert_eq!(d.payload_type, PAYLOAD_TYPE);
            assert_eq!(d.signatures.len(), 1);
            assert_eq!(d.signatures[0].keyid, key_id(&key));
            assert_eq!(d.signatures[0].sig.len(), 64);
            let sig = ed25519_dalek::Signature::from_slice(&d.signatures[0].sig).unwrap();
            let verified = key.verify(&pae(PAYLOAD_TYPE, &d.payload), &sig).is_ok();
            let info = client.node_info(NodeInfoRequest {}).await.unwrap().into_inner();
            match info.node_id.as_str() {
                "silkgate-reference-signed" => assert!(verified, "a signed answer verifies"),
                "silkgate-reference-bare" => {
                    assert!(!verified);
                    assert_eq!(d.signatures[0].sig, [0; 64], "no signature computed");
                }
                other => panic!("node id {other}"),
            }
        }
        assert_eq!(sizes[0], sizes[1], "both kinds answer with as many bytes");

        // Each answer stamps its own counter into the payload, so no two are the same.
        let a = signed.evaluate(EvaluateRequest::default()).await.unwrap().into_inner();
        let b = signed.evaluate(EvaluateRequest::default()).await.unwrap().into_inner();
        assert_ne!(a.decision.unwrap().payload, b.decision.unwrap().payload);
        let batch = bare.evaluate_batch(EvaluateBatchRequest { items: vec![EvaluateRequest::default(); 3] }).await;
        assert_eq!(batch.unwrap().into_inner().results.len(), 3);
        stop_signed();
        stop_bare();
    }
}
