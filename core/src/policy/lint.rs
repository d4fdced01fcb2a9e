//! Warnings about rules that load but are probably not what the author meant: rules
//! that can never match, rules that duplicate another's condition, and rules out of
//! force on the day checked. And the pack's upkeep ([`review`]): rules and data files
//! not reviewed lately, or missing their sources; and what comes into force next
//! ([`upcoming`]).

use std::collections::HashMap;

use super::compile::{Cond, Node};
use super::expr::{CmpOp, Expr, ExprKind, Path, Quant, QuantBody};
use super::{Effect, Policy};
use crate::diag::Diagnostic;
use crate::time::Day;

/// Warnings for `policy` as of `today`, each pointing at the rule's id.
pub fn lint(policy: &Policy, today: Day) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    let warn = |r: &super::Rule, msg: String| {
        let mut d = Diagnostic::file(&policy.file, msg).warning();
        (d.line, d.column) = r.position;
        d
    };
    let mut seen: HashMap<String, Vec<&super::Rule>> = HashMap::new();
    for r in &policy.rules {
        if never(&r.cond) {
            out.push(warn(r, format!("rule `{}` can never match: its condition is always false", r.id)));
        }
        let normal: String = r.when.split_whitespace().collect::<Vec<_>>().join(" ");
        let same = seen.entry(normal).or_default();
        // The same condition in force over different periods is how a law's phases are
        // written (a transitional rule, then the permanent one): only overlap is suspect.
        if let Some(first) = same.iter().find(|o| overlap(o, r)) {
            out.push(warn(r, format!("rule `{}` has the same condition as rule `{}`", r.id, first.id)));
        }
        same.push(r);
        if let Some(u) = r.effective_until
            && u <= today
        {
            out.push(warn(r, format!("rule `{}` is out of force since {u}", r.id)));
        }
        if let Some(f) = r.effective_from
            && f > today
        {
            out.push(warn(r, format!("rule `{}` is not in force until {f}", r.id)));
        }
        if let Some(path) = first_token_path(&r.when) {
            out.push(
                warn(r, format!("rule `{}` reads `{path}`, which is the first token only", r.id)).with_help(format!(
                    "a request can carry several tokens (`token`, then `tokens`); `any tokens where ({} ...)` tests every one",
                    &path["token.".len()..]
                )),
            );
        }
        if r.effect == Effect::Allow && policy.default == super::Verdict::Allow {
            out.push(warn(
                r,
                format!("allow rule `{}` only annotates decisions: the policy's default is already allow", r.id),
            ));
        }
    }
    out
}

/// How many days a `reviewed` date stays fresh: `silkgate check` warns about rules and
/// data files reviewed longer ago than this (`--review-days` overrides it).
pub const REVIEW_MAX_AGE_DAYS: u32 = 180;

/// The pack's upkeep as of `today`, over every policy (a data file shared by several
/// policies is reported once). Warnings: a rule with no `url`, a data file with no
/// `source`, a rule or data file with no `reviewed` date or one more than `max_age_days`
/// before `today`. Errors: a `reviewed` date after `today` (a typo, or a clock that is
/// wrong; either way the date cannot be trusted).
pub fn review<'a>(policies: impl IntoIterator<Item = &'a Policy>, today: Day, max_age_days: u32) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    let mut data_seen = std::collections::HashSet::new();
    for policy in policies {
        for r in &policy.rules {
            let at = |msg: String, (line, column): (usize, usize)| {
                let mut d = Diagnostic::file(&policy.file, msg);
                (d.line, d.column) = (line, column);
                d
            };
            let what = format!("rule `{}`", r.id);
            if r.url.is_empty() {
                out.push(
                    at(format!("{what} has no `url`"), r.position)
                        .warning()
                        .with_help("link the text its citation names, so a reader can check the rule"),
                );
            }
            out.extend(freshness(&what, r.reviewed, today, max_age_days, |m, p| at(m, p.unwrap_or(r.position))));
        }
        for set in &policy.data {
            if !data_seen.insert(set.file.as_str()) {
                continue;
            }
            let at = |msg: String, pos: Option<(usize, usize)>| {
                let mut d = Diagnostic::file(&set.file, msg);
                if let Some((line, column)) = pos {
                    (d.line, d.column) = (line, column);
                }
                d
            };
            if set.source.as_deref().is_none_or(str::is_empty) {
                out.push(
                    at("data file has no `source`".to_string(), None)
                        .warning()
                        .with_help("say where the list comes from: `source = \"https://...\"`"),
                );
            }
            out.extend(freshness("data file", set.reviewed, today, max_age_days, at));
        }
    }
    out
}

