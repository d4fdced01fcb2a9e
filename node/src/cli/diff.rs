//! `silkgate diff --from OLD --to NEW --requests FILE`: preview a policy change.

use std::path::PathBuf;

use silkgate::loader;
use silkgate_core::impact::{self, Sample};
use silkgate_core::request::Request;
use silkgate_core::request::file::RequestFile;
use silkgate_core::time::{Day, UnixTime};

use super::{EXIT_INVALID, EXIT_NEGATIVE, fail};

#[derive(clap::Args)]
pub struct Args {
    /// The policy directory in force.
    #[arg(long)]
    from: PathBuf,
    /// The edited policy directory.
    #[arg(long)]
    to: PathBuf,
    /// Requests, one JSON object a line: {"jurisdiction": "CN", "request": {...}} with the
    /// request in request-file form.
    #[arg(long)]
    requests: PathBuf,
    /// Evaluation date (YYYY-MM-DD); default today (UTC).
    #[arg(long)]
    at: Option<String>,
    /// Exit 1 when any decision changes (for CI gates).
    #[arg(long)]
    fail_on_change: bool,
    /// Signed waivers (`*.waiver`) to apply on both sides, as in force at the first
    /// second of the evaluation day; checked against each side's policies, so a waiver
    /// the new release would refuse (a rule made hard) is an error here too.
    #[arg(long, requires = "authorities")]
    waiver_dir: Option<PathBuf>,
    /// The policy authorities file that checks the waivers.
    #[arg(long, requires = "waiver_dir")]
    authorities: Option<PathBuf>,
}

fn samples(path: &PathBuf) -> Result<Vec<Sample>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let at = |e: String| format!("{}:{}: {e}", path.display(), n + 1);
        let v: serde_json::Value = serde_json::from_str(line).map_err(|e| at(e.to_string()))?;
        let j = v["jurisdiction"].as_str().ok_or_else(|| at("missing string `jurisdiction`".into()))?;
        let r = v.get("request").ok_or_else(|| at("missing object `request`".into()))?;
        let file = RequestFile::from_json(&r.to_string()).map_err(|e| at(format!("request: {e}")))?;
        let proto = file.to_proto().map_err(|e| at(format!("request.{e}")))?;
        let request = Request::try_from(proto).map_err(|e| at(format!("request.{e}")))?;
        out.push(Sample { jurisdiction: j.to_string(), request });
    }
    Ok(out)
}

fn verdict(v: Option<silkgate_core::policy::Verdict>) -> &'static str {
    v.map_or("(no policy)", |v| v.as_str())
}

pub fn run(args: Args) -> u8 {
    let (before, after) = match (loader::load_dir(&args.from, None), loader::load_dir(&args.to, None)) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("{e}");
            return EXIT_INVALID;
        }
    };
    let (before, after) = match (&args.waiver_dir, &args.authorities) {
        (Some(dir), Some(auth)) => {
            let side = |set, name: &str| {
                silkgate::waivers::attach(set, auth, dir).map_err(|e| format!("waivers under --{name}:\n{e}"))
            };
            match (side(before, "from"), side(after, "to")) {
                (Ok(a), Ok(b)) => (a, b),
                (Err(e), _) | (_, Err(e)) => {
                    eprintln!("{e}");
                    return EXIT_INVALID;
                }
            }
        }
        _ => (before, after),
    };
    let samples = match samples(&args.requests) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return EXIT_INVALID;
        }
    };
    let day = match &args.at {
        None => UnixTime::now().day(),
        Some(s) => match Day::parse(s) {
            Some(d) => d,
            None => return fail(format!("--at: `{s}` is not a date like 2026-01-31")),
        },
    };
    let report = impact::compare(&before, &after, &samples, day);
    for c in &report.changes {
        let mut why = Vec::new();
        why.extend(c.added.iter().map(|r| format!("+{r}")));
        why.extend(c.removed.iter().map(|r| format!("-{r}")));
        println!(
            "{} {}: {} -> {} ({})",
            c.jurisdiction,
            c.request_id,
            verdict(c.before),
            verdict(c.after),
            why.join(" ")
        );
    }
    println!("\nper jurisdiction:  evaluated  changed  allow->deny  deny->allow");
    for (j, n) in &report.jurisdictions {
        println!("  {j:16} {:9}  {:7}  {:11}  {:11}", n.evaluated, n.changed, n.allow_to_deny, n.deny_to_allow);
    }
    if !report.rules.is_empty() {
        println!("\nper rule:  newly matching  no longer matching");
        for (r, (added, removed)) in &report.rules {
            println!("  {r:32} {added:6}  {removed:6}");
        }
    }
    let changed: usize = report.jurisdictions.values().map(|c| c.changed).sum();
    println!("\n{} requests, {changed} decisions changed", samples.len());
    if args.fail_on_change && changed > 0 { EXIT_NEGATIVE } else { 0 }
}
