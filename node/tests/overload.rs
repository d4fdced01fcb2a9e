//! Overload against the real server: a client that reads none of its answers holds at
//! most its share of the call permits (`--max-concurrency-per-client`), and the node
//! goes on serving other clients.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use silkgate::limits::LimitConfig;
use silkgate::proto::compliance_client::ComplianceClient;
use silkgate::server::Options;
use silkgate::service::NodeState;
use tonic::Code;
use tonic::transport::{Channel, Endpoint};

/// Starts the node in this process on 127.0.0.1, with a log in `dir`.
async fn start(dir: &std::path::Path, options: Options) -> (std::net::SocketAddr, Arc<NodeState>) {
    common::start_in_process(dir, common::POLICY, "overload", options).await
}

/// A connection from `ip` (any 127.x.y.z is this host); with a stream window of 0 it can
/// be sent no answer.
async fn connect_from(addr: std::net::SocketAddr, ip: &str, window: Option<u32>) -> Channel {
    Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .local_address(Some(ip.parse().unwrap()))
        .initial_stream_window_size(window)
        .connect()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_client_that_reads_nothing_holds_only_its_share_of_the_permits() {
    let dir = tempfile::tempdir().unwrap();
    let limits = LimitConfig { max_concurrency: 4, max_concurrency_per_client: 2, ..Default::default() };
    let (addr, state) = start(dir.path(), Options { limits, ..Default::default() }).await;

    // Two calls whose answers cannot be sent: decided and logged, then stuck.
    let stalled = connect_from(addr, "127.0.0.2", Some(0)).await;
    let mut held = Vec::new();
    for i in 0..2 {
        let mut client = ComplianceClient::new(stalled.clone());
        held.push(tokio::spawn(async move { client.evaluate(common::request("XX", &format!("held-{i}"))).await }));
    }
    let log = state.log.as_ref().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while log.size() < 2 {
        assert!(Instant::now() < deadline, "the two calls were not decided");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // One more from the same address, even on a connection that reads, is past its share.
    let mut same = ComplianceClient::new(connect_from(addr, "127.0.0.2", None).await);
    let e = same.evaluate(common::request("XX", "third")).await.unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
    assert!(e.message().contains("concurrency limit per client"), "{}", e.message());

    // Another client is served: the stalled one holds 2 of the 4 permits, not all.
    let mut other = ComplianceClient::new(connect_from(addr, "127.0.0.1", None).await);
    for i in 0..2 {
        other.evaluate(common::request("XX", &format!("other-{i}"))).await.unwrap();
    }
    assert!(held.iter().all(|h| !h.is_finished()), "an answer reached a client with a window of 0");
}

/// `--max-concurrency-per-client` (and its config file key) up to 1048576 is accepted;
/// one past it exits 64 naming the setting, before any port is bound.
#[test]
fn the_share_per_client_is_checked_at_its_bound() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let run = |args: &[&str], config: &str| {
        std::fs::write(d.join("c.toml"), config).unwrap();
        let out = common::bin().arg("serve").args(args).current_dir(d).output().unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let past = "max_concurrency_per_client: must be between 0 and 1048576, got 1048577";
    let (code, stderr) = run(&["--max-concurrency-per-client", "1048577"], "");
    assert_eq!(code, Some(64), "{stderr}");
    assert!(stderr.contains(past), "{stderr}");
    let (code, stderr) = run(&["--config", "c.toml"], "max_concurrency_per_client = 1048577\n");
    assert_eq!(code, Some(64), "{stderr}");
    assert!(stderr.contains(past), "{stderr}");
    // At the bound the setting passes, and the next one checked (set invalid on purpose)
    // is the one named.
    let (code, stderr) = run(&["--max-concurrency-per-client", "1048576", "--request-timeout-ms", "0"], "");
    assert_eq!(code, Some(64), "{stderr}");
    assert!(stderr.contains("request_timeout_ms: must be at least 1"), "{stderr}");
    assert!(!stderr.contains("max_concurrency_per_client"), "{stderr}");
}
