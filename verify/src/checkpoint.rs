//! Signed checkpoints of the decision log: C2SP tlog-checkpoint bodies in C2SP signed
//! notes with Ed25519 signatures.
//!
//! A checkpoint body is `<origin>\n<decimal size>\n<base64 root>\n`, optionally followed
//! by extension lines (c2sp.org/tlog-checkpoint). Signed, it becomes a note: the body,
//! a blank line, and one line per signature, `— <key name> <base64(key id || sig)>\n`
//! (c2sp.org/signed-note). The key name is the origin, and the Ed25519 signature covers
//! the body bytes exactly, so any standard note verifier checks our checkpoints.
//!
//! Architecture invariant: this module formats, signs and parses text; it never does
//! I/O and never reads the clock.

use base64::{Engine as _, engine::general_purpose::STANDARD};
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

use crate::merkle::Hash;

/// The signed-note signature type byte of Ed25519.
const ED25519: u8 = 0x01;

/// What opens a signature line: em dash (U+2014), space.
const SIG_PREFIX: &str = "\u{2014} ";

/// Notes larger than this are refused before any parsing or signature check. The
/// signed-note spec asks verifiers to take at least 16 signatures, each up to about
/// 5 kB for post-quantum schemes; this leaves room for that and a modest body.
pub const MAX_NOTE_LEN: usize = 128 * 1024;

/// Why a checkpoint or a signed note was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointError {
    #[error("note is {0} bytes, over the {MAX_NOTE_LEN} byte limit")]
    TooLarge(usize),
    #[error("malformed note: {0}")]
    MalformedNote(&'static str),
    #[error("malformed signature line `{0}`")]
    MalformedSignature(String),
    #[error("note has more than one signature by key `{0}`")]
    DuplicateSignature(String),
    #[error("note has no signature by key `{0}`")]
    Unsigned(String),
    #[error("signature by key `{0}` does not verify")]
    BadSignature(String),
    #[error("checkpoint has {0} lines, expected at least 3")]
    TooFewLines(usize),
    #[error("invalid origin `{0}`: must be non-empty, without spaces, controls or `+`")]
    InvalidOrigin(String),
    #[error("checkpoint origin `{origin}` does not match key name `{name}`")]
    OriginMismatch { origin: String, name: String },
    #[error("invalid tree size `{0}`: must be decimal without leading zeros")]
    InvalidSize(String),
    #[error("invalid root hash `{0}`: must be base64 of 32 bytes")]
    InvalidRoot(String),
    #[error("invalid extension line {0}: must be non-empty, without controls")]
    InvalidExtension(usize),
    #[error("invalid verifier key `{key}`: {reason}")]
    InvalidVerifierKey { key: String, reason: &'static str },
}

/// A signed statement by the log: its first `size` entries have Merkle root `root`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// The log's identity, also the name of its signing key, e.g. `example.com/log`.
    pub origin: String,
    /// The number of entries in the tree.
    pub size: u64,
    /// The RFC 6962 Merkle root of the first `size` entries.
    pub root: Hash,
    /// Opaque extension lines after the root, usually none.
    pub extensions: Vec<String>,
}

impl Checkpoint {
    /// The note text: origin, size and base64 root, then any extension lines, each
    /// ending in a newline. These are the bytes the signature covers.
    pub fn body(&self) -> String {
        let mut body = format!("{}\n{}\n{}\n", self.origin, self.size, STANDARD.encode(self.root));
        for line in &self.extensions {
            body.push_str(line);
            body.push('\n');
        }
        body
    }

    /// Checks what [`Checkpoint::open`] would refuse in a checkpoint built by hand: the
    /// origin (see [`check_key_name`]) and the extension lines.
    pub fn validate(&self) -> Result<(), CheckpointError> {
        check_key_name(&self.origin)?;
        for (i, line) in self.extensions.iter().enumerate() {
            if line.is_empty() || line.chars().any(char::is_control) {
                return Err(CheckpointError::InvalidExtension(i + 1));
            }
        }
        Ok(())
    }

