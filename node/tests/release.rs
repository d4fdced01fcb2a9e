//! Signed policy releases and policy activations, in process: a node with policy
//! authorities applies only releases that verify and meet the threshold, logs each
//! activation before deciding under it, and `log verify` ties every decision to its
//! activation.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use ed25519_dalek::SigningKey;
use prost::Message;
use silkgate::authority::{self, Activator, Authorities};
use silkgate::log::{Entry, LogHandle, Store};
use silkgate::proto::{self, compliance_client::ComplianceClient};
use silkgate::reload::Watcher;
use silkgate::service::NodeState;
use silkgate_core::decision::{self, Signer};
use silkgate_core::time::UnixTime;
use silkgate_verify::release::{self, ACTIVATION_PAYLOAD_TYPE, RELEASE_PAYLOAD_TYPE};

fn authority_key(n: u8) -> SigningKey {
    SigningKey::from_bytes(&[n; 32])
}

/// The test policy at `version`; `deny_mining` keeps its one deny rule.
fn policy(version: &str, deny_mining: bool) -> String {
    let rule = if deny_mining {
        "[[rule]]\nid = \"xx.mining\"\neffect = \"deny\"\nwhen = 'deployment_kind == \"mining\"'\nmessage = \"no mining\"\ncitation = \"XX Act s. 1\"\n"
    } else {
        "[[rule]]\nid = \"xx.mining\"\neffect = \"warn\"\nwhen = 'deployment_kind == \"mining\"'\nmessage = \"mining noted\"\ncitation = \"XX Act s. 1\"\n"
    };
    format!(
        "[policy]\nid = \"xx\"\njurisdiction = \"XX\"\nname = \"XX\"\nversion = \"{version}\"\ndefault = \"allow\"\n\n{rule}"
    )
}

/// Writes `xx.release` for the policy now in `dir`, signed by `keys`.
fn sign_release(dir: &Path, keys: &[&SigningKey], rollback: Option<&str>) {
    let p = silkgate::loader::load_file(&dir.join("xx.toml")).unwrap();
    let r = proto::PolicyRelease {
        jurisdiction: p.jurisdiction.clone(),
        policy_id: p.id.clone(),
        version: p.version.clone(),
        policy_sha256: p.digest.to_vec(),
        released_at: Some(UnixTime::now().to_timestamp()),
        rollback: rollback.is_some(),
        supersedes: rollback.unwrap_or_default().to_string(),
    };
    let mut env = release::envelope(RELEASE_PAYLOAD_TYPE, r.encode_to_vec());
    for k in keys {
        release::add_signature(&mut env, k);
    }
    let json = serde_json::to_string_pretty(&decision::to_dsse_json(&env)).unwrap();
    std::fs::write(dir.join("xx.release"), json).unwrap();
}

/// Two of three keys (1, 2, 3) sign for XX.
fn authorities(dir: &Path) -> Authorities {
    let keys: Vec<String> =
        (1..=3).map(|n| format!("\"{}\"", hex::encode(authority_key(n).verifying_key().as_bytes()))).collect();
    let path = dir.join("authorities.toml");
    std::fs::write(&path, format!("[jurisdictions.XX]\nthreshold = 2\nkeys = [{}]\n", keys.join(", "))).unwrap();
    Authorities::load(&path).unwrap()
}

struct TestNode {
    _dir: tempfile::TempDir,
    policy_dir: PathBuf,
    data_dir: PathBuf,
    state: Arc<NodeState>,
    watcher: Arc<Watcher>,
    client: ComplianceClient<tonic::transport::Channel>,
}

impl TestNode {
    /// A node with the authorities above, over a policy directory that `setup` fills.
    async fn start(setup: impl FnOnce(&Path)) -> Result<TestNode, String> {
        Self::start_with(setup, None::<fn(&Path)>).await
    }

