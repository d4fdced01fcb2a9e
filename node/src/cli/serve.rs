//! `silkgate serve`: load configuration, policies and key, then bind and answer until
//! SIGTERM or SIGINT, reloading policies when their directory changes or on SIGHUP.
//!
//! Every setting comes from a flag, a `SILKGATE_*` environment variable or the config
//! file (`--config`), in that order of precedence, then a default. Bad configuration
//! exits with code 64 naming the setting, before any port is bound.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use silkgate::authority::{Activator, Authorities};
use silkgate::limits::LimitConfig;
use silkgate::log::GroupCommit;
use silkgate::log::handle::{DEFAULT_COMMIT_DELAY_US, DEFAULT_COMMIT_SIBLINGS};
use silkgate::reload::Watcher;
use silkgate::server::{ConnectionLimits, Options};
use silkgate::service::NodeState;
use silkgate::tls::{Authz, Group, TlsFiles, TlsState};
use silkgate::{authority, keys, loader, server};

use super::{EXIT_INVALID, fail};

/// Exit code for bad configuration (EX_CONFIG-like, the sysexits "usage" code).
pub const EXIT_CONFIG: u8 = 64;

#[derive(clap::Args, Default)]
pub struct Args {
    /// TOML config file; its keys are the flag names with `_` for `-`.
    #[arg(long, env = "SILKGATE_CONFIG")]
    config: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:50051].
    #[arg(long, env = "SILKGATE_LISTEN")]
    listen: Option<String>,
    /// Policy directory [default: policy].
    #[arg(long, env = "SILKGATE_POLICY_DIR")]
    policy_dir: Option<PathBuf>,
    /// Data directory: the signing key and the decision log [default: data].
    #[arg(long, env = "SILKGATE_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Signing key file (PKCS#8 PEM) [default: DATA_DIR/node.key, created if absent].
    #[arg(long, env = "SILKGATE_KEY")]
    key: Option<PathBuf>,
    /// Jurisdictions this node enforces, comma-separated [default: every policy found].
    #[arg(long, env = "SILKGATE_JURISDICTIONS", value_delimiter = ',')]
    jurisdictions: Option<Vec<String>>,
    /// Node id written into decisions and the log origin [default: from the key id].
    #[arg(long, env = "SILKGATE_NODE_ID")]
    node_id: Option<String>,
    /// How long a decision stays valid evidence, in seconds [default: 86400].
    #[arg(long, env = "SILKGATE_DECISION_VALIDITY_SECS")]
    decision_validity_secs: Option<i64>,
    /// Run without the decision log (benchmarks only: decisions are not kept as evidence).
    #[arg(long, env = "SILKGATE_NO_LOG")]
    no_log: Option<bool>,
    /// Longest a decision log group waits for more calls before its sync, in us; 0 syncs
    /// at once [default: 2000].
    #[arg(long, env = "SILKGATE_LOG_COMMIT_DELAY_US")]
    log_commit_delay_us: Option<u64>,
    /// Calls being served at which log groups start to wait [default: 8].
    #[arg(long, env = "SILKGATE_LOG_COMMIT_SIBLINGS")]
    log_commit_siblings: Option<usize>,
    /// Log format: text or json [default: text].
    #[arg(long, env = "SILKGATE_LOG_FORMAT")]
    log_format: Option<String>,
    /// Address for the Prometheus endpoint (GET /metrics) [default: off].
    #[arg(long, env = "SILKGATE_METRICS_LISTEN")]
    metrics_listen: Option<String>,
    /// Serve the browser console at /console/ on the HTTP listener [default: true].
    #[arg(long, env = "SILKGATE_CONSOLE")]
    console: Option<bool>,
    /// Let the console's Try page evaluate requests (no signing, no logging) [default: false].
    #[arg(long, env = "SILKGATE_CONSOLE_TRY")]
    console_try: Option<bool>,
    /// Address of the HTTP listener: /metrics, the log as C2SP tlog-tiles, and the
    /// witness's /add-checkpoint [default: --metrics-listen, else off].
    #[arg(long, env = "SILKGATE_HTTP_LISTEN")]
    http_listen: Option<String>,
    /// Witness configuration (TOML): the logs this node witnesses, the witnesses it
    /// submits its checkpoints to, and the quorum [default: none].
    #[arg(long, env = "SILKGATE_WITNESS_CONFIG")]
    witness_config: Option<PathBuf>,
    /// Least time between two submissions of this node's checkpoints to its witnesses,
    /// in seconds [default: 10].
    #[arg(long, env = "SILKGATE_WITNESS_INTERVAL_SECS")]
    witness_interval_secs: Option<u64>,
    /// How often the policy directory is checked for changes, in ms [default: 500].
    #[arg(long, env = "SILKGATE_RELOAD_INTERVAL_MS")]
    reload_interval_ms: Option<u64>,
    /// Largest request accepted, in bytes [default: 4194304].
    #[arg(long, env = "SILKGATE_MAX_REQUEST_BYTES")]
    max_request_bytes: Option<usize>,
    /// Calls served at once, each counted until its answer is sent; more are refused
    /// with RESOURCE_EXHAUSTED [default: 1024].
    #[arg(long, env = "SILKGATE_MAX_CONCURRENCY")]
    max_concurrency: Option<usize>,
    /// Calls served at once for one client address (an IPv6 client by its /64); 0 is no
    /// limit but --max-concurrency [default: 64].
    #[arg(long, env = "SILKGATE_MAX_CONCURRENCY_PER_CLIENT")]
    max_concurrency_per_client: Option<usize>,
    /// Server time allowed per call, in ms [default: 5000].
    #[arg(long, env = "SILKGATE_REQUEST_TIMEOUT_MS")]
    request_timeout_ms: Option<u64>,
    /// Sustained calls per second per client address; 0 is off [default: 0].
    #[arg(long, env = "SILKGATE_RATE_LIMIT")]
    rate_limit: Option<f64>,
    /// Burst allowed above the rate limit [default: 2 x rate].
    #[arg(long, env = "SILKGATE_RATE_BURST")]
    rate_burst: Option<f64>,
    /// Time to let in-flight calls finish after SIGTERM, in seconds [default: 10].
    #[arg(long, env = "SILKGATE_GRACE_PERIOD_SECS")]
    grace_period_secs: Option<u64>,
    /// Calls open at once on one connection; more are refused until one ends
    /// [default: 256].
    #[arg(long, env = "SILKGATE_MAX_STREAMS_PER_CONNECTION")]
    max_streams_per_connection: Option<u32>,
    /// Time a new connection has to finish its TLS handshake and HTTP/2 preface, in ms
    /// [default: 10000].
    #[arg(long, env = "SILKGATE_HANDSHAKE_TIMEOUT_MS")]
    handshake_timeout_ms: Option<u64>,
    /// Idle time after which a connection is pinged, in seconds; 0 sends no pings
    /// [default: 60].
    #[arg(long, env = "SILKGATE_KEEPALIVE_INTERVAL_SECS")]
    keepalive_interval_secs: Option<u64>,
    /// Time a ping may go unanswered before the connection is closed, in seconds
    /// [default: 20].
    #[arg(long, env = "SILKGATE_KEEPALIVE_TIMEOUT_SECS")]
    keepalive_timeout_secs: Option<u64>,
    /// Age at which a connection is asked to close (the client reconnects), in seconds;
    /// 0 is no limit [default: 3600].
    #[arg(long, env = "SILKGATE_MAX_CONNECTION_AGE_SECS")]
    max_connection_age_secs: Option<u64>,
    /// Time a connection past its age has to finish its calls, in seconds [default: 60].
    #[arg(long, env = "SILKGATE_MAX_CONNECTION_AGE_GRACE_SECS")]
    max_connection_age_grace_secs: Option<u64>,
    /// Largest block of request headers, in bytes [default: 16384].
    #[arg(long, env = "SILKGATE_MAX_HEADER_LIST_BYTES")]
    max_header_list_bytes: Option<u32>,
    /// Connections open at once, in all; one more is closed at once; 0 is no limit
    /// [default: 4096].
    #[arg(long, env = "SILKGATE_MAX_CONNECTIONS")]
    max_connections: Option<usize>,
    /// Connections open at once from one client address (IPv6: its /64); one more is
    /// closed at once; 0 is no limit [default: 128].
    #[arg(long, env = "SILKGATE_MAX_CONNECTIONS_PER_CLIENT")]
    max_connections_per_client: Option<usize>,
    /// Server certificate chain (PEM); with --tls-key, serves TLS. Reloaded on SIGHUP.
    #[arg(long, env = "SILKGATE_TLS_CERT")]
    tls_cert: Option<PathBuf>,
    /// Server private key (PEM).
    #[arg(long, env = "SILKGATE_TLS_KEY")]
    tls_key: Option<PathBuf>,
    /// CA for client certificates; when set, every client must present one (mTLS).
    #[arg(long, env = "SILKGATE_TLS_CLIENT_CA")]
    tls_client_ca: Option<PathBuf>,
    /// Client identities (certificate CN or SAN) allowed to call Evaluate/EvaluateBatch.
    #[arg(long, env = "SILKGATE_TLS_ALLOW_EVALUATION", value_delimiter = ',')]
    tls_allow_evaluation: Option<Vec<String>>,
    /// Client identities allowed to call the DecisionLog service.
    #[arg(long, env = "SILKGATE_TLS_ALLOW_LOG", value_delimiter = ',')]
    tls_allow_log: Option<Vec<String>>,
    /// Client identities allowed to call NodeInfo and reflection.
    #[arg(long, env = "SILKGATE_TLS_ALLOW_ADMIN", value_delimiter = ',')]
    tls_allow_admin: Option<Vec<String>>,
    /// Network roster file (signed DSSE envelope); reloaded when it changes [default: none,
    /// the node works alone].
    #[arg(long, env = "SILKGATE_ROSTER")]
    roster: Option<PathBuf>,
    /// A network governance key trusted to sign rosters (hex, verifier key string or a
    /// file); repeat for each.
    #[arg(long, env = "SILKGATE_NETWORK_KEY", value_delimiter = ',')]
    network_key: Option<Vec<String>>,
    /// Least number of governance signatures a roster needs, whatever it states [default: 1].
    #[arg(long, env = "SILKGATE_NETWORK_THRESHOLD")]
    network_threshold: Option<u32>,
    /// One deadline for a Certify call's fan-out to member nodes, in ms [default: 3000].
    #[arg(long, env = "SILKGATE_CERTIFY_TIMEOUT_MS")]
    certify_timeout_ms: Option<u64>,
    /// CA (PEM) for the TLS certificates of member nodes at https:// endpoints (needed to
    /// call them); with tls_cert and tls_key the gateway presents them as its client
    /// certificate.
    #[arg(long, env = "SILKGATE_NETWORK_TLS_CA")]
    network_tls_ca: Option<PathBuf>,
    /// Client identities allowed to call the Network service (Certify).
    #[arg(long, env = "SILKGATE_TLS_ALLOW_NETWORK", value_delimiter = ',')]
    tls_allow_network: Option<Vec<String>>,
    /// Policy authorities (TOML, outside the policy directory): with it, a policy applies
    /// only with a signed release meeting its jurisdiction's threshold [default: none].
    #[arg(long, env = "SILKGATE_POLICY_AUTHORITIES")]
    policy_authorities: Option<PathBuf>,
    /// Directory of signed waivers (`*.waiver`), reloaded with the policies; needs
    /// --policy-authorities [default: none].
    #[arg(long, env = "SILKGATE_WAIVER_DIR")]
    waiver_dir: Option<PathBuf>,
}

