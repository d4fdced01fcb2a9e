//! The Merkle tree's node hashes on disk, one append-only file per level: the decision
//! log's [`NodeStore`], so the tree's memory does not grow with the log.
//!
//! Layout of `DATA_DIR/log/hashes/`: one file per tree level, `level-KK` (`KK` the level
//! in two decimal digits; `level-00` holds the leaf hashes). A file holds its level's
//! complete nodes back to back, 32 bytes each, in order: node `i` of level `k`, at byte
//! `32 * i`, is the RFC 9162 hash of the `2^k` leaves from `i * 2^k`. A level-`k` node
//! exists once its subtree is complete, so a tree of `n` leaves has `n >> k` of them.
//!
//! Tiles: the C2SP tlog-tiles tile `tile/L/N` (tile height 8) is the 256 hashes of tree
//! level `8 * L` from offset `256 * N`, so it is exactly bytes `8192 * N .. 8192 * (N + 1)`
//! of file `level-{8L}`, and the partial tile `tile/L/N.p/W` is the first `W` hashes
//! there. The levels between (`8L + 1` to `8L + 7`) are kept too, so that a proof reads
//! one hash per level instead of hashing a tile's worth.
//!
//! Writes: each level buffers the nodes of its current, incomplete tile (at most 256
//! hashes, 8 KiB) and writes them out the moment the tile completes, or on
//! [`HashFiles::flush`]. So every complete tile is in its file as soon as the tree has
//! the leaves that complete it; a partial tile may still be in the buffer, and reads of
//! it are served from there. Memory is the buffers and one open file per level: at most
//! 8 KiB per level (200 KiB for 2^24 leaves), and nothing grows with the log.
//!
//! Reads are positional ([`FileExt::read_exact_at`]) and take `&self`, so request
//! handlers read the tree together under a `RwLock` while the writer thread appends.
//!
//! Durability: these files are derived data. The log rebuilds them from its `entries`
//! file at every start ([`HashFiles::create`] truncates whatever was there), so they are
//! never fsynced and stand outside the crash model: a torn or lost write here is
//! repaired by the next start, and what the node has signed depends only on `entries`.
//! A file cut short behind the store's back makes reads of the missing nodes fail with
//! [`StoreError::Read`] (never a wrong hash); bytes changed in place are not detected.
//!
//! Measured with the ignored tests `measure_hash_files` and `measure_mem_nodes` at the
//! end of this file (each in its own process; 2 shared cores; files in a temporary
//! directory on the machine's disk, page cache warm; silkgate built with
//! `--config profile.dev.package.silkgate.opt-level=3`, its dependencies at the
//! workspace's opt-level 2):
//!
//! | store     | 1M pushes | RSS growth at 1M / 1.1M leaves | inclusion proof at 1M, p50 / p99 |
//! |-----------|-----------|--------------------------------|----------------------------------|
//! | HashFiles | 225 ms    | 0.2 MiB / 0.4 MiB              | 6 us / 13 us                     |
//! | MemNodes  | 205 ms    | 61 MiB / 67.5 MiB              | 1.2 us / 1.9 us                  |
//!
//! At 1M leaves a proof reads at most twelve of its twenty hashes from the files (one
//! `pread` each, levels 0 to 11); levels of fewer than 256 nodes, and the right edge of
//! the tree that roots are made of, are in the buffers. The files (64 bytes per leaf)
//! sit in the page cache, which is not in the process's RSS (a container's memory
//! cgroup counts it, as reclaimable cache). No cache of the top levels is kept: these
//! figures did not call for one. Cold-cache latency was not measured.

use std::fs::{File, OpenOptions};
use std::io::ErrorKind;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use silkgate_core::merkle::{Hash, NodeStore, StoreError};

/// Hashes per C2SP tlog-tiles tile, and per write of a level's buffer.
pub const TILE_WIDTH: u64 = 256;

/// Bytes per stored hash.
const HASH_BYTES: u64 = 32;

/// The highest level a tree of up to `u64::MAX` leaves can reach, plus one.
const MAX_LEVELS: u32 = 64;

/// A [`NodeStore`] in a directory of per-level files; see the module documentation.
pub struct HashFiles {
    dir: PathBuf,
    levels: Vec<Level>,
}

/// One level: its file and the nodes not yet written to it.
struct Level {
    file: File,
    /// Nodes in the file: `0 .. written`.
    written: u64,
    /// Nodes `written ..` that are not in the file yet.
    pending: Vec<Hash>,
}

