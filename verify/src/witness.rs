//! The witness's decisions, as pure functions: C2SP tlog-witness `add-checkpoint`
//! request bodies and the check of a new checkpoint against the one last cosigned
//! (c2sp.org/tlog-witness).
//!
//! Architecture invariant: no I/O; the node's witness (`node/src/witness.rs`) stores the
//! state and answers HTTP.

use base64::{Engine as _, engine::general_purpose::STANDARD};

use crate::checkpoint::{Checkpoint, MAX_NOTE_LEN};
use crate::merkle::{Hash, ProofError, node_hash, verify_consistency};

/// Most consistency proof lines a request may carry (the spec's bound).
pub const MAX_PROOF_LINES: usize = 63;
/// Largest `add-checkpoint` body read: the old size line, 63 proof lines, a note.
pub const MAX_REQUEST_BYTES: usize = 64 + MAX_PROOF_LINES * 46 + MAX_NOTE_LEN;

/// An `add-checkpoint` request body, parsed (the note is not verified yet).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddCheckpoint {
    pub old_size: u64,
    pub proof: Vec<Hash>,
    /// The checkpoint note as sent, possibly with several signatures.
    pub note: String,
}

/// Why a request body is malformed (HTTP 400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error("request body is over {MAX_REQUEST_BYTES} bytes")]
    TooLarge,
    #[error("request body is not UTF-8")]
    NotUtf8,
    #[error("line {line}: {what}")]
    Line { line: usize, what: &'static str },
}

impl AddCheckpoint {
    /// Parses `old <size>\n`, up to 63 base64 hash lines, an empty line, and the note.
    pub fn parse(body: &[u8]) -> Result<AddCheckpoint, RequestError> {
        if body.len() > MAX_REQUEST_BYTES {
            return Err(RequestError::TooLarge);
        }
        let text = std::str::from_utf8(body).map_err(|_| RequestError::NotUtf8)?;
        let (first, mut rest) =
            text.split_once('\n').ok_or(RequestError::Line { line: 1, what: "no old size line" })?;
        let old_size = first
            .strip_prefix("old ")
            .and_then(decimal)
            .ok_or(RequestError::Line { line: 1, what: "expected `old <decimal size>`" })?;
        let mut proof = Vec::new();
        loop {
            let line = proof.len() + 2;
            let (l, r) = rest
                .split_once('\n')
                .ok_or(RequestError::Line { line, what: "no empty line before the checkpoint" })?;
            rest = r;
            if l.is_empty() {
                break;
            }
            if proof.len() == MAX_PROOF_LINES {
                return Err(RequestError::Line { line, what: "more than 63 consistency proof lines" });
            }
            let h = STANDARD.decode(l).ok().and_then(|b| Hash::try_from(b.as_slice()).ok());
            proof.push(h.ok_or(RequestError::Line { line, what: "not base64 of a 32-byte hash" })?);
        }
        Ok(AddCheckpoint { old_size, proof, note: rest.to_owned() })
    }

    /// The request body for this request.
    pub fn to_body(&self) -> String {
        let mut out = format!("old {}\n", self.old_size);
        for h in &self.proof {
            out.push_str(&STANDARD.encode(h));
            out.push('\n');
        }
        out.push('\n');
        out.push_str(&self.note);
        out
    }
}

/// ASCII decimal without sign or leading zeros.
fn decimal(s: &str) -> Option<u64> {
    let ok = !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && (s.len() == 1 || !s.starts_with('0'));
    if ok { s.parse().ok() } else { None }
}

/// What the witness last cosigned for an origin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cosigned {
    pub size: u64,
    pub root: Hash,
}

/// Why a validly signed checkpoint is not cosigned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// 400: the old size is larger than the checkpoint's.
    #[error("old size {old} is larger than the checkpoint size {new}")]
    OldSizeTooLarge { old: u64, new: u64 },
    /// 409: the old size is not the size last cosigned (`known`, sent back).
    #[error("old size {old} is not the size last cosigned, {known}")]
    Conflict { old: u64, known: u64 },
    /// 422: the proof does not connect the cosigned tree to the checkpoint.
    #[error("consistency proof from {old} to {new} does not verify: {reason}")]
    BadProof { old: u64, new: u64, reason: String },
    /// 409 and an alarm: the log signed a tree that is not an extension of the one
    /// cosigned. The witness keeps both notes as evidence.
    #[error("split view: {0}")]
    SplitView(String),
}

