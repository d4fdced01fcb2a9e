//! Container integration tests: the `silkgate:dev` image as a network of nodes started
//! from `deploy/compose.yaml`, reached over their container addresses.
//!
//! All tests are `#[ignore]`: they need a Docker engine and the image, and take about a
//! minute. CI runs them one at a time:
//!
//! ```text
//! bash deploy/build-image.sh
//! cargo test -p silkgate-tests --test containers -- --ignored --test-threads=1
//! ```
//!
//! The image is built by `deploy/build-image.sh`; a test runs that script itself only
//! when the image is missing, so CI should run it first (a stale image is not rebuilt).
//! `SILKGATE_IMAGE` names another image. Without a Docker engine every test fails:
//! these tests never skip.
//!
//! Each test starts its own compose project (a unique name, its own volumes and private
//! network) over its own temporary copy of the policies, one directory per node, and a
//! guard runs `compose down -v` and removes the copies when the test ends, panics
//! included.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use prost::Message;
use silkgate::proto;
use silkgate::proto::compliance_client::ComplianceClient;
use silkgate::proto::decision_log_client::DecisionLogClient;
use silkgate::proto::get_inclusion_proof_request::Target;
use silkgate_tests::*;
use tonic::Code;
use tonic::transport::{Channel, Endpoint};

/// The nodes of deploy/compose.yaml: service name and jurisdiction.
const NODES: [(&str, &str); 4] = [("cn", "CN"), ("sg", "SG"), ("eu", "EU"), ("us", "US")];

/// The port every node listens on inside its container.
const PORT: u16 = 50051;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ has a parent").to_path_buf()
}

fn image() -> String {
    std::env::var("SILKGATE_IMAGE").unwrap_or_else(|_| "silkgate:dev".into())
}

// ---------------------------------------------------------------------------------------
// Docker and compose

/// Runs `program args`, panicking with its output when it cannot start or fails.
fn run(program: &str, args: &[&str], envs: &[(String, String)]) -> Output {
    let out =
        Command::new(program).args(args).envs(envs.iter().map(|(k, v)| (k, v))).output().unwrap_or_else(|e| {
            panic!("cannot run `{program}` (the container tests need Docker, they never skip): {e}")
        });
    assert!(
        out.status.success(),
        "`{program} {}` failed ({}):\n{}\n{}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn docker(args: &[&str]) -> String {
    String::from_utf8_lossy(&run("docker", args, &[]).stdout).trim().to_string()
}

/// `docker compose` when the plugin answers, else `docker-compose` (v1).
fn compose_program() -> &'static [&'static str] {
    static COMPOSE: OnceLock<&'static [&'static str]> = OnceLock::new();
    COMPOSE.get_or_init(|| {
        let answers = |p: &str, a: &[&str]| Command::new(p).args(a).output().is_ok_and(|o| o.status.success());
        if answers("docker", &["compose", "version"]) {
            &["docker", "compose"]
        } else if answers("docker-compose", &["version"]) {
            &["docker-compose"]
        } else {
            panic!("neither `docker compose` nor `docker-compose` works: the container tests need Docker Compose")
        }
    })
}

/// Checks the engine answers and the image exists, building it once if it is missing.
fn ensure_image() {
    static READY: OnceLock<()> = OnceLock::new();
    READY.get_or_init(|| {
        docker(&["info", "--format", "{{.ServerVersion}}"]);
        let present =
            Command::new("docker").args(["image", "inspect", &image()]).output().is_ok_and(|o| o.status.success());
        if !present {
            eprintln!("image {} is missing: running deploy/build-image.sh", image());
            let script = repo_root().join("deploy/build-image.sh");
            // Inherited output: the build takes minutes, and its progress should show.
            let status = Command::new("bash").arg(&script).arg(image()).status();
            assert!(status.as_ref().is_ok_and(|s| s.success()), "deploy/build-image.sh failed: {status:?}");
        }
    });
}

/// A compose project started for one test; `Drop` takes it down with its volumes and
/// removes the policy copies, whether the test passed or panicked.
struct Network {
    project: String,
    /// Per-node policy directories, `<dir>/<service>/`.
    dir: tempfile::TempDir,
    env: Vec<(String, String)>,
}

/// How a node's policy directory is laid out.
#[derive(Clone, Copy, PartialEq)]
enum Layout {
    /// Plain files, as an operator keeps them.
    Plain,
    /// As a Kubernetes ConfigMap volume: files are symlinks through `..data`, which
    /// points at a timestamped directory and is swapped atomically on update.
    ConfigMap,
}