    /// With `waivers`, the node also has a waiver directory that it fills.
    async fn start_with(setup: impl FnOnce(&Path), waivers: Option<impl FnOnce(&Path)>) -> Result<TestNode, String> {
        let dir = tempfile::tempdir().unwrap();
        let policy_dir = dir.path().join("policy");
        let data_dir = dir.path().join("data");
        std::fs::create_dir_all(&policy_dir).unwrap();
        setup(&policy_dir);
        let waiver_dir = waivers.map(|fill| {
            let w = dir.path().join("waivers");
            std::fs::create_dir_all(&w).unwrap();
            fill(&w);
            w
        });
        let auth = Arc::new(authorities(dir.path()));
        let set = silkgate::loader::load_dir(&policy_dir, None).map_err(|e| e.to_string())?;
        let prepared = authority::prepare(set, None, Some(&auth), waiver_dir.as_deref()).map_err(|e| e.to_string())?;
        let key = silkgate::keys::load_or_create(&data_dir.join("node.key")).unwrap();
        let signer = Arc::new(key.signer);
        let log = silkgate::log::open(&data_dir, "rel", signer.clone()).unwrap();
        let a = Activator { node_id: "rel", signer: &signer, log: &log };
        let logged =
            prepared.log_activations(None, &a, UnixTime::now(), &policy_dir).await.map_err(|e| e.to_string())?;
        let (set, releases) = prepared.finish(None, Some(logged));
        let mut state = NodeState::new("rel".into(), set, signer, key.valid_from, 60, Some(log));
        state.authorities = Some(auth);
        state.waiver_dir = waiver_dir;
        state.reload.lock().unwrap().releases = releases;
        let state = Arc::new(state);
        let watcher = Arc::new(Watcher {
            dir: policy_dir.clone(),
            only: None,
            state: state.clone(),
            status: state.reload.clone(),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(silkgate::server::run_with(listener, state.clone(), Default::default(), std::future::pending()));
        let client = common::connect(&format!("http://{addr}")).await;
        Ok(TestNode { _dir: dir, policy_dir, data_dir, state, watcher, client })
    }

    /// Reloads as the watcher does (on a blocking thread of the runtime).
    async fn reload(&self) -> bool {
        let w = self.watcher.clone();
        tokio::task::spawn_blocking(move || w.reload()).await.unwrap()
    }

    /// Evaluates a mining deployment: DENY under a deny rule, ALLOW under a warn rule.
    async fn mining(&mut self) -> (proto::Decision, u64) {
        let mut req = common::request("XX", "m");
        req.request.as_mut().unwrap().deployment_kind = proto::DeploymentKind::Mining as i32;
        let resp = self.client.evaluate(req).await.unwrap().into_inner();
        let env = resp.decision.unwrap();
        (proto::Decision::decode(env.payload.as_slice()).unwrap(), resp.log_index)
    }

    fn entry(&self, index: u64) -> proto::SignedDecision {
        let log = self.state.log.as_ref().unwrap();
        let (_, data) = log.entries(index, 1).unwrap().remove(0);
        proto::SignedDecision::decode(data.as_slice()).unwrap()
    }

    fn node_key(&self) -> ed25519_dalek::VerifyingKey {
        self.state.signer.verifying_key()
    }
}

fn verdict(d: &proto::Decision) -> proto::Verdict {
    proto::Verdict::try_from(d.verdict).unwrap()
}

#[tokio::test]
async fn an_unsigned_or_under_threshold_edit_never_changes_a_decision_and_a_signed_release_does() {
    let mut node = TestNode::start(|dir| {
        std::fs::write(dir.join("xx.toml"), policy("1", true)).unwrap();
        sign_release(dir, &[&authority_key(1), &authority_key(2)], None);
    })
    .await
    .unwrap();
    let (d, _) = node.mining().await;
    assert_eq!(verdict(&d), proto::Verdict::Deny);
    let first_activation = d.activation_index.expect("a decision names its activation");

    // An edit with no new release: the old release's digest does not match.
    std::fs::write(node.policy_dir.join("xx.toml"), policy("2", false)).unwrap();
    assert!(!node.reload().await, "an unsigned edit was applied");
    let status = node.state.reload.lock().unwrap().clone();
    assert!(status.last_error.contains("differs from the digest of the files on disk"), "{}", status.last_error);
    assert!(status.jurisdiction_errors["XX"].contains("xx.toml"), "{status:?}");
    assert_eq!(verdict(&node.mining().await.0), proto::Verdict::Deny);

    // Signed by one key of the two needed; then by one authority key and an outsider.
    sign_release(&node.policy_dir, &[&authority_key(3)], None);
    assert!(!node.reload().await, "an under-threshold release was applied");
    assert!(node.state.reload.lock().unwrap().last_error.contains("signed by 1 of the authority's keys, 2 needed"));
    sign_release(&node.policy_dir, &[&authority_key(3), &authority_key(9)], None);
    assert!(!node.reload().await, "an outsider's signature counted");
    // An unsigned release, with three keys configured.
    sign_release(&node.policy_dir, &[], None);
    assert!(!node.reload().await, "an unsigned release was applied");
    let (d, _) = node.mining().await;
    assert_eq!(verdict(&d), proto::Verdict::Deny);
    assert_eq!(d.activation_index, Some(first_activation));

    // Signed to the threshold: it takes effect live, with a new activation before it.
    sign_release(&node.policy_dir, &[&authority_key(2), &authority_key(3)], None);
    assert!(node.reload().await, "{}", node.state.reload.lock().unwrap().last_error);
    let (d, index) = node.mining().await;
    assert_eq!(verdict(&d), proto::Verdict::Allow);
    let activation = d.activation_index.unwrap();
    assert!(first_activation < activation && activation < index, "{first_activation} {activation} {index}");
    let env = node.entry(activation);
    assert_eq!(env.payload_type, ACTIVATION_PAYLOAD_TYPE);
    let a = release::verify_activation(&env, &[node.node_key()]).unwrap();
    assert_eq!((a.jurisdiction.as_str(), a.version.as_str()), ("XX", "2"));
    assert_eq!(a.policy_sha256, d.policy.as_ref().unwrap().sha256);
    // The activation carries the signed release, which verifies with the authority.
    let signed = proto::SignedDecision::decode(a.release.as_slice()).unwrap();
    let auth = authorities(node.policy_dir.parent().unwrap());
    let r = release::verify_release(&signed, &auth.by_jurisdiction["XX"], "XX").unwrap();
    assert_eq!(r.release.policy_sha256, a.policy_sha256);

    // NodeInfo says what is in force and who signed it.
    let info = node.client.node_info(proto::NodeInfoRequest {}).await.unwrap().into_inner();
    assert!(info.policy_authorities_configured);
    let j = &info.jurisdictions[0];
    assert_eq!((j.release_version.as_str(), j.activation_index), ("2", Some(activation)));
    assert_eq!(j.release_signer_key_ids, r.signers);
    assert!(info.last_reload_error.is_empty());
}

#[tokio::test]
async fn a_rollback_needs_its_own_signed_release() {
    let mut node = TestNode::start(|dir| {
        std::fs::write(dir.join("xx.toml"), policy("2", false)).unwrap();
        sign_release(dir, &[&authority_key(1), &authority_key(2)], None);
    })
    .await
    .unwrap();
    assert_eq!(verdict(&node.mining().await.0), proto::Verdict::Allow);
    // Version 1, properly signed, but lower than the version in force.
    std::fs::write(node.policy_dir.join("xx.toml"), policy("1", true)).unwrap();
    sign_release(&node.policy_dir, &[&authority_key(1), &authority_key(2)], None);
    assert!(!node.reload().await, "a silent rollback was applied");
    assert!(node.state.reload.lock().unwrap().last_error.contains("lower than the version in force"));
    // A rollback release naming another version in force is refused too.
    sign_release(&node.policy_dir, &[&authority_key(1), &authority_key(2)], Some("3"));
    assert!(!node.reload().await);
    assert_eq!(verdict(&node.mining().await.0), proto::Verdict::Allow);
    sign_release(&node.policy_dir, &[&authority_key(1), &authority_key(2)], Some("2"));
    assert!(node.reload().await, "{}", node.state.reload.lock().unwrap().last_error);
    assert_eq!(verdict(&node.mining().await.0), proto::Verdict::Deny);
}

#[tokio::test]
async fn a_node_with_authorities_does_not_start_on_an_unsigned_policy() {
    for keys in [&[][..], &[&authority_key(1)][..]] {
        let err = TestNode::start(|dir| {
            std::fs::write(dir.join("xx.toml"), policy("1", true)).unwrap();
            sign_release(dir, keys, None);
        })
        .await
        .err()
        .expect("the node started");
        assert!(err.contains("needed"), "{err}");
    }
    let err = TestNode::start(|dir| std::fs::write(dir.join("xx.toml"), policy("1", true)).unwrap())
        .await
        .err()
        .expect("the node started without a release");
    assert!(err.contains("xx.release"), "{err}");
}

#[tokio::test]
async fn activations_come_first_and_log_verify_ties_decisions_to_them() {
    let mut node = TestNode::start(|dir| {
        std::fs::write(dir.join("xx.toml"), policy("1", true)).unwrap();
        sign_release(dir, &[&authority_key(1), &authority_key(2)], None);
    })
    .await
    .unwrap();
    let (d, index) = node.mining().await;
    assert_eq!(d.activation_index, Some(0));
    assert_eq!(node.entry(0).payload_type, ACTIVATION_PAYLOAD_TYPE);
    assert!(index > 0);
    let key = node.node_key();
    node.state.log.as_ref().unwrap().close().unwrap();
    let report = silkgate::log::audit::audit(&node.data_dir.join("log"), &key, |_, _| {}).unwrap();
    assert_eq!(report.entries, index + 1);
}

/// A log holding an activation of XX at 0, then `decision` (signed by the node key).
fn audit_with(decision_for: impl FnOnce(&proto::PolicyActivation) -> proto::Decision) -> Result<(), String> {
    let dir = tempfile::tempdir().unwrap();
    let signer = Arc::new(Signer::new(authority_key(7)));
    let a = proto::PolicyActivation {
        jurisdiction: "XX".into(),
        policy_sha256: vec![1; 32],
        key_id: signer.key_id().into(),
        ..Default::default()
    };
    let act = decision::sign_as(ACTIVATION_PAYLOAD_TYPE, &a, &signer);
    let mut d = decision_for(&a);
    d.key_id = signer.key_id().into();
    let dec = decision::sign(&d, &signer);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let store = Store::open(dir.path(), "silkgate/audit/1", &signer.verifying_key()).unwrap();
        let log = LogHandle::start(store, signer.clone(), Default::default()).unwrap();
        log.append(vec![
            Entry { data: act.encode_to_vec().into(), id: None },
            Entry { data: dec.encode_to_vec().into(), id: None },
        ])
        .await
        .unwrap();
        log.close().unwrap();
    });
    silkgate::log::audit::audit(dir.path(), &signer.verifying_key(), |_, _| {}).map(|_| ()).map_err(|e| e.to_string())
}

