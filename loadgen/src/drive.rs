//! The load: `in_flight` closed-loop callers spread over `connections` HTTP/2 channels,
//! a warmup, then a measured window; everything stops by itself when the window ends.
//!
//! A call counts in the window when it completes inside it. Latency is recorded for
//! successful calls only (for batch mode, per batch call); failures are counted by gRPC
//! code, and failed batch items by their item error code. CPU is sampled at the exact
//! window edges, so calls straddling an edge roughly cancel out at either end.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use hdrhistogram::Histogram;
use silkgate::proto::compliance_client::ComplianceClient;
use silkgate::proto::{EvaluateBatchRequest, EvaluateRequest, batch_result};
use tokio::time::Instant;
use tonic::transport::Channel;

use crate::cpu::{self, Usage};

/// Which RPC the load calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// `Evaluate`: one request per call.
    Unary,
    /// `EvaluateBatch`: `--batch-size` requests per call.
    Batch,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Unary => "unary",
            Mode::Batch => "batch",
        }
    }
}

/// The shape of the load.
#[derive(Clone, Debug)]
pub struct Load {
    pub mode: Mode,
    pub connections: usize,
    pub in_flight: usize,
    pub warmup: Duration,
    pub duration: Duration,
    pub batch_size: usize,
    pub timeout: Duration,
}

/// What one run measured.
pub struct Outcome {
    /// Successful calls completed in the window.
    pub calls: u64,
    /// Decisions received in the window (one per unary call, one per ok batch item).
    pub decisions: u64,
    /// Failed calls in the window, by gRPC code.
    pub errors: BTreeMap<String, u64>,
    /// Failed batch items in the window, by gRPC code name and number.
    pub item_errors: BTreeMap<String, u64>,
    /// Calls or items that failed during the warmup.
    pub warmup_errors: u64,
    /// The measured window.
    pub window: Duration,
    /// Latency of successful calls, in microseconds.
    pub latency: Histogram<u64>,
    pub server_cpu: Option<Usage>,
    pub client_cpu: Option<Usage>,
    /// The whole host's busy time: what neither server nor client used was other processes.
    pub host_cpu: Option<Usage>,
}

impl Outcome {
    /// Adds another run's window to this one: counts, latencies and CPU time add up, so
    /// rates and per-call figures are over both windows together.
    pub fn merge(&mut self, other: Outcome) {
        self.calls += other.calls;
        self.decisions += other.decisions;
        for (k, v) in other.errors {
            *self.errors.entry(k).or_default() += v;
        }
        for (k, v) in other.item_errors {
            *self.item_errors.entry(k).or_default() += v;
        }
        self.warmup_errors += other.warmup_errors;
        self.window += other.window;
        // Both histograms have the same bounds (see `run`), so adding cannot fail.
        let _ = self.latency.add(&other.latency);
        let add = |a: Option<Usage>, b: Option<Usage>| match (a, b) {
            (Some(a), Some(b)) => {
                Some(Usage { cpu_secs: a.cpu_secs + b.cpu_secs, wall_secs: a.wall_secs + b.wall_secs })
            }
            _ => None,
        };
        self.server_cpu = add(self.server_cpu.take(), other.server_cpu);
        self.client_cpu = add(self.client_cpu.take(), other.client_cpu);
        self.host_cpu = add(self.host_cpu.take(), other.host_cpu);
    }

    pub fn calls_per_sec(&self) -> f64 {
        self.calls as f64 / self.window.as_secs_f64()
    }

    pub fn decisions_per_sec(&self) -> f64 {
        self.decisions as f64 / self.window.as_secs_f64()
    }

    /// Percent of one core the rest of the host used during the window (host busy time
    /// minus server and client), when all three were measured.
    pub fn others_percent(&self) -> Option<f64> {
        let (h, s, c) = (self.host_cpu?, self.server_cpu?, self.client_cpu?);
        Some((h.percent_of_core() - s.percent_of_core() - c.percent_of_core()).max(0.0))
    }

    pub fn failed(&self) -> u64 {
        self.errors.values().sum::<u64>() + self.item_errors.values().sum::<u64>()
    }
}

