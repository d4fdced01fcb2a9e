//! `silkgate eval FILE`: evaluate a request file offline.

use std::path::{Path, PathBuf};

use prost::Message;
use sha2::{Digest, Sha256};
use silkgate::{keys, loader};
use silkgate_core::decision::{self, Signer};
use silkgate_core::request::Request;
use silkgate_core::request::file::RequestFile;
use silkgate_core::time::{Day, UnixTime};

use super::{EXIT_INVALID, EXIT_NEGATIVE, fail};

#[derive(clap::Args)]
pub struct Args {
    /// Request file, TOML or JSON (by extension; `-` reads TOML from stdin).
    file: PathBuf,
    /// Jurisdiction whose policy to evaluate against, e.g. CN.
    #[arg(long, short)]
    jurisdiction: String,
    /// Policy directory.
    #[arg(long, default_value = "policy")]
    policy_dir: PathBuf,
    /// Evaluation date (YYYY-MM-DD); default today (UTC).
    #[arg(long)]
    at: Option<String>,
    /// Sign with this key file and print the DSSE JSON envelope on stdout.
    #[arg(long)]
    sign: Option<PathBuf>,
    /// Explain rule by rule why the decision came out as it did.
    #[arg(long)]
    explain: bool,
    /// Node id written into a signed decision.
    #[arg(long, default_value = "offline")]
    node_id: String,
    /// Validity of a signed decision, in seconds.
    #[arg(long, default_value_t = 86_400)]
    validity_secs: i64,
    /// Signed waivers (`*.waiver`) to apply: as in force now, or with --at at the first
    /// second of that day.
    #[arg(long, requires = "authorities")]
    waiver_dir: Option<PathBuf>,
    /// The policy authorities file that checks the waivers.
    #[arg(long, requires = "waiver_dir")]
    authorities: Option<PathBuf>,
}

fn read_request(path: &Path) -> Result<RequestFile, String> {
    let text = if path.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin()).map_err(|e| e.to_string())?
    } else {
        std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?
    };
    let shown = path.display();
    if path.extension().is_some_and(|e| e == "json") {
        RequestFile::from_json(&text).map_err(|e| format!("{shown}: {e}"))
    } else {
        RequestFile::from_toml(&text).map_err(|e| format!("{shown}: {e}"))
    }
}

pub fn run(args: Args) -> u8 {
    let file = match read_request(&args.file) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("error: {e}");
            return EXIT_INVALID;
        }
    };
    let message = match file.to_proto() {
        Ok(m) => m,
        Err(e) => {
            eprintln!("error: {}: {e}", args.file.display());
            return EXIT_INVALID;
        }
    };
    let bytes = message.encode_to_vec();
    let req = match Request::try_from(message) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {}: {e}", args.file.display());
            return EXIT_INVALID;
        }
    };
    let set = match loader::load_dir(&args.policy_dir, Some(std::slice::from_ref(&args.jurisdiction))) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{e}");
            return EXIT_INVALID;
        }
    };
    let set = match (&args.waiver_dir, &args.authorities) {
        (Some(dir), Some(auth)) => match silkgate::waivers::attach(set, auth, dir) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("{e}");
                return EXIT_INVALID;
            }
        },
        _ => set,
    };
    let Some(policy) = set.get(&args.jurisdiction) else {
        return fail(format!("no policy for `{}`", args.jurisdiction));
    };
    let now = UnixTime::now();
    let day = match &args.at {
        None => now.day(),
        Some(s) => match Day::parse(s) {
            Some(d) => d,
            None => return fail(format!("--at: `{s}` is not a date like 2026-01-31")),
        },
    };
    let (outcome, traces) = policy.explain(&req, day);
    let at = if args.at.is_some() { UnixTime::from_secs(i64::from(day.0) * 86_400) } else { now };
    let request_sha256: [u8; 32] = Sha256::digest(&bytes).into();
    let waivers = set.waivers.get(&args.jurisdiction).map(Vec::as_slice).unwrap_or_default();
    let applied = silkgate_core::waiver::apply(policy, outcome, waivers, &req, Some(&request_sha256), at);
    let outcome = &applied.outcome;
    let waived_by = |i: u16| applied.waived.iter().find(|(r, _)| *r == i).map(|(_, w)| w);

    // With --sign, stdout carries only the DSSE JSON envelope (so it can be redirected
    // to a file and verified); the readable report then goes to stderr.
    let to_stderr = args.sign.is_some();
    macro_rules! say {
        ($($t:tt)*) => {
            if to_stderr { eprintln!($($t)*) } else { println!($($t)*) }
        };
    }
    say!("verdict:      {}", outcome.verdict.as_str());
    say!(
        "jurisdiction: {} (policy {} v{}, sha256 {})",
        policy.jurisdiction,
        policy.id,
        policy.version,
        hex::encode(policy.digest)
    );
    say!("evaluated at: {day}");
    if outcome.matched.is_empty() {
        say!("no rule matched; the policy default ({}) applies", policy.default.as_str());
    }
    for &i in &outcome.matched {
        let r = &policy.rules[i as usize];
        say!("{:5} {}: {}", r.effect.as_str(), r.id, r.message);
        if let Some(w) = waived_by(i) {
            let v = &w.verified;
            say!(
                "      waived by {} (sha256 {}, ticket {}, until {})",
                v.waiver.waiver_id,
                hex::encode(v.digest),
                v.waiver.ticket,
                v.expires.rfc3339()
            );
        }
        say!(
            "      citation: {}{}",
            r.citation,
            if r.url.is_empty() { String::new() } else { format!(" <{}>", r.url) }
        );
    }
    if args.explain {
        say!("explanation:");
        for t in &traces {
            let r = &policy.rules[t.rule];
            let state = match (t.in_force, t.matched) {
                (false, _) => "not in force",
                (true, true) => "matched",
                (true, false) => "no match",
            };
            let state = match u16::try_from(t.rule).ok().and_then(waived_by) {
                Some(w) if t.matched => format!("{state}, waived by {}", w.verified.waiver.waiver_id),
                _ => state.to_string(),
            };
            say!("  {} [{} {}] {state}", r.id, r.effect.as_str(), r.level.as_str());
            if let Some((cond, actual)) = &t.failed {
                say!("      failed: {cond}");
                say!("      actual: {actual}");
            }
        }
    }
    if let Some(key_path) = &args.sign {
        let key = match keys::load(key_path) {
            Ok(k) => k,
            Err(e) => return fail(e),
        };
        let signer: Signer = key.signer;
        let ctx = decision::Context {
            decision_id: uuid::Uuid::now_v7().to_string(),
            node_id: &args.node_id,
            request_sha256,
            request_id: &req.request_id,
            issued_at: now,
            validity_secs: args.validity_secs,
        };
        let mut d = decision::build(policy, outcome, &ctx, signer.key_id());
        silkgate_core::waiver::annotate(&mut d, policy, &applied);
        let env = decision::sign(&d, &signer);
        eprintln!("signed by key {}", signer.key_id());
        println!("{}", serde_json::to_string_pretty(&decision::to_dsse_json(&env)).unwrap_or_default());
    }
    if outcome.verdict == silkgate_core::policy::Verdict::Deny { EXIT_NEGATIVE } else { 0 }
}
