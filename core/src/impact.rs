//! Impact preview: evaluate a corpus of requests under two policy sets and report which
//! decisions change and why, with counts per jurisdiction and per rule.

use std::collections::{BTreeMap, BTreeSet};

use crate::policy::{PolicySet, Verdict};
use crate::request::Request;
use crate::time::Day;

/// One request of the corpus.
pub struct Sample {
    pub jurisdiction: String,
    pub request: Request,
}

/// A decision that differs between the two policy sets.
#[derive(Debug, PartialEq, Eq)]
pub struct Change {
    pub request_id: String,
    pub jurisdiction: String,
    /// `None` when that side has no policy for the jurisdiction.
    pub before: Option<Verdict>,
    pub after: Option<Verdict>,
    pub added: Vec<String>,
    pub removed: Vec<String>,
}

#[derive(Debug, Default, PartialEq, Eq)]
pub struct JurisdictionCounts {
    pub evaluated: usize,
    pub changed: usize,
    pub allow_to_deny: usize,
    pub deny_to_allow: usize,
}

#[derive(Debug, Default)]
pub struct Report {
    pub changes: Vec<Change>,
    pub jurisdictions: BTreeMap<String, JurisdictionCounts>,
    /// Rule id -> (requests it newly matches, requests it no longer matches).
    pub rules: BTreeMap<String, (usize, usize)>,
}

fn run(set: &PolicySet, s: &Sample, day: Day) -> Option<(Verdict, BTreeSet<String>)> {
    let p = set.get(&s.jurisdiction)?;
    // Waivers held in the set apply as at the day's first second (see `crate::waiver`).
    let waivers = set.waivers.get(&s.jurisdiction).map(Vec::as_slice).unwrap_or_default();
    let at = crate::time::UnixTime::from_secs(i64::from(day.0) * 86_400);
    let out = crate::waiver::apply(p, p.evaluate(&s.request, day), waivers, &s.request, None, at).outcome;
    Some((out.verdict, out.matched.iter().map(|&i| p.rules[i as usize].id.clone()).collect()))
}

pub fn compare(before: &PolicySet, after: &PolicySet, samples: &[Sample], day: Day) -> Report {
    let mut report = Report::default();
    for s in samples {
        let (a, b) = (run(before, s, day), run(after, s, day));
        let counts = report.jurisdictions.entry(s.jurisdiction.clone()).or_default();
        counts.evaluated += 1;
        let empty = BTreeSet::new();
        let (ra, rb) = (a.as_ref().map_or(&empty, |x| &x.1), b.as_ref().map_or(&empty, |x| &x.1));
        let added: Vec<String> = rb.difference(ra).cloned().collect();
        let removed: Vec<String> = ra.difference(rb).cloned().collect();
        let (va, vb) = (a.as_ref().map(|x| x.0), b.as_ref().map(|x| x.0));
        if va == vb && added.is_empty() && removed.is_empty() {
            continue;
        }
        counts.changed += 1;
        match (va, vb) {
            (Some(Verdict::Allow), Some(Verdict::Deny)) => counts.allow_to_deny += 1,
            (Some(Verdict::Deny), Some(Verdict::Allow)) => counts.deny_to_allow += 1,
            _ => {}
        }
        for r in &added {
            report.rules.entry(r.clone()).or_default().0 += 1;
        }
        for r in &removed {
            report.rules.entry(r.clone()).or_default().1 += 1;
        }
        report.changes.push(Change {
            request_id: s.request.request_id.clone(),
            jurisdiction: s.jurisdiction.clone(),
            before: va,
            after: vb,
            added,
            removed,
        });
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::from_text;
    use crate::proto;
    use std::sync::Arc;

    fn set(rules: &str) -> PolicySet {
        let text = format!(
            "[policy]\nid = \"t\"\njurisdiction = \"XX\"\nname = \"T\"\nversion = \"1\"\ndefault = \"allow\"\n{rules}"
        );
        let p = from_text("t.toml", &text).unwrap();
        PolicySet { policies: [("XX".to_string(), Arc::new(p))].into(), ..Default::default() }
    }

    #[test]
    fn reports_changed_decisions_and_rules() {
        let rule = "[[rule]]\nid = \"t.retail\"\neffect = \"deny\"\nwhen = 'serves_retail'\nmessage = \"m\"\ncitation = \"c\"\n";
        let before = set("");
        let after = set(rule);
        let req = |id: &str, retail: bool| Sample {
            jurisdiction: "XX".into(),
            request: Request::try_from(proto::DeploymentRequest {
                request_id: id.into(),
                deployment_kind: 1,
                permission_model: 2,
                protocol: Some(proto::Protocol { name: "p".into(), ..Default::default() }),
                serves_retail: retail,
                ..Default::default()
            })
            .unwrap(),
        };
        let samples = [req("a", true), req("b", false)];
        let r = compare(&before, &after, &samples, Day(0));
        assert_eq!(r.changes.len(), 1);
        assert_eq!(r.changes[0].request_id, "a");
        assert_eq!(r.changes[0].added, ["t.retail"]);
        assert_eq!(
            r.jurisdictions["XX"],
            JurisdictionCounts { evaluated: 2, changed: 1, allow_to_deny: 1, deny_to_allow: 0 }
        );
        assert_eq!(r.rules["t.retail"], (1, 0));
    }
}
