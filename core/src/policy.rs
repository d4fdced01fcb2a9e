//! Jurisdiction policies: read from TOML, compiled, evaluated. No I/O here.
//!
//! A policy goes through three forms, never mixed:
//! 1. [`source::PolicyDoc`]: the file as read, every value with its span, conditions
//!    parsed to syntax trees ([`expr`]);
//! 2. [`Policy`]: validated and compiled, with data sets loaded; once it exists it is
//!    valid, and evaluation cannot fail;
//! 3. the [`eval`] run over a [`Request`], which allocates nothing per rule.

pub mod compile;
pub mod data;
pub mod eval;
pub mod expr;
pub mod lint;
pub mod source;
pub mod toml_read;

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

use crate::diag::Diagnostic;
use crate::time::Day;

pub use eval::{Outcome, RuleTrace};

/// What a rule does when its condition holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Effect {
    /// Blocks; deny overrides everything.
    Deny,
    /// Advisory; reported, never blocks.
    Warn,
    /// Permits under a default-deny policy, unless a deny rule matches.
    Allow,
}

impl Effect {
    pub fn as_str(self) -> &'static str {
        match self {
            Effect::Deny => "deny",
            Effect::Warn => "warn",
            Effect::Allow => "allow",
        }
    }
}

/// How hard a rule binds (`level` in the policy file), on the model of Sentinel's
/// enforcement levels. Advisory rules warn; soft and hard rules deny, and a soft rule
/// can be waived by a signed waiver of its jurisdiction's authority (see
/// [`crate::waiver`]), a hard one never.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    Advisory,
    Soft,
    Hard,
    /// Allow rules: they permit, and have no level.
    None,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Advisory => "advisory",
            Level::Soft => "soft",
            Level::Hard => "hard",
            Level::None => "none",
        }
    }

    /// The effect a rule of this level has.
    pub fn effect(self) -> Effect {
        match self {
            Level::Advisory => Effect::Warn,
            Level::Soft | Level::Hard => Effect::Deny,
            Level::None => Effect::Allow,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    Deny,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Allow => "allow",
            Verdict::Deny => "deny",
        }
    }
}

/// A compiled policy for one jurisdiction.
#[derive(Debug)]
pub struct Policy {
    pub id: String,
    pub jurisdiction: String,
    pub name: String,
    pub version: String,
    /// The verdict when no deny rule and no allow rule matched.
    pub default: Verdict,
    pub rules: Vec<Rule>,
    /// SHA-256 over the policy file and its data files (see [`digest`]).
    pub digest: [u8; 32],
    /// The digest in lowercase hex, made once for logs.
    pub digest_hex: String,
    /// Path of the policy file as given to the loader.
    pub file: String,
    pub(crate) data: Vec<data::DataSet>,
}

#[derive(Debug)]
pub struct Rule {
    pub id: String,
    pub effect: Effect,
    pub level: Level,
    /// For soft rules: the longest waiver allowed, in days.
    pub max_waiver_days: u32,
    pub message: String,
    pub citation: String,
    pub url: String,
    /// First day the rule is in force (inclusive).
    pub effective_from: Option<Day>,
    /// Last day the rule is in force is the day before this one (exclusive).
    pub effective_until: Option<Day>,
    /// The day a person last checked the rule against its source (see [`lint::review`]).
    pub reviewed: Option<source::Reviewed>,
    /// The condition as written, for explanations.
    pub when: String,
    /// Line and column of the rule's id in its file, for warnings.
    pub position: (usize, usize),
    /// This rule's index in [`Policy::rules`], as the evaluator reports it; made by a
    /// checked conversion when the rule is compiled, so it can never wrap.
    pub(crate) index: u16,
    pub(crate) cond: compile::Node,
}

impl Rule {
    pub fn in_force(&self, day: Day) -> bool {
        self.effective_from.is_none_or(|f| day >= f) && self.effective_until.is_none_or(|u| day < u)
    }
}

/// The file texts a policy was built from, for its digest.
pub struct SourceFiles<'a> {
    /// Policy file name (no directory) and text.
    pub policy: (&'a str, &'a str),
    /// Data file paths relative to the policy directory, and their texts.
    pub data: BTreeMap<String, &'a str>,
}

/// The policy digest: SHA-256 over a framed concatenation of the policy file and its data
/// files, so that a change to any of them changes the digest:
/// `"silkgate-policy-v1\n"`, then for the policy file and then each data file in byte
/// order of their relative paths: `path "\n" len "\n" bytes "\n"` (len in ASCII decimal).
pub fn digest(files: &SourceFiles<'_>) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"silkgate-policy-v1\n");
    let mut frame = |path: &str, text: &str| {
        h.update(path.as_bytes());
        h.update(format!("\n{}\n", text.len()).as_bytes());
        h.update(text.as_bytes());
        h.update(b"\n");
    };
    frame(files.policy.0, files.policy.1);
    for (path, text) in &files.data {
        frame(path, text);
    }
    h.finalize().into()
}