/// The config file: the same settings, all optional.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<String>,
    policy_dir: Option<PathBuf>,
    data_dir: Option<PathBuf>,
    key: Option<PathBuf>,
    jurisdictions: Option<Vec<String>>,
    node_id: Option<String>,
    decision_validity_secs: Option<i64>,
    no_log: Option<bool>,
    log_commit_delay_us: Option<u64>,
    log_commit_siblings: Option<usize>,
    log_format: Option<String>,
    metrics_listen: Option<String>,
    console: Option<bool>,
    console_try: Option<bool>,
    http_listen: Option<String>,
    witness_config: Option<PathBuf>,
    witness_interval_secs: Option<u64>,
    reload_interval_ms: Option<u64>,
    max_request_bytes: Option<usize>,
    max_concurrency: Option<usize>,
    max_concurrency_per_client: Option<usize>,
    request_timeout_ms: Option<u64>,
    rate_limit: Option<f64>,
    rate_burst: Option<f64>,
    grace_period_secs: Option<u64>,
    max_streams_per_connection: Option<u32>,
    handshake_timeout_ms: Option<u64>,
    keepalive_interval_secs: Option<u64>,
    keepalive_timeout_secs: Option<u64>,
    max_connection_age_secs: Option<u64>,
    max_connection_age_grace_secs: Option<u64>,
    max_header_list_bytes: Option<u32>,
    max_connections: Option<usize>,
    max_connections_per_client: Option<usize>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    tls_client_ca: Option<PathBuf>,
    tls_allow_evaluation: Option<Vec<String>>,
    tls_allow_log: Option<Vec<String>>,
    tls_allow_admin: Option<Vec<String>>,
    roster: Option<PathBuf>,
    network_key: Option<Vec<String>>,
    network_threshold: Option<u32>,
    certify_timeout_ms: Option<u64>,
    network_tls_ca: Option<PathBuf>,
    tls_allow_network: Option<Vec<String>>,
    policy_authorities: Option<PathBuf>,
    waiver_dir: Option<PathBuf>,
}

