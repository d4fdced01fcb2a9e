//! Compile and evaluate tests over small inline policies.

use super::*;
use crate::proto;
use crate::request::Request;

fn policy(rules: &str) -> Policy {
    let text = format!(
        "[policy]\nid = \"t\"\njurisdiction = \"XX\"\nname = \"T\"\nversion = \"1\"\ndefault = \"allow\"\n{rules}"
    );
    from_text("t.toml", &text).unwrap_or_else(|e| panic!("{}", render(&e)))
}

fn rule(id: &str, effect: &str, when: &str) -> String {
    format!("[[rule]]\nid = \"{id}\"\neffect = \"{effect}\"\nwhen = '{when}'\nmessage = \"m\"\ncitation = \"c\"\n")
}

fn errors(when: &str) -> String {
    let text = format!(
        "[policy]\nid = \"t\"\njurisdiction = \"XX\"\nname = \"T\"\nversion = \"1\"\ndefault = \"allow\"\n{}",
        rule("r", "deny", when)
    );
    match from_text("t.toml", &text) {
        Ok(_) => panic!("`{when}` compiled"),
        Err(d) => render(&d),
    }
}

fn request() -> Request {
    Request::try_from(proto::DeploymentRequest {
        request_id: "r".into(),
        deployment_kind: proto::DeploymentKind::PermissionedApp as i32,
        protocol: Some(proto::Protocol { name: "ethereum".into(), ..Default::default() }),
        permission_model: proto::PermissionModel::Permissionless as i32,
        node_regions: vec!["CN".into(), "SG".into()],
        services: vec![proto::Service::Exchange as i32],
        token: Some(proto::Token { transferable: true, ..Default::default() }),
        operator: Some(proto::Operator {
            licences: vec![proto::Licence {
                regulator: "MAS".into(),
                kind: "dpt".into(),
                id: "1".into(),
                ..Default::default()
            }],
            ..Default::default()
        }),
        labels: [("tier".to_string(), "gold".to_string())].into(),
        node_count: 4,
        ..Default::default()
    })
    .unwrap()
}

fn matches(when: &str) -> bool {
    let p = policy(&rule("r", "deny", when));
    !p.evaluate(&request(), Day(20_000)).matched.is_empty()
}

