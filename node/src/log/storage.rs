//! The decision log's file I/O, behind a small trait so tests can run the log over a
//! simulated file system that crashes (see [`super::sim`]).
//!
//! Only what the log needs: positional reads and writes, length, syncs, create, rename,
//! remove, directory listing and directory sync. [`Disk`] is the real file system.
//! The helpers below ([`replace`], [`create_dir_all`]) carry the durability discipline:
//! a new name is made durable by syncing its parent directory, and a file is replaced
//! by writing a temporary file, syncing it, renaming it over the old one and syncing
//! the directory, so a crash leaves either the old or the new content.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// An open file of the log.
// `len` is the file length, an I/O call; an `is_empty` would add nothing.
#[allow(clippy::len_without_is_empty)]
pub trait LogFile: Send + Sync {
    /// Reads exactly `buf.len()` bytes at `offset`.
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;
    /// Writes all of `buf` at `offset`, extending the file when needed.
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()>;
    fn len(&self) -> io::Result<u64>;
    fn set_len(&self, len: u64) -> io::Result<()>;
    /// `fdatasync`: the data written so far survives a crash.
    fn sync_data(&self) -> io::Result<()>;
    /// `fsync`: the data and the file's metadata (its length) survive a crash.
    fn sync_all(&self) -> io::Result<()>;
}

/// What a path names, if anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    Other,
}

/// The file system the log lives on.
pub trait Storage: Send + Sync {
    /// Opens an existing file for reading and writing.
    fn open(&self, path: &Path) -> io::Result<Arc<dyn LogFile>>;
    /// Creates a file, or truncates it to zero length if it exists. The new name is not
    /// durable until the parent directory is synced.
    fn create(&self, path: &Path) -> io::Result<Arc<dyn LogFile>>;
    fn kind(&self, path: &Path) -> io::Result<Option<Kind>>;
    /// Creates a directory (its parent must exist); not durable until the parent is
    /// synced.
    fn create_dir(&self, path: &Path) -> io::Result<()>;
    /// Renames a file or directory, replacing a file at `to`.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    /// The names in a directory, sorted.
    fn list(&self, dir: &Path) -> io::Result<Vec<String>>;
    /// Makes the directory's entries (creates, renames, removes) durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
}

/// The real file system.
pub struct Disk;

struct DiskFile(File);

impl LogFile for DiskFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.0.read_exact_at(buf, offset)
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.0.write_all_at(buf, offset)
    }

    fn len(&self) -> io::Result<u64> {
        Ok(self.0.metadata()?.len())
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
    }

    fn sync_data(&self) -> io::Result<()> {
        self.0.sync_data()
    }

    fn sync_all(&self) -> io::Result<()> {
        self.0.sync_all()
    }
}

impl Storage for Disk {
    fn open(&self, path: &Path) -> io::Result<Arc<dyn LogFile>> {
        Ok(Arc::new(DiskFile(OpenOptions::new().read(true).write(true).open(path)?)))
    }

    fn create(&self, path: &Path) -> io::Result<Arc<dyn LogFile>> {
        let f = OpenOptions::new().read(true).write(true).create(true).truncate(true).open(path)?;
        Ok(Arc::new(DiskFile(f)))
    }

    fn kind(&self, path: &Path) -> io::Result<Option<Kind>> {
        match std::fs::symlink_metadata(path) {
            Ok(m) if m.is_file() => Ok(Some(Kind::File)),
            Ok(m) if m.is_dir() => Ok(Some(Kind::Dir)),
            Ok(_) => Ok(Some(Kind::Other)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn create_dir(&self, path: &Path) -> io::Result<()> {
        std::fs::create_dir(path)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for e in std::fs::read_dir(dir)? {
            names.push(e?.file_name().to_string_lossy().into_owned());
        }
        names.sort();
        Ok(names)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }
}

/// The directory holding `path` (`.` for a bare name).
pub fn parent(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Reads a whole file, or `None` if it does not exist.
pub fn read_all(fs: &dyn Storage, path: &Path) -> io::Result<Option<Vec<u8>>> {
    let f = match fs.open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut buf = vec![0u8; usize::try_from(f.len()?).map_err(io::Error::other)?];
    f.read_at(&mut buf, 0)?;
    Ok(Some(buf))
}

/// Replaces `path` with `bytes` so that a crash leaves the old content or the new:
/// write a temporary file, sync it, rename it over `path`, sync the directory.
pub fn replace(fs: &dyn Storage, path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let f = fs.create(&tmp)?;
    f.write_at(bytes, 0)?;
    f.sync_all()?;
    drop(f);
    fs.rename(&tmp, path)?;
    fs.sync_dir(&parent(path))
}

/// Creates `dir` and any missing parents, syncing each parent so the new names last.
pub fn create_dir_all(fs: &dyn Storage, dir: &Path) -> io::Result<()> {
    match fs.kind(dir)? {
        Some(Kind::Dir) => return Ok(()),
        Some(_) => return Err(io::Error::new(io::ErrorKind::AlreadyExists, "exists and is not a directory")),
        None => {}
    }
    let up = parent(dir);
    if up != dir {
        create_dir_all(fs, &up)?;
    }
    fs.create_dir(dir)?;
    fs.sync_dir(&up)
}
