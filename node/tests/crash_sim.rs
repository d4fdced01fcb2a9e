//! The decision log over a simulated file system that crashes at every step.
//!
//! A deterministic workload (groups of entries, some larger than one write, checkpoints,
//! clean restarts, a seal) runs once to count its file-system operations, then again for
//! every operation with a crash just before it. After each crash the file system a
//! restarted machine would see (unsynced writes lost, kept, torn or reordered, unsynced
//! directory changes lost or kept; see `silkgate::log::sim`) is recovered, and:
//! - recovery succeeds (a crash alone never stops the node);
//! - every acknowledged entry is present, at its index, byte for byte;
//! - every checkpoint the log gave out is consistent with the recovered log: its size is
//!   at most the log's, and its root is the root of that prefix;
//! - every origin names one log, and a torn tail that recovery cut is reported with its
//!   byte range (never cut silently);
//! - the recovered log takes new entries, and a crash in that second life is recovered
//!   too (skipped with `CRASH_SIM_FIRST_LIFE_ONLY=1`, for quick experiments).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ed25519_dalek::SigningKey;
use silkgate::log::Entry;
use silkgate::log::sim::SimFs;
use silkgate::log::storage::Storage;
use silkgate::log::{GroupCommit, LogHandle, Store, seal};
use silkgate_core::checkpoint::Checkpoint;
use silkgate_core::decision::Signer;

const DIR: &str = "/data/log";

fn signer() -> Arc<Signer> {
    Arc::new(Signer::new(SigningKey::from_bytes(&[7; 32])))
}

fn commit() -> GroupCommit {
    // No timers: the workload alone decides when checkpoints are signed, so every run
    // makes the same operations in the same order.
    GroupCommit { delay: Duration::ZERO, siblings: 2, checkpoint_interval: Duration::from_secs(3600) }
}

/// What the workload was told: acknowledged entries and checkpoints given out, by origin.
#[derive(Default, Debug, Clone)]
struct Told {
    acked: BTreeMap<String, Vec<(u64, Vec<u8>)>>,
    signed: BTreeMap<String, Vec<Checkpoint>>,
    /// Origins of logs a finished `seal` sealed.
    sealed: Vec<String>,
}

fn entry_data(group: u64, i: u64, big: bool) -> Vec<u8> {
    // Entries are at most 65,535 bytes (a tlog-tiles entry bundle's limit).
    let len = if big { 60_000 } else { 40 + ((group * 7 + i * 13) % 200) as usize };
    let mut d = format!("entry {group}/{i} ").into_bytes();
    d.resize(len, b'a' + (group % 26) as u8);
    d
}

/// Opens the log in DIR as the node does: finish a seal, pick the epoch, recover.
fn open(fs: &SimFs) -> Result<Store, String> {
    let dir = Path::new(DIR);
    silkgate::log::storage::create_dir_all(fs, dir).map_err(|e| e.to_string())?;
    seal::finish(fs, dir).map_err(|e| e.to_string())?;
    let epoch = seal::sealed(fs, dir).map_err(|e| e.to_string())?.last().copied().unwrap_or(0) + 1;
    let fs_dyn: Arc<dyn Storage> = Arc::new(fs.clone());
    Store::open_on(fs_dyn, dir, &format!("silkgate/sim/{epoch}"), &signer().verifying_key()).map_err(|e| e.to_string())
}

