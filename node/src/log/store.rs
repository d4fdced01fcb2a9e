//! Opening a log directory: recovery after a crash, and the in-memory index.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::hash::{BuildHasherDefault, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ed25519_dalek::VerifyingKey;
use prost::Message;

use super::hashes::HashFiles;
use super::storage::{self, Disk, LogFile, Storage};
use super::{MAX_ENTRY_BYTES, MAX_WRITE, RECORD_OVERHEAD};
use crate::proto;
use silkgate_core::checkpoint::Checkpoint;
use silkgate_core::merkle::{self, Hash, MemNodes, NodeStore, StoreError, Tree};

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
    #[error("entry of {0} bytes is larger than the {limit}-byte limit", limit = super::MAX_APPEND_BYTES)]
    TooLarge(usize),
    #[error("{0}")]
    NotFound(String),
    /// An index or size past the end of the log (gRPC OUT_OF_RANGE).
    #[error("{0}")]
    OutOfRange(String),
    #[error("{0}")]
    Invalid(String),
}

/// Where the running log keeps its Merkle tree's nodes: in files beside the log on a
/// real disk (memory then does not grow with the log), or in memory (the crash
/// simulator). Either way they are derived from `entries` at every start.
pub enum Nodes {
    Mem(MemNodes),
    Files(HashFiles),
}

impl NodeStore for Nodes {
    fn len(&self, level: u32) -> u64 {
        match self {
            Nodes::Mem(m) => m.len(level),
            Nodes::Files(f) => f.len(level),
        }
    }

    fn read(&self, level: u32, index: u64) -> Result<Hash, StoreError> {
        match self {
            Nodes::Mem(m) => m.read(level, index),
            Nodes::Files(f) => f.read(level, index),
        }
    }

    fn append(&mut self, level: u32, hash: Hash) -> Result<(), StoreError> {
        match self {
            Nodes::Mem(m) => m.append(level, hash),
            Nodes::Files(f) => f.append(level, hash),
        }
    }

    fn flush(&mut self) -> Result<(), StoreError> {
        match self {
            Nodes::Mem(m) => m.flush(),
            Nodes::Files(f) => f.flush(),
        }
    }
}

/// The log's Merkle tree.
pub type LogTree = Tree<Nodes>;

/// The running log's view of its files: the tree, where records start, and decision
/// ids. Its memory does not grow with the log except for the decision-id index (16
/// bytes an entry) and one offset every [`OFFSET_STRIDE`] entries.
pub struct Index {
    pub tree: LogTree,
    pub offsets: Offsets,
    pub ids: Ids,
    /// The latest signed checkpoint (note text and parsed form); it is on disk.
    pub checkpoint: Option<(String, Checkpoint)>,
}

/// Record offsets are kept for one entry in this many; the others are found by
/// following length prefixes from the nearest kept one.
pub const OFFSET_STRIDE: u64 = 64;

/// Where records start in `entries`, kept sparsely (see [`OFFSET_STRIDE`]).
#[derive(Default)]
pub struct Offsets {
    kept: Vec<u64>,
    len: u64,
}

impl Offsets {
    pub fn push(&mut self, offset: u64) {
        if self.len.is_multiple_of(OFFSET_STRIDE) {
            self.kept.push(offset);
        }
        self.len += 1;
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The nearest kept offset at or before entry `i`: (its entry index, its offset).
    pub fn base(&self, i: u64) -> Option<(u64, u64)> {
        if i >= self.len {
            return None;
        }
        let k = i / OFFSET_STRIDE;
        self.kept.get(k as usize).map(|&o| (k * OFFSET_STRIDE, o))
    }
}

/// Decision id to log index. Ids found at start are kept in a sorted array of
/// (low 64 bits of the id, index), 16 bytes an entry; ids logged since are in a map.
/// The low 64 bits of a UUIDv7 are random, so a clash is rare, and a lookup checks
/// the entry itself ([`Ids::candidates`] may name more than one).
#[derive(Default)]
pub struct Ids {
    sorted: Vec<(u64, u64)>,
    recent: HashMap<u128, u64, BuildHasherDefault<IdHasher>>,
}

impl Ids {
    fn from_unsorted(mut v: Vec<(u64, u64)>) -> Ids {
        v.sort_unstable();
        v.shrink_to_fit();
        Ids { sorted: v, recent: HashMap::default() }
    }

