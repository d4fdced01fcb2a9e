//! The network roster as a node holds it: the governance keys it trusts (from its own
//! configuration), the roster in force, and the watcher that offers it new versions.
//!
//! Trust model: a roster proves nothing about itself. The keys that may sign one, and
//! the least number of signatures, are the node's own settings (`--network-key`,
//! `--network-threshold`); a roster must carry signatures by at least the higher of that
//! number and its own `threshold` from keys that are both trusted here and listed in it.
//! A roster in force is replaced only by a valid one of the same network and a higher
//! version (no rollback; the same version with other content is refused too). Anything
//! refused leaves the roster in force (last-known-good) and is reported in `NodeInfo`.
//!
//! `certify` answers the `Network` service: a gateway's fan-out to every jurisdiction's
//! member nodes.

pub mod certify;
pub mod source;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use ed25519_dalek::VerifyingKey;
use silkgate_verify::roster::{self, VerifiedRoster};
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};

/// What the node trusts to sign rosters.
#[derive(Clone, Debug, Default)]
pub struct Trust {
    pub keys: Vec<VerifyingKey>,
    /// Least number of signatures, whatever the roster states.
    pub threshold: u32,
}

/// How the gateway calls other member nodes.
#[derive(Clone, Debug)]
pub struct PeerConfig {
    /// One deadline for a whole Certify fan-out.
    pub deadline: Duration,
    /// TLS (and the client identity for mTLS) for `https://` endpoints.
    pub tls: Option<ClientTlsConfig>,
}

impl Default for PeerConfig {
    fn default() -> Self {
        PeerConfig { deadline: Duration::from_millis(3000), tls: None }
    }
}

/// What NodeInfo reports about the roster.
#[derive(Clone, Debug, Default)]
pub struct RosterInfo {
    pub network_id: String,
    pub version: u64,
    pub sha256: Vec<u8>,
    pub error: String,
}

/// What happened to a roster offered to the node.
#[derive(Debug, PartialEq, Eq)]
pub enum Offer {
    Accepted,
    /// The same roster as the one in force.
    Unchanged,
}

/// The node's view of the network. Without a roster, the node works alone.
#[derive(Default)]
pub struct Network {
    trust: RwLock<Trust>,
    peers: RwLock<PeerConfig>,
    roster: ArcSwapOption<VerifiedRoster>,
    error: Mutex<String>,
    channels: Mutex<HashMap<String, Channel>>,
    /// When a member node last failed to answer, so the next fan-out tries it last.
    failed: Mutex<HashMap<String, Instant>>,
}

/// How long a node that failed is tried after the others of its jurisdiction.
const FAILED_FOR: Duration = Duration::from_secs(30);

impl Network {
    pub fn configure(&self, trust: Trust, peers: PeerConfig) {
        *self.trust.write().unwrap_or_else(|e| e.into_inner()) = trust;
        *self.peers.write().unwrap_or_else(|e| e.into_inner()) = peers;
        self.channels.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }

