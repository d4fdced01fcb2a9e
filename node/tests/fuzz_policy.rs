//! Fuzz targets for policies: the condition parser (`policy::expr::parse`) and whole
//! policy texts through parse, build (compile), lint and evaluation, as the loader runs
//! them but without I/O. Properties: no input panics or hangs; a refused input yields
//! diagnostics that render; an accepted policy evaluates every seed request consistently
//! and never answers ALLOW when one of its deny rules matched.
//!
//! `SILKGATE_FUZZ_CASES=N` sets the cases per property (see README, "Fuzzing"). Inputs
//! that once crashed live in `tests/data/fuzz-corpus/{condition,policy}/`.

mod fuzz_common;

use std::time::Duration;

use fuzz_common::*;
use proptest::prelude::*;
use silkgate_core::policy::{self, DataText, expr, lint, source};
use silkgate_core::schema;
use silkgate_core::time::Day;

/// Tokens of the condition language, the attributes and enum values it reads.
fn condition_tokens() -> Vec<String> {
    let mut t: Vec<String> = [
        "not",
        "and",
        "or",
        "(",
        ")",
        "[",
        "]",
        ",",
        "==",
        "!=",
        "<",
        "<=",
        ">",
        ">=",
        "in",
        "not in",
        "any",
        "all",
        "none",
        "where",
        "present(",
        "true",
        "false",
        "0",
        "-1",
        "9223372036854775807",
        "-9223372036854775808",
        "99999999999999999999",
        "1_000",
        "\"\"",
        "\"x\"",
        "'y'",
        "\"\\\"\"",
        "\"\\\\\"",
        "\"\\é\"",
        "\"é\"",
        "\"",
        "'",
        "#",
        "\n",
        "\t",
        "\r",
        "data.",
        "data.ofac_sdn",
        "data.eu_eea",
        "labels.",
        "labels.x",
        "operator.licences",
        "regulator",
        "kind",
        "id",
        "=",
        "!",
        "é",
        "\u{2014}",
        "\u{0}",
        "(not (",
        "where (",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    t.extend(schema::ATTRS.iter().map(|a| a.path.to_string()));
    for def in [&schema::DEPLOYMENT_KIND, &schema::SERVICE, &schema::PERMISSION_MODEL, &schema::TOKEN_KIND] {
        t.extend(def.names().into_iter().map(|n| format!("\"{n}\"")));
    }
    t
}

/// Every `when` of the shipped policies.
fn shipped_conditions() -> Vec<String> {
    let mut out = Vec::new();
    for (_, text) in shipped_texts() {
        let v: toml::Table = toml::from_str(text).unwrap();
        for r in v.get("rule").and_then(|r| r.as_array()).into_iter().flatten() {
            if let Some(w) = r.get("when").and_then(|w| w.as_str()) {
                out.push(w.to_string());
            }
        }
    }
    out
}

const CONDITION_DICT: &[&[u8]] = &[
    b"not ",
    b"(",
    b")",
    b" and ",
    b" or ",
    b"[",
    b"]",
    b",",
    b"==",
    b"\"",
    b"'",
    b"\\",
    b"#",
    b"\n",
    b" where (",
    b"any ",
    b"present(",
    b"\xc3\xa9",
    b"\"\\\xc3\xa9\"",
    b"-",
    b"99999999999999999999",
];

const POLICY_DICT: &[&[u8]] = &[
    b"[[rule]]\n",
    b"[policy]\n",
    b"[data.x]\nfile = \"data/eu-eea.toml\"\n",
    b"[data.y]\nfile = \"../x\"\n",
    b"'''",
    b"\"\"\"",
    b"'",
    b"\"",
    b"=",
    b"[",
    b"]",
    b"{",
    b"}",
    b"\n",
    b"\r\n",
    b"#",
    b"\\",
    b"\\u00e9",
    b"when = 'not (true)'\n",
    b"effect = \"deny\"\n",
    b"effect = \"allow\"\n",
    b"effective_from = 2020-01-01\n",
    b"effective_until = 1999-01-01\n",
    b"id = \"r.x\"\n",
    b"1979-05-27T07:32:00Z",
    b"\xc3\xa9",
    b"\xe2\x80\x94",
    b"\"\\\xc3\xa9\"",
    b"not not not not ",
    b"((((((((",
    b"))))))))",
    b"rule = []\n",
    b"default = \"deny\"\n",
    b"x = [[[[[[[[[[[[[[[[",
    b"{a={b={c={d={e={",
    b"\x00",
    b"\xff",
];

/// A condition in a minimal policy, so the whole pipeline runs on it.
fn policy_with(cond: &str) -> String {
    let when = if !cond.contains("'''") && !cond.ends_with('\'') {
        format!("'''{cond}'''")
    } else {
        toml::Value::String(cond.to_string()).to_string()
    };
    format!(
        "[policy]\nid = \"fz\"\njurisdiction = \"FZ\"\nname = \"fuzz\"\nversion = \"1\"\ndefault = \"allow\"\n\n\
         [data.eu_eea]\nfile = \"data/eu-eea.toml\"\n\n\
         [[rule]]\nid = \"fz.r\"\neffect = \"deny\"\nwhen = {when}\nmessage = \"m\"\ncitation = \"c\"\n"
    )
}

/// Parses a condition; if it parses, runs it through the whole policy pipeline too.
fn check_condition(src: &str) {
    tolerate_known(|| check_condition_strict(src));
}

fn check_condition_strict(src: &str) {
    match timed("expr::parse", || expr::parse(src)) {
        Ok(_) => {}
        Err(e) => {
            assert!(e.span.start <= e.span.end && e.span.end <= src.len() + 1, "span {:?} of {}", e.span, src.len());
            assert!(!e.message.is_empty());
        }
    }
    check_policy_text_strict(&policy_with(src));
}

/// Parses, builds, lints and evaluates a whole policy text the way the loader does, with
/// the shipped data files standing in for its directory. Steps over known bugs (see
/// `fuzz_common::KNOWN_PANICS`).
fn check_policy_text(text: &str) {
    tolerate_known(|| check_policy_text_strict(text));
}

fn check_policy_text_strict(text: &str) {
    let file = "policy/fz.toml";
    let doc = match timed("source::parse", || source::parse(file, text)) {
        Ok(doc) => doc,
        Err(diags) => return check_refused(&diags),
    };
    let data: Vec<DataText> =
        doc.data.iter().map(|r| data_files().get(&r.file).cloned().ok_or_else(|| "no such file".to_string())).collect();
    let policy = match timed("policy::build", || policy::build(&doc, &data)) {
        Ok(p) => p,
        Err(diags) => return check_refused(&diags),
    };
    assert!(policy.rules.len() <= source::MAX_RULES);
    for d in lint::lint(&policy, Day::from_ymd(2026, 11, 28)) {
        let _ = d.to_string();
    }
    timed("evaluate", || {
        for (_, req) in seed_requests() {
            for day in days() {
                check_outcome(&policy, req, day);
            }
        }
    });
}

/// A refused policy says why: at least one error, each rendering with a position.
fn check_refused(diags: &[silkgate_core::diag::Diagnostic]) {
    assert!(diags.iter().any(|d| d.is_error()), "refused without an error: {diags:?}");
    for d in diags {
        assert!(d.line >= 1 && d.column >= 1);
        let _ = d.to_string();
    }
    let _ = policy::render(diags);
}

fn nested(n: usize, kind: u8) -> String {
    match kind % 5 {
        0 => format!("{}true", "not ".repeat(n)),
        1 => format!("{}true{}", "(".repeat(n), ")".repeat(n)),
        2 => format!("{}true", "(not ".repeat(n)) + &")".repeat(n),
        3 => format!("{}regulator == \"x\"{}", "any operator.licences where (".repeat(n), ")".repeat(n)),
        _ => format!("{}true", "not (".repeat(n)),
    }
}

proptest! {
    #![proptest_config(config())]

    /// Arbitrary text, never longer than twice the condition limit.
    #[test]
    fn condition_arbitrary_text(src in "(?s).{0,300}") {
        check_condition(&src);
    }

    /// Token soup from the condition language, the schema and its enum values.
    #[test]
    fn condition_token_soup(toks in proptest::collection::vec(proptest::sample::select(condition_tokens()), 0..60)) {
        check_condition(&toks.join(" "));
    }

    /// The shipped conditions, mutated.
    #[test]
    fn condition_mutated(seed in proptest::sample::select(shipped_conditions()), ops in ops(6)) {
        let bytes = mutate(seed.as_bytes(), &ops, CONDITION_DICT, 2 * expr::MAX_CONDITION_BYTES);
        check_condition(&String::from_utf8_lossy(&bytes));
    }

    /// Deep nesting of every kind, around the depth limit and far past it.
    #[test]
    fn condition_nesting(n in prop_oneof![0usize..80, 0usize..3_000], kind in any::<u8>()) {
        check_condition(&nested(n, kind));
    }

    /// The shipped policy files with byte flips, truncation, line duplication, deletion
    /// and swaps, splices and TOML fragments.
    #[test]
    fn policy_mutated(seed in 0usize..64, ops in ops(8)) {
        let texts = shipped_texts();
        let (_, text) = &texts[seed % texts.len()];
        let bytes = mutate(text.as_bytes(), &ops, POLICY_DICT, source::MAX_FILE_BYTES);
        // The loader refuses invalid UTF-8 before parsing; keep the edit's effect visible.
        check_policy_text(&String::from_utf8_lossy(&bytes));
    }

    /// Random TOML documents shaped like policies: the right tables with random keys
    /// and values.
    #[test]
    fn policy_random_toml(doc in random_policy()) {
        check_policy_text(&doc);
    }
}

fn toml_value() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        "[a-z_.]{0,12}".prop_map(|s| format!("\"{s}\"")),
        "(?s).{0,20}".prop_map(|s| toml::Value::String(s).to_string()),
        any::<i64>().prop_map(|i| i.to_string()),
        any::<bool>().prop_map(|b| b.to_string()),
        Just("2026-01-01".to_string()),
        Just("1979-05-27T07:32:00Z".to_string()),
        Just("1.5e300".to_string()),
        Just("nan".to_string()),
        proptest::sample::select(condition_tokens()).prop_map(|s| toml::Value::String(s).to_string()),
        proptest::sample::select(shipped_conditions()).prop_map(|s| toml::Value::String(s).to_string()),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(|v| format!("[{}]", v.join(", "))),
            proptest::collection::vec(("[a-z]{1,6}", inner), 0..4).prop_map(|v| {
                let kv: Vec<String> = v.into_iter().map(|(k, v)| format!("{k} = {v}")).collect();
                format!("{{ {} }}", kv.join(", "))
            }),
        ]
    })
}

