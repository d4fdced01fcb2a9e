//! Witnessing (C2SP tlog-witness, tlog-cosignature): two nodes in this process witness
//! each other over HTTP; a forked log (same key, another history) is refused, the
//! evidence kept, the alarm raised, and still refused after the witness restarts; the
//! answers for each refusal; evidence bundles with a witness quorum; and the formats
//! against independent vectors (`node/tests/data/c2sp-vectors/`).

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::{Engine as _, engine::general_purpose::STANDARD};
use silkgate::http::Http;
use silkgate::log::Entry;
use silkgate::service::NodeState;
use silkgate::witness::{Cosigner, Witness, WitnessedLog, collect, witness_name};
use silkgate_core::checkpoint::{self, Checkpoint};
use silkgate_core::decision::Signer;
use silkgate_verify::cosignature::{self, Witness as WitnessKey};
use silkgate_verify::witness::AddCheckpoint;

fn key(seed: u8) -> ed25519_dalek::SigningKey {
    ed25519_dalek::SigningKey::from_bytes(&[seed; 32])
}

/// A node `id` signing with `seed`, its log in `dir/log`, witnessing `logs` with its
/// state in `dir/witness`, its HTTP listener started.
struct TestNode {
    state: Arc<NodeState>,
    url: String,
    dir: PathBuf,
}

