//! `silkgate serve`: load everything, then bind and answer until SIGTERM or SIGINT.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use arc_swap::ArcSwap;
use silkgate::service::NodeState;
use silkgate::{keys, loader, server};

use super::{EXIT_INVALID, fail};

#[derive(clap::Args)]
pub struct Args {
    /// Address to listen on.
    #[arg(long, env = "SILKGATE_LISTEN", default_value = "127.0.0.1:50051")]
    listen: SocketAddr,
    /// Policy directory.
    #[arg(long, env = "SILKGATE_POLICY_DIR", default_value = "policy")]
    policy_dir: PathBuf,
    /// Data directory: the signing key and the decision log live here.
    #[arg(long, env = "SILKGATE_DATA_DIR", default_value = "data")]
    data_dir: PathBuf,
    /// Signing key file (PKCS#8 PEM); default DATA_DIR/node.key, created if absent.
    #[arg(long, env = "SILKGATE_KEY")]
    key: Option<PathBuf>,
    /// Jurisdictions this node enforces (comma-separated); default every policy found.
    #[arg(long, env = "SILKGATE_JURISDICTIONS", value_delimiter = ',')]
    jurisdictions: Option<Vec<String>>,
    /// Node id written into decisions; default derived from the key id.
    #[arg(long, env = "SILKGATE_NODE_ID")]
    node_id: Option<String>,
    /// How long a decision stays valid evidence, in seconds.
    #[arg(long, env = "SILKGATE_DECISION_VALIDITY_SECS", default_value_t = 86_400)]
    decision_validity_secs: i64,
    /// Run without the decision log (benchmarks only: decisions are then not kept as evidence).
    #[arg(long, env = "SILKGATE_NO_LOG")]
    no_log: bool,
    /// Log format: text or json.
    #[arg(long, env = "SILKGATE_LOG_FORMAT", default_value = "text")]
    log_format: String,
}

fn init_logging(format: &str) -> Result<(), String> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        "text" => builder.try_init(),
        "json" => builder.json().flatten_event(true).try_init(),
        other => return Err(format!("--log-format: `{other}` is not `text` or `json`")),
    }
    .map_err(|e| e.to_string())
}

pub fn run(args: Args) -> u8 {
    if let Err(e) = init_logging(&args.log_format) {
        return fail(e);
    }
    if args.decision_validity_secs <= 0 {
        return fail("--decision-validity-secs must be positive");
    }
    // Everything is loaded and checked before a port is bound.
    let policies = match loader::load_dir(&args.policy_dir, args.jurisdictions.as_deref()) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("{e}");
            return EXIT_INVALID;
        }
    };
    let key_path = args.key.clone().unwrap_or_else(|| args.data_dir.join("node.key"));
    let key = match keys::load_or_create(&key_path) {
        Ok(k) => k,
        Err(e) => return fail(e),
    };
    if key.created {
        tracing::info!(key.id = %key.signer.key_id(), key.path = %key_path.display(), "created a new signing key");
    }
    let node_id = args.node_id.clone().unwrap_or_else(|| format!("node-{}", &key.signer.key_id()[..12]));
    if !silkgate::log::valid_node_id(&node_id) {
        return fail(format!("--node-id: `{node_id}` must be 1 to 64 characters of A-Z, a-z, 0-9, `-`, `_` and `.`"));
    }
    let signer = Arc::new(key.signer);
    let log = if args.no_log {
        tracing::warn!("running without a decision log: decisions are not kept as evidence");
        None
    } else {
        match silkgate::log::open(&args.data_dir, &node_id, signer.clone()) {
            Ok(l) => Some(l),
            Err(e) => return fail(e),
        }
    };
    for p in policies.policies.values() {
        tracing::info!(
            jurisdiction = %p.jurisdiction,
            policy.id = %p.id,
            policy.version = %p.version,
            policy.digest = %hex::encode(p.digest),
            rules = p.rules.len(),
            "policy loaded"
        );
    }
    let state = Arc::new(NodeState {
        node_id,
        policies: ArcSwap::from_pointee(policies),
        key_valid_from: key.valid_from,
        signer,
        validity_secs: args.decision_validity_secs,
        log,
    });
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => return fail(e),
    };
    rt.block_on(async move {
        let listener = match tokio::net::TcpListener::bind(args.listen).await {
            Ok(l) => l,
            Err(e) => return fail(format!("bind {}: {e}", args.listen)),
        };
        let addr = listener.local_addr().map(|a| a.to_string()).unwrap_or_default();
        tracing::info!(
            listen = %addr,
            node.id = %state.node_id,
            key.id = %state.signer.key_id(),
            "silkgate serving"
        );
        match server::run(listener, state, shutdown_signal()).await {
            Ok(()) => {
                tracing::info!("stopped");
                0
            }
            Err(e) => fail(e),
        }
    })
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutdown signal received, draining");
}
