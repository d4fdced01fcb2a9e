//! `silkgate log mirror URL DIR`: fetch a log over HTTP as C2SP tlog-tiles (checkpoint
//! and entry bundles), verify it, and keep it in DIR in the node's own on-disk format
//! (`origin`, `entries`, `checkpoint`, `checkpoints`), so `silkgate log verify DIR`
//! audits the mirror.
//!
//! Incremental: the entries DIR already holds are read back and hashed, only the new
//! ones are fetched (from the bundle that holds the first new entry), and the tree of
//! old and new leaves together must have the signed checkpoint's root. So a log that
//! rewrote any mirrored entry (a fork) fails here, and nothing is written.

use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use hyper::Method;
use silkgate::http::client;
use silkgate::log::storage::{self, Disk, Storage};
use silkgate_core::checkpoint::{Checkpoint, MAX_NOTE_LEN};
use silkgate_core::merkle::{Tree, leaf_hash};
use silkgate_verify::tiles::{self, Tile};

use super::super::key::PublicKey;
use super::super::{EXIT_NEGATIVE, fail};

/// Largest entry bundle read: 256 entries of at most 65,535 bytes and their lengths.
const MAX_BUNDLE: usize = 256 * (2 + tiles::MAX_BUNDLE_ENTRY);

/// Why a mirror run stopped: an operational error (exit 2) or evidence against the
/// log (exit 1).
enum Stop {
    Error(String),
    Invalid(String),
}

pub async fn run(url: String, dir: PathBuf, public_key: String) -> u8 {
    match mirror(&url, &dir, &public_key).await {
        Ok(msg) => {
            println!("{msg}");
            0
        }
        Err(Stop::Error(e)) => fail(e),
        Err(Stop::Invalid(e)) => {
            println!("invalid: {e}");
            EXIT_NEGATIVE
        }
    }
}

async fn mirror(url: &str, dir: &Path, public_key: &str) -> Result<String, Stop> {
    let key = PublicKey::parse(public_key).map_err(Stop::Error)?;
    let have_origin = std::fs::read_to_string(dir.join("origin")).ok().map(|o| o.trim_end_matches('\n').to_owned());
    let origin = match (&key.origin, &have_origin) {
        (Some(o), Some(h)) if o != h => {
            return Err(Stop::Error(format!("{}: mirrors origin `{h}`, the key is for `{o}`", dir.display())));
        }
        (Some(o), _) | (None, Some(o)) => o.clone(),
        (None, None) => {
            return Err(Stop::Error("--public-key: give the log's verifier key string, which names its origin".into()));
        }
    };
    // What the mirror holds: its leaves, re-hashed from its entries.
    let (mut tree, old_cp) = read_mirror(dir, &origin, &key.key)?;
    let prefix = url.trim_end_matches('/');
    let a =
        client::request(Method::GET, &format!("{prefix}/checkpoint"), None, MAX_NOTE_LEN).await.map_err(Stop::Error)?;
    if a.status != 200 {
        return Err(Stop::Error(format!("{prefix}/checkpoint: HTTP {}", a.status)));
    }
    let note = String::from_utf8(a.body.to_vec()).map_err(|_| Stop::Invalid("the checkpoint is not UTF-8".into()))?;
    let cp = Checkpoint::open(&note, &origin, &key.key).map_err(|e| Stop::Invalid(format!("the checkpoint: {e}")))?;
    let old = tree.len();
    if cp.size < old {
        return Err(Stop::Invalid(format!(
            "the log's checkpoint has {} entries, fewer than the {old} mirrored",
            cp.size
        )));
    }
    if let Some(old_cp) = &old_cp
        && cp.size == old_cp.size
        && cp.root != old_cp.root
    {
        return Err(Stop::Invalid(format!("two checkpoints of size {} with different roots", cp.size)));
    }
    // Fetch the new entries, bundle by bundle.
    let mut new_entries: Vec<Vec<u8>> = Vec::new();
    let mut next = old;
    while next < cp.size {
        let Some(t) = Tile::bundle_for(next, cp.size) else { break };
        let path = format!("{prefix}/{}", t.path());
        let a = client::request(Method::GET, &path, None, MAX_BUNDLE).await.map_err(Stop::Error)?;
        if a.status != 200 {
            return Err(Stop::Error(format!("{path}: HTTP {}", a.status)));
        }
        let entries =
            tiles::parse_bundle(&a.body, usize::from(t.width)).map_err(|e| Stop::Invalid(format!("{path}: {e}")))?;
        for (i, e) in entries.into_iter().enumerate() {
            let index = t.start() + i as u64;
            if index < next {
                continue;
            }
            tree.push(leaf_hash(e));
            new_entries.push(e.to_vec());
        }
        next = t.start() + u64::from(t.width);
    }
    if tree.len() != cp.size || tree.root() != cp.root {
        return Err(Stop::Invalid(format!(
            "the entries served do not have the checkpoint's root at size {} (the log changed entries already mirrored, or serves wrong data)",
            cp.size
        )));
    }
    write_mirror(dir, &origin, have_origin.is_none(), &new_entries, &note).map_err(Stop::Error)?;
    Ok(format!("mirrored {origin}: {} entries ({} new), checkpoint verified", cp.size, cp.size - old))
}