#[test]
fn log_verify_catches_a_decision_naming_a_wrong_activation() {
    let good = |a: &proto::PolicyActivation| proto::Decision {
        decision_id: "d".into(),
        jurisdiction: a.jurisdiction.clone(),
        policy: Some(proto::PolicyRef { sha256: a.policy_sha256.clone(), ..Default::default() }),
        activation_index: Some(0),
        ..Default::default()
    };
    audit_with(good).unwrap();
    type Change = fn(&mut proto::Decision);
    let cases: [(Change, &str); 5] = [
        (|d| d.policy.as_mut().unwrap().sha256 = vec![2; 32], "which activated XX policy"),
        (|d| d.jurisdiction = "YY".into(), "which activated XX policy"),
        (|d| d.activation_index = Some(1), "does not precede it"),
        (|d| d.activation_index = Some(5), "does not precede it"),
        (|d| d.activation_index = None, "names no policy activation"),
    ];
    for (change, want) in cases {
        let err = audit_with(|a| {
            let mut d = good(a);
            change(&mut d);
            d
        })
        .unwrap_err();
        assert!(err.contains("entry 1") && err.contains(want), "{err}");
    }
}

/// A policy with a soft rule on mining (waivable for 30 days) and a hard one on bitcoin.
fn soft_policy() -> String {
    policy("1", true).replace("effect = \"deny\"", "level = \"soft\"\nmax_waiver_days = 30")
        + "\n[[rule]]\nid = \"xx.btc\"\nlevel = \"hard\"\nwhen = 'protocol.name == \"bitcoin\"'\nmessage = \"no bitcoin\"\ncitation = \"XX Act s. 2\"\n"
}