/// Settings after precedence and validation.
struct Settings {
    listen: SocketAddr,
    policy_dir: PathBuf,
    data_dir: PathBuf,
    key: PathBuf,
    jurisdictions: Option<Vec<String>>,
    node_id: Option<String>,
    validity_secs: i64,
    no_log: bool,
    commit: GroupCommit,
    log_format: String,
    /// The console's options, when it is served on the HTTP listener.
    console: Option<silkgate::console::Options>,
    /// The HTTP listener (`--http-listen`, else `--metrics-listen`).
    http_listen: Option<SocketAddr>,
    witness: Option<silkgate::witness::WitnessConfig>,
    witness_interval: Duration,
    reload_interval: Duration,
    options: Options,
    grace: Duration,
    network: NetworkSettings,
    authorities: Option<Arc<Authorities>>,
    waiver_dir: Option<PathBuf>,
}

/// The network settings: the roster file, the trust in governance keys, peer calls.
struct NetworkSettings {
    roster: Option<PathBuf>,
    trust: silkgate::network::Trust,
    peers: silkgate::network::PeerConfig,
}

/// Reads the network settings. A roster needs at least one governance key; TLS for
/// peer calls uses the node's own certificate and key as its client identity.
fn network_settings(a: &mut Args, f: &mut FileConfig) -> Result<NetworkSettings, String> {
    let roster = a.roster.take().or(f.roster.take());
    let mut keys = Vec::new();
    for k in a.network_key.take().or(f.network_key.take()).unwrap_or_default() {
        keys.push(super::key::PublicKey::parse(&k).map_err(|e| format!("network_key: {e}"))?.key);
    }
    if roster.is_some() && keys.is_empty() {
        return Err("network_key: at least one governance key is needed to trust a roster".into());
    }
    let threshold = a.network_threshold.or(f.network_threshold).unwrap_or(1);
    if threshold == 0 || threshold as usize > keys.len().max(1) {
        return Err(format!(
            "network_threshold: must be between 1 and the {} network keys, got {threshold}",
            keys.len()
        ));
    }
    let timeout = bounded("certify_timeout_ms", a.certify_timeout_ms, f.certify_timeout_ms, 3000, 10..=60_000)?;
    let ca = a.network_tls_ca.take().or(f.network_tls_ca.take());
    let tls = match ca {
        None => None,
        Some(ca) => {
            let pem = std::fs::read(&ca).map_err(|e| format!("network_tls_ca: {}: {e}", ca.display()))?;
            let mut tls =
                tonic::transport::ClientTlsConfig::new().ca_certificate(tonic::transport::Certificate::from_pem(pem));
            if let (Some(cert), Some(key)) =
                (a.tls_cert.clone().or(f.tls_cert.clone()), a.tls_key.clone().or(f.tls_key.clone()))
            {
                let cert = std::fs::read(&cert).map_err(|e| format!("tls_cert: {}: {e}", cert.display()))?;
                let key = std::fs::read(&key).map_err(|e| format!("tls_key: {}: {e}", key.display()))?;
                tls = tls.identity(tonic::transport::Identity::from_pem(cert, key));
            }
            Some(tls)
        }
    };
    Ok(NetworkSettings {
        roster,
        trust: silkgate::network::Trust { keys, threshold },
        peers: silkgate::network::PeerConfig { deadline: Duration::from_millis(timeout), tls },
    })
}

