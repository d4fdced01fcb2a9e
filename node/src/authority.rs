//! Who may change the law: the policy authorities a node trusts, the signed releases it
//! checks before applying a policy, and the activation entries it logs before deciding
//! under one.
//!
//! The authorities file (`--policy-authorities`) lives outside the policy directory, so
//! whoever can write policies cannot also name who signs them:
//!
//! ```toml
//! [jurisdictions.CN]
//! threshold = 2
//! keys = ["<64 hex digits: raw Ed25519 public key>", "...", "..."]
//! ```
//!
//! A policy file's release is the file beside it with the extension `.release`
//! (`cn.toml` → `cn.release`): a DSSE envelope in JSON (`silkgate policy sign` writes it).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use ed25519_dalek::VerifyingKey;
use prost::Message;
use serde::Deserialize;

use crate::log::{Entry, LogHandle};
use crate::proto;
use silkgate_core::decision::{self, Signer};
use silkgate_core::diag::Diagnostic;
use silkgate_core::policy::{LoadError, Policy, PolicySet};
use silkgate_core::time::UnixTime;
use silkgate_verify::release::{self, ACTIVATION_PAYLOAD_TYPE, Authority, InForce};

/// Largest release file read, in bytes.
pub const MAX_RELEASE_BYTES: usize = 256 << 10;
/// Largest authorities file read, in bytes.
pub const MAX_AUTHORITIES_BYTES: usize = 1 << 20;