    /// The signed note of this checkpoint, signed by `key` under the origin as key name.
    ///
    /// The checkpoint must be valid (see [`Checkpoint::validate`]); the log checks its
    /// origin when it starts. An invalid one yields a note that does not open.
    pub fn sign(&self, key: &SigningKey) -> String {
        debug_assert_eq!(self.validate(), Ok(()));
        sign_note(&self.body(), &self.origin, key)
    }

    /// Verifies a signed checkpoint note and parses its body.
    ///
    /// The note must carry a valid signature by `key` under `name`, and the
    /// checkpoint's origin must be `name`. Signatures by other keys are ignored, as
    /// the signed-note spec requires, so witnesses may cosign.
    pub fn open(note: &str, name: &str, key: &VerifyingKey) -> Result<Checkpoint, CheckpointError> {
        let body = open_note(note, name, key)?;
        let checkpoint = Checkpoint::parse(body)?;
        if checkpoint.origin != name {
            return Err(CheckpointError::OriginMismatch { origin: checkpoint.origin, name: name.to_owned() });
        }
        Ok(checkpoint)
    }

    /// Parses a checkpoint body, strictly. Only for text whose signature was checked.
    fn parse(body: &str) -> Result<Checkpoint, CheckpointError> {
        // open_note returns text ending in a newline, so every line is terminated.
        let lines: Vec<&str> = body.split_terminator('\n').collect();
        let [origin, size, root, extensions @ ..] = lines.as_slice() else {
            return Err(CheckpointError::TooFewLines(lines.len()));
        };
        check_key_name(origin)?;
        let checkpoint = Checkpoint {
            origin: (*origin).to_owned(),
            size: parse_size(size)?,
            root: parse_root(root)?,
            extensions: extensions.iter().map(|l| (*l).to_owned()).collect(),
        };
        checkpoint.validate()?;
        Ok(checkpoint)
    }
}

/// Checks a key name, which for a checkpoint is also the origin: non-empty, without
/// whitespace or control characters (signature lines are split at spaces), and
/// without `+` (the verifier key string uses it as a separator).
pub fn check_key_name(name: &str) -> Result<(), CheckpointError> {
    let bad = |c: char| c.is_whitespace() || c.is_control() || c == '+';
    if name.is_empty() || name.chars().any(bad) {
        return Err(CheckpointError::InvalidOrigin(name.to_owned()));
    }
    Ok(())
}

/// The signed-note key id of an Ed25519 key:
/// `SHA-256(name || "\n" || 0x01 || public key)[:4]`.
pub fn key_hash(name: &str, key: &VerifyingKey) -> [u8; 4] {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update(b"\n");
    h.update([ED25519]);
    h.update(key.as_bytes());
    let digest = h.finalize();
    [digest[0], digest[1], digest[2], digest[3]]
}

/// The standard verifier key string of an Ed25519 key, as note verifiers take it:
/// `<name>+<hex key id>+<base64(0x01 || public key)>`.
pub fn vkey(name: &str, key: &VerifyingKey) -> String {
    let mut typed = [0u8; 33];
    typed[0] = ED25519;
    typed[1..].copy_from_slice(key.as_bytes());
    format!("{name}+{}+{}", hex::encode(key_hash(name, key)), STANDARD.encode(typed))
}