async fn start(dir: &Path, id: &str, seed: u8, logs: &[WitnessedLog]) -> TestNode {
    let policies = silkgate::loader::load_dir(&common::shipped_policy(), Some(&["CN".to_string()])).unwrap();
    let signer = Arc::new(Signer::new(key(seed)));
    let log = silkgate::log::open(dir, id, signer.clone()).unwrap();
    let state = Arc::new(NodeState::new(
        id.into(),
        policies,
        signer.clone(),
        silkgate_core::time::UnixTime::from_secs(0),
        60,
        Some(log),
    ));
    if !logs.is_empty() {
        let w = Witness::open(&dir.join("witness"), witness_name(id), signer, logs, state.metrics.clone()).unwrap();
        let _ = state.witness.set(Arc::new(w));
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let http = Arc::new(Http { node: state.clone(), witness: state.witness.get().cloned(), console: None });
    tokio::spawn(silkgate::http::serve(listener, http));
    TestNode { state, url, dir: dir.to_path_buf() }
}

impl TestNode {
    fn origin(&self) -> String {
        self.state.log.as_ref().unwrap().origin().to_string()
    }

    /// This node as a witness others submit to.
    fn as_witness(&self, seed: u8) -> Cosigner {
        Cosigner {
            url: Some(self.url.clone()),
            witness: WitnessKey { name: witness_name(&self.state.node_id), key: key(seed).verifying_key() },
        }
    }

    async fn append(&self, tag: u8, n: u64) {
        let log = self.state.log.as_ref().unwrap();
        let entries = (0..n).map(|i| Entry { data: vec![tag, i as u8, 7].into(), id: None }).collect();
        log.append(entries).await.unwrap();
        let l = log.clone();
        tokio::task::spawn_blocking(move || l.checkpoint().unwrap()).await.unwrap();
    }

    /// Submits this node's stored checkpoint to `w`.
    async fn submit(&self, w: &Cosigner, known: &mut HashMap<String, u64>) -> Result<(), String> {
        let log = self.state.log.as_ref().unwrap();
        let (note, cp) = log.stored_checkpoint().unwrap();
        collect::submit(log, w, w.url.as_deref().unwrap(), &note, &cp, known).await
    }

    fn witness(&self) -> Arc<Witness> {
        self.state.witness.get().unwrap().clone()
    }
}

async fn post(url: &str, body: String) -> (u16, String, String) {
    let a = silkgate::http::client::request(
        hyper::Method::POST,
        &format!("{url}/add-checkpoint"),
        Some(body.into_bytes()),
        1 << 16,
    )
    .await
    .unwrap();
    (a.status, a.content_type, String::from_utf8_lossy(&a.body).to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_witness_each_other() {
    let dir = tempfile::tempdir().unwrap();
    // Node ids fix the origins, so each witness can be configured before the other starts.
    let a_log = WitnessedLog { origin: "silkgate/node-a/1".into(), key: key(1).verifying_key() };
    let b_log = WitnessedLog { origin: "silkgate/node-b/1".into(), key: key(2).verifying_key() };
    let a = start(&dir.path().join("a"), "node-a", 1, std::slice::from_ref(&b_log)).await;
    let b = start(&dir.path().join("b"), "node-b", 2, std::slice::from_ref(&a_log)).await;
    a.append(1, 5).await;
    b.append(2, 3).await;

    let (mut ka, mut kb) = (HashMap::new(), HashMap::new());
    a.submit(&b.as_witness(2), &mut ka).await.unwrap();
    b.submit(&a.as_witness(1), &mut kb).await.unwrap();
    // Each checkpoint now carries the other's cosignature, in a note that still opens.
    let (note, cp) = a.state.log.as_ref().unwrap().checkpoint().unwrap();
    assert!(Checkpoint::open(&note, &a.origin(), &key(1).verifying_key()).is_ok());
    let report = cosignature::verify(&note, &[b.as_witness(2).witness]).unwrap();
    assert_eq!(report.valid.len(), 1, "{note}");
    assert_eq!(b.witness().cosigned_size(&a.origin()), Some(cp.size));
    let (note_b, _) = b.state.log.as_ref().unwrap().checkpoint().unwrap();
    assert_eq!(cosignature::verify(&note_b, &[a.as_witness(1).witness]).unwrap().valid.len(), 1);
    // The tiles checkpoint carries it too.
    let served = silkgate::http::client::request(hyper::Method::GET, &format!("{}/checkpoint", a.url), None, 1 << 16)
        .await
        .unwrap();
    assert_eq!(
        cosignature::verify(std::str::from_utf8(&served.body).unwrap(), &[b.as_witness(2).witness])
            .unwrap()
            .valid
            .len(),
        1
    );

    // The log grows; the next submission needs and gets a consistency proof.
    a.append(1, 6).await;
    a.submit(&b.as_witness(2), &mut ka).await.unwrap();
    assert_eq!(b.witness().cosigned_size(&a.origin()), Some(11));
    // A fresh collector (after a restart of node A) learns the size from a 409.
    a.submit(&b.as_witness(2), &mut HashMap::new()).await.unwrap();

    // NodeInfo names the witness and its key.
    let info = silkgate::service::ComplianceService::new(
        b.state.clone(),
        Arc::new(silkgate::limits::Limits::new(Default::default())),
        Arc::new(Default::default()),
    )
    .describe();
    assert_eq!(info.witness_name, "silkgate/node-b/witness");
    assert_eq!(WitnessKey::parse_vkey(&info.witness_verifier_key).unwrap().key, key(2).verifying_key());
    assert_eq!(info.witness_split_views, 0);
    let _ = &a.dir;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forked_log_is_refused_kept_and_alarmed_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let a_log = WitnessedLog { origin: "silkgate/node-a/1".into(), key: key(1).verifying_key() };
    let a = start(&dir.path().join("a"), "node-a", 1, &[]).await;
    let w = start(&dir.path().join("w"), "node-w", 3, std::slice::from_ref(&a_log)).await;
    a.append(1, 5).await;
    a.submit(&w.as_witness(3), &mut HashMap::new()).await.unwrap();
    assert_eq!(w.witness().cosigned_size(&a_log.origin), Some(5));

    // The same key and node id over another data directory: another history, longer.
    let fork = start(&dir.path().join("fork"), "node-a", 1, &[]).await;
    fork.append(9, 9).await;
    let err = fork.submit(&w.as_witness(3), &mut HashMap::new()).await.unwrap_err();
    assert!(err.contains("409"), "{err}");
    assert_eq!(w.witness().split_views(), 1);
    assert_eq!(w.witness().cosigned_size(&a_log.origin), Some(5));
    let metrics = w.state.metrics.encode();
    assert!(metrics.contains("silkgate_witness_split_views_total 1"), "{metrics}");
    let info = silkgate::service::ComplianceService::new(
        w.state.clone(),
        Arc::new(silkgate::limits::Limits::new(Default::default())),
        Arc::new(Default::default()),
    )
    .describe();
    assert_eq!(info.witness_split_views, 1);
    assert!(info.witness_last_split_view.starts_with("silkgate/node-a/1: "), "{}", info.witness_last_split_view);
    // Both notes are on disk.
    let evidence = w.witness().last_alarm().unwrap().evidence;
    let e: serde_json::Value = serde_json::from_slice(&std::fs::read(&evidence).unwrap()).unwrap();
    let cosigned = e["cosigned_note"].as_str().unwrap();
    let refused = e["refused_note"].as_str().unwrap();
    assert_eq!(Checkpoint::open(cosigned, &a_log.origin, &a_log.key).unwrap().size, 5);
    assert_eq!(Checkpoint::open(refused, &a_log.origin, &a_log.key).unwrap().size, 9);

    // A fork of the same size is a split view too.
    let fork5 = start(&dir.path().join("fork5"), "node-a", 1, &[]).await;
    fork5.append(8, 5).await;
    assert!(fork5.submit(&w.as_witness(3), &mut HashMap::new()).await.is_err());
    assert_eq!(w.witness().split_views(), 2);

    // The witness restarts: it still knows size 5, still counts the alarms, and still
    // refuses the fork; the honest log still gets cosigned.
    let restarted = Witness::open(
        &w.dir.join("witness"),
        witness_name("node-w"),
        Arc::new(Signer::new(key(3))),
        std::slice::from_ref(&a_log),
        Arc::new(silkgate::metrics::Metrics::new()),
    )
    .unwrap();
    assert_eq!(restarted.cosigned_size(&a_log.origin), Some(5));
    assert_eq!(restarted.split_views(), 2);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let restarted = Arc::new(restarted);
    tokio::spawn(silkgate::http::serve(
        listener,
        Arc::new(Http { node: w.state.clone(), witness: Some(restarted.clone()), console: None }),
    ));
    let again = Cosigner { url: Some(url), witness: w.as_witness(3).witness };
    assert!(fork.submit(&again, &mut HashMap::new()).await.is_err());
    assert_eq!(restarted.split_views(), 3);
    assert_eq!(restarted.cosigned_size(&a_log.origin), Some(5));
    a.append(1, 2).await;
    a.submit(&again, &mut HashMap::new()).await.unwrap();
    assert_eq!(restarted.cosigned_size(&a_log.origin), Some(7));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn add_checkpoint_answers_as_the_spec_says() {
    let dir = tempfile::tempdir().unwrap();
    let a_log = WitnessedLog { origin: "silkgate/node-a/1".into(), key: key(1).verifying_key() };
    let a = start(&dir.path().join("a"), "node-a", 1, &[]).await;
    let w = start(&dir.path().join("w"), "node-w", 3, std::slice::from_ref(&a_log)).await;
    a.append(1, 6).await;
    let (note, cp) = a.state.log.as_ref().unwrap().stored_checkpoint().unwrap();
    let req = |old: u64, proof: Vec<[u8; 32]>, note: &str| {
        AddCheckpoint { old_size: old, proof, note: note.to_string() }.to_body()
    };

    // Unknown origin: 404. Not signed by the log's key: 403. Malformed: 400.
    let other = Checkpoint { origin: "elsewhere/log".into(), ..cp.clone() }.sign(&key(1));
    assert_eq!(post(&w.url, req(0, vec![], &other)).await.0, 404);
    let forged = cp.sign(&key(9));
    assert_eq!(post(&w.url, req(0, vec![], &forged)).await.0, 403);
    assert_eq!(post(&w.url, "old 01\n\n".into()).await.0, 400);
    assert_eq!(post(&w.url, req(7, vec![], &note)).await.0, 400);
    // A proof from size 0 must be empty: 422.
    assert_eq!(post(&w.url, req(0, vec![[0; 32]], &note)).await.0, 422);
    // First sight: cosigned; the answer is a cosignature line for the witness key.
    let (status, _, body) = post(&w.url, req(0, vec![], &note)).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.starts_with("\u{2014} silkgate/node-w/witness "), "{body}");
    let report = cosignature::verify(&cosignature::append(&note, &body), &[w.as_witness(3).witness]).unwrap();
    assert_eq!(report.valid.len(), 1);
    // The old size must be the one cosigned: 409 with it, as text/x.tlog.size.
    a.append(1, 3).await;
    let (note9, _) = a.state.log.as_ref().unwrap().stored_checkpoint().unwrap();
    let (status, ctype, body) = post(&w.url, req(0, vec![], &note9)).await;
    assert_eq!((status, ctype.as_str(), body.as_str()), (409, "text/x.tlog.size", "6\n"));
    // A proof that does not verify (and proves nothing): 422, no alarm.
    let log = a.state.log.as_ref().unwrap();
    let mut proof = log.consistency(6, 9).unwrap().1;
    proof[0][0] ^= 1;
    proof.last_mut().unwrap()[0] ^= 1;
    assert_eq!(post(&w.url, req(6, proof, &note9)).await.0, 422);
    assert_eq!(w.witness().split_views(), 0);
    let proof = log.consistency(6, 9).unwrap().1;
    assert_eq!(post(&w.url, req(6, proof, &note9)).await.0, 200);
    assert_eq!(w.witness().cosigned_size(&a_log.origin), Some(9));
    // A node without a witness has no add-checkpoint.
    assert_eq!(post(&a.url, req(0, vec![], &note9)).await.0, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_bundle_counts_cosignatures_against_the_quorum() {
    let dir = tempfile::tempdir().unwrap();
    let a_log = WitnessedLog { origin: "silkgate/node-a/1".into(), key: key(1).verifying_key() };
    let a = start(&dir.path().join("a"), "node-a", 1, &[]).await;
    let w = start(&dir.path().join("w"), "node-w", 3, std::slice::from_ref(&a_log)).await;
    // A real decision, so the bundle's entry verifies.
    let signer = Signer::new(key(1));
    let decision = silkgate_core::proto::Decision {
        key_id: signer.key_id().to_string(),
        decision_id: uuid_like(),
        ..Default::default()
    };
    let signed = silkgate_core::decision::sign(&decision, &signer);
    let bytes = prost::Message::encode_to_vec(&signed);
    a.state.log.as_ref().unwrap().append(vec![Entry { data: bytes.into(), id: None }]).await.unwrap();
    a.append(1, 2).await;
    a.submit(&w.as_witness(3), &mut HashMap::new()).await.unwrap();
    let inc = a.state.log.as_ref().unwrap().inclusion(0, 0).unwrap();
    let (note, cp) = inc.checkpoint.unwrap();
    let bundle = serde_json::json!({
        "format": "silkgate-evidence-v1",
        "entry": STANDARD.encode(&inc.entry),
        "log_index": 0,
        "tree_size": cp.size,
        "inclusion_proof": inc.proof.iter().map(|h| STANDARD.encode(h)).collect::<Vec<_>>(),
        "checkpoint": note,
    });
    let file = dir.path().join("bundle.json");
    std::fs::write(&file, bundle.to_string()).unwrap();
    let log_vkey = checkpoint::vkey(&a_log.origin, &a_log.key);
    let wk = w.as_witness(3).witness.vkey();
    let stranger = WitnessKey { name: "silkgate/node-x/witness".into(), key: key(4).verifying_key() }.vkey();
    let f = file.to_str().unwrap().to_string();
    let run = move |extra: Vec<String>| {
        let out =
            common::bin().args(["log", "verify-bundle", &f, "--public-key", &log_vkey]).args(extra).output().unwrap();
        (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).to_string())
    };
    let (run2, wk2, s2) = (run.clone(), wk.clone(), stranger.clone());
    let (code, out) =
        tokio::task::spawn_blocking(move || run2(vec!["--witness-key".into(), wk2, "--witness-key".into(), s2]))
            .await
            .unwrap();
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("witnessed: 1 valid cosignatures of 2 witnesses, quorum 1"), "{out}");
    let (code, out) = tokio::task::spawn_blocking(move || {
        run(vec!["--witness-key".into(), wk, "--witness-key".into(), stranger, "--witness-quorum".into(), "2".into()])
    })
    .await
    .unwrap();
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("not witnessed: 1 valid cosignatures of 2 witnesses, quorum 2"), "{out}");
}

fn uuid_like() -> String {
    "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b".into()
}

// ---- formats against independent vectors ---------------------------------------------

fn vector(name: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/c2sp-vectors").join(name)).unwrap()
}

fn field<'a>(text: &'a str, name: &str) -> &'a str {
    text.lines().find_map(|l| l.strip_prefix(&format!("{name} "))).unwrap()
}

