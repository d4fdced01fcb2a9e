//! The decision log's Merkle tree: RFC 9162 hashing, proofs and proof verification.
//!
//! Hashes follow RFC 6962 / RFC 9162 section 2.1: a leaf is `SHA-256(0x00 || data)`, an
//! interior node `SHA-256(0x01 || left || right)`, the empty tree `SHA-256("")`. Proofs
//! are built by the `PATH` and `SUBPROOF` recursions of sections 2.1.3.1 and 2.1.4.1 and
//! checked by the algorithms of sections 2.1.3.2 and 2.1.4.2, so any standard verifier
//! accepts them.
//!
//! Where the tree keeps its nodes is a [`NodeStore`]: [`MemNodes`] in memory (the
//! default), or the log's files (`log::hashes`). A store that fails makes roots and proofs
//! fail with [`ProofError::Storage`]; none ever comes out wrong.
//!
//! Architecture invariant: this module is pure math over hashes; it never does I/O
//! itself, only through the [`NodeStore`] it is given.

use sha2::{Digest, Sha256};

/// A SHA-256 digest: a leaf hash, an interior node hash or a tree root.
pub type Hash = [u8; 32];

/// The hash of a log entry: `SHA-256(0x00 || data)`.
pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0x00]);
    h.update(data);
    h.finalize().into()
}

/// The hash of an interior node: `SHA-256(0x01 || left || right)`.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([0x01]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// The root of the empty tree: `SHA-256("")`.
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

/// Why a proof could not be built or did not verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    #[error("leaf index {index} is out of range for tree size {size}")]
    IndexOutOfRange { index: u64, size: u64 },
    #[error("tree size {size} exceeds the {len} leaves in the tree")]
    SizeOutOfRange { size: u64, len: u64 },
    #[error("old tree size {size1} is greater than new tree size {size2}")]
    SizesOutOfOrder { size1: u64, size2: u64 },
    #[error("old tree size is 0: the empty tree has no consistency proof")]
    EmptyOldTree,
    #[error("proof has {got} hashes, expected {want}")]
    WrongProofLength { got: usize, want: usize },
    #[error("calculated root does not match the expected root")]
    RootMismatch,
    #[error("calculated old root does not match the expected old root")]
    OldRootMismatch,
    #[error("calculated new root does not match the expected new root")]
    NewRootMismatch,
    #[error("roots differ for the same tree size {size}")]
    RootsDiffer { size: u64 },
    /// The tree's [`NodeStore`] failed; the proof or root is unknown, never wrong.
    #[error("node store: {0}")]
    Storage(#[from] StoreError),
}

/// Why a [`NodeStore`] could not read or keep a node.
///
/// It carries the [`std::io::ErrorKind`] rather than the error itself so that it, and the
/// [`ProofError`] that wraps it, stay `Copy` and comparable; the store knows its own
/// paths, and the level and index say which node failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    #[error("cannot read node {index} at level {level}: {kind}")]
    Read { level: u32, index: u64, kind: std::io::ErrorKind },
    #[error("cannot write nodes at level {level}: {kind}")]
    Write { level: u32, kind: std::io::ErrorKind },
    #[error("node {index} at level {level} is past the {len} nodes stored there")]
    Missing { level: u32, index: u64, len: u64 },
}

/// Where a [`Tree`] keeps the hashes of its complete, aligned subtrees.
///
/// Node `(level, index)` is the root of the `2^level` leaves from `index * 2^level`;
/// level 0 holds the leaf hashes. Each level only grows, one node at a time, and only
/// the tree appends to it: a node at level `k + 1` is appended right after its right
/// child at level `k`.
///
/// Reads take `&self` so that many readers can share a tree behind a `RwLock` while
/// one writer appends.
pub trait NodeStore {
    /// The number of nodes at `level` (0 for a level never written).
    fn len(&self, level: u32) -> u64;

    /// Node `index` at `level`; an error, never a wrong hash, when it cannot be read.
    fn read(&self, level: u32, index: u64) -> Result<Hash, StoreError>;

