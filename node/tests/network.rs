//! The network: several real nodes in this process on 127.0.0.1:0, each with its own
//! jurisdiction, key and log, a signed roster naming them, and `Network.Certify` on one
//! of them as the gateway.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use ed25519_dalek::{SigningKey, VerifyingKey};
use prost::Message;
use sha2::{Digest, Sha256};
use silkgate::network::{Offer, PeerConfig, Trust};
use silkgate::proto::{self, network_client::NetworkClient};
use silkgate::service::NodeState;
use silkgate_verify::certificate;
use silkgate_verify::decision::{key_id, to_dsse_json};
use silkgate_verify::proto::{CertificateVerdict, Verdict};
use silkgate_verify::roster::{self, VerifiedRoster};
use tonic::Code;

fn policy(j: &str) -> String {
    format!(
        r#"[policy]
id = "{l}"
jurisdiction = "{j}"
name = "{j}"
version = "1"
default = "allow"

[[rule]]
id = "{l}.mining"
effect = "deny"
when = 'deployment_kind == "mining"'
message = "no mining"
citation = "{j} Act s. 1"
"#,
        l = j.to_lowercase()
    )
}

fn governance(n: u8) -> SigningKey {
    SigningKey::from_bytes(&[n; 32])
}

fn trust() -> Trust {
    Trust { keys: [1, 2, 3].map(|n| governance(n).verifying_key()).to_vec(), threshold: 1 }
}

fn rkey(k: &VerifyingKey) -> proto::RosterKey {
    proto::RosterKey { public_key: k.as_bytes().to_vec(), key_id: key_id(k) }
}

/// A member as the roster names it; `state` is `None` for a node that is not running.
struct Member {
    id: String,
    jurisdiction: String,
    regions: Vec<String>,
    url: String,
    key: VerifyingKey,
    origin: String,
    state: Option<Arc<NodeState>>,
}

async fn member(dir: &Path, id: &str, j: &str, regions: &[&str]) -> Member {
    let (addr, state) =
        common::start_in_process(&dir.join(id), &policy(j), id, silkgate::server::Options::default()).await;
    let origin = state.log.as_ref().unwrap().origin().to_string();
    Member {
        id: id.into(),
        jurisdiction: j.into(),
        regions: regions.iter().map(|r| r.to_string()).collect(),
        url: format!("http://{addr}"),
        key: state.signer.verifying_key(),
        origin,
        state: Some(state),
    }
}

/// A member whose endpoint nobody answers (connection refused).
fn down(id: &str, j: &str, regions: &[&str]) -> Member {
    let port = common::free_port();
    Member {
        id: id.into(),
        jurisdiction: j.into(),
        regions: regions.iter().map(|r| r.to_string()).collect(),
        url: format!("http://127.0.0.1:{port}"),
        key: governance(99).verifying_key(),
        origin: format!("silkgate/{id}/1"),
        state: None,
    }
}

fn roster_of(version: u64, members: &[&Member]) -> proto::Roster {
    let region = |r: &str, j: &str| proto::RegionJurisdiction { region: r.into(), jurisdiction: j.into() };
    proto::Roster {
        network_id: "test-net".into(),
        version,
        issued_at: Some(prost_types::Timestamp { seconds: 1_764_547_200, nanos: 0 }),
        threshold: 2,
        governance_keys: [1, 2, 3].map(|n| rkey(&governance(n).verifying_key())).to_vec(),
        regions: vec![
            region("CN", "CN"),
            region("DE", "EU"),
            region("FR", "EU"),
            region("SG", "SG"),
            region("US", "US"),
        ],
        nodes: members
            .iter()
            .map(|m| proto::RosterNode {
                node_id: m.id.clone(),
                jurisdictions: vec![m.jurisdiction.clone()],
                regions: m.regions.clone(),
                grpc_endpoint: m.url.clone(),
                http_endpoint: String::new(),
                keys: vec![rkey(&m.key)],
                log_origin: m.origin.clone(),
                log_verifier_key: silkgate_verify::checkpoint::vkey(&m.origin, &m.key),
            })
            .collect(),
        witness_quorum: 0,
    }
}

fn signed(r: &proto::Roster, signers: &[u8]) -> proto::SignedDecision {
    let mut env = roster::envelope(r);
    for &n in signers {
        roster::add_signature(&mut env, &governance(n));
    }
    env
}

