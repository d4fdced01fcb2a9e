//! Opening a log directory: recovery after a crash, and the in-memory index.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::hash::{BuildHasherDefault, Hasher};
use std::io::{Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use ed25519_dalek::VerifyingKey;
use prost::Message;

use super::{MAX_ENTRY_BYTES, RECORD_OVERHEAD};
use crate::checkpoint::Checkpoint;
use crate::merkle::{self, Hash, Tree};
use crate::proto;

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("log {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("log {path}: corrupt entry {index} at byte {offset}: {reason}")]
    Corrupt { path: PathBuf, index: u64, offset: u64, reason: String },
    #[error(
        "log {path}: the latest checkpoint covers {checkpoint} entries but only {present} are intact; acknowledged decisions are missing"
    )]
    Lost { path: PathBuf, checkpoint: u64, present: u64 },
    #[error("log {path}: checkpoint does not match the entries: {reason}")]
    Inconsistent { path: PathBuf, reason: String },
    #[error("log is not writable after an earlier I/O error; restart the node to recover")]
    Poisoned,
    #[error("log {0} is in use by another process (is a node running on this data directory?)")]
    Locked(PathBuf),
    #[error("log writer has stopped")]
    Stopped,
    #[error("entry of {0} bytes is larger than the {MAX_ENTRY_BYTES}-byte limit")]
    TooLarge(usize),
    #[error("{0}")]
    NotFound(String),
    /// An index or size past the end of the log (gRPC OUT_OF_RANGE).
    #[error("{0}")]
    OutOfRange(String),
    #[error("{0}")]
    Invalid(String),
}

/// The in-memory view of a log: tree, record offsets and decision ids.
pub struct Index {
    pub tree: Tree,
    /// Byte offset of each record in `entries`.
    pub offsets: Vec<u64>,
    /// Decision id (UUID as u128) to log index.
    pub ids: HashMap<u128, u64, BuildHasherDefault<IdHasher>>,
    /// The latest signed checkpoint (note text and parsed form).
    pub checkpoint: Option<(String, Checkpoint)>,
}

/// Hashes decision ids: UUIDv7s end in 62 random bits, so folding the two halves is a
/// good hash already, and much cheaper than SipHash on the commit path.
#[derive(Default)]
pub struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut b = [0u8; 8];
            b[..chunk.len()].copy_from_slice(chunk);
            self.0 = (self.0.rotate_left(5) ^ u64::from_le_bytes(b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }

    fn write_u128(&mut self, v: u128) {
        self.0 = (v as u64) ^ ((v >> 64) as u64);
    }
}

/// An open, recovered log directory.
pub struct Store {
    pub dir: PathBuf,
    pub origin: String,
    /// The entries file, for appending (writer) and positional reads (readers).
    pub file: File,
    /// Length of the intact records.
    pub end: u64,
    pub index: Index,
    /// Bytes dropped from a torn tail during recovery.
    pub truncated: u64,
    /// Held open with an exclusive lock while the log is in use.
    pub lock: File,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> LogError + '_ {
    move |source| LogError::Io { path: path.to_path_buf(), source }
}

/// The decision id of a stored SignedDecision, as a u128.
pub fn decision_id_of(data: &[u8]) -> Option<u128> {
    let env = proto::SignedDecision::decode(data).ok()?;
    let d = proto::Decision::decode(env.payload.as_slice()).ok()?;
    uuid::Uuid::parse_str(&d.decision_id).ok().map(|u| u.as_u128())
}

/// One record as read back from `entries`.
pub struct Record {
    pub offset: u64,
    pub data: Vec<u8>,
    pub hash: Hash,
}

/// Why reading records stopped before the end of the file.
pub struct Stop {
    pub offset: u64,
    pub reason: String,
}

