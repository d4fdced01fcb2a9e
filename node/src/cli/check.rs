//! `silkgate check DIR`: load a policy directory as the node would and report.

use std::path::PathBuf;

use silkgate::loader;
use silkgate_core::policy::lint;

use super::EXIT_INVALID;

#[derive(clap::Args)]
pub struct Args {
    /// Policy directory.
    #[arg(default_value = "policy")]
    dir: PathBuf,
    /// Warn about rules and data files whose `reviewed` date is more than this many days
    /// before today.
    #[arg(long, default_value_t = lint::REVIEW_MAX_AGE_DAYS)]
    review_days: u32,
}

pub fn run(args: Args) -> u8 {
    let set = match loader::load_dir(&args.dir, None) {
        Ok(set) => set,
        Err(e) => {
            eprintln!("{e}");
            return EXIT_INVALID;
        }
    };
    let today = silkgate_core::time::UnixTime::now().day();
    let mut warnings = 0;
    let mut errors = 0;
    for p in set.policies.values() {
        for w in lint::lint(p, today) {
            warnings += 1;
            eprintln!("{w}");
        }
    }
    for d in lint::review(set.policies.values().map(|p| p.as_ref()), today, args.review_days) {
        if d.is_error() {
            errors += 1;
        } else {
            warnings += 1;
        }
        eprintln!("{d}");
    }
    for p in set.policies.values() {
        println!(
            "ok {} {} v{}: {} rules, sha256 {} ({})",
            p.jurisdiction,
            p.id,
            p.version,
            p.rules.len(),
            hex::encode(p.digest),
            p.file
        );
    }
    let upcoming = lint::upcoming(set.policies.values().map(|p| p.as_ref()), today);
    if !upcoming.is_empty() {
        println!("coming into force after today ({today}):");
        for (day, p, r) in &upcoming {
            println!("  {day} {} {} ({}:{}:{})", p.jurisdiction, r.id, p.file, r.position.0, r.position.1);
        }
    }
    if errors > 0 {
        println!("{errors} error(s), {warnings} warning(s)");
        return EXIT_INVALID;
    }
    println!("{} policies valid, {warnings} warning(s)", set.policies.len());
    0
}
