//! The attributes a policy condition can read, with their types and accessors.
//!
//! This table is the single place that ties policy paths like `token.transferable` to
//! the request model. The compiler resolves paths here once; the evaluator then calls
//! plain function pointers, so evaluation never looks anything up by name.

use crate::proto;
use crate::request::{Asset, EnumSet, Licence, Request, Token};
use crate::time::Day;

/// A closed value set from the proto, named in policies by the lower-case value name
/// without its prefix (`DEPLOYMENT_KIND_MINING` is `mining`).
pub struct EnumDef {
    pub name: &'static str,
    prefix: &'static str,
    from_number: fn(i32) -> Option<&'static str>,
    from_name: fn(&str) -> Option<i32>,
}

impl EnumDef {
    /// The number of a policy-side value name, e.g. `mining` -> 5. `unspecified` is no value.
    pub fn number(&self, short: &str) -> Option<i32> {
        if short.is_empty() || short.bytes().any(|b| b.is_ascii_uppercase()) {
            return None;
        }
        let full = format!("{}_{}", self.prefix, short.to_ascii_uppercase());
        (self.from_name)(&full).filter(|&n| n != 0)
    }

    /// The number of a full proto value name, e.g. `DEPLOYMENT_KIND_MINING` -> 5, and 0
    /// for `DEPLOYMENT_KIND_UNSPECIFIED` (the proto3 JSON form of an enum value).
    pub fn full_number(&self, full: &str) -> Option<i32> {
        (self.from_name)(full)
    }

    /// The full proto name of a number, e.g. 5 -> `DEPLOYMENT_KIND_MINING`.
    pub fn full_name(&self, n: i32) -> Option<&'static str> {
        (self.from_number)(n)
    }

    /// The policy-side name of a number, e.g. 5 -> `mining`; "unspecified" for zero.
    pub fn short_name(&self, n: i32) -> Option<String> {
        let full = (self.from_number)(n)?;
        Some(full[self.prefix.len() + 1..].to_ascii_lowercase())
    }

    /// Every value name except `unspecified`.
    pub fn names(&self) -> Vec<String> {
        (1..64).filter_map(|n| self.short_name(n)).collect()
    }

    /// Renders a bit set of this enum's numbers as `[a, b]`.
    pub fn render_set(&self, set: EnumSet) -> String {
        let names: Vec<String> = (0..64)
            .filter(|n| set & (1 << n) != 0)
            .map(|n| self.short_name(n).unwrap_or_else(|| n.to_string()))
            .collect();
        format!("[{}]", names.join(", "))
    }
}

macro_rules! enum_def {
    ($ty:ty, $name:literal, $prefix:literal) => {
        EnumDef {
            name: $name,
            prefix: $prefix,
            from_number: |n| <$ty>::try_from(n).ok().map(|e| e.as_str_name()),
            from_name: |s| <$ty>::from_str_name(s).map(|e| e as i32),
        }
    };
}

pub static DEPLOYMENT_KIND: EnumDef = enum_def!(proto::DeploymentKind, "DeploymentKind", "DEPLOYMENT_KIND");
pub static PROTOCOL_VARIANT: EnumDef = enum_def!(proto::ProtocolVariant, "ProtocolVariant", "PROTOCOL_VARIANT");
pub static PERMISSION_MODEL: EnumDef = enum_def!(proto::PermissionModel, "PermissionModel", "PERMISSION_MODEL");
pub static TOKEN_KIND: EnumDef = enum_def!(proto::TokenKind, "TokenKind", "TOKEN_KIND");
pub static STABLECOIN_BACKING: EnumDef = enum_def!(proto::StablecoinBacking, "StablecoinBacking", "STABLECOIN_BACKING");
pub static GAS_PAYMENT: EnumDef = enum_def!(proto::GasPayment, "GasPayment", "GAS_PAYMENT");
pub static SIGNATURE_ALGORITHM: EnumDef =
    enum_def!(proto::SignatureAlgorithm, "SignatureAlgorithm", "SIGNATURE_ALGORITHM");
