//! The waiver directory (`--waiver-dir`): every `*.waiver` file in it (a DSSE envelope in
//! JSON, signed by a jurisdiction's policy authority) is read, checked against its
//! authority and against the policy it waives rules of, or the whole directory is refused.

use std::collections::BTreeMap;
use std::path::Path;

use prost::Message;

use crate::authority::Authorities;
use silkgate_core::decision;
use silkgate_core::diag::Diagnostic;
use silkgate_core::policy::PolicySet;
use silkgate_core::waiver::{VerifiedWaiver, check_against};
use silkgate_verify::waiver::{jurisdiction_of, verify_waiver};

/// Most `*.waiver` files a directory may hold.
pub const MAX_WAIVER_FILES: usize = 1_000;
/// Largest waiver file, in bytes.
pub const MAX_WAIVER_BYTES: usize = 256 << 10;

/// A waiver read from the directory, checked.
#[derive(Clone, Debug)]
pub struct Loaded {
    pub verified: VerifiedWaiver,
    /// The envelope, protobuf-encoded: what the log entry holds.
    pub envelope: Vec<u8>,
    pub file: String,
}

/// Reads and checks every waiver in `dir` for the policies of `set`. A waiver for a
/// jurisdiction the node does not enforce is skipped with a warning; any other problem is
/// an error naming the file, and refuses the whole directory.
pub fn load(
    dir: &Path,
    authorities: &Authorities,
    set: &PolicySet,
) -> Result<(Vec<Loaded>, Vec<Diagnostic>), Vec<Diagnostic>> {
    let shown = dir.display().to_string();
    let entries = std::fs::read_dir(dir).map_err(|e| vec![Diagnostic::file(&shown, format!("cannot read: {e}"))])?;
    let mut files: Vec<_> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.extension().is_some_and(|x| x == "waiver")
                && !p.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.'))
        })
        .take(MAX_WAIVER_FILES + 1)
        .collect();
    if files.len() > MAX_WAIVER_FILES {
        return Err(vec![Diagnostic::file(&shown, format!("more than {MAX_WAIVER_FILES} waiver files"))]);
    }
    files.sort();
    let root = dir.canonicalize().map_err(|e| vec![Diagnostic::file(&shown, e.to_string())])?;
    let mut loaded: Vec<Loaded> = Vec::new();
    let mut errors = Vec::new();
    let mut warnings = Vec::new();
    for path in files {
        let file = path.display().to_string();
        let one = || -> Result<Option<Loaded>, String> {
            let text = crate::loader::read_bounded(&path, Some(&root), MAX_WAIVER_BYTES)?;
            let env = decision::from_dsse_json(&text)?;
            let j = jurisdiction_of(&env).map_err(|e| e.to_string())?;
            let Some(policy) = set.get(&j) else {
                return Ok(None);
            };
            let Some(authority) = authorities.by_jurisdiction.get(&j) else {
                return Err(format!("no policy authority for `{j}` in {}", authorities.file.display()));
            };
            let verified = verify_waiver(&env, authority, &j).map_err(|e| e.to_string())?;
            check_against(&verified, policy)?;
            Ok(Some(Loaded { verified, envelope: env.encode_to_vec(), file: file.clone() }))
        };
        match one() {
            Ok(Some(l)) => {
                if let Some(first) = loaded.iter().find(|o| o.verified.digest == l.verified.digest) {
                    errors.push(Diagnostic::file(&file, format!("the same waiver as {}", first.file)));
                } else {
                    loaded.push(l);
                }
            }
            Ok(None) => warnings.push(Diagnostic::warning(Diagnostic::file(
                &file,
                "a waiver for a jurisdiction this node does not enforce; ignored",
            ))),
            Err(e) => errors.push(Diagnostic::file(&file, format!("waiver: {e}"))),
        }
    }
    if errors.is_empty() { Ok((loaded, warnings)) } else { Err(errors) }
}

/// Counts of waivers by state at `at`: loaded, in force, and in force but expiring
/// within seven days.
pub fn counts(set: &PolicySet, at: silkgate_core::time::UnixTime) -> (usize, usize, usize) {
    let all = || set.waivers.values().flatten();
    let in_force = || all().filter(|w| silkgate_core::waiver::in_force(&w.verified, at));
    let soon = in_force().filter(|w| w.verified.expires.secs - at.secs <= 7 * 86_400).count();
    (all().count(), in_force().count(), soon)
}

/// Waivers grouped by jurisdiction, for the set.
pub fn by_jurisdiction(loaded: &[Loaded]) -> BTreeMap<String, Vec<&Loaded>> {
    let mut m: BTreeMap<String, Vec<&Loaded>> = BTreeMap::new();
    for l in loaded {
        m.entry(l.verified.waiver.jurisdiction.clone()).or_default().push(l);
    }
    m
}

/// Adds the waivers of `dir`, checked with `authorities`, to `set` (for the offline
/// commands: `eval` and `diff`; nothing is logged, so they name no log index). Any
/// problem refuses them all, as a node would refuse the directory.
pub fn attach(mut set: PolicySet, authorities: &Path, dir: &Path) -> Result<PolicySet, String> {
    let authorities = Authorities::load(authorities)?;
    let (loaded, _) = load(dir, &authorities, &set).map_err(|d| silkgate_core::policy::render(&d))?;
    for l in loaded {
        let j = l.verified.waiver.jurisdiction.clone();
        let held = silkgate_core::waiver::Waiver { verified: l.verified, log_index: None };
        set.waivers.entry(j).or_default().push(std::sync::Arc::new(held));
    }
    Ok(set)
}