    pub fn insert(&mut self, id: u128, index: u64) {
        self.recent.insert(id, index);
    }

    pub fn reserve(&mut self, n: usize) {
        self.recent.reserve(n);
    }

    /// Log indexes that may hold `id`: an exact match from the map, or every entry of
    /// the sorted array with the same low 64 bits.
    pub fn candidates(&self, id: u128) -> Vec<u64> {
        if let Some(&i) = self.recent.get(&id) {
            return vec![i];
        }
        let key = id as u64;
        let from = self.sorted.partition_point(|&(k, _)| k < key);
        self.sorted[from..].iter().take_while(|&&(k, _)| k == key).map(|&(_, i)| i).collect()
    }
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

/// An open, recovered log directory.
pub struct Store {
    pub fs: Arc<dyn Storage>,
    pub dir: PathBuf,
    pub origin: String,
    /// The entries file, for writing (the writer) and positional reads (readers).
    pub file: Arc<dyn LogFile>,
    /// Where the intact records end.
    pub end: u64,
    pub index: Index,
    /// The checkpoint history file and its length.
    pub history: (Arc<dyn LogFile>, u64),
    /// The byte range of `entries` cut as a torn tail during recovery, if any.
    pub torn: Option<(u64, u64)>,
    /// Held open with an exclusive lock while the log is in use (real disks only).
    pub lock: Option<File>,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> LogError + '_ {
    move |source| LogError::Io { path: path.to_path_buf(), source }
}

/// A failure of the tree's node files, as a log I/O error.
pub fn nodes_error(dir: &Path, e: StoreError) -> LogError {
    LogError::Io { path: dir.join("hashes"), source: std::io::Error::other(e.to_string()) }
}

/// The offset just past the last non-zero byte of `file` (0 if it is all zeros): the
/// writer preallocates zero-filled space, so the records end at or before it.
fn data_end(file: &dyn LogFile, len: u64) -> std::io::Result<u64> {
    const CHUNK: u64 = 64 << 10;
    let mut buf = vec![0u8; CHUNK as usize];
    let mut end = len;
    while end > 0 {
        let start = end.saturating_sub(CHUNK);
        let chunk = &mut buf[..(end - start) as usize];
        file.read_at(chunk, start)?;
        if let Some(i) = chunk.iter().rposition(|&b| b != 0) {
            return Ok(start + i as u64 + 1);
        }
        end = start;
    }
    Ok(0)
}

/// Reads a file sequentially through a buffer, by positional reads.
struct Reader<'a> {
    file: &'a dyn LogFile,
    len: u64,
    buf: Vec<u8>,
    /// File offset of `buf[0]`.
    at: u64,
}

impl<'a> Reader<'a> {
    const BUF: usize = 1 << 20;

    fn new(file: &'a dyn LogFile, len: u64) -> Self {
        Reader { file, len, buf: Vec::new(), at: 0 }
    }

    /// The `n` bytes at `offset`, or `None` past the end of the file.
    fn get(&mut self, offset: u64, n: usize) -> std::io::Result<Option<&[u8]>> {
        if offset + n as u64 > self.len {
            return Ok(None);
        }
        let buffered = offset >= self.at && offset + n as u64 <= self.at + self.buf.len() as u64;
        if !buffered {
            let want = n.max(Self::BUF).min((self.len - offset) as usize);
            self.buf.resize(want, 0);
            self.file.read_at(&mut self.buf, offset)?;
            self.at = offset;
        }
        let from = (offset - self.at) as usize;
        Ok(Some(&self.buf[from..from + n]))
    }
}

/// One checkpoint note as found on disk.
struct Found {
    path: PathBuf,
    note: String,
    cp: Checkpoint,
}

impl Store {
    /// Opens (creating if needed) the log in `dir` on the real disk, under its lock.
    pub fn open(dir: &Path, new_origin: &str, key: &VerifyingKey) -> Result<Store, LogError> {
        let fs: Arc<dyn Storage> = Arc::new(Disk);
        storage::create_dir_all(fs.as_ref(), dir).map_err(io(dir))?;
        let lock = lock(dir)?;
        let nodes = Store::node_files(dir)?;
        let mut store = Store::open_on_with(fs, dir, new_origin, key, nodes)?;
        store.lock = Some(lock);
        Ok(store)
    }

