//! Diagnostics that point into a source file: `file:line:column`, a caret, a suggestion.

use std::fmt;
use std::ops::Range;

/// One problem found in a source file (a policy, a data file or a request file).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
    pub severity: Severity,
    pub message: String,
    /// A "did you mean" or other hint, shown after the caret.
    pub help: Option<String>,
    /// The source line the diagnostic points into, and the caret length.
    snippet: Option<(String, usize)>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Severity {
    Error,
    Warning,
}

impl Diagnostic {
    /// A diagnostic at byte range `span` of `source`.
    pub fn at(file: &str, source: &str, span: Range<usize>, message: impl Into<String>) -> Self {
        // A span from a lexer may end (or start) inside a multi-byte character: widen it
        // to whole characters rather than slice the text there.
        let mut start = span.start.min(source.len());
        while !source.is_char_boundary(start) {
            start -= 1;
        }
        let line_start = source[..start].rfind('\n').map_or(0, |i| i + 1);
        let line_end = source[start..].find('\n').map_or(source.len(), |i| start + i);
        let line = source[..start].matches('\n').count() + 1;
        let column = source[line_start..start].chars().count() + 1;
        let text = source[line_start..line_end].trim_end_matches('\r').to_string();
        let mut end = span.end.clamp(start, line_end);
        while !source.is_char_boundary(end) {
            end += 1;
        }
        let width = source[start..end].chars().count().max(1);
        Diagnostic {
            file: file.to_string(),
            line,
            column,
            severity: Severity::Error,
            message: message.into(),
            help: None,
            snippet: Some((text, width)),
        }
    }

    /// A diagnostic about a whole file, with no position inside it.
    pub fn file(file: &str, message: impl Into<String>) -> Self {
        Diagnostic {
            file: file.to_string(),
            line: 1,
            column: 1,
            severity: Severity::Error,
            message: message.into(),
            help: None,
            snippet: None,
        }
    }

    pub fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    pub fn warning(mut self) -> Self {
        self.severity = Severity::Warning;
        self
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(f, "{}:{}:{}: {kind}: {}", self.file, self.line, self.column, self.message)?;
        if let Some((text, width)) = &self.snippet {
            let gutter = self.line.to_string().len();
            write!(f, "\n{:gutter$} |\n{} | {}\n{:gutter$} | ", "", self.line, text, "")?;
            // Keep tabs so the caret lines up under the same characters.
            for c in text.chars().take(self.column - 1) {
                f.write_str(if c == '\t' { "\t" } else { " " })?;
            }
            write!(f, "{}", "^".repeat(*width))?;
        }
        if let Some(help) = &self.help {
            write!(f, "\n  = help: {help}")?;
        }
        Ok(())
    }
}

/// A "did you mean" suggestion: the closest candidate by edit distance, if close enough.
pub fn suggest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let mut best: Option<(f64, &str)> = None;
    for c in candidates {
        let score = strsim::jaro_winkler(word, c);
        if score > 0.8 && best.is_none_or(|(s, _)| score > s) {
            best = Some((score, c));
        }
    }
    best.map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn points_at_line_and_column() {
        let src = "a = 1\nbb = 2\n";
        let d = Diagnostic::at("p.toml", src, 6..8, "unknown key `bb`");
        assert_eq!((d.line, d.column), (2, 1));
        let text = d.to_string();
        assert!(text.starts_with("p.toml:2:1: error: unknown key `bb`"), "{text}");
        assert!(text.contains("2 | bb = 2\n  | ^^"), "{text}");
    }

    #[test]
    fn suggests_close_words_only() {
        let words = ["effect", "message", "citation"];
        assert_eq!(suggest("efect", words), Some("effect"));
        assert_eq!(suggest("zzz", words), None);
    }
}
