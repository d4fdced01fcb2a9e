//! A full disk: the node's data dir on a small tmpfs. When the log cannot write, the node
//! answers UNAVAILABLE and reports NOT_SERVING, never a decision it did not log; after a
//! stop, space freed and a restart, it serves again on the same log, with every decision
//! acknowledged before at its index and a tree consistent with every checkpoint served.
//!
//! Needs root (to mount); a mount that fails fails the test.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Node, bin, connect, free_port};
use silkgate::proto::{self, compliance_client::ComplianceClient, decision_log_client::DecisionLogClient};
use silkgate_core::checkpoint::Checkpoint;
use silkgate_core::merkle;
use tonic::Code;
use tonic::transport::Channel;
use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient};

/// Size of the filesystem under the data dir.
const DISK: &str = "size=16m";

/// A tmpfs mounted for the test, unmounted when dropped.
struct Mount(PathBuf);

impl Mount {
    fn tmpfs(at: &Path) -> Mount {
        std::fs::create_dir_all(at).unwrap();
        let out = Command::new("mount").args(["-t", "tmpfs", "-o", DISK, "tmpfs"]).arg(at).output();
        match out {
            Ok(o) if o.status.success() => Mount(at.to_owned()),
            Ok(o) => panic!(
                "this test needs to mount a small tmpfs (run it as root, or in a container with CAP_SYS_ADMIN): \
                 `mount -t tmpfs -o {DISK} tmpfs {}` failed: {}{}",
                at.display(),
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            ),
            Err(e) => panic!("this test needs `mount` to put the data dir on a small tmpfs: {e}"),
        }
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let ok = Command::new("umount").arg(&self.0).status().is_ok_and(|s| s.success());
        if !ok {
            // Something still holds a file there: detach it so the temp dir can go.
            let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
}

fn start(data: &Path, port: u16) -> Node {
    // Only the log's own errors: which write failed, when a run needs explaining.
    Node::start_shipped(data, port, "silkgate::log=error")
}

/// Writes zeros to `path` until the filesystem is full, in big steps then small ones,
/// and leaves `room` bytes free by cutting the file back. Returns the file's size.
fn fill(path: &Path, room: u64) -> u64 {
    let mut f = std::fs::File::create(path).unwrap();
    let mut written = 0u64;
    for step in [1 << 20, 4096, 512] {
        let zeros = vec![0u8; step];
        loop {
            match f.write(&zeros) {
                Ok(n) if n > 0 => written += n as u64,
                Ok(_) => break,
                Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => break,
                Err(e) => panic!("{}: {e}", path.display()),
            }
        }
    }
    f.sync_all().unwrap();
    let size = written.saturating_sub(room);
    f.set_len(size).unwrap();
    f.sync_all().unwrap();
    size
}

fn health_status(code: i32) -> ServingStatus {
    ServingStatus::try_from(code).unwrap_or(ServingStatus::Unknown)
}

async fn health_client(url: &str) -> HealthClient<Channel> {
    HealthClient::new(tonic::transport::Endpoint::from_shared(url.to_string()).unwrap().connect().await.unwrap())
}

async fn health(url: &str) -> ServingStatus {
    let mut h = health_client(url).await;
    let r = h.check(HealthCheckRequest { service: "silkgate.v1.Compliance".into() }).await.unwrap();
    health_status(r.into_inner().status)
}

/// An acknowledged decision: request id, decision id, log index.
type Acked = (String, String, u64);

/// Runs clients until one of them is refused with UNAVAILABLE (the log cannot write).
/// Returns what they acknowledged, and the refusal.
async fn evaluate_until_refused(
    c: &ComplianceClient<Channel>,
    log: &DecisionLogClient<Channel>,
    served: &Arc<Mutex<Vec<String>>>,
    tag: &str,
    batch: usize,
) -> (Vec<Acked>, tonic::Status) {
    let stop = Arc::new(AtomicBool::new(false));
    let tasks: Vec<_> = (0..4)
        .map(|t| {
            let (mut c, stop, tag) = (c.clone(), stop.clone(), tag.to_string());
            tokio::spawn(async move {
                let mut acked = Vec::new();
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    let items: Vec<_> = (0..batch)
                        .map(|_| {
                            i += 1;
                            common::request(if i % 2 == 0 { "CN" } else { "EU" }, &format!("{tag}-{t}-{i}"))
                        })
                        .collect();
                    let ids: Vec<String> =
                        items.iter().map(|r| r.request.as_ref().unwrap().request_id.clone()).collect();
                    match c.evaluate_batch(proto::EvaluateBatchRequest { items }).await {
                        Ok(r) => {
                            for (id, result) in ids.into_iter().zip(r.into_inner().results) {
                                match result.result {
                                    Some(proto::batch_result::Result::Ok(r)) => {
                                        acked.push((id, r.decision_id, r.log_index))
                                    }
                                    other => panic!("{id}: a batch item failed alone: {other:?}"),
                                }
                            }
                        }
                        Err(status) => {
                            stop.store(true, Ordering::Relaxed);
                            return (acked, Some(status));
                        }
                    }
                }
                (acked, None)
            })
        })
        .collect();
    let watcher = {
        let (mut log, stop, served) = (log.clone(), stop.clone(), served.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                if let Ok(cp) = log.get_checkpoint(proto::GetCheckpointRequest {}).await {
                    served.lock().unwrap().push(cp.into_inner().note);
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    let deadline = tokio::time::sleep(Duration::from_secs(60));
    tokio::pin!(deadline);
    let mut acked = Vec::new();
    let mut refused = None;
    for t in tasks {
        let (a, r) = tokio::select! {
            r = t => r.unwrap(),
            _ = &mut deadline => panic!("{tag}: the log never refused a decision within 60 s of a full disk"),
        };
        acked.extend(a);
        refused = refused.or(r);
    }
    watcher.await.unwrap();
    let refused = refused.unwrap();
    (acked, refused)
}

/// Fills the disk under a running node, leaving `room` bytes, runs decisions until the log
/// refuses them, checks the node fails closed, then frees space, restarts and checks the
/// log is whole.
async fn full_disk(room: u64, batch: usize) {
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mount = Mount::tmpfs(&data);
    let port = free_port();
    let mut node = start(&data, port);
    let mut c = connect(&node.url).await;
    let info = c.node_info(proto::NodeInfoRequest {}).await.unwrap().into_inner();
    let vk = ed25519_dalek::VerifyingKey::from_bytes(info.keys[0].public_key.as_slice().try_into().unwrap()).unwrap();
    let mut log = DecisionLogClient::connect(node.url.clone()).await.unwrap();
    assert_eq!(health(&node.url).await, ServingStatus::Serving);
    let served: Arc<Mutex<Vec<String>>> = Arc::default();

    // Some decisions while there is room.
    let mut acked: Vec<Acked> = Vec::new();
    for i in 0..50 {
        let id = format!("before-{i}");
        let r = c.evaluate(common::request("CN", &id)).await.unwrap().into_inner();
        acked.push((id, r.decision_id, r.log_index));
    }
    let cp = log.get_checkpoint(proto::GetCheckpointRequest {}).await.unwrap().into_inner();
    served.lock().unwrap().push(cp.note);

    // The disk fills: a ballast leaves `room` bytes, then decisions take what is left.
    let ballast = data.join("ballast");
    let ballast_size = fill(&ballast, room);
    let full = Instant::now();
    let (more, refused) = evaluate_until_refused(&c, &log, &served, "full", batch).await;
    assert_eq!(refused.code(), Code::Unavailable, "{refused:?}");
    acked.extend(more);
    let filled = full.elapsed();

    // Fails closed: NOT_SERVING, and every further call refused, none answered.
    let deadline = Instant::now() + Duration::from_secs(10);
    while health(&node.url).await != ServingStatus::NotServing {
        assert!(Instant::now() < deadline, "health still SERVING 10 s after the log stopped writing");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut h = health_client(&node.url).await;
    for service in ["", "silkgate.v1.DecisionLog"] {
        let s = h.check(HealthCheckRequest { service: service.into() }).await.unwrap().into_inner();
        assert_eq!(health_status(s.status), ServingStatus::NotServing, "health of `{service}`");
    }
    for i in 0..20 {
        let e = c.evaluate(common::request("EU", &format!("after-{i}"))).await.unwrap_err();
        assert_eq!(e.code(), Code::Unavailable, "{e:?}");
    }
    let items = (0..10).map(|i| common::request("CN", &format!("after-batch-{i}"))).collect();
    let e = c.evaluate_batch(proto::EvaluateBatchRequest { items }).await.unwrap_err();
    assert_eq!(e.code(), Code::Unavailable, "{e:?}");

    // Stopped while refusing, space freed, restarted on the same data dir.
    node.sigterm();
    let stopped = node.wait_exit(Duration::from_secs(15)).await;
    drop(node);
    std::fs::remove_file(&ballast).unwrap();
    let node = start(&data, port);
    let mut c = connect(&node.url).await;
    let mut log = DecisionLogClient::connect(node.url.clone()).await.unwrap();
    assert_eq!(health(&node.url).await, ServingStatus::Serving);

    // Every decision acknowledged before the disk filled is there, at its index...
    let latest = log.get_checkpoint(proto::GetCheckpointRequest {}).await.unwrap().into_inner();
    let origin = latest.origin.clone();
    let now = Checkpoint::open(&latest.note, &origin, &vk).unwrap();
    assert!(now.size >= acked.len() as u64, "log of {} entries, {} decisions acknowledged", now.size, acked.len());
    for (request_id, decision_id, index) in &acked {
        let p = log
            .get_inclusion_proof(proto::GetInclusionProofRequest {
                target: Some(proto::get_inclusion_proof_request::Target::DecisionId(decision_id.clone())),
                tree_size: now.size,
            })
            .await
            .unwrap_or_else(|e| panic!("acknowledged decision {decision_id} ({request_id}) missing: {e}"))
            .into_inner();
        assert_eq!(p.index, *index, "{request_id}");
        let env = <proto::SignedDecision as prost::Message>::decode(p.entry.as_slice()).unwrap();
        let d = <proto::Decision as prost::Message>::decode(env.payload.as_slice()).unwrap();
        assert_eq!((&d.request_id, &d.decision_id), (request_id, decision_id));
        let proof: Vec<merkle::Hash> = p.hashes.iter().map(|h| h.as_slice().try_into().unwrap()).collect();
        merkle::verify_inclusion(&merkle::leaf_hash(&p.entry), *index, now.size, &proof, &now.root).unwrap();
    }

    // ...it serves again...
    let r = c.evaluate(common::request("EU", "after-restart")).await.unwrap().into_inner();
    assert_eq!(r.log_index, now.size, "the new decision follows the recovered log");
    let latest = log.get_checkpoint(proto::GetCheckpointRequest {}).await.unwrap().into_inner();
    let now = Checkpoint::open(&latest.note, &origin, &vk).unwrap();
    assert_eq!(now.size, r.log_index + 1);

    // ...and its tree extends every checkpoint served before.
    let served = std::mem::take(&mut *served.lock().unwrap());
    for note in &served {
        let old = Checkpoint::open(note, &origin, &vk).unwrap();
        assert!(old.size > 0 && old.size < now.size, "served size {} against {}", old.size, now.size);
        let p = log
            .get_consistency_proof(proto::GetConsistencyProofRequest { size1: old.size, size2: now.size })
            .await
            .unwrap()
            .into_inner();
        let proof: Vec<merkle::Hash> = p.hashes.iter().map(|h| h.as_slice().try_into().unwrap()).collect();
        merkle::verify_consistency(old.size, now.size, &proof, &old.root, &now.root)
            .unwrap_or_else(|e| panic!("served checkpoint of size {} is not a prefix of the log: {e}", old.size));
    }
    drop(node);
    let out = bin().args(["log", "verify"]).arg(&data).output().unwrap();
    assert!(out.status.success(), "{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    drop(mount);
    eprintln!(
        "ballast {ballast_size} bytes leaving {room}: {} decisions acknowledged, refused {:.1} s after the ballast ({}), \
         stopped with {stopped}, log of {} entries after restart, {} served checkpoints consistent, {:.1} s in all",
        acked.len(),
        filled.as_secs_f64(),
        refused.message(),
        now.size,
        served.len(),
        started.elapsed().as_secs_f64()
    );
}

/// The disk is full at once: the next write the log needs (a checkpoint, the entries
/// file's next preallocated step or the tree's files) fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_decisions_and_a_restart_after_freeing_space_recovers() {
    full_disk(0, 8).await;
}

/// A little room left: decisions fill it until the log's next write does not fit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decisions_fill_the_disk_then_the_node_fails_closed_and_recovers() {
    full_disk(1 << 20, 64).await;
}
