//! The `silkgate` binary's subcommands and their exit codes.

mod common;

use std::path::Path;

use common::POLICY;
use std::process::{Command, Output};

fn silkgate(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_silkgate")).args(args).current_dir(dir).output().unwrap()
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

const REQUEST: &str = r#"request_id = "cli-1"
deployment_kind = "permissioned_app"
permission_model = "permissioned"
[protocol]
name = "hyperledger-fabric"
"#;

fn setup() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("policy")).unwrap();
    std::fs::write(dir.path().join("policy/xx.toml"), POLICY).unwrap();
    std::fs::write(dir.path().join("allow.toml"), REQUEST).unwrap();
    std::fs::write(dir.path().join("deny.toml"), REQUEST.replace("permissioned_app", "mining")).unwrap();
    dir
}

#[test]
fn check_reports_errors_with_positions() {
    let dir = setup();
    let d = dir.path();
    let ok = silkgate(&["check", "policy"], d);
    assert_eq!(ok.status.code(), Some(0), "{}", text(&ok));
    std::fs::write(d.join("policy/xx.toml"), POLICY.replace("\"mining\"", "\"minning\"")).unwrap();
    let bad = silkgate(&["check", "policy"], d);
    assert_eq!(bad.status.code(), Some(3));
    let out = text(&bad);
    assert!(out.contains("policy/xx.toml:11:28: error: `minning` is not a value of `deployment_kind`"), "{out}");
    assert!(out.contains("did you mean \"mining\"?"), "{out}");
}

#[test]
fn eval_sign_and_verify() {
    let dir = setup();
    let d = dir.path();
    let kg = silkgate(&["keygen", "--out", "k.pem"], d);
    assert_eq!(kg.status.code(), Some(0), "{}", text(&kg));
    let public = text(&kg).lines().find_map(|l| l.strip_prefix("public key: ")).unwrap().trim().to_string();

    let allow = silkgate(&["eval", "-j", "XX", "allow.toml"], d);
    assert_eq!(allow.status.code(), Some(0), "{}", text(&allow));
    let deny = silkgate(&["eval", "-j", "XX", "deny.toml", "--sign", "k.pem", "--explain"], d);
    assert_eq!(deny.status.code(), Some(1), "{}", text(&deny));
    // With --sign, stdout is exactly the envelope and the report goes to stderr.
    let report = String::from_utf8_lossy(&deny.stderr).to_string();
    assert!(report.contains("deny  xx.mining: no mining"), "{report}");
    let json = String::from_utf8_lossy(&deny.stdout).to_string();
    serde_json::from_str::<serde_json::Value>(&json).unwrap_or_else(|e| panic!("{e}: {json}"));
    std::fs::write(d.join("d.json"), json).unwrap();

    let v = silkgate(&["verify", "d.json", "--public-key", &public], d);
    assert_eq!(v.status.code(), Some(0), "{}", text(&v));
    assert!(text(&v).contains("VERDICT_DENY"));

    let other = silkgate(&["keygen", "--out", "other.pem"], d);
    let other_pub = text(&other).lines().find_map(|l| l.strip_prefix("public key: ")).unwrap().trim().to_string();
    let v = silkgate(&["verify", "d.json", "--public-key", &other_pub], d);
    assert_eq!(v.status.code(), Some(1), "{}", text(&v));

    let v = silkgate(&["verify", "missing.json", "--public-key", &public], d);
    assert_eq!(v.status.code(), Some(2));

    let bad_req = silkgate(&["eval", "-j", "XX", "allow.toml", "--policy-dir", "nope"], d);
    assert_eq!(bad_req.status.code(), Some(3));
}

#[test]
fn serve_refuses_a_key_readable_by_others() {
    use std::os::unix::fs::PermissionsExt;
    let dir = setup();
    let d = dir.path();
    silkgate(&["keygen", "--out", "k.pem"], d);
    std::fs::set_permissions(d.join("k.pem"), std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = silkgate(&["serve", "--key", "k.pem", "--listen", "127.0.0.1:0"], d);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).contains("(mode 644)"), "{}", text(&out));
}

#[test]
fn serve_refuses_to_make_a_new_key_for_an_existing_log() {
    let dir = setup();
    let d = dir.path();
    std::fs::create_dir_all(d.join("data/log")).unwrap();
    std::fs::write(d.join("data/log/origin"), "silkgate/node-x/1\n").unwrap();
    let out = silkgate(&["serve", "--data-dir", "data", "--listen", "127.0.0.1:0"], d);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("node.key: missing, while the decision log"), "{}", text(&out));
    assert!(!d.join("data/node.key").exists(), "no new key was made");
}