/// Reads the mirror's entries (hashing each) and its latest checkpoint.
fn read_mirror(
    dir: &Path,
    origin: &str,
    key: &ed25519_dalek::VerifyingKey,
) -> Result<(Tree, Option<Checkpoint>), Stop> {
    let mut tree = Tree::new();
    let path = dir.join("entries");
    let f = match std::fs::File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((tree, None)),
        Err(e) => return Err(Stop::Error(format!("{}: {e}", path.display()))),
    };
    let mut r = BufReader::new(f);
    let bad = |e: std::io::Error| Stop::Error(format!("{}: {e}", path.display()));
    loop {
        let mut len = [0u8; 4];
        match r.read_exact(&mut len) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(e) => return Err(bad(e)),
        }
        let n = u32::from_be_bytes(len) as usize;
        if n == 0 || n > silkgate::log::MAX_ENTRY_BYTES {
            return Err(Stop::Error(format!("{}: entry {} has a bad length {n}", path.display(), tree.len())));
        }
        let mut data = vec![0u8; n + 32];
        r.read_exact(&mut data).map_err(bad)?;
        let h = leaf_hash(&data[..n]);
        if h[..] != data[n..] {
            return Err(Stop::Error(format!(
                "{}: entry {}: stored leaf hash does not match",
                path.display(),
                tree.len()
            )));
        }
        tree.push(h);
    }
    let cpath = dir.join("checkpoint");
    let note = std::fs::read_to_string(&cpath).map_err(|e| Stop::Error(format!("{}: {e}", cpath.display())))?;
    let cp = Checkpoint::open(&note, origin, key).map_err(|e| Stop::Error(format!("{}: {e}", cpath.display())))?;
    if cp.size != tree.len() || cp.root != tree.root() {
        return Err(Stop::Error(format!("{}: does not match the mirrored entries", cpath.display())));
    }
    Ok((tree, Some(cp)))
}

/// Appends the new entries and the checkpoint, each synced, as the node's log does:
/// `entries` and `checkpoints` first, then `checkpoint`, and `origin` last in a new
/// mirror.
fn write_mirror(dir: &Path, origin: &str, new: bool, entries: &[Vec<u8>], note: &str) -> Result<(), String> {
    let fs = Disk;
    let e = |p: &Path| {
        let p = p.display().to_string();
        move |err: std::io::Error| format!("{p}: {err}")
    };
    storage::create_dir_all(&fs, dir).map_err(e(dir))?;
    let append = |name: &str, bytes: &[u8]| -> Result<(), String> {
        let path = dir.join(name);
        let f = match fs.kind(&path).map_err(e(&path))? {
            Some(_) => fs.open(&path).map_err(e(&path))?,
            None => {
                let f = fs.create(&path).map_err(e(&path))?;
                fs.sync_dir(dir).map_err(e(dir))?;
                f
            }
        };
        let at = f.len().map_err(e(&path))?;
        f.write_at(bytes, at).map_err(e(&path))?;
        f.sync_data().map_err(e(&path))
    };
    let mut records = Vec::new();
    for data in entries {
        silkgate::log::store::encode_record(data, &mut records);
    }
    append("entries", &records)?;
    let mut rec = (note.len() as u32).to_be_bytes().to_vec();
    rec.extend_from_slice(note.as_bytes());
    append("checkpoints", &rec)?;
    let cpath = dir.join("checkpoint");
    storage::replace(&fs, &cpath, note.as_bytes()).map_err(e(&cpath))?;
    if new {
        let opath = dir.join("origin");
        storage::replace(&fs, &opath, format!("{origin}\n").as_bytes()).map_err(e(&opath))?;
    }
    Ok(())
}
