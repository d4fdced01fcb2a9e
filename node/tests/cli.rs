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