    /// Appends the next node of `level`.
    fn append(&mut self, level: u32, hash: Hash) -> Result<(), StoreError>;

    /// Writes out whatever the store holds back; stores that hold nothing back do
    /// nothing.
    fn flush(&mut self) -> Result<(), StoreError> {
        Ok(())
    }
}

/// The in-memory [`NodeStore`]: every level in a `Vec`, about 64 bytes per leaf.
#[derive(Clone, Default)]
pub struct MemNodes {
    levels: Vec<Vec<Hash>>,
}

impl NodeStore for MemNodes {
    fn len(&self, level: u32) -> u64 {
        self.levels.get(level as usize).map_or(0, |row| row.len() as u64)
    }

    fn read(&self, level: u32, index: u64) -> Result<Hash, StoreError> {
        let row = self.levels.get(level as usize).map_or(&[][..], Vec::as_slice);
        let missing = StoreError::Missing { level, index, len: row.len() as u64 };
        usize::try_from(index).ok().and_then(|i| row.get(i)).copied().ok_or(missing)
    }

    fn append(&mut self, level: u32, hash: Hash) -> Result<(), StoreError> {
        let level = level as usize;
        if self.levels.len() <= level {
            self.levels.resize_with(level + 1, Vec::new);
        }
        self.levels[level].push(hash);
        Ok(())
    }
}

impl std::fmt::Debug for MemNodes {
    // Millions of hashes are no use in a debug print.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemNodes").field("leaves", &self.len(0)).finish_non_exhaustive()
    }
}

/// An append-only Merkle tree of leaf hashes that answers for every prefix of itself.
///
/// Besides the leaf hashes it keeps, in its [`NodeStore`], the hash of every complete,
/// aligned subtree. Every subtree the RFC recursions visit is either one of those or the
/// right edge of a prefix, so a root or a proof reads O(log n) stored hashes, and the
/// store holds under twice the leaf hashes.
///
/// `Tree` alone is the in-memory tree ([`MemNodes`]), whose [`push`](Tree::push),
/// [`root`](Tree::root) and [`leaf`](Tree::leaf) cannot fail. Any tree has the fallible
/// forms ([`try_push`](Tree::try_push), [`try_root`](Tree::try_root),
/// [`try_leaf`](Tree::try_leaf)), and its roots and proofs report a store's failure as
/// [`ProofError::Storage`].
#[derive(Clone, Default)]
pub struct Tree<S = MemNodes> {
    store: S,
    len: u64,
    /// The error that stopped a [`Tree::try_push`] half way: the store may hold part of
    /// that leaf's nodes, so no further leaf can be placed correctly.
    failed: Option<StoreError>,
}

impl Tree<MemNodes> {
    /// An empty tree in memory.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a leaf hash (see [`leaf_hash`]) and returns its index.
    pub fn push(&mut self, leaf: Hash) -> u64 {
        // MemNodes::append never fails, and the only read is of a node pushed earlier.
        self.try_push(leaf).unwrap_or_else(|e| unreachable!("in-memory tree: {e}"))
    }

    /// The leaf hash at `index`, if the tree has that many leaves.
    pub fn leaf(&self, index: u64) -> Option<Hash> {
        // Reads stay below len, and every node below len was stored in memory.
        self.try_leaf(index).unwrap_or_else(|e| unreachable!("in-memory tree: {e}"))
    }

    /// The root of the whole tree.
    pub fn root(&self) -> Hash {
        // As in leaf: every node the root needs lies below len.
        self.try_root().unwrap_or_else(|e| unreachable!("in-memory tree: {e}"))
    }
}

impl<S: NodeStore> Tree<S> {
    /// A tree over `store`, which must be empty or hold exactly the nodes of the leaves
    /// it holds (as a store a tree filled and then gave back with
    /// [`into_store`](Tree::into_store)).
    pub fn with_store(store: S) -> Self {
        let len = store.len(0);
        Self { store, len, failed: None }
    }

