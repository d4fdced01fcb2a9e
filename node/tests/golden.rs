//! Golden test of the exact signed bytes: a fixed key, policy, request, time and id must
//! always give the same payload and signature. Regenerate (after a deliberate format
//! change only) with `SILKGATE_BLESS=1 cargo test -p silkgate --test golden`.

use ed25519_dalek::SigningKey;
use prost::Message;
use sha2::{Digest, Sha256};
use silkgate::proto;
use silkgate_core::decision::{self, Signer};
use silkgate_core::request::Request;
use silkgate_core::time::UnixTime;

const POLICY: &str = r#"[policy]
id = "golden"
jurisdiction = "XX"
name = "Golden"
version = "1"
default = "allow"

[[rule]]
id = "golden.token"
effect = "deny"
when = 'token.tradable'
message = "tradable tokens are not hosted"
citation = "Golden Act s. 1"
url = "https://example.org/golden"
"#;

#[test]
fn signed_bytes_are_stable() {
    let policy = silkgate_core::policy::from_text("golden.toml", POLICY).unwrap();
    let message = proto::DeploymentRequest {
        request_id: "golden-1".into(),
        deployment_kind: proto::DeploymentKind::OpbChain as i32,
        protocol: Some(proto::Protocol { name: "ethereum".into(), ..Default::default() }),
        permission_model: proto::PermissionModel::Permissionless as i32,
        token: Some(proto::Token { tradable: true, ..Default::default() }),
        ..Default::default()
    };
    let bytes = message.encode_to_vec();
    let req = Request::try_from(message).unwrap();
    let at = UnixTime::from_secs(1_767_225_600); // 2026-01-01T00:00:00Z
    let outcome = policy.evaluate(&req, at.day());
    let signer = Signer::new(SigningKey::from_bytes(&[1; 32]));
    let ctx = decision::Context {
        decision_id: "0190a5f0-0000-7000-8000-000000000001".into(),
        node_id: "golden-node",
        request_sha256: Sha256::digest(&bytes).into(),
        request_id: &req.request_id,
        issued_at: at,
        validity_secs: 86_400,
    };
    let d = decision::build(&policy, &outcome, &ctx, signer.key_id());
    let env = decision::sign(&d, &signer);
    let got = format!(
        "key_id {}\npayload {}\nsig {}\n",
        signer.key_id(),
        hex::encode(&env.payload),
        hex::encode(&env.signatures[0].sig)
    );
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/golden-decision.txt");
    if std::env::var_os("SILKGATE_BLESS").is_some() {
        std::fs::write(&path, &got).unwrap();
    }
    let want = std::fs::read_to_string(&path).unwrap();
    assert_eq!(got, want, "signed bytes changed; see the test's doc comment");
    // The payload decodes back to the same Decision (never re-encoded in between).
    assert_eq!(proto::Decision::decode(env.payload.as_slice()).unwrap(), d);
}