impl Network {
    /// Starts every node of deploy/compose.yaml, each over its own copy of its
    /// jurisdiction's policy, and waits until all of them answer.
    async fn up(layouts: &[(&str, Layout)]) -> Network {
        ensure_image();
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let project = format!("silkgate-test-{}-{}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed));
        let dir = tempfile::Builder::new().prefix("silkgate-containers-").tempdir().unwrap();
        let mut env = vec![("SILKGATE_IMAGE".to_string(), image())];
        for (service, jurisdiction) in NODES {
            let layout = layouts.iter().find(|(s, _)| *s == service).map_or(Layout::Plain, |(_, l)| *l);
            let pdir = dir.path().join(service);
            write_policy_dir(&pdir, jurisdiction, layout, None);
            env.push((format!("SILKGATE_{jurisdiction}_POLICY"), pdir.display().to_string()));
        }
        // The container user (65532) reads the copies through the bind mount.
        open_for_reading(dir.path());
        // The guard exists before anything is started, so a failed `up` is cleaned too.
        let net = Network { project, dir, env };
        net.compose(&["up", "-d"]);
        for (service, _) in NODES {
            net.wait_serving(service, Duration::from_secs(30)).await;
        }
        net
    }

    fn compose(&self, args: &[&str]) -> Output {
        let (program, pre) = compose_program().split_first().unwrap();
        let file = repo_root().join("deploy/compose.yaml");
        let mut all: Vec<&str> = pre.to_vec();
        all.extend(["-p", &self.project, "-f", file.to_str().unwrap()]);
        all.extend(args);
        run(program, &all, &self.env)
    }

    /// The container id of `service`, running or not.
    fn container(&self, service: &str) -> String {
        let id = docker(&[
            "ps",
            "-aq",
            "--filter",
            &format!("label=com.docker.compose.project={}", self.project),
            "--filter",
            &format!("label=com.docker.compose.service={service}"),
        ]);
        assert!(!id.is_empty() && !id.contains('\n'), "expected one container for `{service}`, found `{id}`");
        id
    }

    fn inspect(&self, service: &str, format: &str) -> String {
        docker(&["inspect", "--format", format, &self.container(service)])
    }

    /// The node's gRPC address on the private network, as the host reaches it.
    fn addr(&self, service: &str) -> String {
        let ip = self.inspect(service, "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}");
        assert!(!ip.is_empty(), "`{service}` has no address (is it running?)");
        format!("http://{ip}:{PORT}")
    }

    fn policy_dir(&self, service: &str) -> PathBuf {
        self.dir.path().join(service)
    }

    /// A channel that gives up connecting after a second, so a missing node shows up
    /// as UNAVAILABLE instead of a hang.
    async fn channel(&self, service: &str) -> Result<Channel, tonic::transport::Error> {
        Endpoint::from_shared(self.addr(service))
            .unwrap()
            .connect_timeout(Duration::from_secs(1))
            .timeout(Duration::from_secs(5))
            .connect()
            .await
    }

    async fn clients(&self, service: &str) -> (ComplianceClient<Channel>, DecisionLogClient<Channel>) {
        let ch = self.channel(service).await.unwrap_or_else(|e| panic!("connect to `{service}`: {e}"));
        (ComplianceClient::new(ch.clone()), DecisionLogClient::new(ch))
    }

    /// Waits until `service` answers NodeInfo; returns it.
    async fn wait_serving(&self, service: &str, limit: Duration) -> proto::NodeInfoResponse {
        let start = Instant::now();
        loop {
            if self.inspect(service, "{{.State.Running}}") == "true"
                && let Ok(ch) = self.channel(service).await
                && let Ok(info) = ComplianceClient::new(ch).node_info(proto::NodeInfoRequest {}).await
            {
                return info.into_inner();
            }
            if start.elapsed() > limit {
                let logs = run("docker", &["logs", "--tail", "30", &self.container(service)], &[]);
                panic!(
                    "`{service}` did not answer within {limit:?}:\n{}",
                    String::from_utf8_lossy(&logs.stderr) + String::from_utf8_lossy(&logs.stdout)
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        let (program, pre) = compose_program().split_first().unwrap();
        let file = repo_root().join("deploy/compose.yaml");
        let mut args: Vec<&str> = pre.to_vec();
        args.extend(["-p", &self.project, "-f", file.to_str().unwrap(), "down", "-v", "--remove-orphans", "-t", "5"]);
        // Never panic here: a panic while unwinding would abort and hide the first one.
        match Command::new(program).args(&args).envs(self.env.iter().map(|(k, v)| (k, v))).output() {
            Ok(o) if o.status.success() => {}
            Ok(o) => eprintln!("compose down {} failed: {}", self.project, String::from_utf8_lossy(&o.stderr)),
            Err(e) => eprintln!("compose down {}: {e}", self.project),
        }
    }
}

/// Writes `jurisdiction`'s shipped policy and the data files into `dir`, optionally
/// appending `extra` to the policy file, laid out as `layout` says.
fn write_policy_dir(dir: &Path, jurisdiction: &str, layout: Layout, extra: Option<&str>) {
    let src = shipped_policy_dir();
    let name = format!("{}.toml", jurisdiction.to_lowercase());
    let files_dir = match layout {
        Layout::Plain => dir.to_path_buf(),
        Layout::ConfigMap => dir.join("..2026_01_01_00_00_00.000000001"),
    };
    std::fs::create_dir_all(files_dir.join("data")).unwrap();
    let mut text = std::fs::read_to_string(src.join(&name)).unwrap();
    text.push_str(extra.unwrap_or(""));
    std::fs::write(files_dir.join(&name), text).unwrap();
    for entry in std::fs::read_dir(src.join("data")).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), files_dir.join("data").join(entry.file_name())).unwrap();
    }
    if layout == Layout::ConfigMap {
        use std::os::unix::fs::symlink;
        symlink(files_dir.file_name().unwrap(), dir.join("..data")).unwrap();
        symlink(Path::new("..data").join(&name), dir.join(&name)).unwrap();
        symlink(Path::new("..data").join("data"), dir.join("data")).unwrap();
    }
}

/// What kubelet does to a ConfigMap volume on update: write a new timestamped
/// directory, point `..data` at it with one rename, remove the old directory.
fn configmap_swap(dir: &Path, jurisdiction: &str, extra: &str) {
    let old = std::fs::read_link(dir.join("..data")).unwrap();
    let stamp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    let fresh = dir.join(format!("..{stamp}"));
    write_policy_dir(&fresh, jurisdiction, Layout::Plain, Some(extra));
    open_for_reading(&fresh);
    std::os::unix::fs::symlink(fresh.file_name().unwrap(), dir.join("..data_tmp")).unwrap();
    std::fs::rename(dir.join("..data_tmp"), dir.join("..data")).unwrap();
    std::fs::remove_dir_all(dir.join(old)).unwrap();
}

/// Replaces a file the way editors do: a new file renamed over the old one.
fn replace(path: &Path, text: &str) {
    let tmp = path.with_extension("toml.swp");
    std::fs::write(&tmp, text).unwrap();
    open_for_reading(&tmp);
    std::fs::rename(&tmp, path).unwrap();
}

/// Directories 0755 and files 0644 under `path` (symlinks left alone).
fn open_for_reading(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::symlink_metadata(path).unwrap();
    if meta.is_symlink() {
        return;
    }
    let mode = if meta.is_dir() { 0o755 } else { 0o644 };
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    if meta.is_dir() {
        for entry in std::fs::read_dir(path).unwrap() {
            open_for_reading(&entry.unwrap().path());
        }
    }
}

// ---------------------------------------------------------------------------------------
// Requests and verification

fn eval(jurisdiction: &str, request_id: &str) -> proto::EvaluateRequest {
    proto::EvaluateRequest {
        jurisdiction: jurisdiction.into(),
        request: Some(allowed_request(request_id)),
        explain: false,
    }
}

/// Evaluates one request and verifies the answer with the node's published keys.
async fn evaluate_verified(
    c: &mut ComplianceClient<Channel>,
    info: &proto::NodeInfoResponse,
    jurisdiction: &str,
    request_id: &str,
) -> (proto::EvaluateResponse, proto::Decision) {
    let resp = c.evaluate(eval(jurisdiction, request_id)).await.unwrap().into_inner();
    let d = readme_verify(resp.decision.as_ref().unwrap(), &info.keys)
        .unwrap_or_else(|e| panic!("decision from `{}` does not verify: {e}", info.node_id));
    (resp, d)
}

/// The node's checkpoint, opened with its published checkpoint key: (size, root, note).
async fn checkpoint(log: &mut DecisionLogClient<Channel>, info: &proto::NodeInfoResponse) -> (u64, Vec<u8>, String) {
    let cp = log.get_checkpoint(proto::GetCheckpointRequest {}).await.unwrap().into_inner();
    let key = checkpoint_key(info);
    let (origin, size, root) = readme_open_checkpoint(&cp.note, &key).expect("checkpoint verifies with the node key");
    assert_eq!(origin, format!("silkgate/{}/1", info.node_id));
    assert_eq!((size, &root), (cp.size, &cp.root_hash));
    (size, root, cp.note)
}

fn checkpoint_key(info: &proto::NodeInfoResponse) -> Vec<u8> {
    info.keys
        .iter()
        .find(|k| k.purposes.iter().any(|p| p == "checkpoints"))
        .expect("a key for checkpoints")
        .public_key
        .clone()
}

fn rule_ids(d: &proto::Decision) -> Vec<&str> {
    d.matched_rules.iter().map(|r| r.id.as_str()).collect()
}

/// A deny rule for the test request (a Fabric permissioned app), appended to a policy.
fn deny_fabric_rule(id: &str) -> String {
    format!(
        "\n[[rule]]\nid = \"{id}\"\neffect = \"deny\"\nwhen = 'protocol.name == \"hyperledger-fabric\"'\n\
         message = \"added by the container tests\"\ncitation = \"Test s. 1\"\n"
    )
}

/// Evaluates until `done` holds for a decision, for at most `limit`; returns the
/// decision and how long it took.
async fn evaluate_until(
    c: &mut ComplianceClient<Channel>,
    info: &proto::NodeInfoResponse,
    jurisdiction: &str,
    limit: Duration,
    done: impl Fn(&proto::Decision) -> bool,
) -> (proto::Decision, Duration) {
    let start = Instant::now();
    for i in 0.. {
        let (_, d) = evaluate_verified(c, info, jurisdiction, &format!("poll-{i}")).await;
        if done(&d) {
            return (d, start.elapsed());
        }
        assert!(start.elapsed() < limit, "no change within {limit:?}; last decision matched {:?}", rule_ids(&d));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    unreachable!()
}

// ---------------------------------------------------------------------------------------
// The tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Docker and the silkgate:dev image; run by .ci/run"]
async fn every_node_signs_verifiable_decisions_for_its_jurisdiction() {
    let net = Network::up(&[]).await;
    let mut key_ids = Vec::new();
    for (service, jurisdiction) in NODES {
        let (mut c, mut log) = net.clients(service).await;
        let info = c.node_info(proto::NodeInfoRequest {}).await.unwrap().into_inner();
        assert_eq!(info.node_id, format!("silkgate-{service}"));
        let enforced: Vec<&str> = info.jurisdictions.iter().map(|j| j.jurisdiction.as_str()).collect();
        assert_eq!(enforced, [jurisdiction], "`{service}` enforces only its own jurisdiction");

        let (resp, d) = evaluate_verified(&mut c, &info, jurisdiction, &format!("{service}-1")).await;
        assert_eq!((d.jurisdiction.as_str(), d.node_id.as_str()), (jurisdiction, info.node_id.as_str()));
        assert_eq!(d.policy.unwrap().sha256, info.jurisdictions[0].policy_sha256);
        // The log opens with the policy's activation, then the decision.
        assert_eq!(resp.log_index, 1);
        assert_eq!(d.activation_index, Some(0));
        let (size, _, _) = checkpoint(&mut log, &info).await;
        assert_eq!(size, 2);

        // Another jurisdiction's policy is not on this node: an error, never a decision.
        let other = if jurisdiction == "CN" { "SG" } else { "CN" };
        let err = c.evaluate(eval(other, "wrong-node")).await.unwrap_err();
        assert_ne!(err.code(), Code::Ok);
        key_ids.push(info.keys[0].key_id.clone());

        // The image's health check (`silkgate health` in the container) passes.
        let id = net.container(service);
        run("docker", &["exec", &id, "/usr/local/bin/silkgate", "health"], &[]);
        assert_eq!(net.inspect(service, "{{.Config.User}}"), "65532:65532");
        assert_eq!(net.inspect(service, "{{.HostConfig.ReadonlyRootfs}}"), "true");
    }
    key_ids.sort();
    key_ids.dedup();
    assert_eq!(key_ids.len(), NODES.len(), "every node has its own key");

    // Docker's own health status comes from the same probe (compose: every 5 s).
    let start = Instant::now();
    for (service, _) in NODES {
        while net.inspect(service, "{{.State.Health.Status}}") != "healthy" {
            assert!(start.elapsed() < Duration::from_secs(30), "`{service}` never became healthy");
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Docker and the silkgate:dev image; run by .ci/run"]
async fn policy_edits_change_the_next_decision_without_restart() {
    let net = Network::up(&[("eu", Layout::ConfigMap)]).await;
    let limit = Duration::from_secs(10);

    // An operator edits sg.toml in place on the host (write and rename).
    let (mut c, _) = net.clients("sg").await;
    let info = c.node_info(proto::NodeInfoRequest {}).await.unwrap().into_inner();
    let (_, before) = evaluate_verified(&mut c, &info, "SG", "sg-before").await;
    assert!(!rule_ids(&before).contains(&"sg.test.fabric"));
    let path = net.policy_dir("sg").join("sg.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    replace(&path, &(text.clone() + &deny_fabric_rule("sg.test.fabric")));
    let (after, took) = evaluate_until(&mut c, &info, "SG", limit, |d| rule_ids(d).contains(&"sg.test.fabric")).await;
    eprintln!("sg: in-place edit seen after {took:?}");
    assert_eq!(after.verdict, proto::Verdict::Deny as i32);
    assert_ne!(after.policy.as_ref().unwrap().sha256, before.policy.as_ref().unwrap().sha256);

    // A broken edit keeps the last good policy in force and the node serving.
    replace(&path, &(text + "\n[[rule]]\nid = \"sg.broken\"\n"));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (_, kept) = evaluate_verified(&mut c, &info, "SG", "sg-broken").await;
    assert_eq!(kept.policy, after.policy, "the last good policy stays in force");
    let info2 = c.node_info(proto::NodeInfoRequest {}).await.unwrap().into_inner();
    assert!(!info2.jurisdictions[0].last_error.is_empty(), "NodeInfo reports the reload error");
    assert_eq!(net.inspect("sg", "{{.State.Running}}"), "true");

    // Kubernetes updates a ConfigMap volume by swapping the `..data` symlink.
    let (mut c, _) = net.clients("eu").await;
    let info = c.node_info(proto::NodeInfoRequest {}).await.unwrap().into_inner();
    let (_, before) = evaluate_verified(&mut c, &info, "EU", "eu-before").await;
    configmap_swap(&net.policy_dir("eu"), "EU", &deny_fabric_rule("eu.test.fabric"));
    let (after, took) = evaluate_until(&mut c, &info, "EU", limit, |d| rule_ids(d).contains(&"eu.test.fabric")).await;
    eprintln!("eu: ConfigMap swap seen after {took:?}");
    assert_eq!(after.verdict, proto::Verdict::Deny as i32);
    assert_ne!(after.policy.as_ref().unwrap().sha256, before.policy.as_ref().unwrap().sha256);

    // The other nodes never saw either edit.
    for (service, jurisdiction) in [("cn", "CN"), ("us", "US")] {
        let (mut c, _) = net.clients(service).await;
        let info = c.node_info(proto::NodeInfoRequest {}).await.unwrap().into_inner();
        let (_, d) = evaluate_verified(&mut c, &info, jurisdiction, "other").await;
        assert!(!rule_ids(&d).iter().any(|r| r.contains(".test.")));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Docker and the silkgate:dev image; run by .ci/run"]
async fn a_stopped_node_is_unavailable_while_the_others_serve() {
    let net = Network::up(&[]).await;
    let mut clients = Vec::new();
    for (service, jurisdiction) in NODES {
        let (mut c, _) = net.clients(service).await;
        let info = c.node_info(proto::NodeInfoRequest {}).await.unwrap().into_inner();
        evaluate_verified(&mut c, &info, jurisdiction, "warm").await;
        clients.push((service, jurisdiction, c, info));
    }

    let start = Instant::now();
    net.compose(&["stop", "sg"]);
    let stop_took = start.elapsed();
    // SIGTERM drains and exits 0 well within the grace period (a SIGKILL would be 137).
    assert_eq!(net.inspect("sg", "{{.State.ExitCode}}"), "0");
    assert!(stop_took < Duration::from_secs(10), "graceful stop took {stop_took:?}");

    for (service, jurisdiction, c, info) in &mut clients {
        let start = Instant::now();
        let result = c.evaluate(eval(jurisdiction, "after-stop")).await;
        let took = start.elapsed();
        if *service == "sg" {
            let err = result.expect_err("a stopped node answers nothing");
            assert_eq!(err.code(), Code::Unavailable, "{err}");
            assert!(took < Duration::from_secs(3), "UNAVAILABLE took {took:?}");
            eprintln!("sg: UNAVAILABLE after {took:?} (graceful stop took {stop_took:?})");
        } else {
            let resp = result.unwrap_or_else(|e| panic!("`{service}` stopped serving: {e}")).into_inner();
            readme_verify(resp.decision.as_ref().unwrap(), &info.keys).unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Docker and the silkgate:dev image; run by .ci/run"]
async fn a_restarted_node_keeps_its_key_and_extends_its_log() {
    let net = Network::up(&[]).await;
    let (mut c, mut log) = net.clients("sg").await;
    let info = c.node_info(proto::NodeInfoRequest {}).await.unwrap().into_inner();
    let mut decisions = Vec::new();
    for i in 0..5 {
        decisions.push(evaluate_verified(&mut c, &info, "SG", &format!("before-{i}")).await.1);
    }
    let (size1, root1, _) = checkpoint(&mut log, &info).await;
    assert_eq!(size1, 6, "the policy's activation and five decisions");

    let started = net.inspect("sg", "{{.State.StartedAt}}");
    net.compose(&["stop", "sg"]);
    net.compose(&["start", "sg"]);
    assert_ne!(net.inspect("sg", "{{.State.StartedAt}}"), started, "a new process");
    let info2 = net.wait_serving("sg", Duration::from_secs(30)).await;
    assert_eq!(info2.keys[0].key_id, info.keys[0].key_id, "same key after restart");
    assert_eq!(info2.keys[0].public_key, info.keys[0].public_key);
    assert_eq!(info2.node_id, info.node_id);

    let (mut c, mut log) = net.clients("sg").await;
    for i in 0..3 {
        let (resp, d) = evaluate_verified(&mut c, &info2, "SG", &format!("after-{i}")).await;
        // After the activation logged at the restart.
        assert_eq!(resp.log_index, 7 + i);
        decisions.push(d);
    }
    let (size2, root2, _) = checkpoint(&mut log, &info2).await;
    assert_eq!(size2, 10);
    let cons =
        log.get_consistency_proof(proto::GetConsistencyProofRequest { size1, size2 }).await.unwrap().into_inner();
    assert_eq!((cons.size1, cons.size2), (size1, size2));
    assert!(readme_verify_consistency(size1, size2, &cons.hashes, &root1, &root2), "old checkpoint is a prefix");

    // Decisions from before the restart are still provable against the new checkpoint.
    for d in &decisions {
        let p = inclusion(&mut log, &d.decision_id).await;
        assert_eq!(p.tree_size, size2);
        let (_, _, root) = readme_open_checkpoint(&p.checkpoint.unwrap().note, &checkpoint_key(&info2)).unwrap();
        assert!(readme_verify_inclusion(readme_leaf_hash(&p.entry), p.index, p.tree_size, &p.hashes, &root));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Docker and the silkgate:dev image; run by .ci/run"]
async fn kill_9_under_load_loses_no_acknowledged_decision() {
    let net = Network::up(&[]).await;
    let (mut c, mut log) = net.clients("us").await;
    let info = c.node_info(proto::NodeInfoRequest {}).await.unwrap().into_inner();
    evaluate_verified(&mut c, &info, "US", "warm").await;

    // Load: 8 callers over 2 connections, each keeping every decision it got back.
    let acked: Arc<Mutex<Vec<String>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let mut callers = Vec::new();
    for conn in 0..2 {
        let ch = net.channel("us").await.unwrap();
        for task in 0..4 {
            let (mut c, acked, stop, keys) =
                (ComplianceClient::new(ch.clone()), acked.clone(), stop.clone(), info.keys.clone());
            callers.push(tokio::spawn(async move {
                let mut errors = 0;
                for i in 0.. {
                    if stop.load(Ordering::Relaxed) {
                        return errors;
                    }
                    match c.evaluate(eval("US", &format!("load-{conn}-{task}-{i}"))).await {
                        Ok(r) => {
                            let d = readme_verify(r.get_ref().decision.as_ref().unwrap(), &keys).unwrap();
                            acked.lock().unwrap().push(d.decision_id);
                        }
                        Err(_) => {
                            errors += 1;
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                    }
                }
                errors
            }));
        }
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // A checkpoint handed out under load: the log after the crash must extend it.
    let (size1, root1, _) = checkpoint(&mut log, &info).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = net.inspect("us", "{{.State.StartedAt}}");
    let id = net.container("us");
    tokio::task::spawn_blocking(move || docker(&["kill", "--signal", "KILL", &id])).await.unwrap();
    let killed_at = acked.lock().unwrap().len();
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    let mut errors = 0;
    for t in callers {
        errors += t.await.unwrap();
    }
    let acked = std::mem::take(&mut *acked.lock().unwrap());
    assert!(errors > 0, "the callers noticed the kill");
    assert!(acked.len() >= 100, "only {} decisions under load", acked.len());
    eprintln!(
        "us: {} decisions acknowledged ({killed_at} when the kill returned), checkpoint {size1} taken under load",
        acked.len()
    );

    // Same volumes: the node recovers its log. `start` is a no-op if Docker restarted it.
    net.compose(&["start", "us"]);
    assert_ne!(net.inspect("us", "{{.State.StartedAt}}"), started, "a new process");
    let info2 = net.wait_serving("us", Duration::from_secs(30)).await;
    assert_eq!(info2.keys[0].key_id, info.keys[0].key_id);
    let (mut c, mut log) = net.clients("us").await;
    let (resp, _) = evaluate_verified(&mut c, &info2, "US", "after-kill").await;
    let (size2, root2, _) = checkpoint(&mut log, &info2).await;
    assert!(size2 > acked.len() as u64, "log size {size2} after restart, {} acknowledged", acked.len());
    assert_eq!(resp.log_index, size2 - 1);
    let cons =
        log.get_consistency_proof(proto::GetConsistencyProofRequest { size1, size2 }).await.unwrap().into_inner();
    assert!(readme_verify_consistency(size1, size2, &cons.hashes, &root1, &root2), "checkpoint {size1} is a prefix");

    let key = checkpoint_key(&info2);
    for decision_id in &acked {
        let p = inclusion(&mut log, decision_id).await;
        let env = proto::SignedDecision::decode(p.entry.as_slice()).unwrap();
        assert_eq!(&readme_verify(&env, &info2.keys).unwrap().decision_id, decision_id);
        let (_, size, root) = readme_open_checkpoint(&p.checkpoint.unwrap().note, &key).unwrap();
        assert_eq!(size, p.tree_size);
        assert!(readme_verify_inclusion(readme_leaf_hash(&p.entry), p.index, p.tree_size, &p.hashes, &root));
    }
}

#[test]
#[ignore = "needs Docker and the silkgate:dev image; run by .ci/run"]
fn a_failing_test_still_cleans_up() {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let (project, dir) = std::thread::scope(|s| {
        let seen = Arc::new(Mutex::new(None));
        let seen2 = seen.clone();
        let panicked = s
            .spawn(|| {
                rt.block_on(async move {
                    let net = Network::up(&[]).await;
                    *seen2.lock().unwrap() = Some((net.project.clone(), net.dir.path().to_path_buf()));
                    panic!("a test failing on purpose, with the network up");
                })
            })
            .join()
            .is_err();
        assert!(panicked);
        let seen = seen.lock().unwrap().clone();
        seen.expect("the network came up before the panic")
    });
    let label = format!("label=com.docker.compose.project={project}");
    assert_eq!(docker(&["ps", "-aq", "--filter", &label]), "", "containers left behind");
    assert_eq!(docker(&["volume", "ls", "-q", "--filter", &label]), "", "volumes left behind");
    assert_eq!(docker(&["network", "ls", "-q", "--filter", &label]), "", "networks left behind");
    assert!(!dir.exists(), "policy copies left behind in {}", dir.display());
}

async fn inclusion(log: &mut DecisionLogClient<Channel>, decision_id: &str) -> proto::InclusionProof {
    log.get_inclusion_proof(proto::GetInclusionProofRequest {
        target: Some(Target::DecisionId(decision_id.to_string())),
        tree_size: 0,
    })
    .await
    .unwrap_or_else(|e| panic!("decision {decision_id} is not in the log: {e}"))
    .into_inner()
}
