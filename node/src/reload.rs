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

use crate::loader;
use crate::policy::PolicySet;
use crate::service::NodeState;
use crate::time::Instant;

/// What NodeInfo and metrics say about reloads.
#[derive(Clone, Debug, Default)]
pub struct ReloadStatus {
    pub reloads: u64,
    pub errors: u64,
    /// When each jurisdiction's policy in force was loaded.
    pub loaded_at: BTreeMap<String, Instant>,
    /// The last failed reload's errors for each jurisdiction's files.
    pub jurisdiction_errors: BTreeMap<String, String>,
    /// The last failed reload's full report; empty after a successful reload.
    pub last_error: String,
    pub last_attempt: Option<Instant>,
}

impl ReloadStatus {
    pub fn new(set: &PolicySet, at: Instant) -> Self {
        ReloadStatus { loaded_at: set.policies.keys().map(|j| (j.clone(), at)).collect(), ..Default::default() }
    }
}

/// SHA-256 over the names and contents of every file under `dir`, following symlinks
/// and skipping hidden entries other than Kubernetes' `..data` link.
pub fn fingerprint(dir: &Path) -> [u8; 32] {
    fn walk(dir: &Path, h: &mut Sha256, depth: usize) {
        let Ok(entries) = std::fs::read_dir(dir) else { return };
        let mut paths: Vec<PathBuf> = entries.filter_map(Result::ok).map(|e| e.path()).collect();
        paths.sort();
        for p in paths {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if name.starts_with('.') && name != "..data" {
                continue;
            }
            match std::fs::metadata(&p) {
                Ok(m) if m.is_dir() && depth < 4 => walk(&p, h, depth + 1),
                Ok(m) if m.is_file() => {
                    h.update(p.to_string_lossy().as_bytes());
                    h.update(std::fs::read(&p).unwrap_or_default());
                }
                _ => h.update(b"?"),
            }
        }
    }
    let mut h = Sha256::new();
    walk(dir, &mut h, 0);
    h.finalize().into()
}

pub struct Watcher {
    pub dir: PathBuf,
    pub only: Option<Vec<String>>,
    pub state: Arc<NodeState>,
    pub status: Arc<Mutex<ReloadStatus>>,
}

impl Watcher {
    /// Loads the directory and swaps it in when it is valid. Returns whether it was.
    pub fn reload(&self) -> bool {
        let now = Instant::now();
        let result = loader::load_dir(&self.dir, self.only.as_deref());
        let mut status = self.status.lock().unwrap_or_else(|e| e.into_inner());
        status.last_attempt = Some(now);
        match result {
            Ok(set) => {
                let old = self.state.policies.load();
                for (j, p) in &set.policies {
                    let same = old.get(j).is_some_and(|o| o.digest == p.digest);
                    if !same {
                        status.loaded_at.insert(j.clone(), now);
                        tracing::info!(
                            jurisdiction = %j,
                            policy.version = %p.version,
                            policy.digest = %p.digest_hex,
                            rules = p.rules.len(),
                            "policy reloaded"
                        );
                    }
                }
                status.loaded_at.retain(|j, _| set.policies.contains_key(j));
                status.reloads += 1;
                status.last_error.clear();
                status.jurisdiction_errors.clear();
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

    /// Polls the directory every `interval`, and reloads at once when `force` fires.
    pub async fn run(self, interval: Duration, mut force: tokio::sync::mpsc::Receiver<()>) {
        let dir = self.dir.clone();
        let mut last = tokio::task::spawn_blocking(move || fingerprint(&dir)).await.unwrap_or_default();
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let this = Arc::new(self);
        loop {
            let forced = tokio::select! {
                _ = tick.tick() => false,
                got = force.recv() => got.is_some(),
            };
            let dir = this.dir.clone();
            let Ok(now) = tokio::task::spawn_blocking(move || fingerprint(&dir)).await else { continue };
            if forced || now != last {
                last = now;
                let w = this.clone();
                let _ = tokio::task::spawn_blocking(move || w.reload()).await;
            }
        }
    }
}
