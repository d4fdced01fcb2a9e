//! TLS and mutual TLS: client certificates required, allow-lists per group of RPCs,
//! and certificates swapped on a running server.

use std::path::Path;
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use rustls_pki_types::pem::PemObject;
use silkgate::proto::{self, compliance_client::ComplianceClient, decision_log_client::DecisionLogClient};
use silkgate::server::Options;
use silkgate::service::NodeState;
use silkgate::tls::{Authz, Group, TlsFiles, TlsState};
use tonic::Code;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name.push(DnType::CommonName, name);
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        Ca { issuer: CertifiedIssuer::self_signed(p, KeyPair::generate().unwrap()).unwrap() }
    }

    /// A leaf certificate and key (PEM) for `cn`, with `sans` as DNS/IP names.
    fn leaf(&self, cn: &str, sans: &[&str]) -> (String, String) {
        let mut p = CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
        p.distinguished_name.push(DnType::CommonName, cn);
        let key = KeyPair::generate().unwrap();
        let cert = p.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    fn pem(&self) -> String {
        self.issuer.pem()
    }
}

async fn start(dir: &Path, files: TlsFiles, authz: Authz) -> (std::net::SocketAddr, Arc<TlsState>) {
    let policy = Path::new(env!("CARGO_MANIFEST_DIR")).join("../policy");
    let policies = silkgate::loader::load_dir(&policy, Some(&["CN".to_string()])).unwrap();
    let key = silkgate::keys::load_or_create(&dir.join("node.key")).unwrap();
    let signer = Arc::new(key.signer);
    let log = silkgate::log::open(dir, "tls-test", signer.clone()).unwrap();
    let state = Arc::new(NodeState::new("tls-test".into(), policies, signer, key.valid_from, 60, Some(log)));
    let tls = Arc::new(TlsState::load(files).unwrap());
    let options = Options { tls: Some(tls.clone()), authz, ..Options::default() };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(silkgate::server::run_with(listener, state, options, std::future::pending()));
    (addr, tls)
}

async fn channel(
    addr: std::net::SocketAddr,
    ca: &str,
    id: Option<&(String, String)>,
) -> Result<Channel, tonic::transport::Error> {
    let mut tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca)).domain_name("localhost");
    if let Some((cert, key)) = id {
        tls = tls.identity(Identity::from_pem(cert, key));
    }
    Endpoint::from_shared(format!("https://{addr}")).unwrap().tls_config(tls).unwrap().connect().await
}

fn request() -> proto::EvaluateRequest {
    proto::EvaluateRequest {
        jurisdiction: "CN".into(),
        request: Some(proto::DeploymentRequest {
            request_id: "tls-1".into(),
            deployment_kind: proto::DeploymentKind::PermissionedApp as i32,
            protocol: Some(proto::Protocol { name: "hyperledger-fabric".into(), ..Default::default() }),
            permission_model: proto::PermissionModel::Permissioned as i32,
            ..Default::default()
        }),
        explain: false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_with_allow_lists_and_reload() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ca = Ca::new("silkgate test CA");
    let (server_cert, server_key) = ca.leaf("node", &["localhost", "127.0.0.1"]);
    std::fs::write(d.join("server.pem"), &server_cert).unwrap();
    std::fs::write(d.join("server.key"), &server_key).unwrap();
    std::fs::write(d.join("ca.pem"), ca.pem()).unwrap();
    let portal = ca.leaf("portal-1", &["portal.example"]);
    let auditor = ca.leaf("auditor-1", &[]);
    let files = TlsFiles { cert: d.join("server.pem"), key: d.join("server.key"), client_ca: Some(d.join("ca.pem")) };
    let mut authz = Authz::default();
    authz.allow.insert(Group::Evaluation, vec!["portal.example".into()]);
    authz.allow.insert(Group::Log, vec!["auditor-1".into()]);
    let (addr, tls) = start(d, files, authz).await;

    // The portal (allowed by its SAN) evaluates, but may not read the log.
    let ch = channel(addr, &ca.pem(), Some(&portal)).await.unwrap();
    let r = ComplianceClient::new(ch.clone()).evaluate(request()).await.unwrap().into_inner();
    assert!(r.decision.is_some());
    let e = DecisionLogClient::new(ch).get_checkpoint(proto::GetCheckpointRequest {}).await.unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    assert!(e.message().contains("may not call log RPCs"), "{}", e.message());

    // The auditor (allowed by its CN) reads the log, but may not evaluate.
    let ch = channel(addr, &ca.pem(), Some(&auditor)).await.unwrap();
    DecisionLogClient::new(ch.clone()).get_checkpoint(proto::GetCheckpointRequest {}).await.unwrap();
    let e = ComplianceClient::new(ch.clone()).evaluate(request()).await.unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    // NodeInfo (admin) has no allow-list here: any client with a valid certificate.
    ComplianceClient::new(ch).node_info(proto::NodeInfoRequest {}).await.unwrap();

    // No client certificate, or one from another CA: the handshake fails.
    let no_id = match channel(addr, &ca.pem(), None).await {
        Ok(ch) => ComplianceClient::new(ch).node_info(proto::NodeInfoRequest {}).await.is_err(),
        Err(_) => true,
    };
    assert!(no_id, "a client without a certificate was served");
    let other = Ca::new("other CA");
    let stranger = other.leaf("portal-1", &["portal.example"]);
    let refused = match channel(addr, &ca.pem(), Some(&stranger)).await {
        Ok(ch) => ComplianceClient::new(ch).node_info(proto::NodeInfoRequest {}).await.is_err(),
        Err(_) => true,
    };
    assert!(refused, "a certificate from an unknown CA was accepted");

    // Certificates swapped on disk and reloaded: new connections get the new server
    // certificate (issued by a new CA); the old files' trust no longer works.
    let ca2 = Ca::new("rotated CA");
    let (cert2, key2) = ca2.leaf("node", &["localhost"]);
    std::fs::write(d.join("server.pem"), cert2).unwrap();
    std::fs::write(d.join("server.key"), key2).unwrap();
    tls.reload().unwrap();
    let ch = channel(addr, &ca2.pem(), Some(&portal)).await.unwrap();
    ComplianceClient::new(ch).evaluate(request()).await.unwrap();
    let old_trust = match channel(addr, &ca.pem(), Some(&portal)).await {
        Ok(ch) => ComplianceClient::new(ch).node_info(proto::NodeInfoRequest {}).await.is_err(),
        Err(_) => true,
    };
    assert!(old_trust, "the old server certificate is still served");

    // A broken file on reload keeps the current certificates.
    std::fs::write(d.join("server.key"), "not a key").unwrap();
    assert!(tls.reload().is_err());
    let ch = channel(addr, &ca2.pem(), Some(&portal)).await.unwrap();
    ComplianceClient::new(ch).evaluate(request()).await.unwrap();
}

#[test]
fn identities_come_from_cn_and_sans() {
    let ca = Ca::new("ca");
    let (cert, _) = ca.leaf("portal-1", &["portal.example", "10.0.0.7"]);
    let der = rustls_pki_types::CertificateDer::from_pem_slice(cert.as_bytes()).unwrap();
    let ids = silkgate::tls::identities(&der);
    assert_eq!(ids, ["portal-1", "portal.example", "10.0.0.7"]);
}
