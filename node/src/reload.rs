//! Live policy reload: watch the policy directory and swap in a new policy set when it
//! changes and loads cleanly; otherwise keep the last good set and report the error.
//!
//! The watcher polls a fingerprint of every file under the directory (contents hashed,
//! symlinks followed) instead of using inotify: polling sees in-place edits, atomic
//! renames, new and deleted files, bind mounts whose host side changed, and the
//! Kubernetes ConfigMap `..data` symlink swap alike, at the cost of reading a few
//! hundred kilobytes twice a second.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::authority::{self, Activator, Released};
use crate::loader;
use crate::service::NodeState;
use silkgate_core::diag::Diagnostic;
use silkgate_core::policy::{LoadError, PolicySet, data};
use silkgate_core::time::UnixTime;

/// What NodeInfo and metrics say about reloads.
#[derive(Clone, Debug, Default)]
pub struct ReloadStatus {
    pub reloads: u64,
    pub errors: u64,
    /// When each jurisdiction's policy in force was loaded.
    pub loaded_at: BTreeMap<String, UnixTime>,
    /// The last failed reload's errors for each jurisdiction's files.
    pub jurisdiction_errors: BTreeMap<String, String>,
    /// The last failed reload's full report; empty after a successful reload.
    pub last_error: String,
    pub last_attempt: Option<UnixTime>,
    /// With policy authorities: the signed release of each policy in force.
    pub releases: BTreeMap<String, Released>,
}

impl ReloadStatus {
    pub fn new(set: &PolicySet, at: UnixTime) -> Self {
        ReloadStatus { loaded_at: set.policies.keys().map(|j| (j.clone(), at)).collect(), ..Default::default() }
    }
}

/// SHA-256 over the names and contents of every file under `dir`, following symlinks
/// that stay inside it and skipping hidden entries other than Kubernetes' `..data` link.
/// Bounded like the loader: files are read as it reads them (regular files inside the
/// directory, at most [`data::MAX_FILE_BYTES`] each, never blocking), at most
/// [`MAX_FINGERPRINT_ENTRIES`] entries and four levels down.
pub fn fingerprint(dir: &Path) -> [u8; 32] {
    fn walk(root: &Path, dir: &Path, h: &mut Sha256, depth: usize, budget: &mut usize) {
        let Ok(entries) = std::fs::read_dir(dir) else { return };
        let mut paths: Vec<PathBuf> = entries.filter_map(Result::ok).map(|e| e.path()).take(*budget).collect();
        paths.sort();
        for p in paths {
            if *budget == 0 {
                h.update(b"truncated");
                return;
            }
            *budget -= 1;
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if name.starts_with('.') && name != "..data" {
                continue;
            }
            h.update(p.to_string_lossy().as_bytes());
            let inside = std::fs::canonicalize(&p).is_ok_and(|real| real.starts_with(root));
            match std::fs::metadata(&p) {
                Ok(m) if m.is_dir() && inside && depth < 4 => walk(root, &p, h, depth + 1, budget),
                Ok(m) if m.is_file() => match loader::read_bytes_bounded(&p, Some(root), data::MAX_FILE_BYTES) {
                    Ok(bytes) => h.update(bytes),
                    Err(e) => h.update(e.as_bytes()),
                },
                _ => h.update(b"?"),
            }
        }
    }
    let mut h = Sha256::new();
    if let Ok(root) = std::fs::canonicalize(dir) {
        let mut budget = MAX_FINGERPRINT_ENTRIES;
        walk(&root, &root, &mut h, 0, &mut budget);
    }
    h.finalize().into()
}

/// Entries the reload fingerprint looks at; a directory with more is seen only in part.
pub const MAX_FINGERPRINT_ENTRIES: usize = 10_000;

pub struct Watcher {
    pub dir: PathBuf,
    pub only: Option<Vec<String>>,
    pub state: Arc<NodeState>,
    pub status: Arc<Mutex<ReloadStatus>>,
}

