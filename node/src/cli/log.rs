//! `silkgate log ...`: audit a log offline, fetch and check proofs, seal a log.

mod mirror;

use std::io::Write;
use std::path::{Path, PathBuf};

use silkgate::keys;
use silkgate::log::audit;
use silkgate::proto::{self, decision_log_client::DecisionLogClient};
use silkgate_core::checkpoint::Checkpoint;
use silkgate_core::merkle::{self, Hash};
use silkgate_verify::bundle::Bundle;

use super::key::PublicKey;
use super::{EXIT_ERROR, EXIT_NEGATIVE, fail};

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Subcommand)]
enum Command {
    /// Audit a log offline: every entry, signature and checkpoint, of the active log
    /// and of every sealed log beside it.
    Verify {
        /// The node's data directory (holding `log/`), a log directory (holding
        /// `entries` and `origin`, or `sealed/`), or one sealed log (`log/sealed/N`).
        dir: PathBuf,
        /// The node's public key: 64 hex characters, a verifier key string, or a file
        /// holding either or a PEM key [default: the public half of DIR/node.key].
        #[arg(long)]
        public_key: Option<String>,
    },
    /// Fetch a decision's inclusion proof from a node and write an evidence bundle.
    Prove {
        /// Node address, e.g. http://127.0.0.1:50051.
        #[arg(long)]
        node: String,
        #[arg(long, conflicts_with = "index")]
        decision_id: Option<String>,
        #[arg(long)]
        index: Option<u64>,
        /// Where to write the bundle (JSON).
        #[arg(long)]
        out: PathBuf,
    },
    /// Check an evidence bundle offline: decision signature, inclusion, checkpoint.
    VerifyBundle {
        bundle: PathBuf,
        /// The node's public key: 64 hex characters, a verifier key string, or a file
        /// holding either or a PEM key.
        #[arg(long)]
        public_key: String,
        /// A witness trusted to cosign checkpoints: its verifier key string
        /// `<name>+<hex key hash>+<base64(0x04 || key)>` (NodeInfo.witness_verifier_key).
        /// Repeat for each witness.
        #[arg(long)]
        witness_key: Vec<String>,
        /// Valid cosignatures by distinct --witness-key witnesses needed to accept the
        /// checkpoint as witnessed [default: 1 when witness keys are given].
        #[arg(long)]
        witness_quorum: Option<usize>,
    },
    /// Mirror a node's log over HTTP (C2SP tlog-tiles) into DIR, incrementally: verify
    /// the checkpoint, recompute the tree from the entries, check it extends what DIR
    /// already holds; `log verify DIR` audits the mirror.
    Mirror {
        /// The log's tiles prefix, e.g. http://127.0.0.1:9090 (its HTTP listener).
        url: String,
        /// The mirror directory (created if missing).
        dir: PathBuf,
        /// The log's verifier key string (or hex key or file), as for `log verify`.
        #[arg(long)]
        public_key: String,
    },
    /// Check that a node's log still contains an earlier checkpoint (no fork).
    Consistency {
        #[arg(long)]
        node: String,
        /// An earlier checkpoint note kept by the auditor.
        #[arg(long)]
        checkpoint: PathBuf,
        /// The node's public key: 64 hex characters, a verifier key string (`silkgate key
        /// show` prints it), or a file holding either or a PEM key.
        #[arg(long)]
        public_key: String,
        /// Where to save the node's latest checkpoint once it verified.
        #[arg(long)]
        save: Option<PathBuf>,
    },
    /// Seal the current log (node stopped): it moves to log/sealed/N and the next start
    /// begins a new log with a new origin.
    Seal {
        /// The node's data directory.
        dir: PathBuf,
    },
}

fn key_from(arg: Option<&str>, data_dir: &Path) -> Result<PublicKey, String> {
    match arg {
        Some(k) => PublicKey::parse(k),
        None => keys::load(&data_dir.join("node.key"))
            .map(|k| PublicKey { key: k.signer.verifying_key(), origin: None })
            .map_err(|e| format!("{e} (give --public-key to audit without the private key)")),
    }
}

pub fn run(args: Args) -> u8 {
    match args.command {
        Command::Verify { dir, public_key } => verify(dir, public_key),
        Command::Prove { node, decision_id, index, out } => rt(prove(node, decision_id, index, out)),
        Command::VerifyBundle { bundle, public_key, witness_key, witness_quorum } => {
            verify_bundle(bundle, public_key, witness_key, witness_quorum)
        }
        Command::Mirror { url, dir, public_key } => rt(mirror::run(url, dir, public_key)),
        Command::Consistency { node, checkpoint, public_key, save } => {
            rt(consistency(node, checkpoint, public_key, save))
        }
        Command::Seal { dir } => seal(dir),
    }
}