fn addr(name: &str, s: &str) -> Result<SocketAddr, String> {
    s.parse().map_err(|_| format!("{name}: `{s}` is not an address like 127.0.0.1:50051"))
}

fn settings(mut a: Args) -> Result<Settings, String> {
    let mut f: FileConfig = match &a.config {
        None => FileConfig::default(),
        Some(p) => {
            let text = std::fs::read_to_string(p).map_err(|e| format!("config: {}: {e}", p.display()))?;
            toml::from_str(&text).map_err(|e| format!("config: {}: {e}", p.display()))?
        }
    };
    let connections = connection_limits(&a, &f)?;
    let network = network_settings(&mut a, &mut f)?;
    let listen = addr("listen", &a.listen.or(f.listen).unwrap_or_else(|| "127.0.0.1:50051".into()))?;
    let data_dir = a.data_dir.or(f.data_dir).unwrap_or_else(|| PathBuf::from("data"));
    let key = a.key.or(f.key).unwrap_or_else(|| data_dir.join("node.key"));
    let validity_secs = a.decision_validity_secs.or(f.decision_validity_secs).unwrap_or(86_400);
    if validity_secs <= 0 {
        return Err(format!("decision_validity_secs: must be positive, got {validity_secs}"));
    }
    let log_format = a.log_format.or(f.log_format).unwrap_or_else(|| "text".into());
    if log_format != "text" && log_format != "json" {
        return Err(format!("log_format: `{log_format}` is not `text` or `json`"));
    }
    let metrics_listen = a.metrics_listen.or(f.metrics_listen).map(|m| addr("metrics_listen", &m)).transpose()?;
    let console_options = silkgate::console::Options { try_enabled: a.console_try.or(f.console_try).unwrap_or(false) };
    let console = a.console.or(f.console).unwrap_or(true);
    let http_listen = a.http_listen.or(f.http_listen).map(|m| addr("http_listen", &m)).transpose()?;
    if let (Some(h), Some(m)) = (http_listen, metrics_listen)
        && h != m
    {
        return Err(format!("metrics_listen: {m} differs from http_listen {h}; one listener serves both, give one"));
    }
    let http_listen = http_listen.or(metrics_listen);
    let witness = match a.witness_config.or(f.witness_config) {
        None => None,
        Some(p) => Some(silkgate::witness::WitnessConfig::load(&p).map_err(|e| format!("witness_config: {e}"))?),
    };
    if witness.is_some() && http_listen.is_none() {
        return Err("witness_config: the witness answers on the HTTP listener; set http_listen".into());
    }
    let witness_interval =
        bounded("witness_interval_secs", a.witness_interval_secs, f.witness_interval_secs, 10, 1..=86_400)?;
    let reload_ms = a.reload_interval_ms.or(f.reload_interval_ms).unwrap_or(500);
    if !(50..=60_000).contains(&reload_ms) {
        return Err(format!("reload_interval_ms: must be between 50 and 60000, got {reload_ms}"));
    }
    let max_request_bytes = a.max_request_bytes.or(f.max_request_bytes).unwrap_or(server::MAX_MESSAGE_BYTES);
    if !(1024..=64 << 20).contains(&max_request_bytes) {
        return Err(format!("max_request_bytes: must be between 1024 and 67108864, got {max_request_bytes}"));
    }
    let max_concurrency = a.max_concurrency.or(f.max_concurrency).unwrap_or(1024);
    if max_concurrency == 0 {
        return Err("max_concurrency: must be at least 1".into());
    }
    let per_client = bounded(
        "max_concurrency_per_client",
        a.max_concurrency_per_client,
        f.max_concurrency_per_client,
        silkgate::limits::DEFAULT_MAX_CONCURRENCY_PER_CLIENT,
        0..=1 << 20,
    )?;
    let timeout_ms = a.request_timeout_ms.or(f.request_timeout_ms).unwrap_or(5000);
    if timeout_ms == 0 {
        return Err("request_timeout_ms: must be at least 1".into());
    }
    let rate = a.rate_limit.or(f.rate_limit).unwrap_or(0.0);
    if !rate.is_finite() || rate < 0.0 {
        return Err(format!("rate_limit: must be 0 (off) or positive, got {rate}"));
    }
    let burst = a.rate_burst.or(f.rate_burst).unwrap_or(2.0 * rate);
    if !burst.is_finite() || burst < 0.0 {
        return Err(format!("rate_burst: must not be negative, got {burst}"));
    }
    let delay_us = a.log_commit_delay_us.or(f.log_commit_delay_us).unwrap_or(DEFAULT_COMMIT_DELAY_US);
    if delay_us > 100_000 {
        return Err(format!("log_commit_delay_us: must be between 0 and 100000, got {delay_us}"));
    }
    let siblings = a.log_commit_siblings.or(f.log_commit_siblings).unwrap_or(DEFAULT_COMMIT_SIBLINGS);
    if siblings < 2 {
        return Err(format!("log_commit_siblings: must be at least 2, got {siblings}"));
    }
    let jurisdictions = a.jurisdictions.or(f.jurisdictions);
    if let Some(js) = &jurisdictions
        && let Some(bad) = js.iter().find(|j| j.len() != 2 || !j.bytes().all(|b| b.is_ascii_uppercase()))
    {
        return Err(format!("jurisdictions: `{bad}` is not a two-letter upper-case code"));
    }
    let tls = match (a.tls_cert.or(f.tls_cert), a.tls_key.or(f.tls_key)) {
        (None, None) => None,
        (Some(cert), Some(key)) => {
            let files = TlsFiles { cert, key, client_ca: a.tls_client_ca.or(f.tls_client_ca) };
            Some(Arc::new(TlsState::load(files).map_err(|e| e.to_string())?))
        }
        (Some(_), None) => return Err("tls_key: required with tls_cert".into()),
        (None, Some(_)) => return Err("tls_cert: required with tls_key".into()),
    };
    let mut authz = Authz::default();
    for (group, list, name) in [
        (Group::Evaluation, a.tls_allow_evaluation.or(f.tls_allow_evaluation), "tls_allow_evaluation"),
        (Group::Log, a.tls_allow_log.or(f.tls_allow_log), "tls_allow_log"),
        (Group::Admin, a.tls_allow_admin.or(f.tls_allow_admin), "tls_allow_admin"),
        (Group::Network, a.tls_allow_network.or(f.tls_allow_network), "tls_allow_network"),
    ] {
        if let Some(list) = list {
            if tls.as_ref().is_none_or(|t| t.files.client_ca.is_none()) {
                return Err(format!(
                    "{name}: client identities need mutual TLS; set tls_cert, tls_key and tls_client_ca"
                ));
            }
            authz.allow.insert(group, list);
        }
    }
    let node_id = a.node_id.or(f.node_id);
    if let Some(id) = &node_id
        && !silkgate::log::valid_node_id(id)
    {
        return Err(format!("node_id: `{id}` must be 1 to 64 characters of A-Z, a-z, 0-9, `-`, `_` and `.`"));
    }
    let policy_dir = a.policy_dir.or(f.policy_dir).unwrap_or_else(|| PathBuf::from("policy"));
    let authorities = match a.policy_authorities.or(f.policy_authorities) {
        None => None,
        Some(path) => {
            let auth = Authorities::load(&path).map_err(|e| format!("policy_authorities: {e}"))?;
            // Whoever can write the policies must not also choose who signs them.
            if let (Ok(file), Ok(dir)) = (path.canonicalize(), policy_dir.canonicalize())
                && file.starts_with(&dir)
            {
                return Err(format!(
                    "policy_authorities: {} is inside the policy directory {}; keep it outside",
                    path.display(),
                    policy_dir.display()
                ));
            }
            Some(Arc::new(auth))
        }
    };
    let waiver_dir = a.waiver_dir.or(f.waiver_dir);
    if waiver_dir.is_some() && authorities.is_none() {
        return Err("waiver_dir: waivers are checked with the policy authorities; set policy_authorities".into());
    }
    Ok(Settings {
        listen,
        policy_dir,
        data_dir,
        key,
        jurisdictions,
        node_id,
        validity_secs,
        no_log: a.no_log.or(f.no_log).unwrap_or(false),
        commit: GroupCommit { delay: Duration::from_micros(delay_us), siblings, ..GroupCommit::default() },
        log_format,
        console: console.then_some(console_options),
        http_listen,
        witness,
        witness_interval: Duration::from_secs(witness_interval),
        reload_interval: Duration::from_millis(reload_ms),
        options: Options {
            max_request_bytes,
            limits: LimitConfig {
                max_concurrency,
                max_concurrency_per_client: per_client,
                request_timeout: Duration::from_millis(timeout_ms),
                rate_per_client: rate,
                rate_burst: burst,
            },
            connections,
            tls,
            authz,
        },
        grace: Duration::from_secs(a.grace_period_secs.or(f.grace_period_secs).unwrap_or(10)),
        network,
        authorities,
        waiver_dir,
    })
}

