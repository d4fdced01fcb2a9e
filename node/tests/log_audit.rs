//! `log verify` catches any changed byte of any entry, stored hash or checkpoint, and
//! recovery cuts a torn tail but refuses damage it cannot explain and missing files.

use std::path::Path;
use std::sync::Arc;

use ed25519_dalek::SigningKey;
use prost::Message;
use silkgate::log::Entry;
use silkgate::log::audit::audit;
use silkgate::log::{LogHandle, Store};
use silkgate::proto;
use silkgate_core::decision::{self, Signer};

fn signer() -> Arc<Signer> {
    Arc::new(Signer::new(SigningKey::from_bytes(&[5; 32])))
}

/// Writes `n` signed decisions to a fresh log in `dir`, in groups of three.
fn write_log(dir: &Path, n: usize) {
    let signer = signer();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let store = Store::open(dir, "silkgate/audit-test/1", &signer.verifying_key()).unwrap();
        let log = LogHandle::start(store, signer.clone(), Default::default()).unwrap();
        let mut group = Vec::new();
        for i in 0..n {
            let id = uuid::Uuid::now_v7();
            let d = proto::Decision {
                decision_id: id.to_string(),
                request_id: format!("r-{i}"),
                key_id: signer.key_id().to_string(),
                ..Default::default()
            };
            group.push(Entry { data: decision::sign(&d, &signer).encode_to_vec().into(), id: Some(id.as_u128()) });
            if group.len() == 3 || i + 1 == n {
                log.append(std::mem::take(&mut group)).await.unwrap();
            }
        }
        // The writer finishes, stores the final checkpoint and releases the lock.
        log.close().unwrap();
        drop(log);
    });
}

#[test]
fn any_changed_byte_is_caught() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    write_log(&log, 5);
    let key = signer().verifying_key();
    let report = audit(&log, &key, |_, _| {}).unwrap();
    assert_eq!(report.entries, 5);
    assert!(report.checkpoints >= 2, "history and latest: {report:?}");

    // Keep 4 KiB of the preallocated zero tail, so each audit below reads little.
    let full = std::fs::read(log.join("entries")).unwrap();
    let used = full.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
    std::fs::write(log.join("entries"), &full[..used + 4096]).unwrap();
    audit(&log, &key, |_, _| {}).unwrap();

    for name in ["entries", "checkpoint", "checkpoints"] {
        let path = log.join(name);
        let original = std::fs::read(&path).unwrap();
        // Every byte of the records, and a sample of the zero-filled preallocated tail
        // (any non-zero byte there is damage too).
        let records_end = original.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
        let tail = (records_end..original.len()).step_by(97);
        for i in (0..records_end).chain(tail) {
            let mut bad = original.clone();
            bad[i] ^= 0x01;
            std::fs::write(&path, &bad).unwrap();
            assert!(audit(&log, &key, |_, _| {}).is_err(), "{name}: flipping byte {i} went unnoticed");
        }
        std::fs::write(&path, &original).unwrap();
    }
    audit(&log, &key, |_, _| {}).unwrap();
}

#[test]
fn recovery_cuts_a_torn_tail_and_refuses_other_damage() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    write_log(&log, 4);
    let key = signer().verifying_key();
    let entries = log.join("entries");
    let original = std::fs::read(&entries).unwrap();
    // The records, before the zero-filled space the writer preallocates (parsed: a
    // record's last byte may itself be zero).
    let records_end = silkgate::log::store::scan(&original).end as usize;
    assert!(records_end < original.len(), "the entries file is preallocated");

    // A half-written record after the checkpointed prefix is a torn tail: dropped.
    let mut torn = original.clone();
    torn[records_end..records_end + 7].copy_from_slice(&[0, 0, 1, 0, 9, 9, 9]);
    std::fs::write(&entries, &torn).unwrap();
    let store = Store::open(&log, "unused", &key).unwrap();
    assert_eq!((store.index.tree.len(), store.end), (4, records_end as u64));
    assert_eq!(store.torn, Some((records_end as u64, records_end as u64 + 7)), "the cut is reported with its range");
    drop(store);
    assert_eq!(std::fs::read(&entries).unwrap(), original[..records_end]);

    // Damage inside the checkpointed prefix stops the node with a precise error.
    let mut bad = original.clone();
    bad[10] ^= 0xff;
    std::fs::write(&entries, &bad).unwrap();
    let err = Store::open(&log, "unused", &key).err().unwrap().to_string();
    assert!(err.contains("corrupt entry 0 at byte 0") && err.contains("high-water mark"), "{err}");

    // Entries the checkpoint covers that are gone: acknowledged decisions are missing.
    std::fs::write(&entries, &original[..records_end / 2]).unwrap();
    let err = Store::open(&log, "unused", &key).err().unwrap().to_string();
    assert!(err.contains("acknowledged decisions are missing") || err.contains("corrupt entry"), "{err}");
}

