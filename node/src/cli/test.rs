//! `silkgate test DIR`: run the policy test cases beside the policies.

use std::path::PathBuf;

use silkgate::loader;
use silkgate_core::cases;

use super::{EXIT_INVALID, EXIT_NEGATIVE, fail};

#[derive(clap::Args)]
pub struct Args {
    /// Policy directory holding *.tests.toml files.
    #[arg(default_value = "policy")]
    dir: PathBuf,
}

pub fn run(args: Args) -> u8 {
    let entries = match std::fs::read_dir(&args.dir) {
        Ok(e) => e,
        Err(e) => return fail(format!("{}: {e}", args.dir.display())),
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.to_string_lossy().ends_with(".tests.toml"))
        .collect();
    files.sort();
    if files.is_empty() {
        return fail(format!("no *.tests.toml files in {}", args.dir.display()));
    }
    let (mut passed, mut failed, mut invalid) = (0usize, 0usize, false);
    for path in files {
        let shown = path.display();
        let file = match std::fs::read_to_string(&path).map_err(|e| e.to_string()).and_then(|t| cases::parse(&t)) {
            Ok(f) => f,
            Err(e) => {
                eprintln!("{shown}: {e}");
                invalid = true;
                continue;
            }
        };
        let policy_path = path.parent().unwrap_or(&args.dir).join(&file.policy);
        let dir = path.parent().unwrap_or(&args.dir);
        let overrides = file.data.iter().map(|(k, v)| (k.clone(), dir.join(v))).collect();
        let policy = match loader::load_file_with(&policy_path, &overrides) {
            Ok(p) => p,
            Err(d) => {
                eprintln!("{}", silkgate_core::policy::render(&d));
                invalid = true;
                continue;
            }
        };
        let report = cases::run(&file, &policy);
        println!("{shown} ({} {}):", policy.jurisdiction, policy.id);
        for c in &report.cases {
            if c.problems.is_empty() {
                passed += 1;
                println!("  ok    {}", c.name);
            } else {
                failed += 1;
                println!("  FAIL  {}", c.name);
                for p in &c.problems {
                    println!("          {p}");
                }
            }
        }
        for c in &report.coverage {
            failed += 1;
            println!("  FAIL  coverage: {c}");
        }
    }
    println!("{passed} passed, {failed} failed");
    if invalid {
        EXIT_INVALID
    } else if failed > 0 {
        EXIT_NEGATIVE
    } else {
        0
    }
}
