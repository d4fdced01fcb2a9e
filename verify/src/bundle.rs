//! Evidence bundles: one decision with the proof that the log holds it, in a JSON file
//! anyone can check offline (`silkgate log prove` writes them).
//!
//! ```json
//! {"format": "silkgate-evidence-v1", "entry": "<base64 SignedDecision bytes>",
//!  "log_index": 7, "tree_size": 12, "inclusion_proof": ["<base64 hash>", ...],
//!  "checkpoint": "<signed note text>"}
//! ```
//!
//! A bundle is valid when the entry is a decision signed by the trusted key, the
//! checkpoint is a note signed by the same key under its origin, its size is the
//! bundle's `tree_size`, and the inclusion proof leads from the entry's leaf hash at
//! `log_index` to the checkpoint's root.
//!
//! ```
//! use silkgate_verify::bundle::Bundle;
//! # let key = ed25519_dalek::SigningKey::from_bytes(&[1; 32]).verifying_key();
//! let text = r#"{"format": "silkgate-evidence-v1"}"#; // read from a file
//! let refused = Bundle::parse(text).and_then(|b| b.verify(&key, None));
//! assert_eq!(refused.unwrap_err(), "missing `entry`");
//! ```

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::VerifyingKey;
use prost::Message;

use crate::checkpoint::Checkpoint;
use crate::merkle::{self, Hash};
use crate::{decision, proto};

/// The `format` of the bundles this crate reads and writes.
pub const FORMAT: &str = "silkgate-evidence-v1";

/// Most hashes an inclusion proof may carry: a tree of 2^64 entries needs 64.
const MAX_PROOF_HASHES: usize = 64;

/// An evidence bundle, parsed but not yet checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bundle {
    /// The log entry: the `SignedDecision` bytes exactly as logged.
    pub entry: Vec<u8>,
    pub log_index: u64,
    pub tree_size: u64,
    pub inclusion_proof: Vec<Hash>,
    /// The signed checkpoint note the proof leads to.
    pub checkpoint: String,
}

/// What a valid bundle proves.
#[derive(Clone, Debug, PartialEq)]
pub struct Verified {
    pub decision: proto::Decision,
    pub checkpoint: Checkpoint,
    pub log_index: u64,
}

impl Verified {
    /// One line for people: the decision, its verdict and where the log holds it.
    pub fn summary(&self) -> String {
        let d = &self.decision;
        format!(
            "decision {} ({}, {}) is entry {} of log {} at size {}",
            d.decision_id,
            proto::Verdict::try_from(d.verdict).map(|v| v.as_str_name()).unwrap_or("?"),
            d.jurisdiction,
            self.log_index,
            self.checkpoint.origin,
            self.checkpoint.size
        )
    }
}

impl Bundle {
    /// Reads a bundle's JSON. The `format` field, when present, must be [`FORMAT`];
    /// errors name the field.
    pub fn parse(text: &str) -> Result<Bundle, String> {
        let v: serde_json::Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
        if let Some(format) = v.get("format")
            && format.as_str() != Some(FORMAT)
        {
            return Err(format!("`format` is {format}, expected \"{FORMAT}\""));
        }
        let entry =
            STANDARD.decode(v["entry"].as_str().ok_or("missing `entry`")?).map_err(|e| format!("entry: {e}"))?;
        let log_index = v["log_index"].as_u64().ok_or("missing `log_index`")?;
        let tree_size = v["tree_size"].as_u64().ok_or("missing `tree_size`")?;
        let list = v["inclusion_proof"].as_array().ok_or("missing `inclusion_proof`")?;
        if list.len() > MAX_PROOF_HASHES {
            return Err(format!("`inclusion_proof` has {} hashes, at most {MAX_PROOF_HASHES}", list.len()));
        }
        let inclusion_proof = list
            .iter()
            .enumerate()
            .map(|(i, h)| {
                let text = h.as_str().ok_or_else(|| format!("inclusion_proof[{i}]: not a base64 string"))?;
                let bytes = STANDARD.decode(text).map_err(|e| format!("inclusion_proof[{i}]: {e}"))?;
                bytes.try_into().map_err(|_| format!("inclusion_proof[{i}]: not 32 bytes"))
            })
            .collect::<Result<_, String>>()?;
        let checkpoint = v["checkpoint"].as_str().ok_or("missing `checkpoint`")?.to_owned();
        Ok(Bundle { entry, log_index, tree_size, inclusion_proof, checkpoint })
    }

    /// The bundle as pretty-printed JSON, ending in a newline.
    pub fn to_json(&self) -> String {
        let bundle = serde_json::json!({
            "format": FORMAT,
            "entry": STANDARD.encode(&self.entry),
            "log_index": self.log_index,
            "tree_size": self.tree_size,
            "inclusion_proof": self.inclusion_proof.iter().map(|h| STANDARD.encode(h)).collect::<Vec<_>>(),
            "checkpoint": self.checkpoint,
        });
        serde_json::to_string_pretty(&bundle).unwrap_or_default() + "\n"
    }

