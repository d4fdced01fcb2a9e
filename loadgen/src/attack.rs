//! Attacks on the node while the well-behaved load is measured: a flood of extra callers,
//! slow or stalled connections, and clients that never read their answers.
//!
//! [`run`] alternates rounds: the well-behaved load alone, then the same load while an
//! attack runs (started on a runtime of its own, given time to reach full strength,
//! and torn down after the window by shutting that runtime down, which closes every
//! socket it holds). Each round prints both latencies side by side and the node's
//! resident memory (`VmRSS`, sampled every 100 ms, and `VmHWM`) during each window.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use serde_json::json;
use silkgate::proto::EvaluateRequest;
use silkgate::proto::compliance_client::ComplianceClient;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tonic::transport::{Channel, Endpoint};

use crate::drive::{self, Load, Outcome};

/// What the attacker does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Kind {
    /// Extra well-formed Evaluate callers, closed loop, retrying at once when refused.
    Flood,
    /// Connections that stall: half a preface, a preface then silence, or one byte a second.
    Slow,
    /// HTTP/2 connections that open as many Evaluate streams as allowed with a receive
    /// window of 0, so no answer can be sent to them, and never read.
    NoRead,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Flood => "flood",
            Kind::Slow => "slow",
            Kind::NoRead => "no-read",
        }
    }

    /// The default strength: callers for a flood (10 x the node's default
    /// `--max-concurrency` of 1024), connections otherwise.
    pub fn default_count(self) -> usize {
        match self {
            Kind::Flood => 10 * 1024,
            Kind::Slow => 2000,
            Kind::NoRead => 16,
        }
    }
}

/// The attack's shape.
#[derive(Clone, Debug)]
pub struct Plan {
    pub kind: Kind,
    /// Flood: callers; slow and no-read: connections.
    pub count: usize,
    /// Flood only: the HTTP/2 connections the callers share.
    pub connections: usize,
    /// Local address the attacker's sockets are bound to (any 127.x.y.z works on
    /// Linux), so that the node can tell the attacker from the well-behaved client.
    pub from: Option<IpAddr>,
    /// Worker threads of the attacker's runtime.
    pub threads: usize,
    /// Seconds the attack runs before the measured load starts.
    pub ramp: Duration,
    /// Seconds of quiet after an attack stops, before the next window.
    pub settle: Duration,
}

/// Counters the attack's tasks update; a snapshot is printed after each attacked window.
#[derive(Default)]
pub struct Stats {
    /// Connections opened (slow, no-read) or calls made (flood).
    opened: AtomicU64,
    /// Connections the node closed (slow, no-read).
    closed: AtomicU64,
    /// Connections open now (slow, no-read).
    open: AtomicU64,
    /// Connections that could not be opened.
    connect_failed: AtomicU64,
    /// Flood: calls answered with a decision. No-read: streams whose answer headers
    /// arrived with no status, their answer blocked by the window of 0.
    answered: AtomicU64,
    /// Calls or streams refused with RESOURCE_EXHAUSTED.
    refused: AtomicU64,
    /// Calls or streams that failed otherwise (or were reset).
    failed: AtomicU64,
}

impl Stats {
    fn add(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }

    fn snapshot(&self) -> serde_json::Value {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        json!({
            "opened": g(&self.opened),
            "closed_by_node": g(&self.closed),
            "open": g(&self.open),
            "connect_failed": g(&self.connect_failed),
            "answered_or_held": g(&self.answered),
            "refused": g(&self.refused),
            "failed": g(&self.failed),
        })
    }
}

/// A running attack: its runtime, and the counters its tasks update.
pub struct Running {
    rt: tokio::runtime::Runtime,
    pub stats: Arc<Stats>,
}

impl Running {
    /// Stops every task and closes every socket of the attack.
    pub fn stop(self) {
        self.rt.shutdown_background();
    }
}

