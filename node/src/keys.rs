//! The node's signing key file: PKCS#8 PEM (written as v1), created on first run, mode 0600.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use ed25519_dalek::SigningKey;
use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::spki::der::zeroize::Zeroizing;
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey, KeypairBytes};

use silkgate_core::decision::Signer;
use silkgate_core::time::UnixTime;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("key file {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("key file {path} is readable by group or others (mode {mode:o}); run `chmod 600 {path}` and restart")]
    Permissions { path: PathBuf, mode: u32 },
    #[error(
        "key file {path} is owned by root and writable by its group or readable by others (mode {mode:o}); at most 0640"
    )]
    RootPermissions { path: PathBuf, mode: u32 },
    #[error("key file {path} is not an Ed25519 PKCS#8 PEM private key: {reason}")]
    Format { path: PathBuf, reason: String },
}

/// A loaded key and when its file was created (reported as the key's `valid_from`).
pub struct LoadedKey {
    pub signer: Signer,
    pub valid_from: UnixTime,
    pub created: bool,
}

/// A fresh key from the operating system's random source.
pub fn generate() -> SigningKey {
    let mut seed = [0u8; 32];
    // The OS random source failing leaves no safe way to make a key; stopping is right.
    getrandom::fill(&mut seed).expect("operating system random source failed");
    SigningKey::from_bytes(&seed)
}

/// Writes `key` as PKCS#8 v1 PEM to a new file with mode 0600; never overwrites.
///
/// Version 1 (RFC 8410 `OneAsymmetricKey` version 0, no public key) is what OpenSSL,
/// Python `cryptography` and Go load; [`load`] also takes version 2, with the public key.
/// The file appears complete or not at all: the key goes to a temporary file beside it,
/// is synced, then hard-linked into place (which fails if `path` exists), and the
/// directory is synced so the new name survives a crash.
pub fn write_new(path: &Path, key: &SigningKey) -> Result<(), KeyError> {
    let io = |source| KeyError::Io { path: path.to_path_buf(), source };
    let dir = match path.parent().filter(|d| !d.as_os_str().is_empty()) {
        Some(d) => d,
        None => Path::new("."),
    };
    fs::create_dir_all(dir).map_err(io)?;
    let pem = v1_pem(key).map_err(|e| KeyError::Format { path: path.to_path_buf(), reason: e.to_string() })?;
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let mut nonce = [0u8; 8];
    getrandom::fill(&mut nonce).map_err(|e| io(std::io::Error::other(e.to_string())))?;
    let temp = dir.join(format!(".{name}.{}.{}.tmp", std::process::id(), hex::encode(nonce)));
    let result = write_then_link(&temp, path, pem.as_bytes());
    // The temporary name goes in every case: after the link the key lives under `path`.
    let _ = fs::remove_file(&temp);
    result.map_err(io)?;
    fs::File::open(dir).and_then(|d| d.sync_all()).map_err(io)
}

/// The PKCS#8 v1 PEM of `key`: the private key alone, without the optional public key.
fn v1_pem(key: &SigningKey) -> ed25519_dalek::pkcs8::Result<Zeroizing<String>> {
    KeypairBytes { secret_key: key.to_bytes(), public_key: None }.to_pkcs8_pem(LineEnding::LF)
}

fn write_then_link(temp: &Path, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut f = fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(temp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    fs::hard_link(temp, path)
}

/// Loads the key at `path`, refusing a file readable by group or others.
///
/// As PostgreSQL does for its key files, a file owned by root may also be readable by
/// its group: that is how Kubernetes mounts a Secret for a non-root process with an
/// `fsGroup` (mode 0440, owned by root and the pod's group).
pub fn load(path: &Path) -> Result<LoadedKey, KeyError> {
    let io = |source| KeyError::Io { path: path.to_path_buf(), source };
    let meta = fs::metadata(path).map_err(io)?;
    let mode = meta.permissions().mode() & 0o777;
    if std::os::unix::fs::MetadataExt::uid(&meta) == 0 {
        if mode & 0o037 != 0 {
            return Err(KeyError::RootPermissions { path: path.to_path_buf(), mode });
        }
    } else if mode & 0o077 != 0 {
        return Err(KeyError::Permissions { path: path.to_path_buf(), mode });
    }
    let text = fs::read_to_string(path).map_err(io)?;
    let key = SigningKey::from_pkcs8_pem(&text)
        .map_err(|e| KeyError::Format { path: path.to_path_buf(), reason: e.to_string() })?;
    let modified = meta.modified().ok().and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok());
    let valid_from = modified.map_or(UnixTime::from_secs(0), |d| UnixTime::from_secs(d.as_secs() as i64));
    Ok(LoadedKey { signer: Signer::new(key), valid_from, created: false })
}