    /// The store that holds the nodes, for reading (such as serving tiles from it).
    pub fn store(&self) -> &S {
        &self.store
    }

    /// Gives back the store.
    pub fn into_store(self) -> S {
        self.store
    }

    /// Appends a leaf hash (see [`leaf_hash`]) and returns its index.
    ///
    /// After an error the leaf is not in the tree, and the tree takes no more leaves
    /// (each later call returns the same error), as the store may hold part of that
    /// leaf's nodes; roots and proofs of the leaves already in stay correct. Rebuild
    /// the tree to go on.
    pub fn try_push(&mut self, leaf: Hash) -> Result<u64, StoreError> {
        if let Some(e) = self.failed {
            return Err(e);
        }
        let index = self.len;
        if let Err(e) = self.store_leaf(leaf) {
            self.failed = Some(e);
            return Err(e);
        }
        self.len += 1;
        Ok(index)
    }

    /// Stores leaf `len` and every subtree it completes.
    fn store_leaf(&mut self, leaf: Hash) -> Result<(), StoreError> {
        let mut hash = leaf;
        // The new node's index at `level`.
        let mut at = self.len;
        let mut level = 0;
        loop {
            self.store.append(level, hash)?;
            // An even index means the new node has no sibling yet, so no parent either.
            if at.is_multiple_of(2) {
                return Ok(());
            }
            hash = node_hash(&self.store.read(level, at - 1)?, &hash);
            at /= 2;
            level += 1;
        }
    }

    /// Writes out whatever the store holds back (see [`NodeStore::flush`]).
    pub fn flush(&mut self) -> Result<(), StoreError> {
        self.store.flush()
    }

    /// The number of leaves.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the tree has no leaves.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The leaf hash at `index`, `None` if the tree has no more than `index` leaves.
    pub fn try_leaf(&self, index: u64) -> Result<Option<Hash>, StoreError> {
        if index >= self.len {
            return Ok(None);
        }
        self.store.read(0, index).map(Some)
    }

    /// The root of the whole tree.
    pub fn try_root(&self) -> Result<Hash, StoreError> {
        if self.is_empty() { Ok(empty_root()) } else { self.subtree(0, self.len()) }
    }

    /// The root of the tree made of the first `size` leaves.
    pub fn root_at(&self, size: u64) -> Result<Hash, ProofError> {
        self.check_size(size)?;
        if size == 0 {
            return Ok(empty_root());
        }
        Ok(self.subtree(0, size)?)
    }

    /// The inclusion proof of leaf `index` in the tree of the first `size` leaves
    /// (RFC 9162 section 2.1.3.1, `PATH(index, D[0:size])`), nearest the leaf first.
    pub fn inclusion_proof(&self, index: u64, size: u64) -> Result<Vec<Hash>, ProofError> {
        self.check_size(size)?;
        if index >= size {
            return Err(ProofError::IndexOutOfRange { index, size });
        }
        let mut proof = Vec::with_capacity(inclusion_proof_len(index, size));
        self.path(index, 0, size, &mut proof)?;
        Ok(proof)
    }

    /// The proof that the tree of the first `size1` leaves is a prefix of the tree of the
    /// first `size2` (RFC 9162 section 2.1.4.1, `PROOF(size1, D[0:size2])`).
    ///
    /// Equal sizes give an empty proof. `size1 == 0` is an error: the RFC defines no
    /// proof from the empty tree, and [`verify_consistency`] rejects it.
    pub fn consistency_proof(&self, size1: u64, size2: u64) -> Result<Vec<Hash>, ProofError> {
        self.check_size(size2)?;
        if size1 > size2 {
            return Err(ProofError::SizesOutOfOrder { size1, size2 });
        }
        if size1 == 0 {
            return Err(ProofError::EmptyOldTree);
        }
        let mut proof = Vec::with_capacity(consistency_proof_len(size1, size2));
        if size1 < size2 {
            self.subproof(size1, 0, size2, true, &mut proof)?;
        }
        Ok(proof)
    }

