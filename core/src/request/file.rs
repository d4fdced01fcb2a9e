//! Request files: a `DeploymentRequest` written by a person, in TOML or JSON.
//!
//! Field names are the proto field names; enum values are the lower-case value names
//! without their prefix, as in policies (`deployment_kind = "opb_chain"`); nested
//! messages are tables; `operator.licences` is an array of tables. Unknown keys are
//! errors. JSON files may also be in the canonical proto3 JSON mapping ([`json`]), so a
//! portal can reuse the JSON of its gRPC requests. The file is converted to the protobuf
//! message, so the CLI hashes and checks exactly what a gRPC client would send.

mod json;

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

    /// Parses JSON text: the request file's own form, or the proto3 JSON mapping
    /// (lowerCamelCase names, full enum names or numbers, integers as strings, `null`).
    pub fn from_json(text: &str) -> Result<Self, String> {
        let value: serde_json::Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
        serde_json::from_value(json::normalise(value)?).map_err(|e| e.to_string())
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

    #[test]
    fn reads_proto3_json() {
        let text = r#"{
            "requestId": "p-1",
            "deploymentKind": "DEPLOYMENT_KIND_OPB_CHAIN",
            "permission_model": 2,
            "protocol": {"name": "ethereum", "variant": "PROTOCOL_VARIANT_UNSPECIFIED"},
            "nodeCount": "4",
            "services": ["SERVICE_EXCHANGE", "custody", 3],
            "gasPayment": null,
            "data": {"annualSubjects": "18446744073709551615", "sensitiveSubjects": 1e3, "replicaRegions": ["SG"]},
            "operator": {"licences": [{"regulator": "MAS", "status": "LICENCE_STATUS_ACTIVE", "expires": "2030-01-01"}]},
            "assetDetails": [{"symbol": "USDT", "classes": ["ASSET_CLASS_STABLECOIN"], "pegCurrency": "USD"}],
            "labels": {"travelRule": "implemented"}
        }"#;
        let p = RequestFile::from_json(text).unwrap().to_proto().unwrap();
        assert_eq!(p.request_id, "p-1");
        assert_eq!(p.deployment_kind, proto::DeploymentKind::OpbChain as i32);
        assert_eq!(p.permission_model, 2);
        assert_eq!(p.protocol.as_ref().unwrap().variant, 0);
        assert_eq!(p.node_count, 4);
        let s = |x: proto::Service| x as i32;
        assert_eq!(p.services, [s(proto::Service::Exchange), s(proto::Service::Custody), 3]);
        let d = p.data.unwrap();
        assert_eq!((d.annual_subjects, d.sensitive_subjects, d.replica_regions), (u64::MAX, 1000, vec!["SG".into()]));
        assert_eq!(p.operator.unwrap().licences[0].status, proto::LicenceStatus::Active as i32);
        assert_eq!(p.asset_details[0].classes, [proto::AssetClass::Stablecoin as i32]);
        assert_eq!(p.asset_details[0].peg_currency, "USD");
        // Map keys are data: a label keeps the name it was given.
        assert_eq!(p.labels.get("travelRule").map(String::as_str), Some("implemented"));
    }

    #[test]
    fn proto3_json_errors_name_the_field_path() {
        let err = |text: &str| match RequestFile::from_json(text) {
            Ok(f) => f.to_proto().map(|_| ()).unwrap_err().to_string(),
            Err(e) => e,
        };
        let cases = [
            (r#"{"requestId": "a", "request_id": "b"}"#, "request_id: given twice (as `request_id` and `requestId`)"),
            (r#"{"nodeCount": "-1"}"#, "node_count: `-1` is not a non-negative integer"),
            (r#"{"nodeCount": 1.5}"#, "node_count: `1.5` is not a non-negative integer"),
            (r#"{"nodeCount": 4294967296}"#, "node_count: 4294967296 is larger than 4294967295"),
            (r#"{"data": {"annualSubjects": true}}"#, "data.annual_subjects: expected a non-negative integer"),
            (
                r#"{"operator": {"licences": [{"status": 9}]}}"#,
                "operator.licences[0].status: 9 is not a value of LicenceStatus",
            ),
            (r#"{"services": ["SERVICE_EXCHANGE", null]}"#, "services[1]: null is not allowed inside a list"),
            (r#"{"services": ["SERVICE_EXCHANG"]}"#, "services[0]: `SERVICE_EXCHANG` is not a value of Service"),
            (
                r#"{"tokens": [{"pegCurency": "USD"}]}"#,
                "tokens[0].pegCurency: unknown field; did you mean `pegCurrency`?",
            ),
            (r#"{"protocol": "ethereum"}"#, "protocol: expected an object, found a string"),
            (r#"{"servesRetail": "true"}"#, "serves_retail: expected true or false, found a string"),
            (r#"{"labels": {"a": 1}}"#, "labels[\"a\"]: expected a string, found a number"),
            (r#"[]"#, "request: expected an object, found a list"),
        ];
        for (text, want) in cases {
            let got = err(text);
            assert!(got.starts_with(want), "{text}\nwant {want}\ngot  {got}");
        }
    }

    #[test]
    fn the_examples_read_the_same_as_proto3_json() {
        // Each TOML example, as JSON with every field name in lowerCamelCase (label names
        // are data and stay as they are), is the same proto message.
        fn camel_json(v: &serde_json::Value, field_names: bool) -> serde_json::Value {
            use serde_json::Value;
            match v {
                Value::Object(m) => Value::Object(
                    m.iter()
                        .map(|(k, v)| {
                            let camel: String = k
                                .split('_')
                                .enumerate()
                                .map(|(i, w)| if i == 0 { w.to_string() } else { w[..1].to_uppercase() + &w[1..] })
                                .collect();
                            let name = if field_names { camel } else { k.clone() };
                            (name, camel_json(v, k != "labels"))
                        })
                        .collect(),
                ),
                Value::Array(a) => Value::Array(a.iter().map(|x| camel_json(x, field_names)).collect()),
                other => other.clone(),
            }
        }
        for text in [
            include_str!("../../../examples/schema-v2.toml"),
            include_str!("../../../examples/ethereum-mainnet.toml"),
            include_str!("../../../examples/fabric-app.toml"),
        ] {
            let from_toml = RequestFile::from_toml(text).unwrap().to_proto().unwrap();
            let value: serde_json::Value = toml::from_str(text).unwrap();
            let json = camel_json(&value, true).to_string();
            let from_json = RequestFile::from_json(&json).unwrap_or_else(|e| panic!("{e}\n{json}")).to_proto().unwrap();
            assert_eq!(from_json, from_toml);
        }
    }
}