pub static HASH_ALGORITHM: EnumDef = enum_def!(proto::HashAlgorithm, "HashAlgorithm", "HASH_ALGORITHM");
pub static CIPHER_ALGORITHM: EnumDef = enum_def!(proto::CipherAlgorithm, "CipherAlgorithm", "CIPHER_ALGORITHM");
pub static KEY_CUSTODY: EnumDef = enum_def!(proto::KeyCustody, "KeyCustody", "KEY_CUSTODY");
pub static SERVICE: EnumDef = enum_def!(proto::Service, "Service", "SERVICE");
pub static PRIVACY_FEATURE: EnumDef = enum_def!(proto::PrivacyFeature, "PrivacyFeature", "PRIVACY_FEATURE");
pub static ERASURE_MECHANISM: EnumDef = enum_def!(proto::ErasureMechanism, "ErasureMechanism", "ERASURE_MECHANISM");
pub static TRANSFER_MECHANISM: EnumDef = enum_def!(proto::TransferMechanism, "TransferMechanism", "TRANSFER_MECHANISM");
pub static END_USER_IDENTITY: EnumDef = enum_def!(proto::EndUserIdentity, "EndUserIdentity", "END_USER_IDENTITY");
pub static ASSET_CLASS: EnumDef = enum_def!(proto::AssetClass, "AssetClass", "ASSET_CLASS");
pub static DATA_SECTOR: EnumDef = enum_def!(proto::DataSector, "DataSector", "DATA_SECTOR");
pub static LICENCE_STATUS: EnumDef = enum_def!(proto::LicenceStatus, "LicenceStatus", "LICENCE_STATUS");

/// How the strings of an attribute are normalised on the request side, so policy
/// literals can be checked against the same form at load.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Case {
    /// Compared as written.
    AsIs,
    /// Upper case: region codes, asset symbols, currency codes.
    Upper,
    /// Lower case: addresses.
    Lower,
}