/// A number of `name`, from the flag or else the config file, or `default`, which must
/// lie in `range`.
fn bounded<T>(
    name: &str,
    flag: Option<T>,
    file: Option<T>,
    default: T,
    range: std::ops::RangeInclusive<T>,
) -> Result<T, String>
where
    T: PartialOrd + std::fmt::Display + Copy,
{
    let v = flag.or(file).unwrap_or(default);
    if !range.contains(&v) {
        return Err(format!("{name}: must be between {} and {}, got {v}", range.start(), range.end()));
    }
    Ok(v)
}

/// The per-connection bounds; see [`silkgate::server::ConnectionLimits`].
fn connection_limits(a: &Args, f: &FileConfig) -> Result<ConnectionLimits, String> {
    let d = ConnectionLimits::default();
    let secs = |o: Option<Duration>| o.map_or(0, |d| d.as_secs());
    let max_streams = bounded(
        "max_streams_per_connection",
        a.max_streams_per_connection,
        f.max_streams_per_connection,
        d.max_streams,
        1..=65_535,
    )?;
    let handshake_ms = bounded(
        "handshake_timeout_ms",
        a.handshake_timeout_ms,
        f.handshake_timeout_ms,
        d.handshake_timeout.as_millis() as u64,
        10..=300_000,
    )?;
    let interval = bounded(
        "keepalive_interval_secs",
        a.keepalive_interval_secs,
        f.keepalive_interval_secs,
        secs(d.keepalive_interval),
        0..=86_400,
    )?;
    let timeout = bounded(
        "keepalive_timeout_secs",
        a.keepalive_timeout_secs,
        f.keepalive_timeout_secs,
        d.keepalive_timeout.as_secs(),
        1..=3600,
    )?;
    let age = bounded(
        "max_connection_age_secs",
        a.max_connection_age_secs,
        f.max_connection_age_secs,
        secs(d.max_age),
        0..=31_536_000,
    )?;
    let grace = bounded(
        "max_connection_age_grace_secs",
        a.max_connection_age_grace_secs,
        f.max_connection_age_grace_secs,
        d.max_age_grace.as_secs(),
        0..=86_400,
    )?;
    let header_bytes = bounded(
        "max_header_list_bytes",
        a.max_header_list_bytes,
        f.max_header_list_bytes,
        d.max_header_list_bytes,
        1024..=1 << 20,
    )?;
    let max_connections =
        bounded("max_connections", a.max_connections, f.max_connections, d.max_connections, 0..=1 << 20)?;
    let max_connections_per_client = bounded(
        "max_connections_per_client",
        a.max_connections_per_client,
        f.max_connections_per_client,
        d.max_connections_per_client,
        0..=1 << 20,
    )?;
    Ok(ConnectionLimits {
        max_streams,
        handshake_timeout: Duration::from_millis(handshake_ms),
        keepalive_interval: (interval > 0).then(|| Duration::from_secs(interval)),
        keepalive_timeout: Duration::from_secs(timeout),
        max_age: (age > 0).then(|| Duration::from_secs(age)),
        max_age_grace: Duration::from_secs(grace),
        max_header_list_bytes: header_bytes,
        max_connections,
        max_connections_per_client,
    })
}

