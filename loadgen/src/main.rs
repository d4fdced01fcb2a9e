//! `silkgate-loadgen`: drives a silkgate node's `Compliance` API and reports throughput,
//! latency, errors and server CPU per request; optionally (`--reference`) the same load
//! against two baselines with the node's own transport tuning, each in its own process:
//! bare tonic plus one Ed25519 signature per decision (the fair reference), and bare
//! tonic alone. They run in alternating rounds (`--rounds`) so that all three see the
//! same drift of the machine's speed.
//!
//! # Layout
//! - [`pool`]: the realistic mix of deployment requests sent;
//! - [`drive`]: the load itself: connections, in-flight requests, the measured window;
//! - [`reference`]: starts and stops the baseline servers (`src/bin/silkgate-reference.rs`);
//! - [`cpu`]: CPU time read from `/proc`, for a process or for named threads;
//! - [`attack`]: floods, slow connections and clients that never read, run against the
//!   node while the load is measured (`--attack`);
//! - [`report`]: the text and JSON output.

mod attack;
mod cpu;
mod drive;
mod pool;
mod reference;
mod report;

use std::net::IpAddr;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::Parser;
use silkgate::proto::compliance_client::ComplianceClient;
use silkgate::proto::{EvaluateRequest, NodeInfoRequest, NodeInfoResponse};
use tonic::transport::{Channel, Endpoint};

use crate::drive::{Load, Mode};
use crate::reference::Kind;
use crate::report::Header;