    fn check_size(&self, size: u64) -> Result<(), ProofError> {
        let len = self.len();
        if size > len {
            return Err(ProofError::SizeOutOfRange { size, len });
        }
        Ok(())
    }

    /// `MTH(D[start:start+n])`, for `n > 0` and a range the RFC recursions can visit:
    /// `start` is a multiple of the smallest power of two not below `n`.
    fn subtree(&self, start: u64, n: u64) -> Result<Hash, StoreError> {
        debug_assert!(n > 0 && start + n <= self.len());
        if n.is_power_of_two() {
            let level = n.trailing_zeros();
            debug_assert_eq!(start % n, 0, "subtree at {start} of {n} leaves is unaligned");
            // Stored: the whole subtree lies within the leaves, and try_push stores a
            // parent as soon as both of its children exist.
            return self.store.read(level, start >> level);
        }
        let k = split(n);
        Ok(node_hash(&self.subtree(start, k)?, &self.subtree(start + k, n - k)?))
    }

    /// RFC 9162 `PATH(m, D[start:start+n])`, appended to `out`.
    fn path(&self, m: u64, start: u64, n: u64, out: &mut Vec<Hash>) -> Result<(), StoreError> {
        if n == 1 {
            return Ok(());
        }
        let k = split(n);
        if m < k {
            self.path(m, start, k, out)?;
            out.push(self.subtree(start + k, n - k)?);
        } else {
            self.path(m - k, start + k, n - k, out)?;
            out.push(self.subtree(start, k)?);
        }
        Ok(())
    }

    /// RFC 9162 `SUBPROOF(m, D[start:start+n], b)`, appended to `out`.
    fn subproof(&self, m: u64, start: u64, n: u64, b: bool, out: &mut Vec<Hash>) -> Result<(), StoreError> {
        if m == n {
            if !b {
                out.push(self.subtree(start, n)?);
            }
            return Ok(());
        }
        let k = split(n);
        if m <= k {
            self.subproof(m, start, k, b, out)?;
            out.push(self.subtree(start + k, n - k)?);
        } else {
            self.subproof(m - k, start + k, n - k, false, out)?;
            out.push(self.subtree(start, k)?);
        }
        Ok(())
    }
}

impl<S> std::fmt::Debug for Tree<S> {
    // Millions of hashes are no use in a debug print.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tree").field("len", &self.len).field("failed", &self.failed).finish_non_exhaustive()
    }
}

impl Extend<Hash> for Tree {
    fn extend<I: IntoIterator<Item = Hash>>(&mut self, leaves: I) {
        for leaf in leaves {
            self.push(leaf);
        }
    }
}

impl FromIterator<Hash> for Tree {
    fn from_iter<I: IntoIterator<Item = Hash>>(leaves: I) -> Self {
        let mut tree = Tree::new();
        tree.extend(leaves);
        tree
    }
}

/// The largest power of two strictly below `n`, for `n >= 2`: the RFC's split point `k`.
fn split(n: u64) -> u64 {
    debug_assert!(n >= 2);
    1 << (63 - (n - 1).leading_zeros())
}

/// The number of hashes in the inclusion proof of `index` in a tree of `size` leaves,
/// for `index < size`.
fn inclusion_proof_len(index: u64, size: u64) -> usize {
    debug_assert!(index < size);
    // Below the level where the paths to `index` and to the last leaf meet, every
    // level contributes a sibling; above it, only the levels where `index` lies in a
    // right child do, as the left sibling there is a complete subtree.
    let inner = 64 - (index ^ (size - 1)).leading_zeros();
    // A shift by 64 would overflow; nothing of `index` lies above the top level.
    let border = index.checked_shr(inner).unwrap_or(0).count_ones();
    (inner + border) as usize
}

