//! Request files: a `DeploymentRequest` written by a person, in TOML or JSON.
//!
//! Field names are the proto field names; enum values are the lower-case value names
//! without their prefix, as in policies (`deployment_kind = "opb_chain"`); nested
//! messages are tables; `operator.licences` is an array of tables. Unknown keys are
//! errors. The file is converted to the protobuf message, so the CLI hashes and checks
//! exactly what a gRPC client would send.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::RequestError;
use crate::proto;
use crate::schema::{self, EnumDef};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RequestFile {
    request_id: String,
    deployment_kind: String,
    protocol: Option<ProtocolFile>,
    permission_model: String,
    consensus: String,
    node_count: u32,
    node_regions: Vec<String>,
    consensus_node_regions: Vec<String>,
    served_jurisdictions: Vec<String>,
    serves_retail: bool,
    token: Option<TokenFile>,
    gas_payment: String,
    crypto: Option<CryptoFile>,
    key_custody: String,
    contract_languages: Vec<String>,
    vm: String,
    services: Vec<String>,
    privacy_features: Vec<String>,
    addresses: Vec<String>,
    data: Option<DataFile>,
    moderation: Option<ModerationFile>,
    end_user_identity: String,
    operator: Option<OperatorFile>,
    labels: BTreeMap<String, String>,
    assets: Vec<String>,
    node_subdivisions: Vec<String>,
    served_subdivisions: Vec<String>,
    asset_details: Vec<AssetFile>,
    tokens: Vec<TokenFile>,
    aml: Option<AmlFile>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct AssetFile {
    symbol: String,
    classes: Vec<String>,
    peg_currency: String,
    authorisations: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct AmlFile {
    travel_rule: bool,
    sanctions_screening: bool,
    customer_due_diligence: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct ProtocolFile {
    name: String,
    variant: String,
    version: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct TokenFile {
    kind: String,
    transferable: bool,
    tradable: bool,
    peg_currency: String,
    validator_reward: bool,
    backing: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct CryptoFile {
    signature: Vec<String>,
    hash: Vec<String>,
    cipher: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct DataFile {
    pd_on_chain: bool,
    sensitive_pd: bool,
    subject_jurisdictions: Vec<String>,
    annual_subjects: u64,
    storage_regions: Vec<String>,
    erasure_mechanism: String,
    dpia_done: bool,
    transfer_mechanisms: Vec<String>,
    sensitive_subjects: u64,
    important_data: bool,
    sectors: Vec<String>,
    replica_regions: Vec<String>,
    record_retention_days: u64,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct ModerationFile {
    takedown_capable: bool,
    log_retention_days: u32,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct OperatorFile {
    entity_country: String,
    is_ciio: bool,
    cac_filing_id: String,
    licences: Vec<LicenceFile>,
    registrations: Vec<String>,
    public_scope_eso: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct LicenceFile {
    regulator: String,
    kind: String,
    id: String,
    status: String,
    expires: String,
    activities: Vec<String>,
}

fn one(def: &EnumDef, field: &str, name: &str) -> Result<i32, RequestError> {
    if name.is_empty() {
        return Ok(0);
    }
    def.number(name).ok_or_else(|| {
        let names = def.names();
        let hint = match crate::diag::suggest(name, names.iter().map(String::as_str)) {
            Some(s) => format!("did you mean `{s}`?"),
            None => format!("expected one of: {}", names.join(", ")),
        };
        RequestError::new(field, format!("`{name}` is not a value of {}; {hint}", def.name))
    })
}

fn many(def: &EnumDef, field: &str, names: &[String]) -> Result<Vec<i32>, RequestError> {
    names.iter().enumerate().map(|(i, n)| one(def, &format!("{field}[{i}]"), n)).collect()
}

impl RequestFile {
    /// Parses TOML text.
    pub fn from_toml(text: &str) -> Result<Self, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }

    /// Parses JSON text.
    pub fn from_json(text: &str) -> Result<Self, String> {
        serde_json::from_str(text).map_err(|e| e.to_string())
    }

    /// Parses a TOML value (used by policy test files, which patch a base request).
    pub fn from_value(value: toml::Value) -> Result<Self, String> {
        value.try_into().map_err(|e: toml::de::Error| e.to_string())
    }

    /// The protobuf message this file describes. Enum names are checked here; everything
    /// else is checked by the same conversion a gRPC request goes through.
    pub fn to_proto(&self) -> Result<proto::DeploymentRequest, RequestError> {
        use schema::*;
        Ok(proto::DeploymentRequest {
            request_id: self.request_id.clone(),
            deployment_kind: one(&DEPLOYMENT_KIND, "deployment_kind", &self.deployment_kind)?,
            protocol: self
                .protocol
                .as_ref()
                .map(|p| {
                    Ok::<_, RequestError>(proto::Protocol {
                        name: p.name.clone(),
                        variant: one(&PROTOCOL_VARIANT, "protocol.variant", &p.variant)?,
                        version: p.version.clone(),
                    })
                })
                .transpose()?,
            permission_model: one(&PERMISSION_MODEL, "permission_model", &self.permission_model)?,
            consensus: self.consensus.clone(),
            node_count: self.node_count,
            node_regions: self.node_regions.clone(),
            consensus_node_regions: self.consensus_node_regions.clone(),
            served_jurisdictions: self.served_jurisdictions.clone(),
            serves_retail: self.serves_retail,
            token: self.token.as_ref().map(|t| t.to_proto("token")).transpose()?,
            gas_payment: one(&GAS_PAYMENT, "gas_payment", &self.gas_payment)?,
            crypto: self
                .crypto
                .as_ref()
                .map(|c| {
                    Ok::<_, RequestError>(proto::CryptoSuite {
                        signature: many(&SIGNATURE_ALGORITHM, "crypto.signature", &c.signature)?,
                        hash: many(&HASH_ALGORITHM, "crypto.hash", &c.hash)?,
                        cipher: many(&CIPHER_ALGORITHM, "crypto.cipher", &c.cipher)?,
                    })
                })
                .transpose()?,
            key_custody: one(&KEY_CUSTODY, "key_custody", &self.key_custody)?,
            contract_languages: self.contract_languages.clone(),
            vm: self.vm.clone(),
            services: many(&SERVICE, "services", &self.services)?,
            privacy_features: many(&PRIVACY_FEATURE, "privacy_features", &self.privacy_features)?,
            addresses: self.addresses.clone(),
            data: self
                .data
                .as_ref()
                .map(|d| {
                    Ok::<_, RequestError>(proto::DataHandling {
                        pd_on_chain: d.pd_on_chain,
                        sensitive_pd: d.sensitive_pd,
                        subject_jurisdictions: d.subject_jurisdictions.clone(),
                        annual_subjects: d.annual_subjects,
                        storage_regions: d.storage_regions.clone(),
                        erasure_mechanism: one(&ERASURE_MECHANISM, "data.erasure_mechanism", &d.erasure_mechanism)?,
                        dpia_done: d.dpia_done,
                        transfer_mechanisms: many(
                            &TRANSFER_MECHANISM,
                            "data.transfer_mechanisms",
                            &d.transfer_mechanisms,
                        )?,
                        sensitive_subjects: d.sensitive_subjects,
                        important_data: d.important_data,
                        sectors: many(&DATA_SECTOR, "data.sectors", &d.sectors)?,
                        replica_regions: d.replica_regions.clone(),
                        record_retention_days: d.record_retention_days,
                    })
                })
                .transpose()?,
            moderation: self.moderation.as_ref().map(|m| proto::Moderation {
                takedown_capable: m.takedown_capable,
                log_retention_days: m.log_retention_days,
            }),
            end_user_identity: one(&END_USER_IDENTITY, "end_user_identity", &self.end_user_identity)?,
            operator: self
                .operator
                .as_ref()
                .map(|o| {
                    Ok::<_, RequestError>(proto::Operator {
                        entity_country: o.entity_country.clone(),
                        is_ciio: o.is_ciio,
                        cac_filing_id: o.cac_filing_id.clone(),
                        licences: o
                            .licences
                            .iter()
                            .enumerate()
                            .map(|(i, l)| {
                                let at = |f: &str| format!("operator.licences[{i}].{f}");
                                Ok(proto::Licence {
                                    regulator: l.regulator.clone(),
                                    kind: l.kind.clone(),
                                    id: l.id.clone(),
                                    status: one(&LICENCE_STATUS, &at("status"), &l.status)?,
                                    expires: l.expires.clone(),
                                    activities: many(&SERVICE, &at("activities"), &l.activities)?,
                                })
                            })
                            .collect::<Result<_, RequestError>>()?,
                        registrations: o.registrations.clone(),
                        public_scope_eso: o.public_scope_eso,
                    })
                })
                .transpose()?,
            labels: self.labels.clone().into_iter().collect(),
            assets: self.assets.clone(),
            node_subdivisions: self.node_subdivisions.clone(),
            served_subdivisions: self.served_subdivisions.clone(),
            asset_details: self
                .asset_details
                .iter()
                .enumerate()
                .map(|(i, a)| {
                    Ok(proto::Asset {
                        symbol: a.symbol.clone(),
                        classes: many(&ASSET_CLASS, &format!("asset_details[{i}].classes"), &a.classes)?,
                        peg_currency: a.peg_currency.clone(),
                        authorisations: a.authorisations.clone(),
                    })
                })
                .collect::<Result<_, RequestError>>()?,
            tokens: self
                .tokens
                .iter()
                .enumerate()
                .map(|(i, t)| t.to_proto(&format!("tokens[{i}]")))
                .collect::<Result<_, _>>()?,
            aml: self.aml.as_ref().map(|a| proto::Aml {
                travel_rule: a.travel_rule,
                sanctions_screening: a.sanctions_screening,
                customer_due_diligence: a.customer_due_diligence,
            }),
        })
    }
}

impl TokenFile {
    fn to_proto(&self, field: &str) -> Result<proto::Token, RequestError> {
        use schema::*;
        Ok(proto::Token {
            kind: one(&TOKEN_KIND, &format!("{field}.kind"), &self.kind)?,
            transferable: self.transferable,
            tradable: self.tradable,
            peg_currency: self.peg_currency.clone(),
            validator_reward: self.validator_reward,
            backing: one(&STABLECOIN_BACKING, &format!("{field}.backing"), &self.backing)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_toml_and_names_bad_enum_values() {
        let f = RequestFile::from_toml(
            "request_id = \"a\"\ndeployment_kind = \"opb_chain\"\npermission_model = \"permissioned\"\n\
             services = [\"exchange\"]\n[protocol]\nname = \"ethereum\"\nvariant = \"opb\"\n\
             [[operator.licences]]\nregulator = \"MAS\"\nkind = \"dpt\"\n",
        )
        .unwrap();
        let p = f.to_proto().unwrap();
        assert_eq!(p.deployment_kind, proto::DeploymentKind::OpbChain as i32);
        assert_eq!(p.operator.unwrap().licences.len(), 1);

        let f = RequestFile::from_toml("services = [\"exchange\", \"stakin\"]").unwrap();
        let e = f.to_proto().unwrap_err().to_string();
        assert_eq!(e, "services[1]: `stakin` is not a value of Service; did you mean `staking`?");
        assert!(RequestFile::from_toml("request_idd = \"a\"").unwrap_err().contains("unknown field `request_idd`"));
    }
}
