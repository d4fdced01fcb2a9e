//! Fuzz targets for evidence bundles, the JSON files `silkgate log prove` writes and
//! `silkgate log verify-bundle` checks.
//!
//! The checker (`silkgate_verify::bundle`) is fuzzed in process for many cases, and
//! through the real binary for fewer, checking that the binary agrees with it.
//! `merkle::verify_inclusion` and `verify_consistency` also get arbitrary arguments.
//!
//! Properties: no input panics or hangs (the binary exits 0 or 1, never 101 or by a
//! signal); a valid bundle verifies; a mutated bundle that still verifies proves the same
//! entry at the same index and size (nothing unsigned gets through).
//!
//! `SILKGATE_FUZZ_CASES=N` sets the cases per property (see README, "Fuzzing"); the
//! binary runs one case in fifty of those. Inputs that once crashed live in
//! `tests/data/fuzz-corpus/bundle/`.

mod fuzz_common;

use std::io::Write as _;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::{SigningKey, VerifyingKey};
use fuzz_common::*;
use proptest::prelude::*;
use prost::Message;
use silkgate_core::checkpoint::Checkpoint;
use silkgate_core::decision::{self, Signer};
use silkgate_core::merkle::{self, Tree};
use silkgate_core::time::UnixTime;
use silkgate_verify::bundle::Bundle;

const ORIGIN: &str = "silkgate.example/log/0";

fn signer() -> &'static Signer {
    static S: OnceLock<Signer> = OnceLock::new();
    S.get_or_init(|| Signer::new(SigningKey::from_bytes(&[5; 32])))
}

/// A valid bundle: what it proves, and its text.
#[derive(Clone, Debug)]
struct Valid {
    entry: Vec<u8>,
    index: u64,
    size: u64,
    text: String,
}

/// Valid bundles for trees of a few sizes, the entry at different places.
fn valid_bundles() -> &'static [Valid] {
    static B: OnceLock<Vec<Valid>> = OnceLock::new();
    B.get_or_init(|| {
        let policy = shipped().get("CN").unwrap();
        let (_, req) = &seed_requests()[0];
        let now = UnixTime::from_secs(1_795_867_200);
        let outcome = policy.evaluate(req, now.day());
        let ctx = decision::Context {
            decision_id: "0190f2a6-0000-7000-8000-000000000000".into(),
            node_id: "fuzz-node",
            request_sha256: [3; 32],
            request_id: &req.request_id,
            issued_at: now,
            validity_secs: 86_400,
        };
        let d = decision::build(policy, &outcome, &ctx, signer().key_id());
        let entry = decision::sign(&d, signer()).encode_to_vec();
        let mut out = Vec::new();
        for (size, index) in [(1u64, 0u64), (2, 1), (7, 3), (8, 7), (13, 0)] {
            let mut tree = Tree::new();
            for i in 0..size {
                let leaf = if i == index { entry.clone() } else { format!("other {i}").into_bytes() };
                tree.push(merkle::leaf_hash(&leaf));
            }
            let proof = tree.inclusion_proof(index, size).unwrap();
            let cp = Checkpoint { origin: ORIGIN.into(), size, root: tree.root(), extensions: vec![] };
            let bundle = serde_json::json!({
                "format": "silkgate-evidence-v1",
                "entry": STANDARD.encode(&entry),
                "log_index": index,
                "tree_size": size,
                "inclusion_proof": proof.iter().map(|h| STANDARD.encode(h)).collect::<Vec<_>>(),
                "checkpoint": cp.sign(signer().signing_key()),
            });
            let text = serde_json::to_string_pretty(&bundle).unwrap() + "\n";
            out.push(Valid { entry: entry.clone(), index, size, text });
        }
        out
    })
}

/// What `text` proves as a bundle, through the checker `silkgate log verify-bundle`
/// uses (`silkgate_verify::bundle`): the entry, its index and the tree size.
fn check(text: &str, key: &VerifyingKey) -> Result<(Vec<u8>, u64, u64), String> {
    let b = Bundle::parse(text)?;
    b.verify(key, None)?;
    Ok((b.entry, b.log_index, b.tree_size))
}

