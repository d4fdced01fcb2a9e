//! Witness cosignatures on checkpoints: C2SP tlog-cosignature `cosignature/v1` with
//! Ed25519 (c2sp.org/tlog-cosignature).
//!
//! A cosignature is one more signed-note signature line on a checkpoint note:
//! `— <witness name> base64(key_hash || timestamp || signature)`, where
//! - `key_hash` = SHA-256(`<name>` || `"\n"` || 0x04 || 32-byte Ed25519 public key)[:4];
//! - `timestamp` = the POSIX time of signing, a big-endian `u64` (at most 2^63 - 1);
//! - `signature` = Ed25519 over `"cosignature/v1\ntime <timestamp>\n"` followed by the
//!   checkpoint's note body (origin, size, root and any extension lines, each ending in
//!   a newline; no signature lines).
//!
//! The witness verifier key string is `<name>+<hex key_hash>+<base64(0x04 || key)>`.
//!
//! Architecture invariant: formats, signs and checks bytes; no I/O and no clock (the
//! caller gives the time).

use base64::{Engine as _, engine::general_purpose::STANDARD};
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

use crate::checkpoint::{CheckpointError, MAX_NOTE_LEN, check_key_name};

/// The signed-note signature type of an Ed25519 `cosignature/v1`.
pub const COSIGNATURE_V1: u8 = 0x04;

/// What opens a signature line: em dash (U+2014), space.
const SIG_PREFIX: &str = "\u{2014} ";

/// Bytes of a cosignature blob: key hash, timestamp, Ed25519 signature.
const BLOB_LEN: usize = 4 + 8 + 64;

/// A witness: a cosigner name and its Ed25519 public key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Witness {
    pub name: String,
    pub key: VerifyingKey,
}

impl Witness {
    /// Parses a witness verifier key string, `<name>+<hex key hash>+<base64(0x04 || key)>`.
    pub fn parse_vkey(s: &str) -> Result<Witness, CheckpointError> {
        let invalid = |reason| CheckpointError::InvalidVerifierKey { key: s.to_owned(), reason };
        let mut parts = s.splitn(3, '+');
        let (Some(name), Some(hash), Some(typed)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(invalid("expected `<name>+<hex key hash>+<base64 key>`"));
        };
        check_key_name(name).map_err(|_| invalid("the key name is empty or holds spaces or controls"))?;
        let typed = STANDARD.decode(typed).map_err(|_| invalid("the key is not base64"))?;
        let [COSIGNATURE_V1, key @ ..] = typed.as_slice() else {
            return Err(invalid("not a cosignature/v1 Ed25519 key (type byte 0x04)"));
        };
        let key: [u8; 32] = key.try_into().map_err(|_| invalid("an Ed25519 key is 32 bytes"))?;
        let key = VerifyingKey::from_bytes(&key).map_err(|_| invalid("not a valid Ed25519 public key"))?;
        if hash.len() != 8 || hash != hex::encode(key_hash(name, &key)) {
            return Err(invalid("the key hash does not match the name and key"));
        }
        Ok(Witness { name: name.to_owned(), key })
    }

    /// The verifier key string of this witness.
    pub fn vkey(&self) -> String {
        let mut typed = [0u8; 33];
        typed[0] = COSIGNATURE_V1;
        typed[1..].copy_from_slice(self.key.as_bytes());
        format!("{}+{}+{}", self.name, hex::encode(key_hash(&self.name, &self.key)), STANDARD.encode(typed))
    }
}

/// The cosignature key hash: SHA-256(name || "\n" || 0x04 || key)[:4].
pub fn key_hash(name: &str, key: &VerifyingKey) -> [u8; 4] {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update(b"\n");
    h.update([COSIGNATURE_V1]);
    h.update(key.as_bytes());
    let d = h.finalize();
    [d[0], d[1], d[2], d[3]]
}

/// The message a `cosignature/v1` signs: header line, time line, then the note body.
pub fn signed_message(body: &str, timestamp: u64) -> Vec<u8> {
    format!("cosignature/v1\ntime {timestamp}\n{body}").into_bytes()
}

/// The cosignature line (ending in a newline) of witness `name` with `key` over the
/// checkpoint note body `body` at `timestamp` (POSIX seconds, below 2^63).
pub fn sign(body: &str, name: &str, key: &SigningKey, timestamp: u64) -> String {
    debug_assert!(timestamp < 1 << 63 && check_key_name(name).is_ok());
    let sig = key.sign(&signed_message(body, timestamp));
    let mut blob = Vec::with_capacity(BLOB_LEN);
    blob.extend_from_slice(&key_hash(name, &key.verifying_key()));
    blob.extend_from_slice(&timestamp.to_be_bytes());
    blob.extend_from_slice(&sig.to_bytes());
    format!("{SIG_PREFIX}{name} {}\n", STANDARD.encode(blob))
}

/// One witness's valid cosignature found on a note.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cosigned {
    /// The witness's name.
    pub name: String,
    /// The witness's verifier key string.
    pub vkey: String,
    /// When the witness cosigned (POSIX seconds).
    pub timestamp: u64,
}

/// What [`verify`] found on a note.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Witnesses with a valid cosignature, each once, in the order of `witnesses`.
    pub valid: Vec<Cosigned>,
    /// Witnesses whose line was there but did not verify (or was malformed or repeated).
    pub invalid: Vec<String>,
}