/// Load generator for silkgate's `Compliance` gRPC API (loopback targets only).
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// Target node, e.g. http://127.0.0.1:50051 (loopback addresses only).
    #[arg(long, env = "SILKGATE_LOADGEN_TARGET", default_value = "http://127.0.0.1:50051")]
    target: String,
    /// `unary` (Evaluate) or `batch` (EvaluateBatch).
    #[arg(long, value_enum, default_value_t = Mode::Unary)]
    mode: Mode,
    /// Separate HTTP/2 connections (one tonic Channel each).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=256))]
    connections: u32,
    /// Concurrent calls, spread over the connections.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    in_flight: u32,
    /// Seconds measured, after the warmup.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    duration: u64,
    /// Seconds of load before measuring.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(0..=600))]
    warmup: u64,
    /// Items per EvaluateBatch call (batch mode).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=1000))]
    batch_size: u32,
    /// Distinct requests in the pool the load cycles through.
    #[arg(long, default_value_t = 300, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pool_size: u32,
    /// Seed of the pool's pseudo-random variations.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Jurisdictions to send (comma-separated); default every one the target's NodeInfo reports.
    #[arg(long, value_delimiter = ',')]
    jurisdictions: Option<Vec<String>>,
    /// Pid of the target server: reports its CPU time per request over the measured window.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Also run the same load against two baselines, each in its own process with the
    /// node's allocator, runtime and connection tuning: tonic plus one Ed25519 signature
    /// per decision (`signed`, the fair reference) and tonic alone (`bare`); compare.
    #[arg(long)]
    reference: bool,
    /// With --reference: alternate target, signed and bare this many times, each time for
    /// DURATION/ROUNDS seconds after its own warmup, and report the totals. All then see
    /// the same drift in the machine's speed, which on a shared VM moves figures by 10%
    /// from one minute to the next.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=100))]
    rounds: u64,
    /// Worker threads of each baseline server's runtime (the node's runtime has one per
    /// core).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=64))]
    reference_threads: u32,
    /// Worker threads of the load client's runtime.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=64))]
    client_threads: u32,
    /// Per-call timeout in seconds; a call that takes longer counts as DeadlineExceeded.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=600))]
    timeout: u64,
    /// Print one JSON object per run instead of text.
    #[arg(long)]
    json: bool,
    /// Attack the target while measuring: ROUNDS rounds, each the load alone and then
    /// the load during the attack, DURATION/ROUNDS seconds each after their own warmup.
    #[arg(long, value_enum, conflicts_with = "reference")]
    attack: Option<attack::Kind>,
    /// Attack strength: flood callers [default: 10240, 10 x the node's default
    /// --max-concurrency], slow connections [default: 2000] or no-read connections
    /// [default: 16].
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    attack_count: Option<u64>,
    /// HTTP/2 connections the flood's callers share.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    attack_connections: u64,
    /// Local address of the attacker's sockets (a loopback address, e.g. 127.0.0.2).
    #[arg(long)]
    attack_from: Option<IpAddr>,
    /// Worker threads of the attacker's runtime.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=64))]
    attack_threads: u32,
    /// Seconds an attack runs before its measured window's warmup starts.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(0..=600))]
    attack_ramp: u64,
    /// Seconds of quiet after an attack stops, before the next window.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(0..=600))]
    attack_settle: u64,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match check_loopback(&args.target).and_then(|()| start(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // `{:#}` joins the context chain with colons, without a backtrace.
            eprintln!("silkgate-loadgen: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn start(args: Args) -> anyhow::Result<()> {
    let client_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.client_threads as usize)
        .thread_name(cpu::CLIENT_THREADS)
        .enable_all()
        .build()
        .context("client runtime")?;
    client_rt.block_on(run(args))
}

async fn run(args: Args) -> anyhow::Result<()> {
    let timeout = Duration::from_secs(args.timeout);
    let probe = connect(&args.target, timeout).await?;
    let info = node_info(&probe).await?;
    let jurisdictions = pick_jurisdictions(&info, args.jurisdictions.as_deref())?;
    let pool = pool::build(args.pool_size as usize, args.seed, &jurisdictions)?;
    let payload = measure_payload(&probe, &pool).await?;

    let load = Load {
        mode: args.mode,
        connections: args.connections as usize,
        in_flight: args.in_flight as usize,
        warmup: Duration::from_secs(args.warmup),
        duration: Duration::from_secs(args.duration),
        batch_size: args.batch_size as usize,
        timeout,
    };
    let header = Header {
        target: args.target.clone(),
        node_id: info.node_id.clone(),
        build_version: info.build_version.clone(),
        jurisdictions: jurisdictions.clone(),
        pool_size: pool.len(),
        seed: args.seed,
        payload: payload.clone(),
        client_threads: args.client_threads,
        reference_threads: args.reference.then_some(args.reference_threads),
    };
    if !args.json {
        report::print_header(&header, &load);
    }

    let channels = connect_all(&args.target, load.connections, timeout).await?;
    if let Some(kind) = args.attack {
        let plan = attack::Plan {
            kind,
            count: args.attack_count.map_or(kind.default_count(), |n| n as usize),
            connections: args.attack_connections as usize,
            from: args.attack_from,
            threads: args.attack_threads as usize,
            ramp: Duration::from_secs(args.attack_ramp),
            settle: Duration::from_secs(args.attack_settle),
        };
        let round_load = Load { duration: load.duration / args.rounds as u32, ..load.clone() };
        let addr = attack::socket_addr(&args.target)?;
        return attack::run(&plan, addr, &round_load, args.rounds, &channels, &pool, args.server_pid, args.json).await;
    }
    let server_cpu = args.server_pid.map(cpu::Source::Process);
    let whose = args.server_pid.map_or(String::new(), |pid| format!("pid {pid}"));
    if !args.reference {
        let target = drive::run(&load, &channels, &pool, server_cpu).await;
        report::print_run("target", &args.target, &whose, &load, &header, &target, args.json);
        return Ok(());
    }

    // Each baseline in a process of its own, started once; idle while the others run.
    let mut servers = Vec::new();
    for kind in [Kind::Signed, Kind::Bare] {
        let server = reference::start(kind, args.reference_threads as usize, payload.mean).await?;
        let url = format!("http://{}", server.addr);
        let channels = connect_all(&url, load.connections, timeout).await?;
        servers.push((server, url, channels));
    }
    let round_load = Load { duration: load.duration / args.rounds as u32, ..load.clone() };
    let mut totals: [Option<drive::Outcome>; 3] = [None, None, None];
    for round in 1..=args.rounds {
        let mut outcomes: [Option<drive::Outcome>; 3] = [None, None, None];
        for which in round_order(round) {
            let outcome = match which {
                0 => drive::run(&round_load, &channels, &pool, server_cpu).await,
                _ => {
                    let (server, _, ref_channels) = &servers[which - 1];
                    drive::run(&round_load, ref_channels, &pool, Some(cpu::Source::Process(server.pid))).await
                }
            };
            outcomes[which] = Some(outcome);
        }
        let [Some(t), Some(r), Some(b)] = outcomes else { unreachable!("every server ran in the round") };
        if args.rounds > 1 {
            report::print_round(round, &t, &r, &b, args.json);
        }
        for (total, o) in totals.iter_mut().zip([t, r, b]) {
            match total {
                None => *total = Some(o),
                Some(sum) => sum.merge(o),
            }
        }
    }
    let [Some(target), Some(signed), Some(bare)] = totals else { unreachable!("at least one round") };
    report::print_run("target", &args.target, &whose, &load, &header, &target, args.json);
    for ((server, url, channels), outcome) in servers.into_iter().zip([&signed, &bare]) {
        drop(channels);
        let whose = format!("pid {}, silkgate-reference --kind {}", server.pid, server.kind.as_str());
        report::print_run(
            &format!("reference {}", server.kind.as_str()),
            &url,
            &whose,
            &load,
            &header,
            outcome,
            args.json,
        );
        server.stop().await;
    }
    report::print_comparison(("target", &target), ("signed", &signed), args.json);
    report::print_comparison(("target", &target), ("bare", &bare), args.json);
    report::print_comparison(("signed", &signed), ("bare", &bare), args.json);
    Ok(())
}

/// The order in which round `round` (from 1) runs the target (0), signed (1) and bare
/// (2): each round starts one further along, so that none is always the first after the
/// others' load, or always the last.
fn round_order(round: u64) -> [usize; 3] {
    let first = ((round - 1) % 3) as usize;
    [first, (first + 1) % 3, (first + 2) % 3]
}

/// Refuses anything but a loopback target: this tool is for benchmarking one host.
fn check_loopback(target: &str) -> anyhow::Result<()> {
    let endpoint = Endpoint::from_shared(target.to_string()).with_context(|| format!("--target `{target}`"))?;
    let host = endpoint.uri().host().unwrap_or("");
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let loopback = host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
    if !loopback {
        bail!("--target `{target}`: only loopback targets (127.0.0.1, ::1, localhost) are allowed");
    }
    Ok(())
}

async fn connect(target: &str, timeout: Duration) -> anyhow::Result<Channel> {
    Endpoint::from_shared(target.to_string())
        .with_context(|| format!("--target `{target}`"))?
        .connect_timeout(Duration::from_secs(5))
        .timeout(timeout)
        .tcp_nodelay(true)
        .connect()
        .await
        .with_context(|| format!("cannot connect to `{target}`"))
}

/// One channel per connection: `Endpoint::connect` opens a separate HTTP/2 connection each time.
async fn connect_all(target: &str, n: usize, timeout: Duration) -> anyhow::Result<Vec<Channel>> {
    let mut channels = Vec::with_capacity(n);
    for _ in 0..n {
        channels.push(connect(target, timeout).await?);
    }
    Ok(channels)
}

async fn node_info(channel: &Channel) -> anyhow::Result<NodeInfoResponse> {
    let mut client = ComplianceClient::new(channel.clone());
    let info = client.node_info(NodeInfoRequest {}).await.context("NodeInfo")?.into_inner();
    Ok(info)
}

fn pick_jurisdictions(info: &NodeInfoResponse, only: Option<&[String]>) -> anyhow::Result<Vec<String>> {
    let offered: Vec<String> = info.jurisdictions.iter().map(|j| j.jurisdiction.clone()).collect();
    let picked = match only {
        None => offered.clone(),
        Some(only) => {
            for j in only {
                if !offered.contains(j) {
                    bail!("--jurisdictions: the target has no policy for `{j}` (it enforces: {})", offered.join(", "));
                }
            }
            only.to_vec()
        }
    };
    if picked.is_empty() {
        bail!("the target's NodeInfo reports no jurisdictions");
    }
    Ok(picked)
}

/// Sizes of real decision payloads, for the reference server to sign payloads as large.
#[derive(Clone, Debug)]
pub struct PayloadSize {
    pub samples: usize,
    pub mean: usize,
    pub min: usize,
    pub max: usize,
}

/// Evaluates a sample of the pool once and measures the signed payloads.
async fn measure_payload(channel: &Channel, pool: &[EvaluateRequest]) -> anyhow::Result<PayloadSize> {
    let mut client = ComplianceClient::new(channel.clone());
    let mut sizes = Vec::new();
    let mut first_error = None;
    for item in pool.iter().take(64) {
        match client.evaluate(item.clone()).await {
            Ok(resp) => {
                if let Some(d) = resp.into_inner().decision {
                    sizes.push(d.payload.len());
                }
            }
            Err(status) => {
                first_error.get_or_insert(status);
            }
        }
    }
    if sizes.is_empty() {
        match first_error {
            Some(s) => bail!("no decision from the target: {:?}: {}", s.code(), s.message()),
            None => bail!("no decision from the target: responses carried no decision"),
        }
    }
    Ok(PayloadSize {
        samples: sizes.len(),
        mean: sizes.iter().sum::<usize>() / sizes.len(),
        min: sizes.iter().copied().min().unwrap_or(0),
        max: sizes.iter().copied().max().unwrap_or(0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounds_rotate_which_server_runs_first() {
        assert_eq!(round_order(1), [0, 1, 2]);
        assert_eq!(round_order(2), [1, 2, 0]);
        assert_eq!(round_order(3), [2, 0, 1]);
        assert_eq!(round_order(4), round_order(1));
    }
}
