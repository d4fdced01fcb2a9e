//! Fuzz targets for request files (`silkgate_core::request::file`): TOML and JSON texts to
//! `RequestFile`, to the proto `DeploymentRequest`, to the `Request` policies read.
//!
//! Properties: no input panics or hangs; a refusal is an error with a message (naming the
//! field for conversion errors); a file that converts yields a proto message that
//! survives encoding, and a request that evaluates under every shipped policy,
//! consistently and fail-closed (never ALLOW when a deny rule matched). A file rewritten
//! in the proto3 JSON mapping (lowerCamelCase names, full enum names, integers as
//! strings) reads as the same message, or is refused as the original was.
//!
//! `SILKGATE_FUZZ_CASES=N` sets the cases per property (see README, "Fuzzing"). Inputs
//! that once crashed live in `tests/data/fuzz-corpus/request-file/` (`.json` files are
//! read as JSON, everything else as TOML).

mod fuzz_common;

use std::time::Duration;

use fuzz_common::*;
use proptest::prelude::*;
use prost::Message;
use silkgate::proto;
use silkgate_core::request::Request;
use silkgate_core::request::file::RequestFile;
use silkgate_core::schema;

#[derive(Clone, Copy, Debug)]
enum Format {
    Toml,
    Json,
}

/// Reads a request file as the CLI does and checks every stage.
fn check_file(text: &str, format: Format) {
    let parsed = timed("parse", || match format {
        Format::Toml => RequestFile::from_toml(text),
        Format::Json => RequestFile::from_json(text),
    });
    let file = match parsed {
        Ok(f) => f,
        Err(e) => return assert!(!e.is_empty(), "an empty parse error"),
    };
    let message = match timed("to_proto", || file.to_proto()) {
        Ok(m) => m,
        Err(e) => return assert!(!e.field.is_empty() && !e.reason.is_empty(), "{e:?}"),
    };
    let again = proto::DeploymentRequest::decode(message.encode_to_vec().as_slice()).expect("re-decode");
    assert_eq!(again, message, "the proto message does not survive encoding");
    let req = match timed("Request::try_from", || Request::try_from(message)) {
        Ok(r) => r,
        Err(e) => return assert!(!e.field.is_empty() && !e.reason.is_empty(), "{e:?}"),
    };
    timed("evaluate", || {
        for policy in shipped().policies.values() {
            for day in days() {
                check_outcome(policy, &req, day);
            }
        }
    });
}

const TOML_DICT: &[&[u8]] = &[
    b"\n",
    b"[",
    b"]",
    b"[[",
    b"]]",
    b"{",
    b"}",
    b"=",
    b"\"",
    b"'",
    b"'''",
    b"\"\"\"",
    b",",
    b"#",
    b"\\",
    b"\\u00e9",
    b"\xc3\xa9",
    b"\x00",
    b"\xff",
    b"[operator]\n",
    b"[[operator.licences]]\nregulator = \"MAS\"\n",
    b"[labels]\n",
    b"x = 1\n",
    b"node_count = -1\n",
    b"node_count = 4294967296\n",
    b"annual_subjects = 1e400\n",
    b"request_id = \"\"\n",
    b"services = [\"exchange\", \"stakin\"]\n",
    b"1979-05-27T07:32:00Z",
    b"inf",
    b"nan",
    b"a = [[[[[[[[[[[[[[[[[[[[",
    b"a = {b={c={d={e={f={",
];

const JSON_DICT: &[&[u8]] = &[
    b"{",
    b"}",
    b"[",
    b"]",
    b":",
    b",",
    b"\"",
    b"\\",
    b"\\u0000",
    b"\\ud800",
    b"null",
    b"true",
    b"-0",
    b"1e999",
    b"18446744073709551616",
    b"\"request_id\":",
    b"\"labels\":{\"a\":\"b\"}",
    b"[[[[[[[[[[[[[[[[[[[[",
    b"{\"a\":{\"a\":{\"a\":",
    b"\xc3\xa9",
    b"\xff",
];