    /// The tree's nodes in `dir/hashes/`, started empty (they are rebuilt from the
    /// entries at every start).
    pub fn node_files(dir: &Path) -> Result<Nodes, LogError> {
        let path = dir.join("hashes");
        HashFiles::create(&path).map(Nodes::Files).map_err(io(&path))
    }

    /// [`Store::open_on_with`] with the tree's nodes in memory.
    pub fn open_on(fs: Arc<dyn Storage>, dir: &Path, new_origin: &str, key: &VerifyingKey) -> Result<Store, LogError> {
        Store::open_on_with(fs, dir, new_origin, key, Nodes::Mem(MemNodes::default()))
    }

    /// Opens (creating if needed) the log in `dir` on `fs`, recovering from a crash.
    ///
    /// The high-water mark is the largest checkpoint on disk (the `checkpoint` file or
    /// the last note of the `checkpoints` history): every checkpoint the node ever let
    /// out was on disk first. Recovery never ends below it. Damage at or below it is an
    /// error naming the file, entry and byte offset, and so is damage followed by more
    /// data than the one write that can have been in progress ([`MAX_WRITE`] bytes).
    /// Only a torn tail past every signed size, that one write could have left, is cut,
    /// and the cut is logged with its byte range.
    pub fn open_on_with(
        fs: Arc<dyn Storage>,
        dir: &Path,
        new_origin: &str,
        key: &VerifyingKey,
        nodes: Nodes,
    ) -> Result<Store, LogError> {
        let f = fs.as_ref();
        storage::create_dir_all(f, dir).map_err(io(dir))?;
        super::seal::finish(f, dir)?;
        let origin_path = dir.join("origin");
        let entries_path = dir.join("entries");
        let history_path = dir.join("checkpoints");
        let cp_path = dir.join("checkpoint");
        let origin = match storage::read_all(f, &origin_path).map_err(io(&origin_path))? {
            Some(o) => String::from_utf8_lossy(&o).trim().to_string(),
            None => return Store::create(fs, dir, new_origin, nodes),
        };
        if origin.is_empty() {
            return Err(LogError::Invalid(format!("log {}: the file is empty", origin_path.display())));
        }
        let file = match fs.open(&entries_path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(LogError::Invalid(format!(
                    "log {}: missing, while {} names an existing log; restore it or move the log directory aside",
                    entries_path.display(),
                    origin_path.display()
                )));
            }
            Err(e) => return Err(io(&entries_path)(e)),
        };
        let history = fs.open(&history_path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                LogError::Invalid(format!(
                    "log {}: missing, while {} exists",
                    history_path.display(),
                    origin_path.display()
                ))
            } else {
                io(&history_path)(e)
            }
        })?;
        let open_note = |path: &Path, note: String| -> Result<Found, LogError> {
            let cp = Checkpoint::open(&note, &origin, key).map_err(|e| LogError::Inconsistent {
                path: path.to_path_buf(),
                reason: format!("checkpoint does not verify with the node key: {e}"),
            })?;
            Ok(Found { path: path.to_path_buf(), note, cp })
        };
        let latest = match storage::read_all(f, &cp_path).map_err(io(&cp_path))? {
            Some(b) if !b.is_empty() => {
                let note = String::from_utf8(b)
                    .map_err(|_| LogError::Inconsistent { path: cp_path.clone(), reason: "not UTF-8".into() })?;
                Some(open_note(&cp_path, note)?)
            }
            _ => None,
        };
        let (last_note, history_len) = read_history(&history_path, history.as_ref())?;
        let last = last_note.map(|n| open_note(&history_path, n)).transpose()?;

        // Stream the records.
        let len = file.len().map_err(io(&entries_path))?;
        let nonzero = data_end(file.as_ref(), len).map_err(io(&entries_path))?;
        let mut reader = Reader::new(file.as_ref(), len);
        let mut tree = Tree::with_store(nodes);
        let mut offsets = Offsets::default();
        // Sized up front from the high-water mark: a vector doubling its way up to a
        // million entries leaves its earlier buffers resident with mimalloc (measured:
        // 44 instead of 28 MiB after start at 1.1M entries).
        let mark = [&latest, &last].into_iter().flatten().map(|c| c.cp.size).max().unwrap_or(0);
        let mut ids = Vec::with_capacity(usize::try_from(mark).unwrap_or(0).saturating_add(1024));
        let mut pos = 0u64;
        let mut stop = None;
        while pos < nonzero {
            let fail = |reason: &str| Some(Stop { offset: pos, reason: reason.to_string() });
            let Some(prefix) = reader.get(pos, 4).map_err(io(&entries_path))? else {
                stop = fail("incomplete length prefix");
                break;
            };
            let n = u32::from_be_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]) as usize;
            if n == 0 || n > MAX_ENTRY_BYTES {
                stop = Some(Stop { offset: pos, reason: format!("length {n} is not a valid entry length") });
                break;
            }
            let Some(record) = reader.get(pos + 4, n + 32).map_err(io(&entries_path))? else {
                stop = fail("incomplete record");
                break;
            };
            let (data, stored) = record.split_at(n);
            let hash = merkle::leaf_hash(data);
            if hash != stored {
                stop = fail("stored leaf hash does not match the entry data");
                break;
            }
            let i = tree.try_push(hash).map_err(|e| nodes_error(dir, e))?;
            offsets.push(pos);
            if let Some(id) = decision_id_of(data) {
                ids.push((id as u64, i));
            }
            pos += (RECORD_OVERHEAD + n) as u64;
        }
        let mut torn = None;
        if let Some(stop) = stop {
            let corrupt = |reason: String| LogError::Corrupt {
                path: entries_path.clone(),
                index: tree.len(),
                offset: stop.offset,
                reason,
            };
            if tree.len() < mark {
                return Err(corrupt(format!(
                    "{} (at or below the high-water mark: a signed checkpoint covers {mark} entries)",
                    stop.reason
                )));
            }
            if nonzero - stop.offset > MAX_WRITE {
                return Err(corrupt(format!(
                    "{} and followed by {} more bytes of data, more than the {MAX_WRITE} bytes one unfinished write can leave: not a torn tail",
                    stop.reason,
                    nonzero - stop.offset
                )));
            }
            // Not synced here: the writer's next preallocation (from this shorter length)
            // syncs the cut before any record is written over it, and a cut lost in a
            // crash before then is found and cut again.
            file.set_len(stop.offset).map_err(io(&entries_path))?;
            tracing::warn!(
                log_path = %entries_path.display(),
                from_byte = stop.offset,
                to_byte = nonzero,
                reason = %stop.reason,
                "cut a torn tail from the decision log: a write in progress at a crash, past every acknowledged entry and every signed checkpoint"
            );
            torn = Some((stop.offset, nonzero));
            pos = stop.offset;
        } else if pos > len {
            pos = len;
        }
        // Every checkpoint on disk must match the entries.
        for c in [&latest, &last].into_iter().flatten() {
            if c.cp.size > tree.len() {
                return Err(LogError::Lost { path: c.path.clone(), checkpoint: c.cp.size, present: tree.len() });
            }
            let root = tree
                .root_at(c.cp.size)
                .map_err(|e| LogError::Inconsistent { path: c.path.clone(), reason: e.to_string() })?;
            if root != c.cp.root {
                return Err(LogError::Inconsistent {
                    path: c.path.clone(),
                    reason: format!("the root of the first {} entries differs from this checkpoint's", c.cp.size),
                });
            }
        }
        let newest = match (latest, last) {
            (Some(a), Some(b)) => Some(if b.cp.size > a.cp.size { b } else { a }),
            (a, b) => a.or(b),
        };
        if newest.is_none() && !tree.is_empty() {
            return Err(LogError::Invalid(format!(
                "log {}: missing or empty, and the history holds no checkpoint, while {} holds {} entries",
                cp_path.display(),
                entries_path.display(),
                tree.len()
            )));
        }
        let index = Index { tree, offsets, ids: Ids::from_unsorted(ids), checkpoint: newest.map(|c| (c.note, c.cp)) };
        Ok(Store {
            fs,
            dir: dir.to_path_buf(),
            origin,
            file,
            end: pos,
            index,
            history: (history, history_len),
            torn,
            lock: None,
        })
    }

    /// Creates a new log: `entries` and `checkpoints` empty, then `origin` last, so a
    /// directory without `origin` never holds an acknowledged entry.
    fn create(fs: Arc<dyn Storage>, dir: &Path, origin: &str, nodes: Nodes) -> Result<Store, LogError> {
        let f = fs.as_ref();
        let entries_path = dir.join("entries");
        if let Some(old) = storage::read_all(f, &entries_path).map_err(io(&entries_path))?
            && old.iter().any(|&b| b != 0)
        {
            return Err(LogError::Invalid(format!(
                "log {}: holds data but {} is missing; restore it or move the log directory aside",
                entries_path.display(),
                dir.join("origin").display()
            )));
        }
        // Their names become durable with `origin`'s, below: `replace` syncs the same
        // directory after them.
        let file = fs.create(&entries_path).map_err(io(&entries_path))?;
        let history_path = dir.join("checkpoints");
        let history = fs.create(&history_path).map_err(io(&history_path))?;
        let cp_path = dir.join("checkpoint");
        if fs.kind(&cp_path).map_err(io(&cp_path))?.is_some() {
            fs.remove_file(&cp_path).map_err(io(&cp_path))?;
        }
        let origin_path = dir.join("origin");
        storage::replace(f, &origin_path, format!("{origin}\n").as_bytes()).map_err(io(&origin_path))?;
        let index =
            Index { tree: Tree::with_store(nodes), offsets: Offsets::default(), ids: Ids::default(), checkpoint: None };
        Ok(Store {
            fs,
            dir: dir.to_path_buf(),
            origin: origin.to_string(),
            file,
            end: 0,
            index,
            history: (history, 0),
            torn: None,
            lock: None,
        })
    }

    /// Reads the data of entry `i`, given the nearest kept offset (see [`Offsets::base`]).
    pub fn read_entry(file: &dyn LogFile, base: (u64, u64), i: u64) -> std::io::Result<Vec<u8>> {
        let (mut at, mut off) = base;
        let mut len = [0u8; 4];
        loop {
            file.read_at(&mut len, off)?;
            let n = u32::from_be_bytes(len) as u64;
            if at == i {
                let mut data = vec![0u8; n as usize];
                file.read_at(&mut data, off + 4)?;
                return Ok(data);
            }
            off += RECORD_OVERHEAD as u64 + n;
            at += 1;
        }
    }
}