/// All the policies a node enforces, one per jurisdiction.
#[derive(Debug, Default)]
pub struct PolicySet {
    pub policies: BTreeMap<String, std::sync::Arc<Policy>>,
    /// Per jurisdiction, the log index of the policy's activation entry (set by a node that
    /// keeps a log, once the entry is durable; empty offline). Kept in the set so that a
    /// decision reads its policy and its activation from one swap.
    pub activations: BTreeMap<String, u64>,
    /// Per jurisdiction, the signed waivers the node holds (see [`crate::waiver`]).
    pub waivers: crate::waiver::Waivers,
}

impl PolicySet {
    pub fn get(&self, jurisdiction: &str) -> Option<&std::sync::Arc<Policy>> {
        self.policies.get(jurisdiction)
    }
}

/// Errors and warnings from loading a policy directory.
#[derive(Debug, thiserror::Error)]
#[error("{}", render(.diagnostics))]
pub struct LoadError {
    pub diagnostics: Vec<Diagnostic>,
}

pub fn render(diags: &[Diagnostic]) -> String {
    let errors = diags.iter().filter(|d| d.is_error()).count();
    let mut s: String = diags.iter().map(|d| format!("{d}\n")).collect();
    s.push_str(&format!("{errors} error(s)"));
    s
}

/// A data file's text as read by the shell, or why it could not be read.
pub type DataText = Result<String, String>;

/// Builds a policy from its document and the texts of its data files (in the order of
/// `doc.data`). Collects every problem; on success the policy is valid.
pub fn build(doc: &source::PolicyDoc, data_texts: &[DataText]) -> Result<Policy, Vec<Diagnostic>> {
    let mut diags = Vec::new();
    let mut sets = Vec::new();
    let mut index = compile::DataIndex::new();
    let mut digest_data = BTreeMap::new();
    let dir = std::path::Path::new(&doc.file).parent().map(|p| p.to_string_lossy().into_owned()).unwrap_or_default();
    for (r, text) in doc.data.iter().zip(data_texts) {
        let shown = if dir.is_empty() { r.file.clone() } else { format!("{dir}/{}", r.file) };
        match text {
            Err(e) => diags.push(
                Diagnostic::at(&doc.file, &doc.text, r.span.clone(), format!("cannot read data file `{shown}`: {e}"))
                    .with_help("data file paths are relative to the policy file's directory"),
            ),
            Ok(t) => match data::parse(&r.name, &shown, t) {
                Ok(set) => {
                    index.insert(r.name.clone(), (sets.len(), set.case));
                    sets.push(set);
                    digest_data.insert(r.file.clone(), t.as_str());
                }
                Err(mut d) => diags.append(&mut d),
            },
        }
    }
    // Rules naming a data set that failed to load would only repeat that error.
    let failed: Vec<&str> = doc.data.iter().filter(|r| !index.contains_key(&r.name)).map(|r| r.name.as_str()).collect();
    let mut compiler = compile::Compiler { file: &doc.file, text: &doc.text, data: &index, diags: Vec::new() };
    let mut rules = Vec::new();
    for r in &doc.rules {
        if failed.iter().any(|n| r.when.contains(&format!("data.{n}"))) {
            continue;
        }
        if let Some(cond) = compiler.rule(r) {
            // Matched rules are reported as u16 indexes: a policy with more rules than that
            // could name the wrong rule (source::MAX_RULES refuses such files earlier).
            let Ok(index) = u16::try_from(rules.len()) else {
                diags.push(Diagnostic::at(
                    &doc.file,
                    &doc.text,
                    r.span.clone(),
                    format!("too many rules: {} (a policy holds at most {})", doc.rules.len(), source::MAX_RULES),
                ));
                break;
            };
            rules.push(Rule {
                id: r.id.get_ref().clone(),
                effect: r.effect,
                level: r.level,
                max_waiver_days: r.max_waiver_days,
                message: r.message.clone(),
                citation: r.citation.clone(),
                url: r.url.clone(),
                effective_from: r.effective_from.as_ref().map(|d| *d.get_ref()),
                effective_until: r.effective_until.as_ref().map(|d| *d.get_ref()),
                reviewed: r.reviewed.as_ref().map(|d| source::Reviewed::at(&doc.file, &doc.text, d)),
                when: r.when.clone(),
                position: {
                    let d = Diagnostic::at(&doc.file, &doc.text, r.id.span(), "");
                    (d.line, d.column)
                },
                index,
                cond,
            });
        }
    }
    diags.append(&mut compiler.diags);
    if !diags.is_empty() {
        return Err(diags);
    }
    let name =
        std::path::Path::new(&doc.file).file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default();
    let digest = digest(&SourceFiles { policy: (&name, &doc.text), data: digest_data });
    Ok(Policy {
        id: doc.id.get_ref().clone(),
        jurisdiction: doc.jurisdiction.get_ref().clone(),
        name: doc.name.clone(),
        version: doc.version.clone(),
        default: doc.default,
        rules,
        digest,
        digest_hex: hex::encode(digest),
        file: doc.file.clone(),
        data: sets,
    })
}

/// Parses and builds a policy without data files (tests, and policies that use none).
pub fn from_text(file: &str, text: &str) -> Result<Policy, Vec<Diagnostic>> {
    let doc = source::parse(file, text)?;
    let missing: Vec<DataText> = doc.data.iter().map(|_| Err("no data files given".to_string())).collect();
    build(&doc, &missing)
}

#[cfg(test)]
mod tests;
