//! The node's signing key file: PKCS#8 PEM, created on first run, mode 0600.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use ed25519_dalek::SigningKey;
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey, spki::der::pem::LineEnding};

use crate::decision::Signer;
use crate::time::Instant;

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
    pub valid_from: Instant,
    pub created: bool,
}

/// A fresh key from the operating system's random source.
pub fn generate() -> SigningKey {
    let mut seed = [0u8; 32];
    // The OS random source failing leaves no safe way to make a key; stopping is right.
    getrandom::fill(&mut seed).expect("operating system random source failed");
    SigningKey::from_bytes(&seed)
}

/// Writes `key` as PKCS#8 PEM to a new file with mode 0600; never overwrites.
pub fn write_new(path: &Path, key: &SigningKey) -> Result<(), KeyError> {
    let io = |source| KeyError::Io { path: path.to_path_buf(), source };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::create_dir_all(dir).map_err(io)?;
    }
    let pem = key
        .to_pkcs8_pem(LineEnding::LF)
        .map_err(|e| KeyError::Format { path: path.to_path_buf(), reason: e.to_string() })?;
    let mut f = fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path).map_err(io)?;
    f.write_all(pem.as_bytes()).map_err(io)?;
    f.sync_all().map_err(io)?;
    Ok(())
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
    let valid_from = modified.map_or(Instant::from_secs(0), |d| Instant::from_secs(d.as_secs() as i64));
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
}
