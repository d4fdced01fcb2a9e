//! TLS and mutual TLS: certificates that reload on SIGHUP, and allow-lists of client
//! identities per group of RPCs.
//!
//! TLS is done here with tokio-rustls rather than tonic's built-in config so the
//! certificate, key and client CA can be swapped on a running server: each new
//! connection is accepted with the configuration current at that moment.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::ServerConfig;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tonic::Status;

use crate::service::capped;
use silkgate_core::request::echo;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{setting}: {path}: {reason}")]
    File { setting: &'static str, path: PathBuf, reason: String },
    #[error("tls: {0}")]
    Config(String),
}

/// Where the certificates come from.
#[derive(Clone, Debug)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// When set, clients must present a certificate issued by this CA.
    pub client_ca: Option<PathBuf>,
}

/// A server TLS configuration that can be reloaded from its files.
pub struct TlsState {
    pub files: TlsFiles,
    config: ArcSwap<ServerConfig>,
}

fn certs(setting: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let fail = |reason: String| TlsError::File { setting, path: path.to_path_buf(), reason };
    let certs: Vec<_> = CertificateDer::pem_file_iter(path)
        .map_err(|e| fail(e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| fail(e.to_string()))?;
    if certs.is_empty() {
        return Err(fail("no PEM certificate in the file".into()));
    }
    Ok(certs)
}

fn build(files: &TlsFiles) -> Result<ServerConfig, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let chain = certs("tls_cert", &files.cert)?;
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|e| TlsError::File {
        setting: "tls_key",
        path: files.key.clone(),
        reason: e.to_string(),
    })?;
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let builder = match &files.client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in certs("tls_client_ca", ca)? {
                roots.add(c).map_err(|e| TlsError::File {
                    setting: "tls_client_ca",
                    path: ca.clone(),
                    reason: e.to_string(),
                })?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| TlsError::Config(e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder
        .with_single_cert(chain, key)
        .map_err(|e| TlsError::Config(format!("certificate and key do not fit together: {e}")))?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(config)
}

impl TlsState {
    pub fn load(files: TlsFiles) -> Result<Self, TlsError> {
        let config = build(&files)?;
        Ok(TlsState { files, config: ArcSwap::from_pointee(config) })
    }

    /// Re-reads the files; on any error the current configuration stays.
    pub fn reload(&self) -> Result<(), TlsError> {
        let config = build(&self.files)?;
        self.config.store(Arc::new(config));
        Ok(())
    }

    pub fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        tokio_rustls::TlsAcceptor::from(self.config.load_full())
    }
}

/// Groups of RPCs that allow-lists apply to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Group {
    /// Evaluate and EvaluateBatch.
    Evaluation,
    /// The DecisionLog service.
    Log,
    /// NodeInfo and server reflection.
    Admin,
    /// The Network service (Certify).
    Network,
}

impl Group {
    pub fn as_str(self) -> &'static str {
        match self {
            Group::Evaluation => "evaluation",
            Group::Log => "log",
            Group::Admin => "admin",
            Group::Network => "network",
        }
    }
}

/// Client identities allowed per group. A group without a list admits every client
/// that completed the handshake; a group with a list admits only the identities on it,
/// so an empty list admits nobody (emptying a list revokes every client, and never
/// turns into "anyone").
#[derive(Clone, Debug, Default)]
pub struct Authz {
    pub allow: BTreeMap<Group, Vec<String>>,
}

/// The identities a client certificate names: its subject common names and its subject
/// alternative names (DNS names, URIs, e-mail addresses, IP addresses).
pub fn identities(der: &[u8]) -> Vec<String> {
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(der) else { return Vec::new() };
    let mut out: Vec<String> =
        cert.subject().iter_common_name().filter_map(|a| a.as_str().ok()).map(String::from).collect();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        use x509_parser::extensions::GeneralName;
        for n in &san.value.general_names {
            match n {
                GeneralName::DNSName(s) | GeneralName::URI(s) | GeneralName::RFC822Name(s) => out.push(s.to_string()),
                GeneralName::IPAddress(b) => match b.len() {
                    4 => out.push(std::net::Ipv4Addr::from(<[u8; 4]>::try_from(*b).unwrap_or_default()).to_string()),
                    16 => out.push(std::net::Ipv6Addr::from(<[u8; 16]>::try_from(*b).unwrap_or_default()).to_string()),
                    _ => {}
                },
                _ => {}
            }
        }
    }
    out
}