#[test]
fn evaluates_each_condition_form() {
    let cases = [
        (r#"permission_model == "permissionless""#, true),
        (r#"permission_model != "permissionless""#, false),
        (r#"permission_model in ["permissioned", "open_permissioned"]"#, false),
        (r#"permission_model not in ["permissioned"]"#, true),
        ("token.transferable", true),
        ("token.tradable", false),
        ("token.tradable == false", true),
        ("present(token) and not present(data)", true),
        ("node_count >= 4 and node_count < 5", true),
        (r#"any node_regions == "SG""#, true),
        (r#"all node_regions in ["CN"]"#, false),
        (r#"none node_regions in ["US", "EU"]"#, true),
        (r#"any services in ["exchange", "custody"]"#, true),
        (r#"all services in ["exchange"]"#, true),
        (r#"none services == "staking""#, true),
        (r#"any operator.licences where (regulator == "MAS" and kind == "dpt")"#, true),
        (r#"none operator.licences where (regulator == "MAS")"#, false),
        (r#"labels.tier == "gold""#, true),
        (r#"labels.missing == "x""#, false),
        (r#"labels.missing != "x""#, true),
        ("present(labels.tier) and not present(labels.other)", true),
        (r#"protocol.name == "ethereum" or false"#, true),
        ("all data.storage_regions in [\"CN\"]", true),
        ("gas_payment != \"fiat_prepaid_credit\"", true),
    ];
    for (when, want) in cases {
        assert_eq!(matches(when), want, "{when}");
    }
}

#[test]
fn deny_overrides_and_every_match_is_reported() {
    let rules = [
        rule("w", "warn", "true"),
        rule("a", "allow", "true"),
        rule("d", "deny", "serves_retail == false"),
        rule("n", "deny", "false"),
    ]
    .concat();
    let p = policy(&rules);
    let out = p.evaluate(&request(), Day(0));
    assert_eq!(out.verdict, Verdict::Deny);
    assert_eq!(out.matched.as_slice(), &[0, 1, 2]);
    assert!(!out.default_applied);
}

#[test]
fn default_deny_needs_an_allow_rule() {
    let text = "[policy]\nid = \"t\"\njurisdiction = \"XX\"\nname = \"T\"\nversion = \"1\"\ndefault = \"deny\"\n"
        .to_string()
        + &rule("w", "warn", "true");
    let p = from_text("t.toml", &text).unwrap();
    let out = p.evaluate(&request(), Day(0));
    assert_eq!((out.verdict, out.default_applied), (Verdict::Deny, true));
}

#[test]
fn rules_out_of_force_do_not_match() {
    let r = rule("d", "deny", "true") + "effective_from = 2025-01-10\neffective_until = 2026-07-01\n";
    let p = policy(&r);
    let v = |y, m, d| p.evaluate(&request(), Day::from_ymd(y, m, d)).verdict;
    assert_eq!(v(2025, 1, 9), Verdict::Allow);
    assert_eq!(v(2025, 1, 10), Verdict::Deny);
    assert_eq!(v(2026, 6, 30), Verdict::Deny);
    assert_eq!(v(2026, 7, 1), Verdict::Allow);
}

#[test]
fn type_errors_name_the_problem() {
    let e = errors(r#"permission_model == "permisionless""#);
    assert!(e.contains("`permisionless` is not a value of `permission_model`"), "{e}");
    assert!(e.contains("did you mean \"permissionless\"?"), "{e}");
    let e = errors("token.transferible");
    assert!(
        e.contains("unknown attribute `token.transferible`") && e.contains("did you mean `token.transferable`?"),
        "{e}"
    );
    let e = errors(r#"services == "exchange""#);
    assert!(e.contains("use `any`, `all` or `none`"), "{e}");
    let e = errors(r#"any node_regions == "cn""#);
    assert!(e.contains("write \"CN\""), "{e}");
    let e = errors("node_count == \"4\"");
    assert!(e.contains("compare it with a number"), "{e}");
    let e = errors("any addresses in data.nope");
    assert!(e.contains("unknown data set `nope`"), "{e}");
    let e = errors(r#"any operator.licences where (regulatr == "MAS")"#);
    assert!(e.contains("did you mean `regulator`?"), "{e}");
    let e = errors("permission_model < \"x\"");
    assert!(e.contains("not `<`"), "{e}");
    // Positions point into the condition: line 10 holds `when`, the literal starts at col 28.
    let e = errors(r#"deployment_kind == "minning""#);
    assert!(e.starts_with("t.toml:10:28: error"), "{e}");
}

#[test]
fn explain_names_the_failed_condition_and_value() {
    let p = policy(&rule("r", "deny", r#"token.transferable and node_count > 10"#));
    let (out, traces) = p.explain(&request(), Day(0));
    assert!(out.matched.is_empty());
    let (cond, actual) = traces[0].failed.clone().unwrap();
    assert_eq!(cond, "node_count > 10");
    assert_eq!(actual, "4");
}

#[test]
fn digest_covers_data_files() {
    let a = digest(&SourceFiles { policy: ("p.toml", "x"), data: [("d.toml".to_string(), "1")].into() });
    let b = digest(&SourceFiles { policy: ("p.toml", "x"), data: [("d.toml".to_string(), "2")].into() });
    assert_ne!(a, b);
}

/// `n` rules that never match, then a deny rule that always does.
fn many_rules_then_deny(n: usize) -> String {
    let mut text = String::new();
    for i in 0..n {
        text.push_str(&rule(&format!("w{i}"), "warn", "false"));
    }
    text + &rule("last", "deny", "true")
}

#[test]
fn rule_count_is_bounded_at_load() {
    let p = policy(&many_rules_then_deny(source::MAX_RULES - 1));
    let out = p.evaluate(&request(), Day(0));
    assert_eq!(out.verdict, Verdict::Deny);
    assert_eq!(out.matched.as_slice(), &[(source::MAX_RULES - 1) as u16]);
    assert_eq!(p.rules[out.matched[0] as usize].id, "last");

    let text = format!(
        "[policy]\nid = \"t\"\njurisdiction = \"XX\"\nname = \"T\"\nversion = \"1\"\ndefault = \"allow\"\n{}",
        many_rules_then_deny(source::MAX_RULES)
    );
    let e = render(&from_text("t.toml", &text).unwrap_err());
    assert!(e.contains("t.toml:") && e.contains("too many rules: 10001 (a policy holds at most 10000)"), "{e}");
}

#[test]
fn a_rule_index_past_u16_is_refused_not_wrapped() {
    // Built from a document directly, past the loader's limit: the 65,537th rule, a deny
    // that matches, would be reported as rule 0 (a warn) and the request allowed.
    let mut doc = source::parse("t.toml", &policy_text(&many_rules_then_deny(1))).unwrap();
    let (never, deny) = (doc.rules[0].clone(), doc.rules[1].clone());
    doc.rules = vec![never; 1 << 16];
    doc.rules.push(deny);
    match build(&doc, &[]) {
        Ok(p) => panic!("built a policy of {} rules: {:?}", p.rules.len(), p.evaluate(&request(), Day(0)).verdict),
        Err(d) => assert!(render(&d).contains("too many rules: 65537"), "{}", render(&d)),
    }
}

fn policy_text(rules: &str) -> String {
    format!("[policy]\nid = \"t\"\njurisdiction = \"XX\"\nname = \"T\"\nversion = \"1\"\ndefault = \"allow\"\n{rules}")
}

/// Runs `f` on a thread with a 256 KiB stack: a recursion the depth limit fails to bound
/// overflows it and aborts the test instead of passing. (A test may start a thread; the
/// core's code may not: see `core/clippy.toml`.)
#[allow(clippy::disallowed_types)]
fn on_small_stack<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::Builder::new().stack_size(256 << 10).spawn(f).unwrap().join().unwrap()
}

/// Compiles `when` into a one-rule policy, or returns its rendered errors.
fn compile_when(when: &str) -> Result<Policy, String> {
    from_text("t.toml", &policy_text(&rule("r", "deny", when))).map_err(|d| render(&d))
}

#[test]
fn nesting_at_the_limit_compiles_evaluates_and_explains_on_a_small_stack() {
    let d = expr::MAX_DEPTH;
    // Each form is false for `request()`, so explaining it walks the whole tree.
    let forms = [
        format!("{}token.tradable", "not ".repeat(d)),
        format!("{}token.tradable{}", "(".repeat(d), ")".repeat(d)),
        // Two tree levels (`or`, `and`) per nesting level: the deepest tree there is.
        format!("{}token.tradable{}", "(false or true and ".repeat(d), ")".repeat(d)),
        format!(
            "any operator.licences where ({}regulator == \"X\"{})",
            "(false or true and ".repeat(d - 1),
            ")".repeat(d - 1)
        ),
    ];
    for when in forms {
        on_small_stack(move || {
            let p = compile_when(&when).unwrap_or_else(|e| panic!("{e}"));
            let day = Day(20_000);
            assert_eq!(p.evaluate(&request(), day).verdict, Verdict::Allow, "{when}");
            let (out, traces) = p.explain(&request(), day);
            assert!(out.matched.is_empty() && traces[0].failed.is_some(), "{when}");
            let _ = lint::lint(&p, day);
        });
    }
}

#[test]
fn nesting_one_past_the_limit_is_an_error_at_its_position() {
    let d = expr::MAX_DEPTH;
    // `when = '` puts the condition at column 9 of line 10.
    let cases = [
        (format!("{}token.tradable", "not ".repeat(d + 1)), 9 + 4 * d),
        (format!("{}token.tradable{}", "(".repeat(d + 1), ")".repeat(d + 1)), 9 + d),
        (format!("{}not token.tradable{}", "not (".repeat(d / 2), ")".repeat(d / 2)), 9 + 5 * (d / 2)),
        (format!("any operator.licences where ({}true{})", "(".repeat(d), ")".repeat(d)), 9 + 29 + d - 1),
    ];
    for (when, column) in cases {
        let e = on_small_stack(move || compile_when(&when).err());
        let e = e.unwrap_or_else(|| panic!("compiled"));
        let want = format!("t.toml:10:{column}: error: invalid condition: condition nested deeper than {d} levels");
        assert!(e.starts_with(&want), "want {want}\ngot {e}");
    }
}

#[test]
fn hostile_nesting_is_an_error_not_a_crash() {
    let deep = [
        "not ".repeat(100_000) + "true",
        "(".repeat(100_000) + "true" + &")".repeat(100_000),
        // Within the length limit, so the depth limit alone must stop it.
        "not ".repeat(2_000) + "true",
        "(".repeat(4_000) + "true" + &")".repeat(4_000),
    ];
    for when in deep {
        let e = on_small_stack(move || compile_when(&when).err());
        let e = e.expect("compiled");
        assert!(e.contains("nested deeper than") || e.contains("at most 8192 are allowed"), "{e}");
    }
    let long = format!("token.tradable {}", "or token.tradable ".repeat(1_000));
    let e = compile_when(&long).unwrap_err();
    assert!(e.starts_with("t.toml:10:9: error: invalid condition: condition is 18015 bytes long"), "{e}");
}

#[test]
fn data_sets_per_policy_are_bounded() {
    let sets = |n: usize| -> String {
        (0..n).map(|i| format!("[data.d{i}]\nfile = \"d.toml\"\n")).collect::<String>() + &rule("r", "deny", "true")
    };
    let text = policy_text(&sets(source::MAX_DATA_SETS));
    assert_eq!(source::parse("t.toml", &text).unwrap().data.len(), source::MAX_DATA_SETS);
    let e = render(&source::parse("t.toml", &policy_text(&sets(source::MAX_DATA_SETS + 1))).unwrap_err());
    assert!(e.contains("t.toml:") && e.contains("too many data sets: 65 (a policy names at most 64)"), "{e}");
}

fn request_v2() -> Request {
    Request::try_from(proto::DeploymentRequest {
        request_id: "r".into(),
        deployment_kind: proto::DeploymentKind::PermissionedApp as i32,
        protocol: Some(proto::Protocol { name: "ethereum".into(), ..Default::default() }),
        permission_model: proto::PermissionModel::Permissioned as i32,
        node_regions: vec!["UA".into()],
        node_subdivisions: vec!["UA-43".into()],
        served_jurisdictions: vec!["AE".into()],
        served_subdivisions: vec!["AE-DU".into()],
        token: Some(proto::Token { kind: proto::TokenKind::Utility as i32, ..Default::default() }),
        tokens: vec![proto::Token { kind: proto::TokenKind::Stablecoin as i32, ..Default::default() }],
        asset_details: vec![proto::Asset { symbol: "usdc".into(), ..Default::default() }],
        data: Some(proto::DataHandling {
            sensitive_subjects: 10_000,
            important_data: true,
            sectors: vec![proto::DataSector::Payments as i32],
            replica_regions: vec!["SG".into()],
            record_retention_days: 1825,
            ..Default::default()
        }),
        aml: Some(proto::Aml { travel_rule: true, ..Default::default() }),
        operator: Some(proto::Operator {
            licences: vec![proto::Licence { regulator: "vara".into(), kind: "VASP".into(), ..Default::default() }],
            ..Default::default()
        }),
        ..Default::default()
    })
    .unwrap()
}

#[test]
fn reads_schema_v2_attributes() {
    let cases = [
        (r#"any node_subdivisions in ["UA-43", "UA-14"]"#, true),
        (r#"any node_subdivisions == "UA-14""#, false),
        (r#"any served_subdivisions == "AE-DU""#, true),
        ("data.sensitive_subjects >= 10000", true),
        ("data.sensitive_subjects > 10000", false),
        ("data.important_data", true),
        (r#"any data.sectors == "payments""#, true),
        (r#"any data.sectors == "health""#, false),
        (r#"any data.replica_regions == "SG""#, true),
        ("data.record_retention_days >= 1825", true),
        ("present(aml) and aml.travel_rule", true),
        ("aml.sanctions_screening or aml.customer_due_diligence", false),
        // asset_details symbols reach `assets`, so older rules still see them.
        (r#"any assets == "USDC""#, true),
        // `token.*` reads the legacy token, which comes first.
        (r#"token.kind == "utility""#, true),
        (r#"token.kind == "stablecoin""#, false),
        // Regulator and kind are normalised at conversion, so they match whatever the portal sent.
        (r#"any operator.licences where (regulator == "VARA" and kind == "vasp")"#, true),
    ];
    let req = request_v2();
    for (when, want) in cases {
        let p = policy(&rule("r", "deny", when));
        assert_eq!(!p.evaluate(&req, Day(20_000)).matched.is_empty(), want, "{when}");
    }
}

#[test]
fn licence_literals_are_checked_against_their_case() {
    assert!(errors(r#"any operator.licences where (kind == "VASP")"#).contains(r#"write "vasp""#));
    assert!(errors(r#"any operator.licences where (regulator == "vara")"#).contains(r#"write "VARA""#));
}

/// A request with several tokens, typed assets and licences of every status.
fn request_items() -> Request {
    let token = |kind: proto::TokenKind| proto::Token { kind: kind as i32, ..Default::default() };
    let licence = |regulator: &str, kind: &str, status: proto::LicenceStatus, expires: &str| proto::Licence {
        regulator: regulator.into(),
        kind: kind.into(),
        status: status as i32,
        expires: expires.into(),
        ..Default::default()
    };
    Request::try_from(proto::DeploymentRequest {
        request_id: "r".into(),
        deployment_kind: proto::DeploymentKind::PermissionedApp as i32,
        protocol: Some(proto::Protocol { name: "ethereum".into(), ..Default::default() }),
        permission_model: proto::PermissionModel::Permissioned as i32,
        node_count: 4,
        token: Some(proto::Token { transferable: true, ..token(proto::TokenKind::Utility) }),
        tokens: vec![
            proto::Token {
                tradable: true,
                peg_currency: "usd".into(),
                backing: proto::StablecoinBacking::SingleFiat as i32,
                ..token(proto::TokenKind::Stablecoin)
            },
            token(proto::TokenKind::Privacy),
        ],
        asset_details: vec![
            proto::Asset {
                symbol: "usdt".into(),
                classes: vec![proto::AssetClass::Stablecoin as i32, proto::AssetClass::VirtualCurrency as i32],
                peg_currency: "usd".into(),
                authorisations: vec!["GENIUS_Permitted".into()],
            },
            proto::Asset {
                symbol: "xmr".into(),
                classes: vec![proto::AssetClass::PrivacyCoin as i32],
                ..Default::default()
            },
        ],
        operator: Some(proto::Operator {
            licences: vec![
                proto::Licence {
                    activities: vec![proto::Service::Exchange as i32, proto::Service::Custody as i32],
                    ..licence("mas", "DPT", proto::LicenceStatus::Active, "2027-06-30")
                },
                licence("VARA", "vasp", proto::LicenceStatus::Suspended, ""),
                licence("FSRA", "fsp", proto::LicenceStatus::Active, ""),
                licence("CBB", "cas", proto::LicenceStatus::Unspecified, ""),
            ],
            ..Default::default()
        }),
        ..Default::default()
    })
    .unwrap()
}

#[test]
fn where_reads_every_item_of_every_list() {
    let last_day = Day::from_ymd(2027, 6, 30);
    let after = Day::from_ymd(2027, 7, 1);
    let cases = [
        // Tokens: the legacy `token` first, then `tokens`; every one is tested.
        (r#"any tokens where (kind == "stablecoin" and peg_currency == "USD")"#, true),
        (r#"any tokens where (kind == "stablecoin" and peg_currency == "EUR")"#, false),
        (r#"any tokens where (backing == "single_fiat" and tradable and not transferable)"#, true),
        (r#"any tokens where (kind in ["privacy", "security"])"#, true),
        (r#"none tokens where (kind == "privacy")"#, false),
        ("all tokens where (transferable or tradable)", false),
        ("any tokens where (validator_reward)", false),
        ("any tokens where (present(peg_currency) and transferable)", false),
        // Assets: classes and authorisations are lists inside the item.
        (r#"any asset_details where (any classes == "privacy_coin")"#, true),
        (r#"any asset_details where (symbol == "USDT" and any authorisations == "genius_permitted")"#, true),
        (
            r#"any asset_details where (all classes in ["stablecoin", "virtual_currency"] and peg_currency == "USD")"#,
            true,
        ),
        (r#"all asset_details where (none classes == "cbdc")"#, true),
        ("all asset_details where (present(peg_currency))", false),
        // Licences: status, expiry, activities, and the derived `in_force`.
        (r#"any operator.licences where (regulator == "MAS" and in_force)"#, true),
        (r#"any operator.licences where (status == "suspended" and regulator == "VARA")"#, true),
        (r#"any operator.licences where (expires < "2027-07-01")"#, true),
        (r#"any operator.licences where (expires > "2027-06-30")"#, false),
        (r#"any operator.licences where (expires != "2030-01-01" and regulator == "FSRA")"#, false),
        (r#"any operator.licences where (not present(expires) and in_force)"#, true),
        (r#"any operator.licences where (any activities == "custody" and kind == "dpt")"#, true),
        (r#"any operator.licences where (regulator == "CBB" and in_force)"#, false),
        ("present(tokens) and present(asset_details)", true),
    ];
    let req = request_items();
    for (when, want) in cases {
        let p = policy(&rule("r", "deny", when));
        assert_eq!(!p.evaluate(&req, last_day).matched.is_empty(), want, "{when}");
        assert_eq!(p.explain(&req, last_day).0.matched.is_empty(), !want, "{when}");
    }
    // The evaluation day decides `in_force`: a licence is valid through the day it expires.
    let p = policy(&rule("r", "deny", r#"any operator.licences where (regulator == "MAS" and in_force)"#));
    assert!(!p.evaluate(&req, last_day).matched.is_empty());
    assert!(p.evaluate(&req, after).matched.is_empty());
    let (_, traces) = p.explain(&req, after);
    let (cond, actual) = traces[0].failed.clone().unwrap();
    assert_eq!(cond, r#"any operator.licences where (regulator == "MAS" and in_force)"#);
    assert_eq!(actual, "[MAS/dpt (active), VARA/vasp (suspended), FSRA/fsp (active), CBB/cas (unspecified)]");
}

#[test]
fn where_errors_name_the_field_and_the_fix() {
    let e = errors(r#"any tokens where (knd == "stablecoin")"#);
    // `when = '` is 8 columns and `any tokens where (` 18 more.
    assert!(e.starts_with("t.toml:10:27: error: unknown token field `knd`"), "{e}");
    assert!(e.contains("did you mean `kind`?"), "{e}");
    let e = errors(r#"any asset_details where (class == "privacy_coin")"#);
    assert!(e.contains("unknown asset field `class`") && e.contains("did you mean `classes`?"), "{e}");
    let e = errors(r#"any asset_details where (classes == "privacy_coin")"#);
    assert!(e.contains("use `any`, `all` or `none`, e.g. `any classes == \"privacy_coin\"`"), "{e}");
    let e = errors("any tokens where (node_count > 1)");
    assert!(e.contains("`node_count` is a request attribute") && e.contains("outside the `where (...)`"), "{e}");
    let e = errors(r#"any tokens where (kind == "stablecoins")"#);
    assert!(e.contains("did you mean \"stablecoin\"?"), "{e}");
    let e = errors(r#"any tokens where (peg_currency == "usd")"#);
    assert!(e.contains("write \"USD\""), "{e}");
    let e = errors(r#"any asset_details where (any authorisations == "MICA_EMT")"#);
    assert!(e.contains("write \"mica_emt\""), "{e}");
    let e = errors(r#"any operator.licences where (expires < "2027-02-30")"#);
    assert!(e.contains("`expires` is a date; compare it with a date such as \"2027-01-01\""), "{e}");
    let e = errors(r#"any operator.licences where (expires in ["2027-01-01"])"#);
    assert!(e.contains("`expires` is a date"), "{e}");
    let e = errors("any operator.licences where (present(in_force))");
    assert!(e.contains("`in_force` is a bool and always present"), "{e}");
    let e = errors("any operator.licences where (in_force == 1)");
    assert!(e.contains("`in_force` is a bool"), "{e}");
    let e = errors(r#"any tokens where (any operator.licences where (kind == "x"))"#);
    assert!(e.contains("`where` cannot be nested: this condition already tests one token"), "{e}");
    let e = errors(r#"tokens == "x""#);
    assert!(e.contains("`tokens` is a list of tokens") && e.contains("any tokens where (...)"), "{e}");
    let e = errors(r#"any tokens == "x""#);
    assert!(e.contains("`tokens` holds tokens; test their fields with `where (...)`"), "{e}");
    let e = errors("any node_regions where (true)");
    assert!(e.contains("`where` applies to lists of messages (`tokens`, `asset_details`, `operator.licences`)"), "{e}");
}

#[test]
fn where_inside_where_is_bounded_by_the_depth_limit_too() {
    // Every `where (` is a level: a deep condition inside one is refused like any other.
    let d = expr::MAX_DEPTH;
    let when = format!("any tokens where ({}tradable{})", "(".repeat(d), ")".repeat(d));
    let e = on_small_stack(move || compile_when(&when).err()).expect("compiled");
    assert!(e.contains("nested deeper than"), "{e}");
    let when = format!("any tokens where ({}tradable{})", "(false or true and ".repeat(d - 1), ")".repeat(d - 1));
    on_small_stack(move || {
        let p = compile_when(&when).unwrap_or_else(|e| panic!("{e}"));
        let (out, _) = p.explain(&request_items(), Day(20_000));
        assert!(!out.matched.is_empty());
    });
}
