//! A simulated file system for crash tests: it keeps what was written apart from what
//! was synced, and can crash before any operation, losing what was not yet durable.
//!
//! The model, after the ALICE study of crash vulnerabilities (Pillai et al., OSDI
//! 2014): files are inodes, names map to inodes. A file's data becomes durable at
//! `sync_data`/`sync_all`; writes since its last sync are pending. A name operation
//! (create, rename, remove, mkdir) becomes durable when a directory it touches is
//! synced, and only then: syncing one directory makes nothing else durable, not even
//! that directory's own name in its parent (names under a directory that did not
//! survive are lost). At a crash, each pending write is applied whole, torn (a random
//! subset of its 512-byte sectors) or not at all, in any order; of the pending name
//! operations a prefix is kept (a journal commits them in order), a rename whole or not
//! at all.
//!
//! A crash is set with [`SimFs::crash_at`]: the n-th mutating operation (create, write, set_len, sync, rename, remove, mkdir,
//! directory sync) fails instead of running, and so does everything after it;
//! [`SimFs::after_crash`] then gives the file system a restarted machine would see.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use super::storage::{Kind, LogFile, Storage, parent};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Entry {
    File(usize),
    Dir,
}

#[derive(Clone)]
enum Pending {
    Write { offset: u64, bytes: Vec<u8> },
    SetLen(u64),
}

#[derive(Clone, Default)]
struct Inode {
    data: Vec<u8>,
    durable: Vec<u8>,
    pending: Vec<Pending>,
}

#[derive(Clone)]
enum NameOp {
    Set(PathBuf, Entry),
    Remove(PathBuf),
    /// A rename: one operation, so a crash keeps both names' changes or neither. A
    /// directory moves with everything under it.
    Move(PathBuf, PathBuf),
}

impl NameOp {
    fn touches(&self, dir: &Path) -> bool {
        match self {
            NameOp::Set(p, _) | NameOp::Remove(p) => parent(p) == dir,
            NameOp::Move(from, to) => parent(from) == dir || parent(to) == dir,
        }
    }

    fn apply(&self, names: &mut BTreeMap<PathBuf, Entry>) {
        match self {
            NameOp::Set(p, e) => {
                names.insert(p.clone(), *e);
            }
            NameOp::Remove(p) => {
                names.remove(p);
            }
            NameOp::Move(from, to) => {
                let moved: Vec<(PathBuf, Entry)> =
                    names.iter().filter(|(p, _)| p.starts_with(from)).map(|(p, e)| (p.clone(), *e)).collect();
                for (p, e) in moved {
                    names.remove(&p);
                    let rest = p.strip_prefix(from).map(Path::to_path_buf).unwrap_or_default();
                    let new = if rest.as_os_str().is_empty() { to.clone() } else { to.join(rest) };
                    names.insert(new, e);
                }
            }
        }
    }
}

#[derive(Clone, Default)]
struct State {
    inodes: Vec<Inode>,
    names: BTreeMap<PathBuf, Entry>,
    durable_names: BTreeMap<PathBuf, Entry>,
    pending_names: Vec<NameOp>,
    /// Mutating operations so far.
    ops: u64,
    crash_at: Option<u64>,
    crashed: bool,
    syncs: u64,
}

/// The simulated file system; cheap to clone (clones share the state).
#[derive(Clone, Default)]
pub struct SimFs(Arc<Mutex<State>>);

fn crashed() -> io::Error {
    io::Error::other("simulated crash")
}

fn not_found(p: &Path) -> io::Error {
    io::Error::new(io::ErrorKind::NotFound, format!("{}: no such file", p.display()))
}

