//! Reads a stopped node's `DATA_DIR/log` files directly, from their documented formats
//! (see `node/src/log.rs`), so the tests check the disk without trusting the node.

use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use silkgate::proto;
use silkgate_core::merkle;

/// One record of `entries`, decoded: a decision, or another kind of leaf (a policy
/// activation the node logs when it starts enforcing a policy; `payload_type` says).
pub struct Record {
    pub index: u64,
    pub payload_type: String,
    /// Empty unless the record is a decision.
    pub decision_id: String,
    pub request_id: String,
}

impl Record {
    pub fn is_decision(&self) -> bool {
        self.payload_type == silkgate_verify::decision::PAYLOAD_TYPE
    }
}

/// The `entries` file read so far: every leaf hash in order, so the roots of all
/// earlier sizes can be computed, and where the next record starts.
pub struct Entries {
    path: PathBuf,
    offset: u64,
    pub tree: merkle::Tree,
}

impl Entries {
    pub fn new(log_dir: &Path) -> Entries {
        Entries { path: log_dir.join("entries"), offset: 0, tree: merkle::Tree::new() }
    }

    /// Entries on disk so far.
    pub fn len(&self) -> u64 {
        self.tree.len()
    }

    /// Reads the records appended since the last call. Each record is
    /// `len (u32 BE) || data || SHA-256(0x00 || data)`, then zeros (preallocated space).
    /// Checks each record's leaf hash and decodes its SignedDecision.
    pub fn read_new(&mut self) -> Vec<Record> {
        let mut f = std::fs::File::open(&self.path).unwrap_or_else(|e| panic!("{}: {e}", self.path.display()));
        let file_len = f.metadata().unwrap().len();
        f.seek(SeekFrom::Start(self.offset)).unwrap();
        let mut r = BufReader::with_capacity(1 << 16, f);
        let mut out = Vec::new();
        while self.offset + 4 <= file_len {
            let mut len = [0u8; 4];
            r.read_exact(&mut len).unwrap();
            let n = u32::from_be_bytes(len) as usize;
            if n == 0 {
                break;
            }
            let mut data = vec![0u8; n];
            r.read_exact(&mut data).unwrap();
            let mut hash = [0u8; 32];
            r.read_exact(&mut hash).unwrap();
            let index = self.tree.len();
            assert_eq!(hash, merkle::leaf_hash(&data), "entry {index}: the record's leaf hash does not match its data");
            self.tree.push(hash);
            self.offset += (4 + n + 32) as u64;
            let env = <proto::SignedDecision as prost::Message>::decode(data.as_slice()).unwrap();
            let (decision_id, request_id) = if env.payload_type == silkgate_verify::decision::PAYLOAD_TYPE {
                let d = <proto::Decision as prost::Message>::decode(env.payload.as_slice()).unwrap();
                (d.decision_id, d.request_id)
            } else {
                Default::default()
            };
            out.push(Record { index, payload_type: env.payload_type, decision_id, request_id });
        }
        out
    }

    /// The Merkle root of the first `size` entries read.
    pub fn root(&self, size: u64) -> merkle::Hash {
        self.tree.root_at(size).unwrap()
    }
}

/// The `checkpoint` file's bytes.
pub fn checkpoint_file(log_dir: &Path) -> String {
    let p = log_dir.join("checkpoint");
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Every note of the `checkpoints` history, records `len (u32 BE) || note`.
pub fn history(log_dir: &Path) -> Vec<String> {
    let p = log_dir.join("checkpoints");
    let bytes = std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    let mut notes = Vec::new();
    let mut at = 0;
    while at + 4 <= bytes.len() {
        let n = u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        assert!(n > 0 && at + 4 + n <= bytes.len(), "{}: bad record at byte {at}", p.display());
        notes.push(String::from_utf8(bytes[at + 4..at + 4 + n].to_vec()).unwrap());
        at += 4 + n;
    }
    assert_eq!(at, bytes.len(), "{}: trailing bytes after the last record", p.display());
    notes
}
