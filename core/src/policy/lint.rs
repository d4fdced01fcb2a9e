//! Warnings about rules that load but are probably not what the author meant: rules
//! that can never match, rules that duplicate another's condition, and rules out of
//! force on the day checked.

use std::collections::HashMap;

use super::compile::{Cond, Node};
use super::expr::{CmpOp, Quant};
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
        if r.effect == Effect::Allow && policy.default == super::Verdict::Allow {
            out.push(warn(
                r,
                format!("allow rule `{}` only annotates decisions: the policy's default is already allow", r.id),
            ));
        }
    }
    out
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
    let mut enums: HashMap<usize, u64> = HashMap::new();
    let mut ints: HashMap<usize, (i64, i64)> = HashMap::new();
    for i in items {
        match &i.cond {
            Cond::Enum(_, g, mask) => {
                let m = enums.entry(*g as usize).or_insert(u64::MAX);
                *m &= mask;
                if *m == 0 {
                    return true;
                }
            }
            Cond::Int(g, op, v) => {
                let (lo, hi) = ints.entry(*g as usize).or_insert((i64::MIN, i64::MAX));
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
                rule("f", "token.tradable", "effective_until = 2025-01-01\n"),
                rule("g", "token.transferable", "effective_from = 2027-01-01\n"),
                rule("h", r#"deployment_kind in ["mining", "bridge"]"#, ""),
                rule("i", "token.tradable", "effective_from = 2025-01-01\n"),
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
}