/// One life of the node: open, append `groups` groups, checkpoint every third, close.
fn life(fs: &SimFs, rt: &tokio::runtime::Runtime, told: &mut Told, first: u64, groups: u64) -> Result<(), String> {
    let store = open(fs)?;
    let origin = store.origin.clone();
    let log = LogHandle::start(store, signer(), commit()).map_err(|e| e.to_string())?;
    for g in first..first + groups {
        let n = 1 + g % 3;
        // One group larger than a write: it is written and synced in several steps.
        let big = g == 4;
        let data: Vec<Vec<u8>> = (0..if big { 40 } else { n }).map(|i| entry_data(g, i, big)).collect();
        let entries = data.iter().map(|d| Entry { data: d.clone().into(), id: None }).collect();
        let index = rt.block_on(log.append(entries)).map_err(|e| e.to_string())?;
        let acked = told.acked.entry(origin.clone()).or_default();
        for (i, d) in data.into_iter().enumerate() {
            acked.push((index + i as u64, d));
        }
        if g % 3 == 2 {
            let (_, cp) = log.checkpoint().map_err(|e| e.to_string())?;
            told.signed.entry(origin.clone()).or_default().push(cp);
        }
    }
    log.close().map_err(|e| e.to_string())?;
    // The checkpoint stored at close is one a client may have read: count it as given out.
    let (_, cp) = log.checkpoint().map_err(|e| e.to_string())?;
    told.signed.entry(origin).or_default().push(cp);
    Ok(())
}

/// The whole workload: three lives, a seal after the second.
fn workload(fs: &SimFs, rt: &tokio::runtime::Runtime, told: &mut Told) -> Result<(), String> {
    life(fs, rt, told, 0, 6)?;
    life(fs, rt, told, 6, 4)?;
    let origin = String::from_utf8(fs.contents(&Path::new(DIR).join("origin")).unwrap_or_default()).unwrap();
    seal::seal(fs, Path::new(DIR)).map_err(|e| e.to_string())?;
    told.sealed.push(origin.trim().to_string());
    life(fs, rt, told, 10, 4)
}

/// The last non-zero byte of the entries file, plus one: where its data ends.
fn data_end(fs: &SimFs, dir: &Path) -> u64 {
    fs.contents(&dir.join("entries")).map_or(0, |b| b.iter().rposition(|&x| x != 0).map_or(0, |i| i as u64 + 1))
}

/// The notes of a `checkpoints` history file.
fn history(bytes: &[u8]) -> Vec<&[u8]> {
    let mut notes = Vec::new();
    let mut pos = 0;
    while pos + 4 <= bytes.len() {
        let n = u32::from_be_bytes(bytes[pos..pos + 4].try_into().unwrap()) as usize;
        let Some(note) = bytes.get(pos + 4..pos + 4 + n) else { break };
        notes.push(note);
        pos += 4 + n;
    }
    notes
}

/// Checks one recovered log against what was told under its origin.
fn check_log(fs: &SimFs, store: &Store, told: &Told, before_end: u64, what: &str) {
    let origin = &store.origin;
    // The stored checkpoint is in the history: a note is appended there first.
    if let Some(note) = fs.contents(&store.dir.join("checkpoint")).filter(|n| !n.is_empty()) {
        let h = fs.contents(&store.dir.join("checkpoints")).unwrap_or_default();
        assert!(
            history(&h).contains(&note.as_slice()),
            "{what}: {origin}: the stored checkpoint is not in the history"
        );
    }
    let len = store.index.tree.len();
    for (index, data) in told.acked.get(origin).into_iter().flatten() {
        assert!(*index < len, "{what}: {origin}: acknowledged entry {index} lost (log has {len})");
        let base = store.index.offsets.base(*index).unwrap();
        let got = Store::read_entry(store.file.as_ref(), base, *index).unwrap();
        assert!(got == *data, "{what}: {origin}: entry {index} differs from what was acknowledged");
    }
    for cp in told.signed.get(origin).into_iter().flatten() {
        assert!(cp.size <= len, "{what}: {origin}: a checkpoint of size {} was given out; the log has {len}", cp.size);
        assert_eq!(store.index.tree.root_at(cp.size).unwrap(), cp.root, "{what}: {origin}: fork at size {}", cp.size);
    }
    if before_end > store.end {
        assert_eq!(store.torn, Some((store.end, before_end)), "{what}: {origin}: bytes were cut without a report");
    } else {
        assert_eq!(store.torn, None, "{what}: {origin}: a cut was reported but nothing was cut");
    }
}