impl Level {
    fn len(&self) -> u64 {
        self.written + self.pending.len() as u64
    }

    /// Writes the pending nodes at the end of the file. On error they stay pending, so
    /// reads of them still answer from memory.
    fn write_out(&mut self, level: u32) -> Result<(), StoreError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        self.file
            .write_all_at(self.pending.as_flattened(), self.written * HASH_BYTES)
            .map_err(|e| StoreError::Write { level, kind: e.kind() })?;
        self.written += self.pending.len() as u64;
        self.pending.clear();
        Ok(())
    }
}

impl HashFiles {
    /// An empty store in `dir`, created if missing; level files already there are
    /// removed (see the module documentation on durability).
    pub fn create(dir: &Path) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        for level in 0..MAX_LEVELS {
            match std::fs::remove_file(Self::level_path(dir, level)) {
                Err(e) if e.kind() != ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        Ok(Self { dir: dir.to_path_buf(), levels: Vec::new() })
    }

    /// The file that holds `level`'s nodes in the store in `dir`.
    pub fn level_path(dir: &Path, level: u32) -> PathBuf {
        dir.join(format!("level-{level:02}"))
    }

    /// The directory of the files.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// How many nodes of `level` are in its file; the rest are buffered.
    pub fn written(&self, level: u32) -> u64 {
        self.levels.get(level as usize).map_or(0, |l| l.written)
    }
}

impl NodeStore for HashFiles {
    fn len(&self, level: u32) -> u64 {
        self.levels.get(level as usize).map_or(0, Level::len)
    }

    fn read(&self, level: u32, index: u64) -> Result<Hash, StoreError> {
        let len = self.len(level);
        let Some(l) = self.levels.get(level as usize).filter(|_| index < len) else {
            return Err(StoreError::Missing { level, index, len });
        };
        if index >= l.written {
            // In range: index < len = written + pending.len().
            return Ok(l.pending[(index - l.written) as usize]);
        }
        let mut hash = [0; HASH_BYTES as usize];
        l.file.read_exact_at(&mut hash, index * HASH_BYTES).map_err(|e| StoreError::Read {
            level,
            index,
            kind: e.kind(),
        })?;
        Ok(hash)
    }

    fn append(&mut self, level: u32, hash: Hash) -> Result<(), StoreError> {
        if level as usize == self.levels.len() {
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(true)
                .open(Self::level_path(&self.dir, level))
                .map_err(|e| StoreError::Write { level, kind: e.kind() })?;
            self.levels.push(Level { file, written: 0, pending: Vec::new() });
        }
        // A tree opens its levels in order; anything else is a caller's mistake.
        let Some(l) = self.levels.get_mut(level as usize) else {
            return Err(StoreError::Write { level, kind: ErrorKind::InvalidInput });
        };
        l.pending.push(hash);
        if l.len().is_multiple_of(TILE_WIDTH) {
            l.write_out(level)?;
        }
        Ok(())
    }

    /// Writes out every level's buffered nodes, so the files hold the whole tree; tries
    /// every level and returns the first error.
    fn flush(&mut self) -> Result<(), StoreError> {
        let mut first = Ok(());
        for (level, l) in (0..).zip(&mut self.levels) {
            if let Err(e) = l.write_out(level) {
                first = first.and(Err(e));
            }
        }
        first
    }
}

impl std::fmt::Debug for HashFiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HashFiles").field("dir", &self.dir).field("leaves", &self.len(0)).finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::sim::Rng;
    use silkgate_core::merkle::{ProofError, Tree, leaf_hash, verify_consistency, verify_inclusion};

    fn leaf(i: u64) -> Hash {
        leaf_hash(format!("entry {i}").as_bytes())
    }

    fn disk_tree(dir: &Path) -> Tree<HashFiles> {
        Tree::with_store(HashFiles::create(dir).unwrap())
    }