#[test]
fn a_second_process_cannot_open_the_same_log() {
    let dir = tempfile::tempdir().unwrap();
    let key = signer().verifying_key();
    let first = Store::open(dir.path(), "silkgate/a/1", &key).unwrap();
    let err = Store::open(dir.path(), "silkgate/a/1", &key).err().unwrap().to_string();
    assert!(err.contains("in use by another process"), "{err}");
    drop(first);
}

/// Appends `n` valid records of `size` bytes after the records of `entries` (entries no
/// checkpoint covers, as a crash can leave them), returning where they start.
fn append_records(entries: &Path, n: usize, size: usize) -> usize {
    let mut bytes = std::fs::read(entries).unwrap();
    let end = silkgate::log::store::scan(&bytes).end as usize;
    bytes.truncate(end);
    for i in 0..n {
        silkgate::log::store::encode_record(&vec![b'x' + (i % 3) as u8; size], &mut bytes);
    }
    std::fs::write(entries, &bytes).unwrap();
    end
}

#[test]
fn damage_followed_by_more_than_one_write_is_not_a_torn_tail() {
    let key = signer().verifying_key();
    // Past the high-water mark, damage followed by less than one write: cut, reported.
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    write_log(&log, 3);
    let entries = log.join("entries");
    let start = append_records(&entries, 4, 100_000);
    let mut bytes = std::fs::read(&entries).unwrap();
    bytes[start + 10] ^= 1;
    std::fs::write(&entries, &bytes).unwrap();
    let store = Store::open(&log, "unused", &key).unwrap();
    assert_eq!(store.index.tree.len(), 3);
    assert_eq!(store.torn, Some((start as u64, bytes.len() as u64)));
    drop(store);

    // The same damage followed by more data than one write can leave: refused, located.
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    write_log(&log, 3);
    let entries = log.join("entries");
    let start = append_records(&entries, 25, 100_000);
    let mut bytes = std::fs::read(&entries).unwrap();
    bytes[start + 10] ^= 1;
    std::fs::write(&entries, &bytes).unwrap();
    let err = Store::open(&log, "unused", &key).err().unwrap().to_string();
    assert!(err.contains(&format!("corrupt entry 3 at byte {start}")) && err.contains("not a torn tail"), "{err}");
    assert_eq!(std::fs::read(&entries).unwrap(), bytes, "a refused log is left as it was");
}

#[test]
fn a_missing_or_empty_file_is_named_not_taken_for_a_new_log() {
    let key = signer().verifying_key();
    type Damage = fn(&Path);
    let cases: [(&str, Damage); 4] = [
        ("entries", |log| std::fs::remove_file(log.join("entries")).unwrap()),
        ("checkpoints", |log| std::fs::remove_file(log.join("checkpoints")).unwrap()),
        ("checkpoint", |log| {
            std::fs::write(log.join("checkpoint"), b"").unwrap();
            std::fs::write(log.join("checkpoints"), b"").unwrap();
        }),
        ("origin", |log| std::fs::remove_file(log.join("origin")).unwrap()),
    ];
    for (name, damage) in cases {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log");
        write_log(&log, 4);
        damage(&log);
        let err = Store::open(&log, "silkgate/audit-test/1", &key).err().map(|e| e.to_string());
        let err = err.unwrap_or_else(|| panic!("{name}: the log opened as if new"));
        assert!(err.contains(&log.join(name).display().to_string()) || err.contains(name), "{name}: {err}");
    }
    // A directory without `origin` and without records is new.
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), "silkgate/audit-test/1", &key).unwrap();
    assert_eq!((store.origin.as_str(), store.index.tree.len()), ("silkgate/audit-test/1", 0));
}