fn rt(f: impl std::future::Future<Output = u8>) -> u8 {
    match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt.block_on(f),
        Err(e) => fail(e),
    }
}

/// Whether `dir` holds a log of its own (not only sealed ones).
fn is_log(dir: &Path) -> bool {
    dir.join("entries").exists() || dir.join("origin").exists()
}

/// The sealed logs under a log directory, `sealed/1`, `sealed/2`, ... in order.
pub fn sealed_logs(log_dir: &Path) -> Vec<PathBuf> {
    let Ok(list) = std::fs::read_dir(log_dir.join("sealed")) else { return Vec::new() };
    let number = |p: &PathBuf| p.file_name().and_then(|n| n.to_str()).and_then(|n| n.parse::<u64>().ok());
    // Only `sealed/N`: a `N.partial` is a seal a crash interrupted, which the node
    // finishes at its next start (see `log::seal`).
    let mut dirs: Vec<PathBuf> =
        list.filter_map(|e| e.ok()).map(|e| e.path()).filter(|p| p.is_dir() && number(p).is_some()).collect();
    dirs.sort_by_key(|p| (number(p), p.clone()));
    dirs
}

/// Where `log verify DIR` finds logs: DIR itself when it is a log directory (or holds
/// sealed logs), else DIR/log. Returns the log directory and the data directory, if
/// DIR was one.
fn locate(dir: &Path) -> Result<(PathBuf, Option<PathBuf>), String> {
    let holds_logs = |d: &Path| is_log(d) || d.join("sealed").is_dir();
    if holds_logs(dir) {
        Ok((dir.to_path_buf(), None))
    } else if holds_logs(&dir.join("log")) {
        Ok((dir.join("log"), Some(dir.to_path_buf())))
    } else {
        Err(format!("`{}` holds no log: no `entries`, `origin` or `sealed/` in it or in its `log/`", dir.display()))
    }
}

fn verify(dir: PathBuf, public_key: Option<String>) -> u8 {
    let (log_dir, data_dir) = match locate(&dir) {
        Ok(found) => found,
        Err(e) => return fail(e),
    };
    match &data_dir {
        Some(_) => println!("data directory {}: auditing the logs in {}", dir.display(), log_dir.display()),
        None => println!("log directory {}", log_dir.display()),
    }
    let key = match key_from(public_key.as_deref(), data_dir.as_deref().unwrap_or(&dir)) {
        Ok(k) => k,
        Err(e) => return fail(e),
    };
    let mut logs = Vec::new();
    if is_log(&log_dir) {
        logs.push(log_dir.clone());
    } else {
        println!("no active log in {} (sealed and not restarted since)", log_dir.display());
    }
    let sealed = sealed_logs(&log_dir);
    logs.extend(sealed.iter().cloned());
    if logs.is_empty() {
        return fail(format!("`{}` holds no log and no sealed log", log_dir.display()));
    }
    let (mut valid, mut invalid, mut errors) = (0, 0, 0);
    for log in &logs {
        println!();
        match verify_one(log, &key) {
            Ok(()) => valid += 1,
            Err(Failed::Invalid) => invalid += 1,
            Err(Failed::Error) => errors += 1,
        }
    }
    if logs.len() > 1 || !sealed.is_empty() {
        println!();
        let n = logs.len();
        let (what, sealed) = (if n == 1 { "log" } else { "logs" }, sealed.len());
        println!("{n} {what} ({sealed} sealed): {valid} verified, {invalid} invalid, {errors} not readable");
    }
    if invalid > 0 {
        EXIT_NEGATIVE
    } else if errors > 0 {
        EXIT_ERROR
    } else {
        0
    }
}

enum Failed {
    Invalid,
    Error,
}

