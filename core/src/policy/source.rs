//! Stage one: a policy file's text to a [`PolicyDoc`], every value with its span.
//!
//! ```toml
//! [policy]
//! id = "cn-mainland"
//! jurisdiction = "CN"
//! name = "Mainland China"
//! version = "2026.11.0"
//! default = "allow"
//!
//! [data.ofac_sdn]
//! file = "data/ofac-sdn.toml"
//!
//! [[rule]]
//! id = "cn.permissionless"
//! effect = "deny"
//! when = 'permission_model == "permissionless"'
//! message = "..."
//! citation = "..."
//! ```

use std::ops::Range;

use toml::Spanned;

use super::expr::{self, Expr};
use super::toml_read::{Reader, string_body_offset};
use super::{Effect, Verdict};
use crate::diag::Diagnostic;
use crate::time::Day;

#[derive(Debug)]
pub struct PolicyDoc {
    pub file: String,
    pub text: String,
    pub id: Spanned<String>,
    pub jurisdiction: Spanned<String>,
    pub name: String,
    pub version: String,
    pub default: Verdict,
    pub data: Vec<DataRef>,
    pub rules: Vec<RuleDoc>,
}

/// A `[data.NAME]` table: a list kept in a data file beside the policy.
#[derive(Debug, Clone)]
pub struct DataRef {
    pub name: String,
    /// Path relative to the policy file's directory.
    pub file: String,
    pub span: Range<usize>,
}

#[derive(Debug, Clone)]
pub struct RuleDoc {
    pub id: Spanned<String>,
    pub effect: Effect,
    /// How hard the rule binds (see [`super::Level`]); from `effect` when not written.
    pub level: super::Level,
    /// For soft rules: the longest waiver allowed, in days.
    pub max_waiver_days: u32,
    pub when: String,
    pub expr: Expr,
    /// Where the condition text starts in the file, when spans can be mapped exactly.
    pub when_offset: Option<usize>,
    /// Span of the whole `when` value in the file.
    pub when_span: Range<usize>,
    pub message: String,
    pub citation: String,
    pub url: String,
    pub effective_from: Option<Spanned<Day>>,
    pub effective_until: Option<Spanned<Day>>,
    /// The day a person last checked the rule against its source.
    pub reviewed: Option<Spanned<Day>>,
    pub span: Range<usize>,
}

/// A `reviewed = YYYY-MM-DD` date (on a rule or at the top of a data file): the day a
/// person last checked the entry against its source. `silkgate check` reads it; it has
/// no effect on decisions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reviewed {
    pub day: Day,
    /// Line and column of the date in its file.
    pub position: (usize, usize),
}

impl Reviewed {
    pub fn at(file: &str, text: &str, date: &Spanned<Day>) -> Reviewed {
        let d = Diagnostic::at(file, text, date.span(), "");
        Reviewed { day: *date.get_ref(), position: (d.line, d.column) }
    }
}

impl RuleDoc {
    /// The file span of a span inside the condition text.
    pub fn map_span(&self, inner: Range<usize>) -> Range<usize> {
        match self.when_offset {
            Some(off) => off + inner.start..off + inner.end,
            None => self.when_span.clone(),
        }
    }
}

/// Files larger than this are refused at load.
pub const MAX_FILE_BYTES: usize = 4 << 20;

/// Rules a policy may hold; more are refused at load. Matched rules are reported by a
/// `u16` index, so this must stay below 65,536 (checked at compile time below, and
/// again when each rule is compiled).
pub const MAX_RULES: usize = 10_000;
const _: () = assert!(MAX_RULES <= u16::MAX as usize);

/// Data sets (`[data.NAME]` tables) a policy may name.
pub const MAX_DATA_SETS: usize = 64;

const POLICY_KEYS: &[&str] = &["id", "jurisdiction", "name", "version", "default", "description"];
const RULE_KEYS: &[&str] = &[
    "id",
    "effect",
    "level",
    "max_waiver_days",
    "when",
    "message",
    "citation",
    "url",
    "effective_from",
    "effective_until",
    "reviewed",
    "note",
];

/// The longest waiver a soft rule may allow, in days, when it does not say
/// (`max_waiver_days`); and the most it may say.
pub const DEFAULT_MAX_WAIVER_DAYS: u32 = 90;
pub const MAX_WAIVER_DAYS: u32 = 3650;