/// Writes `name.waiver` in `dir`: `rules` waived for requests of `protocol`, from
/// `from` to `until` (Unix seconds), signed by authority keys 1 and 2.
fn write_waiver(dir: &Path, name: &str, rules: &[&str], protocol: &str, from: i64, until: i64) -> [u8; 32] {
    let w = proto::Waiver {
        jurisdiction: "XX".into(),
        waiver_id: name.into(),
        rule_ids: rules.iter().map(|r| r.to_string()).collect(),
        scope: Some(proto::WaiverScope { protocol_name: protocol.into(), ..Default::default() }),
        justification: "pilot".into(),
        ticket: "T-1".into(),
        not_before: Some(prost_types::Timestamp { seconds: from, nanos: 0 }),
        expires: Some(prost_types::Timestamp { seconds: until, nanos: 0 }),
    };
    let mut env = release::envelope(silkgate_verify::waiver::WAIVER_PAYLOAD_TYPE, w.encode_to_vec());
    release::add_signature(&mut env, &authority_key(1));
    release::add_signature(&mut env, &authority_key(2));
    let json = serde_json::to_string_pretty(&decision::to_dsse_json(&env)).unwrap();
    std::fs::write(dir.join(format!("{name}.waiver")), json).unwrap();
    <sha2::Sha256 as sha2::Digest>::digest(&env.payload).into()
}