fn toml_table(keys: &'static [&'static str]) -> impl Strategy<Value = String> {
    let key = prop_oneof![4 => proptest::sample::select(keys).prop_map(String::from), 1 => "[a-z_]{1,8}"];
    proptest::collection::vec((key, toml_value()), 0..10)
        .prop_map(|kv| kv.into_iter().map(|(k, v)| format!("{k} = {v}\n")).collect())
}

const POLICY_KEYS: &[&str] = &["id", "jurisdiction", "name", "version", "default", "description"];
const RULE_KEYS: &[&str] =
    &["id", "effect", "when", "message", "citation", "url", "effective_from", "effective_until", "note"];

fn random_policy() -> impl Strategy<Value = String> {
    let valid_head =
        "[policy]\nid = \"fz\"\njurisdiction = \"FZ\"\nname = \"f\"\nversion = \"1\"\ndefault = \"deny\"\n";
    let head =
        prop_oneof![Just(valid_head.to_string()), toml_table(POLICY_KEYS).prop_map(|t| format!("[policy]\n{t}"))];
    let data = proptest::collection::vec(
        (
            "[a-z_]{1,8}",
            proptest::sample::select(vec!["data/eu-eea.toml", "data/ofac-sdn.toml", "nope.toml", "/etc/x"]),
        ),
        0..3,
    );
    let rules = proptest::collection::vec(toml_table(RULE_KEYS), 0..6);
    (head, data, rules, toml_table(&["policy", "data", "rule", "x"])).prop_map(|(head, data, rules, top)| {
        let mut s = top;
        s.push_str(&head);
        for (name, file) in data {
            s.push_str(&format!("[data.{name}]\nfile = \"{file}\"\n"));
        }
        for r in rules {
            s.push_str(&format!("[[rule]]\n{r}"));
        }
        s
    })
}

