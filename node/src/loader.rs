//! Reads a policy directory into a [`PolicySet`]: the only place policy files are read.
//!
//! Every `*.toml` file at the top of the directory is a policy, except `*.tests.toml`
//! (policy test cases) and hidden files; data files are read from the paths the
//! policies name. All files are read and checked before anything is returned, so a
//! directory with any error yields every error and no policies.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::diag::Diagnostic;
use crate::policy::{self, DataText, LoadError, PolicySet, source};

/// The policy files of a directory, sorted by name.
pub fn policy_files(dir: &Path) -> Result<Vec<PathBuf>, LoadError> {
    let shown = dir.display().to_string();
    let entries = fs::read_dir(dir).map_err(|e| LoadError {
        diagnostics: vec![Diagnostic::file(&shown, format!("cannot read policy directory: {e}"))],
    })?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            !name.starts_with('.') && name.ends_with(".toml") && !name.ends_with(".tests.toml") && p.is_file()
        })
        .collect();
    files.sort();
    Ok(files)
}

fn read(path: &Path) -> Result<String, String> {
    let meta = fs::metadata(path).map_err(|e| e.to_string())?;
    if meta.len() > source::MAX_FILE_BYTES as u64 {
        return Err(format!("larger than {} bytes", source::MAX_FILE_BYTES));
    }
    fs::read_to_string(path).map_err(|e| e.to_string())
}

/// Loads one policy file and its data files.
pub fn load_file(path: &Path) -> Result<policy::Policy, Vec<Diagnostic>> {
    load_file_with(path, &BTreeMap::new())
}

/// Loads one policy file, reading the data sets named in `overrides` from the given
/// files instead of the policy's own (policy tests use this for fixture data).
pub fn load_file_with(path: &Path, overrides: &BTreeMap<String, PathBuf>) -> Result<policy::Policy, Vec<Diagnostic>> {
    let shown = path.display().to_string();
    let text = read(path).map_err(|e| vec![Diagnostic::file(&shown, format!("cannot read: {e}"))])?;
    let doc = source::parse(&shown, &text)?;
    if let Some(name) = overrides.keys().find(|n| !doc.data.iter().any(|r| &r.name == *n)) {
        return Err(vec![Diagnostic::file(
            &shown,
            format!("the tests replace data set `{name}`, which this policy does not declare"),
        )]);
    }
    let dir = path.parent().unwrap_or(Path::new("."));
    let data: Vec<DataText> =
        doc.data.iter().map(|r| read(&overrides.get(&r.name).cloned().unwrap_or_else(|| dir.join(&r.file)))).collect();
    policy::build(&doc, &data)
}

/// Loads every policy in `dir`. With `only`, keeps just those jurisdictions and fails
/// when one of them has no policy.
pub fn load_dir(dir: &Path, only: Option<&[String]>) -> Result<PolicySet, LoadError> {
    let mut diagnostics = Vec::new();
    let mut policies = BTreeMap::new();
    let mut files_by_jurisdiction: BTreeMap<String, String> = BTreeMap::new();
    let files = policy_files(dir)?;
    if files.is_empty() {
        let shown = dir.display().to_string();
        diagnostics.push(Diagnostic::file(&shown, "no policy files (*.toml) in the policy directory"));
    }
    for path in files {
        match load_file(&path) {
            Ok(p) => {
                if let Some(first) = files_by_jurisdiction.insert(p.jurisdiction.clone(), p.file.clone()) {
                    diagnostics.push(Diagnostic::file(
                        &p.file,
                        format!("a second policy for jurisdiction `{}` (the first is {first})", p.jurisdiction),
                    ));
                    continue;
                }
                policies.insert(p.jurisdiction.clone(), Arc::new(p));
            }
            Err(mut d) => diagnostics.append(&mut d),
        }
    }
    if let Some(only) = only {
        let shown = dir.display().to_string();
        for j in only {
            if !policies.contains_key(j) && !diagnostics.iter().any(|d| d.is_error()) {
                diagnostics
                    .push(Diagnostic::file(&shown, format!("no policy for jurisdiction `{j}` in this directory")));
            }
        }
        policies.retain(|j, _| only.contains(j));
    }
    if diagnostics.iter().any(Diagnostic::is_error) {
        return Err(LoadError { diagnostics });
    }
    Ok(PolicySet { policies })
}