/// The type of an attribute, with the accessor the evaluator calls.
#[derive(Clone, Copy)]
pub enum Getter {
    Bool(fn(&Request) -> bool),
    Int(fn(&Request) -> i64),
    Str(Case, fn(&Request) -> &str),
    Enum(&'static EnumDef, fn(&Request) -> i32),
    EnumSet(&'static EnumDef, fn(&Request) -> EnumSet),
    StrList(Case, fn(&Request) -> &[String]),
    /// A list of messages, tested item by item with `any PATH where (...)`.
    Items(Items),
    /// A nested message: its only test is `present(...)`.
    Message(fn(&Request) -> bool),
}

impl Getter {
    pub fn type_name(&self) -> String {
        match self {
            Getter::Bool(_) => "bool".into(),
            Getter::Int(_) => "integer".into(),
            Getter::Str(..) => "string".into(),
            Getter::Enum(def, _) => format!("enum {}", def.name),
            Getter::EnumSet(def, _) => format!("list of enum {}", def.name),
            Getter::StrList(..) => "list of strings".into(),
            Getter::Items(items) => format!("list of {}s", items.noun()),
            Getter::Message(_) => "message".into(),
        }
    }
}

pub struct Attr {
    pub path: &'static str,
    pub getter: Getter,
}

const fn attr(path: &'static str, getter: Getter) -> Attr {
    Attr { path, getter }
}

fn empty<T>() -> &'static [T] {
    &[]
}

use Case::{AsIs, Lower, Upper};
use Getter as G;

/// Every request attribute a condition can name. `labels.NAME` is handled apart.
pub static ATTRS: &[Attr] = &[
    attr("request_id", G::Str(AsIs, |r| &r.request_id)),
    attr("deployment_kind", G::Enum(&DEPLOYMENT_KIND, |r| r.deployment_kind)),
    attr("protocol.name", G::Str(AsIs, |r| &r.protocol.name)),
    attr("protocol.variant", G::Enum(&PROTOCOL_VARIANT, |r| r.protocol.variant)),
    attr("protocol.version", G::Str(AsIs, |r| &r.protocol.version)),
    attr("permission_model", G::Enum(&PERMISSION_MODEL, |r| r.permission_model)),
    attr("consensus", G::Str(AsIs, |r| &r.consensus)),
    attr("node_count", G::Int(|r| r.node_count)),
    attr("node_regions", G::StrList(Upper, |r| &r.node_regions)),
    attr("consensus_node_regions", G::StrList(Upper, |r| &r.consensus_node_regions)),
    attr("served_jurisdictions", G::StrList(Upper, |r| &r.served_jurisdictions)),
    attr("node_subdivisions", G::StrList(Upper, |r| &r.node_subdivisions)),
    attr("served_subdivisions", G::StrList(Upper, |r| &r.served_subdivisions)),
    attr("serves_retail", G::Bool(|r| r.serves_retail)),
    attr("token", G::Message(|r| !r.tokens.is_empty())),
    attr("tokens", G::Items(Items::Tokens(|r| &r.tokens))),
    attr("token.kind", G::Enum(&TOKEN_KIND, |r| r.tokens.first().map_or(0, |t| t.kind))),
    attr("token.transferable", G::Bool(|r| r.tokens.first().is_some_and(|t| t.transferable))),
    attr("token.tradable", G::Bool(|r| r.tokens.first().is_some_and(|t| t.tradable))),
    attr("token.peg_currency", G::Str(Upper, |r| r.tokens.first().map_or("", |t| &t.peg_currency))),
    attr("token.validator_reward", G::Bool(|r| r.tokens.first().is_some_and(|t| t.validator_reward))),
    attr("token.backing", G::Enum(&STABLECOIN_BACKING, |r| r.tokens.first().map_or(0, |t| t.backing))),
    attr("gas_payment", G::Enum(&GAS_PAYMENT, |r| r.gas_payment)),
    attr("crypto.signature", G::EnumSet(&SIGNATURE_ALGORITHM, |r| r.crypto.signature)),
    attr("crypto.hash", G::EnumSet(&HASH_ALGORITHM, |r| r.crypto.hash)),
    attr("crypto.cipher", G::EnumSet(&CIPHER_ALGORITHM, |r| r.crypto.cipher)),
    attr("key_custody", G::Enum(&KEY_CUSTODY, |r| r.key_custody)),
    attr("contract_languages", G::StrList(AsIs, |r| &r.contract_languages)),
    attr("vm", G::Str(AsIs, |r| &r.vm)),
    attr("services", G::EnumSet(&SERVICE, |r| r.services)),
    attr("privacy_features", G::EnumSet(&PRIVACY_FEATURE, |r| r.privacy_features)),
    attr("addresses", G::StrList(Lower, |r| &r.addresses)),
    attr("assets", G::StrList(Upper, |r| &r.assets)),
    attr("asset_details", G::Items(Items::Assets(|r| &r.asset_details))),
    attr("data", G::Message(|r| r.data.is_some())),
    attr("data.pd_on_chain", G::Bool(|r| r.data.as_ref().is_some_and(|d| d.pd_on_chain))),
    attr("data.sensitive_pd", G::Bool(|r| r.data.as_ref().is_some_and(|d| d.sensitive_pd))),
    attr(
        "data.subject_jurisdictions",
        G::StrList(Upper, |r| r.data.as_ref().map_or(empty(), |d| &d.subject_jurisdictions)),
    ),
    attr("data.annual_subjects", G::Int(|r| r.data.as_ref().map_or(0, |d| d.annual_subjects))),
    attr("data.storage_regions", G::StrList(Upper, |r| r.data.as_ref().map_or(empty(), |d| &d.storage_regions))),
    attr("data.erasure_mechanism", G::Enum(&ERASURE_MECHANISM, |r| r.data.as_ref().map_or(0, |d| d.erasure_mechanism))),
    attr("data.dpia_done", G::Bool(|r| r.data.as_ref().is_some_and(|d| d.dpia_done))),
    attr(
        "data.transfer_mechanisms",
        G::EnumSet(&TRANSFER_MECHANISM, |r| r.data.as_ref().map_or(0, |d| d.transfer_mechanisms)),
    ),
    attr("data.sensitive_subjects", G::Int(|r| r.data.as_ref().map_or(0, |d| d.sensitive_subjects))),
    attr("data.important_data", G::Bool(|r| r.data.as_ref().is_some_and(|d| d.important_data))),
    attr("data.sectors", G::EnumSet(&DATA_SECTOR, |r| r.data.as_ref().map_or(0, |d| d.sectors))),
    attr("data.replica_regions", G::StrList(Upper, |r| r.data.as_ref().map_or(empty(), |d| &d.replica_regions))),
    attr("data.record_retention_days", G::Int(|r| r.data.as_ref().map_or(0, |d| d.record_retention_days))),
    attr("aml", G::Message(|r| r.aml.is_some())),
    attr("aml.travel_rule", G::Bool(|r| r.aml.as_ref().is_some_and(|a| a.travel_rule))),
    attr("aml.sanctions_screening", G::Bool(|r| r.aml.as_ref().is_some_and(|a| a.sanctions_screening))),
    attr("aml.customer_due_diligence", G::Bool(|r| r.aml.as_ref().is_some_and(|a| a.customer_due_diligence))),
    attr("moderation", G::Message(|r| r.moderation.is_some())),
    attr("moderation.takedown_capable", G::Bool(|r| r.moderation.as_ref().is_some_and(|m| m.takedown_capable))),
    attr("moderation.log_retention_days", G::Int(|r| r.moderation.as_ref().map_or(0, |m| m.log_retention_days))),
    attr("end_user_identity", G::Enum(&END_USER_IDENTITY, |r| r.end_user_identity)),
    attr("operator", G::Message(|r| r.operator.is_some())),
    attr("operator.entity_country", G::Str(Upper, |r| r.operator.as_ref().map_or("", |o| &o.entity_country))),
    attr("operator.is_ciio", G::Bool(|r| r.operator.as_ref().is_some_and(|o| o.is_ciio))),
    attr("operator.cac_filing_id", G::Str(AsIs, |r| r.operator.as_ref().map_or("", |o| &o.cac_filing_id))),
    attr("operator.licences", G::Items(Items::Licences(|r| r.operator.as_ref().map_or(empty(), |o| &o.licences)))),
    attr("operator.registrations", G::StrList(AsIs, |r| r.operator.as_ref().map_or(empty(), |o| &o.registrations))),
    attr("operator.public_scope_eso", G::Bool(|r| r.operator.as_ref().is_some_and(|o| o.public_scope_eso))),
];

/// A list of messages in the request, and how to read it.
#[derive(Clone, Copy)]
pub enum Items {
    Licences(fn(&Request) -> &[Licence]),
    Tokens(fn(&Request) -> &[Token]),
    Assets(fn(&Request) -> &[Asset]),
}

impl Items {
    /// What one item is called in messages: "licence", "token", "asset".
    pub fn noun(&self) -> &'static str {
        match self {
            Items::Licences(_) => "licence",
            Items::Tokens(_) => "token",
            Items::Assets(_) => "asset",
        }
    }

