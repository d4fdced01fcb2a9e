//! The deployment request as plain data, converted from protobuf at the edge.
//!
//! Conversion checks everything the policies rely on, so evaluation never fails:
//! required fields are set, enum numbers are known, region codes are well formed.
//! Closed value sets become small integers and bit sets, so the evaluator compares
//! numbers instead of strings.

pub mod file;

use std::collections::BTreeMap;

use crate::proto;
use crate::time::Day;

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
    /// Every token: the legacy `token` first, then `tokens`. `token.*` paths read the first.
    pub tokens: Vec<Token>,
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
    /// Upper-cased asset symbols: `assets`, then every `asset_details[i].symbol`.
    pub assets: Vec<String>,
    /// Upper-cased ISO 3166-2 codes, e.g. `UA-43`.
    pub node_subdivisions: Vec<String>,
    pub served_subdivisions: Vec<String>,
    pub asset_details: Vec<Asset>,
    pub aml: Option<Aml>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Asset {
    pub symbol: String,
    pub classes: EnumSet,
    pub peg_currency: String,
    pub authorisations: Vec<String>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Aml {
    pub travel_rule: bool,
    pub sanctions_screening: bool,
    pub customer_due_diligence: bool,
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
    pub sensitive_subjects: i64,
    pub important_data: bool,
    pub sectors: EnumSet,
    pub replica_regions: Vec<String>,
    pub record_retention_days: i64,
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
    /// Lower-cased.
    pub kind: String,
    pub id: String,
    pub status: i32,
    /// The last day the licence is valid; `None` when the request gave no date.
    pub expires: Option<Day>,
    pub activities: EnumSet,
}

impl Licence {
    /// Active, and not past its expiry date on `day` (a licence is valid through the
    /// day it expires). A licence with no status is not in force.
    pub fn in_force(&self, day: Day) -> bool {
        self.status == proto::LicenceStatus::Active as i32 && self.expires.is_none_or(|e| day <= e)
    }
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
            node_subdivisions,
            served_subdivisions,
            asset_details,
            tokens,
            aml,
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

        if tokens.len() > MAX_LIST {
            return Err(RequestError::new("tokens", too_many(tokens.len())));
        }
        let mut all_tokens = Vec::with_capacity(usize::from(token.is_some()) + tokens.len());
        if let Some(t) = token {
            all_tokens.push(convert_token("token", t)?);
        }
        for (i, t) in tokens.into_iter().enumerate() {
            all_tokens.push(convert_token(&format!("tokens[{i}]"), t)?);
        }

        if asset_details.len() > MAX_LIST {
            return Err(RequestError::new("asset_details", too_many(asset_details.len())));
        }
        let asset_details = asset_details
            .into_iter()
            .enumerate()
            .map(|(i, a)| {
                let proto::Asset { symbol, classes, peg_currency, authorisations } = a;
                let at = |f: &str| format!("asset_details[{i}].{f}");
                if symbol.is_empty() {
                    return Err(RequestError::new(at("symbol"), "required"));
                }
                Ok(Asset {
                    symbol: text(&at("symbol"), symbol)?.to_ascii_uppercase(),
                    classes: enum_set::<proto::AssetClass>(&at("classes"), &classes)?,
                    peg_currency: text(&at("peg_currency"), peg_currency)?.to_ascii_uppercase(),
                    authorisations: texts(&at("authorisations"), authorisations)?
                        .into_iter()
                        .map(|a| a.to_ascii_lowercase())
                        .collect(),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let aml = aml.map(|a| {
            let proto::Aml { travel_rule, sanctions_screening, customer_due_diligence } = a;
            Aml { travel_rule, sanctions_screening, customer_due_diligence }
        });

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
                    sensitive_subjects,
                    important_data,
                    sectors,
                    replica_regions,
                    record_retention_days,
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
                    sensitive_subjects: i64::try_from(sensitive_subjects)
                        .map_err(|_| RequestError::new("data.sensitive_subjects", "too large"))?,
                    important_data,
                    sectors: enum_set::<proto::DataSector>("data.sectors", &sectors)?,
                    replica_regions: regions("data.replica_regions", replica_regions)?,
                    record_retention_days: i64::try_from(record_retention_days)
                        .map_err(|_| RequestError::new("data.record_retention_days", "too large"))?,
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
                        let proto::Licence { regulator, kind, id, status, expires, activities } = l;
                        let at = |f: &str| format!("operator.licences[{i}].{f}");
                        if regulator.is_empty() {
                            return Err(RequestError::new(at("regulator"), "required"));
                        }
                        let expires = match expires.as_str() {
                            "" => None,
                            s => Some(Day::parse(s).filter(|_| is_date(s)).ok_or_else(|| {
                                RequestError::new(at("expires"), format!("`{}` is not a date YYYY-MM-DD", echo(s)))
                            })?),
                        };
                        Ok(Licence {
                            regulator: text(&at("regulator"), regulator)?.to_ascii_uppercase(),
                            kind: text(&at("kind"), kind)?.to_ascii_lowercase(),
                            id: text(&at("id"), id)?,
                            status: known::<proto::LicenceStatus>(&at("status"), status)?,
                            expires,
                            activities: enum_set::<proto::Service>(&at("activities"), &activities)?,
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

        let node_regions = regions("node_regions", node_regions)?;
        let served_jurisdictions = regions("served_jurisdictions", served_jurisdictions)?;
        let node_subdivisions = subdivisions("node_subdivisions", node_subdivisions, &node_regions, "node_regions")?;
        let served_subdivisions =
            subdivisions("served_subdivisions", served_subdivisions, &served_jurisdictions, "served_jurisdictions")?;
        let mut assets: Vec<String> = texts("assets", assets)?.into_iter().map(|a| a.to_ascii_uppercase()).collect();
        // Fail closed for policies written before asset_details: they read `assets` only.
        assets.extend(asset_details.iter().map(|a| a.symbol.clone()));
        if assets.len() > 2 * MAX_LIST {
            return Err(RequestError::new("assets", too_many(assets.len())));
        }

        Ok(Request {
            request_id,
            deployment_kind,
            protocol,
            permission_model,
            consensus: text("consensus", consensus)?,
            node_count: i64::from(node_count),
            node_regions,
            consensus_node_regions: regions("consensus_node_regions", consensus_node_regions)?,
            served_jurisdictions,
            serves_retail,
            tokens: all_tokens,
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
            assets,
            node_subdivisions,
            served_subdivisions,
            asset_details,
            aml,
        })
    }
}

fn convert_token(field: &str, t: proto::Token) -> Result<Token, RequestError> {
    let proto::Token { kind, transferable, tradable, peg_currency, validator_reward, backing } = t;
    Ok(Token {
        kind: known::<proto::TokenKind>(&format!("{field}.kind"), kind)?,
        transferable,
        tradable,
        peg_currency: text(&format!("{field}.peg_currency"), peg_currency)?.to_ascii_uppercase(),
        validator_reward,
        backing: known::<proto::StablecoinBacking>(&format!("{field}.backing"), backing)?,
    })
}

/// `YYYY-MM-DD` with a month 01-12 and a day valid for that month.
pub fn is_date(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return false;
    }
    if !b.iter().enumerate().all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit()) {
        return false;
    }
    let num = |from: usize, to: usize| b[from..to].iter().fold(0u32, |n, c| n * 10 + u32::from(c - b'0'));
    let (y, m, d) = (num(0, 4), num(5, 7), num(8, 10));
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let days = match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return false,
    };
    (1..=days).contains(&d)
}

/// ISO 3166-2 codes `CC-X{1,3}` (upper-cased), each with its country in `countries`.
fn subdivisions(
    field: &str,
    list: Vec<String>,
    countries: &[String],
    countries_field: &str,
) -> Result<Vec<String>, RequestError> {
    if list.len() > MAX_LIST {
        return Err(RequestError::new(field, too_many(list.len())));
    }
    list.into_iter()
        .enumerate()
        .map(|(i, s)| {
            let b = s.as_bytes();
            let ok = (4..=6).contains(&b.len())
                && b[..2].iter().all(u8::is_ascii_alphabetic)
                && b[2] == b'-'
                && b[3..].iter().all(u8::is_ascii_alphanumeric);
            if !ok {
                return Err(RequestError::new(
                    format!("{field}[{i}]"),
                    format!("`{}` is not an ISO 3166-2 code such as `UA-43`", echo(&s)),
                ));
            }
            let s = s.to_ascii_uppercase();
            if !countries.iter().any(|c| c.as_str() == &s[..2]) {
                return Err(RequestError::new(
                    format!("{field}[{i}]"),
                    format!("`{s}` is in `{}`, which is not in {countries_field}", &s[..2]),
                ));
            }
            Ok(s)
        })
        .collect()
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
        assert!(r.tokens.is_empty());
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

    #[test]
    fn subdivisions_need_their_country() {
        let mut p = minimal();
        p.node_regions = vec!["ua".into()];
        p.node_subdivisions = vec!["ua-43".into()];
        p.served_jurisdictions = vec!["RU".into()];
        p.served_subdivisions = vec!["RU-IRK".into()];
        let r = Request::try_from(p.clone()).unwrap();
        assert_eq!(r.node_subdivisions, ["UA-43"]);
        assert_eq!(r.served_subdivisions, ["RU-IRK"]);
        p.node_subdivisions.push("AE-DU".into());
        assert_eq!(err(p.clone()), "node_subdivisions[1]: `AE-DU` is in `AE`, which is not in node_regions");
        p.node_subdivisions = vec!["UA43".into()];
        assert_eq!(err(p.clone()), "node_subdivisions[0]: `UA43` is not an ISO 3166-2 code such as `UA-43`");
        p.node_subdivisions.clear();
        p.served_subdivisions = vec!["UA-43".into()];
        assert_eq!(err(p), "served_subdivisions[0]: `UA-43` is in `UA`, which is not in served_jurisdictions");
    }

    #[test]
    fn asset_details_reach_assets() {
        // Fail-closed guard: a policy written before asset_details reads `assets` only.
        let mut p = minimal();
        p.assets = vec!["btc".into()];
        p.asset_details = vec![proto::Asset {
            symbol: "usdt".into(),
            classes: vec![proto::AssetClass::Stablecoin as i32],
            peg_currency: "usd".into(),
            authorisations: vec!["GENIUS_Permitted".into()],
        }];
        let r = Request::try_from(p.clone()).unwrap();
        assert_eq!(r.assets, ["BTC", "USDT"]);
        assert_eq!(r.asset_details[0].authorisations, ["genius_permitted"]);
        assert_eq!(r.asset_details[0].peg_currency, "USD");
        assert_eq!(r.asset_details[0].classes, 1 << proto::AssetClass::Stablecoin as i32);
        p.asset_details[0].classes = vec![0];
        assert_eq!(err(p.clone()), "asset_details[0].classes[0]: must not be UNSPECIFIED");
        p.asset_details[0].symbol.clear();
        assert_eq!(err(p), "asset_details[0].symbol: required");
    }

    #[test]
    fn legacy_token_comes_first() {
        let mut p = minimal();
        p.token = Some(proto::Token { kind: proto::TokenKind::Utility as i32, ..Default::default() });
        p.tokens = vec![proto::Token { kind: proto::TokenKind::Stablecoin as i32, ..Default::default() }];
        let r = Request::try_from(p.clone()).unwrap();
        let kinds: Vec<i32> = r.tokens.iter().map(|t| t.kind).collect();
        assert_eq!(kinds, [proto::TokenKind::Utility as i32, proto::TokenKind::Stablecoin as i32]);
        p.tokens[0].kind = 99;
        assert_eq!(err(p), "tokens[0].kind: unknown enum value 99");
    }

    #[test]
    fn licences_normalise_and_check_dates() {
        let licence = |expires: &str| proto::Licence {
            regulator: "mas".into(),
            kind: "DPT_Major_Payment_Institution".into(),
            status: proto::LicenceStatus::Active as i32,
            expires: expires.into(),
            activities: vec![proto::Service::Exchange as i32],
            ..Default::default()
        };
        let mut p = minimal();
        p.operator = Some(proto::Operator { licences: vec![licence("2028-02-29")], ..Default::default() });
        let r = Request::try_from(p.clone()).unwrap();
        let l = &r.operator.unwrap().licences[0];
        assert_eq!((l.regulator.as_str(), l.kind.as_str()), ("MAS", "dpt_major_payment_institution"));
        assert_eq!(l.activities, 1 << proto::Service::Exchange as i32);
        assert_eq!(l.expires, Some(Day::from_ymd(2028, 2, 29)));
        assert!(l.in_force(Day::from_ymd(2028, 2, 29)) && !l.in_force(Day::from_ymd(2028, 3, 1)));
        for bad in ["2027-02-29", "2027-13-01", "27-01-01", "2027-1-011"] {
            p.operator = Some(proto::Operator { licences: vec![licence(bad)], ..Default::default() });
            assert_eq!(
                err(p.clone()),
                format!("operator.licences[0].expires: `{bad}` is not a date YYYY-MM-DD"),
                "{bad}"
            );
        }
    }

    #[test]
    fn data_and_aml_fields_convert() {
        let mut p = minimal();
        p.data = Some(proto::DataHandling {
            sensitive_subjects: 10_000,
            important_data: true,
            sectors: vec![proto::DataSector::Health as i32],
            replica_regions: vec!["sg".into()],
            record_retention_days: 1825,
            ..Default::default()
        });
        p.aml = Some(proto::Aml { travel_rule: true, ..Default::default() });
        let r = Request::try_from(p.clone()).unwrap();
        let d = r.data.unwrap();
        assert_eq!((d.sensitive_subjects, d.important_data, d.record_retention_days), (10_000, true, 1825));
        assert_eq!(d.replica_regions, ["SG"]);
        assert_eq!(d.sectors, 1 << proto::DataSector::Health as i32);
        assert!(r.aml.unwrap().travel_rule);
        p.data.as_mut().unwrap().replica_regions = vec!["Singapore".into()];
        assert_eq!(err(p), "data.replica_regions[0]: `Singapore` is not a two-letter ISO 3166-1 code");
    }
}