/// The checker's answer must be a proof of the seed bundle's own entry, or a refusal.
fn check_in_process(text: &str, seed: Option<&Valid>) -> bool {
    let key = signer().verifying_key();
    match timed("check_bundle", || check(text, &key)) {
        Ok((entry, index, size)) => {
            let seed = seed.expect("an arbitrary text verified as a bundle");
            assert_eq!(entry, seed.entry, "a mutated bundle proves another entry");
            assert_eq!((index, size), (seed.index, seed.size), "a mutated bundle proves another position");
            true
        }
        Err(e) => {
            assert!(!e.is_empty());
            false
        }
    }
}

/// Runs `silkgate log verify-bundle` on `text`: it must exit 0 (valid) or 1 (invalid),
/// and agree with the checker.
fn check_binary(text: &str, expect_valid: bool) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bundle.json");
    std::fs::File::create(&path).unwrap().write_all(text.as_bytes()).unwrap();
    let key = hex::encode(signer().verifying_key().as_bytes());
    let out = timed("silkgate log verify-bundle", || {
        Command::new(env!("CARGO_BIN_EXE_silkgate"))
            .args(["log", "verify-bundle"])
            .arg(&path)
            .args(["--public-key", &key])
            .stdin(Stdio::null())
            .output()
            .unwrap()
    });
    let stdout = String::from_utf8_lossy(&out.stdout);
    match out.status.code() {
        Some(0) => assert!(expect_valid && stdout.starts_with("valid: "), "binary says valid, checker not: {stdout}"),
        Some(1) => {
            assert!(!expect_valid && stdout.starts_with("invalid: "), "binary says invalid, checker not: {stdout}")
        }
        other => panic!(
            "verify-bundle exited with {other:?} (101 is a panic; None a signal)\nstdout: {stdout}\nstderr: {}",
            String::from_utf8_lossy(&out.stderr)
        ),
    }
}

const BUNDLE_DICT: &[&[u8]] = &[
    b"\"",
    b"{",
    b"}",
    b"[",
    b"]",
    b",",
    b":",
    b"null",
    b"-1",
    b"18446744073709551615",
    b"18446744073709551616",
    b"1e400",
    b"0.5",
    b"\"AAAA\"",
    b"\"====\"",
    b"\\n",
    b"\\u2014",
    b"\\u0000",
    b"\"inclusion_proof\": [],",
    b"\"log_index\": 0,",
    b"\"tree_size\": 18446744073709551615,",
    b"[[[[[[[[[[[[[[[[",
    b"\xc3\xa9",
    b"\xff",
];