/// Gives every running member the roster, with `deadline` for its fan-outs.
fn join(members: &[&Member], r: &proto::Roster, deadline: Duration) -> VerifiedRoster {
    let env = signed(r, &[1, 2]);
    for m in members {
        if let Some(s) = &m.state {
            s.network.configure(trust(), PeerConfig { deadline, tls: None });
            assert_eq!(s.network.offer(&env.encode_to_vec()).unwrap(), Offer::Accepted);
        }
    }
    roster::verify(&env, &trust().keys, 1).unwrap()
}

/// A request whose nodes run in CN and SG, with consensus in SG and data stored in FR.
fn request(id: &str) -> proto::DeploymentRequest {
    let mut r = common::request("CN", id).request.unwrap();
    r.node_regions = vec!["CN".into(), "sg".into()];
    r.consensus_node_regions = vec!["SG".into()];
    r.data = Some(proto::DataHandling { storage_regions: vec!["FR".into()], ..Default::default() });
    r
}

async fn certify(m: &Member, r: proto::DeploymentRequest) -> Result<proto::CertifyResponse, tonic::Status> {
    let mut c = NetworkClient::connect(m.url.clone()).await.unwrap();
    c.certify(proto::CertifyRequest { request: Some(r) }).await.map(|r| r.into_inner())
}

fn decode(resp: &proto::CertifyResponse) -> proto::DeploymentCertificate {
    proto::DeploymentCertificate::decode(resp.certificate.as_ref().unwrap().payload.as_slice()).unwrap()
}

#[tokio::test]
async fn a_certificate_covers_every_jurisdiction_and_verifies_offline() {
    let dir = tempfile::tempdir().unwrap();
    let cn = member(dir.path(), "cn-1", "CN", &["CN"]).await;
    let sg = member(dir.path(), "sg-1", "SG", &["SG"]).await;
    let eu = member(dir.path(), "eu-1", "EU", &["FR"]).await;
    let r = roster_of(1, &[&cn, &sg, &eu]);
    let verified = join(&[&cn, &sg, &eu], &r, Duration::from_secs(5));

    let req = request("deploy-1");
    let resp = certify(&sg, req.clone()).await.unwrap();
    let c = decode(&resp);
    assert_eq!(c.verdict, CertificateVerdict::Allow as i32);
    assert_eq!(c.jurisdictions, ["CN", "EU", "SG"]);
    assert!(c.missing.is_empty(), "{:?}", c.missing);
    assert_eq!(c.request_sha256, Sha256::digest(req.encode_to_vec()).to_vec());
    assert_eq!(c.node_id, "sg-1");
    assert_eq!(resp.certificate_id, c.certificate_id);
    let nodes: Vec<&str> = c.evidence.iter().map(|e| e.node_id.as_str()).collect();
    assert_eq!(nodes, ["cn-1", "eu-1", "sg-1"]);

    let env = resp.certificate.clone().unwrap();
    let v = certificate::verify(&env, &verified, Some(silkgate_core::time::UnixTime::now())).unwrap();
    assert_eq!(v.verdict, CertificateVerdict::Allow);
    assert!(v.decisions.iter().all(|d| d.verdict == Verdict::Allow as i32 && d.request_id == "deploy-1"));

    // The certificate is the gateway's log entry, byte for byte, and the log audit
    // accepts certificate leaves.
    let gateway = sg.state.as_ref().unwrap();
    let log = gateway.log.as_ref().unwrap();
    let inc = log.inclusion(resp.log_index, 0).unwrap();
    assert_eq!(inc.entry, env.encode_to_vec());
    let report =
        silkgate::log::audit::audit(&dir.path().join("sg-1").join("log"), &gateway.signer.verifying_key(), |_, _| {});
    assert!(report.is_ok(), "{:?}", report.err());

    // Any denial makes the whole certificate DENY.
    let mut mining = request("deploy-2");
    mining.deployment_kind = proto::DeploymentKind::Mining as i32;
    let denied = certify(&cn, mining).await.unwrap();
    let v = certificate::verify(denied.certificate.as_ref().unwrap(), &verified, None).unwrap();
    assert_eq!(v.verdict, CertificateVerdict::Deny);

    // The command line: exit 0 for ALLOW, 4 for DENY, 1 for a certificate that does
    // not verify (one evidence byte changed, re-signed by the gateway's own key).
    let files = dir.path().join("files");
    std::fs::create_dir_all(&files).unwrap();
    let write = |name: &str, env: &proto::SignedDecision| {
        let p = files.join(name);
        std::fs::write(&p, to_dsse_json(env).to_string()).unwrap();
        p
    };
    let roster_file = write("roster.json", &signed(&r, &[1, 2]));
    let run = |cert: &Path| {
        common::bin()
            .args(["certificate", "verify"])
            .arg(cert)
            .arg("--roster")
            .arg(&roster_file)
            .args(["--network-key", &hex::encode(governance(1).verifying_key().as_bytes())])
            .args(["--network-key", &hex::encode(governance(2).verifying_key().as_bytes())])
            .output()
            .unwrap()
    };
    let out = run(&write("allow.json", &env));
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("CN: ALLOW by cn-1"), "{text}");
    let out = run(&write("deny.json", denied.certificate.as_ref().unwrap()));
    assert_eq!(out.status.code(), Some(4));

    let mut tampered = c.clone();
    let d = &mut tampered.evidence[0].decision;
    let at = d.len() - 70;
    d[at] ^= 1;
    let mut forged = proto::SignedDecision {
        payload: tampered.encode_to_vec(),
        payload_type: certificate::PAYLOAD_TYPE.into(),
        signatures: vec![],
    };
    roster::add_signature(&mut forged, gateway.signer.signing_key());
    let e = certificate::verify(&forged, &verified, None).unwrap_err();
    assert!(e.to_string().starts_with("evidence for CN:"), "{e}");
    let out = run(&write("forged.json", &forged));
    assert_eq!(out.status.code(), Some(1));

    // The verdict cannot be raised: INCOMPLETE or DENY rewritten to ALLOW is refused.
    let mut raised = decode(&denied);
    raised.verdict = CertificateVerdict::Allow as i32;
    let mut forged = proto::SignedDecision {
        payload: raised.encode_to_vec(),
        payload_type: certificate::PAYLOAD_TYPE.into(),
        signatures: vec![],
    };
    roster::add_signature(&mut forged, cn.state.as_ref().unwrap().signer.signing_key());
    let e = certificate::verify(&forged, &verified, None).unwrap_err();
    assert!(e.to_string().starts_with("verdict:"), "{e}");
}