/// Runs `load` over `channels` (one per connection) with requests from `pool`.
pub async fn run(load: &Load, channels: &[Channel], pool: &[EvaluateRequest], server: Option<cpu::Source>) -> Outcome {
    let pool: Arc<[EvaluateRequest]> = pool.into();
    let start = Instant::now();
    let window = Window { from: start + load.warmup, until: start + load.warmup + load.duration };

    let sampler = tokio::spawn(async move {
        // The client is this whole process: its runtime's workers, but also the thread
        // blocked in `block_on`, which drives I/O too.
        let me = cpu::Source::Process(std::process::id());
        let sources = [server, Some(me), Some(cpu::Source::Host)];
        tokio::time::sleep_until(window.from).await;
        let first = sources.map(|s| s.and_then(cpu::Source::sample));
        tokio::time::sleep_until(window.until).await;
        let last = sources.map(|s| s.and_then(cpu::Source::sample));
        let usage = |i: usize| Some(Usage::between(first[i]?, last[i]?));
        [usage(0), usage(1), usage(2)]
    });

    let stride = (pool.len() / load.in_flight).max(1);
    let mut workers = Vec::with_capacity(load.in_flight);
    for k in 0..load.in_flight {
        let client = ComplianceClient::new(channels[k % channels.len()].clone())
            .max_decoding_message_size(64 << 20)
            .max_encoding_message_size(64 << 20);
        let caller = Caller { client, pool: pool.clone(), next: k * stride, load: load.clone(), window };
        workers.push(tokio::spawn(caller.run()));
    }

    let mut total = Tally::new();
    for w in workers {
        match w.await {
            Ok(t) => total.merge(t),
            Err(e) => *total.errors.entry(format!("caller task failed: {e}")).or_default() += 1,
        }
    }
    let [server_cpu, client_cpu, host_cpu] = sampler.await.unwrap_or([None, None, None]);
    Outcome {
        calls: total.calls,
        decisions: total.decisions,
        errors: total.errors,
        item_errors: total.item_errors,
        warmup_errors: total.warmup_errors,
        window: load.duration,
        latency: total.latency,
        server_cpu,
        client_cpu,
        host_cpu,
    }
}

#[derive(Clone, Copy)]
struct Window {
    from: Instant,
    until: Instant,
}

/// One closed-loop caller: sends, waits for the answer, sends again.
struct Caller {
    client: ComplianceClient<Channel>,
    pool: Arc<[EvaluateRequest]>,
    next: usize,
    load: Load,
    window: Window,
}

struct Tally {
    calls: u64,
    decisions: u64,
    errors: BTreeMap<String, u64>,
    item_errors: BTreeMap<String, u64>,
    warmup_errors: u64,
    latency: Histogram<u64>,
}

impl Tally {
    fn new() -> Self {
        // 1 us to 10 min at 3 significant digits; the bounds are constants, so this cannot fail.
        let latency = Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid histogram bounds");
        Tally {
            calls: 0,
            decisions: 0,
            errors: BTreeMap::new(),
            item_errors: BTreeMap::new(),
            warmup_errors: 0,
            latency,
        }
    }

    fn merge(&mut self, other: Tally) {
        self.calls += other.calls;
        self.decisions += other.decisions;
        for (k, v) in other.errors {
            *self.errors.entry(k).or_default() += v;
        }
        for (k, v) in other.item_errors {
            *self.item_errors.entry(k).or_default() += v;
        }
        self.warmup_errors += other.warmup_errors;
        // Same bounds on both sides, so adding cannot fail.
        let _ = self.latency.add(&other.latency);
    }
}

/// How long a caller waits after a failed call before the next one.
const ERROR_PAUSE: Duration = Duration::from_millis(5);

/// What one call came back with: decisions and item errors, or the call's error code.
type CallResult = Result<(u64, Vec<i32>), tonic::Code>;

