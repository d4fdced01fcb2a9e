//! `silkgate policy sign` and `silkgate policy verify`: a policy authority's signed
//! releases (README "Signed policy releases").
//!
//! `sign` writes or extends the release file beside a policy file (`cn.toml` →
//! `cn.release`): several signers run it in turn on the same policy, each adding a
//! signature to the same payload. `verify` checks a release as a node with the given
//! authorities would at start.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use prost::Message;
use silkgate::authority::{self, Authorities};
use silkgate::{keys, loader, proto};
use silkgate_core::decision;
use silkgate_core::time::UnixTime;
use silkgate_verify::release::{self, RELEASE_PAYLOAD_TYPE};

use super::{EXIT_INVALID, EXIT_NEGATIVE, fail};

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Subcommand)]
enum Command {
    /// Sign a policy's release (or add a signature to it), written beside the policy.
    Sign(SignArgs),
    /// Check a policy's release against the policy authorities, as a node would at start.
    Verify(VerifyArgs),
    /// Sign a waiver described in a TOML file (or add a signature to it), written as
    /// `FILE.waiver` beside it.
    Waive(WaiveArgs),
}

#[derive(clap::Args)]
struct WaiveArgs {
    /// The waiver, in TOML (README "Waivers").
    file: PathBuf,
    /// The authority's signing key (PKCS#8 PEM).
    #[arg(long)]
    key: PathBuf,
    /// Waiver file [default: FILE with extension `.waiver`].
    #[arg(long)]
    out: Option<PathBuf>,
}

/// A waiver as its authority writes it.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct WaiverFile {
    jurisdiction: String,
    waiver_id: String,
    rules: Vec<String>,
    justification: String,
    ticket: String,
    not_before: toml::value::Datetime,
    expires: toml::value::Datetime,
    scope: ScopeFile,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ScopeFile {
    request_sha256: Option<String>,
    operator_entity_country: Option<String>,
    protocol_name: Option<String>,
    deployment_kind: Option<String>,
}

/// A TOML offset date-time (`2026-12-01T00:00:00Z`) as Unix seconds.
fn unix_secs(name: &str, t: &toml::value::Datetime) -> Result<i64, String> {
    let (Some(d), Some(tm), Some(off)) = (t.date, t.time, t.offset) else {
        return Err(format!("{name}: `{t}` needs a date, a time and an offset, like 2026-12-01T00:00:00Z"));
    };
    let offset_min = match off {
        toml::value::Offset::Z => 0,
        toml::value::Offset::Custom { minutes } => i64::from(minutes),
    };
    let day = i64::from(silkgate_core::time::Day::from_ymd(i32::from(d.year), u32::from(d.month), u32::from(d.day)).0);
    let secs = i64::from(tm.hour) * 3600 + i64::from(tm.minute) * 60 + i64::from(tm.second);
    Ok(day * 86_400 + secs - offset_min * 60)
}

fn waiver_from(w: WaiverFile) -> Result<proto::Waiver, String> {
    let request_sha256 = match &w.scope.request_sha256 {
        None => Vec::new(),
        Some(h) => hex::decode(h).map_err(|_| format!("scope.request_sha256: `{h}` is not hex"))?,
    };
    let deployment_kind = match &w.scope.deployment_kind {
        None => 0,
        Some(k) => proto::DeploymentKind::from_str_name(&format!("DEPLOYMENT_KIND_{}", k.to_ascii_uppercase()))
            .filter(|k| *k != proto::DeploymentKind::Unspecified)
            .ok_or_else(|| format!("scope.deployment_kind: `{k}` is not a deployment kind"))? as i32,
    };
    let ts = |secs| Some(prost_types::Timestamp { seconds: secs, nanos: 0 });
    let waiver = proto::Waiver {
        jurisdiction: w.jurisdiction,
        waiver_id: w.waiver_id,
        rule_ids: w.rules,
        scope: Some(proto::WaiverScope {
            request_sha256,
            operator_entity_country: w.scope.operator_entity_country.unwrap_or_default(),
            protocol_name: w.scope.protocol_name.unwrap_or_default(),
            deployment_kind,
        }),
        justification: w.justification,
        ticket: w.ticket,
        not_before: ts(unix_secs("not_before", &w.not_before)?),
        expires: ts(unix_secs("expires", &w.expires)?),
    };
    silkgate_verify::waiver::check_fields(&waiver).map_err(|e| e.to_string())?;
    Ok(waiver)
}

fn waive(a: WaiveArgs) -> u8 {
    let text = match std::fs::read_to_string(&a.file) {
        Ok(t) => t,
        Err(e) => return fail(format!("{}: {e}", a.file.display())),
    };
    let waiver = match toml::from_str::<WaiverFile>(&text).map_err(|e| e.to_string()).and_then(waiver_from) {
        Ok(w) => w,
        Err(e) => {
            eprintln!("error: {}: {e}", a.file.display());
            return EXIT_INVALID;
        }
    };
    let key = match keys::load(&a.key) {
        Ok(k) => k.signer,
        Err(e) => return fail(e),
    };
    let out = a.out.clone().unwrap_or_else(|| a.file.with_extension("waiver"));
    let payload = waiver.encode_to_vec();
    let existing = match out.exists().then(|| authority::read_release(&out)).transpose() {
        Ok(e) => e,
        Err(e) => return fail(format!("{}: {e}", out.display())),
    };
    let wt = silkgate_verify::waiver::WAIVER_PAYLOAD_TYPE;
    let mut env = match existing {
        Some(env) if env.payload_type == wt && env.payload == payload => env,
        other => {
            if other.is_some() {
                eprintln!("note: {} holds another waiver; replacing it", out.display());
            }
            release::envelope(wt, payload)
        }
    };
    release::add_signature(&mut env, key.signing_key());
    let json = match serde_json::to_string_pretty(&decision::to_dsse_json(&env)) {
        Ok(j) => j + "\n",
        Err(e) => return fail(e),
    };
    if let Err(e) = write_replacing(&out, json.as_bytes()) {
        return fail(format!("{}: {e}", out.display()));
    }
    let digest: [u8; 32] = <sha2::Sha256 as sha2::Digest>::digest(&env.payload).into();
    println!("waiver:     {}", out.display());
    println!("digest:     {}", hex::encode(digest));
    println!("signed by:  {}", key.key_id());
    println!("signatures: {}", env.signatures.len());
    0
}