/// Loads the key at `path`, creating it first when the file does not exist.
pub fn load_or_create(path: &Path) -> Result<LoadedKey, KeyError> {
    if !path.exists() {
        write_new(path, &generate())?;
        let mut k = load(path)?;
        k.created = true;
        return Ok(k);
    }
    load(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_loads_and_refuses_open_permissions() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/node.key");
        let first = load_or_create(&path).unwrap();
        assert!(first.created);
        assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        let again = load_or_create(&path).unwrap();
        assert!(!again.created);
        assert_eq!(first.signer.key_id(), again.signer.key_id());

        // Tests run as root here, so the key file is root-owned: group read is allowed
        // (a Kubernetes Secret with fsGroup), anything for others is not.
        let root_owned = std::os::unix::fs::MetadataExt::uid(&fs::metadata(&path).unwrap()) == 0;
        fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
        assert_eq!(load(&path).is_ok(), root_owned);
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let err = load(&path).err().unwrap().to_string();
        assert!(err.contains("(mode 644)"), "{err}");

        let bad = dir.path().join("bad.key");
        fs::write(&bad, "not a key").unwrap();
        fs::set_permissions(&bad, fs::Permissions::from_mode(0o600)).unwrap();
        assert!(matches!(load(&bad), Err(KeyError::Format { .. })));
    }

    /// The DER inside a PEM file's base64 lines.
    fn der_of(pem: &str) -> Vec<u8> {
        use base64::Engine as _;
        let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        base64::engine::general_purpose::STANDARD.decode(body).unwrap()
    }

    #[test]
    fn writes_pkcs8_v1_that_openssl_loads_and_still_reads_v2() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.key");
        let key = generate();
        write_new(&path, &key).unwrap();
        assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        // Nothing is left beside the key: the temporary name is gone.
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);

        // RFC 8410 v1: SEQUENCE { INTEGER 0, AlgorithmIdentifier, OCTET STRING }, 48
        // bytes in all; v2 has version 1 and a trailing [1] public key.
        let der = der_of(&fs::read_to_string(&path).unwrap());
        assert_eq!(der[2..5], [0x02, 0x01, 0x00], "version must be 0 (v1): {der:02x?}");
        assert_eq!(der.len(), 48, "no public key after the private key: {der:02x?}");
        assert_eq!(load(&path).unwrap().signer.key_id(), Signer::new(key.clone()).key_id());

        // A second write never replaces the key.
        let err = write_new(&path, &generate()).err().unwrap();
        assert!(matches!(&err, KeyError::Io { source, .. } if source.kind() == std::io::ErrorKind::AlreadyExists));
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
        assert_eq!(load(&path).unwrap().signer.key_id(), Signer::new(key.clone()).key_id());

        match std::process::Command::new("openssl").args(["pkey", "-noout", "-in"]).arg(&path).output() {
            Ok(out) => assert!(out.status.success(), "openssl pkey: {}", String::from_utf8_lossy(&out.stderr)),
            Err(e) => eprintln!("skipping the openssl check: cannot run `openssl`: {e}"),
        }

        // Files written before, as PKCS#8 v2 with the public key, still load.
        let v2 = dir.path().join("v2.key");
        let pem = key.to_pkcs8_pem(LineEnding::LF).unwrap();
        assert_eq!(der_of(&pem)[2..5], [0x02, 0x01, 0x01], "ed25519-dalek writes v2");
        fs::write(&v2, pem.as_bytes()).unwrap();
        fs::set_permissions(&v2, fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(load(&v2).unwrap().signer.key_id(), Signer::new(key).key_id());
    }
}