/// A rule's effect and level from its `effect` and `level` keys: `level` alone gives the
/// effect (`advisory` warns, `soft` and `hard` deny); `effect` alone gives the level
/// (`warn` is advisory, `deny` hard, `allow` has none); both must agree.
fn rule_level(
    r: &mut Reader<'_>,
    effect: Option<Spanned<String>>,
    level: Option<Spanned<String>>,
) -> (Option<Effect>, Option<super::Level>) {
    use super::Level;
    let effect_of = |r: &mut Reader<'_>, e: &Spanned<String>| match e.get_ref().as_str() {
        "deny" => Some(Effect::Deny),
        "warn" => Some(Effect::Warn),
        "allow" => Some(Effect::Allow),
        other => {
            r.error(e.span(), format!("effect must be `deny`, `warn` or `allow`, found `{other}`"));
            None
        }
    };
    let level_of = |r: &mut Reader<'_>, l: &Spanned<String>| match l.get_ref().as_str() {
        "advisory" => Some(Level::Advisory),
        "soft" => Some(Level::Soft),
        "hard" => Some(Level::Hard),
        other => {
            r.error(l.span(), format!("level must be `advisory`, `soft` or `hard`, found `{other}`"));
            None
        }
    };
    match (effect, level) {
        (None, None) => (None, None),
        (Some(e), None) => {
            let effect = effect_of(r, &e);
            let level = effect.map(|e| match e {
                Effect::Deny => Level::Hard,
                Effect::Warn => Level::Advisory,
                Effect::Allow => Level::None,
            });
            (effect, level)
        }
        (None, Some(l)) => {
            let level = level_of(r, &l);
            (level.map(Level::effect), level)
        }
        (Some(e), Some(l)) => {
            let (effect, level) = (effect_of(r, &e), level_of(r, &l));
            match (effect, level) {
                (Some(effect), Some(level)) if level.effect() == effect => (Some(effect), Some(level)),
                (Some(effect), Some(level)) => {
                    r.error(
                        l.span(),
                        format!(
                            "level `{}` does not go with effect `{}` (advisory rules warn; soft and hard rules deny; allow rules have no level)",
                            level.as_str(),
                            effect.as_str()
                        ),
                    );
                    (None, None)
                }
                _ => (None, None),
            }
        }
    }
}

fn valid_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_' | b'.'))
}

