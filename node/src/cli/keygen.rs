//! `silkgate keygen --out FILE`: a new signing key.

use std::path::PathBuf;

use silkgate::keys;
use silkgate_core::decision::key_id;

use super::fail;

#[derive(clap::Args)]
pub struct Args {
    /// Where to write the PKCS#8 PEM private key (must not exist).
    #[arg(long)]
    out: PathBuf,
}

pub fn run(args: Args) -> u8 {
    let key = keys::generate();
    if let Err(e) = keys::write_new(&args.out, &key) {
        return fail(e);
    }
    let public = key.verifying_key();
    println!("key file:   {}", args.out.display());
    println!("key id:     {}", key_id(&public));
    println!("public key: {}", hex::encode(public.as_bytes()));
    0
}
