//! `fill-log`: builds a large, real decision log quickly, for measuring a node on it.
//!
//! The entries are what a node logs: the load generator's mix of deployment requests
//! (the same pool as `silkgate-loadgen`), evaluated with the shipped policies through
//! the silkgate library, built and signed as `service.rs` does (UUIDv7 decision ids,
//! Ed25519 over the DSSE PAE, the node's key), and appended through silkgate's own
//! `LogHandle` in groups. So the files in `DATA_DIR/log` are exactly what a node writes,
//! and `silkgate serve --data-dir DATA_DIR` recovers and extends them. The node itself
//! has no shortcut for this: the tool only calls its public library.
//!
//! Signing runs on `--threads` threads; the log's writer thread hashes, writes and syncs
//! each group, as it does in a node.
//!
//! Key and node id follow `silkgate serve`: the key is `DATA_DIR/node.key` (created if
//! absent) unless `--key` is given, and the node id is `node-` and the first 12 hex
//! digits of the key id unless `--node-id` is given. Pass the same `--key` and
//! `--node-id` to `serve`.

// The load generator's request mix, shared as a file: a bin cannot reach the modules
// of `main.rs`.
#[path = "../pool.rs"]
mod pool;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::sync_channel;
use std::time::Instant;

use anyhow::{Context as _, bail};
use clap::Parser;
use prost::Message;
use sha2::{Digest, Sha256};
use silkgate::log::Entry;
use silkgate_core::decision::{self, Signer};
use silkgate_core::policy::Policy;
use silkgate_core::request::Request;

/// Creates or extends a node's decision log with realistic signed decisions.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// Data directory, as for `silkgate serve`: the log goes in DATA_DIR/log.
    #[arg(long)]
    data_dir: PathBuf,
    /// Size the log should reach (entries already there count).
    #[arg(long)]
    entries: u64,
    /// Signing key file (PKCS#8 PEM) [default: DATA_DIR/node.key, created if absent].
    #[arg(long)]
    key: Option<PathBuf>,
    /// Node id written into decisions and the log origin [default: from the key id, as
    /// `silkgate serve` derives it].
    #[arg(long)]
    node_id: Option<String>,
    /// Policy directory.
    #[arg(long, default_value = "policy")]
    policy_dir: PathBuf,
    /// Jurisdictions to decide for (comma-separated) [default: every policy found].
    #[arg(long, value_delimiter = ',')]
    jurisdictions: Option<Vec<String>>,
    /// Entries appended per group commit.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=4096))]
    batch: u64,
    /// Threads that evaluate and sign [default: the number of cores].
    #[arg(long)]
    threads: Option<usize>,
    /// Distinct requests in the pool cycled through (as `silkgate-loadgen --pool-size`).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pool_size: u32,
    /// Seed of the pool's variations.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// How long a decision stays valid evidence, in seconds (as `serve`).
    #[arg(long, default_value_t = 86_400)]
    decision_validity_secs: i64,
}