#[tokio::test]
async fn a_waiver_lifts_a_soft_rule_in_its_scope_only_and_never_a_hard_one() {
    let now = UnixTime::now().secs;
    let digest = std::cell::Cell::new([0; 32]);
    let mut node = TestNode::start_with(
        |dir| {
            std::fs::write(dir.join("xx.toml"), soft_policy()).unwrap();
            sign_release(dir, &[&authority_key(1), &authority_key(2)], None);
        },
        Some(|w: &Path| {
            digest.set(write_waiver(w, "fabric", &["xx.mining"], "hyperledger-fabric", now - 60, now + 3600));
            // Expired a second before now: loaded, applies to nothing.
            write_waiver(w, "old", &["xx.mining"], "ethereum", now - 7200, now - 1);
        }),
    )
    .await
    .unwrap();
    let (d, index) = node.mining().await;
    assert_eq!(verdict(&d), proto::Verdict::Allow, "the soft rule is waived for fabric");
    let r = &d.matched_rules[0];
    assert_eq!((r.id.as_str(), r.level), ("xx.mining", proto::Level::Soft as i32));
    assert_eq!(r.waiver_sha256, digest.get().to_vec());
    let at = r.waiver_log_index.expect("the waiver's log entry");
    assert!(at < index);
    let entry = node.entry(at);
    assert_eq!(entry.payload_type, silkgate_verify::waiver::WAIVER_PAYLOAD_TYPE);
    assert_eq!(<[u8; 32]>::from(<sha2::Sha256 as sha2::Digest>::digest(&entry.payload)), digest.get());

    // Out of scope (another protocol, whose waiver has expired): still blocked.
    let mut req = common::request("XX", "eth");
    let r = req.request.as_mut().unwrap();
    r.deployment_kind = proto::DeploymentKind::Mining as i32;
    r.protocol.as_mut().unwrap().name = "ethereum".into();
    let resp = node.client.evaluate(req).await.unwrap().into_inner();
    let d2 = proto::Decision::decode(resp.decision.unwrap().payload.as_slice()).unwrap();
    assert_eq!(verdict(&d2), proto::Verdict::Deny);
    assert!(d2.matched_rules[0].waiver_sha256.is_empty());
    let info = node.client.node_info(proto::NodeInfoRequest {}).await.unwrap().into_inner();
    assert_eq!((info.waivers_loaded, info.waivers_in_force), (2, 1));

    // A waiver naming the hard rule refuses the whole directory; nothing changes.
    let dir = node.state.waiver_dir.clone().unwrap();
    write_waiver(&dir, "btc", &["xx.btc"], "bitcoin", now - 60, now + 60);
    assert!(!node.reload().await, "a waiver of a hard rule was loaded");
    let e = node.state.reload.lock().unwrap().last_error.clone();
    assert!(e.contains("btc.waiver") && e.contains("`xx.btc` is hard: hard rules cannot be waived"), "{e}");
    std::fs::remove_file(dir.join("btc.waiver")).unwrap();
    // Longer than the rule's 30 days: refused too.
    write_waiver(&dir, "long", &["xx.mining"], "x", now, now + 31 * 86_400);
    assert!(!node.reload().await);
    assert!(node.state.reload.lock().unwrap().last_error.contains("more than the 30 days"));
    std::fs::remove_file(dir.join("long.waiver")).unwrap();
    assert_eq!(verdict(&node.mining().await.0), proto::Verdict::Allow);

    // The log, waiver entries and waived decisions included, audits.
    let key = node.node_key();
    node.state.log.as_ref().unwrap().close().unwrap();
    silkgate::log::audit::audit(&node.data_dir.join("log"), &key, |_, _| {}).unwrap();
}
