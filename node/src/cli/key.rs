//! `silkgate key show`: what to give auditors; and the `--public-key` forms every
//! command takes.

use std::path::{Path, PathBuf};

use ed25519_dalek::VerifyingKey;
use ed25519_dalek::pkcs8::DecodePublicKey;
use silkgate::keys;
use silkgate_core::checkpoint;
use silkgate_core::decision::key_id;

use super::fail;

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Subcommand)]
enum Command {
    /// Print the node key's id, public key and the log's verifier key strings.
    Show {
        /// The signing key file [default: DATA_DIR/node.key].
        #[arg(long)]
        key: Option<PathBuf>,
        /// The node's data directory, whose `log/origin` names the log.
        #[arg(long, default_value = "data")]
        data_dir: PathBuf,
    },
}

pub fn run(args: Args) -> u8 {
    match args.command {
        Command::Show { key, data_dir } => show(key, &data_dir),
    }
}

fn show(key: Option<PathBuf>, data_dir: &Path) -> u8 {
    let path = key.unwrap_or_else(|| data_dir.join("node.key"));
    let public = match keys::load(&path) {
        Ok(k) => k.signer.verifying_key(),
        Err(e) => return fail(e),
    };
    println!("key file:     {}", path.display());
    println!("key id:       {}", key_id(&public));
    println!("public key:   {}", hex::encode(public.as_bytes()));
    let log_dir = data_dir.join("log");
    match read_origin(&log_dir) {
        Ok(Some(origin)) => {
            println!("log origin:   {origin}");
            println!("verifier key: {}", checkpoint::vkey(&origin, &public));
        }
        Ok(None) => {
            println!("verifier key: none yet: no active log in {} (it names the log's origin)", log_dir.display())
        }
        Err(e) => return fail(e),
    }
    for dir in super::log::sealed_logs(&log_dir) {
        match read_origin(&dir) {
            Ok(Some(origin)) => println!("sealed log {}: {}", dir.display(), checkpoint::vkey(&origin, &public)),
            Ok(None) => {}
            Err(e) => return fail(e),
        }
    }
    0
}

/// The origin line of the log in `dir`, `None` when the log has none (yet).
pub fn read_origin(dir: &Path) -> Result<Option<String>, String> {
    let path = dir.join("origin");
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok(Some(text.trim().to_string())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

/// A trusted public key as given with `--public-key`, and the log origin it was given
/// for when it came as a verifier key string.
pub struct PublicKey {
    pub key: VerifyingKey,
    pub origin: Option<String>,
}

impl PublicKey {
    /// Parses `--public-key`: 64 hex characters, a verifier key string
    /// `<origin>+<hex key hash>+<base64(0x01 || key)>`, or a file holding either or a
    /// PEM public key.
    pub fn parse(s: &str) -> Result<PublicKey, String> {
        let text = match std::fs::read_to_string(s) {
            Ok(t) => t,
            Err(_) => s.to_string(),
        };
        let text = text.trim();
        if text.starts_with("-----BEGIN") {
            let key = VerifyingKey::from_public_key_pem(text).map_err(|e| format!("public key PEM: {e}"))?;
            return Ok(PublicKey { key, origin: None });
        }
        // Hex never holds `+`; a verifier key always does.
        if text.contains('+') {
            let (origin, key) = checkpoint::parse_vkey(text).map_err(|e| format!("public key: {e}"))?;
            return Ok(PublicKey { key, origin: Some(origin) });
        }
        let expected = || {
            format!(
                "public key `{}`: expected 64 hex characters, a verifier key \
                 `<origin>+<hex key hash>+<base64 key>`, or a file with either or a PEM key",
                s.escape_debug()
            )
        };
        let bytes = hex::decode(text).map_err(|_| expected())?;
        let arr: [u8; 32] = bytes.try_into().map_err(|_| expected())?;
        let key = VerifyingKey::from_bytes(&arr).map_err(|e| format!("public key: {e}"))?;
        Ok(PublicKey { key, origin: None })
    }

    /// Checks that a verifier key, if that is how the key was given, names `origin`.
    pub fn check_origin(&self, origin: &str) -> Result<(), String> {
        match &self.origin {
            Some(named) if named != origin => Err(format!(
                "the verifier key is for origin `{}`, not `{}`",
                named.escape_debug(),
                origin.escape_debug()
            )),
            _ => Ok(()),
        }
    }
}
