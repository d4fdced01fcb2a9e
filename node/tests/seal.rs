//! Sealing a log: the old log stays verifiable under its origin, and the node starts a
//! new log with a new origin.

mod common;

use std::ffi::OsStr;

use common::*;
use silkgate::proto::{self, decision_log_client::DecisionLogClient};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sealed_log_stays_verifiable_and_a_new_one_begins() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let policy = shipped_policy();
    let args = [
        OsStr::new("--policy-dir"),
        policy.as_os_str(),
        OsStr::new("--data-dir"),
        data.as_os_str(),
        OsStr::new("--node-id"),
        OsStr::new("n1"),
    ];

    let node = Node::start(&args);
    let mut c = node.client().await;
    for i in 0..5 {
        c.evaluate(request("CN", &format!("s-{i}"))).await.unwrap();
    }
    let key = hex::encode(&c.node_info(proto::NodeInfoRequest {}).await.unwrap().into_inner().keys[0].public_key);
    let mut log = DecisionLogClient::connect(node.url.clone()).await.unwrap();
    assert_eq!(log.get_checkpoint(proto::GetCheckpointRequest {}).await.unwrap().into_inner().origin, "silkgate/n1/1");

    // Sealing needs the node stopped: the log is locked while in use.
    let busy = bin().args(["log", "seal"]).arg(&data).output().unwrap();
    assert_eq!(busy.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&busy.stderr).contains("in use by another process"));
    drop((c, log, node));

    let sealed = bin().args(["log", "seal"]).arg(&data).output().unwrap();
    assert!(sealed.status.success(), "{}", String::from_utf8_lossy(&sealed.stderr));
    let verify =
        bin().args(["log", "verify"]).arg(data.join("log/sealed/1")).args(["--public-key", &key]).output().unwrap();
    let out = String::from_utf8_lossy(&verify.stdout);
    assert!(verify.status.success(), "{out}");
    assert!(out.contains("origin:      silkgate/n1/1") && out.contains("entries:     5"), "{out}");

    let node = Node::start(&args);
    let mut c = node.client().await;
    let r = c.evaluate(request("CN", "after-seal")).await.unwrap().into_inner();
    assert_eq!(r.log_index, 0);
    let mut log = DecisionLogClient::connect(node.url.clone()).await.unwrap();
    let cp = log.get_checkpoint(proto::GetCheckpointRequest {}).await.unwrap().into_inner();
    assert_eq!((cp.origin.as_str(), cp.size), ("silkgate/n1/2", 1));
}
