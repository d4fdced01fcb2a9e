//! `silkgate verify FILE`: check a signed decision offline or against a node's keys.

use std::path::PathBuf;

use ed25519_dalek::VerifyingKey;
use prost::Message;
use silkgate::proto;
use silkgate_core::decision;
use silkgate_core::time::UnixTime;

use super::{EXIT_NEGATIVE, fail};

#[derive(clap::Args)]
pub struct Args {
    /// Signed decision: a DSSE JSON envelope, or a binary SignedDecision protobuf.
    file: PathBuf,
    /// Trusted public key: 64 hex characters, a verifier key string, or a file holding
    /// either or a PEM public key.
    #[arg(long, conflicts_with = "node")]
    public_key: Option<String>,
    /// Fetch the trusted keys from a running node's NodeInfo, e.g. http://127.0.0.1:50051.
    #[arg(long)]
    node: Option<String>,
    /// Also reject decisions past their not_after time.
    #[arg(long)]
    check_expiry: bool,
}

async fn node_keys(url: &str) -> Result<Vec<VerifyingKey>, String> {
    let mut client = proto::compliance_client::ComplianceClient::connect(url.to_string())
        .await
        .map_err(|e| format!("connect {url}: {e}"))?;
    let info = client.node_info(proto::NodeInfoRequest {}).await.map_err(|e| format!("NodeInfo: {e}"))?.into_inner();
    info.keys
        .iter()
        .map(|k| {
            let arr: [u8; 32] =
                k.public_key.as_slice().try_into().map_err(|_| "node key is not 32 bytes".to_string())?;
            VerifyingKey::from_bytes(&arr).map_err(|e| e.to_string())
        })
        .collect()
}

pub fn run(args: Args) -> u8 {
    let raw = match std::fs::read(&args.file) {
        Ok(r) => r,
        Err(e) => return fail(format!("{}: {e}", args.file.display())),
    };
    let env = match std::str::from_utf8(&raw).ok().filter(|t| t.trim_start().starts_with('{')) {
        Some(text) => decision::from_dsse_json(text),
        None => proto::SignedDecision::decode(raw.as_slice()).map_err(|e| format!("not a SignedDecision: {e}")),
    };
    let env = match env {
        Ok(e) => e,
        Err(e) => return fail(format!("{}: {e}", args.file.display())),
    };
    let keys = match (&args.public_key, &args.node) {
        // A decision names no log origin, so a verifier key's origin is not checked.
        (Some(k), _) => super::key::PublicKey::parse(k).map(|k| vec![k.key]),
        (None, Some(url)) => match tokio::runtime::Builder::new_current_thread().enable_all().build() {
            Ok(rt) => rt.block_on(node_keys(url)),
            Err(e) => Err(e.to_string()),
        },
        (None, None) => Err("give --public-key or --node".to_string()),
    };
    let keys = match keys {
        Ok(k) => k,
        Err(e) => return fail(e),
    };
    let now = args.check_expiry.then(UnixTime::now);
    match decision::verify(&env, &keys, now) {
        Ok(d) => {
            println!("valid: signed by {}", d.key_id);
            println!("{}", serde_json::to_string_pretty(&decision::decision_json(&d)).unwrap_or_default());
            0
        }
        Err(e) => {
            println!("invalid: {e}");
            EXIT_NEGATIVE
        }
    }
}