    /// Checks that `disk` answers as `mem` does for the tree of `size` leaves: root,
    /// the given inclusion proofs and the consistency proofs from the given sizes, all of
    /// which must also verify.
    fn check(disk: &Tree<HashFiles>, mem: &Tree, size: u64, indices: &[u64], olds: &[u64]) {
        let root = mem.root_at(size).unwrap();
        assert_eq!(disk.root_at(size), Ok(root), "root at {size}");
        for &index in indices.iter().filter(|&&i| i < size) {
            let proof = disk.inclusion_proof(index, size).unwrap();
            assert_eq!(proof, mem.inclusion_proof(index, size).unwrap(), "{index} in {size}");
            assert_eq!(verify_inclusion(&leaf(index), index, size, &proof, &root), Ok(()));
            assert_eq!(disk.try_leaf(index), Ok(Some(leaf(index))));
        }
        for &old in olds.iter().filter(|&&s| 0 < s && s <= size) {
            let proof = disk.consistency_proof(old, size).unwrap();
            assert_eq!(proof, mem.consistency_proof(old, size).unwrap(), "{old} to {size}");
            let old_root = mem.root_at(old).unwrap();
            assert_eq!(verify_consistency(old, size, &proof, &old_root, &root), Ok(()));
        }
    }

    /// Grows both trees to `n` leaves, checking after every push; with `flush_every`,
    /// flushes the disk tree at that pace so that reads and pushes also meet nodes that
    /// were written out before their tile was complete.
    fn grow_and_compare(n: u64, flush_every: Option<u64>, rng: &mut Rng) {
        let dir = tempfile::tempdir().unwrap();
        let mut disk = disk_tree(dir.path());
        let mut mem = Tree::new();
        for i in 0..n {
            assert_eq!(disk.try_push(leaf(i)), Ok(i));
            mem.push(leaf(i));
            let size = i + 1;
            assert_eq!(disk.len(), size);
            assert_eq!(disk.try_root(), Ok(mem.root()), "size {size}");
            let r = rng.below(size);
            check(&disk, &mem, size, &[0, size / 2, size - 1, r], &[1, size / 2, size - 1, r + 1]);
            if flush_every.is_some_and(|k| size % k == 0) {
                disk.flush().unwrap();
                check(&disk, &mem, size, &[0, size / 2, size - 1, r], &[1, size / 2, size - 1, r + 1]);
            }
        }
    }

    #[test]
    fn every_size_to_600_matches_the_memory_tree() {
        let mut rng = Rng(1);
        grow_and_compare(600, None, &mut rng);
        grow_and_compare(600, Some(37), &mut rng);
    }

    #[test]
    fn every_proof_in_a_small_tree_matches_with_some_nodes_buffered() {
        let dir = tempfile::tempdir().unwrap();
        let mut disk = disk_tree(dir.path());
        let n = 300;
        let mem: Tree = (0..n).map(leaf).collect();
        for i in 0..n {
            disk.try_push(leaf(i)).unwrap();
        }
        // Leaves 0..256 are in their file, 256..300 buffered; level 1 (150 nodes) has no
        // complete tile, so it is all buffered.
        let store = disk.store();
        assert_eq!((store.written(0), store.len(0)), (256, 300));
        assert_eq!((store.written(1), store.len(1)), (0, 150));
        assert_eq!(std::fs::metadata(HashFiles::level_path(dir.path(), 0)).unwrap().len(), 256 * 32);
        let all: Vec<u64> = (0..n).collect();
        for size in 1..=n {
            check(&disk, &mem, size, &all, &all);
        }

        disk.flush().unwrap();
        let store = disk.store();
        assert_eq!((store.written(0), store.written(1)), (300, 150));
        for size in 1..=n {
            check(&disk, &mem, size, &all, &all);
        }
        // Growing on after a flush: siblings are now read back from the files.
        let mem: Tree = (0..n + 300).map(leaf).collect();
        for i in n..n + 300 {
            disk.try_push(leaf(i)).unwrap();
        }
        let all: Vec<u64> = (0..n + 300).collect();
        check(&disk, &mem, n + 300, &all, &all);
    }

