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
    /// CA that issued the node's certificate (PEM), for an https:// address.
    #[arg(long, env = "SILKGATE_HEALTH_CA")]
    ca: Option<std::path::PathBuf>,
    /// Client certificate and key (PEM) when the node requires mutual TLS.
    #[arg(long, env = "SILKGATE_HEALTH_CERT", requires = "key")]
    cert: Option<std::path::PathBuf>,
    #[arg(long, env = "SILKGATE_HEALTH_KEY", requires = "cert")]
    key: Option<std::path::PathBuf>,
    /// Server name to expect in the node's certificate [default: the address's host].
    #[arg(long)]
    server_name: Option<String>,
}

fn endpoint(args: &Args) -> Result<tonic::transport::Endpoint, String> {
    use tonic::transport::{Certificate, ClientTlsConfig, Identity};
    let mut ep = tonic::transport::Endpoint::from_shared(args.addr.clone()).map_err(|e| format!("--addr: {e}"))?;
    if args.addr.starts_with("https://") {
        let mut tls = ClientTlsConfig::new();
        if let Some(ca) = &args.ca {
            let pem = std::fs::read(ca).map_err(|e| format!("--ca: {}: {e}", ca.display()))?;
            tls = tls.ca_certificate(Certificate::from_pem(pem));
        }
        if let (Some(c), Some(k)) = (&args.cert, &args.key) {
            let cert = std::fs::read(c).map_err(|e| format!("--cert: {}: {e}", c.display()))?;
            let key = std::fs::read(k).map_err(|e| format!("--key: {}: {e}", k.display()))?;
            tls = tls.identity(Identity::from_pem(cert, key));
        }
        if let Some(name) = &args.server_name {
            tls = tls.domain_name(name.clone());
        }
        ep = ep.tls_config(tls).map_err(|e| format!("tls: {e}"))?;
    }
    Ok(ep)
}

pub fn run(args: Args) -> u8 {
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => return fail(e),
    };
    let timeout = std::time::Duration::from_millis(args.timeout_ms);
    let result = rt.block_on(async {
        tokio::time::timeout(timeout, async {
            let channel = endpoint(&args)?.connect().await.map_err(|e| format!("connect {}: {e}", args.addr))?;
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
