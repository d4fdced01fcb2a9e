//! The deployment request as plain data, converted from protobuf at the edge.
//!
//! Conversion checks everything the policies rely on, so evaluation never fails:
//! required fields are set, enum numbers are known, region codes are well formed.
//! Closed value sets become small integers and bit sets, so the evaluator compares
//! numbers instead of strings.

pub mod file;

use std::collections::BTreeMap;

use crate::proto;

/// Enum lists are bit sets over the enum numbers (every enum here has fewer than 64 values).
pub type EnumSet = u64;

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Request {
    pub request_id: String,
    pub deployment_kind: i32,
    pub protocol: Protocol,
    pub permission_model: i32,
    pub consensus: String,
    pub node_count: i64,
    pub node_regions: Vec<String>,
    pub consensus_node_regions: Vec<String>,
    pub served_jurisdictions: Vec<String>,
    pub serves_retail: bool,
    pub token: Option<Token>,
    pub gas_payment: i32,
    pub crypto: Crypto,
    pub key_custody: i32,
    pub contract_languages: Vec<String>,
    pub vm: String,
    pub services: EnumSet,
    pub privacy_features: EnumSet,
    /// Lower-cased, so hex addresses compare whatever their checksum casing.
    pub addresses: Vec<String>,
    pub data: Option<Data>,
    pub moderation: Option<Moderation>,
    pub end_user_identity: i32,
    pub operator: Option<Operator>,
    pub labels: BTreeMap<String, String>,
    /// Upper-cased asset symbols.
    pub assets: Vec<String>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Protocol {
    pub name: String,
    pub variant: i32,
    pub version: String,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Token {
    pub kind: i32,
    pub transferable: bool,
    pub tradable: bool,
    pub peg_currency: String,
    pub validator_reward: bool,
    pub backing: i32,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Crypto {
    pub signature: EnumSet,
    pub hash: EnumSet,
    pub cipher: EnumSet,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Data {
    pub pd_on_chain: bool,
    pub sensitive_pd: bool,
    pub subject_jurisdictions: Vec<String>,
    pub annual_subjects: i64,
    pub storage_regions: Vec<String>,
    pub erasure_mechanism: i32,
    pub dpia_done: bool,
    pub transfer_mechanisms: EnumSet,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Moderation {
    pub takedown_capable: bool,
    pub log_retention_days: i64,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Operator {
    pub entity_country: String,
    pub is_ciio: bool,
    pub cac_filing_id: String,
    pub licences: Vec<Licence>,
    pub registrations: Vec<String>,
    pub public_scope_eso: bool,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Licence {
    pub regulator: String,
    pub kind: String,
    pub id: String,
}

/// Why a request was refused, naming the field path inside `DeploymentRequest`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct RequestError {
    pub field: String,
    pub reason: String,
}

impl RequestError {
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        RequestError { field: field.into(), reason: reason.into() }
    }
}

/// Limits on what one request may carry; bigger inputs are refused, not truncated.
pub const MAX_STRING: usize = 256;
pub const MAX_LIST: usize = 256;
pub const MAX_LABELS: usize = 64;

impl TryFrom<proto::DeploymentRequest> for Request {
    type Error = RequestError;

    fn try_from(p: proto::DeploymentRequest) -> Result<Self, RequestError> {
        // Destructured so that a new proto field breaks the build until it is handled here.
        let proto::DeploymentRequest {
            request_id,
            deployment_kind,
            protocol,
            permission_model,
            consensus,
            node_count,
            node_regions,
            consensus_node_regions,
            served_jurisdictions,
            serves_retail,
            token,
            gas_payment,
            crypto,
            key_custody,
            contract_languages,
            vm,
            services,
            privacy_features,
            addresses,
            data,
            moderation,
            end_user_identity,
            operator,
            labels,
            assets,
        } = p;

        if request_id.is_empty() {
            return Err(RequestError::new("request_id", "required"));
        }
        if request_id.len() > 128 || !request_id.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(RequestError::new("request_id", "must be 1 to 128 printable ASCII characters without spaces"));
        }
        let protocol = protocol.ok_or_else(|| RequestError::new("protocol", "required"))?;
        let proto::Protocol { name, variant, version } = protocol;
        if name.is_empty() {
            return Err(RequestError::new("protocol.name", "required"));
        }
        let protocol = Protocol {
            name: text("protocol.name", name)?,
            variant: known::<proto::ProtocolVariant>("protocol.variant", variant)?,
            version: text("protocol.version", version)?,
        };

        let token = token
            .map(|t| {
                let proto::Token { kind, transferable, tradable, peg_currency, validator_reward, backing } = t;
                Ok::<_, RequestError>(Token {
                    kind: known::<proto::TokenKind>("token.kind", kind)?,
                    transferable,
                    tradable,
                    peg_currency: text("token.peg_currency", peg_currency)?.to_ascii_uppercase(),
                    validator_reward,
                    backing: known::<proto::StablecoinBacking>("token.backing", backing)?,
                })
            })
            .transpose()?;

        let crypto = match crypto {
            None => Crypto::default(),
            Some(proto::CryptoSuite { signature, hash, cipher }) => Crypto {
                signature: enum_set::<proto::SignatureAlgorithm>("crypto.signature", &signature)?,
                hash: enum_set::<proto::HashAlgorithm>("crypto.hash", &hash)?,
                cipher: enum_set::<proto::CipherAlgorithm>("crypto.cipher", &cipher)?,
            },
        };

        let data = data
            .map(|d| {
                let proto::DataHandling {
                    pd_on_chain,
                    sensitive_pd,
                    subject_jurisdictions,
                    annual_subjects,
                    storage_regions,
                    erasure_mechanism,
                    dpia_done,
                    transfer_mechanisms,
                } = d;
                Ok::<_, RequestError>(Data {
                    pd_on_chain,
                    sensitive_pd,
                    subject_jurisdictions: regions("data.subject_jurisdictions", subject_jurisdictions)?,
                    annual_subjects: i64::try_from(annual_subjects)
                        .map_err(|_| RequestError::new("data.annual_subjects", "too large"))?,
                    storage_regions: regions("data.storage_regions", storage_regions)?,
                    erasure_mechanism: known::<proto::ErasureMechanism>("data.erasure_mechanism", erasure_mechanism)?,
                    dpia_done,
                    transfer_mechanisms: enum_set::<proto::TransferMechanism>(
                        "data.transfer_mechanisms",
                        &transfer_mechanisms,
                    )?,
                })
            })
            .transpose()?;

        let moderation = moderation.map(|m| {
            let proto::Moderation { takedown_capable, log_retention_days } = m;
            Moderation { takedown_capable, log_retention_days: i64::from(log_retention_days) }
        });

        let operator = operator
            .map(|o| {
                let proto::Operator {
                    entity_country,
                    is_ciio,
                    cac_filing_id,
                    licences,
                    registrations,
                    public_scope_eso,
                } = o;
                if licences.len() > MAX_LIST {
                    return Err(RequestError::new("operator.licences", too_many(licences.len())));
                }
                let licences = licences
                    .into_iter()
                    .enumerate()
                    .map(|(i, l)| {
                        let proto::Licence { regulator, kind, id } = l;
                        let at = |f: &str| format!("operator.licences[{i}].{f}");
                        if regulator.is_empty() {
                            return Err(RequestError::new(at("regulator"), "required"));
                        }
                        Ok(Licence {
                            regulator: text(&at("regulator"), regulator)?,
                            kind: text(&at("kind"), kind)?,
                            id: text(&at("id"), id)?,
                        })
                    })
                    .collect::<Result<_, _>>()?;
                let entity_country = if entity_country.is_empty() {
                    entity_country
                } else {
                    region("operator.entity_country", entity_country)?
                };
                Ok(Operator {
                    entity_country,
                    is_ciio,
                    cac_filing_id: text("operator.cac_filing_id", cac_filing_id)?,
                    licences,
                    registrations: texts("operator.registrations", registrations)?,
                    public_scope_eso,
                })
            })
            .transpose()?;

        if labels.len() > MAX_LABELS {
            return Err(RequestError::new("labels", format!("at most {MAX_LABELS} labels, got {}", labels.len())));
        }
        for (k, v) in &labels {
            if k.is_empty() || k.len() > 64 || !k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') {
                return Err(RequestError::new(
                    format!("labels[\"{}\"]", echo(k)),
                    "label names are 1 to 64 characters of A-Z, a-z, 0-9, `_` and `-`",
                ));
            }
            if v.len() > MAX_STRING {
                return Err(RequestError::new(format!("labels[{k:?}]"), format!("longer than {MAX_STRING} bytes")));
            }
        }

        let deployment_kind = required::<proto::DeploymentKind>("deployment_kind", deployment_kind)?;
        let permission_model = required::<proto::PermissionModel>("permission_model", permission_model)?;

        Ok(Request {
            request_id,
            deployment_kind,
            protocol,
            permission_model,
            consensus: text("consensus", consensus)?,
            node_count: i64::from(node_count),
            node_regions: regions("node_regions", node_regions)?,
            consensus_node_regions: regions("consensus_node_regions", consensus_node_regions)?,
            served_jurisdictions: regions("served_jurisdictions", served_jurisdictions)?,
            serves_retail,
            token,
            gas_payment: known::<proto::GasPayment>("gas_payment", gas_payment)?,
            crypto,
            key_custody: known::<proto::KeyCustody>("key_custody", key_custody)?,
            contract_languages: texts("contract_languages", contract_languages)?,
            vm: text("vm", vm)?,
            services: enum_set::<proto::Service>("services", &services)?,
            privacy_features: enum_set::<proto::PrivacyFeature>("privacy_features", &privacy_features)?,
            addresses: texts("addresses", addresses)?.into_iter().map(|a| a.to_ascii_lowercase()).collect(),
            data,
            moderation,
            end_user_identity: known::<proto::EndUserIdentity>("end_user_identity", end_user_identity)?,
            operator,
            labels: labels.into_iter().collect(),
            assets: texts("assets", assets)?.into_iter().map(|a| a.to_ascii_uppercase()).collect(),
        })
    }
}

/// Most characters of client input an error message repeats.
pub const MAX_ECHO_CHARS: usize = 128;

/// Client input as an error message repeats it: escaped (`escape_debug`), and cut to
/// [`MAX_ECHO_CHARS`] characters with an ellipsis, so a large value cannot make a large
/// error (gRPC status messages travel in headers).
pub fn echo(s: &str) -> String {
    let mut out: String = s.escape_debug().take(MAX_ECHO_CHARS).collect();
    if s.escape_debug().nth(MAX_ECHO_CHARS).is_some() {
        out.push('…');
    }
    out
}

fn too_many(n: usize) -> String {
    format!("at most {MAX_LIST} items, got {n}")
}

fn text(field: &str, s: String) -> Result<String, RequestError> {
    text_check(&s).map_err(|reason| RequestError::new(field, reason))?;
    Ok(s)
}

/// Why a string is refused; the field path is only formatted when there is an error,
/// so valid requests pay nothing for it.
fn text_check(s: &str) -> Result<(), String> {
    if s.len() > MAX_STRING {
        return Err(format!("longer than {MAX_STRING} bytes"));
    }
    if s.chars().any(char::is_control) {
        return Err("contains control characters".into());
    }
    Ok(())
}

fn texts(field: &str, list: Vec<String>) -> Result<Vec<String>, RequestError> {
    if list.len() > MAX_LIST {
        return Err(RequestError::new(field, too_many(list.len())));
    }
    list.into_iter()
        .enumerate()
        .map(|(i, s)| {
            let check = if s.is_empty() { Err("empty".to_string()) } else { text_check(&s) };
            check.map(|()| s).map_err(|reason| RequestError::new(format!("{field}[{i}]"), reason))
        })
        .collect()
}

/// An ISO 3166-1 alpha-2 code (or "EU"): two ASCII letters, upper-cased here.
fn region(field: &str, s: String) -> Result<String, RequestError> {
    region_of(s).map_err(|reason| RequestError::new(field, reason))
}

fn region_of(s: String) -> Result<String, String> {
    if s.len() == 2 && s.bytes().all(|b| b.is_ascii_alphabetic()) {
        Ok(s.to_ascii_uppercase())
    } else {
        Err(format!("`{}` is not a two-letter ISO 3166-1 code", echo(&s)))
    }
}

fn regions(field: &str, list: Vec<String>) -> Result<Vec<String>, RequestError> {
    if list.len() > MAX_LIST {
        return Err(RequestError::new(field, too_many(list.len())));
    }
    list.into_iter()
        .enumerate()
        .map(|(i, s)| region_of(s).map_err(|reason| RequestError::new(format!("{field}[{i}]"), reason)))
        .collect()
}

/// An optional enum: zero (unspecified) is allowed, unknown numbers are not.
fn known<E: TryFrom<i32>>(field: &str, n: i32) -> Result<i32, RequestError> {
    match E::try_from(n) {
        Ok(_) => Ok(n),
        Err(_) => Err(RequestError::new(field, format!("unknown enum value {n}"))),
    }
}

/// A required enum: unspecified is refused.
fn required<E: TryFrom<i32>>(field: &str, n: i32) -> Result<i32, RequestError> {
    if n == 0 {
        return Err(RequestError::new(field, "required (must not be UNSPECIFIED)"));
    }
    known::<E>(field, n)
}

fn enum_set<E: TryFrom<i32>>(field: &str, list: &[i32]) -> Result<EnumSet, RequestError> {
    let mut set = 0u64;
    for (i, &n) in list.iter().enumerate() {
        if n == 0 {
            return Err(RequestError::new(format!("{field}[{i}]"), "must not be UNSPECIFIED"));
        }
        if !(1..64).contains(&n) || E::try_from(n).is_err() {
            return Err(RequestError::new(format!("{field}[{i}]"), format!("unknown enum value {n}")));
        }
        set |= 1 << n;
    }
    Ok(set)
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn minimal() -> proto::DeploymentRequest {
        proto::DeploymentRequest {
            request_id: "r-1".into(),
            deployment_kind: proto::DeploymentKind::PermissionedApp as i32,
            protocol: Some(proto::Protocol { name: "hyperledger-fabric".into(), ..Default::default() }),
            permission_model: proto::PermissionModel::Permissioned as i32,
            ..Default::default()
        }
    }

    fn err(p: proto::DeploymentRequest) -> String {
        Request::try_from(p).unwrap_err().to_string()
    }

    #[test]
    fn accepts_minimal_request() {
        let r = Request::try_from(minimal()).unwrap();
        assert_eq!(r.request_id, "r-1");
        assert!(r.token.is_none());
    }

    #[test]
    fn names_missing_required_fields() {
        let mut p = minimal();
        p.deployment_kind = 0;
        assert_eq!(err(p), "deployment_kind: required (must not be UNSPECIFIED)");
        let mut p = minimal();
        p.protocol = None;
        assert_eq!(err(p), "protocol: required");
        let mut p = minimal();
        p.request_id.clear();
        assert_eq!(err(p), "request_id: required");
    }

    #[test]
    fn names_bad_list_items() {
        let mut p = minimal();
        p.services = vec![1, 0];
        assert_eq!(err(p), "services[1]: must not be UNSPECIFIED");
        let mut p = minimal();
        p.node_regions = vec!["CN".into(), "China".into()];
        assert_eq!(err(p), "node_regions[1]: `China` is not a two-letter ISO 3166-1 code");
        let mut p = minimal();
        p.token = Some(proto::Token { kind: 99, ..Default::default() });
        assert_eq!(err(p), "token.kind: unknown enum value 99");
        let mut p = minimal();
        p.operator = Some(proto::Operator { licences: vec![proto::Licence::default()], ..Default::default() });
        assert_eq!(err(p), "operator.licences[0].regulator: required");
    }

    #[test]
    fn normalises_codes_and_addresses() {
        let mut p = minimal();
        p.node_regions = vec!["cn".into()];
        p.addresses = vec!["0xABcd".into()];
        p.services = vec![proto::Service::Exchange as i32];
        let r = Request::try_from(p).unwrap();
        assert_eq!(r.node_regions, ["CN"]);
        assert_eq!(r.addresses, ["0xabcd"]);
        assert_eq!(r.services, 1 << proto::Service::Exchange as i32);
    }
}