/// Inputs that once crashed or hung, replayed on every run.
#[test]
fn corpus_conditions() {
    for (name, bytes) in corpus("condition") {
        let text = String::from_utf8_lossy(&bytes).into_owned();
        within(&format!("condition corpus {name}"), Duration::from_secs(60), move || check_condition(&text));
    }
    // Generated rather than stored: 30,000 nested `not` (120 KB), and other forms.
    for (n, kind) in [(30_000, 0), (3_000, 1), (3_000, 2), (3_000, 3), (30_000, 4)] {
        within(&format!("{n} nested, kind {kind}"), Duration::from_secs(60), move || check_condition(&nested(n, kind)));
    }
}

#[test]
fn corpus_policies() {
    for (name, bytes) in corpus("policy") {
        let text = String::from_utf8_lossy(&bytes).into_owned();
        within(&format!("policy corpus {name}"), Duration::from_secs(60), move || check_policy_text(&text));
    }
}

/// 65,537 rules: past the u16 rule index and `MAX_RULES`. Generated, since the text is
/// megabytes: as `[[rule]]` tables (over the file size limit), as one compact inline
/// array on one line (under it, so the rule count is what refuses it), and
/// `MAX_RULES + 1` tables.
#[test]
fn corpus_65537_rules() {
    let head = "[policy]\nid = \"fz\"\njurisdiction = \"FZ\"\nname = \"f\"\nversion = \"1\"\ndefault = \"allow\"\n";
    let table = |i: usize| {
        format!("[[rule]]\nid = \"r{i}\"\neffect = \"deny\"\nwhen = \"true\"\nmessage = \"m\"\ncitation = \"c\"\n")
    };
    let tables: String = head.to_string() + &(0..65_537).map(table).collect::<String>();
    let over: String = head.to_string() + &(0..=source::MAX_RULES).map(table).collect::<String>();
    let mut inline = "rule = [".to_string();
    for i in 0..65_537 {
        inline.push_str(&format!("{{id=\"r{i:x}\",effect=\"deny\",when=\"true\",message=\"\",citation=\"\"}},"));
    }
    inline.push_str("]\n");
    inline.push_str(head);
    assert!(inline.len() <= source::MAX_FILE_BYTES && tables.len() > source::MAX_FILE_BYTES);
    for text in [tables, inline, over] {
        within("65,537 rules", Duration::from_secs(120), move || {
            let r = source::parse("policy/fz.toml", &text);
            assert!(r.is_err(), "a policy of too many rules ({} bytes) loaded", text.len());
            let diags = r.unwrap_err();
            check_refused(&diags);
            if text.len() <= source::MAX_FILE_BYTES {
                assert!(diags.iter().any(|d| d.message.contains("too many rules")), "{diags:?}");
            }
        });
    }
}

/// Found by `condition_token_soup`, `condition_arbitrary_text`, `condition_mutated` and
/// `policy_mutated`: a condition with a `\` escape before a multi-byte character, e.g.
/// `when = '"\é"'`, made `Diagnostic::at` slice inside the character and panic
/// (`silkgate check` exited 101). Now the span is widened to whole characters and the
/// policy is refused with a diagnostic.
#[test]
fn an_escape_before_a_multibyte_char_is_refused_not_a_panic() {
    for cond in ["\"\\é\"", "\"\\¡", "x == \"\\🕴\""] {
        let text = policy_with(cond);
        let r = std::panic::catch_unwind(|| source::parse("policy/fz.toml", &text));
        let diags = r.unwrap_or_else(|_| panic!("source::parse panicked on the condition `{cond}`")).unwrap_err();
        check_refused(&diags);
    }
}