/// Parses a verifier key string made by [`vkey`] into its key name and Ed25519 key,
/// checking that the key hash matches the name and the key.
pub fn parse_vkey(s: &str) -> Result<(String, VerifyingKey), CheckpointError> {
    let invalid = |reason| CheckpointError::InvalidVerifierKey { key: s.to_owned(), reason };
    // The name holds no `+`; the base64 key may, so it is everything after the second.
    let mut parts = s.splitn(3, '+');
    let (Some(name), Some(hash), Some(typed)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(invalid("expected `<name>+<hex key hash>+<base64 key>`"));
    };
    check_key_name(name).map_err(|_| invalid("the key name is empty or holds spaces or controls"))?;
    let typed = STANDARD.decode(typed).map_err(|_| invalid("the key is not base64"))?;
    let [ED25519, key @ ..] = typed.as_slice() else {
        return Err(invalid("not an Ed25519 key (type byte 0x01)"));
    };
    let key: [u8; 32] = key.try_into().map_err(|_| invalid("an Ed25519 key is 32 bytes"))?;
    let key = VerifyingKey::from_bytes(&key).map_err(|_| invalid("not a valid Ed25519 public key"))?;
    if hash.len() != 8 || hash != hex::encode(key_hash(name, &key)) {
        return Err(invalid("the key hash does not match the name and key"));
    }
    Ok((name.to_owned(), key))
}

/// Signs `text` as a signed note with one Ed25519 signature under key name `name`.
///
/// `text` must be non-empty, end in a newline and contain no control characters but
/// newlines; `name` must pass [`check_key_name`].
pub fn sign_note(text: &str, name: &str, key: &SigningKey) -> String {
    debug_assert!(text.ends_with('\n') && check_key_name(name).is_ok());
    let signature = key.sign(text.as_bytes());
    let mut blob = Vec::with_capacity(4 + Signature::BYTE_SIZE);
    blob.extend_from_slice(&key_hash(name, &key.verifying_key()));
    blob.extend_from_slice(&signature.to_bytes());
    format!("{text}\n{SIG_PREFIX}{name} {}\n", STANDARD.encode(blob))
}

/// Verifies a signed note and returns its text, the bytes that were signed.
///
/// The note must carry a signature by `key` under `name` that verifies (strictly, so
/// malleable encodings are refused). Signatures by other keys are skipped unchecked;
/// a failing or repeated signature by this key rejects the whole note.
pub fn open_note<'a>(note: &'a str, name: &str, key: &VerifyingKey) -> Result<&'a str, CheckpointError> {
    if note.len() > MAX_NOTE_LEN {
        return Err(CheckpointError::TooLarge(note.len()));
    }
    if note.bytes().any(|b| b < 0x20 && b != b'\n') {
        return Err(CheckpointError::MalformedNote("control character"));
    }
    // The text may hold blank lines itself; the last one separates the signatures.
    let Some(split) = note.rfind("\n\n") else {
        return Err(CheckpointError::MalformedNote("no blank line before the signatures"));
    };
    let (text, signatures) = (&note[..=split], &note[split + 2..]);
    if signatures.is_empty() {
        return Err(CheckpointError::MalformedNote("no signatures"));
    }
    if !signatures.ends_with('\n') {
        return Err(CheckpointError::MalformedNote("missing final newline"));
    }

    let id = key_hash(name, key);
    let mut verified = false;
    for line in signatures.split_terminator('\n') {
        let malformed = || CheckpointError::MalformedSignature(line.to_owned());
        let (line_name, blob) =
            line.strip_prefix(SIG_PREFIX).and_then(|rest| rest.split_once(' ')).ok_or_else(malformed)?;
        if check_key_name(line_name).is_err() {
            return Err(malformed());
        }
        let blob = STANDARD.decode(blob).map_err(|_| malformed())?;
        if blob.len() < 5 {
            return Err(malformed());
        }
        if line_name != name || blob[..4] != id {
            continue;
        }
        if verified {
            return Err(CheckpointError::DuplicateSignature(name.to_owned()));
        }
        let bad = || CheckpointError::BadSignature(name.to_owned());
        let signature = Signature::from_slice(&blob[4..]).map_err(|_| bad())?;
        key.verify_strict(text.as_bytes(), &signature).map_err(|_| bad())?;
        verified = true;
    }
    if !verified {
        return Err(CheckpointError::Unsigned(name.to_owned()));
    }
    Ok(text)
}