impl Watcher {
    /// Loads the directory and swaps it in when it is valid. Returns whether it was.
    pub fn reload(&self) -> bool {
        let now = UnixTime::now();
        let old = self.state.policies.load_full();
        let result = loader::load_dir(&self.dir, self.only.as_deref())
            .and_then(|set| {
                authority::prepare(set, Some(&old), self.state.authorities.as_deref(), self.state.waiver_dir.as_deref())
            })
            .and_then(|prepared| self.activate(prepared, &old, now));
        let mut status = self.status.lock().unwrap_or_else(|e| e.into_inner());
        status.last_attempt = Some(now);
        match result {
            Ok((set, releases)) => {
                for (j, p) in &set.policies {
                    let same = old.get(j).is_some_and(|o| o.digest == p.digest);
                    if !same {
                        status.loaded_at.insert(j.clone(), now);
                        tracing::info!(
                            jurisdiction = %j,
                            policy.version = %p.version,
                            policy.digest = %p.digest_hex,
                            rules = p.rules.len(),
                            activation_index = set.activations.get(j),
                            release.signers = releases.get(j).map(|r| r.signers.join(",")),
                            "policy reloaded"
                        );
                    }
                }
                status.loaded_at.retain(|j, _| set.policies.contains_key(j));
                status.reloads += 1;
                status.last_error.clear();
                status.jurisdiction_errors.clear();
                status.releases = releases;
                self.state.policies.store(Arc::new(set));
                true
            }
            Err(e) => {
                status.errors += 1;
                status.last_error = e.to_string();
                status.jurisdiction_errors.clear();
                let old = self.state.policies.load();
                for d in e.diagnostics.iter().filter(|d| d.is_error()) {
                    // Attribute each error to the jurisdiction whose policy file it is in.
                    if let Some(p) = old.policies.values().find(|p| p.file == d.file) {
                        let entry = status.jurisdiction_errors.entry(p.jurisdiction.clone()).or_default();
                        if !entry.is_empty() {
                            entry.push('\n');
                        }
                        entry.push_str(&d.to_string());
                    }
                }
                tracing::error!(errors = %e, "policy reload rejected; the last good policies stay in force");
                false
            }
        }
    }

    /// Logs the activations of a prepared set (blocking until they are durable) when the
    /// node keeps a log. Runs on a blocking thread of the node's runtime.
    fn activate(
        &self,
        prepared: authority::Prepared,
        old: &PolicySet,
        now: UnixTime,
    ) -> Result<(PolicySet, BTreeMap<String, Released>), LoadError> {
        let Some(log) = &self.state.log else {
            return Ok(prepared.finish(Some(old), None));
        };
        let a = Activator { node_id: &self.state.node_id, signer: &self.state.signer, log };
        let handle = tokio::runtime::Handle::try_current().map_err(|e| LoadError {
            diagnostics: vec![Diagnostic::file(&self.dir.display().to_string(), format!("no runtime to log on: {e}"))],
        })?;
        let logged = handle.block_on(prepared.log_activations(Some(old), &a, now, &self.dir))?;
        Ok(prepared.finish(Some(old), Some(logged)))
    }

    /// Sets the waiver gauges: they change with the clock as well as with reloads.
    fn update_waiver_metrics(&self) {
        let set = self.state.policies.load();
        let (_, in_force, soon) = crate::waivers::counts(&set, UnixTime::now());
        self.state.metrics.waivers_in_force.set(in_force as i64);
        self.state.metrics.waivers_expiring_7d.set(soon as i64);
    }