/// The policy authority of each jurisdiction, as configured on the node.
#[derive(Clone, Debug, Default)]
pub struct Authorities {
    pub by_jurisdiction: BTreeMap<String, Authority>,
    /// The file they were read from, for messages.
    pub file: PathBuf,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileAuthorities {
    jurisdictions: BTreeMap<String, FileAuthority>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileAuthority {
    threshold: usize,
    keys: Vec<String>,
}

impl Authorities {
    /// Reads the authorities file.
    pub fn load(path: &Path) -> Result<Self, String> {
        let text = crate::loader::read_bounded(path, None, MAX_AUTHORITIES_BYTES)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        Self::parse(path, &text)
    }

    /// Parses the authorities file's text; `path` is for messages.
    pub fn parse(path: &Path, text: &str) -> Result<Self, String> {
        let shown = path.display();
        let f: FileAuthorities = toml::from_str(text).map_err(|e| format!("{shown}: {e}"))?;
        if f.jurisdictions.is_empty() {
            return Err(format!("{shown}: no `[jurisdictions.XX]` table"));
        }
        let mut by_jurisdiction = BTreeMap::new();
        for (j, a) in f.jurisdictions {
            if j.len() != 2 || !j.bytes().all(|b| b.is_ascii_uppercase()) {
                return Err(format!("{shown}: jurisdictions.{j}: not a two-letter upper-case code"));
            }
            let mut keys = Vec::new();
            for (i, k) in a.keys.iter().enumerate() {
                keys.push(parse_key(k).map_err(|e| format!("{shown}: jurisdictions.{j}.keys[{i}]: {e}"))?);
            }
            let authority =
                Authority::new(keys, a.threshold).map_err(|e| format!("{shown}: jurisdictions.{j}: {e}"))?;
            by_jurisdiction.insert(j, authority);
        }
        Ok(Authorities { by_jurisdiction, file: path.to_path_buf() })
    }
}

/// A raw Ed25519 public key as 64 hex digits.
pub fn parse_key(text: &str) -> Result<VerifyingKey, String> {
    let bytes = hex::decode(text.trim()).map_err(|_| format!("`{}` is not hex", text.escape_debug()))?;
    let bytes: [u8; 32] = bytes.try_into().map_err(|_| "not 32 bytes (64 hex digits)".to_string())?;
    VerifyingKey::from_bytes(&bytes).map_err(|_| "not an Ed25519 public key".to_string())
}

/// The release file of a policy file: beside it, extension `.release`.
pub fn release_path(policy_file: &Path) -> PathBuf {
    policy_file.with_extension("release")
}

/// Reads a release file (DSSE JSON).
pub fn read_release(path: &Path) -> Result<proto::SignedDecision, String> {
    let root = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let root = root.canonicalize().map_err(|e| e.to_string())?;
    let text = crate::loader::read_bounded(path, Some(&root), MAX_RELEASE_BYTES)?;
    decision::from_dsse_json(&text)
}

/// A policy's signed release, checked.
#[derive(Clone, Debug)]
pub struct Released {
    pub version: String,
    /// Key ids of the authority keys whose signatures verified.
    pub signers: Vec<String>,
    pub rollback: bool,
    /// The release envelope, protobuf-encoded, as the activation entry carries it.
    pub envelope: Vec<u8>,
}

/// Checks one policy's release: signed by its jurisdiction's authority to its threshold,
/// naming this policy's id, version and digest, and allowed to replace `in_force`.
pub fn check_release(
    policy: &Policy,
    authorities: &Authorities,
    in_force: Option<&Policy>,
) -> Result<Released, String> {
    let j = &policy.jurisdiction;
    let Some(authority) = authorities.by_jurisdiction.get(j) else {
        return Err(format!("no policy authority for `{j}` in {}", authorities.file.display()));
    };
    let path = release_path(Path::new(&policy.file));
    let env = read_release(&path).map_err(|e| format!("release {}: {e}", path.display()))?;
    let verified =
        release::verify_release(&env, authority, j).map_err(|e| format!("release {}: {e}", path.display()))?;
    let r = &verified.release;
    let mismatch = |what: &str, got: &str, want: &str| {
        format!("release {}: {what} is `{got}` but the policy file says `{want}`", path.display())
    };
    // The digest first: an edit without a new release shows as this.
    if r.policy_sha256 != policy.digest {
        return Err(format!(
            "release {}: signed digest {} differs from the digest of the files on disk, {}",
            path.display(),
            hex::encode(&r.policy_sha256),
            policy.digest_hex
        ));
    }
    if r.policy_id != policy.id {
        return Err(mismatch("policy id", &r.policy_id, &policy.id));
    }
    if r.version != policy.version {
        return Err(mismatch("version", &r.version, &policy.version));
    }
    let old = in_force.map(|p| InForce { version: &p.version, sha256: &p.digest });
    release::check_succession(r, old).map_err(|e| format!("release {}: {e}", path.display()))?;
    Ok(Released {
        version: r.version.clone(),
        signers: verified.signers,
        rollback: r.rollback,
        envelope: env.encode_to_vec(),
    })
}

/// Checks the release of every policy in `set` against the set in force (`None` at
/// start). Every error is collected, as a diagnostic on the policy file.
pub fn check_set(
    set: &PolicySet,
    authorities: &Authorities,
    in_force: Option<&PolicySet>,
) -> Result<BTreeMap<String, Released>, Vec<Diagnostic>> {
    let mut released = BTreeMap::new();
    let mut errors = Vec::new();
    for (j, p) in &set.policies {
        let old = in_force.and_then(|s| s.get(j)).map(|p| p.as_ref());
        match check_release(p, authorities, old) {
            Ok(r) => {
                released.insert(j.clone(), r);
            }
            Err(e) => errors.push(Diagnostic::file(&p.file, e)),
        }
    }
    if errors.is_empty() { Ok(released) } else { Err(errors) }
}

/// What an activation entry needs besides the policy.
pub struct Activator<'a> {
    pub node_id: &'a str,
    pub signer: &'a Signer,
    pub log: &'a LogHandle,
}

/// The activation entry of `policy`, signed by the node key.
pub fn activation(
    policy: &Policy,
    release: Option<&Released>,
    node_id: &str,
    signer: &Signer,
    at: UnixTime,
) -> proto::SignedDecision {
    let a = proto::PolicyActivation {
        jurisdiction: policy.jurisdiction.clone(),
        policy_id: policy.id.clone(),
        version: policy.version.clone(),
        policy_sha256: policy.digest.to_vec(),
        release: release.map(|r| r.envelope.clone()).unwrap_or_default(),
        activated_at: Some(at.to_timestamp()),
        node_id: node_id.to_string(),
        key_id: signer.key_id().to_string(),
    };
    decision::sign_as(ACTIVATION_PAYLOAD_TYPE, &a, signer)
}

/// A policy set about to be enforced: its releases and waivers checked, the
/// jurisdictions whose policy changed and the waivers not yet logged, still to be
/// activated.
pub struct Prepared {
    pub set: PolicySet,
    pub releases: BTreeMap<String, Released>,
    /// Jurisdictions whose digest differs from the set in force (all of them at start).
    pub changed: Vec<String>,
    pub waivers: Vec<crate::waivers::Loaded>,
    /// Problems that did not refuse the set (waivers of jurisdictions not enforced).
    pub warnings: Vec<Diagnostic>,
}

/// Checks a freshly loaded `set` against the set `in_force` (`None` at start): with
/// `authorities`, every policy's release and, with `waiver_dir`, every waiver (refusing
/// the whole set on any error).
pub fn prepare(
    set: PolicySet,
    in_force: Option<&PolicySet>,
    authorities: Option<&Authorities>,
    waiver_dir: Option<&Path>,
) -> Result<Prepared, LoadError> {
    let releases = match authorities {
        Some(a) => check_set(&set, a, in_force).map_err(|diagnostics| LoadError { diagnostics })?,
        None => BTreeMap::new(),
    };
    let (waivers, warnings) = match (waiver_dir, authorities) {
        (None, _) => (Vec::new(), Vec::new()),
        (Some(dir), Some(a)) => crate::waivers::load(dir, a, &set).map_err(|diagnostics| LoadError { diagnostics })?,
        (Some(dir), None) => {
            let msg = "waivers need policy authorities to check them (--policy-authorities)";
            return Err(LoadError { diagnostics: vec![Diagnostic::file(&dir.display().to_string(), msg)] });
        }
    };
    let changed = set
        .policies
        .iter()
        .filter(|(j, p)| in_force.and_then(|o| o.get(j)).is_none_or(|o| o.digest != p.digest))
        .map(|(j, _)| j.clone())
        .collect();
    Ok(Prepared { set, releases, changed, waivers, warnings })
}

/// The log index of a waiver already logged under the set in force.
fn logged_waiver(in_force: Option<&PolicySet>, digest: &[u8; 32]) -> Option<u64> {
    in_force?.waivers.values().flatten().find(|w| &w.verified.digest == digest)?.log_index
}

/// What one group of activation entries got: the log index of each changed
/// jurisdiction's activation and of each newly logged waiver (by digest).
#[derive(Default)]
pub struct Logged {
    pub activations: BTreeMap<String, u64>,
    pub waivers: BTreeMap<[u8; 32], u64>,
}

impl Prepared {
    /// Logs, as one group, the changed jurisdictions' activations and the waivers not
    /// logged before, and returns once they are durable, with their log indexes. `dir`
    /// names a failure.
    pub async fn log_activations(
        &self,
        in_force: Option<&PolicySet>,
        a: &Activator<'_>,
        at: UnixTime,
        dir: &Path,
    ) -> Result<Logged, LoadError> {
        let fail = |e: crate::log::LogError| LoadError {
            diagnostics: vec![Diagnostic::file(
                &dir.display().to_string(),
                format!("cannot log the policy activations: {e}"),
            )],
        };
        let changed: Vec<&Policy> = self.changed.iter().filter_map(|j| self.set.get(j)).map(|p| p.as_ref()).collect();
        let new_waivers: Vec<&crate::waivers::Loaded> =
            self.waivers.iter().filter(|w| logged_waiver(in_force, &w.verified.digest).is_none()).collect();
        let mut entries: Vec<Entry> = changed
            .iter()
            .map(|p| {
                let env = activation(p, self.releases.get(&p.jurisdiction), a.node_id, a.signer, at);
                Entry { data: env.encode_to_vec().into(), id: None }
            })
            .collect();
        // The waiver's own envelope, as its authority signed it.
        entries.extend(new_waivers.iter().map(|w| Entry { data: w.envelope.clone().into(), id: None }));
        if entries.is_empty() {
            return Ok(Logged::default());
        }
        let first = a.log.append(entries).await.map_err(fail)?;
        let activations = changed.iter().map(|p| p.jurisdiction.clone()).zip(first..).collect();
        let after = first + changed.len() as u64;
        let waivers = new_waivers.iter().map(|w| w.verified.digest).zip(after..).collect();
        Ok(Logged { activations, waivers })
    }

