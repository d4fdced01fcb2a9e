//! SIGTERM under load, a hundred times in a row on one data dir: each clean stop leaves
//! on disk a checkpoint that covers every decision the node acknowledged, at least as new
//! as any checkpoint it served, and the same as the last note of the history.
//!
//! The disk is read directly (see `common::log_files`), so the test does not take the
//! node's word for what it stored.

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::log_files::{self, Entries};
use common::{Node, connect, free_port};
use silkgate::proto::{self, decision_log_client::DecisionLogClient};
use silkgate_core::checkpoint::Checkpoint;
use tonic::Code;

const LIFETIMES: u64 = 100;
const CLIENTS: u64 = 4;

fn start(data: &Path, port: u16) -> Node {
    Node::start_shipped(data, port, "error")
}

/// What one client saw: the calls answered (request id, decision id, log index) and the
/// call that failed, if one did (request id, status).
#[derive(Default)]
struct Seen {
    acked: Vec<(String, String, u64)>,
    failed: Option<(String, tonic::Status)>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_stores_a_final_checkpoint_covering_every_acknowledged_decision() {
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let log_dir = data.join("log");
    let port = free_port();
    let mut key = None;
    let mut disk = Entries::new(&log_dir);
    // Every acknowledged decision over all lifetimes: request id -> (decision id, index).
    let mut acked: HashMap<String, (String, u64)> = HashMap::new();
    let (mut failed_total, mut failed_in_log, mut served_total) = (0u64, 0u64, 0usize);
    // Policy activations logged at each start (they precede that lifetime's decisions).
    let mut activations = 0u64;
    // The checkpoint stored at the last clean stop.
    let mut last_stored: Option<String> = None;
    let mut refusals: std::collections::BTreeMap<String, u64> = Default::default();

    for life in 0..LIFETIMES {
        let mut node = start(&data, port);
        let mut c = connect(&node.url).await;
        let info = c.node_info(proto::NodeInfoRequest {}).await.unwrap().into_inner();
        let vk =
            ed25519_dalek::VerifyingKey::from_bytes(info.keys[0].public_key.as_slice().try_into().unwrap()).unwrap();
        assert_eq!(*key.get_or_insert(vk), vk, "the key survives restarts");
        let mut log = DecisionLogClient::connect(node.url.clone()).await.unwrap();

        // A clean stop left nothing to recover: the node starts on the checkpoint it
        // stored when it stopped, and adds only the activations of the policies it
        // starts enforcing (one per jurisdiction), before any decision.
        let stopped_at = disk.len();
        let started_with: Vec<_> = disk.read_new();
        assert!(!started_with.is_empty(), "lifetime {life}: no policy activation was logged at start");
        assert!(
            started_with.iter().all(|r| r.payload_type == silkgate_verify::release::ACTIVATION_PAYLOAD_TYPE),
            "lifetime {life}: the node logged something other than activations at start"
        );
        activations += started_with.len() as u64;
        let first = log.get_checkpoint(proto::GetCheckpointRequest {}).await.unwrap().into_inner();
        let origin = first.origin.clone();
        assert_eq!(first.size, disk.len(), "lifetime {life}: the log restarted at another size");
        assert_eq!(first.size, stopped_at + started_with.len() as u64, "lifetime {life}: restarted at another size");
        let served_first = Checkpoint::open(&first.note, &first.origin, &vk).unwrap();
        assert_eq!(served_first.root, disk.root(first.size), "lifetime {life}: restarted on another tree");
        if let Some(note) = &last_stored {
            let history = log_files::history(&log_dir);
            assert!(history.contains(note), "lifetime {life}: the checkpoint stored at the stop left the history");
        }

        // Load: a few clients, each until its first failure (the stop).
        let stop = Arc::new(AtomicBool::new(false));
        let clients: Vec<_> = (0..CLIENTS)
            .map(|t| {
                let (mut c, stop) = (c.clone(), stop.clone());
                tokio::spawn(async move {
                    let mut seen = Seen::default();
                    let mut i = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        i += 1;
                        let request_id = format!("L{life}-c{t}-{i}");
                        let jurisdiction = if i.is_multiple_of(2) { "CN" } else { "EU" };
                        match c.evaluate(common::request(jurisdiction, &request_id)).await {
                            Ok(r) => {
                                let r = r.into_inner();
                                seen.acked.push((request_id, r.decision_id, r.log_index));
                            }
                            Err(status) => {
                                seen.failed = Some((request_id, status));
                                break;
                            }
                        }
                    }
                    seen
                })
            })
            .collect();
        // Checkpoints served now and then while the load runs.
        let served = Arc::new(Mutex::new(vec![first.note]));
        let watcher = {
            let (mut log, stop, served) = (log.clone(), stop.clone(), served.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    match log.get_checkpoint(proto::GetCheckpointRequest {}).await {
                        Ok(cp) => served.lock().unwrap().push(cp.into_inner().note),
                        Err(_) => break,
                    }
                    tokio::time::sleep(Duration::from_millis(25)).await;
                }
            })
        };
        tokio::time::sleep(Duration::from_millis(100 + 50 * (life % 3))).await;
        // The last checkpoint served before the stop, while the clients still run.
        let last = log.get_checkpoint(proto::GetCheckpointRequest {}).await.unwrap().into_inner();
        served.lock().unwrap().push(last.note);
        node.sigterm();
        let status = node.wait_exit(Duration::from_secs(15)).await;
        assert_eq!(status.code(), Some(0), "lifetime {life}: SIGTERM should stop the node cleanly");
        stop.store(true, Ordering::Relaxed);
        watcher.await.unwrap();

        let mut answered = 0;
        let mut failed: HashMap<String, tonic::Status> = HashMap::new();
        for client in clients {
            let seen = client.await.unwrap();
            answered += seen.acked.len();
            for (request_id, decision_id, index) in seen.acked {
                assert!(acked.insert(request_id, (decision_id, index)).is_none());
            }
            if let Some((request_id, status)) = seen.failed {
                // The node stopped taking calls: UNAVAILABLE from the node or once the
                // port is closed, or a transport error from the client library for a
                // call caught by the connection closing (hyper's CANCELLED for a call
                // queued on it, tonic's INTERNAL for a stream above a GOAWAY's last
                // stream id). Such a call may or may not have reached the node: the
                // disk below says whether it was logged. Any other answer from the node
                // itself is a failure.
                let transport = std::error::Error::source(&status)
                    .is_some_and(|e| e.downcast_ref::<tonic::transport::Error>().is_some());
                assert!(status.code() == Code::Unavailable || transport, "lifetime {life}: {request_id}: {status:?}");
                *refusals.entry(format!("{:?}", status.code())).or_default() += 1;
                failed.insert(request_id, status);
            }
        }
        assert!(answered > 0, "lifetime {life}: no decision was acknowledged");
        failed_total += failed.len() as u64;

        // The disk, read directly: every new entry is an acknowledged decision at the
        // index it was answered with, or the decision of a call that failed (counted).
        let from = disk.len();
        for r in disk.read_new() {
            assert!(r.is_decision(), "lifetime {life}: entry {} is a {} among the decisions", r.index, r.payload_type);
            match acked.get(&r.request_id) {
                Some((decision_id, index)) => {
                    assert_eq!((decision_id, *index), (&r.decision_id, r.index), "lifetime {life}: {}", r.request_id);
                }
                None => {
                    assert!(
                        failed.contains_key(&r.request_id),
                        "lifetime {life}: entry {} ({}) was neither acknowledged nor a failed call",
                        r.index,
                        r.request_id
                    );
                    failed_in_log += 1;
                }
            }
        }
        assert_eq!(
            disk.len(),
            acked.len() as u64 + failed_in_log + activations,
            "lifetime {life}: the entries on disk are not exactly the acknowledged decisions (+{failed_in_log} failed \
             calls found logged); {answered} acknowledged in this lifetime, log grew from {from}"
        );

        // The stored checkpoint: signed by the node key, covering every entry on disk,
        // which is every acknowledged decision...
        let note = log_files::checkpoint_file(&log_dir);
        let stored = Checkpoint::open(&note, &origin, &vk)
            .unwrap_or_else(|e| panic!("lifetime {life}: the checkpoint file does not verify: {e}"));
        assert_eq!(
            stored.size,
            acked.len() as u64 + failed_in_log + activations,
            "lifetime {life}: the final checkpoint does not cover every acknowledged decision"
        );
        assert_eq!(stored.root, disk.root(stored.size), "lifetime {life}: the checkpoint's root is not the disk's");
        last_stored = Some(note.clone());
        // ...the last record of the history...
        let history = log_files::history(&log_dir);
        assert_eq!(history.last(), Some(&note), "lifetime {life}: the history's last note is not the checkpoint file");
        // ...and at least as new as every checkpoint served, each a prefix of it.
        let served = std::mem::take(&mut *served.lock().unwrap());
        served_total += served.len();
        for s in &served {
            let s = Checkpoint::open(s, &origin, &vk).unwrap();
            assert!(s.size <= stored.size, "lifetime {life}: served size {} > stored {}", s.size, stored.size);
            assert_eq!(s.root, disk.root(s.size), "lifetime {life}: a served checkpoint is not a prefix of the disk");
        }
    }
    eprintln!(
        "{LIFETIMES} clean stops in {:.1} s: {} decisions acknowledged, {failed_total} calls refused at a stop \
         ({refusals:?}; {failed_in_log} of them logged), {served_total} served checkpoints checked",
        started.elapsed().as_secs_f64(),
        acked.len()
    );
}
