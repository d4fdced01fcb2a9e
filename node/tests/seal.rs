//! Sealing a log: the old log stays verifiable under its origin, and the node starts a
//! new log with a new origin; `log verify DATA_DIR` audits the sealed logs too.

mod common;

use std::ffi::OsStr;

use common::*;
use silkgate::proto::{self, decision_log_client::DecisionLogClient};
use silkgate_core::checkpoint::vkey;

fn stdout(o: &std::process::Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

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
    // Five decisions after the ten activations of the shipped policies.
    assert!(out.contains("origin:      silkgate/n1/1") && out.contains("entries:     15"), "{out}");

    // Right after sealing there is no active log: the data directory and the log
    // directory still verify, through their sealed logs.
    for dir in [data.clone(), data.join("log")] {
        let verify = bin().args(["log", "verify"]).arg(&dir).args(["--public-key", &key]).output().unwrap();
        let out = stdout(&verify);
        assert_eq!(verify.status.code(), Some(0), "{}: {out}", dir.display());
        assert!(out.contains("no active log in") && out.contains("1 log (1 sealed): 1 verified"), "{out}");
        assert!(out.contains(&format!("log {} verified", data.join("log/sealed/1").display())), "{out}");
    }

    // `key show` gives the verifier key of each log; the sealed one verifies with it.
    let vk = ed25519_dalek::VerifyingKey::from_bytes(&hex::decode(&key).unwrap().try_into().unwrap()).unwrap();
    let show = bin().args(["key", "show", "--data-dir"]).arg(&data).output().unwrap();
    assert_eq!(show.status.code(), Some(0), "{}", stdout(&show));
    let sealed_vkey = vkey("silkgate/n1/1", &vk);
    assert!(stdout(&show).contains(&sealed_vkey), "{}", stdout(&show));
    let verify = bin()
        .args(["log", "verify"])
        .arg(data.join("log/sealed/1"))
        .args(["--public-key", &sealed_vkey])
        .output()
        .unwrap();
    assert_eq!(verify.status.code(), Some(0), "{}", stdout(&verify));

    let node = Node::start(&args);
    let mut c = node.client().await;
    let r = c.evaluate(request("CN", "after-seal")).await.unwrap().into_inner();
    assert_eq!(r.log_index, 10, "the new log opens with the policies' activations");
    let mut log = DecisionLogClient::connect(node.url.clone()).await.unwrap();
    let cp = log.get_checkpoint(proto::GetCheckpointRequest {}).await.unwrap().into_inner();
    assert_eq!((cp.origin.as_str(), cp.size), ("silkgate/n1/2", 11));
    let info = c.node_info(proto::NodeInfoRequest {}).await.unwrap().into_inner();
    let active_vkey = vkey("silkgate/n1/2", &vk);
    assert_eq!(info.log_verifier_key, active_vkey);
    let show = bin().args(["key", "show", "--data-dir"]).arg(&data).output().unwrap();
    assert!(stdout(&show).contains(&format!("verifier key: {active_vkey}")), "{}", stdout(&show));
    drop((c, log, node));

    // With the node stopped, `log verify DATA_DIR` audits the active log and the sealed
    // one (the key from DATA_DIR/node.key); a verifier key names one origin only.
    let verify = bin().args(["log", "verify"]).arg(&data).output().unwrap();
    let out = stdout(&verify);
    assert_eq!(verify.status.code(), Some(0), "{out}");
    assert!(out.contains("2 logs (1 sealed): 2 verified, 0 invalid"), "{out}");
    assert!(out.contains("origin:      silkgate/n1/2") && out.contains("origin:      silkgate/n1/1"), "{out}");
    let verify = bin().args(["log", "verify"]).arg(&data).args(["--public-key", &active_vkey]).output().unwrap();
    let out = stdout(&verify);
    assert_eq!(verify.status.code(), Some(1), "{out}");
    assert!(out.contains("the verifier key is for origin `silkgate/n1/2`, not `silkgate/n1/1`"), "{out}");
}
