//! The Python verifier of `docs/verify-python.md` (`docs/python/verify_decision.py`)
//! against a live node: it accepts the node's evidence, from files and over gRPC, and
//! refuses it tampered, each time for the right reason.
//!
//! The pinned packages of `docs/python/requirements.txt` are installed from PyPI into a
//! virtualenv under the target directory, again whenever that file changes. A missing
//! `python3` or a failed install fails the test: it never skips.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use base64::Engine as _;
use prost::Message;
use silkgate::proto;
use silkgate::proto::decision_log_client::DecisionLogClient;
use silkgate::proto::get_inclusion_proof_request::Target;
use silkgate_tests::{TestNode, allowed_request};

const REQUIREMENTS: &str = include_str!("../../docs/python/requirements.txt");

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Runs `cmd`, panicking with its output unless it exits 0.
fn check(cmd: &mut Command, what: &str) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: cannot run: {e}"));
    assert!(
        out.status.success(),
        "{what}: {}\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The virtualenv's python, with the pinned packages. Test binaries sharing the target
/// directory take turns through a file lock; the venv is made again only when
/// `requirements.txt` differs from the copy kept in it.
fn venv_python() -> PathBuf {
    let base = Path::new(env!("CARGO_TARGET_TMPDIR")).join("python-verify");
    fs::create_dir_all(&base).unwrap();
    let lock = File::create(base.join("lock")).unwrap();
    lock.lock().unwrap();
    let venv = base.join("venv");
    let python = venv.join("bin/python");
    let stamp = venv.join("silkgate-requirements.txt");
    if python.exists() && fs::read_to_string(&stamp).is_ok_and(|s| s == REQUIREMENTS) {
        return python;
    }
    let _ = fs::remove_dir_all(&venv);
    check(
        Command::new("python3").args(["-m", "venv"]).arg(&venv),
        "python3 -m venv (python3 and its venv module are needed)",
    );
    check(
        Command::new(&python)
            .args(["-m", "pip", "install", "--no-input", "--disable-pip-version-check", "-r"])
            .arg(repo().join("docs/python/requirements.txt")),
        "pip install -r docs/python/requirements.txt",
    );
    fs::write(&stamp, REQUIREMENTS).unwrap();
    python
}

/// Generates `silkgate/v1/silkgate_pb2.py` from `proto/` into `out`, as the guide does.
fn generate(python: &Path, out: &Path) {
    fs::create_dir_all(out).unwrap();
    check(
        Command::new(python)
            .current_dir(repo())
            .args(["-m", "grpc_tools.protoc", "-I", "proto"])
            .arg(format!("--python_out={}", out.display()))
            .arg("proto/silkgate/v1/silkgate.proto"),
        "grpc_tools.protoc",
    );
    assert!(out.join("silkgate/v1/silkgate_pb2.py").is_file());
}

struct Verifier {
    python: PathBuf,
    modules: PathBuf,
}

impl Verifier {
    /// Runs `verify_decision.py`.
    async fn run(&self, args: &[&str]) -> Output {
        self.script("verify_decision.py", args).await
    }

    /// Runs a script of `docs/python/` off the runtime's thread, so the node keeps answering.
    async fn script(&self, name: &str, args: &[&str]) -> Output {
        let mut cmd = Command::new(&self.python);
        cmd.arg(repo().join("docs/python").join(name))
            .args(args)
            .env("PYTHONPATH", &self.modules)
            .env_remove("PYTHONHOME")
            .env("PYTHONDONTWRITEBYTECODE", "1");
        tokio::task::spawn_blocking(move || cmd.output().expect("run verify_decision.py")).await.unwrap()
    }

    async fn valid(&self, args: &[&str], expect: &[&str]) {
        let out = self.run(args).await;
        let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert_eq!(out.status.code(), Some(0), "{args:?}\n{stdout}\n{stderr}");
        for e in expect {
            assert!(stdout.contains(e), "{args:?}: `{e}` not in\n{stdout}");
        }
    }

    async fn invalid(&self, args: &[&str], reason: &str) {
        let out = self.run(args).await;
        let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert_eq!(out.status.code(), Some(1), "{args:?}\n{stdout}\n{stderr}");
        assert!(stdout.starts_with("invalid: ") && stdout.contains(reason), "{args:?}: `{reason}` not in\n{stdout}");
    }
}

/// An evidence bundle as `silkgate log prove` writes it (README, "Evidence bundle").
fn bundle(p: &proto::InclusionProof) -> serde_json::Value {
    let b64 = base64::engine::general_purpose::STANDARD;
    serde_json::json!({
        "format": "silkgate-evidence-v1",
        "entry": b64.encode(&p.entry),
        "log_index": p.index,
        "tree_size": p.tree_size,
        "inclusion_proof": p.hashes.iter().map(|h| b64.encode(h)).collect::<Vec<_>>(),
        "checkpoint": p.checkpoint.as_ref().unwrap().note,
    })
}

#[tokio::test]
async fn the_python_guide_verifies_decisions_and_proofs() {
    let tmp = tempfile::tempdir().unwrap();
    let modules = tmp.path().join("gen");
    let python = tokio::task::spawn_blocking({
        let modules = modules.clone();
        move || {
            let python = venv_python();
            generate(&python, &modules);
            python
        }
    })
    .await
    .unwrap();
    let py = Verifier { python, modules };

    let node = TestNode::start(None).await;
    let mut c = node.client().await;
    let mut log = DecisionLogClient::connect(format!("http://{}", node.addr)).await.unwrap();
    let info = c.node_info(proto::NodeInfoRequest {}).await.unwrap().into_inner();
    let key = hex::encode(&info.keys[0].public_key);
    let vkey = info.log_verifier_key.clone();
    let mut answers = Vec::new();
    for i in 0..5 {
        let mut r = allowed_request(&format!("py-{i}"));
        if i == 2 {
            r.permission_model = proto::PermissionModel::Permissionless as i32;
        }
        let req = proto::EvaluateRequest { jurisdiction: "XX".into(), request: Some(r), explain: false };
        answers.push(c.evaluate(req).await.unwrap().into_inner());
    }
    let proof = log
        .get_inclusion_proof(proto::GetInclusionProofRequest {
            target: Some(Target::DecisionId(answers[2].decision_id.clone())),
            tree_size: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((proof.index, proof.tree_size, proof.hashes.len()), (2, 5, 3));

    let dir = tmp.path();
    let file = |name: &str, bytes: &[u8]| {
        let p = dir.join(name);
        fs::write(&p, bytes).unwrap();
        p.to_str().unwrap().to_owned()
    };
    let json = |name: &str, v: &serde_json::Value| file(name, serde_json::to_string_pretty(v).unwrap().as_bytes());
    let decision = answers[2].decision.as_ref().unwrap().encode_to_vec();
    let decision_file = file("decision.pb", &decision);
    let proof_file = file("proof.pb", &proof.encode_to_vec());
    let bundle_file = json("bundle.json", &bundle(&proof));
    let id = answers[2].decision_id.as_str();
    let included = "valid: entry 2 of log silkgate/test-node/1 at size 5";

    // Valid evidence: a bundle alone (its entry is the decision), the decision held
    // with a proof file, and the decision held with the proof asked of the live node.
    let decided = format!("valid: decision {id} (VERDICT_DENY, XX) for request py-2");
    py.valid(&["--public-key", &key, "--bundle", &bundle_file], &[&decided, "EFFECT_DENY xx.permissionless", included])
        .await;
    py.valid(
        &["--public-key", &vkey, "--decision", &decision_file, "--proof", &proof_file, "--valid-at", "now"],
        &[&decided, "current at", included],
    )
    .await;
    let last = file("last.pb", &answers[4].decision.as_ref().unwrap().encode_to_vec());
    let addr = node.addr.to_string();
    let fourth = format!("valid: decision {} (VERDICT_ALLOW, XX) for request py-4", answers[4].decision_id);
    py.valid(
        &["--public-key", &vkey, "--decision", &last, "--node", &addr],
        &[&fourth, "valid: entry 4 of log silkgate/test-node/1 at size 5"],
    )
    .await;

    // The guide's portal side: a Python client keeps the request, decision and proof.
    let evidence = dir.join("evidence");
    fs::create_dir(&evidence).unwrap();
    let out = py.script("get_evidence.py", &[&addr, "XX", evidence.to_str().unwrap()]).await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let got = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(got.starts_with("decision ") && got.contains(": entry 5 of 6"), "{got}");
    let ev = |name: &str| evidence.join(name).to_str().unwrap().to_owned();
    let (ev_decision, ev_proof, ev_request) = (ev("decision.pb"), ev("proof.pb"), ev("request.pb"));
    py.valid(
        &["--public-key", &vkey, "--decision", &ev_decision, "--proof", &ev_proof, "--request", &ev_request],
        &[
            "(VERDICT_ALLOW, XX) for request portal-example-1",
            "request_sha256 matches",
            "valid: entry 5 of log silkgate/test-node/1 at size 6",
        ],
    )
    .await;
    let mut sent = fs::read(&ev_request).unwrap();
    sent[3] ^= 0x01; // not the bytes the node hashed
    let other_request = file("request.pb", &sent);
    py.invalid(
        &["--public-key", &vkey, "--decision", &ev_decision, "--proof", &ev_proof, "--request", &other_request],
        "request_sha256",
    )
    .await;

    // A flipped payload byte, in the decision held and in the bundle's entry.
    let mut env = answers[2].decision.clone().unwrap();
    env.payload[10] ^= 0x01;
    let flipped = file("flipped.pb", &env.encode_to_vec());
    py.invalid(&["--public-key", &key, "--decision", &flipped, "--proof", &proof_file], "does not verify").await;
    let mut b = bundle(&proof);
    b["entry"] = base64::engine::general_purpose::STANDARD.encode(env.encode_to_vec()).into();
    py.invalid(&["--public-key", &key, "--bundle", &json("flipped.json", &b)], "does not verify").await;

    // A wrong key; the right key under another log's origin.
    let other = ed25519_dalek::SigningKey::from_bytes(&[7; 32]).verifying_key();
    py.invalid(&["--public-key", &hex::encode(other.as_bytes()), "--bundle", &bundle_file], "no signature by key")
        .await;
    let node_key = ed25519_dalek::VerifyingKey::try_from(info.keys[0].public_key.as_slice()).unwrap();
    let elsewhere = silkgate_core::checkpoint::vkey("silkgate/other-node/1", &node_key);
    py.invalid(&["--public-key", &elsewhere, "--bundle", &bundle_file], "checkpoint: origin").await;

    // A wrong proof hash.
    let mut p = proof.clone();
    p.hashes[1][0] ^= 0x80;
    py.invalid(
        &["--public-key", &key, "--bundle", &json("hash.json", &bundle(&p))],
        "does not lead to the checkpoint's root",
    )
    .await;
    py.invalid(
        &["--public-key", &key, "--decision", &decision_file, "--proof", &file("hash.pb", &p.encode_to_vec())],
        "does not lead to the checkpoint's root",
    )
    .await;
    // A proof one hash short, and the right path for another index.
    let mut p = proof.clone();
    p.hashes.pop();
    py.invalid(&["--public-key", &key, "--bundle", &json("short.json", &bundle(&p))], "shorter than the path").await;
    let mut p = proof.clone();
    p.index = 3;
    py.invalid(
        &["--public-key", &key, "--bundle", &json("index.json", &bundle(&p))],
        "does not lead to the checkpoint's root",
    )
    .await;

    // A checkpoint whose body was changed, and a proof for a size it does not sign.
    let mut b = bundle(&proof);
    b["checkpoint"] = b["checkpoint"].as_str().unwrap().replacen("\n5\n", "\n6\n", 1).into();
    py.invalid(
        &["--public-key", &key, "--bundle", &json("note.json", &b)],
        "checkpoint: the node's signature does not verify",
    )
    .await;
    let mut b = bundle(&proof);
    b["tree_size"] = 6.into();
    py.invalid(&["--public-key", &key, "--bundle", &json("size.json", &b)], "checkpoint size 5 differs").await;

    // A valid decision that is not the proof's entry, and one held past its not_after.
    let other_decision = file("other.pb", &answers[3].decision.as_ref().unwrap().encode_to_vec());
    py.invalid(
        &["--public-key", &key, "--decision", &other_decision, "--bundle", &bundle_file],
        "is not the decision held",
    )
    .await;
    py.invalid(&["--public-key", &key, "--bundle", &bundle_file, "--valid-at", "2099-01-01T00:00:00Z"], "expired")
        .await;

    node.stop().await;
}

/// Every paragraph of every `python` block of the guide is code from its scripts, so the
/// guide shows what the test above runs.
#[test]
fn the_guide_quotes_the_scripts() {
    let guide = fs::read_to_string(repo().join("docs/verify-python.md")).unwrap();
    let scripts = ["verify_decision.py", "get_evidence.py"]
        .map(|s| fs::read_to_string(repo().join("docs/python").join(s)).unwrap())
        .concat();
    let mut blocks = 0;
    for block in guide.split("```python\n").skip(1) {
        let code = block.split_once("```").expect("a python block is closed").0;
        for paragraph in code.trim_end_matches('\n').split("\n\n") {
            assert!(scripts.contains(paragraph), "not in docs/python/*.py:\n{paragraph}");
        }
        blocks += 1;
    }
    assert!(blocks >= 8, "{blocks} python blocks");
}
