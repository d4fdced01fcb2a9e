//! Helpers shared by the `fuzz_*` targets: the case budget, seed mutation, the shipped
//! policies and requests, the regression corpus and the checks every evaluation must pass.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use proptest::prelude::*;
use proptest::test_runner::Config;
use silkgate_core::policy::{Effect, Outcome, Policy, PolicySet, Verdict};
use silkgate_core::request::Request;
use silkgate_core::request::file::RequestFile;
use silkgate_core::time::Day;

/// Cases per property: `SILKGATE_FUZZ_CASES`, else a budget that keeps every target
/// together well under a minute in a debug build.
pub fn cases() -> u32 {
    std::env::var("SILKGATE_FUZZ_CASES").ok().and_then(|s| s.trim().parse().ok()).unwrap_or(2_000)
}

/// The proptest configuration of every target: failures persist next to the test file
/// (`tests/fuzz_*.proptest-regressions`) and are replayed first on the next run.
pub fn config() -> Config {
    Config { max_shrink_iters: 2_000, ..Config::with_cases(cases()) }
}

/// A generous bound for one input: anything slower counts as a hang.
pub const CASE_LIMIT: Duration = Duration::from_secs(10);

/// Runs `f` and fails the case if it took longer than [`CASE_LIMIT`].
pub fn timed<T>(what: &str, f: impl FnOnce() -> T) -> T {
    let start = Instant::now();
    let out = f();
    let took = start.elapsed();
    assert!(took < CASE_LIMIT, "{what} took {took:?}, over the {CASE_LIMIT:?} limit for one input");
    out
}

/// Runs `f` on a thread with a 2 MiB stack (a tokio worker's) and fails if it panics or
/// does not finish within `limit`; for corpus inputs that once crashed or hung.
pub fn within<T: Send + 'static>(what: &str, limit: Duration, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    let handle = std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(move || {
            let _ = tx.send(f());
        })
        .expect("spawn a corpus thread");
    match rx.recv_timeout(limit) {
        Ok(v) => {
            let _ = handle.join();
            v
        }
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => panic!("{what}: no answer within {limit:?} (hang)"),
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => panic!("{what}: panicked (see above)"),
    }
}

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The files of `node/tests/data/fuzz-corpus/<target>/`, sorted, with their bytes.
pub fn corpus(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/fuzz-corpus").join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file() && p.file_name().is_some_and(|n| n != "README.md"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| (p.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read(&p).unwrap()))
        .collect()
}

/// One edit of a seed. Positions are taken modulo the seed's length when applied.
#[derive(Clone, Debug)]
pub enum Op {
    FlipBit(usize, u8),
    SetByte(usize, u8),
    Truncate(usize),
    Delete(usize, usize),
    Insert(usize, Vec<u8>),
    /// Inserts a token of the target's dictionary.
    Token(usize, usize),
    /// Copies bytes `[a, a + len)` to position `b`.
    Splice(usize, usize, usize),
    DupLine(usize),
    DelLine(usize),
    SwapLines(usize, usize),
}

pub fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (any::<usize>(), 0u8..8).prop_map(|(i, b)| Op::FlipBit(i, b)),
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Op::SetByte(i, b)),
        any::<usize>().prop_map(Op::Truncate),
        (any::<usize>(), 1usize..64).prop_map(|(i, n)| Op::Delete(i, n)),
        (any::<usize>(), proptest::collection::vec(any::<u8>(), 1..16)).prop_map(|(i, b)| Op::Insert(i, b)),
        (any::<usize>(), any::<usize>()).prop_map(|(i, t)| Op::Token(i, t)),
        (any::<usize>(), 1usize..256, any::<usize>()).prop_map(|(a, n, b)| Op::Splice(a, n, b)),
        any::<usize>().prop_map(Op::DupLine),
        any::<usize>().prop_map(Op::DelLine),
        (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Op::SwapLines(a, b)),
    ]
}

/// Between one and `max` edits.
pub fn ops(max: usize) -> impl Strategy<Value = Vec<Op>> {
    proptest::collection::vec(op(), 1..=max)
}

fn line_ranges(s: &[u8]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut start = 0;
    for (i, &b) in s.iter().enumerate() {
        if b == b'\n' {
            out.push((start, i + 1));
            start = i + 1;
        }
    }
    if start < s.len() {
        out.push((start, s.len()));
    }
    out
}