    /// Polls the directory every `interval`, and reloads at once when `force` fires.
    pub async fn run(self, interval: Duration, mut force: tokio::sync::mpsc::Receiver<()>) {
        // The policy directory and the waiver directory reload together.
        let dirs: Vec<PathBuf> = std::iter::once(self.dir.clone()).chain(self.state.waiver_dir.clone()).collect();
        let both = move || dirs.iter().map(|d| fingerprint(d)).collect::<Vec<_>>();
        let sum = both.clone();
        let mut last = tokio::task::spawn_blocking(sum).await.unwrap_or_default();
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let this = Arc::new(self);
        loop {
            let forced = tokio::select! {
                _ = tick.tick() => false,
                got = force.recv() => got.is_some(),
            };
            this.update_waiver_metrics();
            let sum = both.clone();
            let Ok(now) = tokio::task::spawn_blocking(sum).await else { continue };
            if forced || now != last {
                last = now;
                let w = this.clone();
                let _ = tokio::task::spawn_blocking(move || w.reload()).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;
    use crate::loader::tests::{policy_dir, policy_text, within_5s};
    use crate::service::NodeState;
    use silkgate_core::decision::Signer;

    fn watcher(dir: &Path, only: Option<&[&str]>) -> Arc<Watcher> {
        let only: Option<Vec<String>> = only.map(|o| o.iter().map(|j| j.to_string()).collect());
        let set = loader::load_dir(dir, only.as_deref()).unwrap_or_else(|e| panic!("{e}"));
        let signer = Arc::new(Signer::new(crate::keys::generate()));
        let state = Arc::new(NodeState::new("n".into(), set, signer, UnixTime::now(), 60, None));
        let status = state.reload.clone();
        Arc::new(Watcher { dir: dir.to_path_buf(), only, state, status })
    }

    /// Reloads (failing the test if that blocks) and returns whether the new set was taken.
    fn reload(w: &Arc<Watcher>) -> bool {
        let w = w.clone();
        within_5s(move || w.reload())
    }

    fn version(w: &Watcher, j: &str) -> Option<String> {
        w.state.policies.load().get(j).map(|p| p.version.clone())
    }

    #[test]
    fn a_policy_file_turned_dangling_symlink_or_directory_fails_the_reload() {
        let dir = policy_dir();
        let w = watcher(dir.path(), None);
        let cn = dir.path().join("cn.toml");
        fs::remove_file(&cn).unwrap();
        std::os::unix::fs::symlink("cn-gone.toml", &cn).unwrap();
        assert!(!reload(&w), "a dangling cn.toml was a successful reload");
        assert_eq!(version(&w, "CN").as_deref(), Some("1"));
        fs::remove_file(&cn).unwrap();
        fs::create_dir(&cn).unwrap();
        assert!(!reload(&w), "a directory cn.toml was a successful reload");
        assert_eq!(version(&w, "CN").as_deref(), Some("1"));
        let status = w.status.lock().unwrap().clone();
        assert!(status.last_error.contains("cn.toml:1:1: error: cannot read policy file"), "{}", status.last_error);
    }

    #[test]
    fn a_fifo_data_file_fails_the_reload_without_blocking_it() {
        let dir = policy_dir();
        let w = watcher(dir.path(), None);
        let path = dir.path().join("data/list.toml");
        fs::remove_file(&path).unwrap();
        let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let d = dir.path().to_path_buf();
        within_5s(move || fingerprint(&d));
        assert!(!reload(&w));
        assert_eq!(version(&w, "CN").as_deref(), Some("1"));
    }

    #[test]
    fn a_node_reloads_its_jurisdictions_whatever_the_state_of_the_others() {
        let dir = policy_dir();
        let w = watcher(dir.path(), Some(&["CN"]));
        fs::write(dir.path().join("sg.toml"), policy_text("SG", "2") + "\n[[rule]\nnot toml\n").unwrap();
        fs::write(dir.path().join("cn.toml"), policy_text("CN", "2")).unwrap();
        assert!(reload(&w), "{}", w.status.lock().unwrap().last_error);
        assert_eq!(version(&w, "CN").as_deref(), Some("2"));
        fs::write(dir.path().join("cn.toml"), policy_text("CN", "3")).unwrap();
        assert!(reload(&w), "{}", w.status.lock().unwrap().last_error);
        assert_eq!(version(&w, "CN").as_deref(), Some("3"));
        // Its own broken file: the reload fails and the last good version stays.
        fs::write(dir.path().join("cn.toml"), policy_text("CN", "4") + "oops").unwrap();
        assert!(!reload(&w));
        assert_eq!(version(&w, "CN").as_deref(), Some("3"));
        let status = w.status.lock().unwrap().clone();
        assert!(status.jurisdiction_errors["CN"].contains("cn.toml:"), "{status:?}");
        assert!(!status.last_error.contains("sg.toml"), "{}", status.last_error);
    }
}