/// Audits one log directory and reports it.
fn verify_one(log_dir: &Path, key: &PublicKey) -> Result<(), Failed> {
    // A missing or unreadable origin file is left to the audit, which names it.
    if let Ok(Some(origin)) = super::key::read_origin(log_dir)
        && let Err(e) = key.check_origin(&origin)
    {
        println!("invalid: log {}: {e}", log_dir.display());
        return Err(Failed::Invalid);
    }
    let interactive = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let mut last = 0u64;
    let report = audit::audit(log_dir, &key.key, |done, total| {
        // A progress line on large logs; redrawn in place on a terminal.
        if total >= 10_000 && (done == total || done - last >= total / 50) {
            last = done;
            let pct = done * 100 / total.max(1);
            let bar = "#".repeat((pct / 4) as usize);
            if interactive {
                eprint!("\r[{bar:<25}] {pct:3}% {done}/{total} entries");
                if done == total {
                    eprintln!();
                }
            } else {
                eprintln!("[{bar:<25}] {pct:3}% {done}/{total} entries");
            }
            let _ = std::io::stderr().flush();
        }
    });
    match report {
        Ok(r) => {
            println!("log {} verified", log_dir.display());
            println!("origin:      {}", r.origin);
            println!("entries:     {} (every leaf hash and decision signature checked)", r.entries);
            println!("checkpoints: {} (signatures and mutual consistency checked)", r.checkpoints);
            println!("latest checkpoint size {}; root of all entries {}", r.latest_size, hex::encode(r.root));
            Ok(())
        }
        Err(e @ audit::AuditError::Io { .. }) => {
            eprintln!("error: log {}: {e}", log_dir.display());
            Err(Failed::Error)
        }
        Err(e) => {
            println!("invalid: log {}: {e}", log_dir.display());
            Err(Failed::Invalid)
        }
    }
}

async fn prove(node: String, decision_id: Option<String>, index: Option<u64>, out: PathBuf) -> u8 {
    let target = match (decision_id, index) {
        (Some(id), _) => proto::get_inclusion_proof_request::Target::DecisionId(id),
        (None, Some(i)) => proto::get_inclusion_proof_request::Target::Index(i),
        (None, None) => return fail("give --decision-id or --index"),
    };
    let mut client = match DecisionLogClient::connect(node.clone()).await {
        Ok(c) => c,
        Err(e) => return fail(format!("connect {node}: {e}")),
    };
    let p = match client
        .get_inclusion_proof(proto::GetInclusionProofRequest { target: Some(target), tree_size: 0 })
        .await
    {
        Ok(p) => p.into_inner(),
        Err(e) => return fail(format!("GetInclusionProof: {}", e.message())),
    };
    let cp = p.checkpoint.unwrap_or_default();
    let mut inclusion_proof = Vec::with_capacity(p.hashes.len());
    for h in &p.hashes {
        match Hash::try_from(h.as_slice()) {
            Ok(h) => inclusion_proof.push(h),
            Err(_) => return fail(format!("GetInclusionProof: a proof hash of {} bytes, not 32", h.len())),
        }
    }
    let bundle =
        Bundle { entry: p.entry, log_index: p.index, tree_size: p.tree_size, inclusion_proof, checkpoint: cp.note };
    if let Err(e) = std::fs::write(&out, bundle.to_json()) {
        return fail(format!("{}: {e}", out.display()));
    }
    println!("wrote {} (entry {} of {}, origin {})", out.display(), p.index, p.tree_size, cp.origin);
    0
}

fn verify_bundle(bundle: PathBuf, public_key: String, witness_keys: Vec<String>, quorum: Option<usize>) -> u8 {
    let key = match PublicKey::parse(&public_key) {
        Ok(k) => k,
        Err(e) => return fail(e),
    };
    let mut witnesses = Vec::new();
    for k in &witness_keys {
        match silkgate_verify::cosignature::Witness::parse_vkey(k) {
            Ok(w) if witnesses.iter().any(|x: &silkgate_verify::cosignature::Witness| x.name == w.name) => {
                return fail(format!("--witness-key: witness `{}` given twice", w.name));
            }
            Ok(w) => witnesses.push(w),
            Err(e) => return fail(format!("--witness-key: {e}")),
        }
    }
    let quorum = quorum.unwrap_or(usize::from(!witnesses.is_empty()));
    if quorum > witnesses.len() {
        return fail(format!("--witness-quorum {quorum}: only {} --witness-key given", witnesses.len()));
    }
    let text = match std::fs::read_to_string(&bundle) {
        Ok(t) => t,
        Err(e) => return fail(format!("{}: {e}", bundle.display())),
    };
    match Bundle::parse(&text).and_then(|b| b.verify(&key.key, key.origin.as_deref())) {
        Ok(v) => {
            println!("valid: {}", v.summary());
            if witnesses.is_empty() {
                return 0;
            }
            witnessed(&text, &witnesses, quorum)
        }
        Err(e) => {
            println!("invalid: {e}");
            EXIT_NEGATIVE
        }
    }
}

