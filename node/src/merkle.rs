//! The decision log's Merkle tree: RFC 9162 hashing, proofs and proof verification.
//!
//! Hashes follow RFC 6962 / RFC 9162 section 2.1: a leaf is `SHA-256(0x00 || data)`, an
//! interior node `SHA-256(0x01 || left || right)`, the empty tree `SHA-256("")`. Proofs
//! are built by the `PATH` and `SUBPROOF` recursions of sections 2.1.3.1 and 2.1.4.1 and
//! checked by the algorithms of sections 2.1.3.2 and 2.1.4.2, so any standard verifier
//! accepts them.
//!
//! Architecture invariant: this module is pure math over hashes; it never does I/O.

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
}

/// An append-only Merkle tree of leaf hashes that answers for every prefix of itself.
///
/// Besides the leaf hashes it keeps the hash of every complete, aligned subtree:
/// `levels[k][i]` covers the `2^k` leaves from `i * 2^k`. Every subtree the RFC
/// recursions visit is either one of those or the right edge of a prefix, so a root or
/// a proof costs O(log n) hashes, and memory stays under twice the leaf hashes.
#[derive(Clone, Default)]
pub struct Tree {
    levels: Vec<Vec<Hash>>,
}

impl Tree {
    /// An empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a leaf hash (see [`leaf_hash`]) and returns its index.
    pub fn push(&mut self, leaf: Hash) -> u64 {
        let index = self.len();
        let mut hash = leaf;
        let mut level = 0;
        loop {
            if self.levels.len() == level {
                self.levels.push(Vec::new());
            }
            let row = &mut self.levels[level];
            row.push(hash);
            // An odd count means the new node has no sibling yet, so no parent either.
            if row.len() % 2 == 1 {
                break;
            }
            hash = node_hash(&row[row.len() - 2], &row[row.len() - 1]);
            level += 1;
        }
        index
    }

    /// The number of leaves.
    pub fn len(&self) -> u64 {
        self.levels.first().map_or(0, |leaves| leaves.len() as u64)
    }

    /// Whether the tree has no leaves.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The leaf hash at `index`, if the tree has that many leaves.
    pub fn leaf(&self, index: u64) -> Option<Hash> {
        let leaves = self.levels.first()?;
        leaves.get(usize::try_from(index).ok()?).copied()
    }

    /// The root of the whole tree.
    pub fn root(&self) -> Hash {
        if self.is_empty() { empty_root() } else { self.subtree(0, self.len()) }
    }

    /// The root of the tree made of the first `size` leaves.
    pub fn root_at(&self, size: u64) -> Result<Hash, ProofError> {
        self.check_size(size)?;
        if size == 0 {
            return Ok(empty_root());
        }
        Ok(self.subtree(0, size))
    }

    /// The inclusion proof of leaf `index` in the tree of the first `size` leaves
    /// (RFC 9162 section 2.1.3.1, `PATH(index, D[0:size])`), nearest the leaf first.
    pub fn inclusion_proof(&self, index: u64, size: u64) -> Result<Vec<Hash>, ProofError> {
        self.check_size(size)?;
        if index >= size {
            return Err(ProofError::IndexOutOfRange { index, size });
        }
        let mut proof = Vec::with_capacity(inclusion_proof_len(index, size));
        self.path(index, 0, size, &mut proof);
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
            self.subproof(size1, 0, size2, true, &mut proof);
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
    fn subtree(&self, start: u64, n: u64) -> Hash {
        debug_assert!(n > 0 && start + n <= self.len());
        if n.is_power_of_two() {
            let level = n.trailing_zeros();
            debug_assert_eq!(start % n, 0, "subtree at {start} of {n} leaves is unaligned");
            // In range: the whole subtree lies within the leaves, and push stores a
            // parent as soon as both of its children exist.
            return self.levels[level as usize][(start >> level) as usize];
        }
        let k = split(n);
        node_hash(&self.subtree(start, k), &self.subtree(start + k, n - k))
    }

    /// RFC 9162 `PATH(m, D[start:start+n])`, appended to `out`.
    fn path(&self, m: u64, start: u64, n: u64, out: &mut Vec<Hash>) {
        if n == 1 {
            return;
        }
        let k = split(n);
        if m < k {
            self.path(m, start, k, out);
            out.push(self.subtree(start + k, n - k));
        } else {
            self.path(m - k, start + k, n - k, out);
            out.push(self.subtree(start, k));
        }
    }

    /// RFC 9162 `SUBPROOF(m, D[start:start+n], b)`, appended to `out`.
    fn subproof(&self, m: u64, start: u64, n: u64, b: bool, out: &mut Vec<Hash>) {
        if m == n {
            if !b {
                out.push(self.subtree(start, n));
            }
            return;
        }
        let k = split(n);
        if m <= k {
            self.subproof(m, start, k, b, out);
            out.push(self.subtree(start + k, n - k));
        } else {
            self.subproof(m - k, start + k, n - k, false, out);
            out.push(self.subtree(start, k));
        }
    }
}

impl std::fmt::Debug for Tree {
    // Millions of hashes are no use in a debug print.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tree").field("len", &self.len()).finish_non_exhaustive()
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