/// Tracing output goes to stderr through [`silkgate::tracebuf`]: a line costs a lock and a copy on
/// the request path; the lines are written out every 100 ms and at shutdown.
fn init_tracing(format: &str) -> silkgate::tracebuf::Guard {
    let (writer, guard) = silkgate::tracebuf::TraceBuffer::start();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colour codes only for a person at a terminal; they cost formatting time per event.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_ansi(ansi).with_writer(writer);
    let _ = if format == "json" { builder.json().flatten_event(true).try_init() } else { builder.try_init() };
    guard
}

pub fn run(args: Args) -> u8 {
    let started = std::time::Instant::now();
    let s = match settings(args) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: bad configuration: {e}");
            return EXIT_CONFIG;
        }
    };
    // Flushes buffered log lines when `run` returns.
    let _log_guard = init_tracing(&s.log_format);
    // Everything is loaded and checked before a port is bound.
    match &s.authorities {
        Some(a) => tracing::info!(
            file = %a.file.display(),
            jurisdictions = %a.by_jurisdiction.keys().cloned().collect::<Vec<_>>().join(","),
            "policy authorities configured: a policy applies only with a valid signed release"
        ),
        None => tracing::warn!(
            "no policy authorities configured (--policy-authorities): any valid policy in the directory applies, unsigned"
        ),
    }
    let prepared = match loader::load_dir(&s.policy_dir, s.jurisdictions.as_deref())
        .and_then(|set| authority::prepare(set, None, s.authorities.as_deref(), s.waiver_dir.as_deref()))
    {
        Ok(p) => p,
        Err(e) => {
            eprintln!("{e}");
            return EXIT_INVALID;
        }
    };
    // The roster, like the policies, is loaded and checked before anything is opened.
    let roster = match &s.network.roster {
        None => None,
        Some(path) => {
            let checked = silkgate::network::Network::default();
            checked.configure(s.network.trust.clone(), s.network.peers.clone());
            match silkgate::network::read_file(path).and_then(|b| checked.offer(&b).map(|_| b)) {
                Ok(b) => Some(b),
                Err(e) => {
                    eprintln!("error: bad configuration: roster: {}: {e}", path.display());
                    return EXIT_CONFIG;
                }
            }
        }
    };
    for w in &prepared.warnings {
        tracing::warn!(at = %w.file, problem = %w.message, "waiver ignored");
    }
    // A log exists only with the key that signed it: a missing key is an error then,
    // not a reason to make a new one that could not extend the log.
    let log_origin = s.data_dir.join("log").join("origin");
    if !s.no_log && log_origin.exists() && !s.key.exists() {
        return fail(format!(
            "key file {}: missing, while the decision log {} was signed with it; restore the key, or seal the log (`silkgate log seal`) before starting with a new key",
            s.key.display(),
            log_origin.parent().unwrap_or(&log_origin).display()
        ));
    }
    let key = match keys::load_or_create(&s.key) {
        Ok(k) => k,
        Err(e) => return fail(e),
    };
    if key.created {
        tracing::info!(key.id = %key.signer.key_id(), key.path = %s.key.display(), "created a new signing key");
    }
    let node_id = s.node_id.clone().unwrap_or_else(|| format!("node-{}", &key.signer.key_id()[..12]));
    let signer = Arc::new(key.signer);
    // The tuned runtime (no LIFO slot), shared with the load generator's reference servers.
    let rt = match server::runtime().build() {
        Ok(rt) => rt,
        Err(e) => return fail(e),
    };
    // The decision log answers its callers through a task on this runtime.
    let _in_runtime = rt.enter();
    let log = if s.no_log {
        tracing::warn!("running without a decision log: decisions are not kept as evidence");
        None
    } else {
        match silkgate::log::open_with(&s.data_dir, &node_id, signer.clone(), s.commit) {
            Ok(l) => Some(l),
            Err(e) => return fail(e),
        }
    };
    // Every policy's activation is in the log before the first decision under it.
    let logged = match &log {
        None => None,
        Some(log) => {
            let a = Activator { node_id: &node_id, signer: &signer, log };
            match rt.block_on(prepared.log_activations(None, &a, silkgate_core::time::UnixTime::now(), &s.policy_dir)) {
                Ok(l) => Some(l),
                Err(e) => return fail(e),
            }
        }
    };
    let (policies, releases) = prepared.finish(None, logged);
    for p in policies.policies.values() {
        tracing::info!(
            jurisdiction = %p.jurisdiction,
            policy.id = %p.id,
            policy.version = %p.version,
            policy.digest = %p.digest_hex,
            rules = p.rules.len(),
            activation_index = policies.activations.get(&p.jurisdiction),
            release.signers = releases.get(&p.jurisdiction).map(|r| r.signers.join(",")),
            "policy loaded"
        );
    }
    let mut state = NodeState::new(node_id, policies, signer, key.valid_from, s.validity_secs, log);
    state.authorities = s.authorities.clone();
    state.waiver_dir = s.waiver_dir.clone();
    state.reload.lock().unwrap_or_else(|e| e.into_inner()).releases = releases;
    let state = Arc::new(state);
    state.network.configure(s.network.trust.clone(), s.network.peers.clone());
    if let Some(bytes) = roster {
        // Checked above; offered again to the node's own state.
        if let Err(e) = state.network.offer(&bytes) {
            return fail(format!("roster: {e}"));
        }
        let info = state.network.info();
        tracing::info!(
            network.id = %info.network_id,
            roster.version = info.version,
            roster.digest = %hex::encode(&info.sha256),
            "network roster loaded"
        );
    }
    let code = rt.block_on(serve(s, state.clone(), started));
    // Drained: the log writer finishes what is queued, its thread is joined, and the
    // final checkpoint is on disk before the process exits.
    if let Some(log) = &state.log {
        match log.close() {
            Ok(()) => tracing::info!(log_size = log.size(), "decision log closed"),
            Err(e) => return fail(format!("closing the decision log: {e}")),
        }
    }
    code
}