#[test]
fn diff_previews_a_policy_change() {
    let dir = setup();
    let d = dir.path();
    std::fs::create_dir(d.join("new")).unwrap();
    let extra = "\n[[rule]]\nid = \"xx.fabric\"\neffect = \"deny\"\nwhen = 'protocol.name == \"hyperledger-fabric\"'\nmessage = \"m\"\ncitation = \"c\"\n";
    std::fs::write(d.join("new/xx.toml"), format!("{POLICY}{extra}")).unwrap();
    let lines = [
        r#"{"jurisdiction": "XX", "request": {"request_id": "r1", "deployment_kind": "permissioned_app", "permission_model": "permissioned", "protocol": {"name": "hyperledger-fabric"}}}"#,
        r#"{"jurisdiction": "XX", "request": {"request_id": "r2", "deployment_kind": "mining", "permission_model": "permissioned", "protocol": {"name": "bitcoin"}}}"#,
    ];
    std::fs::write(d.join("reqs.jsonl"), lines.join("\n")).unwrap();
    let out = silkgate(&["diff", "--from", "policy", "--to", "new", "--requests", "reqs.jsonl", "--fail-on-change"], d);
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(1), "{shown}");
    assert!(shown.contains("XX r1: allow -> deny (+xx.fabric)"), "{shown}");
    assert!(!shown.contains("r2:"), "{shown}");
    assert!(shown.contains("2 requests, 1 decisions changed"), "{shown}");

    std::fs::write(
        d.join("bad.jsonl"),
        r#"{"jurisdiction": "XX", "request": {"request_id": "x", "services": ["nope"]}}"#,
    )
    .unwrap();
    let out = silkgate(&["diff", "--from", "policy", "--to", "new", "--requests", "bad.jsonl"], d);
    assert_eq!(out.status.code(), Some(3));
    assert!(
        text(&out).contains("bad.jsonl:1: request.services[0]: `nope` is not a value of Service"),
        "{}",
        text(&out)
    );
}

#[test]
fn check_warns_about_rules_that_cannot_matter() {
    let dir = setup();
    let d = dir.path();
    let extra = "\n[[rule]]\nid = \"xx.never\"\neffect = \"deny\"\nwhen = 'node_count > 5 and node_count < 2'\nmessage = \"m\"\ncitation = \"c\"\n";
    std::fs::write(d.join("policy/xx.toml"), format!("{POLICY}{extra}")).unwrap();
    let out = silkgate(&["check", "policy"], d);
    assert_eq!(out.status.code(), Some(0));
    assert!(text(&out).contains("warning: rule `xx.never` can never match"), "{}", text(&out));
}

/// A signed checkpoint note of `origin` at size 3.
fn note(origin: &str, key: &ed25519_dalek::SigningKey) -> String {
    use sha2::Digest as _;
    let root = sha2::Sha256::digest(b"three entries").into();
    silkgate_core::checkpoint::Checkpoint { origin: origin.into(), size: 3, root, extensions: vec![] }.sign(key)
}

#[test]
fn consistency_refuses_a_bad_kept_checkpoint_as_invalid() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let key = ed25519_dalek::SigningKey::from_bytes(&[3; 32]);
    let public = hex::encode(key.verifying_key().as_bytes());
    let origin = "silkgate/n1/1";
    let good = note(origin, &key);
    std::fs::write(d.join("good.note"), &good).unwrap();
    std::fs::write(d.join("other-key.note"), note(origin, &ed25519_dalek::SigningKey::from_bytes(&[4; 32]))).unwrap();
    std::fs::write(d.join("tampered.note"), good.replacen("\n3\n", "\n4\n", 1)).unwrap();
    // Nothing listens on port 1: the node cannot be reached.
    let run = |checkpoint: &str, public_key: &str| {
        let args = ["log", "consistency", "--node", "http://127.0.0.1:1", "--checkpoint", checkpoint];
        silkgate(&[&args[..], &["--public-key", public_key]].concat(), d)
    };

    // Invalid evidence: exit 1, before the node is asked anything.
    for bad in ["other-key.note", "tampered.note"] {
        let out = run(bad, &public);
        assert_eq!(out.status.code(), Some(1), "{bad}: {}", text(&out));
        assert!(text(&out).contains(&format!("invalid: the kept checkpoint {bad}")), "{}", text(&out));
    }
    let other_origin = silkgate_core::checkpoint::vkey("silkgate/n1/2", &key.verifying_key());
    let out = run("good.note", &other_origin);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("the verifier key is for origin `silkgate/n1/2`, not `silkgate/n1/1`"),
        "{}",
        text(&out)
    );

    // Operational errors: exit 2. A good checkpoint gets as far as the unreachable node.
    let out = run("missing.note", &public);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    for k in [public.clone(), silkgate_core::checkpoint::vkey(origin, &key.verifying_key())] {
        let out = run("good.note", &k);
        assert_eq!(out.status.code(), Some(2), "{}", text(&out));
        assert!(text(&out).contains("connect http://127.0.0.1:1"), "{}", text(&out));
    }
}