    #[test]
    fn random_sizes_to_100k_match_the_memory_tree() {
        let mut rng = Rng(2);
        let n = 100_000;
        let dir = tempfile::tempdir().unwrap();
        let mut disk = disk_tree(dir.path());
        let mut mem = Tree::new();
        let mut sizes: Vec<u64> = (0..40).map(|_| 1 + rng.below(n)).collect();
        sizes.extend([255, 256, 257, 65_535, 65_536, 65_537, n]);
        sizes.sort_unstable();
        let mut next = sizes.iter().copied().peekable();
        for i in 0..n {
            disk.try_push(leaf(i)).unwrap();
            mem.push(leaf(i));
            while next.peek() == Some(&(i + 1)) {
                let size = i + 1;
                next.next();
                assert_eq!(disk.try_root(), Ok(mem.root()));
                let indices: Vec<u64> = (0..20).map(|_| rng.below(size)).chain([0, size - 1]).collect();
                let olds: Vec<u64> = (0..20).map(|_| 1 + rng.below(size)).chain([1, size]).collect();
                check(&disk, &mem, size, &indices, &olds);
            }
        }
        // Old sizes, asked of the grown tree.
        disk.flush().unwrap();
        for &size in &sizes {
            let indices: Vec<u64> = (0..5).map(|_| rng.below(size)).collect();
            let olds: Vec<u64> = (0..5).map(|_| 1 + rng.below(size)).collect();
            check(&disk, &mem, size, &indices, &olds);
        }
    }

    #[test]
    fn files_hold_each_level_back_to_back_and_tiles_are_level_8l() {
        let dir = tempfile::tempdir().unwrap();
        let mut disk = disk_tree(dir.path());
        let n = 3 * 256 + 5;
        let leaves: Vec<Hash> = (0..n).map(leaf).collect();
        for &l in &leaves {
            disk.try_push(l).unwrap();
        }
        disk.flush().unwrap();
        let read = |level: u32| std::fs::read(HashFiles::level_path(dir.path(), level)).unwrap();
        assert_eq!(read(0), leaves.as_flattened());
        // Tile 1/N: the roots of the complete 256-leaf subtrees, each computed apart.
        let tile: Vec<Hash> =
            leaves.chunks_exact(256).map(|chunk| chunk.iter().copied().collect::<Tree>().root()).collect();
        assert_eq!(read(8), tile.as_flattened());
        // Level k holds n >> k nodes: levels 0 to 9 (n < 1024).
        for level in 0..10 {
            assert_eq!(read(level).len() as u64, (n >> level) * 32, "level {level}");
        }
        assert!(!HashFiles::level_path(dir.path(), 10).exists());
    }

    #[test]
    fn create_starts_empty_over_old_files() {
        let dir = tempfile::tempdir().unwrap();
        let mut disk = disk_tree(dir.path());
        for i in 0..1000 {
            disk.try_push(leaf(i)).unwrap();
        }
        disk.flush().unwrap();
        drop(disk);
        assert!(HashFiles::level_path(dir.path(), 9).exists());

        let mut disk = disk_tree(dir.path());
        assert!(disk.is_empty());
        assert_eq!(disk.try_root(), Ok(silkgate_core::merkle::empty_root()));
        assert!(!HashFiles::level_path(dir.path(), 0).exists());
        for i in 0..10 {
            disk.try_push(leaf(i + 5000)).unwrap();
        }
        disk.flush().unwrap();
        assert_eq!(std::fs::metadata(HashFiles::level_path(dir.path(), 0)).unwrap().len(), 10 * 32);
        assert!(!HashFiles::level_path(dir.path(), 9).exists());
        let mem: Tree = (0..10).map(|i| leaf(i + 5000)).collect();
        assert_eq!(disk.try_root(), Ok(mem.root()));
    }

    #[test]
    fn a_file_cut_short_is_an_error_not_a_wrong_hash() {
        let dir = tempfile::tempdir().unwrap();
        let mut disk = disk_tree(dir.path());
        let n = 1000;
        for i in 0..n {
            disk.try_push(leaf(i)).unwrap();
        }
        disk.flush().unwrap();
        let mem: Tree = (0..n).map(leaf).collect();

        let cut = |level: u32, nodes: u64| {
            let file = OpenOptions::new().write(true).open(HashFiles::level_path(dir.path(), level)).unwrap();
            file.set_len(nodes * 32).unwrap();
        };
        cut(0, 100);
        let eof = |level, index| ProofError::Storage(StoreError::Read { level, index, kind: ErrorKind::UnexpectedEof });
        // Leaf 500's proof starts with its sibling, leaf 501.
        assert_eq!(disk.inclusion_proof(500, n), Err(eof(0, 501)));
        assert_eq!(disk.try_leaf(500), Err(StoreError::Read { level: 0, index: 500, kind: ErrorKind::UnexpectedEof }));
        // What is still there still answers; the root (1000 = 512 + 256 + 128 + 64 +
        // 32 + 8) reads no leaf.
        assert_eq!(disk.inclusion_proof(50, n), mem.inclusion_proof(50, n));
        assert_eq!(disk.try_root(), Ok(mem.root()));

        cut(3, 0);
        assert_eq!(disk.try_root(), Err(StoreError::Read { level: 3, index: 124, kind: ErrorKind::UnexpectedEof }));
        assert_eq!(disk.root_at(n), Err(eof(3, 124)));
        assert!(matches!(disk.consistency_proof(10, n), Err(ProofError::Storage(_))));
    }

