//! The baselines the target is compared with (`--reference`): `silkgate-reference`
//! processes, started here and stopped when the run ends.
//!
//! Each runs in a process of its own (the binary beside this one, see
//! `src/bin/silkgate-reference.rs`) with the node's allocator, runtime and connection
//! tuning, so neither shares the load client's allocator or runtime, and its CPU time
//! is read from its own `/proc` entry as the target's is:
//! - [`Kind::Signed`], the fair reference: bare tonic plus one Ed25519 signature per
//!   answer, answers of the real shape and size;
//! - [`Kind::Bare`]: the same answers without computing the signature: tonic alone.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context as _, bail};
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::{Child, Command};

/// The binary, expected beside `silkgate-loadgen` (cargo builds both).
const BINARY: &str = "silkgate-reference";

/// Which baseline.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// One Ed25519 signature per answer: the fair reference.
    Signed,
    /// No signature computed: tonic alone.
    Bare,
}

impl Kind {
    /// The name in reports, and the `--kind` of the binary.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Signed => "signed",
            Kind::Bare => "bare",
        }
    }
}

/// A running baseline server; [`Reference::stop`] ends it, and so does dropping it.
pub struct Reference {
    pub kind: Kind,
    pub addr: SocketAddr,
    pub pid: u32,
    child: Child,
}

/// Starts a `kind` baseline on 127.0.0.1:0 with `threads` runtime workers, answering
/// with payloads of `payload_len` bytes.
pub async fn start(kind: Kind, threads: usize, payload_len: usize) -> anyhow::Result<Reference> {
    let exe = binary()?;
    let mut child = Command::new(&exe)
        .args(["--kind", kind.as_str(), "--threads", &threads.to_string()])
        .args(["--payload-bytes", &payload_len.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {}", exe.display()))?;
    let pid = child.id().context("the reference server exited at once")?;
    let stdout = child.stdout.take().context("reference server stdout")?;
    let mut stdout = BufReader::new(stdout);
    let mut first = String::new();
    let read = stdout.read_line(&mut first);
    match tokio::time::timeout(Duration::from_secs(10), read).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => return Err(e).context("reading the reference server's address"),
        Err(_) => bail!("the {} reference server did not say its address within 10 s", kind.as_str()),
    }
    let Some(addr) = first.trim().strip_prefix("listening ") else {
        bail!("the {} reference server did not start (it said `{}`)", kind.as_str(), first.trim());
    };
    let addr = addr.parse().with_context(|| format!("reference server address `{addr}`"))?;
    Ok(Reference { kind, addr, pid, child })
}

impl Reference {
    /// Closes its standard input, which stops it, and waits; kills it after 5 s.
    pub async fn stop(mut self) {
        drop(self.child.stdin.take());
        if tokio::time::timeout(Duration::from_secs(5), self.child.wait()).await.is_err() {
            let _ = self.child.kill().await;
        }
    }
}

/// `silkgate-reference` beside the running executable.
fn binary() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("locating silkgate-loadgen")?.with_file_name(BINARY);
    if !exe.is_file() {
        bail!(
            "{}: not found; it is built with the load generator (`cargo build --release -p silkgate-loadgen`)",
            exe.display()
        );
    }
    Ok(exe)
}