fn parse_size(line: &str) -> Result<u64, CheckpointError> {
    let invalid = || CheckpointError::InvalidSize(line.to_owned());
    // u64's parser alone would take a `+` sign and leading zeros.
    let digits = !line.is_empty() && line.bytes().all(|b| b.is_ascii_digit());
    if !digits || (line.len() > 1 && line.starts_with('0')) {
        return Err(invalid());
    }
    line.parse().map_err(|_| invalid())
}

fn parse_root(line: &str) -> Result<Hash, CheckpointError> {
    let invalid = || CheckpointError::InvalidRoot(line.to_owned());
    // The standard engine refuses missing padding and non-zero trailing bits, so each
    // root has exactly one accepted spelling.
    let bytes = STANDARD.decode(line).map_err(|_| invalid())?;
    Hash::try_from(bytes.as_slice()).map_err(|_| invalid())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ORIGIN: &str = "example.com/log";

    fn key() -> SigningKey {
        SigningKey::from_bytes(&[7u8; 32])
    }

    fn checkpoint() -> Checkpoint {
        Checkpoint { origin: ORIGIN.to_owned(), size: 5, root: Sha256::digest(b"x").into(), extensions: vec![] }
    }

    /// Computed once from this implementation (and reproduced with Python's
    /// `cryptography`) and frozen: any change to the bytes of a checkpoint note breaks
    /// every verifier already deployed.
    const GOLDEN: &str = "example.com/log\n5\nLXEWQrcmsEQBYnyp+6wy9chTD7GQPMTbAiWHF5IaSIE=\n\n\
        \u{2014} example.com/log cC88cFhQ2TpDbzhexlUaNqkxxyijnU6pCkyKQL5i3CyKRG8MrCBt3/\
        OKjQQtjsNmQ1RM+Wc25ZXNb+BKDF+ZWLTLLwQ=\n";

    #[test]
    fn golden_vkey() {
        let vk = key().verifying_key();
        assert_eq!(hex::encode(key_hash(ORIGIN, &vk)), "702f3c70");
        assert_eq!(vkey(ORIGIN, &vk), "example.com/log+702f3c70+AepKbGPinFIKvvVQexMuxfmVR3auvr57kkIe6mkURtIs");
    }

    #[test]
    fn vkey_parses_back_and_refuses_a_wrong_hash() {
        let vk = key().verifying_key();
        assert_eq!(parse_vkey(&vkey(ORIGIN, &vk)), Ok((ORIGIN.to_owned(), vk)));
        let go = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
        assert_eq!(parse_vkey(go).map(|(name, k)| vkey(&name, &k)), Ok(go.to_owned()));
        for bad in [
            "example.com/log+702f3c71+AepKbGPinFIKvvVQexMuxfmVR3auvr57kkIe6mkURtIs",
            "other.org/log+702f3c70+AepKbGPinFIKvvVQexMuxfmVR3auvr57kkIe6mkURtIs",
            "example.com/log+702f3c70+AupKbGPinFIKvvVQexMuxfmVR3auvr57kkIe6mkURtIs",
            "example.com/log+702f3c70+AepKbGPinFIKvvVQexMuxfmVR3auvr57kkIe6mkURt",
            "example.com/log+702f3c70",
            "example.com/log+702F3C70+AepKbGPinFIKvvVQexMuxfmVR3auvr57kkIe6mkURtIs",
            "+702f3c70+AepKbGPinFIKvvVQexMuxfmVR3auvr57kkIe6mkURtIs",
        ] {
            let err = parse_vkey(bad).unwrap_err();
            assert!(matches!(err, CheckpointError::InvalidVerifierKey { .. }), "{bad}: {err}");
        }
    }

    #[test]
    fn golden_note() {
        let note = checkpoint().sign(&key());
        assert_eq!(note, GOLDEN);
        let sig_line = note.lines().last().unwrap();
        assert!(sig_line.starts_with("\u{2014} example.com/log "));
        assert!(note.starts_with("example.com/log\n5\nLXEWQrcmsEQBYnyp+6wy9chTD7GQPMTbAiWHF5IaSIE=\n\n"));
    }

    #[test]
    fn sign_then_open_round_trips() {
        let key = key();
        let mut cp = checkpoint();
        let opened = Checkpoint::open(&cp.sign(&key), ORIGIN, &key.verifying_key());
        assert_eq!(opened, Ok(cp.clone()));

        cp.size = 0;
        cp.root = crate::merkle::empty_root();
        cp.extensions = vec!["extension one".to_owned(), "two".to_owned()];
        let opened = Checkpoint::open(&cp.sign(&key), ORIGIN, &key.verifying_key());
        assert_eq!(opened, Ok(cp.clone()));

        cp.size = u64::MAX;
        let opened = Checkpoint::open(&cp.sign(&key), ORIGIN, &key.verifying_key());
        assert_eq!(opened, Ok(cp));
    }

    #[test]
    fn tampering_is_rejected() {
        let key = key();
        let vk = key.verifying_key();
        let note = checkpoint().sign(&key);
        let bad = |n: &str| Checkpoint::open(n, ORIGIN, &vk);

        // Body changes break the signature.
        let bad_sig = Err(CheckpointError::BadSignature(ORIGIN.to_owned()));
        assert_eq!(bad(&note.replacen("\n5\n", "\n6\n", 1)), bad_sig);
        assert_eq!(bad(&note.replacen("LXEW", "LXEX", 1)), bad_sig);
        assert_eq!(bad(&note.replacen("=\n\n", "=\next\n\n", 1)), bad_sig);

        // A flipped signature byte fails; the key id still matches.
        let (text, sig_line) = note.split_at(note.rfind("\n\n").unwrap() + 2);
        let blob_b64 = sig_line.trim_end().rsplit(' ').next().unwrap();
        let mut blob = STANDARD.decode(blob_b64).unwrap();
        blob[10] ^= 1;
        let flipped = format!("{text}\u{2014} {ORIGIN} {}\n", STANDARD.encode(&blob));
        assert_eq!(bad(&flipped), bad_sig);

        // Another name or key means the signature is not ours: unsigned.
        let unsigned = Err(CheckpointError::Unsigned(ORIGIN.to_owned()));
        let renamed = note.replacen("\u{2014} example.com/log ", "\u{2014} example.com/other ", 1);
        assert_eq!(bad(&renamed), unsigned);
        let other = SigningKey::from_bytes(&[8u8; 32]);
        assert_eq!(Checkpoint::open(&note, ORIGIN, &other.verifying_key()), unsigned);

        // Right key, but for another origin.
        let other_origin = Checkpoint { origin: "example.com/other".to_owned(), ..checkpoint() };
        let signed = sign_note(&other_origin.body(), ORIGIN, &key);
        assert_eq!(
            bad(&signed),
            Err(CheckpointError::OriginMismatch { origin: "example.com/other".to_owned(), name: ORIGIN.to_owned() })
        );

        // Broken framing.
        assert!(bad(&note.replacen("\n\n", "\n", 1)).is_err());
        assert!(bad(note.trim_end()).is_err());
        assert!(bad(&note.replacen('\u{2014}', "-", 1)).is_err());
        assert!(bad(&format!("{note}{}", &note[note.rfind("\n\n").unwrap() + 2..])).is_err());
        assert!(bad(&note.replacen("\n5", "\r\n5", 1)).is_err());
    }

    #[test]
    fn unknown_signatures_are_ignored() {
        let key = key();
        let note = checkpoint().sign(&key);
        let witness = SigningKey::from_bytes(&[9u8; 32]);
        let cosig = sign_note(&checkpoint().body(), "witness.example", &witness);
        let cosig_line = &cosig[cosig.rfind("\n\n").unwrap() + 2..];
        let both = format!("{note}{cosig_line}");
        let before = format!("{}{cosig_line}{}", &note[..note.rfind('\u{2014}').unwrap()], {
            &note[note.rfind('\u{2014}').unwrap()..]
        });
        for n in [&both, &before] {
            assert_eq!(Checkpoint::open(n, ORIGIN, &key.verifying_key()), Ok(checkpoint()));
        }
        // The witness's own view of the same note.
        let body = open_note(&both, "witness.example", &witness.verifying_key());
        assert_eq!(body, Ok(checkpoint().body().as_str()));
    }

    #[test]
    fn bodies_are_parsed_strictly() {
        let key = key();
        let open = |body: &str| Checkpoint::open(&sign_note(body, ORIGIN, &key), ORIGIN, &key.verifying_key());
        let root = "LXEWQrcmsEQBYnyp+6wy9chTD7GQPMTbAiWHF5IaSIE=";
        assert!(open(&format!("{ORIGIN}\n5\n{root}\n")).is_ok());
        for size in ["05", "+5", "-1", "", " 5", "5 ", "0x5", "18446744073709551616"] {
            assert_eq!(
                open(&format!("{ORIGIN}\n{size}\n{root}\n")),
                Err(CheckpointError::InvalidSize(size.to_owned())),
                "size `{size}`"
            );
        }
        for root in [
            "LXEWQrcmsEQBYnyp+6wy9chTD7GQPMTbAiWHF5IaSIE",
            "LXEWQrcmsEQBYnyp+6wy9chTD7GQPMTbAiWHF5IaSIF=",
            "LXEWQrcmsEQBYnyp-6wy9chTD7GQPMTbAiWHF5IaSIE=",
            "LXEWQrcmsEQBYnyp+6wy9chTD7GQPMTbAiWH",
            "",
        ] {
            assert_eq!(
                open(&format!("{ORIGIN}\n5\n{root}\n")),
                Err(CheckpointError::InvalidRoot(root.to_owned())),
                "root `{root}`"
            );
        }
        assert_eq!(open(&format!("{ORIGIN}\n5\n")), Err(CheckpointError::TooFewLines(2)));
        assert_eq!(open(&format!("{ORIGIN}\n5\n{root}\n\nafter blank\n")), Err(CheckpointError::InvalidExtension(1)));
        // The origin itself is refused before it is compared with the key name.
        assert!(matches!(open(&format!("\n5\n{root}\n")), Err(CheckpointError::InvalidOrigin(_))));
    }

    #[test]
    fn key_names_are_checked() {
        for name in ["", "a b", "a+b", "a\tb", " a", "a\u{00a0}b"] {
            assert!(check_key_name(name).is_err(), "name `{name}`");
        }
        assert!(check_key_name("example.com/log").is_ok());
        let mut cp = checkpoint();
        cp.extensions = vec![String::new()];
        assert_eq!(cp.validate(), Err(CheckpointError::InvalidExtension(1)));
    }

    /// The example of golang.org/x/mod/sumdb/note, an independent implementation: its
    /// private key, verifier key and signed note.
    #[test]
    fn matches_the_go_note_package() {
        let skey = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";
        let vkey_want = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
        let text = "If you think cryptography is the answer to your problem,\n\
                    then you don't know what your problem is.\n";
        let note_want = format!(
            "{text}\n\u{2014} PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUg\
             YN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"
        );

        // The key material itself may contain `+`: it is everything after the 4th.
        let typed_seed = STANDARD.decode(skey.splitn(5, '+').last().unwrap()).unwrap();
        assert_eq!(typed_seed[0], ED25519);
        let key = SigningKey::from_bytes(&typed_seed[1..].try_into().unwrap());
        let vk = key.verifying_key();
        assert_eq!(vkey("PeterNeumann", &vk), vkey_want);
        assert_eq!(hex::encode(key_hash("PeterNeumann", &vk)), "c74f20a3");
        assert_eq!(sign_note(text, "PeterNeumann", &key), note_want);
        assert_eq!(open_note(&note_want, "PeterNeumann", &vk), Ok(text));
    }
}
