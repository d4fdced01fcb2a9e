//! Sealing a log: its files move to `sealed/N/`, and the next start begins a new log
//! under the next epoch's origin.
//!
//! Atomic by roll-forward: the files are first moved into `sealed/N.partial/`, which is
//! then renamed to `sealed/N`. A crash at any point leaves either the unsealed log or a
//! `N.partial` directory; opening the log (or sealing again) finishes a partial seal
//! before anything else, so the result is always the old state or the new, each
//! verifiable.

use std::path::{Path, PathBuf};

use super::storage::{self, Kind, Storage};
use super::store::LogError;

/// The files of one log, in the order they are moved (origin last: a log directory
/// without `origin` holds no acknowledged entry).
const FILES: [&str; 4] = ["entries", "checkpoints", "checkpoint", "origin"];

const PARTIAL: &str = ".partial";

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> LogError + '_ {
    move |source| LogError::Io { path: path.to_path_buf(), source }
}

/// The sealed logs in `dir/sealed`: their numbers, in order.
pub fn sealed(fs: &dyn Storage, dir: &Path) -> Result<Vec<u64>, LogError> {
    let s = dir.join("sealed");
    if fs.kind(&s).map_err(io(&s))? != Some(Kind::Dir) {
        return Ok(Vec::new());
    }
    let mut n: Vec<u64> = fs.list(&s).map_err(io(&s))?.iter().filter_map(|name| name.parse().ok()).collect();
    n.sort_unstable();
    Ok(n)
}

/// Finishes a seal that a crash interrupted, if there is one.
pub fn finish(fs: &dyn Storage, dir: &Path) -> Result<(), LogError> {
    let s = dir.join("sealed");
    if fs.kind(&s).map_err(io(&s))? != Some(Kind::Dir) {
        return Ok(());
    }
    for name in fs.list(&s).map_err(io(&s))? {
        if let Some(n) = name.strip_suffix(PARTIAL).and_then(|n| n.parse::<u64>().ok()) {
            tracing::warn!(log_dir = %dir.display(), sealed = n, "finishing a seal interrupted by a crash");
            move_into(fs, dir, &s.join(&name), &s.join(n.to_string()))?;
        }
    }
    Ok(())
}

/// Seals the log in `dir` (the node must be stopped). Returns the sealed directory.
pub fn seal(fs: &dyn Storage, dir: &Path) -> Result<PathBuf, LogError> {
    finish(fs, dir)?;
    let origin = dir.join("origin");
    if fs.kind(&origin).map_err(io(&origin))?.is_none() {
        return Err(LogError::Invalid(format!("{}: no log to seal (no `origin` file)", dir.display())));
    }
    let s = dir.join("sealed");
    storage::create_dir_all(fs, &s).map_err(io(&s))?;
    let n = sealed(fs, dir)?.last().copied().unwrap_or(0) + 1;
    let partial = s.join(format!("{n}{PARTIAL}"));
    fs.create_dir(&partial).map_err(io(&partial))?;
    fs.sync_dir(&s).map_err(io(&s))?;
    let target = s.join(n.to_string());
    move_into(fs, dir, &partial, &target)?;
    Ok(target)
}

/// Moves the log's files from `dir` into `partial`, then renames it to `target`.
fn move_into(fs: &dyn Storage, dir: &Path, partial: &Path, target: &Path) -> Result<(), LogError> {
    for name in FILES {
        let from = dir.join(name);
        if fs.kind(&from).map_err(io(&from))?.is_some() {
            fs.rename(&from, &partial.join(name)).map_err(io(&from))?;
        }
    }
    // One sync makes the renames durable: each touches both directories, and a rename
    // is one journal operation (the crash simulation shows the second sync adds
    // nothing).
    fs.sync_dir(dir).map_err(io(dir))?;
    fs.rename(partial, target).map_err(io(partial))?;
    let s = storage::parent(target);
    fs.sync_dir(&s).map_err(io(&s))
}