#[tokio::test]
async fn a_node_down_fails_over_to_another_of_its_jurisdiction() {
    let dir = tempfile::tempdir().unwrap();
    let cn_down = down("cn-1", "CN", &["CN"]);
    let cn2 = member(dir.path(), "cn-2", "CN", &["CN"]).await;
    let sg = member(dir.path(), "sg-1", "SG", &["SG"]).await;
    let eu = member(dir.path(), "eu-1", "EU", &["FR"]).await;
    let r = roster_of(1, &[&cn_down, &cn2, &sg, &eu]);
    let verified = join(&[&cn2, &sg, &eu], &r, Duration::from_secs(5));

    let resp = certify(&eu, request("failover")).await.unwrap();
    let c = decode(&resp);
    assert_eq!(c.verdict, CertificateVerdict::Allow as i32, "{:?}", c.missing);
    let cn_evidence = c.evidence.iter().find(|e| e.jurisdiction == "CN").unwrap();
    assert_eq!(cn_evidence.node_id, "cn-2");
    certificate::verify(resp.certificate.as_ref().unwrap(), &verified, None).unwrap();

    // The same through `silkgate certify`: exit 0 for ALLOW, the certificate written.
    let file = dir.path().join("deploy.toml");
    std::fs::write(
        &file,
        "request_id = \"cli-1\"\ndeployment_kind = \"permissioned_app\"\npermission_model = \"permissioned\"\nnode_regions = [\"CN\", \"SG\"]\n\n[protocol]\nname = \"hyperledger-fabric\"\n",
    )
    .unwrap();
    let out_file = dir.path().join("cert.json");
    let url = eu.url.clone();
    let out = tokio::task::spawn_blocking(move || {
        common::bin().args(["certify", "--node", &url]).arg(&file).arg("--out").arg(&out_file).output().unwrap()
    })
    .await
    .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let written = std::fs::read_to_string(dir.path().join("cert.json")).unwrap();
    let env = silkgate_verify::decision::from_dsse_json(&written).unwrap();
    let v = certificate::verify(&env, &verified, None).unwrap();
    assert_eq!(v.certificate.jurisdictions, ["CN", "SG"]);
}