    /// The set to swap in and its releases. With `logged` (a node that keeps a log), the
    /// set names each jurisdiction's activation (the new entries for changed ones, the
    /// entries in force for the others) and each waiver's entry.
    pub fn finish(
        mut self,
        in_force: Option<&PolicySet>,
        logged: Option<Logged>,
    ) -> (PolicySet, BTreeMap<String, Released>) {
        let keeps_log = logged.is_some();
        let logged = logged.unwrap_or_default();
        if keeps_log {
            let mut activations = logged.activations;
            for j in self.set.policies.keys() {
                if let Some(&i) = in_force.and_then(|o| o.activations.get(j))
                    && !activations.contains_key(j)
                {
                    activations.insert(j.clone(), i);
                }
            }
            self.set.activations = activations;
        }
        for w in self.waivers {
            let digest = w.verified.digest;
            let log_index = if keeps_log {
                logged.waivers.get(&digest).copied().or_else(|| logged_waiver(in_force, &digest))
            } else {
                None
            };
            let j = w.verified.waiver.jurisdiction.clone();
            let held = std::sync::Arc::new(silkgate_core::waiver::Waiver { verified: w.verified, log_index });
            self.set.waivers.entry(j).or_default().push(held);
        }
        (self.set, self.releases)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_authorities_file_is_checked_field_by_field() {
        let p = Path::new("auth.toml");
        let k = hex::encode(ed25519_dalek::SigningKey::from_bytes(&[1; 32]).verifying_key().as_bytes());
        let ok = Authorities::parse(p, &format!("[jurisdictions.CN]\nthreshold = 1\nkeys = [\"{k}\"]\n")).unwrap();
        assert_eq!(ok.by_jurisdiction["CN"].threshold, 1);
        for (text, want) in [
            (format!("[jurisdictions.CN]\nthreshold = 0\nkeys = [\"{k}\"]\n"), "jurisdictions.CN: threshold"),
            (format!("[jurisdictions.CN]\nthreshold = 2\nkeys = [\"{k}\"]\n"), "jurisdictions.CN: threshold"),
            (format!("[jurisdictions.CN]\nthreshold = 2\nkeys = [\"{k}\", \"{k}\"]\n"), "listed twice"),
            ("[jurisdictions.CN]\nthreshold = 1\nkeys = [\"zz\"]\n".to_string(), "jurisdictions.CN.keys[0]"),
            (format!("[jurisdictions.cn]\nthreshold = 1\nkeys = [\"{k}\"]\n"), "jurisdictions.cn: not"),
            ("jurisdictions = {}\n".to_string(), "no `[jurisdictions.XX]`"),
            (format!("[jurisdictions.CN]\nthreshold = 1\nkey = [\"{k}\"]\n"), "unknown field"),
        ] {
            let e = Authorities::parse(p, &text).unwrap_err();
            assert!(e.starts_with("auth.toml: ") && e.contains(want), "{e}");
        }
    }
}