fn enum_names(def: &schema::EnumDef) -> Vec<String> {
    let mut n = def.names();
    n.push("unspecified".into());
    n.push("EXCHANGE".into());
    n
}

fn enum_value(def: &'static schema::EnumDef) -> impl Strategy<Value = String> {
    prop_oneof![8 => proptest::sample::select(enum_names(def)), 1 => "[a-z_]{0,10}"]
        .prop_map(|s| toml::Value::String(s).to_string())
}

fn enum_list(def: &'static schema::EnumDef) -> impl Strategy<Value = String> {
    proptest::collection::vec(enum_value(def), 0..4).prop_map(|v| format!("[{}]", v.join(", ")))
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[A-Z]{2}",
        2 => "[a-z0-9_.-]{0,10}",
        2 => "(?s).{0,12}",
        1 => "[a-z]{250,260}",
    ]
    .prop_map(|s| toml::Value::String(s).to_string())
}

fn texts() -> impl Strategy<Value = String> {
    proptest::collection::vec(text(), 0..4).prop_map(|v| format!("[{}]", v.join(", ")))
}

fn int() -> impl Strategy<Value = String> {
    prop_oneof![8 => (0u32..10).prop_map(|i| i.to_string()), 1 => any::<i64>().prop_map(|i| i.to_string()),
        1 => Just("18446744073709551615".to_string()), 1 => Just("1.5".to_string())]
}

fn boolean() -> impl Strategy<Value = String> {
    prop_oneof![9 => any::<bool>().prop_map(|b| b.to_string()), 1 => Just("\"true\"".to_string())]
}