/// Splits a signed note into its body (ending in a newline) and its signature lines.
pub fn split_note(note: &str) -> Result<(&str, Vec<&str>), CheckpointError> {
    if note.len() > MAX_NOTE_LEN {
        return Err(CheckpointError::TooLarge(note.len()));
    }
    let split = note.rfind("\n\n").ok_or(CheckpointError::MalformedNote("no blank line before the signatures"))?;
    let (body, sigs) = (&note[..=split], &note[split + 2..]);
    if !sigs.ends_with('\n') {
        return Err(CheckpointError::MalformedNote("missing final newline"));
    }
    Ok((body, sigs.split_terminator('\n').collect()))
}

/// Checks the cosignatures on `note` by `witnesses`. Lines by other keys are ignored, as
/// the signed-note spec requires. The caller checks the log's own signature first
/// ([`crate::checkpoint::Checkpoint::open`]). Timestamps are returned, not judged.
pub fn verify(note: &str, witnesses: &[Witness]) -> Result<Report, CheckpointError> {
    let (body, lines) = split_note(note)?;
    let mut report = Report::default();
    for w in witnesses {
        let id = key_hash(&w.name, &w.key);
        let mut found: Option<u64> = None;
        let mut bad = false;
        for line in &lines {
            let Some((name, blob)) = line.strip_prefix(SIG_PREFIX).and_then(|r| r.split_once(' ')) else { continue };
            if name != w.name {
                continue;
            }
            let Ok(blob) = STANDARD.decode(blob) else { continue };
            if blob.len() < 4 || blob[..4] != id {
                continue;
            }
            match check_blob(body, &blob, &w.key) {
                Some(ts) if found.is_none() => found = Some(ts),
                _ => bad = true,
            }
        }
        match (found, bad) {
            (Some(timestamp), false) => {
                report.valid.push(Cosigned { name: w.name.clone(), vkey: w.vkey(), timestamp });
            }
            (None, false) => {}
            _ => report.invalid.push(w.name.clone()),
        }
    }
    Ok(report)
}

/// The timestamp of a valid cosignature blob over `body`, or `None`.
fn check_blob(body: &str, blob: &[u8], key: &VerifyingKey) -> Option<u64> {
    if blob.len() != BLOB_LEN {
        return None;
    }
    let timestamp = u64::from_be_bytes(blob[4..12].try_into().ok()?);
    if timestamp >= 1 << 63 {
        return None;
    }
    let sig = Signature::from_slice(&blob[12..]).ok()?;
    key.verify_strict(&signed_message(body, timestamp), &sig).ok()?;
    Some(timestamp)
}

/// Adds cosignature lines to a note, leaving out lines it already has and any line that
/// is not a signature line. The result is still a valid signed note.
pub fn append(note: &str, lines: &str) -> String {
    let mut out = note.to_owned();
    for line in lines.split_terminator('\n') {
        if line.starts_with(SIG_PREFIX) && !note.split('\n').any(|l| l == line) {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::Checkpoint;

    fn log_key() -> SigningKey {
        SigningKey::from_bytes(&[1; 32])
    }

    fn witness_key() -> SigningKey {
        SigningKey::from_bytes(&[9; 32])
    }

    fn note() -> String {
        Checkpoint { origin: "example.com/log".into(), size: 3, root: [7; 32], extensions: vec![] }.sign(&log_key())
    }

    #[test]
    fn sign_then_verify_and_refuse_changes() {
        let note = note();
        let body = split_note(&note).unwrap().0;
        let w = Witness { name: "witness.example/w1".into(), key: witness_key().verifying_key() };
        let line = sign(body, &w.name, &witness_key(), 1_679_315_147);
        let cosigned = append(&note, &line);
        let r = verify(&cosigned, std::slice::from_ref(&w)).unwrap();
        assert_eq!(r.valid.len(), 1);
        assert_eq!(r.valid[0].timestamp, 1_679_315_147);
        assert!(r.invalid.is_empty());
        // The log's own signature still checks, the cosignature line is ignored by it.
        assert!(Checkpoint::open(&cosigned, "example.com/log", &log_key().verifying_key()).is_ok());
        // Another body: the cosignature does not verify.
        let other = Checkpoint { origin: "example.com/log".into(), size: 4, root: [7; 32], extensions: vec![] };
        let forged = append(&other.sign(&log_key()), &line);
        assert_eq!(verify(&forged, std::slice::from_ref(&w)).unwrap().invalid, vec![w.name.clone()]);
        // An unknown witness is ignored.
        let stranger = Witness { name: "other".into(), key: log_key().verifying_key() };
        assert_eq!(verify(&cosigned, &[stranger]).unwrap(), Report::default());
    }

    #[test]
    fn vkey_round_trip() {
        let w = Witness { name: "witness.example/w1".into(), key: witness_key().verifying_key() };
        assert_eq!(Witness::parse_vkey(&w.vkey()), Ok(w.clone()));
        // A signed-note (0x01) key is not a cosignature key.
        let log_vkey = crate::checkpoint::vkey("witness.example/w1", &witness_key().verifying_key());
        assert!(Witness::parse_vkey(&log_vkey).is_err());
    }
}