    /// The fields a `where (...)` over this list can read.
    pub fn fields(&self) -> &'static [Field] {
        match self {
            Items::Licences(_) => LICENCE_FIELDS,
            Items::Tokens(_) => TOKEN_FIELDS,
            Items::Assets(_) => ASSET_FIELDS,
        }
    }

    pub fn len(&self, r: &Request) -> usize {
        match self {
            Items::Licences(g) => g(r).len(),
            Items::Tokens(g) => g(r).len(),
            Items::Assets(g) => g(r).len(),
        }
    }

    pub fn is_empty(&self, r: &Request) -> bool {
        self.len(r) == 0
    }
}

/// One item of a list of messages, as the condition inside `where (...)` sees it.
#[derive(Clone, Copy, Debug)]
pub enum Item<'a> {
    Licence(&'a Licence),
    Token(&'a Token),
    Asset(&'a Asset),
}

/// The type of a field of an item, with its accessor. The compiler only pairs a field
/// with items of its own list, so an accessor handed another kind of item (which cannot
/// happen) reads the type's default.
#[derive(Clone, Copy)]
pub enum FieldGetter {
    Bool(fn(Item<'_>) -> bool),
    Str(Case, fn(Item<'_>) -> &str),
    Enum(&'static EnumDef, fn(Item<'_>) -> i32),
    EnumSet(&'static EnumDef, fn(Item<'_>) -> EnumSet),
    StrList(Case, fn(Item<'_>) -> &[String]),
    /// A date, compared with `"YYYY-MM-DD"` literals; absent when the request left it empty.
    Date(fn(Item<'_>) -> Option<Day>),
    /// Derived: a licence that is active and not past its expiry on the evaluation day.
    InForce,
}

impl FieldGetter {
    pub fn type_name(&self) -> String {
        match self {
            FieldGetter::Bool(_) | FieldGetter::InForce => "bool".into(),
            FieldGetter::Str(..) => "string".into(),
            FieldGetter::Enum(def, _) => format!("enum {}", def.name),
            FieldGetter::EnumSet(def, _) => format!("list of enum {}", def.name),
            FieldGetter::StrList(..) => "list of strings".into(),
            FieldGetter::Date(_) => "date".into(),
        }
    }
}

pub struct Field {
    pub name: &'static str,
    pub getter: FieldGetter,
}

const fn field(name: &'static str, getter: FieldGetter) -> Field {
    Field { name, getter }
}

/// An accessor over one kind of item: `on!(Licence, |l| &l.regulator)`.
macro_rules! on {
    ($kind:ident, |$x:ident| $body:expr) => {
        |item| match item {
            Item::$kind($x) => $body,
            _ => Default::default(),
        }
    };
}

use FieldGetter as F;

/// Fields of one licence. `regulator` is upper-cased and `kind` lower-cased, and policy
/// literals are checked against that form at load, so both match whatever case a portal
/// sends.
pub static LICENCE_FIELDS: &[Field] = &[
    field("regulator", F::Str(Upper, on!(Licence, |l| &l.regulator))),
    field("kind", F::Str(Lower, on!(Licence, |l| &l.kind))),
    field("id", F::Str(AsIs, on!(Licence, |l| &l.id))),
    field("status", F::Enum(&LICENCE_STATUS, on!(Licence, |l| l.status))),
    field("expires", F::Date(on!(Licence, |l| l.expires))),
    field("activities", F::EnumSet(&SERVICE, on!(Licence, |l| l.activities))),
    field("in_force", F::InForce),
];

/// Fields of one token (`token` first, then `tokens`).
pub static TOKEN_FIELDS: &[Field] = &[
    field("kind", F::Enum(&TOKEN_KIND, on!(Token, |t| t.kind))),
    field("transferable", F::Bool(on!(Token, |t| t.transferable))),
    field("tradable", F::Bool(on!(Token, |t| t.tradable))),
    field("peg_currency", F::Str(Upper, on!(Token, |t| &t.peg_currency))),
    field("validator_reward", F::Bool(on!(Token, |t| t.validator_reward))),
    field("backing", F::Enum(&STABLECOIN_BACKING, on!(Token, |t| t.backing))),
];

/// Fields of one `asset_details` entry. `authorisations` are lower-cased.
pub static ASSET_FIELDS: &[Field] = &[
    field("symbol", F::Str(Upper, on!(Asset, |a| &a.symbol))),
    field("classes", F::EnumSet(&ASSET_CLASS, on!(Asset, |a| a.classes))),
    field("peg_currency", F::Str(Upper, on!(Asset, |a| &a.peg_currency))),
    field("authorisations", F::StrList(Lower, on!(Asset, |a| &a.authorisations))),
];

pub fn lookup(path: &str) -> Option<&'static Attr> {
    ATTRS.iter().find(|a| a.path == path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enum_names_round_trip() {
        for def in [
            &DEPLOYMENT_KIND,
            &PROTOCOL_VARIANT,
            &PERMISSION_MODEL,
            &TOKEN_KIND,
            &STABLECOIN_BACKING,
            &GAS_PAYMENT,
            &SIGNATURE_ALGORITHM,
            &HASH_ALGORITHM,
            &CIPHER_ALGORITHM,
            &KEY_CUSTODY,
            &SERVICE,
            &PRIVACY_FEATURE,
            &ERASURE_MECHANISM,
            &TRANSFER_MECHANISM,
            &END_USER_IDENTITY,
            &ASSET_CLASS,
            &DATA_SECTOR,
            &LICENCE_STATUS,
        ] {
            let names = def.names();
            assert!(!names.is_empty(), "{}", def.name);
            for name in names {
                let n = def.number(&name).unwrap();
                assert_eq!(def.short_name(n).unwrap(), name);
            }
            assert_eq!(def.number("unspecified"), None);
        }
        assert_eq!(DEPLOYMENT_KIND.number("mining"), Some(5));
        assert_eq!(DEPLOYMENT_KIND.number("MINING"), None);
    }

    #[test]
    fn paths_are_unique() {
        let mut paths: Vec<_> = ATTRS.iter().map(|a| a.path).collect();
        paths.sort();
        paths.dedup();
        assert_eq!(paths.len(), ATTRS.len());
        for fields in [LICENCE_FIELDS, TOKEN_FIELDS, ASSET_FIELDS] {
            let mut names: Vec<_> = fields.iter().map(|f| f.name).collect();
            names.sort();
            names.dedup();
            assert_eq!(names.len(), fields.len());
        }
    }
}