#[tokio::test]
async fn a_jurisdiction_that_does_not_answer_makes_it_incomplete_never_allow() {
    let dir = tempfile::tempdir().unwrap();
    let cn = member(dir.path(), "cn-1", "CN", &["CN"]).await;
    let sg = member(dir.path(), "sg-1", "SG", &["SG"]).await;
    // EU accepts connections and never answers: only the deadline ends the call.
    let stalled = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut eu = down("eu-1", "EU", &["FR"]);
    eu.url = format!("http://{}", stalled.local_addr().unwrap());
    let held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((s, _)) = stalled.accept().await {
            open.push(s);
        }
    });
    let r = roster_of(1, &[&cn, &sg, &eu]);
    let verified = join(&[&cn, &sg], &r, Duration::from_millis(1500));

    let resp = certify(&cn, request("eu-down")).await.unwrap();
    let c = decode(&resp);
    assert_eq!(c.verdict, CertificateVerdict::Incomplete as i32);
    assert_eq!(c.missing.len(), 1);
    assert_eq!(c.missing[0].jurisdiction, "EU");
    assert!(c.missing[0].reason.contains("eu-1"), "{}", c.missing[0].reason);
    let answered: Vec<&str> = c.evidence.iter().map(|e| e.jurisdiction.as_str()).collect();
    assert_eq!(answered, ["CN", "SG"]);
    let v = certificate::verify(resp.certificate.as_ref().unwrap(), &verified, None).unwrap();
    assert_eq!(v.verdict, CertificateVerdict::Incomplete);

    // Dropping the missing jurisdiction to claim ALLOW breaks the certificate.
    let mut claimed = c.clone();
    claimed.missing.clear();
    claimed.verdict = CertificateVerdict::Allow as i32;
    let mut forged = proto::SignedDecision {
        payload: claimed.encode_to_vec(),
        payload_type: certificate::PAYLOAD_TYPE.into(),
        signatures: vec![],
    };
    roster::add_signature(&mut forged, cn.state.as_ref().unwrap().signer.signing_key());
    assert!(certificate::verify(&forged, &verified, None).is_err());
    held.abort();
}

#[tokio::test]
async fn evidence_that_does_not_verify_is_named_and_incomplete() {
    let dir = tempfile::tempdir().unwrap();
    let cn = member(dir.path(), "cn-1", "CN", &["CN"]).await;
    let mut sg = member(dir.path(), "sg-1", "SG", &["SG"]).await;
    let eu = member(dir.path(), "eu-1", "EU", &["FR"]).await;
    // The roster names another key for SG: what SG signs does not verify.
    sg.key = governance(42).verifying_key();
    let r = roster_of(1, &[&cn, &sg, &eu]);
    join(&[&cn, &eu], &r, Duration::from_secs(5));

    let c = decode(&certify(&cn, request("bad-sg")).await.unwrap());
    assert_eq!(c.verdict, CertificateVerdict::Incomplete as i32);
    let names: Vec<&str> = c.missing.iter().map(|m| m.jurisdiction.as_str()).collect();
    assert_eq!(names, ["SG"]);
    assert!(
        c.missing[0].reason.contains("sg-1") && c.missing[0].reason.contains("no signature by a known key"),
        "{}",
        c.missing[0].reason
    );
}

#[tokio::test]
async fn a_region_without_a_member_node_is_failed_precondition() {
    let dir = tempfile::tempdir().unwrap();
    let cn = member(dir.path(), "cn-1", "CN", &["CN"]).await;
    let eu = member(dir.path(), "eu-1", "EU", &["FR"]).await;
    let r = roster_of(1, &[&cn, &eu]);
    join(&[&cn, &eu], &r, Duration::from_secs(5));

    // JP is not in the region table; DE is, but no member node hosts it; SG has no node.
    for (field, region) in [("node_regions", "JP"), ("data.storage_regions", "DE"), ("consensus_node_regions", "SG")] {
        let mut req = common::request("CN", "r").request.unwrap();
        match field {
            "node_regions" => req.node_regions.push(region.into()),
            "consensus_node_regions" => req.consensus_node_regions.push(region.into()),
            _ => req.data = Some(proto::DataHandling { storage_regions: vec![region.into()], ..Default::default() }),
        }
        let e = certify(&cn, req).await.unwrap_err();
        assert_eq!(e.code(), Code::FailedPrecondition, "{region}: {}", e.message());
        assert!(e.message().contains(&format!("request.{field}")), "{}", e.message());
        assert!(e.message().contains(&format!("region `{region}` has no member node")), "{}", e.message());
    }
    // Without a roster, Certify is refused and the node otherwise works as before.
    let lone = member(dir.path(), "lone", "CN", &["CN"]).await;
    let e = certify(&lone, request("x")).await.unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    let mut c = common::connect(&lone.url).await;
    let info = c.node_info(proto::NodeInfoRequest {}).await.unwrap().into_inner();
    assert_eq!((info.roster_version, info.roster_network_id.as_str()), (0, ""));
}