/// Applies `ops` to `seed`; the result never grows past `max_len` bytes.
pub fn mutate(seed: &[u8], ops: &[Op], dict: &[&[u8]], max_len: usize) -> Vec<u8> {
    let mut s = seed.to_vec();
    let at = |i: usize, len: usize| if len == 0 { 0 } else { i % (len + 1) };
    for op in ops {
        let len = s.len();
        match op {
            Op::FlipBit(i, b) if len > 0 => s[i % len] ^= 1 << b,
            Op::SetByte(i, v) if len > 0 => s[i % len] = *v,
            Op::Truncate(i) => s.truncate(at(*i, len)),
            Op::Delete(i, n) if len > 0 => {
                let a = i % len;
                s.drain(a..(a + n).min(len));
            }
            Op::Insert(i, b) => {
                let a = at(*i, len);
                s.splice(a..a, b.iter().copied());
            }
            Op::Token(i, t) if !dict.is_empty() => {
                let a = at(*i, len);
                s.splice(a..a, dict[t % dict.len()].iter().copied());
            }
            Op::Splice(a, n, b) if len > 0 => {
                let a = a % len;
                let piece = s[a..(a + n).min(len)].to_vec();
                let b = at(*b, len);
                s.splice(b..b, piece);
            }
            Op::DupLine(i) | Op::DelLine(i) => {
                let lines = line_ranges(&s);
                if !lines.is_empty() {
                    let (a, b) = lines[i % lines.len()];
                    if matches!(op, Op::DupLine(_)) {
                        let line = s[a..b].to_vec();
                        s.splice(b..b, line);
                    } else {
                        s.drain(a..b);
                    }
                }
            }
            Op::SwapLines(x, y) => {
                let lines = line_ranges(&s);
                if lines.len() > 1 {
                    let (mut p, mut q) = (lines[x % lines.len()], lines[y % lines.len()]);
                    if p.0 > q.0 {
                        std::mem::swap(&mut p, &mut q);
                    }
                    if p != q {
                        let mut out = s[..p.0].to_vec();
                        out.extend_from_slice(&s[q.0..q.1]);
                        out.extend_from_slice(&s[p.1..q.0]);
                        out.extend_from_slice(&s[p.0..p.1]);
                        out.extend_from_slice(&s[q.1..]);
                        s = out;
                    }
                }
            }
            _ => {}
        }
        s.truncate(max_len);
    }
    s
}

/// The shipped policy directory, `policy/`.
pub fn policy_dir() -> PathBuf {
    repo().join("policy")
}

/// The shipped policies, loaded once through the real loader.
pub fn shipped() -> &'static PolicySet {
    static SET: OnceLock<PolicySet> = OnceLock::new();
    SET.get_or_init(|| silkgate::loader::load_dir(&policy_dir(), None).expect("the shipped policies load"))
}

/// `(file name, text)` of every shipped policy file (`policy/*.toml`, not the tests).
pub fn shipped_texts() -> &'static [(String, String)] {
    static TEXTS: OnceLock<Vec<(String, String)>> = OnceLock::new();
    TEXTS.get_or_init(|| {
        let mut out: Vec<(String, String)> = std::fs::read_dir(policy_dir())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| {
                let n = p.file_name().unwrap().to_string_lossy();
                n.ends_with(".toml") && !n.ends_with(".tests.toml")
            })
            .map(|p| (p.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read_to_string(&p).unwrap()))
            .collect();
        out.sort();
        out
    })
}

/// The data files under `policy/`, by path relative to it (`data/ofac-sdn.toml`).
pub fn data_files() -> &'static BTreeMap<String, String> {
    static DATA: OnceLock<BTreeMap<String, String>> = OnceLock::new();
    DATA.get_or_init(|| {
        let mut out = BTreeMap::new();
        for sub in ["data", "testdata"] {
            for e in std::fs::read_dir(policy_dir().join(sub)).unwrap() {
                let p = e.unwrap().path();
                let name = format!("{sub}/{}", p.file_name().unwrap().to_string_lossy());
                out.insert(name, std::fs::read_to_string(&p).unwrap());
            }
        }
        out
    })
}

/// The request files shipped as examples and as the base requests of the policy tests,
/// as `(name, TOML text)`.
pub fn seed_requests_toml() -> &'static [(String, String)] {
    static SEEDS: OnceLock<Vec<(String, String)>> = OnceLock::new();
    SEEDS.get_or_init(|| {
        let mut out = Vec::new();
        for e in std::fs::read_dir(repo().join("examples")).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "toml") {
                out.push((p.display().to_string(), std::fs::read_to_string(&p).unwrap()));
            }
        }
        for e in std::fs::read_dir(policy_dir()).unwrap() {
            let p = e.unwrap().path();
            if p.to_string_lossy().ends_with(".tests.toml") {
                let v: toml::Table = toml::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
                if let Some(base) = v.get("base") {
                    out.push((p.display().to_string(), toml::to_string(base).unwrap()));
                }
            }
        }
        out.sort();
        out
    })
}

/// The same requests as JSON, plus the requests of `examples/requests.jsonl`.
pub fn seed_requests_json() -> &'static [(String, String)] {
    static SEEDS: OnceLock<Vec<(String, String)>> = OnceLock::new();
    SEEDS.get_or_init(|| {
        let mut out: Vec<(String, String)> = seed_requests_toml()
            .iter()
            .map(|(n, t)| {
                let v: toml::Value = toml::from_str(t).unwrap();
                (n.clone(), serde_json::to_string_pretty(&v).unwrap())
            })
            .collect();
        let jsonl = std::fs::read_to_string(repo().join("examples/requests.jsonl")).unwrap();
        for (i, line) in jsonl.lines().filter(|l| l.starts_with('{')).enumerate() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            out.push((format!("requests.jsonl:{i}"), v["request"].to_string()));
        }
        out
    })
}

