//! Data files: time-varying lists kept beside the policies (sanctioned addresses,
//! delisted assets, adequacy lists), each entry in force between two dates.
//!
//! ```toml
//! description = "OFAC SDN list: digital currency addresses"
//! source = "https://sanctionssearch.ofac.treas.gov/"
//! reviewed = 2026-12-02          # the day a person last checked it against its source
//! normalize = "lowercase"        # or "uppercase", "none"
//!
//! [[entry]]
//! value = "0x8589427373d6d84e98730d7795d8f6f8731fda16"
//! listed = 2022-08-08            # optional, in force from this day
//! delisted = 2025-03-21          # optional, out of force from this day
//! note = "Tornado Cash"
//! ```

use std::collections::HashMap;

use super::source::Reviewed;
use super::toml_read::Reader;
use crate::diag::Diagnostic;
use crate::schema::Case;
use crate::time::Day;

/// Data files larger than this are refused at load (by the loader before reading, and
/// here).
pub const MAX_FILE_BYTES: usize = 16 << 20;

/// A compiled data set: value -> the periods it is listed.
#[derive(Debug, Default)]
pub struct DataSet {
    pub name: String,
    pub case: Option<Case>,
    /// The file as named in diagnostics.
    pub file: String,
    /// Where the list comes from (its `source`), for `silkgate check`.
    pub source: Option<String>,
    /// The day a person last checked the file against its source.
    pub reviewed: Option<Reviewed>,
    entries: HashMap<Box<str>, Vec<(Day, Day)>>,
}

impl DataSet {
    /// True when `value` is listed on `day`. No allocation.
    pub fn contains(&self, value: &str, day: Day) -> bool {
        self.entries.get(value).is_some_and(|periods| periods.iter().any(|&(from, until)| from <= day && day < until))
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// Reads a data file. `case` is how the request side normalises the values compared
/// with this set; when the file says nothing, values are normalised the same way.
pub fn parse(name: &str, file: &str, text: &str) -> Result<DataSet, Vec<Diagnostic>> {
    let mut r = Reader::new(file, text);
    if text.len() > MAX_FILE_BYTES {
        return Err(vec![Diagnostic::file(file, format!("data file larger than {MAX_FILE_BYTES} bytes"))]);
    }
    let Some(root) = r.parse() else {
        return Err(r.diags);
    };
    let span = root.span();
    let root = root.get_ref();
    r.check_keys(root, &["description", "source", "reviewed", "normalize", "entry"], "the data file");
    r.string(root, span.clone(), "description", "the data file", false);
    let source = r.string(root, span.clone(), "source", "the data file", false).map(|s| s.into_inner());
    let reviewed = r.date(root, "reviewed").map(|d| Reviewed::at(file, text, &d));
    let case = match r.string(root, span, "normalize", "the data file", false) {
        None => None,
        Some(n) => match n.get_ref().as_str() {
            "none" => Some(Case::AsIs),
            "lowercase" => Some(Case::Lower),
            "uppercase" => Some(Case::Upper),
            other => {
                r.error(n.span(), format!("normalize must be `none`, `lowercase` or `uppercase`, found `{other}`"));
                None
            }
        },
    };
    let mut entries: HashMap<Box<str>, Vec<(Day, Day)>> = HashMap::new();
    for v in r.tables(root, "entry") {
        let Some(t) = r.table(v, "entry") else {
            continue;
        };
        r.check_keys(t, &["value", "listed", "delisted", "note"], "[[entry]]");
        r.string(t, v.span(), "note", "[[entry]]", false);
        let from = r.date(t, "listed");
        let until = r.date(t, "delisted");
        let Some(value) = r.string(t, v.span(), "value", "[[entry]]", true) else {
            continue;
        };
        if let (Some(f), Some(u)) = (&from, &until)
            && f.get_ref() >= u.get_ref()
        {
            r.error(u.span(), "delisted must be after listed");
        }
        let mut s = value.get_ref().trim().to_string();
        match case {
            Some(Case::Lower) => s.make_ascii_lowercase(),
            Some(Case::Upper) => s.make_ascii_uppercase(),
            _ => {}
        }
        let period = (from.map_or(Day::MIN, |d| *d.get_ref()), until.map_or(Day::MAX, |d| *d.get_ref()));
        entries.entry(s.into_boxed_str()).or_default().push(period);
    }
    if r.diags.is_empty() {
        Ok(DataSet { name: name.to_string(), case, file: file.to_string(), source, reviewed, entries })
    } else {
        Err(r.diags)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn honours_listing_dates_and_case() {
        let text = r#"
normalize = "lowercase"
[[entry]]
value = "0xABC"
listed = 2022-08-08
delisted = 2025-03-21
[[entry]]
value = "0xdef"
"#;
        let set = parse("s", "s.toml", text).unwrap();
        assert!(set.contains("0xabc", Day::from_ymd(2024, 1, 1)));
        assert!(!set.contains("0xabc", Day::from_ymd(2025, 3, 21)));
        assert!(!set.contains("0xabc", Day::from_ymd(2022, 8, 7)));
        assert!(set.contains("0xdef", Day::from_ymd(1999, 1, 1)));
    }

    #[test]
    fn reports_bad_entries() {
        let errs = parse("s", "s.toml", "[[entry]]\nvalu = 1\n").unwrap_err();
        assert!(errs.iter().any(|d| d.message.contains("unknown key `valu`")));
        assert!(errs.iter().any(|d| d.message.contains("missing key `value`")));
    }
}