/// Starts `plan` against `addr` on a runtime of its own (so attack tasks do not queue
/// with the measured callers), with requests from `pool`.
pub fn start(plan: &Plan, addr: SocketAddr, pool: Arc<[EvaluateRequest]>) -> anyhow::Result<Running> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(plan.threads)
        .thread_name("sg-attack")
        .enable_all()
        .build()?;
    let stats = Arc::new(Stats::default());
    let from = plan.from;
    for i in 0..match plan.kind {
        Kind::Flood => plan.connections.min(plan.count).max(1),
        _ => plan.count,
    } {
        let stats = stats.clone();
        match plan.kind {
            Kind::Flood => {
                // Callers are spread over the connections; connection i gets every
                // connections-th caller.
                let callers = (plan.count + plan.connections - 1 - i) / plan.connections;
                rt.spawn(flood_connection(addr, from, callers, i, pool.clone(), stats));
            }
            Kind::Slow => {
                rt.spawn(slow(addr, from, Stall::ALL[i % Stall::ALL.len()], stats));
            }
            Kind::NoRead => {
                rt.spawn(no_read(addr, from, pool.clone(), i, stats));
            }
        }
    }
    Ok(Running { rt, stats })
}

/// The target's socket address (the target is a loopback URL, checked before).
pub fn socket_addr(target: &str) -> anyhow::Result<SocketAddr> {
    use std::net::ToSocketAddrs as _;
    let uri: http::Uri = target.parse()?;
    let host = uri.host().unwrap_or("127.0.0.1").trim_start_matches('[').trim_end_matches(']');
    let port = uri.port_u16().unwrap_or(80);
    (host, port).to_socket_addrs()?.next().ok_or_else(|| anyhow::anyhow!("--target `{target}`: no address"))
}

/// After a failed connect or a closed connection, before the next try: short, so the
/// attack stays at strength, but not a busy loop when the node refuses at once.
const RETRY: Duration = Duration::from_millis(20);

