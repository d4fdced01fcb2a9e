//! The `silkgate` binary: parses the command line and dispatches to one subcommand.

mod cli;

use std::process::ExitCode;

use clap::Parser;

/// mimalloc instead of glibc's malloc: under load glibc's malloc and free took about 6%
/// of the node's CPU (about 4 us per decision); see the README, "Performance". Built
/// without transparent huge pages (`no_thp`): with them, idle resident memory was 27 MB
/// instead of 10.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    cli::run(args)
}
