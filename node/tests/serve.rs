//! `silkgate serve` as a process: configuration errors, live reload, health,
//! reflection, metrics, limits and graceful shutdown.

mod common;

use std::ffi::OsStr;
use std::path::Path;
use std::time::{Duration, Instant};

use common::{Node, POLICY, bin, free_port};

use silkgate::proto::{self, compliance_client::ComplianceClient};
use tonic::Code;

const EXTRA_RULE: &str = r#"
[[rule]]
id = "xx.fabric"
effect = "deny"
when = 'protocol.name == "hyperledger-fabric"'
message = "no fabric"
citation = "XX Act s. 2"
"#;

fn start(dir: &Path, extra: &[&str]) -> Node {
    let interval: &[&str] =
        if extra.contains(&"--reload-interval-ms") { &[] } else { &["--reload-interval-ms", "100"] };
    let (policy, data) = (dir.join("policy"), dir.join("data"));
    let mut args: Vec<&OsStr> =
        vec![OsStr::new("--policy-dir"), policy.as_os_str(), OsStr::new("--data-dir"), data.as_os_str()];
    args.extend(interval.iter().chain(extra).map(OsStr::new));
    Node::start(&args)
}

async fn client(node: &Node) -> ComplianceClient<tonic::transport::Channel> {
    node.client().await
}

fn setup() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("policy")).unwrap();
    std::fs::write(dir.path().join("policy/xx.toml"), POLICY).unwrap();
    dir
}

fn request(id: &str) -> proto::EvaluateRequest {
    common::request("XX", id)
}

async fn verdict(c: &mut ComplianceClient<tonic::transport::Channel>) -> (i32, Vec<u8>) {
    let r = c.evaluate(request("v")).await.unwrap().into_inner();
    let d = <proto::Decision as prost::Message>::decode(r.decision.unwrap().payload.as_slice()).unwrap();
    (d.verdict, d.policy.unwrap().sha256)
}

/// Polls `f` until it holds, for up to 10 s (a bound for a loaded machine, not a delay).
async fn wait_for<F: std::future::Future<Output = bool>>(mut f: impl FnMut() -> F) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if f().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

#[test]
fn bad_configuration_exits_64_naming_the_setting() {
    let dir = setup();
    let d = dir.path();
    exits_64_naming(
        bin().args(["serve", "--max-concurrency", "0"]).current_dir(d),
        "max_concurrency: must be at least 1",
    );

    std::fs::write(d.join("c.toml"), "listen = \"127.0.0.1:1\"\nmax_concurency = 5\n").unwrap();
    exits_64_naming(bin().args(["serve", "--config", "c.toml"]).current_dir(d), "unknown field `max_concurency`");

    exits_64_naming(bin().args(["serve", "--listen", "nowhere"]).current_dir(d), "listen: `nowhere` is not an address");

    exits_64_naming(bin().args(["serve"]).env("SILKGATE_LOG_FORMAT", "xml").current_dir(d), "log_format");

    exits_64_naming(
        bin().args(["serve", "--log-commit-delay-us", "100001"]).current_dir(d),
        "log_commit_delay_us: must be between 0 and 100000",
    );

    std::fs::write(d.join("s.toml"), "log_commit_siblings = 1\n").unwrap();
    exits_64_naming(
        bin().args(["serve", "--config", "s.toml"]).current_dir(d),
        "log_commit_siblings: must be at least 2, got 1",
    );
}