fn json_value() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::{Value, json};
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<u64>().prop_map(|n| json!(n)),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|n| json!(n)),
        Just(json!(u64::MAX)),
        "(?s).{0,40}".prop_map(Value::String),
        proptest::collection::vec(any::<u8>(), 0..80).prop_map(|b| Value::String(STANDARD.encode(b))),
        any::<[u8; 32]>().prop_map(|b| Value::String(STANDARD.encode(b))),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::btree_map("[a-z_]{1,8}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

const FIELDS: &[&str] = &["format", "entry", "log_index", "tree_size", "inclusion_proof", "checkpoint"];

/// A seed bundle with fields replaced, removed or edited as values.
fn structured(seed: &Valid, edits: &[(usize, u8, serde_json::Value, u64)]) -> String {
    let mut v: serde_json::Value = serde_json::from_str(&seed.text).unwrap();
    for (field, how, value, n) in edits {
        let f = FIELDS[field % FIELDS.len()];
        // After a whole-document replacement the bundle may not be an object any more.
        let Some(obj) = v.as_object_mut() else { break };
        match how % 6 {
            0 => {
                obj.insert(f.into(), value.clone());
            }
            1 => {
                obj.remove(f);
            }
            2 => {
                obj.insert(f.into(), serde_json::json!(n));
            }
            3 => {
                if let Some(list) = obj.get_mut("inclusion_proof").and_then(|l| l.as_array_mut()) {
                    if (*n as usize).is_multiple_of(3) {
                        list.pop();
                    } else {
                        list.push(value.clone());
                    }
                }
            }
            4 => {
                // Another seed's checkpoint or proof: valid signatures, wrong tree.
                let other = &valid_bundles()[*n as usize % valid_bundles().len()];
                let o: serde_json::Value = serde_json::from_str(&other.text).unwrap();
                obj.insert(f.into(), o[f].clone());
            }
            _ => v = value.clone(),
        }
    }
    serde_json::to_string(&v).unwrap()
}

fn edits() -> impl Strategy<Value = Vec<(usize, u8, serde_json::Value, u64)>> {
    proptest::collection::vec((any::<usize>(), any::<u8>(), json_value(), any::<u64>()), 1..4)
}

fn binary_config() -> proptest::test_runner::Config {
    proptest::test_runner::Config { cases: (cases() / 50).max(10), ..config() }
}

proptest! {
    #![proptest_config(config())]

    /// Valid bundles, mutated as text.
    #[test]
    fn bundle_mutated(seed in any::<usize>(), ops in ops(6)) {
        let valid = &valid_bundles()[seed % valid_bundles().len()];
        let bytes = mutate(valid.text.as_bytes(), &ops, BUNDLE_DICT, 16 << 10);
        check_in_process(&String::from_utf8_lossy(&bytes), Some(valid));
    }

    /// Valid bundles with fields replaced by arbitrary JSON values, removed, or swapped
    /// for another valid bundle's.
    #[test]
    fn bundle_structured(seed in any::<usize>(), edits in edits()) {
        let valid = &valid_bundles()[seed % valid_bundles().len()];
        check_in_process(&structured(valid, &edits), Some(valid));
    }

    /// Arbitrary text and arbitrary JSON.
    #[test]
    fn bundle_arbitrary(text in "(?s).{0,300}", value in json_value()) {
        check_in_process(&text, None);
        check_in_process(&value.to_string(), None);
    }

    /// RFC 9162 proof checks on arbitrary arguments: no panic, and a proof checks only
    /// against the root it was made for.
    #[test]
    fn merkle_verify_arbitrary(
        leaf in any::<[u8; 32]>(),
        index in prop_oneof![0u64..64, any::<u64>()],
        size in prop_oneof![0u64..64, any::<u64>(), Just(u64::MAX)],
        proof in proptest::collection::vec(any::<[u8; 32]>(), 0..70),
        root in any::<[u8; 32]>(),
    ) {
        let _ = merkle::verify_inclusion(&leaf, index, size, &proof, &root);
        let _ = merkle::verify_consistency(index, size, &proof, &leaf, &root);
        let n = (size % 40).max(1);
        let mut tree = Tree::new();
        for i in 0..n {
            tree.push(merkle::leaf_hash(&i.to_be_bytes()));
        }
        let i = index % n;
        let p = tree.inclusion_proof(i, n).unwrap();
        prop_assert!(merkle::verify_inclusion(&tree.leaf(i).unwrap(), i, n, &p, &tree.root()).is_ok());
        prop_assert!(merkle::verify_inclusion(&leaf, i, n, &p, &tree.root()).is_err() || tree.leaf(i) == Some(leaf));
    }
}

proptest! {
    #![proptest_config(binary_config())]

    /// The real `silkgate log verify-bundle` on mutated bundles; agrees with the checker.
    #[test]
    fn bundle_binary(seed in any::<usize>(), ops in ops(4), edits in edits(), structured_edit in any::<bool>()) {
        let valid = &valid_bundles()[seed % valid_bundles().len()];
        let text = if structured_edit {
            structured(valid, &edits)
        } else {
            String::from_utf8_lossy(&mutate(valid.text.as_bytes(), &ops, BUNDLE_DICT, 16 << 10)).into_owned()
        };
        let ok = check_in_process(&text, Some(valid));
        check_binary(&text, ok);
    }
}

#[test]
fn valid_bundles_verify() {
    for v in valid_bundles() {
        assert!(check_in_process(&v.text, Some(v)));
        check_binary(&v.text, true);
    }
}

/// Inputs that once crashed or hung, replayed on every run, in process and through the
/// binary.
#[test]
fn corpus_bundles() {
    for (name, bytes) in corpus("bundle") {
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let ok = within(&format!("bundle corpus {name}"), Duration::from_secs(30), {
            let text = text.clone();
            move || check_in_process(&text, valid_bundles().first())
        });
        check_binary(&text, ok);
    }
}