#[tokio::test]
async fn rosters_short_of_signatures_or_older_are_refused_and_the_last_good_stays() {
    let dir = tempfile::tempdir().unwrap();
    let cn = member(dir.path(), "cn-1", "CN", &["CN"]).await;
    let state = cn.state.clone().unwrap();
    let net = &state.network;
    net.configure(trust(), PeerConfig::default());
    let v1 = signed(&roster_of(1, &[&cn]), &[1, 2]);
    assert_eq!(net.offer(&v1.encode_to_vec()), Ok(Offer::Accepted));
    assert_eq!(net.offer(&v1.encode_to_vec()), Ok(Offer::Unchanged));
    let digest1 = net.info().sha256;

    // One signature of the two the roster asks for.
    let e = net.offer(&signed(&roster_of(2, &[&cn]), &[1]).encode_to_vec()).unwrap_err();
    assert!(e.contains("signed by 1 trusted governance key(s), 2 needed"), "{e}");
    // Signed by a key the node does not trust.
    let e = net.offer(&signed(&roster_of(2, &[&cn]), &[1, 9]).encode_to_vec()).unwrap_err();
    assert!(e.contains("not a trusted governance key"), "{e}");
    // The same version with other content.
    let mut other = roster_of(1, &[&cn]);
    other.witness_quorum = 1;
    let e = net.offer(&signed(&other, &[1, 2]).encode_to_vec()).unwrap_err();
    assert!(e.contains("version 1 is already in force with other content"), "{e}");
    assert_eq!((net.info().version, net.info().sha256), (1, digest1.clone()));

    let mut c = common::connect(&cn.url).await;
    let info = c.node_info(proto::NodeInfoRequest {}).await.unwrap().into_inner();
    assert_eq!((info.roster_network_id.as_str(), info.roster_version), ("test-net", 1));
    assert_eq!(info.roster_sha256, digest1);
    assert!(info.roster_error.contains("already in force"), "{}", info.roster_error);

    // Newer versions go in; older ones are a rollback.
    let v3 = signed(&roster_of(3, &[&cn]), &[2, 3]);
    assert_eq!(net.offer(&to_dsse_json(&v3).to_string().into_bytes()), Ok(Offer::Accepted));
    let e = net.offer(&signed(&roster_of(2, &[&cn]), &[1, 2]).encode_to_vec()).unwrap_err();
    assert_eq!(e, "version 2 is lower than version 3 in force (no rollback)");
    assert_eq!(net.info().version, 3);

    // The file watcher: a new version takes effect; one short of signatures does not.
    let file = dir.path().join("roster.json");
    std::fs::write(&file, to_dsse_json(&signed(&roster_of(4, &[&cn]), &[1, 3])).to_string()).unwrap();
    let (_tx, rx) = tokio::sync::mpsc::channel(1);
    tokio::spawn(
        silkgate::network::Watcher { path: file.clone(), network: state.network.clone() }
            .run(Duration::from_millis(50), rx),
    );
    wait(|| net.info().version == 4).await;
    std::fs::write(&file, to_dsse_json(&signed(&roster_of(5, &[&cn]), &[3])).to_string()).unwrap();
    wait(|| !net.info().error.is_empty()).await;
    assert_eq!(net.info().version, 4);
    assert!(net.info().error.contains("1 trusted governance key(s), 2 needed"), "{}", net.info().error);
}