fn main() -> std::process::ExitCode {
    match run(Args::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fill-log: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// One request of the pool, decoded once: what a node has in hand after decoding.
struct Item {
    policy: Arc<Policy>,
    request: Request,
    /// SHA-256 of the request bytes as a client sends them.
    sha256: [u8; 32],
}

fn run(args: Args) -> anyhow::Result<()> {
    let policies = silkgate::loader::load_dir(&args.policy_dir, args.jurisdictions.as_deref())
        .map_err(|e| anyhow::anyhow!("{e}"))
        .with_context(|| format!("policies in `{}`", args.policy_dir.display()))?;
    let jurisdictions: Vec<String> = policies.policies.keys().cloned().collect();
    if jurisdictions.is_empty() {
        bail!("no policies in `{}`", args.policy_dir.display());
    }
    let key_path = args.key.clone().unwrap_or_else(|| args.data_dir.join("node.key"));
    let key = silkgate::keys::load_or_create(&key_path)?;
    let node_id = args.node_id.clone().unwrap_or_else(|| format!("node-{}", &key.signer.key_id()[..12]));
    if !silkgate::log::valid_node_id(&node_id) {
        bail!("--node-id: `{node_id}` must be 1 to 64 characters of A-Z, a-z, 0-9, `-`, `_` and `.`");
    }
    let signer = Arc::new(key.signer);

    let mut items = Vec::new();
    for e in pool::build(args.pool_size as usize, args.seed, &jurisdictions)? {
        let Some(policy) = policies.get(&e.jurisdiction) else { bail!("no policy for `{}`", e.jurisdiction) };
        let Some(req) = e.request else { bail!("pool request without a request") };
        let sha256 = Sha256::digest(req.encode_to_vec()).into();
        let request = Request::try_from(req).map_err(|e| anyhow::anyhow!("pool request: {}: {}", e.field, e.reason))?;
        items.push(Item { policy: policy.clone(), request, sha256 });
    }

    let opened = Instant::now();
    let log = silkgate::log::open(&args.data_dir, &node_id, signer.clone())?;
    let start = log.size();
    println!(
        "log {} (origin {}): {start} entries, opened in {:.1} s; key {} ({}); node id {node_id}",
        args.data_dir.join("log").display(),
        log.origin(),
        opened.elapsed().as_secs_f64(),
        signer.key_id(),
        key_path.display(),
    );
    if start >= args.entries {
        println!("already at least {} entries; nothing to add", args.entries);
        return log.close().context("closing the log");
    }
    let want = args.entries - start;
    let threads = args.threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get())).max(1);
    println!("adding {want} entries in groups of {}, signing on {threads} threads", args.batch);

    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().context("runtime")?;
    let next = AtomicU64::new(0);
    let (tx, rx) = sync_channel::<Vec<Entry>>(threads * 2);
    let began = Instant::now();
    let result = std::thread::scope(|s| -> anyhow::Result<(u64, u64)> {
        for _ in 0..threads {
            let tx = tx.clone();
            let (items, next, signer, node_id) = (&items, &next, &signer, node_id.as_str());
            let (batch, validity) = (args.batch, args.decision_validity_secs);
            s.spawn(move || {
                loop {
                    let from = next.fetch_add(batch, Ordering::Relaxed);
                    if from >= want {
                        return;
                    }
                    let n = batch.min(want - from);
                    let group =
                        (from..from + n).map(|i| decide(&items[i as usize % items.len()], signer, node_id, validity));
                    if tx.send(group.collect()).is_err() {
                        return;
                    }
                }
            });
        }
        drop(tx);
        let (mut done, mut bytes, mut shown) = (0u64, 0u64, Instant::now());
        // On an error the receiver is dropped here, and the signing threads stop.
        for group in rx {
            bytes += group.iter().map(|e| e.data.len() as u64).sum::<u64>();
            done += group.len() as u64;
            rt.block_on(log.append(group)).context("append")?;
            if shown.elapsed().as_secs() >= 5 || done == want {
                shown = Instant::now();
                let secs = began.elapsed().as_secs_f64();
                println!(
                    "{:>10} entries ({done}/{want} added) in {secs:.1} s: {:.0} entries/s, {:.1} MiB/s of decisions",
                    start + done,
                    done as f64 / secs,
                    bytes as f64 / secs / (1 << 20) as f64
                );
            }
        }
        Ok((done, bytes))
    });
    let (done, bytes) = result?;
    log.close().context("closing the log")?;
    let secs = began.elapsed().as_secs_f64();
    let (_, cp) = log.checkpoint()?;
    println!(
        "done: {} entries (added {done} in {secs:.1} s, {:.0} entries/s; mean SignedDecision {} bytes); checkpoint size {} root {}",
        log.size(),
        done as f64 / secs,
        bytes / done.max(1),
        cp.size,
        hex(&cp.root)
    );
    println!(
        "serve it with: silkgate serve --data-dir {} --key {} --node-id {node_id}",
        args.data_dir.display(),
        key_path.display()
    );
    Ok(())
}

/// Evaluates one request and signs the decision, as the node's `Compliance::decide`
/// does; returns the log entry (the encoded `SignedDecision` with its decision id).
fn decide(item: &Item, signer: &Signer, node_id: &str, validity_secs: i64) -> Entry {
    let now = silkgate_core::time::UnixTime::now();
    let outcome = item.policy.evaluate(&item.request, now.day());
    let uuid = uuid::Uuid::now_v7();
    let ctx = decision::Context {
        decision_id: uuid.to_string(),
        node_id,
        request_sha256: item.sha256,
        request_id: &item.request.request_id,
        issued_at: now,
        validity_secs,
    };
    let d = decision::build(&item.policy, &outcome, &ctx, signer.key_id());
    let signed = decision::sign(&d, signer);
    Entry { data: signed.encode_to_vec().into(), id: Some(uuid.as_u128()) }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
