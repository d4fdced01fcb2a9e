//! Runs the transparency-dev Merkle proof test vectors against our RFC 9162 verifiers.
//!
//! The vectors live in `node/tests/data/merkle-vectors` (see its README): every
//! inclusion and consistency case must be accepted exactly when `wantErr` is false.

use std::path::{Path, PathBuf};

use base64::{Engine as _, engine::general_purpose::STANDARD};
use serde_json::Value;
use sha2::{Digest, Sha256};
use silkgate_core::merkle::{Hash, verify_consistency, verify_inclusion};

fn vectors_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/merkle-vectors")
}

/// Every `.json` file under `dir`, sorted so failures are reported in a stable order.
fn json_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("cannot read `{}`: {e}", dir.display()));
        for entry in entries {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|ext| ext == "json") {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

fn bytes(value: &Value) -> Vec<u8> {
    let text = value.as_str().expect("hash is a string");
    STANDARD.decode(text).expect("hash is base64")
}

/// The prefix of the error for a case our types reject before the verifier runs.
const TYPE_REJECT: &str = "leaf hash is not 32 bytes:";

/// A leaf hash. One that is not 32 bytes cannot be passed to our typed verifier at
/// all, so such a case counts as rejected, as the reference verifier rejects a leaf
/// hash of the wrong size.
fn leaf(value: &Value) -> Result<Hash, String> {
    let bytes = bytes(value);
    <Hash>::try_from(bytes.as_slice()).map_err(|_| format!("{TYPE_REJECT} {}", bytes.len()))
}

/// A root or proof hash. Some vectors give malformed ones on purpose ("", "don't care
/// 2", garbage before or after a proof), one even expecting two equal 12-byte roots to
/// be accepted at equal tree sizes. So a value that is not 32 bytes maps to one no
/// verifier computation can produce, distinct for distinct inputs: equal values stay
/// equal, and the verifier itself must reject whatever depends on them.
fn hash(value: &Value) -> Hash {
    let bytes = bytes(value);
    <Hash>::try_from(bytes.as_slice()).unwrap_or_else(|_| {
        let mut h = Sha256::new();
        h.update(b"merkle-vectors: not a 32-byte hash\n");
        h.update(&bytes);
        h.finalize().into()
    })
}

fn proof(value: &Value) -> Vec<Hash> {
    match value {
        Value::Null => Vec::new(),
        Value::Array(items) => items.iter().map(hash).collect(),
        other => panic!("proof is neither null nor an array: {other}"),
    }
}

fn number(case: &Value, field: &str) -> u64 {
    case[field].as_u64().unwrap_or_else(|| panic!("`{field}` is not a u64"))
}

/// Runs every case of one kind and returns (accepted, rejected) counts.
fn run(kind: &str, check: impl Fn(&Value) -> Result<(), String>) -> (usize, usize) {
    let files = json_files(&vectors_dir().join(kind));
    let (mut accepted, mut rejected, mut by_type, mut failures) = (0, 0, 0, Vec::new());
    for path in &files {
        let text = std::fs::read_to_string(path).unwrap();
        let case: Value =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("`{}` is not JSON: {e}", path.display()));
        let want_err = case["wantErr"].as_bool().expect("wantErr is a bool");
        let got = check(&case);
        match (&got, want_err) {
            (Ok(()), false) => accepted += 1,
            (Err(e), true) => {
                rejected += 1;
                by_type += usize::from(e.starts_with(TYPE_REJECT));
            }
            _ => failures.push(format!(
                "{}: {}: want error {want_err}, got {got:?}",
                path.display(),
                case["desc"].as_str().unwrap_or("")
            )),
        }
    }
    assert!(failures.is_empty(), "{} failures:\n{}", failures.len(), failures.join("\n"));
    assert!(accepted + rejected > 0, "no {kind} vectors found");
    println!(
        "{kind}: {} vectors, {accepted} accepted and {rejected} rejected as expected \
         ({by_type} of the rejections by the Hash type, before the verifier ran)",
        files.len()
    );
    (accepted, rejected)
}

#[test]
fn inclusion_vectors() {
    let (accepted, rejected) = run("inclusion", |case| {
        verify_inclusion(
            &leaf(&case["leafHash"])?,
            number(case, "leafIdx"),
            number(case, "treeSize"),
            &proof(&case["proof"]),
            &hash(&case["root"]),
        )
        .map_err(|e| e.to_string())
    });
    // Both outcomes must be exercised, or the verifier could pass by always answering
    // the same way.
    assert!(accepted > 0 && rejected > 0);
}

#[test]
fn consistency_vectors() {
    let (accepted, rejected) = run("consistency", |case| {
        verify_consistency(
            number(case, "size1"),
            number(case, "size2"),
            &proof(&case["proof"]),
            &hash(&case["root1"]),
            &hash(&case["root2"]),
        )
        .map_err(|e| e.to_string())
    });
    assert!(accepted > 0 && rejected > 0);
}