/// Recovers every log in DIR (the active one and the sealed ones) and checks each.
fn check(fs: &SimFs, told: &Told, what: &str) {
    let dir = PathBuf::from(DIR);
    // A seal a crash interrupted is finished first; it moves files, not their bytes.
    if fs.kind(&dir).unwrap().is_some() {
        seal::finish(fs, &dir).unwrap_or_else(|e| panic!("{what}: finishing a seal failed: {e}"));
    }
    let before = data_end(fs, &dir);
    let store = open(fs).unwrap_or_else(|e| panic!("{what}: recovery failed: {e}"));
    check_log(fs, &store, told, before, what);
    assert!(!told.sealed.contains(&store.origin), "{what}: {} was sealed, yet it is the active log", store.origin);
    let mut seen = vec![store.origin.clone()];
    for n in seal::sealed(fs, &dir).unwrap() {
        let sdir = dir.join("sealed").join(n.to_string());
        assert!(fs.contents(&sdir.join("origin")).is_some(), "{what}: sealed/{n} holds no log");
        let end = data_end(fs, &sdir);
        let fs_dyn: Arc<dyn Storage> = Arc::new(fs.clone());
        let s = Store::open_on(fs_dyn, &sdir, "unused", &signer().verifying_key())
            .unwrap_or_else(|e| panic!("{what}: sealed log {n}: {e}"));
        check_log(fs, &s, told, end, what);
        seen.push(s.origin.clone());
    }
    for origin in told.acked.keys().chain(told.signed.keys()) {
        assert!(seen.contains(origin), "{what}: no log holds {origin} (found {seen:?})");
    }
    let mut unique = seen.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), seen.len(), "{what}: two logs share an origin: {seen:?}");
}

#[test]
fn every_crash_point_recovers_without_loss_or_fork() {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let clean = SimFs::new();
    let mut told = Told::default();
    workload(&clean, &rt, &mut told).unwrap();
    let total = clean.ops();
    check(&clean.after_crash(0), &told, "after a clean run");
    assert!(total > 100, "the workload makes {total} operations");
    let mut crashes = 0;
    for k in 1..=total {
        let fs = SimFs::new();
        fs.crash_at(k);
        let mut told = Told::default();
        let r = workload(&fs, &rt, &mut told);
        assert!(r.is_err() && fs.has_crashed(), "crash point {k} of {total} was never reached");
        // Seeds: 0 loses every pending write and name change, 1 keeps them all, the
        // others keep, tear and reorder a random choice.
        for seed in 0..6 {
            let after = fs.after_crash(seed * 1_000_003 + k);
            let after = if seed < 2 { fs.after_crash(seed) } else { after };
            let what = format!("crash before operation {k} of {total}, seed {seed}");
            check(&after, &told, &what);
            // A second life after recovery, crashing at its every step too (on fewer
            // seeds to keep the run short).
            if seed == 2 && k % 4 == 0 && std::env::var_os("CRASH_SIM_FIRST_LIFE_ONLY").is_none() {
                second_life(&after, &rt, &told, &what);
            }
            crashes += 1;
        }
    }
    println!("{total} crash points, {crashes} recoveries checked");
}

/// After a recovery: the log takes new entries; a crash anywhere in that second life
/// (including in recovery's own writes) is recovered too.
fn second_life(fs: &SimFs, rt: &tokio::runtime::Runtime, told: &Told, what: &str) {
    let probe = fs.after_crash(1);
    let mut t = told.clone();
    life(&probe, rt, &mut t, 100, 2).unwrap_or_else(|e| panic!("{what}: the recovered log does not work: {e}"));
    check(&probe.after_crash(0), &t, &format!("{what}, then a second life"));
    let steps = probe.ops();
    for k in 1..=steps {
        let f = fs.after_crash(1);
        f.crash_at(k);
        let mut t = told.clone();
        let _ = life(&f, rt, &mut t, 100, 2);
        for seed in [0, 1, 7] {
            check(
                &f.after_crash(seed),
                &t,
                &format!("{what}, then a crash before operation {k} of its second life, seed {seed}"),
            );
        }
    }
}