    pub fn peers(&self) -> PeerConfig {
        self.peers.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The roster in force, if any.
    pub fn roster(&self) -> Option<Arc<VerifiedRoster>> {
        self.roster.load_full()
    }

    pub fn info(&self) -> RosterInfo {
        let error = self.error.lock().unwrap_or_else(|e| e.into_inner()).clone();
        match self.roster() {
            None => RosterInfo { error, ..RosterInfo::default() },
            Some(r) => RosterInfo {
                network_id: r.roster.network_id.clone(),
                version: r.roster.version,
                sha256: r.digest.to_vec(),
                error,
            },
        }
    }

    /// Offers a roster envelope (DSSE JSON or protobuf). It takes effect only when its
    /// signatures meet the threshold, its content is valid, and it does not roll back the
    /// roster in force; otherwise the error is kept for NodeInfo and nothing changes.
    pub fn offer(&self, bytes: &[u8]) -> Result<Offer, String> {
        let result = self.check(bytes);
        let mut error = self.error.lock().unwrap_or_else(|e| e.into_inner());
        match result {
            Ok(None) => {
                error.clear();
                Ok(Offer::Unchanged)
            }
            Ok(Some(v)) => {
                error.clear();
                self.roster.store(Some(Arc::new(v)));
                Ok(Offer::Accepted)
            }
            Err(e) => {
                *error = e.clone();
                Err(e)
            }
        }
    }

    fn check(&self, bytes: &[u8]) -> Result<Option<VerifiedRoster>, String> {
        let env = roster::parse_envelope(bytes)?;
        let trust = self.trust.read().unwrap_or_else(|e| e.into_inner()).clone();
        if trust.keys.is_empty() {
            return Err("no network governance key is configured (network_key)".into());
        }
        let v = roster::verify(&env, &trust.keys, trust.threshold).map_err(|e| e.to_string())?;
        let Some(current) = self.roster() else { return Ok(Some(v)) };
        let (new, cur) = (&v.roster, &current.roster);
        if new.network_id != cur.network_id {
            return Err(format!(
                "roster is for network `{}`, the roster in force for `{}`",
                new.network_id, cur.network_id
            ));
        }
        if new.version < cur.version {
            return Err(format!(
                "version {} is lower than version {} in force (no rollback)",
                new.version, cur.version
            ));
        }
        if v.digest == current.digest {
            return Ok(None);
        }
        if new.version == cur.version {
            return Err(format!(
                "version {} is already in force with other content (digest {}); a changed roster needs a higher version",
                new.version,
                hex::encode(current.digest)
            ));
        }
        Ok(Some(v))
    }

    /// A channel to a member node's endpoint, made once and kept (it reconnects by
    /// itself). Only endpoints read from the roster reach here.
    pub fn channel(&self, url: &str) -> Result<Channel, String> {
        let mut channels = self.channels.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = channels.get(url) {
            return Ok(c.clone());
        }
        let peers = self.peers();
        let mut ep = Endpoint::from_shared(url.to_string())
            .map_err(|e| format!("endpoint `{url}`: {e}"))?
            .connect_timeout(peers.deadline)
            .tcp_nodelay(true);
        if url.starts_with("https://") {
            let tls = peers.tls.clone().ok_or("calling an https:// member node needs network_tls_ca")?;
            ep = ep.tls_config(tls).map_err(|e| format!("endpoint `{url}`: tls: {e}"))?;
        }
        let channel = ep.connect_lazy();
        // Bounded by the endpoints of the rosters seen; a roster holds at most 1000 nodes.
        if channels.len() >= 4 * roster::MAX_NODES {
            channels.clear();
        }
        channels.insert(url.to_string(), channel.clone());
        Ok(channel)
    }

    pub fn mark_failed(&self, node_id: &str) {
        self.failed.lock().unwrap_or_else(|e| e.into_inner()).insert(node_id.to_string(), Instant::now());
    }

    pub fn mark_ok(&self, node_id: &str) {
        self.failed.lock().unwrap_or_else(|e| e.into_inner()).remove(node_id);
    }

    /// True when the node failed within the last [`FAILED_FOR`].
    pub fn recently_failed(&self, node_id: &str) -> bool {
        self.failed.lock().unwrap_or_else(|e| e.into_inner()).get(node_id).is_some_and(|t| t.elapsed() < FAILED_FOR)
    }
}

/// Largest roster file read.
const MAX_FILE_BYTES: u64 = 2 * roster::MAX_ROSTER_BYTES as u64;

/// Reads a roster file, bounded. The error does not repeat the path.
pub fn read_file(path: &Path) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let f = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let mut bytes = Vec::new();
    f.take(MAX_FILE_BYTES + 1).read_to_end(&mut bytes).map_err(|e| e.to_string())?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(format!("larger than {MAX_FILE_BYTES} bytes"));
    }
    Ok(bytes)
}

/// Watches the roster file: every `interval`, and when `force` receives (SIGHUP), a
/// changed file is offered to the network state. Errors are logged and leave the roster
/// in force.
pub struct Watcher {
    pub path: PathBuf,
    pub network: Arc<Network>,
}

impl Watcher {
    pub async fn run(self, interval: Duration, force: tokio::sync::mpsc::Receiver<()>) {
        // The first look offers the file as it is: the roster in force already (Unchanged)
        // when the node started with it.
        let mut last: Option<Vec<u8>> = None;
        let mut force = Some(force);
        loop {
            let forced = async {
                match &mut force {
                    Some(f) => f.recv().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                r = forced => if r.is_none() { force = None; },
            }
            let path = self.path.clone();
            let Ok(read) = tokio::task::spawn_blocking(move || read_file(&path)).await else { continue };
            match read {
                Err(e) => {
                    if last.is_some() {
                        tracing::warn!(error = %e, path = %self.path.display(), "network roster unreadable; the roster in force stays");
                    }
                    last = None;
                }
                Ok(bytes) => {
                    if last.as_deref() == Some(bytes.as_slice()) {
                        continue;
                    }
                    match self.network.offer(&bytes) {
                        Ok(Offer::Accepted) => {
                            let info = self.network.info();
                            tracing::info!(
                                network.id = %info.network_id,
                                roster.version = info.version,
                                roster.digest = %hex::encode(&info.sha256),
                                "network roster loaded"
                            );
                        }
                        Ok(Offer::Unchanged) => {}
                        Err(e) => {
                            tracing::error!(error = %e, path = %self.path.display(), "network roster refused; the roster in force stays")
                        }
                    }
                    last = Some(bytes);
                }
            }
        }
    }
}
