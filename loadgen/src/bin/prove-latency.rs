//! `prove-latency`: the latency of `DecisionLog.GetInclusionProof` for random entries,
//! one call at a time, as an auditor asking for old evidence sees it.
//!
//! Asks for the latest checkpoint, then makes `--calls` calls for random indexes below
//! `--below` (default: the checkpoint's size), each against the latest checkpoint
//! (`tree_size` 0) or, with `--fixed-size`, against the checkpoint's size. Every proof
//! is checked against the checkpoint's root after the calls, outside the timing.
//! Prints p50, p90, p99, p99.9 and max of the client-side latency.

use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::Parser;
use hdrhistogram::Histogram;
use silkgate::proto::decision_log_client::DecisionLogClient;
use silkgate::proto::get_inclusion_proof_request::Target;
use silkgate::proto::{GetCheckpointRequest, GetInclusionProofRequest, InclusionProof};
use silkgate_core::merkle::{self, Hash};
use tonic::transport::Endpoint;

/// Measures inclusion proof latency against a running node (loopback only).
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// Target node.
    #[arg(long, default_value = "http://127.0.0.1:50051")]
    target: String,
    /// Calls measured (one at a time).
    #[arg(long, default_value_t = 10_000)]
    calls: u64,
    /// Calls made first and not measured.
    #[arg(long, default_value_t = 200)]
    warmup: u64,
    /// Indexes are drawn uniformly below this [default: the checkpoint's size].
    #[arg(long)]
    below: Option<u64>,
    /// Prove against the checkpoint's size instead of the latest (`tree_size` 0).
    #[arg(long)]
    fixed_size: bool,
    /// Seed of the index sequence.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

fn main() -> std::process::ExitCode {
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("prove-latency: runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(Args::parse())) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("prove-latency: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    let endpoint = Endpoint::from_shared(args.target.clone()).with_context(|| format!("--target `{}`", args.target))?;
    let host = endpoint.uri().host().unwrap_or("").trim_start_matches('[').trim_end_matches(']').to_string();
    if host != "localhost" && !host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback()) {
        bail!("--target `{}`: only loopback targets are allowed", args.target);
    }
    let channel = endpoint.tcp_nodelay(true).connect().await.with_context(|| format!("connect `{}`", args.target))?;
    let mut client = DecisionLogClient::new(channel);
    let cp = client.get_checkpoint(GetCheckpointRequest {}).await.context("GetCheckpoint")?.into_inner();
    let root: Hash = cp.root_hash.as_slice().try_into().context("checkpoint root is not 32 bytes")?;
    let below = args.below.unwrap_or(cp.size).min(cp.size);
    if below == 0 {
        bail!("the log is empty");
    }
    let tree_size = if args.fixed_size { cp.size } else { 0 };
    println!(
        "{}: checkpoint size {}; {} calls for random indexes below {below}, tree_size {tree_size}",
        args.target, cp.size, args.calls
    );

    let mut rng = args.seed;
    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).context("histogram")?;
    // Kept to check after the timed loop: a proof that is fast but wrong would not count.
    let mut proofs: Vec<InclusionProof> = Vec::with_capacity(args.calls as usize);
    let began = Instant::now();
    for n in 0..args.warmup + args.calls {
        let index = splitmix(&mut rng) % below;
        let req = GetInclusionProofRequest { target: Some(Target::Index(index)), tree_size };
        let t = Instant::now();
        let proof = client.get_inclusion_proof(req).await.with_context(|| format!("index {index}"))?.into_inner();
        let took = t.elapsed();
        if n >= args.warmup {
            hist.record(took.as_micros().max(1) as u64).context("record")?;
            proofs.push(proof);
        }
    }
    let wall = began.elapsed();

    let mut checked = 0;
    for p in &proofs {
        // With tree_size 0 a proof is against the latest checkpoint, which it carries (the
        // log may have grown since the first); otherwise against the first checkpoint.
        let (size, root) = match &p.checkpoint {
            Some(c) => (c.size, c.root_hash.as_slice().try_into().context("checkpoint root")?),
            None => (cp.size, root),
        };
        let path: Vec<Hash> =
            p.hashes.iter().map(|h| h.as_slice().try_into()).collect::<Result<_, _>>().context("proof hash")?;
        merkle::verify_inclusion(&merkle::leaf_hash(&p.entry), p.index, size, &path, &root)
            .map_err(|e| anyhow::anyhow!("proof for index {} does not verify: {e}", p.index))?;
        checked += 1;
    }
    let q = |p: f64| Duration::from_micros(hist.value_at_quantile(p));
    println!(
        "{} calls in {:.2} s; latency p50 {:?}, p90 {:?}, p99 {:?}, p99.9 {:?}, max {:?}; {checked} proofs verified",
        args.calls,
        wall.as_secs_f64(),
        q(0.5),
        q(0.9),
        q(0.99),
        q(0.999),
        Duration::from_micros(hist.max())
    );
    Ok(())
}

/// SplitMix64, seeded: a reproducible sequence of indexes.
fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}