/// Reports the valid cosignatures on a verified bundle's checkpoint; 0 with a quorum.
fn witnessed(bundle_text: &str, witnesses: &[silkgate_verify::cosignature::Witness], quorum: usize) -> u8 {
    let note = match Bundle::parse(bundle_text) {
        Ok(b) => b.checkpoint,
        Err(e) => return fail(e),
    };
    let report = match silkgate_verify::cosignature::verify(&note, witnesses) {
        Ok(r) => r,
        Err(e) => {
            println!("not witnessed: {e}");
            return EXIT_NEGATIVE;
        }
    };
    for c in &report.valid {
        println!("cosigned: {} at {} ({})", c.name, c.timestamp, c.vkey);
    }
    for name in &report.invalid {
        println!("invalid cosignature: {name}");
    }
    if report.valid.len() >= quorum {
        println!(
            "witnessed: {} valid cosignatures of {} witnesses, quorum {quorum}",
            report.valid.len(),
            witnesses.len()
        );
        0
    } else {
        println!(
            "not witnessed: {} valid cosignatures of {} witnesses, quorum {quorum}",
            report.valid.len(),
            witnesses.len()
        );
        EXIT_NEGATIVE
    }
}

async fn consistency(node: String, checkpoint: PathBuf, public_key: String, save: Option<PathBuf>) -> u8 {
    let trusted = match PublicKey::parse(&public_key) {
        Ok(k) => k,
        Err(e) => return fail(e),
    };
    let key = trusted.key;
    let old_note = match std::fs::read_to_string(&checkpoint) {
        Ok(t) => t,
        Err(e) => return fail(format!("{}: {e}", checkpoint.display())),
    };
    // The kept checkpoint is evidence: one that does not verify, or is of another log
    // than the verifier key names, is a negative answer, not an operational error.
    let origin = old_note.lines().next().unwrap_or_default().to_string();
    let old = trusted.check_origin(&origin).and_then(|()| {
        Checkpoint::open(&old_note, &origin, &key).map_err(|e| format!("not a checkpoint of that key: {e}"))
    });
    let old = match old {
        Ok(c) => c,
        Err(e) => {
            println!("invalid: the kept checkpoint {}: {e}", checkpoint.display());
            return EXIT_NEGATIVE;
        }
    };
    let mut client = match DecisionLogClient::connect(node.clone()).await {
        Ok(c) => c,
        Err(e) => return fail(format!("connect {node}: {e}")),
    };
    let latest = match client.get_checkpoint(proto::GetCheckpointRequest {}).await {
        Ok(c) => c.into_inner(),
        Err(e) => return fail(format!("GetCheckpoint: {}", e.message())),
    };
    let new = match Checkpoint::open(&latest.note, &origin, &key) {
        Ok(c) => c,
        Err(e) => {
            println!("invalid: the node's latest checkpoint: {e}");
            return EXIT_NEGATIVE;
        }
    };
    let proof = if old.size == 0 || old.size == new.size {
        Vec::new()
    } else {
        match client.get_consistency_proof(proto::GetConsistencyProofRequest { size1: old.size, size2: new.size }).await
        {
            Ok(p) => p.into_inner().hashes,
            Err(e) => return fail(format!("GetConsistencyProof: {}", e.message())),
        }
    };
    let proof: Result<Vec<Hash>, _> = proof.into_iter().map(|h| h.try_into()).collect();
    let Ok(proof) = proof else {
        println!("invalid: a proof hash is not 32 bytes");
        return EXIT_NEGATIVE;
    };
    let ok = old.size == 0 || merkle::verify_consistency(old.size, new.size, &proof, &old.root, &new.root).is_ok();
    if !ok || new.size < old.size {
        println!(
            "invalid: the node's log at size {} is not consistent with the checkpoint at size {}",
            new.size, old.size
        );
        return EXIT_NEGATIVE;
    }
    println!("consistent: {} grew from {} to {} entries without rewriting history", origin, old.size, new.size);
    if let Some(path) = save
        && let Err(e) = std::fs::write(&path, &latest.note)
    {
        return fail(format!("{}: {e}", path.display()));
    }
    0
}

fn seal(dir: PathBuf) -> u8 {
    let log_dir = dir.join("log");
    let lock = match silkgate::log::store::lock(&log_dir) {
        Ok(l) => l,
        Err(e) => return fail(e),
    };
    let target = match silkgate::log::seal::seal(&silkgate::log::storage::Disk, &log_dir) {
        Ok(t) => t,
        Err(e) => return fail(e),
    };
    drop(lock);
    println!("sealed {} as {}; the next start begins a new log", log_dir.display(), target.display());
    0
}
