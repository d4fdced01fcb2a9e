//! Runs the gRPC server on an already bound listener until `shutdown` resolves.
//!
//! Taking the listener (not an address) lets tests bind `127.0.0.1:0` and read the port.

use std::future::Future;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::TcpListenerStream;

use crate::log_service::DecisionLogService;
use crate::proto::decision_log_server::DecisionLogServer;
use crate::proto::server::compliance_server::ComplianceServer;
use crate::service::{ComplianceService, NodeState};

/// Largest request message accepted, in bytes.
pub const MAX_MESSAGE_BYTES: usize = 4 << 20;

pub async fn run(
    listener: TcpListener,
    state: Arc<NodeState>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), tonic::transport::Error> {
    let log = state.log.clone().map(|l| DecisionLogServer::new(DecisionLogService::new(l)));
    let service = ComplianceServer::new(ComplianceService::new(state)).max_decoding_message_size(MAX_MESSAGE_BYTES);
    tonic::transport::Server::builder()
        .add_service(service)
        .add_optional_service(log)
        .serve_with_incoming_shutdown(incoming(listener), shutdown)
        .await
}

/// Accepted connections with Nagle's algorithm off: small gRPC answers must not wait
/// for delayed ACKs (40 ms stalls on sequential calls otherwise).
fn incoming(listener: TcpListener) -> impl tokio_stream::Stream<Item = std::io::Result<tokio::net::TcpStream>> {
    TcpListenerStream::new(listener).map(|s| {
        let s = s?;
        s.set_nodelay(true)?;
        Ok(s)
    })
}