/// Reads the checkpoint history: the last complete note, and the length of the complete
/// records. An incomplete record at the end (an append cut by a crash, never synced, so
/// never served) is cut.
fn read_history(path: &Path, file: &dyn LogFile) -> Result<(Option<String>, u64), LogError> {
    let len = file.len().map_err(io(path))?;
    let mut reader = Reader::new(file, len);
    let mut pos = 0u64;
    let mut last = None;
    while pos < len {
        let Some(prefix) = reader.get(pos, 4).map_err(io(path))? else { break };
        let n = u32::from_be_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]) as usize;
        if n == 0 || n > silkgate_core::checkpoint::MAX_NOTE_LEN {
            break;
        }
        let Some(note) = reader.get(pos + 4, n).map_err(io(path))? else { break };
        last = Some((pos, note.to_vec()));
        pos += 4 + n as u64;
    }
    if len - pos > 4 + silkgate_core::checkpoint::MAX_NOTE_LEN as u64 {
        return Err(LogError::Corrupt {
            path: path.to_path_buf(),
            index: 0,
            offset: pos,
            reason: format!("a bad record followed by {} more bytes: more than one unfinished append", len - pos),
        });
    }
    if pos < len {
        // Not synced here: the next append's sync covers it; if lost in a crash first,
        // the unfinished record is found and cut again.
        file.set_len(pos).map_err(io(path))?;
        tracing::warn!(log_path = %path.display(), from_byte = pos, to_byte = len, "cut an unfinished record from the checkpoint history");
    }
    let note = match last {
        Some((at, b)) => Some(String::from_utf8(b).map_err(|_| LogError::Inconsistent {
            path: path.to_path_buf(),
            reason: format!("the note at byte {at} is not UTF-8"),
        })?),
        None => None,
    };
    Ok((note, pos))
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
