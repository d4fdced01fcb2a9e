//! Policy test cases written beside the policies (`cn.tests.toml` next to `cn.toml`).
//!
//! ```toml
//! policy = "cn.toml"     # the policy file tested, relative to this file
//! data = { ofac_sdn = "testdata/sdn.toml" }  # optional: fixture data sets, by name
//! at = 2026-11-28        # evaluation date, unless a case sets its own
//! [base]                 # a request in request-file format
//! request_id = "base"
//! # ...
//! [[case]]
//! name = "permissionless chains are refused"
//! expect = "deny"                       # the verdict
//! rules = ["cn.permissionless"]         # exactly the rules that match
//! unset = ["token"]                     # optional: paths removed from the base copy
//! patch = { permission_model = "permissionless" }  # merged into the base copy
//! ```
//! Besides each case's own result, the run checks coverage: every rule must match in
//! at least one case and not match in another, so each rule is shown to fire and to
//! stay quiet on a near-identical request.

use std::collections::BTreeSet;

use serde::Deserialize;

use crate::policy::{Policy, Verdict};
use crate::request::Request;
use crate::request::file::RequestFile;
use crate::time::Day;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CasesFile {
    pub policy: String,
    /// Data sets replaced by fixture files (paths relative to the tests file).
    #[serde(default)]
    pub data: std::collections::BTreeMap<String, String>,
    pub at: Option<toml::value::Datetime>,
    pub base: toml::Table,
    #[serde(default, rename = "case")]
    pub cases: Vec<Case>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    pub name: String,
    pub expect: String,
    #[serde(default)]
    pub rules: Vec<String>,
    pub at: Option<toml::value::Datetime>,
    #[serde(default)]
    pub unset: Vec<String>,
    #[serde(default)]
    pub patch: toml::Table,
}

/// The result of one case.
#[derive(Debug)]
pub struct CaseResult {
    pub name: String,
    /// Empty when the case passed.
    pub problems: Vec<String>,
    pub matched: Vec<String>,
}

#[derive(Debug)]
pub struct Report {
    pub cases: Vec<CaseResult>,
    /// Rules never shown to match, or never shown not to match.
    pub coverage: Vec<String>,
}

impl Report {
    pub fn passed(&self) -> bool {
        self.coverage.is_empty() && self.cases.iter().all(|c| c.problems.is_empty())
    }

    pub fn failures(&self) -> usize {
        self.cases.iter().filter(|c| !c.problems.is_empty()).count() + self.coverage.len()
    }
}

pub fn parse(text: &str) -> Result<CasesFile, String> {
    toml::from_str(text).map_err(|e| e.to_string())
}

fn day_of(dt: &toml::value::Datetime) -> Result<Day, String> {
    match (dt.date, dt.time) {
        (Some(d), None) => Ok(Day::from_ymd(i32::from(d.year), u32::from(d.month), u32::from(d.day))),
        _ => Err(format!("`at` must be a date like 2026-01-31, found {dt}")),
    }
}

fn unset(table: &mut toml::Table, path: &str) -> Result<(), String> {
    let mut parts = path.split('.').peekable();
    let mut t = table;
    while let Some(p) = parts.next() {
        if parts.peek().is_none() {
            return t.remove(p).map(|_| ()).ok_or_else(|| format!("unset: `{path}` is not in the base request"));
        }
        t = t
            .get_mut(p)
            .and_then(toml::Value::as_table_mut)
            .ok_or_else(|| format!("unset: `{path}` is not in the base request"))?;
    }
    Ok(())
}

fn merge(base: &mut toml::Table, patch: &toml::Table) {
    for (k, v) in patch {
        match (base.get_mut(k), v) {
            (Some(toml::Value::Table(b)), toml::Value::Table(p)) => merge(b, p),
            _ => {
                base.insert(k.clone(), v.clone());
            }
        }
    }
}

/// The request a case describes: the base, minus `unset`, plus `patch`.
pub fn case_request(file: &CasesFile, case: &Case) -> Result<Request, String> {
    let mut t = file.base.clone();
    for path in &case.unset {
        unset(&mut t, path)?;
    }
    merge(&mut t, &case.patch);
    let f = RequestFile::from_value(toml::Value::Table(t))?;
    let p = f.to_proto().map_err(|e| format!("request: {e}"))?;
    Request::try_from(p).map_err(|e| format!("request: {e}"))
}