/// Checks a checkpoint (its signature already verified) against the state of its origin
/// (`None`: never cosigned). `Ok` means the witness may cosign and must store the new
/// size and root first.
pub fn check(state: Option<Cosigned>, req_old: u64, proof: &[Hash], new: &Checkpoint) -> Result<(), Refusal> {
    if req_old > new.size {
        return Err(Refusal::OldSizeTooLarge { old: req_old, new: new.size });
    }
    let known = state.map_or(0, |s| s.size);
    if req_old != known {
        return Err(Refusal::Conflict { old: req_old, known });
    }
    let Some(state) = state.filter(|s| s.size > 0) else {
        // Never cosigned, or only the empty tree: nothing to be consistent with.
        if !proof.is_empty() {
            return Err(Refusal::BadProof {
                old: 0,
                new: new.size,
                reason: "the proof must be empty from size 0".into(),
            });
        }
        return Ok(());
    };
    if state.size == new.size {
        if state.root != new.root {
            return Err(Refusal::SplitView(format!(
                "two checkpoints of size {} with different roots, both signed by the log",
                new.size
            )));
        }
        if !proof.is_empty() {
            return Err(Refusal::BadProof {
                old: known,
                new: new.size,
                reason: "the proof must be empty for equal sizes".into(),
            });
        }
        return Ok(());
    }
    match verify_consistency(state.size, new.size, proof, &state.root, &new.root) {
        Ok(()) => Ok(()),
        Err(e) => {
            // A proof that leads to the new signed root from another old root proves
            // the log signed two trees of which neither extends the other.
            if let Some((old_root, new_root)) = roots_of(state.size, new.size, proof)
                && new_root == new.root
                && old_root != state.root
            {
                return Err(Refusal::SplitView(format!(
                    "the checkpoint of size {} contains a tree of size {} with another root than the one cosigned",
                    new.size, state.size
                )));
            }
            Err(Refusal::BadProof { old: known, new: new.size, reason: proof_reason(e) })
        }
    }
}

fn proof_reason(e: ProofError) -> String {
    e.to_string()
}

/// The two roots a consistency proof from `size1` to `size2` leads to (RFC 9162 2.1.4.2
/// steps 5-6), when `size1` is not a power of two (the proof then carries the old
/// tree's own hashes); `None` otherwise or for a proof of the wrong shape.
pub fn roots_of(size1: u64, size2: u64, proof: &[Hash]) -> Option<(Hash, Hash)> {
    if size1 == 0 || size1 >= size2 || size1.is_power_of_two() {
        return None;
    }
    let (seed, path) = proof.split_first()?;
    let (mut fn_, mut sn) = (size1 - 1, size2 - 1);
    while fn_ & 1 == 1 {
        fn_ >>= 1;
        sn >>= 1;
    }
    let (mut fr, mut sr) = (*seed, *seed);
    for c in path {
        if sn == 0 {
            return None;
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
    (sn == 0).then_some((fr, sr))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::merkle::{Tree, leaf_hash};

    fn tree(n: u64, tag: u8) -> Tree {
        (0..n).map(|i| leaf_hash(&[tag, i as u8])).collect()
    }

    fn cp(t: &Tree) -> Checkpoint {
        Checkpoint { origin: "o".into(), size: t.len(), root: t.root(), extensions: vec![] }
    }

    #[test]
    fn parses_the_spec_example_shape_and_refuses_bad_bodies() {
        let body = "old 20852014\nPlRNCrwHpqhGrupue0L7gxbjbMiKA9temvuZZDDpkaw=\njrJZDmY8Y7SyJE0MWLpLozkIVMSMZcD5kvuKxPC3swk=\n\nexample.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n\n\u{2014} x y\n";
        let r = AddCheckpoint::parse(body.as_bytes()).unwrap();
        assert_eq!(r.old_size, 20_852_014);
        assert_eq!(r.proof.len(), 2);
        assert!(r.note.starts_with("example.com/behind-the-sofa\n"));
        assert_eq!(r.to_body(), body);
        for bad in ["", "old 01\n\nx", "old -1\n\nx", "old 1\n", "old 1\nAAAA\n\nx", "new 1\n\nx", "old 1 \n\nx"] {
            assert!(AddCheckpoint::parse(bad.as_bytes()).is_err(), "{bad:?}");
        }
        let many = format!("old 1\n{}\nx", "PlRNCrwHpqhGrupue0L7gxbjbMiKA9temvuZZDDpkaw=\n".repeat(64));
        assert!(AddCheckpoint::parse(many.as_bytes()).is_err());
    }

    #[test]
    fn transitions() {
        let t5 = tree(5, 0);
        let t9 = tree(9, 0);
        let s5 = Some(Cosigned { size: 5, root: t5.root() });
        // First sight: old 0, empty proof.
        assert_eq!(check(None, 0, &[], &cp(&t5)), Ok(()));
        assert!(matches!(check(None, 3, &[], &cp(&t5)), Err(Refusal::Conflict { old: 3, known: 0 })));
        // Extension with a good proof.
        let proof = t9.consistency_proof(5, 9).unwrap();
        assert_eq!(check(s5, 5, &proof, &cp(&t9)), Ok(()));
        assert!(matches!(check(s5, 0, &[], &cp(&t9)), Err(Refusal::Conflict { known: 5, .. })));
        assert!(matches!(check(s5, 10, &[], &cp(&t9)), Err(Refusal::OldSizeTooLarge { .. })));
        // A mangled proof.
        let mut bad = proof.clone();
        bad[1][0] ^= 1;
        assert!(matches!(check(s5, 5, &bad, &cp(&t9)), Err(Refusal::BadProof { .. })));
        // Same size, same root: fine again; another root: split view.
        assert_eq!(check(s5, 5, &[], &cp(&t5)), Ok(()));
        assert!(matches!(check(s5, 5, &[], &cp(&tree(5, 1))), Err(Refusal::SplitView(_))));
        // A fork: another history, its own honest proof from its own size-5 tree.
        let fork = {
            let mut f = tree(5, 1);
            for i in 5..9 {
                f.push(leaf_hash(&[0, i]));
            }
            f
        };
        let fork_proof = fork.consistency_proof(5, 9).unwrap();
        assert!(matches!(check(s5, 5, &fork_proof, &cp(&fork)), Err(Refusal::SplitView(_))));
    }
}
