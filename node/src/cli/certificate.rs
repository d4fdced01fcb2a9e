//! `silkgate certificate verify`: check a deployment certificate offline against the
//! network's roster and governance keys.

use std::path::PathBuf;

use silkgate_core::time::UnixTime;
use silkgate_verify::certificate;
use silkgate_verify::proto::{CertificateVerdict, Verdict};

use super::{EXIT_NEGATIVE, fail};

/// A valid certificate whose verdict is DENY.
pub const EXIT_DENY: u8 = 4;
/// A valid certificate whose verdict is INCOMPLETE.
pub const EXIT_INCOMPLETE: u8 = 5;

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Subcommand)]
enum Command {
    /// Check a certificate: roster signatures, gateway signature, every decision and
    /// inclusion proof, the verdict and validity.
    Verify(VerifyArgs),
}

#[derive(clap::Args)]
pub struct VerifyArgs {
    /// The certificate: DSSE JSON or a protobuf SignedDecision envelope.
    file: PathBuf,
    /// The signed roster the certificate names.
    #[arg(long)]
    roster: PathBuf,
    /// Trusted governance public key (hex, verifier key string, or a file); repeat for each.
    #[arg(long = "network-key", required = true)]
    network_keys: Vec<String>,
    /// Least number of roster signatures, whatever the roster states.
    #[arg(long, default_value_t = 1)]
    network_threshold: u32,
    /// Also reject a certificate past its not_after time.
    #[arg(long)]
    check_expiry: bool,
}

pub fn run(args: Args) -> u8 {
    let Command::Verify(a) = args.command;
    let roster = match super::roster::load_verified(&a.roster, &a.network_keys, a.network_threshold) {
        Ok(r) => r,
        Err((code, e)) => {
            eprintln!("error: {e}");
            return code;
        }
    };
    let env = match silkgate::network::read_file(&a.file).and_then(|b| silkgate_verify::roster::parse_envelope(&b)) {
        Ok(e) => e,
        Err(e) => return fail(format!("{}: {e}", a.file.display())),
    };
    let now = a.check_expiry.then(UnixTime::now);
    let v = match certificate::verify(&env, &roster, now) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("invalid: {}: {e}", a.file.display());
            return EXIT_NEGATIVE;
        }
    };
    print!("{}", summary(&v));
    match v.verdict {
        CertificateVerdict::Allow => 0,
        CertificateVerdict::Deny => EXIT_DENY,
        _ => EXIT_INCOMPLETE,
    }
}

/// What a person reads about a verified certificate.
pub fn summary(v: &certificate::Verified) -> String {
    let c = &v.certificate;
    let at =
        |t: Option<prost_types::Timestamp>| t.map(|t| UnixTime::from_secs(t.seconds).rfc3339()).unwrap_or_default();
    let mut out = format!(
        "valid certificate {}: {} for request `{}` (sha256 {})\n  by gateway {} under roster `{}` version {}\n  issued {}, valid until {}\n",
        c.certificate_id,
        v.verdict.as_str_name().trim_start_matches("CERTIFICATE_VERDICT_"),
        c.request_id,
        hex::encode(&c.request_sha256),
        c.node_id,
        c.roster.as_ref().map(|r| r.network_id.as_str()).unwrap_or_default(),
        c.roster.as_ref().map_or(0, |r| r.version),
        at(c.issued_at),
        at(c.not_after),
    );
    for (ev, d) in c.evidence.iter().zip(&v.decisions) {
        let verdict = if d.verdict == Verdict::Allow as i32 { "ALLOW" } else { "DENY" };
        out.push_str(&format!(
            "  {}: {verdict} by {} (decision {}, log index {} of {})\n",
            ev.jurisdiction, ev.node_id, d.decision_id, ev.log_index, ev.tree_size
        ));
    }
    for m in &c.missing {
        out.push_str(&format!("  {}: MISSING: {}\n", m.jurisdiction, m.reason));
    }
    out
}