/// The `reviewed` checks shared by rules and data files. `at` makes a diagnostic at the
/// date's position, or at the rule or file when there is no date.
fn freshness(
    what: &str,
    reviewed: Option<super::source::Reviewed>,
    today: Day,
    max_age_days: u32,
    at: impl Fn(String, Option<(usize, usize)>) -> Diagnostic,
) -> Option<Diagnostic> {
    let Some(rev) = reviewed else {
        return Some(
            at(format!("{what} has no `reviewed` date"), None)
                .warning()
                .with_help("add `reviewed = YYYY-MM-DD`, the day a person last checked it against its source"),
        );
    };
    let age = i64::from(today.0) - i64::from(rev.day.0);
    if age < 0 {
        Some(at(
            format!("{what} has a `reviewed` date in the future: {} (today is {today})", rev.day),
            Some(rev.position),
        ))
    } else if age > i64::from(max_age_days) {
        Some(
            at(
                format!("{what} was last reviewed on {}, {age} days ago (more than {max_age_days})", rev.day),
                Some(rev.position),
            )
            .warning(),
        )
    } else {
        None
    }
}

/// Rules that come into force after `today`, soonest first: what is about to change.
pub fn upcoming<'a>(
    policies: impl IntoIterator<Item = &'a Policy>,
    today: Day,
) -> Vec<(Day, &'a Policy, &'a super::Rule)> {
    let mut out: Vec<_> = policies
        .into_iter()
        .flat_map(|p| p.rules.iter().map(move |r| (p, r)))
        .filter_map(|(p, r)| r.effective_from.filter(|&f| f > today).map(|f| (f, p, r)))
        .collect();
    out.sort_by(|a, b| (a.0, &a.1.jurisdiction, &a.2.id).cmp(&(b.0, &b.1.jurisdiction, &b.2.id)));
    out
}

/// The first `token.FIELD` path a condition reads: the legacy form that sees only the
/// first token. `present(token)` is not one (it asks whether there is any token).
fn first_token_path(when: &str) -> Option<String> {
    fn is_token(p: &Path) -> Option<&str> {
        p.text.starts_with("token.").then_some(p.text.as_str())
    }
    fn walk(e: &Expr) -> Option<&str> {
        match &e.kind {
            ExprKind::Const(_) => None,
            ExprKind::And(items) | ExprKind::Or(items) => items.iter().find_map(walk),
            ExprKind::Not(inner) => walk(inner),
            ExprKind::Present(p) | ExprKind::Test(p, _) => is_token(p),
            ExprKind::Quant(_, p, body) => is_token(p).or(match body {
                QuantBody::Where(inner) => walk(inner),
                QuantBody::Test(_) => None,
            }),
        }
    }
    // The condition parsed when the policy loaded, so this cannot fail; the tree is no
    // deeper than `expr::MAX_DEPTH` allows.
    let e = super::expr::parse(when).ok()?;
    walk(&e).map(str::to_string)
}

fn overlap(a: &super::Rule, b: &super::Rule) -> bool {
    let (af, au) = (a.effective_from.unwrap_or(Day::MIN), a.effective_until.unwrap_or(Day::MAX));
    let (bf, bu) = (b.effective_from.unwrap_or(Day::MIN), b.effective_until.unwrap_or(Day::MAX));
    af < bu && bf < au
}

/// True when the condition is false for every request (a conservative check: `false`
/// means "could not show it", not "can match").
fn never(n: &Node) -> bool {
    match &n.cond {
        Cond::Const(b) => !b,
        Cond::Enum(_, _, mask) => *mask == 0,
        Cond::EnumSet(_, _, Quant::Any, mask) => *mask == 0,
        Cond::Or(items) => items.iter().all(never),
        Cond::And(items) => items.iter().any(never) || contradictory(items),
        Cond::Not(inner) => always(inner),
        _ => false,
    }
}

fn always(n: &Node) -> bool {
    match &n.cond {
        Cond::Const(b) => *b,
        Cond::Enum(_, _, mask) => *mask == u64::MAX,
        Cond::And(items) => items.iter().all(always),
        Cond::Or(items) => items.iter().any(always),
        Cond::Not(inner) => never(inner),
        _ => false,
    }
}

