//! Output: a fixed, readable text layout, or one JSON object per run (`--json`).
//!
//! Text lines are `label` padded to 15 columns, then the figures; a run with any failed
//! call or item says `ERRORS` in capitals. With `--json`, each run is one line holding
//! the load's shape and every figure, and with `--reference` the last three lines compare
//! target, signed and bare two by two.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::PayloadSize;
use crate::drive::{Load, Mode, Outcome};

/// What is the same for every run of one invocation.
pub struct Header {
    pub target: String,
    pub node_id: String,
    pub build_version: String,
    pub jurisdictions: Vec<String>,
    pub pool_size: usize,
    pub seed: u64,
    pub payload: PayloadSize,
    pub client_threads: u32,
    pub reference_threads: Option<u32>,
}

pub fn print_header(h: &Header, load: &Load) {
    println!("silkgate-loadgen {}", env!("CARGO_PKG_VERSION"));
    line("target", format!("{} (node {}, build {})", h.target, h.node_id, h.build_version));
    line("jurisdictions", h.jurisdictions.join(", "));
    let p = &h.payload;
    line(
        "pool",
        format!(
            "{} requests, seed {}; decision payload {} B mean (min {}, max {}, {} sampled)",
            h.pool_size, h.seed, p.mean, p.min, p.max, p.samples
        ),
    );
    let batch = if load.mode == Mode::Batch { format!(" of {}", load.batch_size) } else { String::new() };
    line(
        "load",
        format!(
            "{}{batch}, {} connections, {} in flight, warmup {} s, measured {} s, client runtime {} threads",
            load.mode.as_str(),
            load.connections,
            load.in_flight,
            load.warmup.as_secs(),
            load.duration.as_secs(),
            h.client_threads
        ),
    );
    if let Some(threads) = h.reference_threads {
        line(
            "reference",
            format!(
                "signed: tonic + 1 Ed25519 signature per decision over {} B; bare: the same answers unsigned; \
                 each its own process with the node's allocator, runtime and connections, {threads} threads",
                p.mean
            ),
        );
    }
}

/// Prints one run; `server` says whose CPU `o.server_cpu` is (e.g. `pid 1234`).
pub fn print_run(name: &str, url: &str, server: &str, load: &Load, h: &Header, o: &Outcome, as_json: bool) {
    if as_json {
        println!("{}", run_json(name, url, server, load, h, o));
        return;
    }
    let secs = o.window.as_secs_f64();
    println!();
    println!("== {name} {url}");
    match load.mode {
        Mode::Unary => {
            line("calls", format!("{} ok in {secs:.1} s", o.calls));
            line("throughput", format!("{:.1} req/s", o.calls_per_sec()));
        }
        Mode::Batch => {
            line("calls", format!("{} batch calls ok ({} decisions) in {secs:.1} s", o.calls, o.decisions));
            line("throughput", format!("{:.1} calls/s, {:.1} decisions/s", o.calls_per_sec(), o.decisions_per_sec()));
        }
    }
    let per = if load.mode == Mode::Batch { "per batch call" } else { "per call" };
    let l = &o.latency;
    if l.is_empty() {
        line("latency us", "no successful call".to_string());
    } else {
        line(
            "latency us",
            format!(
                "p50 {}  p90 {}  p99 {}  max {}  ({per})",
                l.value_at_quantile(0.50),
                l.value_at_quantile(0.90),
                l.value_at_quantile(0.99),
                l.max()
            ),
        );
    }
    if o.failed() == 0 {
        line("errors", "none".to_string());
    } else {
        line("ERRORS", format!("{} failed calls/items in the window", o.failed()));
        if !o.errors.is_empty() {
            line("  calls", counts(&o.errors));
        }
        if !o.item_errors.is_empty() {
            line("  batch items", counts(&o.item_errors));
        }
    }
    if o.warmup_errors > 0 {
        line("warmup errors", format!("{} (not counted above)", o.warmup_errors));
    }
    if let Some(u) = &o.server_cpu {
        line("server cpu", cpu_text(u, load, o, server));
    }
    if let Some(u) = &o.client_cpu {
        line("client cpu", cpu_text(u, load, o, "loadgen process"));
    }
    if let Some(h) = &o.host_cpu {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let others = o.others_percent().map_or(String::new(), |p| format!("; other processes {p:.0}% of a core"));
        line("host cpu", format!("{:.0}% busy of {}%{others}", h.percent_of_core(), 100 * cores));
        if let Some(p) = o.others_percent()
            && p > OTHERS_WARN_PERCENT
        {
            line("WARNING", format!("other processes took {p:.0}% of a core during the window: figures disturbed"));
        }
    }
}

/// Above this share of a core taken by other processes, a run is flagged as disturbed.
const OTHERS_WARN_PERCENT: f64 = 10.0;

/// Prints the figures of run `a` divided by those of run `b`, each given with its name.
pub fn print_comparison(a: (&str, &Outcome), b: (&str, &Outcome), as_json: bool) {
    let r = ratios(a.1, b.1);
    if as_json {
        println!("{}", json!({ "run": "comparison", "of": a.0, "over": b.0, "ratios": r }));
        return;
    }
    println!();
    println!("== {} / {}", a.0, b.0);
    let show = |label: &str, key: &str, what: &str| {
        if let Some(v) = r.get(key).and_then(Value::as_f64) {
            line(label, format!("{v:.2}{what}"));
        }
    };
    show("throughput", "decisions_per_sec", " (decisions/s)");
    show("latency p50", "latency_p50", "");
    show("latency p99", "latency_p99", "");
    show("server cpu", "server_cpu_per_decision", " (per decision)");
}

