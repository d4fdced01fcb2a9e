//! The `silkgate` binary: parses the command line and dispatches to one subcommand.

mod cli;

use std::process::ExitCode;

use clap::Parser;

/// mimalloc, chosen (and explained) in `silkgate::server::Allocator`, which the load
/// generator's reference servers use too.
#[global_allocator]
static ALLOCATOR: silkgate::server::Allocator = silkgate::server::Allocator;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    cli::run(args)
}