/// A request file from the schema: known keys with mostly valid values, in TOML.
fn structured_toml() -> impl Strategy<Value = String> {
    let top = proptest::collection::vec(
        prop_oneof![
            prop_oneof!["[a-z0-9-]{1,12}", "(?s).{0,8}"]
                .prop_map(|s| format!("request_id = {}", toml::Value::String(s))),
            enum_value(&schema::DEPLOYMENT_KIND).prop_map(|v| format!("deployment_kind = {v}")),
            enum_value(&schema::PERMISSION_MODEL).prop_map(|v| format!("permission_model = {v}")),
            text().prop_map(|v| format!("consensus = {v}")),
            int().prop_map(|v| format!("node_count = {v}")),
            texts().prop_map(|v| format!("node_regions = {v}")),
            texts().prop_map(|v| format!("consensus_node_regions = {v}")),
            texts().prop_map(|v| format!("served_jurisdictions = {v}")),
            boolean().prop_map(|v| format!("serves_retail = {v}")),
            enum_value(&schema::GAS_PAYMENT).prop_map(|v| format!("gas_payment = {v}")),
            enum_value(&schema::KEY_CUSTODY).prop_map(|v| format!("key_custody = {v}")),
            texts().prop_map(|v| format!("contract_languages = {v}")),
            text().prop_map(|v| format!("vm = {v}")),
            enum_list(&schema::SERVICE).prop_map(|v| format!("services = {v}")),
            enum_list(&schema::PRIVACY_FEATURE).prop_map(|v| format!("privacy_features = {v}")),
            texts().prop_map(|v| format!("addresses = {v}")),
            enum_value(&schema::END_USER_IDENTITY).prop_map(|v| format!("end_user_identity = {v}")),
            texts().prop_map(|v| format!("assets = {v}")),
            ("[a-z_]{1,8}", text()).prop_map(|(k, v)| format!("labels = {{ {k} = {v} }}")),
            Just("bogus = 1".to_string()),
        ],
        0..12,
    );
    let protocol = proptest::option::of((text(), enum_value(&schema::PROTOCOL_VARIANT), text()))
        .prop_map(|p| p.map(|(n, v, ver)| format!("[protocol]\nname = {n}\nvariant = {v}\nversion = {ver}\n")));
    let token = proptest::option::of((
        enum_value(&schema::TOKEN_KIND),
        boolean(),
        boolean(),
        text(),
        enum_value(&schema::STABLECOIN_BACKING),
    ))
    .prop_map(|t| {
        t.map(|(k, tr, td, peg, b)| {
            format!("[token]\nkind = {k}\ntransferable = {tr}\ntradable = {td}\npeg_currency = {peg}\nbacking = {b}\n")
        })
    });
    let crypto = proptest::option::of((
        enum_list(&schema::SIGNATURE_ALGORITHM),
        enum_list(&schema::HASH_ALGORITHM),
        enum_list(&schema::CIPHER_ALGORITHM),
    ))
    .prop_map(|c| c.map(|(s, h, ci)| format!("[crypto]\nsignature = {s}\nhash = {h}\ncipher = {ci}\n")));
    let data = proptest::option::of((boolean(), texts(), int(), texts(), enum_value(&schema::ERASURE_MECHANISM), enum_list(&schema::TRANSFER_MECHANISM)))
        .prop_map(|d| {
            d.map(|(pd, sj, a, sr, e, tm)| {
                format!("[data]\npd_on_chain = {pd}\nsubject_jurisdictions = {sj}\nannual_subjects = {a}\nstorage_regions = {sr}\nerasure_mechanism = {e}\ntransfer_mechanisms = {tm}\n")
            })
        });
    let moderation = proptest::option::of((boolean(), int()))
        .prop_map(|m| m.map(|(t, d)| format!("[moderation]\ntakedown_capable = {t}\nlog_retention_days = {d}\n")));
    let operator = proptest::option::of((
        text(),
        boolean(),
        text(),
        proptest::collection::vec((text(), text(), text()), 0..3),
        texts(),
    ))
    .prop_map(|o| {
        o.map(|(c, ciio, cac, lic, reg)| {
            let mut s = format!(
                "[operator]\nentity_country = {c}\nis_ciio = {ciio}\ncac_filing_id = {cac}\nregistrations = {reg}\n"
            );
            for (r, k, i) in lic {
                s.push_str(&format!("[[operator.licences]]\nregulator = {r}\nkind = {k}\nid = {i}\n"));
            }
            s
        })
    });
    (top, protocol, token, crypto, data, moderation, operator).prop_map(|(top, p, t, c, d, m, o)| {
        let mut s: String = top.into_iter().map(|l| l + "\n").collect();
        for table in [p, t, c, d, m, o].into_iter().flatten() {
            s.push_str(&table);
        }
        s
    })
}

