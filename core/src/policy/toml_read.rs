//! Reads a spanned TOML table field by field, collecting every problem at once.
//!
//! serde's derive stops at the first error; operators fixing a policy want all of them,
//! each at its `file:line:column` with a "did you mean". So files are parsed to a spanned
//! tree (`toml::de::DeTable`) and read here with explicit field lists.

use std::ops::Range;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use crate::diag::{Diagnostic, suggest};
use crate::time::Day;

pub struct Reader<'a> {
    pub file: &'a str,
    pub src: &'a str,
    pub diags: Vec<Diagnostic>,
}

pub type Value<'i> = Spanned<DeValue<'i>>;

impl<'a> Reader<'a> {
    pub fn new(file: &'a str, src: &'a str) -> Self {
        Reader { file, src, diags: Vec::new() }
    }

    /// Parses the whole file, or records the syntax error.
    pub fn parse(&mut self) -> Option<Spanned<DeTable<'a>>> {
        match DeTable::parse(self.src) {
            Ok(t) => Some(t),
            Err(e) => {
                let span = e.span().unwrap_or(0..0);
                let msg = e.message().trim().replace('\n', " ");
                self.error(span, format!("invalid TOML: {msg}"));
                None
            }
        }
    }

    pub fn error(&mut self, span: Range<usize>, message: impl Into<String>) {
        self.diags.push(Diagnostic::at(self.file, self.src, span, message));
    }

    pub fn push(&mut self, d: Diagnostic) {
        self.diags.push(d);
    }

    pub fn diag(&self, span: Range<usize>, message: impl Into<String>) -> Diagnostic {
        Diagnostic::at(self.file, self.src, span, message)
    }

    /// Reports every key of `table` not in `allowed`, suggesting the closest allowed key.
    pub fn check_keys(&mut self, table: &DeTable<'_>, allowed: &[&str], what: &str) {
        for key in table.keys() {
            let name: &str = key.get_ref();
            if !allowed.contains(&name) {
                let mut d = self.diag(key.span(), format!("unknown key `{name}` in {what}"));
                d = match suggest(name, allowed.iter().copied()) {
                    Some(s) => d.with_help(format!("did you mean `{s}`?")),
                    None => d.with_help(format!("expected one of: {}", allowed.join(", "))),
                };
                self.push(d);
            }
        }
    }

    fn missing(&mut self, span: Range<usize>, key: &str, what: &str) {
        self.error(span, format!("missing key `{key}` in {what}"));
    }

    pub fn get<'t, 'i>(table: &'t DeTable<'i>, key: &str) -> Option<&'t Value<'i>> {
        table.iter().find(|(k, _)| k.get_ref() == key).map(|(_, v)| v)
    }

    /// A string field; `table_span` locates a "missing key" error when it is required.
    pub fn string(
        &mut self,
        table: &DeTable<'_>,
        table_span: Range<usize>,
        key: &str,
        what: &str,
        required: bool,
    ) -> Option<Spanned<String>> {
        match Self::get(table, key) {
            None => {
                if required {
                    self.missing(table_span, key, what);
                }
                None
            }
            Some(v) => match v.get_ref() {
                DeValue::String(s) if required && s.trim().is_empty() => {
                    self.error(v.span(), format!("`{key}` must not be empty"));
                    None
                }
                DeValue::String(s) => Some(Spanned::new(v.span(), s.to_string())),
                other => {
                    self.error(v.span(), format!("`{key}` must be a string, found {}", type_of(other)));
                    None
                }
            },
        }
    }

    /// An optional TOML local date (`2025-03-21`), as a day number.
    pub fn date(&mut self, table: &DeTable<'_>, key: &str) -> Option<Spanned<Day>> {
        let v = Self::get(table, key)?;
        match v.get_ref() {
            DeValue::Datetime(dt) if dt.time.is_none() && dt.offset.is_none() => {
                let d = dt.date?;
                Some(Spanned::new(v.span(), Day::from_ymd(i32::from(d.year), u32::from(d.month), u32::from(d.day))))
            }
            other => {
                self.error(v.span(), format!("`{key}` must be a date like 2025-03-21, found {}", type_of(other)));
                None
            }
        }
    }

    pub fn table<'t, 'i>(&mut self, v: &'t Value<'i>, key: &str) -> Option<&'t DeTable<'i>> {
        match v.get_ref() {
            DeValue::Table(t) => Some(t),
            other => {
                self.error(v.span(), format!("`{key}` must be a table, found {}", type_of(other)));
                None
            }
        }
    }

    /// An array of tables (`[[rule]]`), or nothing when the key is absent.
    pub fn tables<'t, 'i>(&mut self, table: &'t DeTable<'i>, key: &str) -> Vec<&'t Value<'i>> {
        let Some(v) = Self::get(table, key) else {
            return Vec::new();
        };
        match v.get_ref() {
            DeValue::Array(items) => items
                .iter()
                .filter(|item| {
                    let ok = matches!(item.get_ref(), DeValue::Table(_));
                    if !ok {
                        self.error(item.span(), format!("`{key}` entries must be tables ([[{key}]])"));
                    }
                    ok
                })
                .collect(),
            other => {
                self.error(
                    v.span(),
                    format!("`{key}` must be an array of tables ([[{key}]]), found {}", type_of(other)),
                );
                Vec::new()
            }
        }
    }
}

pub fn type_of(v: &DeValue<'_>) -> &'static str {
    match v {
        DeValue::String(_) => "a string",
        DeValue::Integer(_) => "an integer",
        DeValue::Float(_) => "a float",
        DeValue::Boolean(_) => "a boolean",
        DeValue::Datetime(_) => "a datetime",
        DeValue::Array(_) => "an array",
        DeValue::Table(_) => "a table",
    }
}

/// Where the characters of a TOML string value start in the file, when the file holds
/// them verbatim (no escapes), so spans inside the string map to exact columns.
pub fn string_body_offset(src: &str, span: Range<usize>, decoded: &str) -> Option<usize> {
    let raw = src.get(span.clone())?;
    for delim in ["'''", "\"\"\"", "'", "\""] {
        if raw.len() >= 2 * delim.len() && raw.starts_with(delim) && raw.ends_with(delim) {
            let mut start = span.start + delim.len();
            let mut inner = &raw[delim.len()..raw.len() - delim.len()];
            if delim.len() == 3 {
                // TOML trims a newline right after the opening delimiter.
                if let Some(rest) = inner.strip_prefix("\r\n") {
                    inner = rest;
                    start += 2;
                } else if let Some(rest) = inner.strip_prefix('\n') {
                    inner = rest;
                    start += 1;
                }
            }
            return (inner == decoded).then_some(start);
        }
    }
    None
}