fn line(label: &str, text: String) {
    println!("{label:<15}{text}");
}

fn counts(m: &BTreeMap<String, u64>) -> String {
    m.iter().map(|(k, v)| format!("{k}: {v}")).collect::<Vec<_>>().join(", ")
}

fn cpu_text(u: &crate::cpu::Usage, load: &Load, o: &Outcome, whose: &str) -> String {
    let per_call = u.micros_per(o.calls).map_or("-".to_string(), |v| format!("{v:.1}"));
    let core = u.percent_of_core();
    match load.mode {
        Mode::Unary => format!("{per_call} us/req, {core:.0}% of a core ({whose})"),
        Mode::Batch => {
            let per_decision = u.micros_per(o.decisions).map_or("-".to_string(), |v| format!("{v:.1}"));
            format!("{per_call} us/call, {per_decision} us/decision, {core:.0}% of a core ({whose})")
        }
    }
}

/// One round of an alternating run: the three throughputs, and the target's over each
/// baseline's.
pub fn print_round(round: u64, target: &Outcome, signed: &Outcome, bare: &Outcome, as_json: bool) {
    let (t, s, b) = (target.decisions_per_sec(), signed.decisions_per_sec(), bare.decisions_per_sec());
    let over = |x: f64| (x > 0.0).then(|| t / x);
    if as_json {
        println!(
            "{}",
            json!({
                "run": "round",
                "round": round,
                "target_decisions_per_sec": t,
                "signed_decisions_per_sec": s,
                "bare_decisions_per_sec": b,
                "target_over_signed": over(s),
                "target_over_bare": over(b),
            })
        );
    } else {
        let show = |r: Option<f64>| r.map_or("-".to_string(), |x| format!("{x:.2}"));
        println!(
            "round {round:<7} target {t:.0}/s, signed {s:.0}/s, bare {b:.0}/s; target/signed {}, target/bare {}",
            show(over(s)),
            show(over(b))
        );
    }
}

fn run_json(name: &str, url: &str, server: &str, load: &Load, h: &Header, o: &Outcome) -> Value {
    let l = &o.latency;
    let latency = (!l.is_empty()).then(|| {
        json!({
            "p50": l.value_at_quantile(0.50),
            "p90": l.value_at_quantile(0.90),
            "p99": l.value_at_quantile(0.99),
            "max": l.max(),
        })
    });
    let usage = |u: &Option<crate::cpu::Usage>| {
        u.as_ref().map(|u| {
            json!({
                "cpu_secs": u.cpu_secs,
                "wall_secs": u.wall_secs,
                "percent_of_core": u.percent_of_core(),
                "us_per_call": u.micros_per(o.calls),
                "us_per_decision": u.micros_per(o.decisions),
            })
        })
    };
    json!({
        "run": name,
        "url": url,
        "target": h.target,
        "node_id": h.node_id,
        "jurisdictions": h.jurisdictions,
        "mode": load.mode.as_str(),
        "connections": load.connections,
        "in_flight": load.in_flight,
        "batch_size": (load.mode == Mode::Batch).then_some(load.batch_size),
        "warmup_secs": load.warmup.as_secs(),
        "duration_secs": load.duration.as_secs(),
        "pool_size": h.pool_size,
        "seed": h.seed,
        "payload_bytes_mean": h.payload.mean,
        "calls": o.calls,
        "decisions": o.decisions,
        "calls_per_sec": o.calls_per_sec(),
        "decisions_per_sec": o.decisions_per_sec(),
        "latency_us": latency,
        "failed": o.failed(),
        "errors": o.errors,
        "item_errors": o.item_errors,
        "warmup_errors": o.warmup_errors,
        "server_cpu_of": o.server_cpu.is_some().then_some(server),
        "server_cpu": usage(&o.server_cpu),
        "client_cpu": usage(&o.client_cpu),
        "host_cpu": usage(&o.host_cpu),
        "others_percent_of_core": o.others_percent(),
    })
}

/// `t`'s figure divided by `r`'s, for each figure both runs have.
fn ratios(t: &Outcome, r: &Outcome) -> Value {
    let div = |a: f64, b: f64| (b > 0.0).then(|| a / b);
    let q = |o: &Outcome, q: f64| (!o.latency.is_empty()).then(|| o.latency.value_at_quantile(q) as f64);
    let cpu = |o: &Outcome| o.server_cpu.as_ref().and_then(|u| u.micros_per(o.decisions));
    json!({
        "decisions_per_sec": div(t.decisions_per_sec(), r.decisions_per_sec()),
        "calls_per_sec": div(t.calls_per_sec(), r.calls_per_sec()),
        "latency_p50": q(t, 0.5).zip(q(r, 0.5)).and_then(|(a, b)| div(a, b)),
        "latency_p99": q(t, 0.99).zip(q(r, 0.99)).and_then(|(a, b)| div(a, b)),
        "server_cpu_per_decision": cpu(t).zip(cpu(r)).and_then(|(a, b)| div(a, b)),
    })
}
