//! Helpers shared by the tests that run the `silkgate` binary as a process, or the
//! server in the test's own process.
#![allow(dead_code)]

pub mod log_files;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use silkgate::proto::{self, compliance_client::ComplianceClient};

pub fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_silkgate"))
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

pub fn shipped_policy() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../policy")
}

/// A node process, killed when dropped.
pub struct Node {
    pub child: Child,
    pub url: String,
    pub port: u16,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Node {
    /// Starts `silkgate serve` on a free port with `args` after the listen address.
    pub fn start(args: &[&std::ffi::OsStr]) -> Node {
        Self::start_on(free_port(), args)
    }

    pub fn start_on(port: u16, args: &[&std::ffi::OsStr]) -> Node {
        let child = bin()
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .args(args)
            .env("RUST_LOG", "off")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        Node { child, url: format!("http://127.0.0.1:{port}"), port }
    }

    /// Starts `silkgate serve` for CN and EU on the shipped policies and `data`, with
    /// `RUST_LOG` set to `rust_log` and its stderr shown.
    pub fn start_shipped(data: &Path, port: u16, rust_log: &str) -> Node {
        let child = bin()
            .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--jurisdictions", "CN,EU"])
            .arg("--policy-dir")
            .arg(shipped_policy())
            .arg("--data-dir")
            .arg(data)
            .env("RUST_LOG", rust_log)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        Node { child, url: format!("http://127.0.0.1:{port}"), port }
    }

    /// A client, once the node answers NodeInfo.
    pub async fn client(&self) -> ComplianceClient<tonic::transport::Channel> {
        connect(&self.url).await
    }

    /// Sends SIGTERM, as an orchestrator stopping the node does.
    pub fn sigterm(&self) {
        let pid = libc::pid_t::try_from(self.child.id()).unwrap();
        // SAFETY: kill(2) with a valid signal number has no memory-safety preconditions.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0, "kill: {}", std::io::Error::last_os_error());
    }

    /// Waits for the process to exit, failing the test after `limit`.
    pub async fn wait_exit(&mut self, limit: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s;
            }
            assert!(Instant::now() < deadline, "node {} did not exit within {limit:?}", self.url);
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    pub fn signal(&self, sig: &str) {
        let pid = self.child.id().to_string();
        assert!(Command::new("kill").args([sig, &pid]).status().unwrap().success());
    }
}

pub async fn connect(url: &str) -> ComplianceClient<tonic::transport::Channel> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(mut c) = ComplianceClient::connect(url.to_string()).await
            && c.node_info(proto::NodeInfoRequest {}).await.is_ok()
        {
            return c;
        }
        assert!(Instant::now() < deadline, "node at {url} did not come up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A request every shipped policy of CN and EU, and the test policy XX, allows.
pub fn request(jurisdiction: &str, id: &str) -> proto::EvaluateRequest {
    proto::EvaluateRequest {
        jurisdiction: jurisdiction.into(),
        request: Some(proto::DeploymentRequest {
            request_id: id.into(),
            deployment_kind: proto::DeploymentKind::PermissionedApp as i32,
            protocol: Some(proto::Protocol { name: "hyperledger-fabric".into(), ..Default::default() }),
            permission_model: proto::PermissionModel::Permissioned as i32,
            node_regions: vec!["CN".into()],
            ..Default::default()
        }),
        explain: false,
    }
}

/// The small policy the process tests use.
pub const POLICY: &str = r#"[policy]
id = "xx"
jurisdiction = "XX"
name = "XX"
version = "1"
default = "allow"

[[rule]]
id = "xx.mining"
effect = "deny"
when = 'deployment_kind == "mining"'
message = "no mining"
citation = "XX Act s. 1"
"#;

/// Starts the server in this process on 127.0.0.1: `policy` is its only policy
/// (`xx.toml`), its key and decision log live in `dir`, `node_id` names it.
pub async fn start_in_process(
    dir: &Path,
    policy: &str,
    node_id: &str,
    options: silkgate::server::Options,
) -> (std::net::SocketAddr, std::sync::Arc<silkgate::service::NodeState>) {
    let policy_dir = dir.join("policy");
    std::fs::create_dir_all(&policy_dir).unwrap();
    std::fs::write(policy_dir.join("xx.toml"), policy).unwrap();
    let policies = silkgate::loader::load_dir(&policy_dir, None).unwrap();
    let key = silkgate::keys::load_or_create(&dir.join("node.key")).unwrap();
    let signer = std::sync::Arc::new(key.signer);
    let log = silkgate::log::open(dir, node_id, signer.clone()).unwrap();
    let state = std::sync::Arc::new(silkgate::service::NodeState::new(
        node_id.into(),
        policies,
        signer,
        key.valid_from,
        60,
        Some(log),
    ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(silkgate::server::run_with(listener, state.clone(), options, std::future::pending()));
    (addr, state)
}
