//! Kill -9 under load, repeatedly: after each restart every acknowledged decision is in
//! the log at the index it was given, and the new checkpoint is consistent with every
//! checkpoint signed before the crash.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{connect, free_port, shipped_policy};
use silkgate::proto::{self, decision_log_client::DecisionLogClient};
use silkgate_core::checkpoint::Checkpoint;
use silkgate_core::merkle;

fn start(data: &Path, port: u16) -> Child {
    let policy = shipped_policy();
    Command::new(env!("CARGO_BIN_EXE_silkgate"))
        .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--jurisdictions", "CN,EU"])
        .arg("--policy-dir")
        .arg(policy)
        .arg("--data-dir")
        .arg(data)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap()
}

fn request(i: u64) -> proto::EvaluateRequest {
    common::request(if i.is_multiple_of(2) { "CN" } else { "EU" }, &format!("crash-{i}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_under_load_loses_no_acknowledged_decision() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let acked: Arc<Mutex<Vec<(String, u64)>>> = Arc::default();
    let mut checkpoints: Vec<String> = Vec::new();
    let mut key = None;
    let mut child = start(&data, port);
    for round in 0..4u64 {
        let mut c = connect(&url).await;
        let info = c.node_info(proto::NodeInfoRequest {}).await.unwrap().into_inner();
        let vk =
            ed25519_dalek::VerifyingKey::from_bytes(info.keys[0].public_key.as_slice().try_into().unwrap()).unwrap();
        assert_eq!(*key.get_or_insert(vk), vk, "the key survives restarts");
        let mut log = DecisionLogClient::connect(url.clone()).await.unwrap();

        // After a restart: everything acknowledged before is there, at the same index...
        let latest = log.get_checkpoint(proto::GetCheckpointRequest {}).await.unwrap().into_inner();
        let origin = latest.origin.clone();
        let now = Checkpoint::open(&latest.note, &origin, &vk).unwrap();
        let before = acked.lock().unwrap().clone();
        for (id, index) in before {
            let p = log
                .get_inclusion_proof(proto::GetInclusionProofRequest {
                    target: Some(proto::get_inclusion_proof_request::Target::DecisionId(id.clone())),
                    tree_size: now.size,
                })
                .await
                .unwrap_or_else(|e| panic!("round {round}: acknowledged decision {id} missing: {e}"))
                .into_inner();
            assert_eq!(p.index, index);
            let proof: Vec<merkle::Hash> = p.hashes.iter().map(|h| h.as_slice().try_into().unwrap()).collect();
            merkle::verify_inclusion(&merkle::leaf_hash(&p.entry), index, now.size, &proof, &now.root).unwrap();
        }
        // ...and the log never forked: every earlier checkpoint is a prefix of this one.
        for note in &checkpoints {
            let old = Checkpoint::open(note, &origin, &vk).unwrap();
            if old.size == 0 || old.size == now.size {
                assert!(old.size == 0 || old.root == now.root);
                continue;
            }
            let p = log
                .get_consistency_proof(proto::GetConsistencyProofRequest { size1: old.size, size2: now.size })
                .await
                .unwrap()
                .into_inner();
            let proof: Vec<merkle::Hash> = p.hashes.iter().map(|h| h.as_slice().try_into().unwrap()).collect();
            merkle::verify_consistency(old.size, now.size, &proof, &old.root, &now.root).unwrap();
        }

        // Load: 16 concurrent clients, each recording what the node acknowledged.
        let acked_before = acked.lock().unwrap().len();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut tasks = Vec::new();
        for t in 0..16u64 {
            let (acked, stop, mut c) = (acked.clone(), stop.clone(), c.clone());
            tasks.push(tokio::spawn(async move {
                let mut i = round * 1_000_000 + t * 10_000;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    i += 1;
                    match c.evaluate(request(i)).await {
                        Ok(r) => {
                            let r = r.into_inner();
                            let env = r.decision.unwrap();
                            let d = <proto::Decision as prost::Message>::decode(env.payload.as_slice()).unwrap();
                            acked.lock().unwrap().push((d.decision_id, r.log_index));
                        }
                        Err(_) => break,
                    }
                }
            }));
        }
        let watcher = {
            let mut log = log.clone();
            let stop = stop.clone();
            tokio::spawn(async move {
                let mut seen = Vec::new();
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    match log.get_checkpoint(proto::GetCheckpointRequest {}).await {
                        Ok(cp) => seen.push(cp.into_inner().note),
                        Err(_) => break,
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                seen
            })
        };
        tokio::time::sleep(Duration::from_millis(300 + 150 * round)).await;
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for t in tasks {
            t.await.unwrap();
        }
        checkpoints.extend(watcher.await.unwrap());
        // This round made progress after its restart: the node acknowledged new
        // decisions, each at a new index past the log it recovered.
        let acked_now = acked.lock().unwrap().clone();
        let fresh = &acked_now[acked_before..];
        assert!(!fresh.is_empty(), "round {round}: no decision acknowledged after the restart");
        assert!(
            fresh.iter().all(|(_, index)| *index >= now.size),
            "round {round}: a new decision was given an index below the recovered size {}",
            now.size
        );
        let mut indexes: Vec<u64> = acked_now.iter().map(|(_, i)| *i).collect();
        indexes.sort_unstable();
        indexes.dedup();
        assert_eq!(indexes.len(), acked_now.len(), "round {round}: a log index was acknowledged twice");
        child = start(&data, port);
    }
    connect(&url).await;
    child.kill().unwrap();
    child.wait().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_silkgate")).args(["log", "verify"]).arg(&data).output().unwrap();
    assert!(out.status.success(), "{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    eprintln!("{} acknowledged decisions, {} checkpoints checked", acked.lock().unwrap().len(), checkpoints.len());
}
