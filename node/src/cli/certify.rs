//! `silkgate certify --node URL FILE`: ask a member node, as gateway, for one deployment
//! certificate covering every jurisdiction a request file's deployment touches.

use std::path::PathBuf;

use silkgate::proto;
use silkgate_core::request::file::RequestFile;
use silkgate_verify::decision::to_dsse_json;
use silkgate_verify::proto::CertificateVerdict;

use super::certificate::{EXIT_DENY, EXIT_INCOMPLETE};
use super::{EXIT_INVALID, fail};

#[derive(clap::Args)]
pub struct Args {
    /// Request file (TOML, or JSON by its `.json` extension).
    file: PathBuf,
    /// The gateway node, e.g. http://127.0.0.1:50051 (https:// for TLS).
    #[arg(long)]
    node: String,
    /// Where to write the certificate (DSSE JSON) [default: stdout].
    #[arg(long)]
    out: Option<PathBuf>,
    /// CA certificate (PEM) for an https:// node.
    #[arg(long)]
    ca: Option<PathBuf>,
    /// Client certificate and key (PEM) for mutual TLS.
    #[arg(long, requires = "key")]
    cert: Option<PathBuf>,
    #[arg(long, requires = "cert")]
    key: Option<PathBuf>,
    /// Time to wait for the certificate, in seconds.
    #[arg(long, default_value_t = 30)]
    timeout_secs: u64,
}

fn endpoint(a: &Args) -> Result<tonic::transport::Endpoint, String> {
    use tonic::transport::{Certificate, ClientTlsConfig, Identity};
    let read = |p: &PathBuf| std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()));
    let mut ep = tonic::transport::Endpoint::from_shared(a.node.clone()).map_err(|e| format!("--node: {e}"))?;
    ep = ep.timeout(std::time::Duration::from_secs(a.timeout_secs));
    if a.node.starts_with("https://") {
        let mut tls = ClientTlsConfig::new().with_enabled_roots();
        if let Some(ca) = &a.ca {
            tls = tls.ca_certificate(Certificate::from_pem(read(ca)?));
        }
        if let (Some(c), Some(k)) = (&a.cert, &a.key) {
            tls = tls.identity(Identity::from_pem(read(c)?, read(k)?));
        }
        ep = ep.tls_config(tls).map_err(|e| format!("tls: {e}"))?;
    }
    Ok(ep)
}

pub fn run(a: Args) -> u8 {
    let text = match std::fs::read_to_string(&a.file) {
        Ok(t) => t,
        Err(e) => return fail(format!("{}: {e}", a.file.display())),
    };
    let file = if a.file.extension().is_some_and(|e| e == "json") {
        RequestFile::from_json(&text)
    } else {
        RequestFile::from_toml(&text)
    };
    let request = match file.map_err(|e| e.to_string()).and_then(|f| f.to_proto().map_err(|e| e.to_string())) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {}: {e}", a.file.display());
            return EXIT_INVALID;
        }
    };
    let ep = match endpoint(&a) {
        Ok(e) => e,
        Err(e) => return fail(e),
    };
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => return fail(e),
    };
    let answer = rt.block_on(async {
        let channel = ep.connect().await.map_err(|e| format!("connect {}: {e}", a.node))?;
        proto::network_client::NetworkClient::new(channel)
            .certify(proto::CertifyRequest { request: Some(request) })
            .await
            .map(|r| r.into_inner())
            .map_err(|s| format!("Certify: {:?}: {}", s.code(), s.message()))
    });
    let answer = match answer {
        Ok(a) => a,
        Err(e) => return fail(e),
    };
    let Some(env) = answer.certificate else { return fail("the node answered no certificate") };
    let cert: proto::DeploymentCertificate = match prost::Message::decode(env.payload.as_slice()) {
        Ok(c) => c,
        Err(e) => return fail(format!("the certificate does not decode: {e}")),
    };
    let json = format!("{:#}\n", to_dsse_json(&env));
    match &a.out {
        Some(p) => {
            if let Err(e) = std::fs::write(p, json) {
                return fail(format!("{}: {e}", p.display()));
            }
        }
        None => print!("{json}"),
    }
    let verdict = CertificateVerdict::try_from(cert.verdict).unwrap_or(CertificateVerdict::Unspecified);
    eprintln!(
        "certificate {} (log index {}): {} for {}",
        cert.certificate_id,
        answer.log_index,
        verdict.as_str_name().trim_start_matches("CERTIFICATE_VERDICT_"),
        cert.jurisdictions.join(", ")
    );
    for m in &cert.missing {
        eprintln!("  {}: missing: {}", m.jurisdiction, m.reason);
    }
    eprintln!("not verified here: check it with `silkgate certificate verify`");
    match verdict {
        CertificateVerdict::Allow => 0,
        CertificateVerdict::Deny => EXIT_DENY,
        _ => EXIT_INCOMPLETE,
    }
}
