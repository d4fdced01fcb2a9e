//! Every file under `policy/` loads, and every shipped policy's test cases pass.

use std::collections::BTreeMap;

use silkgate::loader;
use silkgate_core::cases;
use silkgate_tests::shipped_policy_dir;

#[test]
fn every_policy_loads_and_cites_its_sources() {
    let set = loader::load_dir(&shipped_policy_dir(), None).unwrap_or_else(|e| panic!("{e}"));
    for j in ["CN", "SG", "EU", "US", "RU", "KZ", "ID", "BH", "IN", "AE"] {
        let p = set.get(j).unwrap_or_else(|| panic!("no policy for {j}"));
        assert!(!p.rules.is_empty(), "{j} has no rules");
        for r in &p.rules {
            assert!(!r.citation.trim().is_empty() && !r.message.trim().is_empty(), "{}: {}", j, r.id);
        }
    }
}

#[test]
fn every_data_file_is_used_and_parses() {
    let dir = shipped_policy_dir();
    let mut used = BTreeMap::new();
    for path in loader::policy_files(&dir).unwrap() {
        let text = std::fs::read_to_string(&path).unwrap();
        let doc = silkgate_core::policy::source::parse(&path.display().to_string(), &text).unwrap();
        for r in doc.data {
            used.insert(std::fs::canonicalize(dir.join(&r.file)).unwrap(), path.clone());
        }
    }
    for sub in ["data", "testdata"] {
        for entry in std::fs::read_dir(dir.join(sub)).unwrap() {
            let path = entry.unwrap().path();
            let text = std::fs::read_to_string(&path).unwrap();
            silkgate_core::policy::data::parse("x", &path.display().to_string(), &text)
                .unwrap_or_else(|e| panic!("{}", silkgate_core::policy::render(&e)));
            if sub == "data" {
                assert!(
                    used.contains_key(&std::fs::canonicalize(&path).unwrap()),
                    "{} is used by no policy",
                    path.display()
                );
            }
        }
    }
}

#[test]
fn every_policy_has_passing_cases_covering_every_rule() {
    let dir = shipped_policy_dir();
    let mut tested = Vec::new();
    let mut total = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if !path.to_string_lossy().ends_with(".tests.toml") {
            continue;
        }
        let file = cases::parse(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let overrides = file.data.iter().map(|(k, v)| (k.clone(), dir.join(v))).collect();
        let policy = loader::load_file_with(&dir.join(&file.policy), &overrides).unwrap();
        let report = cases::run(&file, &policy);
        let failures: Vec<String> = report
            .cases
            .iter()
            .filter(|c| !c.problems.is_empty())
            .map(|c| format!("{}: {}", c.name, c.problems.join("; ")))
            .chain(report.coverage.iter().cloned())
            .collect();
        assert!(failures.is_empty(), "{}:\n{}", path.display(), failures.join("\n"));
        total += report.cases.len();
        tested.push(policy.jurisdiction.clone());
    }
    tested.sort();
    assert_eq!(tested, ["AE", "BH", "CN", "EU", "ID", "IN", "KZ", "RU", "SG", "US"]);
    assert!(total > 100, "{total} cases");
}