    #[test]
    fn a_failed_push_stops_the_tree_and_keeps_what_it_had() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("hashes");
        let mut disk = disk_tree(&sub);
        for i in 0..3 {
            disk.try_push(leaf(i)).unwrap();
        }
        let root = disk.try_root().unwrap();
        // Leaf 3 completes a pair at level 1, whose file opens for the first time at
        // level 2; with the directory gone it cannot.
        std::fs::remove_dir_all(&sub).unwrap();
        let failed = StoreError::Write { level: 2, kind: ErrorKind::NotFound };
        assert_eq!(disk.try_push(leaf(3)), Err(failed));
        assert_eq!(disk.len(), 3);
        assert_eq!(disk.try_root(), Ok(root));
        assert_eq!(disk.root_at(3), Ok(root));
        // No further leaf goes in, even one that would need no new file.
        assert_eq!(disk.try_push(leaf(4)), Err(failed));
        assert_eq!(disk.len(), 3);
    }

    #[test]
    fn reads_past_the_end_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = HashFiles::create(dir.path()).unwrap();
        assert_eq!(store.read(0, 0), Err(StoreError::Missing { level: 0, index: 0, len: 0 }));
        store.append(0, leaf(0)).unwrap();
        assert_eq!(store.read(0, 0), Ok(leaf(0)));
        assert_eq!(store.read(0, 1), Err(StoreError::Missing { level: 0, index: 1, len: 1 }));
        assert_eq!(store.read(5, 0), Err(StoreError::Missing { level: 5, index: 0, len: 0 }));
        assert_eq!(store.append(2, leaf(0)), Err(StoreError::Write { level: 2, kind: ErrorKind::InvalidInput }));
    }

    /// This process's resident set (`VmRSS`), in KiB.
    fn rss_kib() -> u64 {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }

    /// Pushes 1,000,000 leaves, times 10,000 inclusion proofs of random leaves at that
    /// size, pushes 100,000 more, and prints the time and the resident set growth.
    fn measure<S: NodeStore>(name: &str, mut tree: Tree<S>) {
        const N: u64 = 1_000_000;
        let leaves: Vec<Hash> = (0..N + 100_000).map(leaf).collect();
        let rss0 = rss_kib();
        let started = std::time::Instant::now();
        for &l in &leaves[..N as usize] {
            tree.try_push(l).unwrap();
        }
        let build = started.elapsed();
        let rss1 = rss_kib();
        let mut rng = Rng(3);
        let mut times: Vec<std::time::Duration> = (0..10_000)
            .map(|_| {
                let index = rng.below(N);
                let started = std::time::Instant::now();
                std::hint::black_box(tree.inclusion_proof(index, N).unwrap());
                started.elapsed()
            })
            .collect();
        times.sort_unstable();
        let started = std::time::Instant::now();
        let root = tree.try_root().unwrap();
        let root_time = started.elapsed();
        for &l in &leaves[N as usize..] {
            tree.try_push(l).unwrap();
        }
        let rss2 = rss_kib();
        eprintln!(
            "{name}: 1M pushes {build:.2?}; RSS +{} KiB after 1M, +{} KiB after 1.1M; inclusion proof at 1M: \
             p50 {:.1?} p99 {:.1?} max {:.1?}; root {root_time:.1?} ({})",
            rss1 - rss0,
            rss2 - rss0,
            times[5_000],
            times[9_900],
            times[9_999],
            hex::encode(&root[..4]),
        );
    }

    #[test]
    #[ignore = "measurement; run optimised, see the module documentation"]
    fn measure_hash_files() {
        let dir = tempfile::tempdir().unwrap();
        measure("HashFiles", disk_tree(dir.path()));
    }

    #[test]
    #[ignore = "measurement; run optimised, see the module documentation"]
    fn measure_mem_nodes() {
        measure("MemNodes", Tree::new());
    }
}