impl Caller {
    async fn run(mut self) -> Tally {
        let mut tally = Tally::new();
        // Slack over the channel's own timeout, so a stuck call still ends this loop.
        let limit = self.load.timeout + Duration::from_secs(1);
        while Instant::now() < self.window.until {
            let started = Instant::now();
            let result = match tokio::time::timeout(limit, self.call()).await {
                Ok(r) => r,
                Err(_) => Err(tonic::Code::DeadlineExceeded),
            };
            let done = Instant::now();
            if done >= self.window.until {
                break;
            }
            let failed = result.is_err();
            if done < self.window.from {
                tally.warmup_errors += match &result {
                    Ok((_, item_errors)) => item_errors.len() as u64,
                    Err(_) => 1,
                };
            } else {
                match result {
                    Ok((decisions, item_errors)) => {
                        tally.calls += 1;
                        tally.decisions += decisions;
                        for code in item_errors {
                            let name = format!("{:?}({code})", tonic::Code::from_i32(code));
                            *tally.item_errors.entry(name).or_default() += 1;
                        }
                        let micros = done.duration_since(started).as_micros().min(u128::from(u64::MAX)) as u64;
                        tally.latency.saturating_record(micros.max(1));
                    }
                    Err(code) => *tally.errors.entry(format!("{code:?}")).or_default() += 1,
                }
            }
            if failed {
                // A dead or refusing server answers at once: pause so the loop does not spin.
                tokio::time::sleep(ERROR_PAUSE).await;
            }
        }
        tally
    }

    async fn call(&mut self) -> CallResult {
        match self.load.mode {
            Mode::Unary => {
                let item = self.pool[self.next % self.pool.len()].clone();
                self.next = self.next.wrapping_add(1);
                let resp = self.client.evaluate(item).await.map_err(|s| s.code())?.into_inner();
                // A response without a decision is a protocol failure, not a decision.
                if resp.decision.is_none() {
                    return Err(tonic::Code::Internal);
                }
                Ok((1, Vec::new()))
            }
            Mode::Batch => {
                let items =
                    (0..self.load.batch_size).map(|i| self.pool[(self.next + i) % self.pool.len()].clone()).collect();
                self.next = self.next.wrapping_add(self.load.batch_size);
                let resp = self
                    .client
                    .evaluate_batch(EvaluateBatchRequest { items })
                    .await
                    .map_err(|s| s.code())?
                    .into_inner();
                let mut decisions = 0;
                let mut item_errors = Vec::new();
                for r in resp.results {
                    match r.result {
                        Some(batch_result::Result::Ok(ok)) if ok.decision.is_some() => decisions += 1,
                        Some(batch_result::Result::Error(e)) => item_errors.push(e.code),
                        _ => item_errors.push(tonic::Code::Internal as i32),
                    }
                }
                Ok((decisions, item_errors))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(calls: u64, secs: u64, latencies: &[u64], cpu: f64) -> Outcome {
        let mut latency = Histogram::new_with_bounds(1, 600_000_000, 3).unwrap();
        for &l in latencies {
            latency.record(l).unwrap();
        }
        Outcome {
            calls,
            decisions: calls,
            errors: BTreeMap::from([("Unavailable".to_string(), 1)]),
            item_errors: BTreeMap::new(),
            warmup_errors: 0,
            window: Duration::from_secs(secs),
            latency,
            server_cpu: Some(Usage { cpu_secs: cpu, wall_secs: secs as f64 }),
            client_cpu: None,
            host_cpu: Some(Usage { cpu_secs: 2.0 * cpu, wall_secs: secs as f64 }),
        }
    }

    #[test]
    fn merged_rounds_give_rates_over_both_windows() {
        let mut a = outcome(1000, 2, &[100, 200], 1.0);
        a.merge(outcome(3000, 2, &[300, 400, 500], 3.0));
        assert_eq!(a.calls, 4000);
        assert_eq!(a.window, Duration::from_secs(4));
        assert_eq!(a.calls_per_sec(), 1000.0);
        assert_eq!(a.latency.len(), 5);
        assert_eq!(a.latency.max(), a.latency.highest_equivalent(500));
        assert_eq!(a.errors["Unavailable"], 2);
        let server = a.server_cpu.unwrap();
        assert_eq!((server.cpu_secs, server.wall_secs), (4.0, 4.0));
        assert_eq!(server.micros_per(a.calls), Some(1000.0));
        // A figure one round lacks is unknown for the total.
        assert!(a.client_cpu.is_none());
    }
}