/// A small deterministic generator (SplitMix64), so a crash is reproducible by seed.
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n`, for `n > 0`.
    #[cfg(test)]
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn coin(&mut self) -> bool {
        self.next() & 1 == 1
    }
}

fn apply(data: &mut Vec<u8>, p: &Pending) {
    match p {
        Pending::Write { offset, bytes } => {
            let end = *offset as usize + bytes.len();
            if data.len() < end {
                data.resize(end, 0);
            }
            data[*offset as usize..end].copy_from_slice(bytes);
        }
        Pending::SetLen(n) => data.resize(*n as usize, 0),
    }
}

impl SimFs {
    /// An empty file system with the root directory `/`.
    pub fn new() -> SimFs {
        let fs = SimFs::default();
        {
            let mut s = fs.lock();
            s.names.insert(PathBuf::from("/"), Entry::Dir);
            s.durable_names.insert(PathBuf::from("/"), Entry::Dir);
        }
        fs
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Crash before the `n`-th mutating operation from now on counts (1-based).
    pub fn crash_at(&self, n: u64) {
        let mut s = self.lock();
        s.crash_at = Some(s.ops + n);
    }

    /// Mutating operations so far.
    pub fn ops(&self) -> u64 {
        self.lock().ops
    }

    /// File and directory syncs so far.
    pub fn syncs(&self) -> u64 {
        self.lock().syncs
    }

    pub fn has_crashed(&self) -> bool {
        self.lock().crashed
    }

    /// The file system after a crash at this moment and a restart: durable state, plus
    /// a choice (by `seed`) of pending writes and name operations.
    pub fn after_crash(&self, seed: u64) -> SimFs {
        let s = self.lock();
        let mut rng = Rng(seed);
        // Seed 0 loses everything pending; seed 1 keeps everything; others choose.
        let keep = |rng: &mut Rng| match seed {
            0 => false,
            1 => true,
            _ => rng.coin(),
        };
        // Name operations reach the disk in order (a journal): a prefix of them is kept.
        let mut names = s.durable_names.clone();
        let kept = match seed {
            0 => 0,
            1 => s.pending_names.len(),
            _ => (rng.next() % (s.pending_names.len() as u64 + 1)) as usize,
        };
        for op in &s.pending_names[..kept] {
            op.apply(&mut names);
        }
        // Names under a directory that did not survive are gone too.
        let dirs: Vec<PathBuf> = names.iter().filter(|(_, e)| **e == Entry::Dir).map(|(p, _)| p.clone()).collect();
        names.retain(|p, _| p == Path::new("/") || dirs.contains(&parent(p)));
        let mut inodes = Vec::with_capacity(s.inodes.len());
        for inode in &s.inodes {
            let mut data = inode.durable.clone();
            let mut pending = inode.pending.clone();
            if seed > 1 {
                // Out of order: a random permutation of the pending writes.
                for i in (1..pending.len()).rev() {
                    pending.swap(i, (rng.next() % (i as u64 + 1)) as usize);
                }
            }
            for p in &pending {
                if !keep(&mut rng) {
                    continue;
                }
                match p {
                    Pending::Write { offset, bytes } if seed > 1 && rng.coin() => {
                        // Torn: only some of its sectors reach the disk.
                        for (i, chunk) in bytes.chunks(512).enumerate() {
                            if rng.coin() {
                                let w = Pending::Write { offset: offset + (i * 512) as u64, bytes: chunk.to_vec() };
                                apply(&mut data, &w);
                            }
                        }
                    }
                    p => apply(&mut data, p),
                }
            }
            inodes.push(Inode { data: data.clone(), durable: data, pending: Vec::new() });
        }
        SimFs(Arc::new(Mutex::new(State {
            inodes,
            durable_names: names.clone(),
            names,
            pending_names: Vec::new(),
            ops: 0,
            crash_at: None,
            crashed: false,
            syncs: 0,
        })))
    }

    /// Counts one mutating operation, failing it (and all after it) at the crash point.
    fn step(s: &mut State) -> io::Result<()> {
        if s.crashed {
            return Err(crashed());
        }
        s.ops += 1;
        if s.crash_at == Some(s.ops) {
            s.crashed = true;
            return Err(crashed());
        }
        Ok(())
    }

    fn name_op(s: &mut State, op: NameOp) {
        op.apply(&mut s.names);
        s.pending_names.push(op);
    }

    fn dir_exists(s: &State, dir: &Path) -> bool {
        s.names.get(dir) == Some(&Entry::Dir)
    }

    /// Sets a file's content directly, durable (for tests that damage a file).
    pub fn poke(&self, path: &Path, edit: impl FnOnce(&mut Vec<u8>)) {
        let mut s = self.lock();
        if let Some(Entry::File(id)) = s.names.get(path).copied() {
            let inode = &mut s.inodes[id];
            edit(&mut inode.data);
            inode.durable = inode.data.clone();
            inode.pending.clear();
        }
    }

    /// A file's current content.
    pub fn contents(&self, path: &Path) -> Option<Vec<u8>> {
        let s = self.lock();
        match s.names.get(path) {
            Some(Entry::File(id)) => Some(s.inodes[*id].data.clone()),
            _ => None,
        }
    }
}

struct SimFile {
    fs: SimFs,
    id: usize,
}

impl LogFile for SimFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let s = self.fs.lock();
        if s.crashed {
            return Err(crashed());
        }
        let data = &s.inodes[self.id].data;
        let end = offset as usize + buf.len();
        if end > data.len() {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "read past the end"));
        }
        buf.copy_from_slice(&data[offset as usize..end]);
        Ok(())
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        let mut s = self.fs.lock();
        SimFs::step(&mut s)?;
        let w = Pending::Write { offset, bytes: buf.to_vec() };
        let inode = &mut s.inodes[self.id];
        apply(&mut inode.data, &w);
        inode.pending.push(w);
        Ok(())
    }

    fn len(&self) -> io::Result<u64> {
        let s = self.fs.lock();
        if s.crashed {
            return Err(crashed());
        }
        Ok(s.inodes[self.id].data.len() as u64)
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        let mut s = self.fs.lock();
        SimFs::step(&mut s)?;
        let inode = &mut s.inodes[self.id];
        inode.data.resize(len as usize, 0);
        inode.pending.push(Pending::SetLen(len));
        Ok(())
    }

    fn sync_data(&self) -> io::Result<()> {
        let mut s = self.fs.lock();
        SimFs::step(&mut s)?;
        s.syncs += 1;
        let inode = &mut s.inodes[self.id];
        inode.durable = inode.data.clone();
        inode.pending.clear();
        Ok(())
    }

    fn sync_all(&self) -> io::Result<()> {
        self.sync_data()
    }
}

impl Storage for SimFs {
    fn open(&self, path: &Path) -> io::Result<Arc<dyn LogFile>> {
        let s = self.lock();
        if s.crashed {
            return Err(crashed());
        }
        match s.names.get(path) {
            Some(Entry::File(id)) => Ok(Arc::new(SimFile { fs: self.clone(), id: *id })),
            Some(Entry::Dir) => Err(io::Error::other(format!("{}: is a directory", path.display()))),
            None => Err(not_found(path)),
        }
    }

    fn create(&self, path: &Path) -> io::Result<Arc<dyn LogFile>> {
        let mut s = self.lock();
        SimFs::step(&mut s)?;
        if !SimFs::dir_exists(&s, &parent(path)) {
            return Err(not_found(&parent(path)));
        }
        let id = match s.names.get(path) {
            Some(Entry::File(id)) => {
                let id = *id;
                let inode = &mut s.inodes[id];
                inode.data.clear();
                inode.pending.push(Pending::SetLen(0));
                id
            }
            Some(Entry::Dir) => return Err(io::Error::other(format!("{}: is a directory", path.display()))),
            None => {
                s.inodes.push(Inode::default());
                let id = s.inodes.len() - 1;
                SimFs::name_op(&mut s, NameOp::Set(path.to_path_buf(), Entry::File(id)));
                id
            }
        };
        Ok(Arc::new(SimFile { fs: self.clone(), id }))
    }

    fn kind(&self, path: &Path) -> io::Result<Option<Kind>> {
        let s = self.lock();
        if s.crashed {
            return Err(crashed());
        }
        Ok(s.names.get(path).map(|e| match e {
            Entry::File(_) => Kind::File,
            Entry::Dir => Kind::Dir,
        }))
    }

    fn create_dir(&self, path: &Path) -> io::Result<()> {
        let mut s = self.lock();
        SimFs::step(&mut s)?;
        if s.names.contains_key(path) {
            return Err(io::Error::new(io::ErrorKind::AlreadyExists, format!("{}: exists", path.display())));
        }
        if !SimFs::dir_exists(&s, &parent(path)) {
            return Err(not_found(&parent(path)));
        }
        SimFs::name_op(&mut s, NameOp::Set(path.to_path_buf(), Entry::Dir));
        Ok(())
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut s = self.lock();
        SimFs::step(&mut s)?;
        let Some(e) = s.names.get(from).copied() else { return Err(not_found(from)) };
        if !SimFs::dir_exists(&s, &parent(to)) {
            return Err(not_found(&parent(to)));
        }
        if e == Entry::Dir && s.names.contains_key(to) {
            return Err(io::Error::new(io::ErrorKind::AlreadyExists, format!("{}: exists", to.display())));
        }
        SimFs::name_op(&mut s, NameOp::Move(from.to_path_buf(), to.to_path_buf()));
        Ok(())
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let mut s = self.lock();
        SimFs::step(&mut s)?;
        match s.names.get(path) {
            Some(Entry::File(_)) => {
                SimFs::name_op(&mut s, NameOp::Remove(path.to_path_buf()));
                Ok(())
            }
            _ => Err(not_found(path)),
        }
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let s = self.lock();
        if s.crashed {
            return Err(crashed());
        }
        if !SimFs::dir_exists(&s, dir) {
            return Err(not_found(dir));
        }
        Ok(s.names
            .keys()
            .filter(|p| parent(p) == dir && *p != dir)
            .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .collect())
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let mut s = self.lock();
        SimFs::step(&mut s)?;
        s.syncs += 1;
        // Only what touches `dir` becomes durable (a rename, whole): syncing one
        // directory promises nothing about another, not even about its own name.
        let (now, later): (Vec<NameOp>, Vec<NameOp>) =
            std::mem::take(&mut s.pending_names).into_iter().partition(|op| op.touches(dir));
        for op in &now {
            op.apply(&mut s.durable_names);
        }
        s.pending_names = later;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::storage::{read_all, replace};

    #[test]
    fn unsynced_data_and_names_are_lost_and_synced_ones_kept() {
        let fs = SimFs::new();
        let d = Path::new("/d");
        fs.create_dir(d).unwrap();
        fs.sync_dir(Path::new("/")).unwrap();
        let f = fs.create(&d.join("a")).unwrap();
        fs.sync_dir(d).unwrap();
        f.write_at(b"kept", 0).unwrap();
        f.sync_data().unwrap();
        f.write_at(b"lost", 4).unwrap();
        let g = fs.create(&d.join("b")).unwrap();
        g.write_at(b"x", 0).unwrap();
        g.sync_data().unwrap();
        let after = fs.after_crash(0);
        assert_eq!(read_all(&after, &d.join("a")).unwrap().unwrap(), b"kept");
        assert!(read_all(&after, &d.join("b")).unwrap().is_none(), "its directory was never synced");
        let all = fs.after_crash(1);
        assert_eq!(read_all(&all, &d.join("a")).unwrap().unwrap(), b"keptlost");
    }

    #[test]
    fn replace_leaves_old_or_new_content_at_every_crash_point() {
        for n in 1..=8 {
            let fs = SimFs::new();
            replace(&fs, Path::new("/f"), b"old").unwrap();
            fs.crash_at(n);
            let done = replace(&fs, Path::new("/f"), b"new").is_ok();
            for seed in 0..8 {
                let got = read_all(&fs.after_crash(seed), Path::new("/f")).unwrap().unwrap();
                assert!(got == b"old" || got == b"new", "crash at {n}, seed {seed}: {got:?}");
                if done {
                    assert_eq!(got, b"new", "crash at {n}, seed {seed}: a finished replace is durable");
                }
            }
        }
    }

    #[test]
    fn a_crash_fails_the_operation_and_everything_after_it() {
        let fs = SimFs::new();
        fs.crash_at(2);
        let f = fs.create(Path::new("/x")).unwrap();
        assert!(f.write_at(b"a", 0).is_err());
        assert!(f.sync_data().is_err());
        assert!(fs.has_crashed());
    }
}