async fn connect(addr: SocketAddr, from: Option<IpAddr>) -> std::io::Result<TcpStream> {
    let socket = if addr.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    if let Some(ip) = from {
        socket.bind(SocketAddr::new(ip, 0))?;
    }
    let stream = socket.connect(addr).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// One flood connection and its callers: each calls Evaluate again as soon as the
/// previous call ends, refused or not.
async fn flood_connection(
    addr: SocketAddr,
    from: Option<IpAddr>,
    callers: usize,
    first: usize,
    pool: Arc<[EvaluateRequest]>,
    stats: Arc<Stats>,
) {
    let channel = loop {
        let endpoint = Endpoint::from_shared(format!("http://{addr}"))
            .expect("a socket address makes a valid URI")
            .local_address(from)
            .tcp_nodelay(true)
            .timeout(Duration::from_secs(30));
        match endpoint.connect().await {
            Ok(c) => break c,
            Err(_) => {
                Stats::add(&stats.connect_failed);
                tokio::time::sleep(RETRY).await;
            }
        }
    };
    for k in 0..callers {
        tokio::spawn(flood_caller(channel.clone(), first + k * 7919, pool.clone(), stats.clone()));
    }
}

async fn flood_caller(channel: Channel, mut next: usize, pool: Arc<[EvaluateRequest]>, stats: Arc<Stats>) {
    let mut client = ComplianceClient::new(channel);
    loop {
        let item = pool[next % pool.len()].clone();
        next = next.wrapping_add(1);
        Stats::add(&stats.opened);
        match client.evaluate(item).await {
            Ok(_) => Stats::add(&stats.answered),
            Err(s) if s.code() == tonic::Code::ResourceExhausted => Stats::add(&stats.refused),
            Err(_) => {
                Stats::add(&stats.failed);
                // A broken connection fails every call at once; do not spin on it.
                tokio::time::sleep(RETRY).await;
            }
        }
    }
}

/// The HTTP/2 client connection preface (RFC 9113, section 3.4).
const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// How a slow connection stalls.
#[derive(Clone, Copy, Debug)]
enum Stall {
    /// Sends the first half of the preface, then nothing.
    HalfPreface,
    /// Sends the whole preface, then nothing (not even its SETTINGS); reads what comes.
    Silent,
    /// Sends the preface one byte a second.
    Trickle,
}

impl Stall {
    const ALL: [Stall; 3] = [Stall::HalfPreface, Stall::Silent, Stall::Trickle];
}

/// One slow connection, opened again each time the node closes it.
async fn slow(addr: SocketAddr, from: Option<IpAddr>, stall: Stall, stats: Arc<Stats>) {
    loop {
        let mut sock = match connect(addr, from).await {
            Ok(s) => s,
            Err(_) => {
                Stats::add(&stats.connect_failed);
                tokio::time::sleep(RETRY).await;
                continue;
            }
        };
        Stats::add(&stats.opened);
        stats.open.fetch_add(1, Ordering::Relaxed);
        let _ = stall_on(&mut sock, stall).await;
        stats.open.fetch_sub(1, Ordering::Relaxed);
        Stats::add(&stats.closed);
        tokio::time::sleep(RETRY).await;
    }
}

/// Stalls `sock` as `stall` says until the node closes it.
async fn stall_on(sock: &mut TcpStream, stall: Stall) -> std::io::Result<()> {
    let (mut rd, mut wr) = sock.split();
    let mut sink = vec![0u8; 4096];
    match stall {
        Stall::HalfPreface | Stall::Silent => {
            let sent = if matches!(stall, Stall::HalfPreface) { &PREFACE[..12] } else { &PREFACE[..] };
            wr.write_all(sent).await?;
            // Nothing more is sent; reading only tells when the node closes.
            while rd.read(&mut sink).await? > 0 {}
            Ok(())
        }
        Stall::Trickle => {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            let mut at = 0;
            loop {
                tokio::select! {
                    n = rd.read(&mut sink) => if n? == 0 { return Ok(()) },
                    _ = tick.tick() => {
                        wr.write_all(&PREFACE[at % PREFACE.len()..at % PREFACE.len() + 1]).await?;
                        at += 1;
                    }
                }
            }
        }
    }
}

/// gRPC message framing: no compression, big-endian length, the message.
fn grpc_frame(message: &impl prost::Message) -> Bytes {
    let body = message.encode_to_vec();
    let mut out = Vec::with_capacity(5 + body.len());
    out.push(0);
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(&body);
    Bytes::from(out)
}

/// One connection that never reads: opens Evaluate streams as fast as the node allows,
/// with a stream receive window of 0, and keeps each stream whose answer is waiting;
/// opened again when the node closes it.
async fn no_read(addr: SocketAddr, from: Option<IpAddr>, pool: Arc<[EvaluateRequest]>, seed: usize, stats: Arc<Stats>) {
    let frames: Arc<[Bytes]> = pool.iter().map(grpc_frame).collect();
    let uri = format!("http://{addr}/silkgate.v1.Compliance/Evaluate");
    let mut next = seed * 7919;
    loop {
        let sock = match connect(addr, from).await {
            Ok(s) => s,
            Err(_) => {
                Stats::add(&stats.connect_failed);
                tokio::time::sleep(RETRY).await;
                continue;
            }
        };
        let handshake = h2::client::Builder::new().initial_window_size(0).handshake::<_, Bytes>(sock).await;
        let Ok((mut send, connection)) = handshake else {
            Stats::add(&stats.connect_failed);
            tokio::time::sleep(RETRY).await;
            continue;
        };
        Stats::add(&stats.opened);
        stats.open.fetch_add(1, Ordering::Relaxed);
        let driver = tokio::spawn(connection);
        // Opens streams until the connection ends; `ready` waits while the node's
        // stream limit is reached.
        let mut streams = tokio::task::JoinSet::new();
        loop {
            send = match send.ready().await {
                Ok(s) => s,
                Err(_) => break,
            };
            let request = http::Request::post(uri.as_str())
                .header("content-type", "application/grpc")
                .header("te", "trailers")
                .body(())
                .expect("a constant request is valid");
            let Ok((response, mut body)) = send.send_request(request, false) else { break };
            let frame = frames[next % frames.len()].clone();
            next = next.wrapping_add(1);
            if body.send_data(frame, true).is_err() {
                break;
            }
            let stats = stats.clone();
            streams.spawn(async move {
                match response.await {
                    Ok(r) => match r.headers().get("grpc-status").map(|v| v.as_bytes()) {
                        // Trailers only: refused (or failed) without an answer body.
                        Some(b"8") => Stats::add(&stats.refused),
                        Some(_) => Stats::add(&stats.failed),
                        None => {
                            Stats::add(&stats.answered);
                            // Holds the stream, unread, until the attack stops.
                            let _held = (r, body);
                            std::future::pending::<()>().await;
                        }
                    },
                    Err(_) => Stats::add(&stats.failed),
                }
            });
            // Reaps the streams that ended, so a connection that is refused again and
            // again holds no more than the open ones.
            while streams.try_join_next().is_some() {}
            // Until the node's SETTINGS arrive h2 assumes no stream limit, and `ready`
            // never waits: let the connection's task run.
            tokio::task::yield_now().await;
        }
        streams.abort_all();
        driver.abort();
        stats.open.fetch_sub(1, Ordering::Relaxed);
        Stats::add(&stats.closed);
        tokio::time::sleep(RETRY).await;
    }
}

/// The node's resident memory, sampled from `/proc/PID/status`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Memory {
    /// Highest `VmRSS` seen in the window, in KiB.
    pub rss_max_kib: u64,
    /// `VmHWM` (the process's peak RSS since it started) at the end of the window, in KiB.
    pub hwm_kib: u64,
}