    /// Checks the bundle against the node's public key. `origin`, when given, is the log
    /// the key was trusted for (a verifier key string names it); the checkpoint must be
    /// of that log. Decisions are checked without an expiry time: evidence outlives it.
    pub fn verify(&self, key: &VerifyingKey, origin: Option<&str>) -> Result<Verified, String> {
        let env = proto::SignedDecision::decode(self.entry.as_slice())
            .map_err(|e| format!("entry is not a SignedDecision: {e}"))?;
        let decision = decision::verify(&env, std::slice::from_ref(key), None).map_err(|e| format!("decision: {e}"))?;
        let note_origin = self.checkpoint.lines().next().unwrap_or_default();
        if let Some(named) = origin
            && named != note_origin
        {
            return Err(format!(
                "checkpoint: the verifier key is for origin `{}`, not `{}`",
                named.escape_debug(),
                note_origin.escape_debug()
            ));
        }
        let checkpoint =
            Checkpoint::open(&self.checkpoint, note_origin, key).map_err(|e| format!("checkpoint: {e}"))?;
        if checkpoint.size != self.tree_size {
            return Err(format!(
                "checkpoint size {} differs from the proof's tree size {}",
                checkpoint.size, self.tree_size
            ));
        }
        merkle::verify_inclusion(
            &merkle::leaf_hash(&self.entry),
            self.log_index,
            self.tree_size,
            &self.inclusion_proof,
            &checkpoint.root,
        )
        .map_err(|e| format!("inclusion proof: {e}"))?;
        Ok(Verified { decision, checkpoint, log_index: self.log_index })
    }
}

#[cfg(test)]
mod tests {
    use ed25519_dalek::{Signer as _, SigningKey};

    use super::*;
    use crate::merkle::Tree;

    const ORIGIN: &str = "silkgate.example/log/0";

    /// A log of three signed decisions and a bundle for entry 1.
    fn bundle(key: &SigningKey) -> Bundle {
        let public = key.verifying_key();
        let entries: Vec<Vec<u8>> = (0..3)
            .map(|i| {
                let d = proto::Decision {
                    decision_id: format!("d{i}"),
                    key_id: decision::key_id(&public),
                    ..Default::default()
                };
                let payload = d.encode_to_vec();
                let sig = key.sign(&decision::pae(decision::PAYLOAD_TYPE, &payload));
                proto::SignedDecision {
                    payload,
                    payload_type: decision::PAYLOAD_TYPE.into(),
                    signatures: vec![proto::Signature { sig: sig.to_vec(), keyid: decision::key_id(&public) }],
                }
                .encode_to_vec()
            })
            .collect();
        let tree: Tree = entries.iter().map(|e| merkle::leaf_hash(e)).collect();
        let cp = Checkpoint { origin: ORIGIN.into(), size: 3, root: tree.root(), extensions: vec![] };
        Bundle {
            entry: entries[1].clone(),
            log_index: 1,
            tree_size: 3,
            inclusion_proof: tree.inclusion_proof(1, 3).unwrap(),
            checkpoint: cp.sign(key),
        }
    }

    #[test]
    fn a_bundle_round_trips_and_verifies() {
        let key = SigningKey::from_bytes(&[3; 32]);
        let b = bundle(&key);
        let read = Bundle::parse(&b.to_json()).unwrap();
        assert_eq!(read, b);
        let v = read.verify(&key.verifying_key(), Some(ORIGIN)).unwrap();
        assert_eq!(v.decision.decision_id, "d1");
        assert_eq!(v.summary(), format!("decision d1 (VERDICT_UNSPECIFIED, ) is entry 1 of log {ORIGIN} at size 3"));
    }

    #[test]
    fn every_tampering_is_refused() {
        let key = SigningKey::from_bytes(&[3; 32]);
        let public = key.verifying_key();
        let b = bundle(&key);
        let mut index = b.clone();
        index.log_index = 2;
        assert!(index.verify(&public, None).unwrap_err().starts_with("inclusion proof"));
        let mut size = b.clone();
        size.tree_size = 4;
        assert!(size.verify(&public, None).unwrap_err().starts_with("checkpoint size 3 differs"));
        let mut hash = b.clone();
        hash.inclusion_proof[0][0] ^= 1;
        assert!(hash.verify(&public, None).unwrap_err().starts_with("inclusion proof"));
        let mut entry = b.clone();
        let last = entry.entry.len() - 1;
        entry.entry[last] ^= 1;
        assert!(entry.verify(&public, None).is_err());
        let other = SigningKey::from_bytes(&[4; 32]).verifying_key();
        assert!(b.verify(&other, None).unwrap_err().starts_with("decision: no signature by a known key"));
        assert!(b.verify(&public, Some("other.example/log")).unwrap_err().contains("is for origin"));
    }

    #[test]
    fn parse_names_the_field() {
        let key = SigningKey::from_bytes(&[3; 32]);
        let json: serde_json::Value = serde_json::from_str(&bundle(&key).to_json()).unwrap();
        let with = |field: &str, value: serde_json::Value| {
            let mut j = json.clone();
            j[field] = value;
            Bundle::parse(&j.to_string()).unwrap_err()
        };
        assert_eq!(with("format", "v2".into()), "`format` is \"v2\", expected \"silkgate-evidence-v1\"");
        assert_eq!(with("log_index", "1".into()), "missing `log_index`");
        assert_eq!(with("inclusion_proof", serde_json::json!(["AAAA"])), "inclusion_proof[0]: not 32 bytes");
        let long = serde_json::Value::Array(vec![json["inclusion_proof"][0].clone(); 65]);
        assert_eq!(with("inclusion_proof", long), "`inclusion_proof` has 65 hashes, at most 64");
    }
}