/// Reads a policy file. Returns every problem found, not just the first.
pub fn parse(file: &str, text: &str) -> Result<PolicyDoc, Vec<Diagnostic>> {
    let mut r = Reader::new(file, text);
    if text.len() > MAX_FILE_BYTES {
        return Err(vec![Diagnostic::file(file, format!("file larger than {MAX_FILE_BYTES} bytes"))]);
    }
    let Some(root) = r.parse() else {
        return Err(r.diags);
    };
    let root_span = root.span();
    let root = root.get_ref();
    r.check_keys(root, &["policy", "data", "rule"], "the policy file");

    let mut meta = None;
    match Reader::get(root, "policy") {
        None => r.error(0..0, "missing table `[policy]`"),
        Some(v) => {
            if let Some(t) = r.table(v, "policy") {
                r.check_keys(t, POLICY_KEYS, "[policy]");
                let span = v.span();
                let id = r.string(t, span.clone(), "id", "[policy]", true);
                let jur = r.string(t, span.clone(), "jurisdiction", "[policy]", true);
                let name = r.string(t, span.clone(), "name", "[policy]", true);
                let version = r.string(t, span.clone(), "version", "[policy]", true);
                let default = r.string(t, span.clone(), "default", "[policy]", true);
                r.string(t, span, "description", "[policy]", false);
                if let Some(id) = &id
                    && !valid_id(id.get_ref())
                {
                    r.error(id.span(), "policy ids are 1 to 64 characters of a-z, 0-9, `-`, `_` and `.`");
                }
                if let Some(j) = &jur {
                    let s = j.get_ref();
                    if s.len() != 2 || !s.bytes().all(|b| b.is_ascii_uppercase()) {
                        r.error(j.span(), format!("jurisdiction must be a two-letter upper-case code, found `{s}`"));
                    }
                }
                let default = default.and_then(|d| match d.get_ref().as_str() {
                    "allow" => Some(Verdict::Allow),
                    "deny" => Some(Verdict::Deny),
                    other => {
                        r.error(d.span(), format!("default must be `allow` or `deny`, found `{other}`"));
                        None
                    }
                });
                if let (Some(id), Some(j), Some(n), Some(v), Some(d)) = (id, jur, name, version, default) {
                    meta = Some((id, j, n.into_inner(), v.into_inner(), d));
                }
            }
        }
    }

    let mut data = Vec::new();
    if let Some(v) = Reader::get(root, "data")
        && let Some(t) = r.table(v, "data")
    {
        if let Some((k, _)) = t.iter().nth(MAX_DATA_SETS) {
            r.error(k.span(), format!("too many data sets: {} (a policy names at most {MAX_DATA_SETS})", t.len()));
            return Err(r.diags);
        }
        for (k, v) in t.iter() {
            let name = k.get_ref().to_string();
            let what = format!("[data.{name}]");
            if !valid_id(&name) || name.contains('.') {
                r.error(k.span(), "data set names are 1 to 64 characters of a-z, 0-9, `-` and `_`");
            }
            let Some(dt) = r.table(v, &what) else {
                continue;
            };
            r.check_keys(dt, &["file", "description"], &what);
            r.string(dt, v.span(), "description", &what, false);
            if let Some(f) = r.string(dt, v.span(), "file", &what, true) {
                let path = f.get_ref();
                if path.starts_with('/') || path.split('/').any(|c| c == "..") {
                    r.error(f.span(), "data files must be inside the policy directory (a relative path without `..`)");
                    continue;
                }
                data.push(DataRef { name, file: path.clone(), span: f.span() });
            }
        }
    }

    let mut rules = Vec::new();
    let rule_tables = r.tables(root, "rule");
    if let Some(extra) = rule_tables.get(MAX_RULES) {
        r.error(extra.span(), format!("too many rules: {} (a policy holds at most {MAX_RULES})", rule_tables.len()));
        return Err(r.diags);
    }
    for v in rule_tables {
        let Some(t) = r.table(v, "rule") else {
            continue;
        };
        let span = v.span();
        r.check_keys(t, RULE_KEYS, "[[rule]]");
        let id = r.string(t, span.clone(), "id", "[[rule]]", true);
        let level = r.string(t, span.clone(), "level", "[[rule]]", false);
        // `effect` may be left out when `level` says it (`advisory` warns, `soft` and
        // `hard` deny).
        let effect = r.string(t, span.clone(), "effect", "[[rule]]", level.is_none());
        let max_waiver_days = Reader::get(t, "max_waiver_days").cloned();
        let when = r.string(t, span.clone(), "when", "[[rule]]", true);
        let message = r.string(t, span.clone(), "message", "[[rule]]", true);
        let citation = r.string(t, span.clone(), "citation", "[[rule]]", true);
        let url = r.string(t, span.clone(), "url", "[[rule]]", false);
        r.string(t, span.clone(), "note", "[[rule]]", false);
        let from = r.date(t, "effective_from");
        let until = r.date(t, "effective_until");
        let reviewed = r.date(t, "reviewed");
        if let Some(id) = &id
            && !valid_id(id.get_ref())
        {
            r.error(id.span(), "rule ids are 1 to 64 characters of a-z, 0-9, `-`, `_` and `.`");
        }
        if let (Some(f), Some(u)) = (&from, &until)
            && f.get_ref() >= u.get_ref()
        {
            r.error(u.span(), "effective_until must be after effective_from");
        }
        let (effect, level) = rule_level(&mut r, effect, level);
        let max_waiver_days = match (&max_waiver_days, level) {
            (None, _) => DEFAULT_MAX_WAIVER_DAYS,
            (Some(v), Some(super::Level::Soft)) => match v.get_ref() {
                toml::de::DeValue::Integer(i) => match u32::from_str_radix(i.as_str(), i.radix()) {
                    Ok(n) if (1..=MAX_WAIVER_DAYS).contains(&n) => n,
                    _ => {
                        r.error(v.span(), format!("max_waiver_days must be between 1 and {MAX_WAIVER_DAYS}"));
                        DEFAULT_MAX_WAIVER_DAYS
                    }
                },
                other => {
                    let found = super::toml_read::type_of(other);
                    r.error(v.span(), format!("`max_waiver_days` must be an integer, found {found}"));
                    DEFAULT_MAX_WAIVER_DAYS
                }
            },
            (Some(v), _) => {
                r.error(v.span(), "max_waiver_days applies only to `level = \"soft\"` rules (only they can be waived)");
                DEFAULT_MAX_WAIVER_DAYS
            }
        };
        if let Some(u) = &url {
            let s = u.get_ref();
            if !(s.starts_with("https://") || s.starts_with("http://")) {
                r.error(u.span(), "url must start with https:// or http://");
            }
        }
        let parsed = when.as_ref().and_then(|w| {
            let offset = string_body_offset(text, w.span(), w.get_ref());
            match expr::parse(w.get_ref()) {
                Ok(e) => Some((e, offset)),
                Err(e) => {
                    let at = offset.map_or(w.span(), |o| o + e.span.start..o + e.span.end);
                    r.error(at, format!("invalid condition: {}", e.message));
                    None
                }
            }
        });
        if let (
            Some(id),
            Some(effect),
            Some(level),
            Some(when),
            Some((expr, when_offset)),
            Some(message),
            Some(citation),
        ) = (id, effect, level, when, parsed, message, citation)
        {
            rules.push(RuleDoc {
                id,
                effect,
                level,
                max_waiver_days,
                when_span: when.span(),
                when: when.into_inner(),
                expr,
                when_offset,
                message: message.into_inner(),
                citation: citation.into_inner(),
                url: url.map(Spanned::into_inner).unwrap_or_default(),
                effective_from: from,
                effective_until: until,
                reviewed,
                span,
            });
        }
    }

    let mut seen = std::collections::HashMap::new();
    for rule in &rules {
        if let Some(first) = seen.insert(rule.id.get_ref().clone(), rule.id.span()) {
            let line = text[..first.start].matches('\n').count() + 1;
            r.error(
                rule.id.span(),
                format!("duplicate rule id `{}` (first defined on line {line})", rule.id.get_ref()),
            );
        }
    }

    match meta {
        Some((id, jurisdiction, name, version, default)) if r.diags.is_empty() => Ok(PolicyDoc {
            file: file.to_string(),
            text: text.to_string(),
            id,
            jurisdiction,
            name,
            version,
            default,
            data,
            rules,
        }),
        _ => {
            if r.diags.is_empty() {
                r.error(root_span, "invalid [policy] table");
            }
            Err(r.diags)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[policy]
id = "t"
jurisdiction = "XX"
name = "Test"
version = "1"
default = "allow"

[[rule]]
id = "t.one"
effect = "deny"
when = 'serves_retail'
message = "m"
citation = "c"
"#;

    #[test]
    fn reads_a_good_policy() {
        let doc = parse("t.toml", GOOD).unwrap();
        assert_eq!(doc.rules.len(), 1);
        assert_eq!(doc.rules[0].id.get_ref(), "t.one");
    }

    #[test]
    fn reports_all_errors_with_positions() {
        let bad =
            GOOD.replace("effect = \"deny\"", "efect = \"deny\"").replace("default = \"allow\"", "default = \"maybe\"");
        let errs = parse("t.toml", &bad).unwrap_err();
        let text: Vec<String> = errs.iter().map(|d| d.to_string()).collect();
        let all = text.join("\n");
        assert!(all.contains("t.toml:7:11: error: default must be `allow` or `deny`"), "{all}");
        assert!(all.contains("unknown key `efect` in [[rule]]") && all.contains("did you mean `effect`?"), "{all}");
        assert!(all.contains("missing key `effect`"), "{all}");
    }

    #[test]
    fn condition_errors_point_inside_the_string() {
        let bad = GOOD.replace("when = 'serves_retail'", "when = 'serves_retail = true'");
        let errs = parse("t.toml", &bad).unwrap_err();
        assert_eq!((errs[0].line, errs[0].column), (12, 23), "{}", errs[0]);
    }

    #[test]
    fn rejects_duplicate_rule_ids() {
        let dup = format!(
            "{GOOD}\n[[rule]]\nid = \"t.one\"\neffect = \"warn\"\nwhen = 'true'\nmessage = \"m\"\ncitation = \"c\"\n"
        );
        let errs = parse("t.toml", &dup).unwrap_err();
        assert!(errs[0].message.contains("duplicate rule id `t.one` (first defined on line 10)"), "{}", errs[0]);
    }
}