/// Reads `VmRSS` and `VmHWM` (KiB) of `pid`.
pub fn memory(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| -> Option<u64> {
        let line = status.lines().find(|l| l.starts_with(name))?;
        line[name.len()..].trim().trim_end_matches("kB").trim().parse().ok()
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

/// Samples the node's `VmRSS` every 100 ms while `window` runs.
async fn sampled<T>(pid: Option<u32>, window: impl std::future::Future<Output = T>) -> (T, Option<Memory>) {
    let Some(pid) = pid else { return (window.await, None) };
    let most = Arc::new(AtomicU64::new(0));
    let sampler = {
        let most = most.clone();
        tokio::spawn(async move {
            loop {
                if let Some((rss, _)) = memory(pid) {
                    most.fetch_max(rss, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    let out = window.await;
    sampler.abort();
    let hwm = memory(pid).map_or(0, |(_, h)| h);
    (out, Some(Memory { rss_max_kib: most.load(Ordering::Relaxed), hwm_kib: hwm }))
}

/// Raises this process's open-file limit to its hard limit: 2,000 slow connections and
/// the load need more descriptors than the usual soft limit of 1,024.
pub fn raise_file_limit() -> u64 {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit and setrlimit only read and write the struct passed.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
    lim.rlim_cur
}

/// One round's two windows.
struct Round {
    quiet: Outcome,
    quiet_mem: Option<Memory>,
    attacked: Outcome,
    attacked_mem: Option<Memory>,
    attack: serde_json::Value,
}

/// Runs `rounds` alternating rounds of `load` alone and under `plan`, printing each
/// round and a summary.
#[allow(clippy::too_many_arguments)]
pub async fn run(
    plan: &Plan,
    addr: SocketAddr,
    load: &Load,
    rounds: u64,
    channels: &[Channel],
    pool: &[EvaluateRequest],
    server_pid: Option<u32>,
    as_json: bool,
) -> anyhow::Result<()> {
    let shared: Arc<[EvaluateRequest]> = pool.into();
    let server_cpu = server_pid.map(crate::cpu::Source::Process);
    let files = raise_file_limit();
    if !as_json {
        println!(
            "attack         {} x {} (from {}, {} threads, ramp {} s, settle {} s; this process may open {files} files)",
            plan.kind.as_str(),
            plan.count,
            plan.from.map_or("127.0.0.1".to_string(), |ip| ip.to_string()),
            plan.threads,
            plan.ramp.as_secs(),
            plan.settle.as_secs()
        );
    }
    let mut all = Vec::new();
    for round in 1..=rounds {
        let (quiet, quiet_mem) = sampled(server_pid, drive::run(load, channels, pool, server_cpu)).await;
        let attack = start(plan, addr, shared.clone())?;
        tokio::time::sleep(plan.ramp).await;
        let (attacked, attacked_mem) = sampled(server_pid, drive::run(load, channels, pool, server_cpu)).await;
        let stats = attack.stats.snapshot();
        attack.stop();
        let r = Round { quiet, quiet_mem, attacked, attacked_mem, attack: stats };
        print_round(round, &r, as_json);
        all.push(r);
        tokio::time::sleep(plan.settle).await;
    }
    print_summary(plan, &all, as_json);
    Ok(())
}

fn p99(o: &Outcome) -> Option<u64> {
    (!o.latency.is_empty()).then(|| o.latency.value_at_quantile(0.99))
}

fn p50(o: &Outcome) -> Option<u64> {
    (!o.latency.is_empty()).then(|| o.latency.value_at_quantile(0.50))
}

/// Attacked p99 over quiet p99, when both windows had successful calls.
fn ratio(r: &Round) -> Option<f64> {
    let (a, q) = (p99(&r.attacked)?, p99(&r.quiet)?);
    Some(a as f64 / q as f64)
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn print_round(round: u64, r: &Round, as_json: bool) {
    if as_json {
        let window = |o: &Outcome, m: &Option<Memory>| {
            json!({
                "calls_per_sec": o.calls_per_sec(),
                "p50_us": p50(o),
                "p99_us": p99(o),
                "failed": o.failed(),
                "errors": o.errors,
                "node_cpu_percent_of_core": o.server_cpu.map(|u| u.percent_of_core()),
                "rss_max_kib": m.map(|m| m.rss_max_kib),
                "hwm_kib": m.map(|m| m.hwm_kib),
            })
        };
        println!(
            "{}",
            json!({
                "run": "attack-round",
                "round": round,
                "quiet": window(&r.quiet, &r.quiet_mem),
                "attacked": window(&r.attacked, &r.attacked_mem),
                "p99_ratio": ratio(r),
                "attack": r.attack,
            })
        );
        return;
    }
    let us = |v: Option<u64>| v.map_or("-".to_string(), |v| v.to_string());
    let window = |o: &Outcome, m: &Option<Memory>| {
        let mem =
            m.map_or(String::new(), |m| format!(", RSS max {:.1} MiB (HWM {:.1})", mib(m.rss_max_kib), mib(m.hwm_kib)));
        let errors = if o.failed() == 0 {
            String::new()
        } else {
            format!(", ERRORS {}", o.errors.iter().map(|(k, v)| format!("{k}: {v}")).collect::<Vec<_>>().join(", "))
        };
        let cpu = o.server_cpu.map_or(String::new(), |u| format!(", node CPU {:.0}% of a core", u.percent_of_core()));
        format!("{:.0} req/s, p50 {} p99 {} us{errors}{cpu}{mem}", o.calls_per_sec(), us(p50(o)), us(p99(o)))
    };
    println!("round {round}");
    println!("  quiet        {}", window(&r.quiet, &r.quiet_mem));
    println!("  attacked     {}", window(&r.attacked, &r.attacked_mem));
    println!("  p99 ratio    {}", ratio(r).map_or("-".to_string(), |x| format!("{x:.2}")));
    println!("  attack       {}", r.attack);
}

fn print_summary(plan: &Plan, rounds: &[Round], as_json: bool) {
    let ratios: Vec<f64> = rounds.iter().filter_map(ratio).collect();
    let range = |v: &[f64]| {
        let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        (!v.is_empty()).then_some((lo, hi))
    };
    let u64_range = |f: &dyn Fn(&Round) -> Option<u64>| {
        let v: Vec<f64> = rounds.iter().filter_map(f).map(|x| x as f64).collect();
        range(&v)
    };
    let quiet_p99 = u64_range(&|r| p99(&r.quiet));
    let attacked_p99 = u64_range(&|r| p99(&r.attacked));
    let rss = rounds.iter().filter_map(|r| r.attacked_mem.map(|m| m.rss_max_kib)).max();
    let hwm = rounds.iter().filter_map(|r| r.attacked_mem.map(|m| m.hwm_kib)).max();
    let failed: u64 = rounds.iter().map(|r| r.attacked.failed()).sum();
    if as_json {
        println!(
            "{}",
            json!({
                "run": "attack-summary",
                "attack": plan.kind.as_str(),
                "count": plan.count,
                "rounds": rounds.len(),
                "quiet_p99_us": quiet_p99.map(|(a, b)| [a, b]),
                "attacked_p99_us": attacked_p99.map(|(a, b)| [a, b]),
                "p99_ratio": range(&ratios).map(|(a, b)| [a, b]),
                "attacked_failed_calls": failed,
                "rss_max_kib": rss,
                "hwm_kib": hwm,
            })
        );
        return;
    }
    let show = |r: Option<(f64, f64)>, digits: usize| {
        r.map_or("-".to_string(), |(a, b)| format!("{a:.digits$} to {b:.digits$}"))
    };
    println!();
    println!("== {} x {}, {} rounds", plan.kind.as_str(), plan.count, rounds.len());
    println!("quiet p99      {} us", show(quiet_p99, 0));
    println!("attacked p99   {} us", show(attacked_p99, 0));
    println!("p99 ratio      {}", show(range(&ratios), 2));
    println!("failed calls   {failed} (well-behaved load, attacked windows)");
    if let (Some(rss), Some(hwm)) = (rss, hwm) {
        println!("node RSS       at most {:.1} MiB in the attacked windows; VmHWM {:.1} MiB", mib(rss), mib(hwm));
    }
}

#[cfg(test)]
mod tests {
    use prost::Message as _;

    use super::*;

    #[test]
    fn a_grpc_frame_is_a_flag_a_length_and_the_message() {
        let request = EvaluateRequest { jurisdiction: "CN".into(), explain: true, ..Default::default() };
        let frame = grpc_frame(&request);
        assert_eq!(frame[0], 0, "not compressed");
        let len = u32::from_be_bytes(frame[1..5].try_into().unwrap()) as usize;
        assert_eq!(len, frame.len() - 5);
        assert_eq!(EvaluateRequest::decode(&frame[5..]).unwrap(), request);
    }

    #[test]
    fn memory_reads_this_process() {
        let (rss, hwm) = memory(std::process::id()).unwrap();
        assert!(rss > 0 && hwm >= rss, "rss {rss} hwm {hwm}");
    }

    /// A node that closes stalled connections sees them opened again, and the counts say so.
    #[tokio::test]
    async fn slow_connections_are_opened_again_when_closed() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        // Accepts, reads a little, and closes: a node with a very short handshake timeout.
        tokio::spawn(async move {
            loop {
                let (mut s, _) = listener.accept().await.unwrap();
                let mut buf = [0u8; 4];
                let _ = s.read(&mut buf).await;
            }
        });
        let stats = Arc::new(Stats::default());
        let tasks: Vec<_> =
            Stall::ALL.iter().map(|&stall| tokio::spawn(slow(addr, None, stall, stats.clone()))).collect();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while stats.closed.load(Ordering::Relaxed) < 6 {
            assert!(tokio::time::Instant::now() < deadline, "{}", stats.snapshot());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        for t in tasks {
            t.abort();
        }
        assert!(stats.opened.load(Ordering::Relaxed) >= 6);
        assert_eq!(stats.connect_failed.load(Ordering::Relaxed), 0);
    }
}