proptest! {
    #![proptest_config(config())]

    /// The shipped request files (examples and the policy tests' base requests), mutated.
    #[test]
    fn request_toml_mutated(seed in any::<usize>(), ops in ops(8)) {
        let seeds = seed_requests_toml();
        let bytes = mutate(seeds[seed % seeds.len()].1.as_bytes(), &ops, TOML_DICT, 64 << 10);
        check_file(&String::from_utf8_lossy(&bytes), Format::Toml);
    }

    #[test]
    fn request_json_mutated(seed in any::<usize>(), ops in ops(8)) {
        let seeds = seed_requests_json();
        let bytes = mutate(seeds[seed % seeds.len()].1.as_bytes(), &ops, JSON_DICT, 64 << 10);
        check_file(&String::from_utf8_lossy(&bytes), Format::Json);
    }

    /// The shipped requests rewritten in proto3 JSON (and the proto-JSON examples), mutated.
    #[test]
    fn request_proto_json_mutated(seed in any::<usize>(), ops in ops(8)) {
        let seeds = proto_json_seeds();
        let bytes = mutate(seeds[seed % seeds.len()].1.as_bytes(), &ops, JSON_DICT, 64 << 10);
        check_file(&String::from_utf8_lossy(&bytes), Format::Json);
    }

    /// Files generated from the schema, rewritten in proto3 JSON: the same message, or
    /// refused with an error naming a field.
    #[test]
    fn request_structured_proto_json(text in structured_toml()) {
        let Ok(v) = toml::from_str::<serde_json::Value>(&text) else { return Ok(()) };
        let json = proto_json(&v, "", "").to_string();
        check_file(&json, Format::Json);
        let from_toml = RequestFile::from_toml(&text).ok().and_then(|f| f.to_proto().ok());
        let from_json = RequestFile::from_json(&json).map_err(|e| e.to_string()).and_then(|f| f.to_proto().map_err(|e| e.to_string()));
        if let Some(p) = from_toml {
            prop_assert_eq!(from_json, Ok(p), "{}", json);
        }
    }

    /// Arbitrary text, as TOML and as JSON.
    #[test]
    fn request_arbitrary_text(text in "(?s).{0,300}") {
        check_file(&text, Format::Toml);
        check_file(&text, Format::Json);
    }

    /// Files generated from the schema: the field names with random, mostly valid,
    /// values; converted to JSON too.
    #[test]
    fn request_structured(text in structured_toml()) {
        check_file(&text, Format::Toml);
        if let Ok(v) = toml::from_str::<toml::Value>(&text) {
            check_file(&serde_json::to_string(&v).unwrap(), Format::Json);
        }
    }
}

/// Inputs that once crashed or hung, replayed on every run.
#[test]
fn corpus_request_files() {
    for (name, bytes) in corpus("request-file") {
        let format = if name.ends_with(".json") { Format::Json } else { Format::Toml };
        let text = String::from_utf8_lossy(&bytes).into_owned();
        within(&format!("request-file corpus {name}"), Duration::from_secs(30), move || check_file(&text, format));
    }
}

/// Deep nesting in both formats (generated: the texts are large).
#[test]
fn deep_nesting() {
    for n in [1_000, 100_000] {
        let texts = [
            (format!("labels = {}", "[".repeat(n)), Format::Toml),
            (format!("labels = {}", "{a=".repeat(n)), Format::Toml),
            (format!("{{\"labels\":{}", "[".repeat(n)), Format::Json),
            (format!("{{\"labels\":{}", "{\"a\":".repeat(n)), Format::Json),
        ];
        for (text, format) in texts {
            within(&format!("{n} nested, {format:?}"), Duration::from_secs(60), move || check_file(&text, format));
        }
    }
}

/// The enum a request file field holds, by the field's name and its message's name.
fn enum_of(parent: &str, key: &str) -> Option<&'static schema::EnumDef> {
    Some(match (parent, key) {
        ("", "deployment_kind") => &schema::DEPLOYMENT_KIND,
        ("", "permission_model") => &schema::PERMISSION_MODEL,
        ("", "gas_payment") => &schema::GAS_PAYMENT,
        ("", "key_custody") => &schema::KEY_CUSTODY,
        ("", "services") | ("licences", "activities") => &schema::SERVICE,
        ("", "privacy_features") => &schema::PRIVACY_FEATURE,
        ("", "end_user_identity") => &schema::END_USER_IDENTITY,
        ("protocol", "variant") => &schema::PROTOCOL_VARIANT,
        ("token" | "tokens", "kind") => &schema::TOKEN_KIND,
        ("token" | "tokens", "backing") => &schema::STABLECOIN_BACKING,
        ("crypto", "signature") => &schema::SIGNATURE_ALGORITHM,
        ("crypto", "hash") => &schema::HASH_ALGORITHM,
        ("crypto", "cipher") => &schema::CIPHER_ALGORITHM,
        ("data", "erasure_mechanism") => &schema::ERASURE_MECHANISM,
        ("data", "transfer_mechanisms") => &schema::TRANSFER_MECHANISM,
        ("data", "sectors") => &schema::DATA_SECTOR,
        ("licences", "status") => &schema::LICENCE_STATUS,
        ("asset_details", "classes") => &schema::ASSET_CLASS,
        _ => return None,
    })
}