/// Waits until `done` holds, failing the test after 20 s.
async fn wait(done: impl Fn() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(std::time::Instant::now() < deadline, "condition not reached");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[test]
fn roster_sign_and_verify_on_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let key = |name: &str| {
        let p = dir.path().join(name);
        assert!(common::bin().args(["keygen", "--out"]).arg(&p).status().unwrap().success());
        let k = silkgate::keys::load(&p).unwrap().signer.verifying_key();
        (p, hex::encode(k.as_bytes()))
    };
    let (g1, h1) = key("g1.key");
    let (g2, h2) = key("g2.key");
    let node_key = governance(7).verifying_key();
    let origin = "silkgate/cn-1/1";
    let toml = format!(
        r#"network_id = "bsn-test"
version = 1
date = "2026-12-01"
threshold = 2
governance_keys = ["{h1}", "{h2}"]

[regions]
CN = "CN"
FR = "EU"

[[node]]
id = "cn-1"
jurisdictions = ["CN"]
regions = ["CN"]
grpc_endpoint = "http://127.0.0.1:50051"
keys = ["{}"]
log_verifier_key = "{}"
"#,
        hex::encode(node_key.as_bytes()),
        silkgate_verify::checkpoint::vkey(origin, &node_key)
    );
    let src = dir.path().join("roster.toml");
    std::fs::write(&src, &toml).unwrap();
    let out = dir.path().join("roster.json");
    let sign = |args: &[&std::ffi::OsStr]| common::bin().args(["roster", "sign"]).args(args).output().unwrap();
    let o = sign(&["--toml".as_ref(), src.as_ref(), "--key".as_ref(), g1.as_ref(), "--out".as_ref(), out.as_ref()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let verify = || {
        common::bin()
            .args(["roster", "verify"])
            .arg(&out)
            .args(["--network-key", &h1, "--network-key", &h2])
            .output()
            .unwrap()
    };
    let o = verify();
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("signed by 1 trusted governance key(s), 2 needed"));
    // A second signer adds a signature to the same envelope.
    let o = sign(&["--envelope".as_ref(), out.as_ref(), "--key".as_ref(), g2.as_ref(), "--out".as_ref(), out.as_ref()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = verify();
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).contains("roster `bsn-test` version 1"));

    // A region of a node outside the table is refused with its place.
    std::fs::write(&src, toml.replace(r#"regions = ["CN"]"#, r#"regions = ["JP"]"#)).unwrap();
    let o = sign(&["--toml".as_ref(), src.as_ref(), "--key".as_ref(), g1.as_ref(), "--out".as_ref(), out.as_ref()]);
    assert_eq!(o.status.code(), Some(3));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("node[0].regions[0]: `JP` is not in the region table"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    // An unknown key is refused with line and column.
    std::fs::write(&src, toml.replace("version = 1", "version = 1\nversoin = 2")).unwrap();
    let o = sign(&["--toml".as_ref(), src.as_ref(), "--key".as_ref(), g1.as_ref(), "--out".as_ref(), out.as_ref()]);
    assert_eq!(o.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&o.stderr).contains("roster.toml:3:1:"), "{}", String::from_utf8_lossy(&o.stderr));
}

/// `silkgate serve --roster`: a roster short of signatures stops the start (exit 64,
/// naming the roster); a good one shows in NodeInfo.
#[tokio::test]
async fn serve_loads_the_roster_at_start_and_refuses_a_bad_one() {
    let dir = tempfile::tempdir().unwrap();
    let policy_dir = dir.path().join("policy");
    std::fs::create_dir_all(&policy_dir).unwrap();
    std::fs::write(policy_dir.join("cn.toml"), policy("CN")).unwrap();
    let data = dir.path().join("data");
    let member = down("cn-1", "CN", &["CN"]);
    let roster_file = dir.path().join("roster.json");
    let keys: Vec<String> = [1, 2].iter().map(|&n| hex::encode(governance(n).verifying_key().as_bytes())).collect();
    let args = |extra: &[&str]| {
        let mut v: Vec<std::ffi::OsString> = vec![
            "--policy-dir".into(),
            policy_dir.clone().into(),
            "--data-dir".into(),
            data.clone().into(),
            "--roster".into(),
            roster_file.clone().into(),
            "--network-key".into(),
            keys[0].clone().into(),
            "--network-key".into(),
            keys[1].clone().into(),
        ];
        v.extend(extra.iter().map(|s| s.into()));
        v
    };

    std::fs::write(&roster_file, to_dsse_json(&signed(&roster_of(1, &[&member]), &[1])).to_string()).unwrap();
    let out = common::bin().arg("serve").args(args(&[])).env("RUST_LOG", "off").output().unwrap();
    assert_eq!(out.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("roster:") && stderr.contains("2 needed"), "{stderr}");

    std::fs::write(&roster_file, to_dsse_json(&signed(&roster_of(2, &[&member]), &[1, 2])).to_string()).unwrap();
    let args = args(&[]);
    let node = common::Node::start(&args.iter().map(|s| s.as_os_str()).collect::<Vec<_>>());
    let mut c = common::connect(&node.url).await;
    let info = c.node_info(proto::NodeInfoRequest {}).await.unwrap().into_inner();
    assert_eq!((info.roster_network_id.as_str(), info.roster_version), ("test-net", 2));
}