/// Runs every case of `file` against `policy`.
pub fn run(file: &CasesFile, policy: &Policy) -> Report {
    let default_day = file.at.as_ref().map(day_of);
    let mut fired = BTreeSet::new();
    let mut quiet = BTreeSet::new();
    let mut cases = Vec::new();
    for case in &file.cases {
        let mut problems = Vec::new();
        let mut matched = Vec::new();
        let day = match (&case.at, &default_day) {
            (Some(at), _) => day_of(at),
            (None, Some(d)) => d.clone(),
            (None, None) => Err("no `at` date for this case or the file".to_string()),
        };
        let expect = match case.expect.as_str() {
            "allow" => Ok(Verdict::Allow),
            "deny" => Ok(Verdict::Deny),
            other => Err(format!("expect must be `allow` or `deny`, found `{other}`")),
        };
        for id in &case.rules {
            if !policy.rules.iter().any(|r| &r.id == id) {
                problems.push(format!("expected rule `{id}` does not exist in {}", policy.file));
            }
        }
        match (day, expect, case_request(file, case)) {
            (Ok(day), Ok(expect), Ok(req)) => {
                let out = policy.evaluate(&req, day);
                matched = out.matched.iter().map(|&i| policy.rules[i as usize].id.clone()).collect();
                for (i, r) in policy.rules.iter().enumerate() {
                    if out.matched.contains(&(i as u16)) {
                        fired.insert(r.id.clone());
                    } else {
                        quiet.insert(r.id.clone());
                    }
                }
                if out.verdict != expect {
                    problems.push(format!("expected {}, got {}", expect.as_str(), out.verdict.as_str()));
                }
                let want: BTreeSet<&str> = case.rules.iter().map(String::as_str).collect();
                let got: BTreeSet<&str> = matched.iter().map(String::as_str).collect();
                let missing: Vec<&str> = want.difference(&got).copied().collect();
                let extra: Vec<&str> = got.difference(&want).copied().collect();
                if !missing.is_empty() {
                    problems.push(format!("expected to match but did not: {}", missing.join(", ")));
                }
                if !extra.is_empty() {
                    problems.push(format!("matched but not expected: {}", extra.join(", ")));
                }
            }
            (d, e, r) => {
                problems.extend(d.err());
                problems.extend(e.err());
                problems.extend(r.err());
            }
        }
        cases.push(CaseResult { name: case.name.clone(), problems, matched });
    }
    let mut coverage = Vec::new();
    for r in &policy.rules {
        if !fired.contains(&r.id) {
            coverage.push(format!("rule `{}` matches in no case", r.id));
        }
        if !quiet.contains(&r.id) {
            coverage
                .push(format!("rule `{}` matches in every case: add a near-identical case where it does not", r.id));
        }
    }
    Report { cases, coverage }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: &str = r#"
[policy]
id = "t"
jurisdiction = "XX"
name = "T"
version = "1"
default = "allow"
[[rule]]
id = "t.retail"
effect = "deny"
when = 'serves_retail and token.tradable'
message = "m"
citation = "c"
"#;

    const CASES: &str = r#"
policy = "t.toml"
at = 2026-01-01
[base]
request_id = "b"
deployment_kind = "permissioned_app"
permission_model = "permissioned"
serves_retail = true
protocol = { name = "fabric" }
token = { kind = "utility", tradable = true }
[[case]]
name = "fires"
expect = "deny"
rules = ["t.retail"]
[[case]]
name = "no token"
expect = "allow"
unset = ["token"]
[[case]]
name = "wrong expectation"
expect = "allow"
patch = { token = { tradable = true } }
"#;

    #[test]
    fn runs_cases_and_reports_mismatches() {
        let policy = crate::policy::from_text("t.toml", POLICY).unwrap();
        let file = parse(CASES).unwrap();
        let report = run(&file, &policy);
        assert!(report.cases[0].problems.is_empty(), "{:?}", report.cases[0]);
        assert!(report.cases[1].problems.is_empty(), "{:?}", report.cases[1]);
        assert_eq!(report.cases[2].problems, ["expected allow, got deny", "matched but not expected: t.retail"]);
        assert!(report.coverage.is_empty());
        assert!(!report.passed());
    }

    #[test]
    fn reports_rules_without_coverage() {
        let policy = crate::policy::from_text("t.toml", POLICY).unwrap();
        let mut file = parse(CASES).unwrap();
        file.cases.truncate(1);
        let report = run(&file, &policy);
        assert_eq!(report.coverage.len(), 1, "{:?}", report.coverage);
    }
}