/// The number of hashes in the consistency proof from `size1` to `size2` leaves, for
/// `0 < size1 <= size2`.
fn consistency_proof_len(size1: u64, size2: u64) -> usize {
    debug_assert!(0 < size1 && size1 <= size2);
    if size1 == size2 {
        return 0;
    }
    // The proof is the inclusion proof of the old tree's last leaf, minus the levels
    // inside the old tree's rightmost complete subtree, which the verifier starts from;
    // that subtree's hash leads the proof unless it is the whole old tree (root1).
    let shift = size1.trailing_zeros() as usize;
    let seed = usize::from(!size1.is_power_of_two());
    inclusion_proof_len(size1 - 1, size2) - shift + seed
}

/// Checks that `leaf_hash` is leaf `index` of the tree of `size` leaves whose root is
/// `root`, by RFC 9162 section 2.1.3.2.
pub fn verify_inclusion(
    leaf_hash: &Hash,
    index: u64,
    size: u64,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), ProofError> {
    if index >= size {
        return Err(ProofError::IndexOutOfRange { index, size });
    }
    let want = inclusion_proof_len(index, size);
    if proof.len() != want {
        return Err(ProofError::WrongProofLength { got: proof.len(), want });
    }
    let wrong_length = ProofError::WrongProofLength { got: proof.len(), want };

    // The RFC's own length checks below cannot fail after the check above; they stay
    // so the loop is the RFC algorithm step for step.
    let (mut fn_, mut sn) = (index, size - 1);
    let mut r = *leaf_hash;
    for p in proof {
        if sn == 0 {
            return Err(wrong_length);
        }
        if fn_ & 1 == 1 || fn_ == sn {
            r = node_hash(p, &r);
            while fn_ & 1 == 0 && fn_ != 0 {
                fn_ >>= 1;
                sn >>= 1;
            }
        } else {
            r = node_hash(&r, p);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    if sn != 0 {
        return Err(wrong_length);
    }
    if r != *root {
        return Err(ProofError::RootMismatch);
    }
    Ok(())
}

/// Checks that the tree of `size1` leaves with root `root1` is a prefix of the tree of
/// `size2` leaves with root `root2`, by RFC 9162 section 2.1.4.2.
///
/// Beyond the RFC, which defines proofs only for `0 < size1 < size2`: equal sizes pass
/// with an empty proof and equal roots, and `size1 == 0` is always rejected, as the
/// transparency-dev test vectors expect.
pub fn verify_consistency(
    size1: u64,
    size2: u64,
    proof: &[Hash],
    root1: &Hash,
    root2: &Hash,
) -> Result<(), ProofError> {
    if size1 > size2 {
        return Err(ProofError::SizesOutOfOrder { size1, size2 });
    }
    if size1 == 0 {
        return Err(ProofError::EmptyOldTree);
    }
    let want = consistency_proof_len(size1, size2);
    if proof.len() != want {
        return Err(ProofError::WrongProofLength { got: proof.len(), want });
    }
    if size1 == size2 {
        if root1 != root2 {
            return Err(ProofError::RootsDiffer { size: size1 });
        }
        return Ok(());
    }
    let wrong_length = ProofError::WrongProofLength { got: proof.len(), want };

    // As in verify_inclusion, the RFC's length checks are kept though unreachable.
    // Step 1.
    let Some((first, rest)) = proof.split_first() else {
        return Err(wrong_length);
    };
    // Step 2: prepending root1 is the same as starting from it, the proof intact.
    let (seed, path) = if size1.is_power_of_two() { (root1, proof) } else { (first, rest) };
    // Steps 3 and 4.
    let (mut fn_, mut sn) = (size1 - 1, size2 - 1);
    while fn_ & 1 == 1 {
        fn_ >>= 1;
        sn >>= 1;
    }
    // Steps 5 and 6.
    let (mut fr, mut sr) = (*seed, *seed);
    for c in path {
        if sn == 0 {
            return Err(wrong_length);
        }
        if fn_ & 1 == 1 || fn_ == sn {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            while fn_ & 1 == 0 && fn_ != 0 {
                fn_ >>= 1;
                sn >>= 1;
            }
        } else {
            sr = node_hash(&sr, c);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    // Step 7.
    if sn != 0 {
        return Err(wrong_length);
    }
    if fr != *root1 {
        return Err(ProofError::OldRootMismatch);
    }
    if sr != *root2 {
        return Err(ProofError::NewRootMismatch);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: u64 = 64;

    fn data(i: u64) -> Vec<u8> {
        format!("entry {i}").into_bytes()
    }

    fn leaves(n: u64) -> Vec<Hash> {
        (0..n).map(|i| leaf_hash(&data(i))).collect()
    }

    /// RFC 6962 section 2.1 `MTH`, written straight from the definition.
    fn mth(d: &[Hash]) -> Hash {
        match d.len() {
            0 => empty_root(),
            1 => d[0],
            n => {
                let k = split(n as u64) as usize;
                node_hash(&mth(&d[..k]), &mth(&d[k..]))
            }
        }
    }

    /// RFC 9162 `PATH` over a slice, straight from the definition.
    fn naive_path(m: usize, d: &[Hash]) -> Vec<Hash> {
        if d.len() == 1 {
            return vec![];
        }
        let k = split(d.len() as u64) as usize;
        let (mut p, sibling) =
            if m < k { (naive_path(m, &d[..k]), mth(&d[k..])) } else { (naive_path(m - k, &d[k..]), mth(&d[..k])) };
        p.push(sibling);
        p
    }

    /// RFC 9162 `SUBPROOF` over a slice, straight from the definition.
    fn naive_subproof(m: usize, d: &[Hash], b: bool) -> Vec<Hash> {
        let n = d.len();
        if m == n {
            return if b { vec![] } else { vec![mth(d)] };
        }
        let k = split(n as u64) as usize;
        let (mut p, sibling) = if m <= k {
            (naive_subproof(m, &d[..k], b), mth(&d[k..]))
        } else {
            (naive_subproof(m - k, &d[k..], false), mth(&d[..k]))
        };
        p.push(sibling);
        p
    }

    fn flip(h: &Hash) -> Hash {
        let mut h = *h;
        h[7] ^= 0x10;
        h
    }

    #[test]
    fn hashes_match_known_values() {
        assert_eq!(hex::encode(empty_root()), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
        assert_eq!(hex::encode(leaf_hash(b"")), "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d");
        // Root of the four-leaf tree of the RFC 6962 test data (empty, 0x00, 0x10,
        // 0x2021), as used by the CT reference implementations.
        let d: Vec<Hash> = [&b""[..], &[0x00], &[0x10], &[0x20, 0x21]].iter().map(|d| leaf_hash(d)).collect();
        assert_eq!(hex::encode(mth(&d)), "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7");
    }

    #[test]
    fn roots_match_the_definition() {
        let all = leaves(MAX);
        let mut tree = Tree::new();
        assert_eq!(tree.root(), empty_root());
        assert_eq!(tree.root_at(0), Ok(empty_root()));
        for (i, leaf) in all.iter().enumerate() {
            assert_eq!(tree.push(*leaf), i as u64);
            assert_eq!(tree.len(), i as u64 + 1);
            assert_eq!(tree.root(), mth(&all[..=i]), "size {}", i + 1);
        }
        for size in 0..=MAX {
            assert_eq!(tree.root_at(size), Ok(mth(&all[..size as usize])));
        }
        assert_eq!(tree.root_at(MAX + 1), Err(ProofError::SizeOutOfRange { size: MAX + 1, len: MAX }));
        assert_eq!(tree.leaf(3), Some(all[3]));
        assert_eq!(tree.leaf(MAX), None);
        assert_eq!(tree.leaf(u64::MAX), None);
    }

    #[test]
    fn every_inclusion_proof_verifies_and_tampering_fails() {
        let all = leaves(MAX);
        let tree: Tree = all.iter().copied().collect();
        for size in 1..=MAX {
            let d = &all[..size as usize];
            let root = tree.root_at(size).unwrap();
            for index in 0..size {
                let leaf = &all[index as usize];
                let proof = tree.inclusion_proof(index, size).unwrap();
                assert_eq!(proof, naive_path(index as usize, d), "{index} in {size}");
                assert_eq!(proof.len(), inclusion_proof_len(index, size));
                assert_eq!(verify_inclusion(leaf, index, size, &proof, &root), Ok(()));

                assert!(verify_inclusion(&flip(leaf), index, size, &proof, &root).is_err());
                assert!(verify_inclusion(leaf, index, size, &proof, &flip(&root)).is_err());
                for i in 0..proof.len() {
                    let mut bad = proof.clone();
                    bad[i] = flip(&bad[i]);
                    assert!(verify_inclusion(leaf, index, size, &bad, &root).is_err());
                }
                let mut longer = proof.clone();
                longer.push(root);
                assert!(verify_inclusion(leaf, index, size, &longer, &root).is_err());
                if let Some((_, shorter)) = proof.split_last() {
                    assert!(verify_inclusion(leaf, index, size, shorter, &root).is_err());
                }
                for other in (0..size + 2).filter(|&i| i != index) {
                    assert!(verify_inclusion(leaf, other, size, &proof, &root).is_err());
                }
                // The verifier cannot tell sizes apart whose paths have the same shape
                // (index 0 in 3 or 4 leaves): the signed root is what binds the size.
                // Sizes that change the proof length must fail.
                for other in (1..size + 2).filter(|&s| s != size && index < s) {
                    if inclusion_proof_len(index, other) != proof.len() {
                        assert!(verify_inclusion(leaf, index, other, &proof, &root).is_err());
                    }
                }
            }
        }
    }

    #[test]
    fn every_consistency_proof_verifies_and_tampering_fails() {
        let all = leaves(MAX);
        let tree: Tree = all.iter().copied().collect();
        for size2 in 1..=MAX {
            let root2 = tree.root_at(size2).unwrap();
            for size1 in 1..=size2 {
                let root1 = tree.root_at(size1).unwrap();
                let proof = tree.consistency_proof(size1, size2).unwrap();
                let d = &all[..size2 as usize];
                let want = if size1 == size2 { vec![] } else { naive_subproof(size1 as usize, d, true) };
                assert_eq!(proof, want, "{size1} to {size2}");
                assert_eq!(proof.len(), consistency_proof_len(size1, size2));
                let ok = verify_consistency(size1, size2, &proof, &root1, &root2);
                assert_eq!(ok, Ok(()), "{size1} to {size2}");

                let bad_root1 = verify_consistency(size1, size2, &proof, &flip(&root1), &root2);
                assert!(bad_root1.is_err());
                let bad_root2 = verify_consistency(size1, size2, &proof, &root1, &flip(&root2));
                assert!(bad_root2.is_err());
                for i in 0..proof.len() {
                    let mut bad = proof.clone();
                    bad[i] = flip(&bad[i]);
                    assert!(verify_consistency(size1, size2, &bad, &root1, &root2).is_err());
                }
                let mut longer = proof.clone();
                longer.push(root2);
                assert!(verify_consistency(size1, size2, &longer, &root1, &root2).is_err());
                let mut preceded = vec![root1];
                preceded.extend_from_slice(&proof);
                assert!(verify_consistency(size1, size2, &preceded, &root1, &root2).is_err());
                if let Some((_, shorter)) = proof.split_last() {
                    assert!(verify_consistency(size1, size2, shorter, &root1, &root2).is_err());
                }
                if size1 != size2 {
                    let swapped = verify_consistency(size1, size2, &proof, &root2, &root1);
                    assert!(swapped.is_err());
                }
            }
        }
    }

    #[test]
    fn proofs_reject_impossible_sizes() {
        let tree: Tree = leaves(5).into_iter().collect();
        assert_eq!(tree.inclusion_proof(5, 5), Err(ProofError::IndexOutOfRange { index: 5, size: 5 }));
        assert_eq!(tree.inclusion_proof(0, 6), Err(ProofError::SizeOutOfRange { size: 6, len: 5 }));
        assert_eq!(tree.consistency_proof(3, 2), Err(ProofError::SizesOutOfOrder { size1: 3, size2: 2 }));
        assert_eq!(tree.consistency_proof(0, 3), Err(ProofError::EmptyOldTree));
        assert_eq!(tree.consistency_proof(5, 5), Ok(vec![]));

        let root = tree.root();
        assert_eq!(verify_inclusion(&root, 0, 0, &[], &root), Err(ProofError::IndexOutOfRange { index: 0, size: 0 }));
        assert_eq!(
            verify_inclusion(&root, u64::MAX, u64::MAX, &[], &root),
            Err(ProofError::IndexOutOfRange { index: u64::MAX, size: u64::MAX })
        );
        let empty = empty_root();
        assert_eq!(verify_consistency(0, 0, &[], &empty, &empty), Err(ProofError::EmptyOldTree));
        assert_eq!(verify_consistency(0, 5, &[], &empty, &root), Err(ProofError::EmptyOldTree));
        assert_eq!(verify_consistency(5, 5, &[], &root, &flip(&root)), Err(ProofError::RootsDiffer { size: 5 }));
        assert_eq!(
            verify_consistency(5, 5, &[root], &root, &root),
            Err(ProofError::WrongProofLength { got: 1, want: 0 })
        );
    }

    #[test]
    fn stores_report_missing_nodes_and_trees_move_between_stores() {
        let tree: Tree = leaves(5).into_iter().collect();
        let store = tree.store();
        assert_eq!((store.len(0), store.len(1), store.len(2), store.len(3)), (5, 2, 1, 0));
        assert_eq!(store.read(2, 0), Ok(mth(&leaves(4))));
        assert_eq!(store.read(1, 2), Err(StoreError::Missing { level: 1, index: 2, len: 2 }));
        assert_eq!(store.read(9, u64::MAX), Err(StoreError::Missing { level: 9, index: u64::MAX, len: 0 }));
        let err = ProofError::from(StoreError::Missing { level: 1, index: 2, len: 2 });
        assert_eq!(err.to_string(), "node store: node 2 at level 1 is past the 2 nodes stored there");

        let mut moved = Tree::with_store(tree.clone().into_store());
        assert_eq!((moved.len(), moved.root()), (5, tree.root()));
        moved.push(leaf_hash(&data(5)));
        assert_eq!(moved.root(), mth(&leaves(6)));
        assert_eq!(moved.flush(), Ok(()));
    }

    #[test]
    fn large_sizes_do_not_overflow() {
        // Proof lengths near u64::MAX exercise the bit arithmetic without a tree.
        assert_eq!(inclusion_proof_len(0, u64::MAX), 64);
        assert_eq!(inclusion_proof_len(u64::MAX - 1, u64::MAX), 63);
        assert_eq!(consistency_proof_len(1 << 63, u64::MAX), 1);
        assert_eq!(consistency_proof_len(1 << 62, u64::MAX), 2);
        assert_eq!(consistency_proof_len(3, u64::MAX), 65);
        // Right-length proofs run the whole verification loop, then miss the root.
        let h = empty_root();
        let miss = Err(ProofError::RootMismatch);
        assert_eq!(verify_inclusion(&h, 0, u64::MAX, &[h; 64], &h), miss);
        assert_eq!(verify_inclusion(&h, u64::MAX - 1, u64::MAX, &[h; 63], &h), miss);
        let old_miss = Err(ProofError::OldRootMismatch);
        assert_eq!(verify_consistency(1 << 62, u64::MAX, &[h; 2], &h, &flip(&h)), Err(ProofError::NewRootMismatch));
        assert_eq!(verify_consistency(3, u64::MAX, &[h; 65], &h, &h), old_miss);
    }
}