#[test]
fn interop_go_sumdb_note_vector() {
    let v = vector("go-sumdb-note.txt");
    let signed = vector("go-sumdb-note.signed");
    let (name, vk) = checkpoint::parse_vkey(field(&v, "vkey")).unwrap();
    let text = checkpoint::open_note(&signed, &name, &vk).unwrap();
    assert!(text.starts_with("If you think cryptography"));
    // Signing the same text with the Go signer key gives the same note, byte for byte.
    let skey = STANDARD.decode(field(&v, "skey").splitn(5, '+').nth(4).unwrap()).unwrap();
    let sk = ed25519_dalek::SigningKey::from_bytes(skey[1..].try_into().unwrap());
    assert_eq!(checkpoint::sign_note(text, &name, &sk), signed);
}

#[test]
fn interop_c2sp_signed_note_example() {
    let v = vector("c2sp-signed-note.txt");
    let (name, vk) = checkpoint::parse_vkey(field(&v, "vkey")).unwrap();
    assert_eq!(
        checkpoint::open_note(&vector("c2sp-signed-note.signed"), &name, &vk).unwrap(),
        "This is an example message.\n"
    );
}

#[test]
fn interop_cosignature_v1_vector() {
    let v = vector("cosignature-v1.txt");
    let body = v.split_once("body\n").unwrap().1;
    let w = WitnessKey::parse_vkey(field(&v, "vkey")).unwrap();
    let line = field(&v, "line");
    let timestamp: u64 = field(&v, "timestamp").parse().unwrap();
    // Our signer makes the same line from the same seed, and our verifier accepts it.
    let seed: [u8; 32] = hex::decode(field(&v, "seed_hex")).unwrap().try_into().unwrap();
    let sk = ed25519_dalek::SigningKey::from_bytes(&seed);
    assert_eq!(w.key, sk.verifying_key());
    assert_eq!(cosignature::sign(body, &w.name, &sk, timestamp), format!("{line}\n"));
    let note = format!("{body}\n\u{2014} example.com/behind-the-sofa AAAA\n{line}\n");
    let report = cosignature::verify(&note, std::slice::from_ref(&w)).unwrap();
    assert_eq!(report.valid.len(), 1);
    assert_eq!(report.valid[0].timestamp, 1_679_315_147);
    // The tlog-cosignature example's line has the same timestamp bytes.
    let spec =
        "jWbPPwAAAABkGFDLEZMHwSRaJNiIDoe9DYn/zXcrtPHeolMI5OWXEhZCB9dlrDJsX3b2oyin1nPZqhf5nNo0xUe+mbIUBkBIfZ+qnA==";
    let spec_blob = STANDARD.decode(spec).unwrap();
    assert_eq!(u64::from_be_bytes(spec_blob[4..12].try_into().unwrap()), timestamp);
}