async fn serve(s: Settings, state: Arc<NodeState>, started: std::time::Instant) -> u8 {
    let listener = match tokio::net::TcpListener::bind(s.listen).await {
        Ok(l) => l,
        Err(e) => return fail(format!("bind {}: {e}", s.listen)),
    };
    if let Some(w) = &s.witness
        && !w.logs.is_empty()
    {
        let name = silkgate::witness::witness_name(&state.node_id);
        let dir = s.data_dir.join("witness");
        match silkgate::witness::Witness::open(&dir, name, state.signer.clone(), &w.logs, state.metrics.clone()) {
            Ok(w) => {
                tracing::info!(witness.name = %w.name(), witness.key = %w.vkey(), logs = s.witness.as_ref().map_or(0, |c| c.logs.len()), "witness ready");
                let _ = state.witness.set(Arc::new(w));
            }
            Err(e) => return fail(format!("witness state: {e}")),
        }
    }
    if let Some(m) = s.http_listen {
        match tokio::net::TcpListener::bind(m).await {
            Ok(l) => {
                tracing::info!(listen = %m, "http listener (metrics, tiles, witness)");
                let console = s.console.map(|options| silkgate::console::router_with(state.clone(), options));
                let http = Arc::new(silkgate::http::Http {
                    node: state.clone(),
                    witness: state.witness.get().cloned(),
                    console,
                });
                tokio::spawn(silkgate::http::serve(l, http));
            }
            Err(e) => return fail(format!("bind http {m}: {e}")),
        }
    }
    if let (Some(w), Some(log)) = (&s.witness, &state.log)
        && !w.witnesses.is_empty()
    {
        tokio::spawn(silkgate::witness::collect::run(log.clone(), w.clone(), s.witness_interval));
    }
    let (force_tx, force_rx) = tokio::sync::mpsc::channel(4);
    let watcher = Watcher {
        dir: s.policy_dir.clone(),
        only: s.jurisdictions.clone(),
        state: state.clone(),
        status: state.reload.clone(),
    };
    tokio::spawn(watcher.run(s.reload_interval, force_rx));
    let (roster_tx, roster_rx) = tokio::sync::mpsc::channel(4);
    if let Some(path) = s.network.roster.clone() {
        let watcher = silkgate::network::Watcher { path, network: state.network.clone() };
        tokio::spawn(watcher.run(s.reload_interval, roster_rx));
    }
    let tls = s.options.tls.clone();
    tokio::spawn(async move {
        let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) else { return };
        while hup.recv().await.is_some() {
            tracing::info!("SIGHUP: reloading policies and certificates");
            let _ = force_tx.send(()).await;
            let _ = roster_tx.try_send(());
            if let Some(tls) = &tls {
                match tls.reload() {
                    Ok(()) => tracing::info!("TLS certificates reloaded"),
                    Err(e) => tracing::error!(error = %e, "TLS reload failed; the previous certificates stay"),
                }
            }
        }
    });
    let addr = listener.local_addr().map(|a| a.to_string()).unwrap_or_default();
    tracing::info!(
        listen = %addr,
        node.id = %state.node_id,
        key.id = %state.signer.key_id(),
        startup_ms = started.elapsed().as_millis() as u64,
        "silkgate serving"
    );
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let grace = s.grace;
    let server = server::run_with(listener, state, s.options, async move {
        shutdown_signal().await;
        let _ = stop_tx.send(());
    });
    tokio::pin!(server);
    let result = tokio::select! {
        r = &mut server => r,
        _ = async {
            let _ = stop_rx.await;
            tokio::time::sleep(grace).await;
        } => {
            tracing::warn!(grace_secs = grace.as_secs(), "grace period over; stopping with calls in flight");
            Ok(())
        }
    };
    match result {
        Ok(()) => {
            tracing::info!("stopped");
            0
        }
        Err(e) => fail(e),
    }
}

async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        _ = term => {},
    }
    tracing::info!("shutdown signal received, draining in-flight calls");
}