/// Conjuncts that constrain one enum or integer attribute to an empty set.
fn contradictory(items: &[Node]) -> bool {
    let mut enums: HashMap<(bool, usize), u64> = HashMap::new();
    let mut ints: HashMap<(bool, usize), (i64, i64)> = HashMap::new();
    for i in items {
        match &i.cond {
            Cond::Enum(_, g, mask) => {
                let m = enums.entry(g.key()).or_insert(u64::MAX);
                *m &= mask;
                if *m == 0 {
                    return true;
                }
            }
            Cond::Int(g, op, v) => {
                let (lo, hi) = ints.entry(g.key()).or_insert((i64::MIN, i64::MAX));
                match op {
                    CmpOp::Eq => (*lo, *hi) = ((*lo).max(*v), (*hi).min(*v)),
                    CmpOp::Lt => *hi = (*hi).min(v.saturating_sub(1)),
                    CmpOp::Le => *hi = (*hi).min(*v),
                    CmpOp::Gt => *lo = (*lo).max(v.saturating_add(1)),
                    CmpOp::Ge => *lo = (*lo).max(*v),
                    CmpOp::Ne => {}
                }
                if lo > hi {
                    return true;
                }
            }
            _ => {}
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn warnings(rules: &str) -> Vec<String> {
        let text = format!(
            "[policy]\nid = \"t\"\njurisdiction = \"XX\"\nname = \"T\"\nversion = \"1\"\ndefault = \"allow\"\n{rules}"
        );
        let p = super::super::from_text("t.toml", &text).unwrap();
        lint(&p, Day::from_ymd(2026, 11, 28)).iter().map(|d| d.to_string()).collect()
    }

    fn rule(id: &str, when: &str, extra: &str) -> String {
        format!(
            "[[rule]]\nid = \"{id}\"\neffect = \"deny\"\nwhen = '{when}'\nmessage = \"m\"\ncitation = \"c\"\n{extra}"
        )
    }

    #[test]
    fn finds_rules_that_cannot_matter() {
        let w = warnings(
            &[
                rule("a", r#"deployment_kind == "mining" and deployment_kind == "bridge""#, ""),
                rule("b", "node_count > 5 and node_count < 3", ""),
                rule("c", "serves_retail", ""),
                rule("d", "serves_retail ", ""),
                rule("e", "serves_retail and false", ""),
                rule("f", "aml.travel_rule", "effective_until = 2025-01-01\n"),
                rule("g", "aml.sanctions_screening", "effective_from = 2027-01-01\n"),
                rule("h", r#"deployment_kind in ["mining", "bridge"]"#, ""),
                rule("i", "aml.travel_rule", "effective_from = 2025-01-01\n"),
            ]
            .concat(),
        );
        let all = w.join("\n");
        assert!(all.contains("t.toml:8:6: warning: rule `a` can never match"), "{all}");
        assert!(all.contains("rule `b` can never match"), "{all}");
        assert!(all.contains("rule `d` has the same condition as rule `c`"), "{all}");
        assert!(all.contains("rule `e` can never match"), "{all}");
        assert!(all.contains("rule `f` is out of force since 2025-01-01"), "{all}");
        assert!(all.contains("rule `g` is not in force until 2027-01-01"), "{all}");
        assert!(!all.contains("rule `h`") && !all.contains("rule `i`"), "{all}");
        assert!(!all.contains("rule `c` "), "{all}");
    }

    #[test]
    fn legacy_first_token_paths_warn() {
        let w = warnings(
            &[
                rule("old", r#"present(token) and (serves_retail or token.kind == "stablecoin")"#, ""),
                rule("new", r#"any tokens where (kind == "stablecoin")"#, ""),
                rule("presence", "not present(token)", ""),
            ]
            .concat(),
        );
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(
            w[0].starts_with("t.toml:8:6: warning: rule `old` reads `token.kind`, which is the first token only"),
            "{w:?}"
        );
        assert!(w[0].contains("`any tokens where (kind ...)` tests every one"), "{w:?}");
    }

    const TODAY: Day = Day(20_785); // 2026-11-28

    fn policy_with(rules: &str, data: Option<&str>) -> Policy {
        let head = "[policy]\nid = \"t\"\njurisdiction = \"XX\"\nname = \"T\"\nversion = \"1\"\ndefault = \"allow\"\n";
        let table = if data.is_some() { "[data.list]\nfile = \"data/list.toml\"\n" } else { "" };
        let doc = super::super::source::parse("p/t.toml", &format!("{head}{table}{rules}")).unwrap();
        let texts: Vec<super::super::DataText> = data.iter().map(|t| Ok(t.to_string())).collect();
        super::super::build(&doc, &texts).unwrap()
    }

    fn reviewed_rule(id: &str, extra: &str) -> String {
        rule(id, "serves_retail", &format!("url = \"https://example.org/law\"\n{extra}"))
    }

    fn review_of(p: &Policy) -> Vec<String> {
        review([p], TODAY, REVIEW_MAX_AGE_DAYS).iter().map(|d| d.to_string()).collect()
    }

    #[test]
    fn review_age_is_inclusive_at_the_bound() {
        assert_eq!(Day::from_ymd(2026, 11, 28), TODAY);
        let at_bound = Day(TODAY.0 - 180);
        let past = Day(TODAY.0 - 181);
        let p = policy_with(
            &[
                reviewed_rule("fresh", &format!("reviewed = {at_bound}\n")),
                reviewed_rule("stale", &format!("reviewed = {past}\n")),
                reviewed_rule("today", &format!("reviewed = {TODAY}\n")),
            ]
            .concat(),
            None,
        );
        let w = review_of(&p);
        assert_eq!(w.len(), 1, "{w:?}");
        // The stale rule's date is on line 22 (6 lines of header, 8 a rule), column 12.
        assert!(
            w[0].starts_with(&format!(
                "p/t.toml:22:12: warning: rule `stale` was last reviewed on {past}, 181 days ago (more than 180)"
            )),
            "{w:?}"
        );
        // The bound is the flag's: a longer one forgives the stale rule.
        assert!(review([&p], TODAY, 181).is_empty());
    }

    #[test]
    fn a_future_review_date_is_an_error_at_its_position() {
        let tomorrow = Day(TODAY.0 + 1);
        let p = policy_with(&reviewed_rule("r", &format!("reviewed = {tomorrow}\n")), None);
        let d = review([&p], TODAY, REVIEW_MAX_AGE_DAYS);
        assert_eq!(d.len(), 1, "{d:?}");
        assert!(d[0].is_error());
        assert_eq!(
            d[0].to_string(),
            format!(
                "p/t.toml:14:12: error: rule `r` has a `reviewed` date in the future: {tomorrow} (today is {TODAY})"
            )
        );
    }

    #[test]
    fn missing_review_dates_and_sources_are_warnings() {
        let p = policy_with(&rule("bare", "serves_retail", ""), Some("[[entry]]\nvalue = \"x\"\n"));
        let w = review_of(&p);
        let all = w.join("\n");
        assert!(all.contains("p/t.toml:10:6: warning: rule `bare` has no `url`"), "{all}");
        assert!(all.contains("p/t.toml:10:6: warning: rule `bare` has no `reviewed` date"), "{all}");
        assert!(all.contains("p/data/list.toml:1:1: warning: data file has no `source`"), "{all}");
        assert!(all.contains("p/data/list.toml:1:1: warning: data file has no `reviewed` date"), "{all}");
        assert_eq!(w.len(), 4, "{all}");
        assert!(review([&p], TODAY, REVIEW_MAX_AGE_DAYS).iter().all(|d| !d.is_error()));

        // A data file with both, reviewed long ago, shared by two policies: one warning, at its date.
        let data = "source = \"https://example.org/list\"\nreviewed = 2025-01-01\n[[entry]]\nvalue = \"x\"\n";
        let q = policy_with(&reviewed_rule("r", &format!("reviewed = {TODAY}\n")), Some(data));
        let w: Vec<String> = review([&q, &q], TODAY, REVIEW_MAX_AGE_DAYS).iter().map(|d| d.to_string()).collect();
        assert_eq!(
            w,
            ["p/data/list.toml:2:12: warning: data file was last reviewed on 2025-01-01, 696 days ago (more than 180)"]
        );
    }

    #[test]
    fn lists_rules_coming_into_force_soonest_first() {
        let p = policy_with(
            &[
                reviewed_rule("later", "effective_from = 2027-07-01\n"),
                reviewed_rule("now", &format!("effective_from = {TODAY}\n")),
                reviewed_rule("sooner", "effective_from = 2026-11-29\n"),
                reviewed_rule("always", ""),
            ]
            .concat(),
            None,
        );
        let got: Vec<(String, &str)> =
            upcoming([&p], TODAY).iter().map(|(d, _, r)| (d.to_string(), r.id.as_str())).collect();
        assert_eq!(got, [("2026-11-29".to_string(), "sooner"), ("2027-07-01".to_string(), "later")]);
    }
}
