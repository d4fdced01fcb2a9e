//! `silkgate roster sign|verify`: make and check the network's signed roster.

use std::path::{Path, PathBuf};

use silkgate::network::source;
use silkgate_verify::decision::to_dsse_json;
use silkgate_verify::proto;
use silkgate_verify::roster::{self, VerifiedRoster};

use super::{EXIT_INVALID, EXIT_NEGATIVE, fail};

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Subcommand)]
enum Command {
    /// Sign a roster: from its TOML source, or add signatures to an existing envelope.
    Sign(SignArgs),
    /// Check a signed roster against the network's governance keys.
    Verify(VerifyArgs),
}

#[derive(clap::Args)]
pub struct SignArgs {
    /// Roster TOML source (starts a new envelope).
    #[arg(long, conflicts_with = "envelope", required_unless_present = "envelope")]
    toml: Option<PathBuf>,
    /// Existing signed roster (DSSE JSON) to add signatures to; its payload is unchanged.
    #[arg(long)]
    envelope: Option<PathBuf>,
    /// Governance signing key (PKCS#8 PEM, as `silkgate keygen` writes); repeat for each.
    #[arg(long = "key", required = true)]
    keys: Vec<PathBuf>,
    /// Where to write the signed roster (DSSE JSON); may be the --envelope file.
    #[arg(long)]
    out: PathBuf,
}

#[derive(clap::Args)]
pub struct VerifyArgs {
    /// Signed roster: DSSE JSON or a protobuf SignedDecision.
    file: PathBuf,
    /// Trusted governance public key (hex, verifier key string, or a file); repeat for each.
    #[arg(long = "network-key", required = true)]
    network_keys: Vec<String>,
    /// Least number of signatures, whatever the roster states.
    #[arg(long, default_value_t = 1)]
    network_threshold: u32,
}

pub fn run(args: Args) -> u8 {
    match args.command {
        Command::Sign(a) => sign(a),
        Command::Verify(a) => verify(a),
    }
}

fn read(path: &Path) -> Result<Vec<u8>, String> {
    silkgate::network::read_file(path).map_err(|e| format!("{}: {e}", path.display()))
}

fn sign(a: SignArgs) -> u8 {
    let mut env = match (&a.toml, &a.envelope) {
        (Some(t), _) => {
            let text = match std::fs::read_to_string(t) {
                Ok(t) => t,
                Err(e) => return fail(format!("{}: {e}", t.display())),
            };
            match source::parse(&text) {
                Ok(r) => roster::envelope(&r),
                Err(e) => {
                    eprintln!("error: {}:{e}", t.display());
                    return EXIT_INVALID;
                }
            }
        }
        (None, Some(p)) => {
            let env = match read(p).and_then(|b| roster::parse_envelope(&b)) {
                Ok(e) => e,
                Err(e) => return fail(format!("{}: {e}", p.display())),
            };
            if env.payload_type != roster::PAYLOAD_TYPE {
                eprintln!("error: {}: payload type `{}` is not a roster's", p.display(), env.payload_type);
                return EXIT_INVALID;
            }
            let valid = <proto::Roster as prost::Message>::decode(env.payload.as_slice())
                .map_err(|e| e.to_string())
                .and_then(|r| roster::validate(&r).map_err(|e| e.to_string()));
            if let Err(e) = valid {
                eprintln!("error: {}: {e}", p.display());
                return EXIT_INVALID;
            }
            env
        }
        (None, None) => return fail("give --toml or --envelope"),
    };
    for k in &a.keys {
        let key = match silkgate::keys::load(k) {
            Ok(k) => k,
            Err(e) => return fail(e),
        };
        roster::add_signature(&mut env, key.signer.signing_key());
        eprintln!("signed with {} ({})", key.signer.key_id(), k.display());
    }
    let text = format!("{:#}\n", to_dsse_json(&env));
    let tmp = a.out.with_extension("tmp");
    if let Err(e) = std::fs::write(&tmp, text).and_then(|()| std::fs::rename(&tmp, &a.out)) {
        return fail(format!("{}: {e}", a.out.display()));
    }
    eprintln!("wrote {} ({} signature(s))", a.out.display(), env.signatures.len());
    0
}

/// Loads and verifies a roster file: the shared part of `roster verify` and
/// `certificate verify`. `Err((code, message))`.
pub fn load_verified(path: &Path, keys: &[String], threshold: u32) -> Result<VerifiedRoster, (u8, String)> {
    let mut trusted = Vec::new();
    for k in keys {
        trusted
            .push(super::key::PublicKey::parse(k).map_err(|e| (super::EXIT_ERROR, format!("--network-key: {e}")))?.key);
    }
    let env = read(path).and_then(|b| roster::parse_envelope(&b)).map_err(|e| (super::EXIT_ERROR, e))?;
    roster::verify(&env, &trusted, threshold).map_err(|e| (EXIT_NEGATIVE, format!("roster {}: {e}", path.display())))
}

pub fn describe(v: &VerifiedRoster) -> String {
    let r = &v.roster;
    let mut out = format!(
        "roster `{}` version {} ({} of {} governance signatures needed; signed by {})\ndigest {}\n",
        r.network_id,
        r.version,
        r.threshold,
        r.governance_keys.len(),
        v.signers.join(", "),
        hex::encode(v.digest)
    );
    for n in &r.nodes {
        out.push_str(&format!(
            "  {} {} regions {} at {}\n",
            n.node_id,
            n.jurisdictions.join(","),
            n.regions.join(","),
            n.grpc_endpoint
        ));
    }
    out
}

fn verify(a: VerifyArgs) -> u8 {
    match load_verified(&a.file, &a.network_keys, a.network_threshold) {
        Ok(v) => {
            print!("{}", describe(&v));
            0
        }
        Err((code, e)) => {
            eprintln!("error: {e}");
            code
        }
    }
}
