//! JSON request files in the canonical proto3 JSON mapping, brought to the request file's
//! own form before it is deserialized.
//!
//! What the mapping allows and a request file written by hand does not: lowerCamelCase
//! field names (`requestId`) beside the proto names (`request_id`); enum values as full
//! names (`DEPLOYMENT_KIND_OPB_CHAIN`) or numbers beside the short names (`opb_chain`);
//! integers as numbers or decimal strings (`"250000"`, how int64 and uint64 are printed);
//! `null` for any field, meaning its default. `DeploymentRequest` has no
//! `google.protobuf.Timestamp`, bytes or floating-point field, so those forms do not
//! arise. Every value is checked against the field table below, so an error names the
//! field path (`operator.licences[0].status`).

use serde_json::{Map, Value};

use crate::diag::suggest;
use crate::schema::{self, EnumDef};

/// The type of a field as JSON carries it.
enum Kind {
    Str,
    Strs,
    Bool,
    /// An unsigned integer with its largest value.
    Uint(u64),
    Enum(&'static EnumDef),
    Enums(&'static EnumDef),
    Msg(&'static [Field]),
    Msgs(&'static [Field]),
    /// `map<string, string>`: keys are data, not field names.
    StrMap,
}

type Field = (&'static str, Kind);

use Kind::*;

const U32: Kind = Uint(u32::MAX as u64);
const U64: Kind = Uint(u64::MAX);

static PROTOCOL: &[Field] = &[("name", Str), ("variant", Enum(&schema::PROTOCOL_VARIANT)), ("version", Str)];

static TOKEN: &[Field] = &[
    ("kind", Enum(&schema::TOKEN_KIND)),
    ("transferable", Bool),
    ("tradable", Bool),
    ("peg_currency", Str),
    ("validator_reward", Bool),
    ("backing", Enum(&schema::STABLECOIN_BACKING)),
];

static CRYPTO: &[Field] = &[
    ("signature", Enums(&schema::SIGNATURE_ALGORITHM)),
    ("hash", Enums(&schema::HASH_ALGORITHM)),
    ("cipher", Enums(&schema::CIPHER_ALGORITHM)),
];

static DATA: &[Field] = &[
    ("pd_on_chain", Bool),
    ("sensitive_pd", Bool),
    ("subject_jurisdictions", Strs),
    ("annual_subjects", U64),
    ("storage_regions", Strs),
    ("erasure_mechanism", Enum(&schema::ERASURE_MECHANISM)),
    ("dpia_done", Bool),
    ("transfer_mechanisms", Enums(&schema::TRANSFER_MECHANISM)),
    ("sensitive_subjects", U64),
    ("important_data", Bool),
    ("sectors", Enums(&schema::DATA_SECTOR)),
    ("replica_regions", Strs),
    ("record_retention_days", U64),
];

static MODERATION: &[Field] = &[("takedown_capable", Bool), ("log_retention_days", U32)];

static LICENCE: &[Field] = &[
    ("regulator", Str),
    ("kind", Str),
    ("id", Str),
    ("status", Enum(&schema::LICENCE_STATUS)),
    ("expires", Str),
    ("activities", Enums(&schema::SERVICE)),
];

static OPERATOR: &[Field] = &[
    ("entity_country", Str),
    ("is_ciio", Bool),
    ("cac_filing_id", Str),
    ("licences", Msgs(LICENCE)),
    ("registrations", Strs),
    ("public_scope_eso", Bool),
];

static ASSET: &[Field] =
    &[("symbol", Str), ("classes", Enums(&schema::ASSET_CLASS)), ("peg_currency", Str), ("authorisations", Strs)];

static AML: &[Field] = &[("travel_rule", Bool), ("sanctions_screening", Bool), ("customer_due_diligence", Bool)];

/// Every field of `DeploymentRequest`, by its proto name.
static REQUEST: &[Field] = &[
    ("request_id", Str),
    ("deployment_kind", Enum(&schema::DEPLOYMENT_KIND)),
    ("protocol", Msg(PROTOCOL)),
    ("permission_model", Enum(&schema::PERMISSION_MODEL)),
    ("consensus", Str),
    ("node_count", U32),
    ("node_regions", Strs),
    ("consensus_node_regions", Strs),
    ("served_jurisdictions", Strs),
    ("serves_retail", Bool),
    ("token", Msg(TOKEN)),
    ("gas_payment", Enum(&schema::GAS_PAYMENT)),
    ("crypto", Msg(CRYPTO)),
    ("key_custody", Enum(&schema::KEY_CUSTODY)),
    ("contract_languages", Strs),
    ("vm", Str),
    ("services", Enums(&schema::SERVICE)),
    ("privacy_features", Enums(&schema::PRIVACY_FEATURE)),
    ("addresses", Strs),
    ("data", Msg(DATA)),
    ("moderation", Msg(MODERATION)),
    ("end_user_identity", Enum(&schema::END_USER_IDENTITY)),
    ("operator", Msg(OPERATOR)),
    ("labels", StrMap),
    ("assets", Strs),
    ("node_subdivisions", Strs),
    ("served_subdivisions", Strs),
    ("asset_details", Msgs(ASSET)),
    ("tokens", Msgs(TOKEN)),
    ("aml", Msg(AML)),
];

/// A `DeploymentRequest` in proto3 JSON, rewritten with proto field names, short enum
/// names and JSON numbers, `null`s dropped. The error is `path: reason`.
pub(super) fn normalise(v: Value) -> Result<Value, String> {
    message(v, REQUEST, "")
}

/// The lowerCamelCase JSON name of a proto field name (`pd_on_chain` -> `pdOnChain`).
fn camel(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut upper = false;
    for c in name.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.push(c.to_ascii_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

fn at(path: &str, name: &str) -> String {
    if path.is_empty() { name.to_string() } else { format!("{path}.{name}") }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a bool",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

fn expected(path: &str, what: &str, v: &Value) -> String {
    format!("{path}: expected {what}, found {}", type_name(v))
}

fn message(v: Value, fields: &'static [Field], path: &str) -> Result<Value, String> {
    let Value::Object(obj) = v else {
        let shown = if path.is_empty() { "request" } else { path };
        return Err(expected(shown, "an object", &v));
    };
    let mut out = Map::new();
    for (key, value) in obj {
        let Some((name, kind)) = fields.iter().find(|(n, _)| *n == key || camel(n) == key) else {
            let names: Vec<String> = fields.iter().map(|(n, _)| camel(n)).collect();
            let hint = match suggest(&key, names.iter().map(String::as_str)) {
                Some(s) => format!("; did you mean `{s}`?"),
                None => String::new(),
            };
            return Err(format!("{}: unknown field{hint}", at(path, &key)));
        };
        let here = at(path, name);
        if out.contains_key(*name) {
            return Err(format!("{here}: given twice (as `{name}` and `{}`)", camel(name)));
        }
        if value.is_null() {
            // proto3 JSON: null is the field's default. Recorded so a second spelling is
            // still caught, then dropped below.
            out.insert(name.to_string(), Value::Null);
            continue;
        }
        out.insert(name.to_string(), field(value, kind, &here)?);
    }
    out.retain(|_, v| !v.is_null());
    Ok(Value::Object(out))
}

fn field(v: Value, kind: &Kind, path: &str) -> Result<Value, String> {
    match kind {
        Str => match v {
            Value::String(_) => Ok(v),
            _ => Err(expected(path, "a string", &v)),
        },
        Bool => match v {
            Value::Bool(_) => Ok(v),
            _ => Err(expected(path, "true or false", &v)),
        },
        Uint(max) => uint(&v, *max, path).map(Value::from),
        Enum(def) => enum_value(v, def, path),
        Msg(fields) => message(v, fields, path),
        Strs | Enums(_) | Msgs(_) => {
            let Value::Array(items) = v else {
                return Err(expected(path, "a list", &v));
            };
            let item_kind = match kind {
                Strs => &Str,
                Enums(def) => &Enum(def),
                Msgs(fields) => &Msg(fields),
                _ => unreachable!("only list kinds reach here"),
            };
            items
                .into_iter()
                .enumerate()
                .map(|(i, item)| {
                    let here = format!("{path}[{i}]");
                    if item.is_null() {
                        return Err(format!("{here}: null is not allowed inside a list"));
                    }
                    field(item, item_kind, &here)
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Value::Array)
        }
        StrMap => {
            let Value::Object(obj) = v else {
                return Err(expected(path, "an object of strings", &v));
            };
            for (k, value) in &obj {
                if !value.is_string() {
                    return Err(expected(&format!("{path}[{k:?}]"), "a string", value));
                }
            }
            Ok(Value::Object(obj))
        }
    }
}

/// An unsigned integer from a JSON number or a decimal string, no larger than `max`.
fn uint(v: &Value, max: u64, path: &str) -> Result<u64, String> {
    let n = match v {
        Value::Number(n) => n.as_u64().or_else(|| {
            // `1e3` and `1000.0` are integers in proto3 JSON; anything past 2^53 is not exact.
            n.as_f64().filter(|f| f.fract() == 0.0 && (0.0..=9_007_199_254_740_992.0).contains(f)).map(|f| f as u64)
        }),
        Value::String(s) => s.parse::<u64>().ok(),
        _ => return Err(expected(path, "a non-negative integer (a number or a decimal string)", v)),
    };
    match n {
        Some(n) if n <= max => Ok(n),
        Some(n) => Err(format!("{path}: {n} is larger than {max}")),
        None => {
            let shown = match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            Err(format!("{path}: `{}` is not a non-negative integer", crate::request::echo(&shown)))
        }
    }
}

/// An enum value as its short name (`opb_chain`): from the short name, the full name
/// (`DEPLOYMENT_KIND_OPB_CHAIN`) or the number. Zero and `..._UNSPECIFIED` are the
/// default (an empty string); a short name is checked later, where TOML's are.
fn enum_value(v: Value, def: &EnumDef, path: &str) -> Result<Value, String> {
    let n = match &v {
        Value::String(s) => match def.full_number(s) {
            Some(n) => n,
            None => return Ok(v),
        },
        Value::Number(num) => match num.as_i64().and_then(|n| i32::try_from(n).ok()) {
            Some(n) => n,
            None => return Err(format!("{path}: `{num}` is not a value of {}", def.name)),
        },
        _ => return Err(expected(path, &format!("a value of {} (a name or a number)", def.name), &v)),
    };
    if n == 0 {
        return Ok(Value::String(String::new()));
    }
    match def.short_name(n) {
        Some(short) => Ok(Value::String(short)),
        None => Err(format!("{path}: {n} is not a value of {}", def.name)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn camel_case_names() {
        assert_eq!(camel("pd_on_chain"), "pdOnChain");
        assert_eq!(camel("vm"), "vm");
        assert_eq!(camel("is_ciio"), "isCiio");
    }

    #[test]
    fn every_field_is_one_the_request_file_reads() {
        // A value of every field, in camelCase, must normalise and deserialize: the
        // table and the `RequestFile` structs name the same fields.
        fn sample(fields: &'static [Field]) -> Value {
            let mut obj = Map::new();
            for (name, kind) in fields {
                let v = match kind {
                    Str => Value::from("x"),
                    Strs => Value::from(vec!["x"]),
                    Bool => Value::from(true),
                    Uint(_) => Value::from("7"),
                    Enum(def) => Value::from(def.full_name(1).unwrap()),
                    Enums(_) => Value::from(vec![1]),
                    Msg(f) => sample(f),
                    Msgs(f) => Value::Array(vec![sample(f)]),
                    StrMap => serde_json::json!({ "k": "v" }),
                };
                obj.insert(camel(name), v);
            }
            Value::Object(obj)
        }
        let v = normalise(sample(REQUEST)).unwrap();
        let f: super::super::RequestFile = serde_json::from_value(v).unwrap();
        let p = f.to_proto().unwrap();
        assert_eq!(p.data.unwrap().annual_subjects, 7);
    }
}