#[test]
fn public_keys_are_taken_as_hex_verifier_key_or_file_and_key_show_prints_them() {
    let dir = setup();
    let d = dir.path();
    let kg = silkgate(&["keygen", "--out", "k.pem"], d);
    let public = text(&kg).lines().find_map(|l| l.strip_prefix("public key: ")).unwrap().trim().to_string();
    let deny = silkgate(&["eval", "-j", "XX", "deny.toml", "--sign", "k.pem"], d);
    std::fs::write(d.join("d.json"), &deny.stdout).unwrap();

    // Without a log, `key show` has no origin to name; with one it prints the vkey.
    let show = silkgate(&["key", "show", "--key", "k.pem", "--data-dir", "data"], d);
    assert_eq!(show.status.code(), Some(0), "{}", text(&show));
    assert!(text(&show).contains(&format!("public key:   {public}")), "{}", text(&show));
    assert!(text(&show).contains("verifier key: none yet"), "{}", text(&show));
    std::fs::create_dir_all(d.join("data/log")).unwrap();
    std::fs::write(d.join("data/log/origin"), "silkgate/x/1\n").unwrap();
    let show = silkgate(&["key", "show", "--key", "k.pem", "--data-dir", "data"], d);
    let vkey = text(&show).lines().find_map(|l| l.strip_prefix("verifier key: ")).unwrap().trim().to_string();
    assert!(vkey.starts_with("silkgate/x/1+"), "{}", text(&show));
    let (origin, key) = silkgate_core::checkpoint::parse_vkey(&vkey).unwrap();
    assert_eq!((origin.as_str(), hex::encode(key.as_bytes())), ("silkgate/x/1", public.clone()));

    std::fs::write(d.join("vkey.txt"), format!("{vkey}\n")).unwrap();
    std::fs::write(d.join("hex.txt"), format!("{public}\n")).unwrap();
    for k in [public.as_str(), vkey.as_str(), "vkey.txt", "hex.txt"] {
        let v = silkgate(&["verify", "d.json", "--public-key", k], d);
        assert_eq!(v.status.code(), Some(0), "{k}: {}", text(&v));
    }
    // A verifier key whose key hash does not match is refused as a bad argument.
    let mut broken = vkey.clone();
    let hash_at = "silkgate/x/1+".len();
    let flipped = if &broken[hash_at..=hash_at] == "0" { "1" } else { "0" };
    broken.replace_range(hash_at..=hash_at, flipped);
    let v = silkgate(&["verify", "d.json", "--public-key", &broken], d);
    assert_eq!(v.status.code(), Some(2), "{}", text(&v));
    assert!(text(&v).contains("the key hash does not match"), "{}", text(&v));
}

#[test]
fn verify_bundle_takes_a_verifier_key_and_checks_its_origin() {
    use base64::Engine as _;
    use prost::Message as _;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let signer = silkgate_core::decision::Signer::new(ed25519_dalek::SigningKey::from_bytes(&[6; 32]));
    let decision = silkgate::proto::Decision {
        decision_id: "0190d8a2-0000-7000-8000-000000000001".into(),
        key_id: signer.key_id().to_string(),
        ..Default::default()
    };
    let entry = silkgate_core::decision::sign(&decision, &signer).encode_to_vec();
    // A log of one entry: its root is the entry's leaf hash and the proof is empty.
    let origin = "silkgate/b1/1";
    let root = silkgate_core::merkle::leaf_hash(&entry);
    let note = silkgate_core::checkpoint::Checkpoint { origin: origin.into(), size: 1, root, extensions: vec![] }
        .sign(&ed25519_dalek::SigningKey::from_bytes(&[6; 32]));
    let bundle = serde_json::json!({
        "format": "silkgate-evidence-v1",
        "entry": base64::engine::general_purpose::STANDARD.encode(&entry),
        "log_index": 0,
        "tree_size": 1,
        "inclusion_proof": [],
        "checkpoint": note,
    });
    std::fs::write(d.join("bundle.json"), bundle.to_string()).unwrap();
    let vk = signer.verifying_key();
    let run = |k: &str| silkgate(&["log", "verify-bundle", "bundle.json", "--public-key", k], d);
    for k in [hex::encode(vk.as_bytes()), silkgate_core::checkpoint::vkey(origin, &vk)] {
        let out = run(&k);
        assert_eq!(out.status.code(), Some(0), "{k}: {}", text(&out));
        assert!(text(&out).contains("is entry 0 of log silkgate/b1/1 at size 1"), "{}", text(&out));
    }
    let out = run(&silkgate_core::checkpoint::vkey("silkgate/b1/2", &vk));
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("the verifier key is for origin `silkgate/b1/2`, not `silkgate/b1/1`"),
        "{}",
        text(&out)
    );
}