/// Runs `cmd` and checks it exits with 64 and says `needle` on stderr.
fn exits_64_naming(cmd: &mut std::process::Command, needle: &str) {
    let out = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{stderr}");
    assert!(stderr.contains(needle), "expected `{needle}` in: {stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_edits_take_effect_and_bad_edits_change_nothing() {
    let dir = setup();
    let node = start(dir.path(), &[]);
    let mut c = client(&node).await;
    let (v, digest1) = verdict(&mut c).await;
    assert_eq!(v, proto::Verdict::Allow as i32);

    // A valid edit, written in place: the next decisions deny, under a new digest.
    let path = dir.path().join("policy/xx.toml");
    std::fs::write(&path, format!("{POLICY}{EXTRA_RULE}")).unwrap();
    assert!(
        wait_for(|| {
            let mut c = c.clone();
            async move { verdict(&mut c).await.0 == proto::Verdict::Deny as i32 }
        })
        .await
    );
    let (_, digest2) = verdict(&mut c).await;
    assert_ne!(digest1, digest2);

    // An invalid edit (atomic rename): rejected as a whole, the last good policy stays.
    let tmp = dir.path().join("policy/.xx.tmp");
    std::fs::write(&tmp, POLICY.replace("\"mining\"", "\"minning\"")).unwrap();
    std::fs::rename(&tmp, &path).unwrap();
    assert!(
        wait_for(|| {
            let mut c = c.clone();
            async move { c.node_info(proto::NodeInfoRequest {}).await.unwrap().into_inner().policy_reload_errors > 0 }
        })
        .await
    );
    let info = c.node_info(proto::NodeInfoRequest {}).await.unwrap().into_inner();
    assert!(info.last_reload_error.contains("xx.toml:11:28: error: `minning`"), "{}", info.last_reload_error);
    assert!(info.jurisdictions[0].last_error.contains("minning"));
    assert_eq!(verdict(&mut c).await, (proto::Verdict::Deny as i32, digest2.clone()));

    // A new file with an error in another jurisdiction is also refused as a whole, even
    // with xx.toml valid again. The bad file goes first, so no reload can see a valid
    // directory in between; the test waits until a reload has seen both files as they
    // end up (yy.toml's error, no longer xx.toml's) and was rejected.
    let errors = c.node_info(proto::NodeInfoRequest {}).await.unwrap().into_inner().policy_reload_errors;
    std::fs::write(
        dir.path().join("policy/yy.toml"),
        POLICY
            .replace("XX", "YY")
            .replace("id = \"xx\"", "id = \"yy\"")
            .replace("effect = \"deny\"", "effect = \"block\""),
    )
    .unwrap();
    std::fs::write(&path, POLICY).unwrap();
    assert!(
        wait_for(|| {
            let mut c = c.clone();
            async move {
                let info = c.node_info(proto::NodeInfoRequest {}).await.unwrap().into_inner();
                info.policy_reload_errors > errors
                    && info.last_reload_error.contains("yy.toml:")
                    && !info.last_reload_error.contains("minning")
            }
        })
        .await,
        "no rejected reload of the directory with yy.toml: {:?}",
        c.node_info(proto::NodeInfoRequest {}).await.unwrap().into_inner().last_reload_error
    );
    let info = c.node_info(proto::NodeInfoRequest {}).await.unwrap().into_inner();
    assert!(info.last_reload_error.contains("`block`"), "{}", info.last_reload_error);
    assert_eq!(
        verdict(&mut c).await,
        (proto::Verdict::Deny as i32, digest2.clone()),
        "a rejected reload changed the policy"
    );
    std::fs::remove_file(dir.path().join("policy/yy.toml")).unwrap();
    assert!(
        wait_for(|| {
            let (mut c, want) = (c.clone(), digest1.clone());
            async move { verdict(&mut c).await.1 == want }
        })
        .await
    );
    let info = c.node_info(proto::NodeInfoRequest {}).await.unwrap().into_inner();
    assert!(info.last_reload_error.is_empty());
    assert!(info.jurisdictions[0].loaded_at.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configmap_symlink_swaps_and_sighup_reload() {
    // Kubernetes mounts a ConfigMap as files linking through `..data` to a timestamped
    // directory, and swaps the `..data` link on update.
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("policy");
    std::fs::create_dir_all(p.join("..2026_01")).unwrap();
    std::fs::write(p.join("..2026_01/xx.toml"), POLICY).unwrap();
    std::os::unix::fs::symlink("..2026_01", p.join("..data")).unwrap();
    std::os::unix::fs::symlink("..data/xx.toml", p.join("xx.toml")).unwrap();
    let node = start(dir.path(), &["--reload-interval-ms", "60000"]);
    let mut c = client(&node).await;
    assert_eq!(verdict(&mut c).await.0, proto::Verdict::Allow as i32);

    std::fs::create_dir_all(p.join("..2026_02")).unwrap();
    std::fs::write(p.join("..2026_02/xx.toml"), format!("{POLICY}{EXTRA_RULE}")).unwrap();
    std::os::unix::fs::symlink("..2026_02", p.join("..data_tmp")).unwrap();
    std::fs::rename(p.join("..data_tmp"), p.join("..data")).unwrap();
    // Polling is slowed to a minute here, so only SIGHUP can make the change visible.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(verdict(&mut c).await.0, proto::Verdict::Allow as i32);
    node.signal("-HUP");
    assert!(
        wait_for(|| {
            let mut c = c.clone();
            async move { verdict(&mut c).await.0 == proto::Verdict::Deny as i32 }
        })
        .await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_reflection_and_metrics() {
    let dir = setup();
    let mport = free_port();
    let node = start(dir.path(), &["--metrics-listen", &format!("127.0.0.1:{mport}")]);
    let mut c = client(&node).await;
    verdict(&mut c).await;
    let _ = c.evaluate(proto::EvaluateRequest { jurisdiction: "QQ".into(), ..request("q") }).await;

    let addr = node.url.clone();
    let health =
        tokio::task::spawn_blocking(move || bin().args(["health", "--addr", &addr]).output().unwrap()).await.unwrap();
    assert_eq!(health.status.code(), Some(0), "{}", String::from_utf8_lossy(&health.stderr));
    assert_eq!(String::from_utf8_lossy(&health.stdout).trim(), "SERVING");

    use tonic_reflection::pb::v1::{
        ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
        server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
    };
    let channel = tonic::transport::Endpoint::from_shared(node.url.clone()).unwrap().connect().await.unwrap();
    let mut r = ServerReflectionClient::new(channel);
    let req = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut stream = r.server_reflection_info(tokio_stream::iter([req])).await.unwrap().into_inner();
    let resp = stream.message().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = resp.message_response else { panic!("{resp:?}") };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    for want in ["silkgate.v1.Compliance", "silkgate.v1.DecisionLog", "grpc.health.v1.Health"] {
        assert!(names.iter().any(|n| n == want), "{names:?}");
    }

    let body = http_get(mport, "/metrics").await;
    assert!(body.contains("silkgate_decisions_total{jurisdiction=\"XX\",verdict=\"allow\"} 1"), "{body}");
    assert!(body.contains("silkgate_rejected_requests_total{reason=\"unknown_jurisdiction\"} 1"), "{body}");
    assert!(body.contains("silkgate_request_duration_seconds_count"), "{body}");
    // The policy's activation and the decision.
    assert!(body.contains("silkgate_log_entries 2"), "{body}");
    assert!(body.contains("silkgate_log_syncs_total"), "{body}");
    assert!(body.contains("silkgate_policy_reloads_total"), "{body}");
}

async fn http_get(port: u16, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_refuse_what_exceeds_them() {
    let dir = setup();
    let node = start(dir.path(), &["--rate-limit", "1", "--rate-burst", "2", "--max-request-bytes", "2048"]);
    let mut c = client(&node).await;
    c.evaluate(request("a")).await.unwrap();
    c.evaluate(request("b")).await.unwrap();
    let e = c.evaluate(request("c")).await.unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted);
    assert!(e.message().contains("rate limit"), "{}", e.message());
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let mut big = request("d");
    big.request.as_mut().unwrap().addresses = (0..200).map(|i| format!("0x{i:040x}")).collect();
    let e = c.evaluate(big).await.unwrap_err();
    assert_eq!(e.code(), Code::OutOfRange, "{e:?}");
    drop(node);

    let node = start(dir.path(), &["--request-timeout-ms", "1", "--max-concurrency", "1"]);
    let mut c = client(&node).await;
    let items: Vec<_> = (0..1000).map(|i| request(&format!("t{i}"))).collect();
    let calls = (0..4).map(|_| {
        let mut c = c.clone();
        let items = items.clone();
        tokio::spawn(async move {
            c.evaluate_batch(proto::EvaluateBatchRequest { items }).await.map(|_| ()).map_err(|e| e.code())
        })
    });
    let mut codes = Vec::new();
    for call in calls {
        codes.push(call.await.unwrap());
    }
    assert!(codes.contains(&Err(Code::DeadlineExceeded)), "{codes:?}");
    let _ = c.node_info(proto::NodeInfoRequest {}).await.unwrap();
    let _ = node.port;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_and_exits_cleanly() {
    let dir = setup();
    let (policy, data) = (dir.path().join("policy"), dir.path().join("data"));
    let port = free_port();
    // Logs on and captured: the decision event and the shutdown lines must all reach
    // stderr, buffered or not, by the time the process exits.
    let child = bin()
        .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--grace-period-secs", "5", "--log-format", "json"])
        .arg("--policy-dir")
        .arg(&policy)
        .arg("--data-dir")
        .arg(&data)
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut node = Node { child, url: format!("http://127.0.0.1:{port}"), port };
    let mut c = client(&node).await;
    verdict(&mut c).await;
    drop(c);
    node.signal("-TERM");
    let started = Instant::now();
    let status = loop {
        if let Some(s) = node.child.try_wait().unwrap() {
            break s;
        }
        assert!(started.elapsed() < Duration::from_secs(8), "did not stop");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(0));
    let mut err = String::new();
    std::io::Read::read_to_string(&mut node.child.stderr.take().unwrap(), &mut err).unwrap();
    let decision = err.lines().find(|l| l.contains(r#""message":"decision""#)).unwrap_or_else(|| panic!("{err}"));
    for field in [
        r#""jurisdiction":"XX""#,
        r#""verdict":"allow""#,
        r#""request.id":"v""#,
        r#""latency_us":"#,
        r#""log_index":1"#, // after the policy's activation
    ] {
        assert!(decision.contains(field), "{field} missing from {decision}");
    }
    assert!(err.contains("shutdown signal received") && err.contains(r#""message":"stopped""#), "{err}");
}