#[derive(clap::Args)]
struct SignArgs {
    /// The policy file (`policy/cn.toml`); its data files are read as the node reads them.
    policy: PathBuf,
    /// The authority's signing key (PKCS#8 PEM, as `silkgate keygen` writes it).
    #[arg(long)]
    key: PathBuf,
    /// Mark the release as an explicit rollback replacing version `--supersedes`.
    #[arg(long, requires = "supersedes")]
    rollback: bool,
    /// With --rollback: the (higher) version in force this release replaces.
    #[arg(long, requires = "rollback")]
    supersedes: Option<String>,
    /// Release file [default: the policy file with extension `.release`].
    #[arg(long)]
    out: Option<PathBuf>,
}

#[derive(clap::Args)]
struct VerifyArgs {
    /// The policy file; its release is the file beside it with extension `.release`.
    policy: PathBuf,
    /// The policy authorities file, as given to `silkgate serve --policy-authorities`.
    #[arg(long)]
    authorities: PathBuf,
}

pub fn run(args: Args) -> u8 {
    match args.command {
        Command::Sign(a) => sign(a),
        Command::Verify(a) => verify(a),
        Command::Waive(a) => waive(a),
    }
}

fn load_policy(path: &Path) -> Result<silkgate_core::policy::Policy, u8> {
    loader::load_file(path).map_err(|d| {
        eprintln!("{}", silkgate_core::policy::render(&d));
        EXIT_INVALID
    })
}

fn sign(a: SignArgs) -> u8 {
    let policy = match load_policy(&a.policy) {
        Ok(p) => p,
        Err(code) => return code,
    };
    if let Err(e) = release::parse_version(&policy.version) {
        eprintln!("error: {}: version: {e}", a.policy.display());
        return EXIT_INVALID;
    }
    if let Some(s) = &a.supersedes
        && let Err(e) = release::parse_version(s)
    {
        eprintln!("error: --supersedes: {e}");
        return EXIT_INVALID;
    }
    let key = match keys::load(&a.key) {
        Ok(k) => k.signer,
        Err(e) => return fail(e),
    };
    let out = a.out.clone().unwrap_or_else(|| authority::release_path(&a.policy));
    let wanted = proto::PolicyRelease {
        jurisdiction: policy.jurisdiction.clone(),
        policy_id: policy.id.clone(),
        version: policy.version.clone(),
        policy_sha256: policy.digest.to_vec(),
        released_at: None,
        rollback: a.rollback,
        supersedes: a.supersedes.clone().unwrap_or_default(),
    };
    // A release already there for this very policy gets one more signature; any other is
    // replaced by a new one.
    let existing = out.exists().then(|| authority::read_release(&out)).transpose();
    let existing = match existing {
        Ok(e) => e,
        Err(e) => return fail(format!("{}: {e}", out.display())),
    };
    let same = |env: &proto::SignedDecision| {
        env.payload_type == RELEASE_PAYLOAD_TYPE
            && proto::PolicyRelease::decode(env.payload.as_slice())
                .is_ok_and(|r| proto::PolicyRelease { released_at: None, ..r } == wanted)
    };
    let mut env = match existing {
        Some(env) if same(&env) => env,
        other => {
            if other.is_some() {
                eprintln!("note: {} is the release of another policy or version; replacing it", out.display());
            }
            let r = proto::PolicyRelease { released_at: Some(UnixTime::now().to_timestamp()), ..wanted };
            release::envelope(RELEASE_PAYLOAD_TYPE, r.encode_to_vec())
        }
    };
    release::add_signature(&mut env, key.signing_key());
    let json = match serde_json::to_string_pretty(&decision::to_dsse_json(&env)) {
        Ok(j) => j + "\n",
        Err(e) => return fail(e),
    };
    if let Err(e) = write_replacing(&out, json.as_bytes()) {
        return fail(format!("{}: {e}", out.display()));
    }
    println!("release:    {}", out.display());
    println!("policy:     {} {} ({})", policy.id, policy.version, policy.jurisdiction);
    println!("digest:     {}", policy.digest_hex);
    println!("signed by:  {}", key.key_id());
    println!("signatures: {}", env.signatures.len());
    0
}

/// Writes `bytes` to a temporary file beside `path`, syncs it and renames it over `path`,
/// so a node reloading meanwhile reads the old release or the new one, never half.
fn write_replacing(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.tmp"));
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path)
}

fn verify(a: VerifyArgs) -> u8 {
    let authorities = match Authorities::load(&a.authorities) {
        Ok(x) => x,
        Err(e) => return fail(e),
    };
    let policy = match load_policy(&a.policy) {
        Ok(p) => p,
        Err(code) => return code,
    };
    match authority::check_release(&policy, &authorities, None) {
        Ok(r) => {
            println!("valid release of {} {} ({})", policy.id, r.version, policy.jurisdiction);
            println!("digest:    {}", policy.digest_hex);
            println!("signed by: {}", r.signers.join(", "));
            if r.rollback {
                println!("rollback:  yes");
            }
            0
        }
        Err(e) => {
            eprintln!("invalid: {e}");
            EXIT_NEGATIVE
        }
    }
}