/// What a scan of the entries file found.
pub struct Scanned {
    pub records: Vec<Record>,
    /// Where the records end: the start of the zero-filled preallocated tail, of the
    /// first bad record, or the end of the file.
    pub end: u64,
    /// Why the scan stopped before the zero tail or the end of the file, if it did.
    pub stop: Option<Stop>,
}

/// Reads every intact record from `bytes`, stopping at the zero-filled tail (space the
/// writer preallocated), or at the first record that is incomplete or whose stored leaf
/// hash does not match its data.
pub fn scan(bytes: &[u8]) -> Scanned {
    let mut records = Vec::new();
    let mut pos = 0usize;
    while pos < bytes.len() {
        if bytes[pos..].iter().all(|&b| b == 0) {
            break;
        }
        let stop = |reason: String| Some(Stop { offset: pos as u64, reason });
        if bytes.len() - pos < 4 {
            return Scanned { records, end: pos as u64, stop: stop("incomplete length prefix".into()) };
        }
        let len = u32::from_be_bytes([bytes[pos], bytes[pos + 1], bytes[pos + 2], bytes[pos + 3]]) as usize;
        if len == 0 || len > MAX_ENTRY_BYTES {
            let reason = format!("length {len} is not a valid entry length");
            return Scanned { records, end: pos as u64, stop: stop(reason) };
        }
        if bytes.len() - pos < 4 + len + 32 {
            return Scanned { records, end: pos as u64, stop: stop("incomplete record".into()) };
        }
        let data = &bytes[pos + 4..pos + 4 + len];
        let stored: Hash = bytes[pos + 4 + len..pos + 4 + len + 32].try_into().unwrap_or([0; 32]);
        if merkle::leaf_hash(data) != stored {
            let reason = "stored leaf hash does not match the entry data".to_string();
            return Scanned { records, end: pos as u64, stop: stop(reason) };
        }
        records.push(Record { offset: pos as u64, data: data.to_vec(), hash: stored });
        pos += RECORD_OVERHEAD + len;
    }
    Scanned { records, end: pos as u64, stop: None }
}

/// Encodes one record.
pub fn encode_record(data: &[u8], out: &mut Vec<u8>) -> Hash {
    let hash = merkle::leaf_hash(data);
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(&hash);
    hash
}

/// Writes `bytes` to `path` through a temporary file and a rename.
pub fn replace_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = File::create(&tmp)?;
    f.write_all(bytes)?;
    drop(f);
    fs::rename(&tmp, path)
}

/// Takes the log directory's exclusive lock, so two processes never write one log.
pub fn lock(dir: &Path) -> Result<File, LogError> {
    let path = dir.join("LOCK");
    let f = OpenOptions::new().create(true).truncate(false).write(true).open(&path).map_err(io(&path))?;
    match f.try_lock() {
        Ok(()) => Ok(f),
        Err(std::fs::TryLockError::WouldBlock) => Err(LogError::Locked(dir.to_path_buf())),
        Err(std::fs::TryLockError::Error(e)) => Err(io(&path)(e)),
    }
}