/// The seed requests, converted: the proto messages and the requests the policies read.
pub fn seed_requests() -> &'static [(silkgate::proto::DeploymentRequest, Request)] {
    static SEEDS: OnceLock<Vec<(silkgate::proto::DeploymentRequest, Request)>> = OnceLock::new();
    SEEDS.get_or_init(|| {
        seed_requests_json()
            .iter()
            .map(|(n, t)| {
                let p = RequestFile::from_json(t).unwrap_or_else(|e| panic!("{n}: {e}")).to_proto().unwrap();
                let r = Request::try_from(p.clone()).unwrap_or_else(|e| panic!("{n}: {e}"));
                (p, r)
            })
            .collect()
    })
}

/// Days to evaluate on: before, inside and after the dates the shipped rules name.
pub fn days() -> [Day; 3] {
    [Day::from_ymd(2000, 1, 1), Day::from_ymd(2026, 11, 28), Day::from_ymd(2100, 12, 31)]
}

/// What every evaluation must satisfy, whatever the policy and request: explain agrees
/// with evaluate; matched rules are valid, in force and in policy order; and the verdict
/// follows from them: deny overrides, then allow, then the default (fail closed: never
/// ALLOW when a deny rule matched).
pub fn check_outcome(policy: &Policy, req: &Request, day: Day) -> Outcome {
    let outcome = policy.evaluate(req, day);
    let (explained, traces) = policy.explain(req, day);
    assert_eq!(outcome, explained, "explain and evaluate disagree");
    assert_eq!(traces.len(), policy.rules.len());
    let mut last = None;
    for &i in &outcome.matched {
        let i = i as usize;
        assert!(i < policy.rules.len(), "matched rule {i} out of range");
        assert!(last.is_none_or(|l| l < i), "matched rules out of order: {:?}", outcome.matched);
        last = Some(i);
        assert!(policy.rules[i].in_force(day), "rule {} matched out of force", policy.rules[i].id);
        assert!(traces[i].matched && traces[i].in_force);
    }
    for (i, t) in traces.iter().enumerate() {
        assert_eq!(t.rule, i);
        assert_eq!(t.matched, outcome.matched.contains(&(i as u16)), "trace of rule {i} disagrees");
        assert_eq!(t.in_force, policy.rules[i].in_force(day));
    }
    let has = |e: Effect| outcome.matched.iter().any(|&i| policy.rules[i as usize].effect == e);
    if has(Effect::Deny) {
        assert_eq!(outcome.verdict, Verdict::Deny, "ALLOW although deny rule(s) matched: {:?}", outcome.matched);
        assert!(!outcome.default_applied);
    } else if has(Effect::Allow) {
        assert_eq!(outcome.verdict, Verdict::Allow);
        assert!(!outcome.default_applied);
    } else {
        assert_eq!(outcome.verdict, policy.default);
        assert!(outcome.default_applied);
    }
    outcome
}

/// Known bugs the targets step over so they keep exploring past them, each named by the
/// file that panics and a part of its message. `SILKGATE_FUZZ_STRICT=1` turns this off.
/// Each has an `#[ignore]`d test that fails until it is fixed; remove the entry then.
const KNOWN_PANICS: &[(&str, &str, &str)] = &[];

thread_local! {
    static LAST_PANIC: std::cell::RefCell<Option<(String, String)>> = const { std::cell::RefCell::new(None) };
}

static KNOWN_HITS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

fn known(file: &str, message: &str) -> Option<&'static str> {
    KNOWN_PANICS.iter().find(|(f, m, _)| file.ends_with(f) && message.contains(m)).map(|(_, _, name)| *name)
}

fn strict() -> bool {
    std::env::var("SILKGATE_FUZZ_STRICT").is_ok_and(|v| v == "1")
}

/// Runs `f`; a panic that is a known bug yields `None` (counted, not printed), any other
/// panic goes on unwinding.
pub fn tolerate_known<T>(f: impl FnOnce() -> T) -> Option<T> {
    if strict() {
        return Some(f());
    }
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let file = info.location().map(|l| l.file().to_string()).unwrap_or_default();
            let message = info
                .payload()
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| info.payload().downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            let quiet = known(&file, &message).is_some();
            LAST_PANIC.with(|p| *p.borrow_mut() = Some((file, message)));
            if !quiet {
                default(info);
            }
        }));
    });
    LAST_PANIC.with(|p| p.borrow_mut().take());
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(v) => Some(v),
        Err(payload) => match LAST_PANIC.with(|p| p.borrow_mut().take()) {
            Some((file, message)) if known(&file, &message).is_some() => {
                KNOWN_HITS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                None
            }
            _ => std::panic::resume_unwind(payload),
        },
    }
}

/// How many inputs hit a known bug in this process.
pub fn known_hits() -> u64 {
    KNOWN_HITS.load(std::sync::atomic::Ordering::Relaxed)
}
