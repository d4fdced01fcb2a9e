//! Offline verification of the evidence a Silkgate node gives out.
//!
//! Everything an independent party (a portal, an auditor's tool, another node) needs
//! to check a node's evidence without trusting it, with no network, async runtime or
//! file access of its own:
//!
//! - [`decision`]: a signed decision (DSSE v1 envelope, Ed25519, key ids);
//! - [`checkpoint`]: the log's signed checkpoints (C2SP signed notes), verifier keys;
//! - [`merkle`]: RFC 6962 leaf and node hashes, inclusion and consistency proofs, and a
//!   tree that recomputes a log's root from its entries;
//! - [`bundle`]: evidence bundles, a decision with its inclusion proof and checkpoint;
//! - [`roster`]: the network roster, signed by governance keys (M of N);
//! - [`certificate`]: deployment certificates, many jurisdictions' decisions in one;
//! - [`cosignature`]: witness cosignatures (C2SP tlog-cosignature, `cosignature/v1`);
//! - [`witness`]: the witness's check of a new checkpoint (C2SP tlog-witness);
//! - [`tiles`]: C2SP tlog-tiles paths, hash tiles and entry bundles;
//! - [`release`]: signed policy releases and the policy activations a node logs;
//!   [`waiver`]: signed waivers of soft rules;
//! - [`proto`]: the API's protobuf messages, generated from `proto/silkgate/v1`;
//! - [`time`]: civil days and Unix times, as decisions and policies use them.
//!
//! The formats are specified in the project README's "Formats for verifiers"; this
//! crate is the reference implementation the node itself uses.
//!
//! ```
//! use silkgate_verify::{checkpoint::Checkpoint, merkle};
//! # use ed25519_dalek::SigningKey;
//! # let key = SigningKey::from_bytes(&[2; 32]);
//! # let leaves = [b"a".as_slice(), b"b", b"c"];
//! # let tree: merkle::Tree = leaves.iter().map(|l| merkle::leaf_hash(l)).collect();
//! # let note = Checkpoint { origin: "example.com/log".into(), size: 3, root: tree.root(), extensions: vec![] }.sign(&key);
//! # let proof = tree.inclusion_proof(1, 3).unwrap();
//! // A checkpoint note from the log, the node's public key, a proof from GetInclusionProof:
//! let checkpoint = Checkpoint::open(&note, "example.com/log", &key.verifying_key()).unwrap();
//! merkle::verify_inclusion(&merkle::leaf_hash(b"b"), 1, checkpoint.size, &proof, &checkpoint.root).unwrap();
//! ```

#![forbid(unsafe_code)]

pub mod bundle;
pub mod certificate;
pub mod checkpoint;
pub mod cosignature;
pub mod decision;
pub mod merkle;
pub mod proto;
pub mod release;
pub mod roster;
pub mod tiles;
pub mod time;
pub mod waiver;
pub mod witness;