impl Store {
    /// Opens (creating if needed) the log in `dir`, recovering from a crash: a torn tail
    /// past the latest checkpoint is truncated; damage inside the checkpointed prefix, or
    /// a checkpoint that does not match the entries, is an error.
    pub fn open(dir: &Path, new_origin: &str, key: &VerifyingKey) -> Result<Store, LogError> {
        fs::create_dir_all(dir).map_err(io(dir))?;
        let lock = lock(dir)?;
        let origin_path = dir.join("origin");
        let origin = match fs::read_to_string(&origin_path) {
            Ok(o) => o.trim().to_string(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                replace_file(&origin_path, format!("{new_origin}\n").as_bytes()).map_err(io(&origin_path))?;
                new_origin.to_string()
            }
            Err(e) => return Err(io(&origin_path)(e)),
        };
        let cp_path = dir.join("checkpoint");
        let checkpoint = match fs::read_to_string(&cp_path) {
            Ok(note) if note.is_empty() => None,
            Ok(note) => {
                let cp = Checkpoint::open(&note, &origin, key).map_err(|e| LogError::Inconsistent {
                    path: cp_path.clone(),
                    reason: format!("latest checkpoint does not verify with the node key: {e}"),
                })?;
                Some((note, cp))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(io(&cp_path)(e)),
        };
        let path = dir.join("entries");
        let mut file =
            OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path).map_err(io(&path))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(io(&path))?;
        let Scanned { records, end: scanned_end, stop } = scan(&bytes);
        let covered = checkpoint.as_ref().map_or(0, |(_, c)| c.size);
        let mut truncated = 0;
        let mut end = scanned_end;
        if let Some(stop) = stop {
            if (records.len() as u64) < covered {
                return Err(LogError::Corrupt {
                    path,
                    index: records.len() as u64,
                    offset: stop.offset,
                    reason: format!("{} (inside the checkpointed prefix of {covered} entries)", stop.reason),
                });
            }
            truncated = bytes.len() as u64 - stop.offset;
            end = stop.offset;
            file.set_len(end).map_err(io(&path))?;
            file.sync_all().map_err(io(&path))?;
            tracing::warn!(log.path = %path.display(), bytes = truncated, reason = %stop.reason, "truncated a torn tail");
        }
        let mut index = Index {
            tree: Tree::new(),
            offsets: Vec::with_capacity(records.len()),
            ids: HashMap::default(),
            checkpoint,
        };
        for r in records {
            let i = index.tree.push(r.hash);
            index.offsets.push(r.offset);
            if let Some(id) = decision_id_of(&r.data) {
                index.ids.insert(id, i);
            }
        }
        if let Some((_, cp)) = &index.checkpoint {
            if cp.size > index.tree.len() {
                return Err(LogError::Lost { path, checkpoint: cp.size, present: index.tree.len() });
            }
            let root = index
                .tree
                .root_at(cp.size)
                .map_err(|e| LogError::Inconsistent { path: path.clone(), reason: e.to_string() })?;
            if root != cp.root {
                return Err(LogError::Inconsistent {
                    path,
                    reason: format!("the root of the first {} entries differs from the latest checkpoint's", cp.size),
                });
            }
        }
        Ok(Store { dir: dir.to_path_buf(), origin, file, end, index, truncated, lock })
    }

    /// Reads the data of entry `i`.
    pub fn read_entry(file: &File, offsets: &[u64], i: u64) -> Result<Vec<u8>, std::io::Error> {
        let off = offsets[i as usize];
        let mut len = [0u8; 4];
        file.read_exact_at(&mut len, off)?;
        let mut data = vec![0u8; u32::from_be_bytes(len) as usize];
        file.read_exact_at(&mut data, off + 4)?;
        Ok(data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scan_stops_at_torn_or_bad_records() {
        let mut bytes = Vec::new();
        encode_record(b"one", &mut bytes);
        encode_record(b"two", &mut bytes);
        let s = scan(&bytes);
        assert_eq!((s.records.len(), s.end), (2, bytes.len() as u64));
        assert!(s.stop.is_none());
        let s = scan(&bytes[..bytes.len() - 1]);
        assert_eq!(s.records.len(), 1);
        assert_eq!(s.stop.unwrap().offset, (RECORD_OVERHEAD + 3) as u64);
        let mut bad = bytes.clone();
        bad[5] ^= 1;
        let s = scan(&bad);
        assert_eq!(s.records.len(), 0);
        assert!(s.stop.unwrap().reason.contains("does not match"));
        // A zero-filled tail is preallocated space, not damage; bytes in it are.
        let mut padded = bytes.clone();
        padded.extend_from_slice(&[0; 100]);
        let s = scan(&padded);
        assert_eq!((s.records.len(), s.end, s.stop.is_none()), (2, bytes.len() as u64, true));
        padded[bytes.len() + 50] = 1;
        assert!(scan(&padded).stop.is_some());
    }
}
