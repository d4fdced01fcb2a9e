//! `silkgate health`: ask a node's grpc.health.v1 service; a container probe.

use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

use super::{EXIT_NEGATIVE, fail};

#[derive(clap::Args)]
pub struct Args {
    /// Node address.
    #[arg(long, env = "SILKGATE_HEALTH_ADDR", default_value = "http://127.0.0.1:50051")]
    addr: String,
    /// Service to ask about; empty means the whole node.
    #[arg(long, default_value = "")]
    service: String,
    /// Give up after this many milliseconds.
    #[arg(long, default_value_t = 3000)]
    timeout_ms: u64,
}

pub fn run(args: Args) -> u8 {
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => return fail(e),
    };
    let timeout = std::time::Duration::from_millis(args.timeout_ms);
    let result = rt.block_on(async {
        tokio::time::timeout(timeout, async {
            let channel = tonic::transport::Endpoint::from_shared(args.addr.clone())
                .map_err(|e| format!("--addr: {e}"))?
                .connect()
                .await
                .map_err(|e| format!("connect {}: {e}", args.addr))?;
            let mut c = HealthClient::new(channel);
            let r = c
                .check(HealthCheckRequest { service: args.service.clone() })
                .await
                .map_err(|e| format!("check: {}", e.message()))?;
            Ok::<_, String>(r.into_inner().status)
        })
        .await
        .map_err(|_| format!("no answer from {} within {} ms", args.addr, args.timeout_ms))?
    });
    match result {
        Ok(s) if s == ServingStatus::Serving as i32 => {
            println!("SERVING");
            0
        }
        Ok(s) => {
            println!("{}", ServingStatus::try_from(s).map(|s| s.as_str_name()).unwrap_or("UNKNOWN"));
            EXIT_NEGATIVE
        }
        Err(e) => fail(e),
    }
}
