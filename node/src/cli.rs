//! Subcommands of the `silkgate` binary, one file each.
//!
//! Exit codes: 0 success (allow, valid, all tests pass); 1 a negative answer (deny,
//! invalid signature, failing tests); 2 an operational error (unreadable file, network,
//! bad usage); 3 invalid input (a policy or request that does not load).

mod certificate;
mod certify;
mod check;
mod diff;
mod eval;
mod health;
mod key;
mod keygen;
mod log;
mod policy;
mod roster;
mod serve;
mod test;
mod verify;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub const EXIT_NEGATIVE: u8 = 1;
pub const EXIT_ERROR: u8 = 2;
pub const EXIT_INVALID: u8 = 3;

#[derive(Parser)]
#[command(name = "silkgate", version, about = "Compliance node for multi-jurisdiction blockchain hosting")]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the node: load policies and key, answer gRPC.
    Serve(Box<serve::Args>),
    /// Validate a policy directory and list every error.
    Check(check::Args),
    /// Ask a node whether it is serving (exit 0) or not (exit 1); a container probe.
    Health(health::Args),
    /// Run the policy test cases (*.tests.toml) in a directory.
    Test(test::Args),
    /// Preview a policy change: which decisions on a corpus of requests would change.
    Diff(diff::Args),
    /// Evaluate a request file offline and print the decision.
    Eval(eval::Args),
    /// Create a new Ed25519 signing key (PKCS#8 PEM, mode 0600).
    Keygen(keygen::Args),
    /// Show the node key's id, public key and log verifier key, for auditors.
    Key(key::Args),
    /// Verify a signed decision against a public key or a running node.
    Verify(verify::Args),
    /// Audit the decision log, fetch and check proofs, seal a log.
    Log(log::Args),
    /// Sign and verify the network roster.
    Roster(roster::Args),
    /// Ask a member node for a deployment certificate covering every jurisdiction.
    Certify(certify::Args),
    /// Verify a deployment certificate offline.
    Certificate(certificate::Args),
    /// Sign and check policy releases (a jurisdiction's policy authority).
    Policy(policy::Args),
}

pub fn run(cli: Cli) -> ExitCode {
    let code = match cli.command {
        Command::Serve(a) => serve::run(*a),
        Command::Check(a) => check::run(a),
        Command::Test(a) => test::run(a),
        Command::Health(a) => health::run(a),
        Command::Eval(a) => eval::run(a),
        Command::Diff(a) => diff::run(a),
        Command::Keygen(a) => keygen::run(a),
        Command::Key(a) => key::run(a),
        Command::Verify(a) => verify::run(a),
        Command::Log(a) => log::run(a),
        Command::Roster(a) => roster::run(a),
        Command::Certify(a) => certify::run(a),
        Command::Certificate(a) => certificate::run(a),
        Command::Policy(a) => policy::run(a),
    };
    ExitCode::from(code)
}

/// Prints an error for a person and returns the operational-error exit code.
pub fn fail(e: impl std::fmt::Display) -> u8 {
    eprintln!("error: {e}");
    EXIT_ERROR
}