/// A request file's JSON rewritten as a proto3 JSON printer would: lowerCamelCase field
/// names (label names are data and stay), full enum names, integers as strings. `v` is
/// the value of `field` in the message `msg` ("" for the request itself).
fn proto_json(v: &serde_json::Value, msg: &str, field: &str) -> serde_json::Value {
    use serde_json::Value;
    let camel = |k: &str| -> String {
        k.split('_')
            .enumerate()
            .map(|(i, w)| if i == 0 { w.to_string() } else { w[..1].to_uppercase() + &w[1..] })
            .collect()
    };
    match v {
        Value::Object(_) if field == "labels" => v.clone(),
        Value::Object(m) => Value::Object(m.iter().map(|(k, x)| (camel(k), proto_json(x, field, k))).collect()),
        Value::Array(a) => Value::Array(a.iter().map(|x| proto_json(x, msg, field)).collect()),
        Value::String(s) => {
            let full = enum_of(msg, field).and_then(|def| def.number(s).and_then(|n| def.full_name(n)));
            Value::from(full.unwrap_or(s))
        }
        Value::Number(n) if n.is_u64() => Value::from(n.to_string()),
        other => other.clone(),
    }
}

/// The seed requests in proto3 JSON, plus the proto-JSON examples (`examples/*.json`).
fn proto_json_seeds() -> &'static [(String, String)] {
    static SEEDS: std::sync::OnceLock<Vec<(String, String)>> = std::sync::OnceLock::new();
    SEEDS.get_or_init(|| {
        let mut out: Vec<(String, String)> = seed_requests_toml()
            .iter()
            .map(|(n, t)| {
                let v: serde_json::Value = toml::from_str(t).unwrap();
                (format!("{n} (proto JSON)"), serde_json::to_string_pretty(&proto_json(&v, "", "")).unwrap())
            })
            .collect();
        for e in std::fs::read_dir(repo().join("examples")).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "json") {
                out.push((p.display().to_string(), std::fs::read_to_string(&p).unwrap()));
            }
        }
        out
    })
}

/// Every shipped request reads the same in proto3 JSON as in TOML, and the proto-JSON
/// examples convert and evaluate under every shipped policy.
#[test]
fn proto_json_seeds_read_the_same() {
    for (name, text) in seed_requests_toml() {
        let want = RequestFile::from_toml(text).unwrap().to_proto().unwrap();
        let v: serde_json::Value = toml::from_str(text).unwrap();
        let json = proto_json(&v, "", "").to_string();
        let got = RequestFile::from_json(&json).unwrap_or_else(|e| panic!("{name}: {e}\n{json}")).to_proto().unwrap();
        assert_eq!(got, want, "{name}");
    }
    let examples: Vec<_> = proto_json_seeds().iter().filter(|(n, _)| n.ends_with(".json")).collect();
    assert!(!examples.is_empty());
    for (name, text) in examples {
        let p = RequestFile::from_json(text).unwrap_or_else(|e| panic!("{name}: {e}")).to_proto().unwrap();
        let req = Request::try_from(p).unwrap_or_else(|e| panic!("{name}: {e}"));
        for policy in shipped().policies.values() {
            for day in days() {
                check_outcome(policy, &req, day);
            }
        }
    }
}

/// Every shipped seed converts and evaluates: the mutation targets start from valid files.
#[test]
fn seeds_convert() {
    for (name, text) in seed_requests_toml() {
        let f = RequestFile::from_toml(text).unwrap_or_else(|e| panic!("{name}: {e}"));
        Request::try_from(f.to_proto().unwrap_or_else(|e| panic!("{name}: {e}")))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    assert!(seed_requests().len() >= 5);
}