impl Authz {
    /// Admits the call when the group has no allow-list or the client's certificate
    /// names an allowed identity. An empty list, or one of empty names only, admits no one.
    pub fn check(&self, peer: Option<Arc<Vec<CertificateDer<'static>>>>, group: Group) -> Result<(), Status> {
        let Some(allowed) = self.allow.get(&group) else { return Ok(()) };
        let ids = peer.as_ref().and_then(|c| c.first()).map(|c| identities(c)).unwrap_or_default();
        if ids.iter().any(|id| !id.is_empty() && allowed.contains(id)) {
            return Ok(());
        }
        Err(Status::permission_denied(capped(format!("{} may not call {} RPCs", who(&ids), group.as_str()))))
    }
}

/// Most identities of a refused client that its error names.
pub const MAX_ECHO_IDENTITIES: usize = 4;

/// A refused client as its error names it: a certificate is the client's input, so each
/// identity is cut to [`silkgate_core::request::MAX_ECHO_CHARS`] characters and at most [`MAX_ECHO_IDENTITIES`]
/// are named (a certificate may carry hundreds of long alternative names).
fn who(ids: &[String]) -> String {
    if ids.is_empty() {
        return "a client without a certificate".to_string();
    }
    let named: Vec<String> = ids.iter().take(MAX_ECHO_IDENTITIES).map(|id| echo(id)).collect();
    let more = match ids.len().saturating_sub(MAX_ECHO_IDENTITIES) {
        0 => String::new(),
        n => format!(" and {n} more"),
    };
    format!("client `{}`{more}", named.join("`, `"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use silkgate_core::request::MAX_ECHO_CHARS;

    fn peer(name: &str) -> Option<Arc<Vec<CertificateDer<'static>>>> {
        let cert = rcgen::generate_simple_self_signed(vec![name.to_string()]).unwrap().cert;
        Some(Arc::new(vec![cert.der().clone()]))
    }

    fn authz(list: Option<&[&str]>) -> Authz {
        let mut a = Authz::default();
        if let Some(list) = list {
            a.allow.insert(Group::Evaluation, list.iter().map(|s| s.to_string()).collect());
        }
        a
    }

    #[test]
    fn an_empty_allow_list_admits_nobody_and_an_absent_one_everybody() {
        let (client, g) = (peer("portal.example"), Group::Evaluation);
        assert!(authz(None).check(client.clone(), g).is_ok());
        assert!(authz(Some(&["portal.example"])).check(client.clone(), g).is_ok());
        assert!(authz(Some(&["other.example"])).check(client.clone(), g).is_err());
        let e = authz(Some(&[])).check(client.clone(), g).unwrap_err();
        assert_eq!(e.code(), tonic::Code::PermissionDenied);
        assert!(e.message().contains("`portal.example` may not call evaluation RPCs"), "{}", e.message());
        assert!(authz(Some(&[""])).check(client, g).is_err());
        assert!(authz(Some(&[])).check(None, g).is_err());
        // Other groups keep their own setting.
        assert!(authz(Some(&[])).check(peer("x"), Group::Log).is_ok());
    }

    fn refusal(names: &[String]) -> String {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(rcgen::DnType::CommonName, names[0].as_str());
        for n in &names[1..] {
            params.subject_alt_names.push(rcgen::SanType::URI(n.as_str().try_into().unwrap()));
        }
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let peer = Some(Arc::new(vec![cert.der().clone()]));
        let e = authz(Some(&["portal.example"])).check(peer, Group::Evaluation).unwrap_err();
        e.message().to_string()
    }

    /// A refused certificate's names are its client's input: each is repeated up to
    /// [`MAX_ECHO_CHARS`] characters and cut past that, and at most
    /// [`MAX_ECHO_IDENTITIES`] of them are named.
    #[test]
    fn a_refused_identity_is_echoed_up_to_the_bound() {
        let at = "a".repeat(MAX_ECHO_CHARS);
        assert_eq!(refusal(std::slice::from_ref(&at)), format!("client `{at}` may not call evaluation RPCs"));
        let past = "a".repeat(MAX_ECHO_CHARS + 1);
        assert_eq!(refusal(&[past]), format!("client `{at}…` may not call evaluation RPCs"));

        let names: Vec<String> = (0..MAX_ECHO_IDENTITIES).map(|i| format!("n{i}")).collect();
        assert_eq!(refusal(&names), "client `n0`, `n1`, `n2`, `n3` may not call evaluation RPCs");
        let names: Vec<String> = (0..=MAX_ECHO_IDENTITIES).map(|i| format!("n{i}")).collect();
        assert_eq!(refusal(&names), "client `n0`, `n1`, `n2`, `n3` and 1 more may not call evaluation RPCs");

        let many: Vec<String> = (0..300).map(|i| format!("{i}{}", "x".repeat(1000))).collect();
        let message = refusal(&many);
        assert!(message.len() < (MAX_ECHO_CHARS + 8) * MAX_ECHO_IDENTITIES + 64, "{} bytes", message.len());
        assert!(message.ends_with("and 296 more may not call evaluation RPCs"), "{message}");
    }
}
