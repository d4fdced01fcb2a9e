//! `silkgate check DIR`: load a policy directory as the node would and report.

use std::path::PathBuf;

use silkgate::loader;

use super::EXIT_INVALID;

#[derive(clap::Args)]
pub struct Args {
    /// Policy directory.
    #[arg(default_value = "policy")]
    dir: PathBuf,
}

pub fn run(args: Args) -> u8 {
    match loader::load_dir(&args.dir, None) {
        Ok(set) => {
            let today = silkgate_core::time::UnixTime::now().day();
            let mut warnings = 0;
            for p in set.policies.values() {
                for w in silkgate_core::policy::lint::lint(p, today) {
                    warnings += 1;
                    eprintln!("{w}");
                }
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
            println!("{} policies valid, {warnings} warning(s)", set.policies.len());
            0
        }
        Err(e) => {
            eprintln!("{e}");
            EXIT_INVALID
        }
    }
}
