//! The condition language: text of a rule's `when` to a syntax tree with byte spans.
//!
//! ```text
//! expr   := and ("or" and)*
//! and    := unary ("and" unary)*
//! unary  := "not" unary | atom
//! atom   := "(" expr ")" | "true" | "false" | "present" "(" PATH ")"
//!         | ("any" | "all" | "none") PATH (test | "where" "(" expr ")")
//!         | PATH [test]
//! test   := ("==" | "!=" | "<" | "<=" | ">" | ">=") literal
//!         | ["not"] "in" set
//! set    := "[" [literal ("," literal)* [","]] "]" | "data." NAME
//! literal:= "string" | 'string' | integer | true | false
//! ```
//! Spans are byte offsets into the condition text; the compiler maps them into the file.

use std::ops::Range;

pub type Span = Range<usize>;

#[derive(Clone, Debug, PartialEq)]
pub struct Expr {
    pub kind: ExprKind,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub enum ExprKind {
    Const(bool),
    And(Vec<Expr>),
    Or(Vec<Expr>),
    Not(Box<Expr>),
    Present(Path),
    /// A path alone (a bool attribute that must be true), or a path with a test.
    Test(Path, Option<Test>),
    Quant(Quant, Path, QuantBody),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Quant {
    Any,
    All,
    None,
}

#[derive(Clone, Debug, PartialEq)]
pub enum QuantBody {
    Test(Test),
    Where(Box<Expr>),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Path {
    pub text: String,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Test {
    Cmp(CmpOp, Literal),
    In { negated: bool, set: SetExpr },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl CmpOp {
    pub fn as_str(self) -> &'static str {
        match self {
            CmpOp::Eq => "==",
            CmpOp::Ne => "!=",
            CmpOp::Lt => "<",
            CmpOp::Le => "<=",
            CmpOp::Gt => ">",
            CmpOp::Ge => ">=",
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Literal {
    pub value: LitValue,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub enum LitValue {
    Str(String),
    Int(i64),
    Bool(bool),
}

#[derive(Clone, Debug, PartialEq)]
pub enum SetExpr {
    List(Vec<Literal>, Span),
    Data(String, Span),
}

/// A syntax error at a byte span of the condition text.
#[derive(Clone, Debug, PartialEq)]
pub struct SyntaxError {
    pub span: Span,
    pub message: String,
}

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Ident(String),
    Str(String),
    Int(i64),
    Op(CmpOp),
    LParen,
    RParen,
    LBracket,
    RBracket,
    Comma,
    End,
}

fn describe(t: &Tok) -> String {
    match t {
        Tok::Ident(s) => format!("`{s}`"),
        Tok::Str(s) => format!("string {s:?}"),
        Tok::Int(n) => format!("integer `{n}`"),
        Tok::Op(op) => format!("`{}`", op.as_str()),
        Tok::LParen => "`(`".into(),
        Tok::RParen => "`)`".into(),
        Tok::LBracket => "`[`".into(),
        Tok::RBracket => "`]`".into(),
        Tok::Comma => "`,`".into(),
        Tok::End => "end of condition".into(),
    }
}

const KEYWORDS: &[&str] = &["and", "or", "not", "in", "any", "all", "none", "where", "present", "true", "false"];

fn lex(src: &str) -> Result<Vec<(Tok, Span)>, SyntaxError> {
    let bytes = src.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        let start = i;
        if c.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        if c == b'#' {
            // A comment runs to the end of the line, so multi-line conditions can explain themselves.
            while i < bytes.len() && bytes[i] != b'\n' {
                i += 1;
            }
            continue;
        }
        let tok = match c {
            b'(' => Tok::LParen,
            b')' => Tok::RParen,
            b'[' => Tok::LBracket,
            b']' => Tok::RBracket,
            b',' => Tok::Comma,
            b'=' | b'!' | b'<' | b'>' => {
                let two = bytes.get(i + 1) == Some(&b'=');
                let op = match (c, two) {
                    (b'=', true) => CmpOp::Eq,
                    (b'!', true) => CmpOp::Ne,
                    (b'<', true) => CmpOp::Le,
                    (b'>', true) => CmpOp::Ge,
                    (b'<', false) => CmpOp::Lt,
                    (b'>', false) => CmpOp::Gt,
                    _ => {
                        let hint = if c == b'=' { "; use `==` to compare" } else { "; use `not` to negate" };
                        return Err(SyntaxError {
                            span: i..i + 1,
                            message: format!("unexpected `{}`{hint}", c as char),
                        });
                    }
                };
                i += if two { 1 } else { 0 };
                Tok::Op(op)
            }
            b'"' | b'\'' => {
                let quote = c;
                let mut s = String::new();
                i += 1;
                loop {
                    match bytes.get(i) {
                        None | Some(b'\n') => {
                            return Err(SyntaxError { span: start..i, message: "unterminated string".into() });
                        }
                        Some(&b) if b == quote => break,
                        Some(b'\\') if quote == b'"' => {
                            let esc = bytes.get(i + 1).copied();
                            match esc {
                                Some(b'"') => s.push('"'),
                                Some(b'\\') => s.push('\\'),
                                _ => {
                                    return Err(SyntaxError {
                                        span: i..i + 2,
                                        message: "only `\\\"` and `\\\\` escapes are allowed in strings".into(),
                                    });
                                }
                            }
                            i += 2;
                            continue;
                        }
                        Some(_) => {
                            let ch = src[i..].chars().next().unwrap_or('\u{fffd}');
                            s.push(ch);
                            i += ch.len_utf8();
                            continue;
                        }
                    }
                }
                Tok::Str(s)
            }
            b'0'..=b'9' | b'-' => {
                i += 1;
                while i < bytes.len() && (bytes[i].is_ascii_digit() || bytes[i] == b'_') {
                    i += 1;
                }
                let text: String = src[start..i].chars().filter(|&c| c != '_').collect();
                let n = text.parse::<i64>().map_err(|_| SyntaxError {
                    span: start..i,
                    message: format!("`{}` is not an integer", &src[start..i]),
                })?;
                out.push((Tok::Int(n), start..i));
                continue;
            }
            c if c.is_ascii_alphabetic() || c == b'_' => {
                while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || matches!(bytes[i], b'_' | b'.' | b'-')) {
                    i += 1;
                }
                out.push((Tok::Ident(src[start..i].to_string()), start..i));
                continue;
            }
            _ => {
                let ch = src[i..].chars().next().unwrap_or('?');
                return Err(SyntaxError {
                    span: i..i + ch.len_utf8(),
                    message: format!("unexpected character `{ch}`"),
                });
            }
        };
        i += 1;
        out.push((tok, start..i));
    }
    out.push((Tok::End, src.len()..src.len()));
    Ok(out)
}

struct Parser {
    toks: Vec<(Tok, Span)>,
    pos: usize,
}

/// Parses a condition.
pub fn parse(src: &str) -> Result<Expr, SyntaxError> {
    if src.len() > MAX_CONDITION_BYTES {
        return Err(SyntaxError {
            span: 0..0,
            message: format!("condition is {} bytes long; at most {MAX_CONDITION_BYTES} are allowed", src.len()),
        });
    }
    let mut p = Parser { toks: lex(src)?, pos: 0 };
    if p.peek() == &Tok::End {
        return Err(SyntaxError { span: 0..src.len(), message: "empty condition".into() });
    }
    let e = p.expr(0)?;
    match p.peek() {
        Tok::End => Ok(e),
        t => Err(p.error(format!("expected `and`, `or` or end of condition, found {}", describe(t)))),
    }
}

/// Nesting levels a condition may have: each `not`, `(` and `where (` opens one. Deeper
/// conditions are refused here, in the parser, with the position of the token that went
/// one level too deep. This is the one bound on every recursion over a condition: the
/// parser's, the compiler's, the evaluator's and the explainer's, and dropping the trees.
/// A level adds at most three nodes to a tree (`or`, `and`, then `not` or an atom), so
/// no tree is deeper than `3 * MAX_DEPTH + 3` and each of those recursions stays shallow
/// (a test runs them at this depth on a 256 KiB stack).
pub const MAX_DEPTH: usize = 32;

/// Longest condition text, in bytes; longer ones are refused before they are lexed.
pub const MAX_CONDITION_BYTES: usize = 8 << 10;

impl Parser {
    fn peek(&self) -> &Tok {
        &self.toks[self.pos].0
    }

    fn span(&self) -> Span {
        self.toks[self.pos].1.clone()
    }

    fn bump(&mut self) -> (Tok, Span) {
        let t = self.toks[self.pos].clone();
        if self.pos + 1 < self.toks.len() {
            self.pos += 1;
        }
        t
    }

    fn error(&self, message: String) -> SyntaxError {
        SyntaxError { span: self.span(), message }
    }

    fn is_kw(&self, kw: &str) -> bool {
        matches!(self.peek(), Tok::Ident(s) if s == kw)
    }

    fn expect(&mut self, want: Tok) -> Result<Span, SyntaxError> {
        if *self.peek() == want {
            Ok(self.bump().1)
        } else {
            Err(self.error(format!("expected {}, found {}", describe(&want), describe(self.peek()))))
        }
    }

    // `or` and `and` chains and runs of `not` are parsed with loops, not recursion, so a
    // nesting level costs the stack three frames (`expr`, `unary`, `atom`).
    fn expr(&mut self, depth: usize) -> Result<Expr, SyntaxError> {
        let mut ors = Vec::new();
        let mut ands = vec![self.unary(depth)?];
        loop {
            if self.is_kw("and") {
                self.bump();
                ands.push(self.unary(depth)?);
                continue;
            }
            ors.push(Self::join(std::mem::take(&mut ands), ExprKind::And));
            if !self.is_kw("or") {
                return Ok(Self::join(ors, ExprKind::Or));
            }
            self.bump();
            ands.push(self.unary(depth)?);
        }
    }

    /// One item stays itself; more become an `and` or an `or` spanning them all.
    fn join(mut items: Vec<Expr>, make: fn(Vec<Expr>) -> ExprKind) -> Expr {
        if items.len() == 1
            && let Some(only) = items.pop()
        {
            return only;
        }
        let span = items.first().map_or(0, |e| e.span.start)..items.last().map_or(0, |e| e.span.end);
        Expr { kind: make(items), span }
    }

    /// The depth inside a `not`, `(` or `where (` at `span`, or the error when that is
    /// one level too deep. Every recursive descent goes through here.
    fn nested(depth: usize, span: &Span) -> Result<usize, SyntaxError> {
        if depth >= MAX_DEPTH {
            return Err(SyntaxError {
                span: span.clone(),
                message: format!(
                    "condition nested deeper than {MAX_DEPTH} levels (each `not`, `(` and `where` is a level)"
                ),
            });
        }
        Ok(depth + 1)
    }

    fn unary(&mut self, mut depth: usize) -> Result<Expr, SyntaxError> {
        let mut nots = Vec::new();
        while self.is_kw("not") {
            depth = Self::nested(depth, &self.span())?;
            nots.push(self.bump().1.start);
        }
        let mut e = self.atom(depth)?;
        while let Some(start) = nots.pop() {
            let end = e.span.end;
            e = Expr { kind: ExprKind::Not(Box::new(e)), span: start..end };
        }
        Ok(e)
    }

    // The recursive paths (`(`, `where (`) are kept apart from the rest of the atom so
    // that each nesting level costs the stack only a few small frames, even unoptimised.
    fn atom(&mut self, depth: usize) -> Result<Expr, SyntaxError> {
        if *self.peek() == Tok::LParen {
            let start = self.span();
            let depth = Self::nested(depth, &start)?;
            self.bump();
            let inner = self.expr(depth)?;
            let end = self.expect(Tok::RParen)?.end;
            return Ok(Expr { kind: inner.kind, span: start.start..end });
        }
        if self.is_kw("any") || self.is_kw("all") || self.is_kw("none") {
            return self.quant(depth);
        }
        self.leaf()
    }

    fn quant(&mut self, depth: usize) -> Result<Expr, SyntaxError> {
        let (tok, span) = self.bump();
        let q = match &tok {
            Tok::Ident(w) if w == "any" => Quant::Any,
            Tok::Ident(w) if w == "all" => Quant::All,
            _ => Quant::None,
        };
        let path = self.path()?;
        if !self.is_kw("where") {
            return self.quant_test(q, &tok, span, path);
        }
        let depth = Self::nested(depth, &self.span())?;
        self.bump();
        self.expect(Tok::LParen)?;
        let inner = self.expr(depth)?;
        let end = self.expect(Tok::RParen)?.end;
        Ok(Expr { kind: ExprKind::Quant(q, path, QuantBody::Where(Box::new(inner))), span: span.start..end })
    }

    fn quant_test(&mut self, q: Quant, tok: &Tok, span: Span, path: Path) -> Result<Expr, SyntaxError> {
        let Some(test) = self.test()? else {
            return Err(self.error(format!(
                "expected a comparison, `in` or `where` after `{} {}`, found {}",
                match tok {
                    Tok::Ident(w) => w.as_str(),
                    _ => "",
                },
                path.text,
                describe(self.peek())
            )));
        };
        let end = self.toks[self.pos.saturating_sub(1)].1.end;
        Ok(Expr { kind: ExprKind::Quant(q, path, QuantBody::Test(test)), span: span.start..end })
    }

    /// An atom that holds no condition inside it.
    fn leaf(&mut self) -> Result<Expr, SyntaxError> {
        let (tok, span) = self.bump();
        match tok {
            Tok::Ident(w) if w == "true" || w == "false" => Ok(Expr { kind: ExprKind::Const(w == "true"), span }),
            Tok::Ident(w) if w == "present" => {
                self.expect(Tok::LParen)?;
                let path = self.path()?;
                let end = self.expect(Tok::RParen)?.end;
                Ok(Expr { kind: ExprKind::Present(path), span: span.start..end })
            }
            Tok::Ident(w) if !KEYWORDS.contains(&w.as_str()) => {
                let path = Path { text: w, span: span.clone() };
                let test = self.test()?;
                let end = self.toks[self.pos.saturating_sub(1)].1.end;
                Ok(Expr { kind: ExprKind::Test(path, test), span: span.start..end })
            }
            t => {
                self.pos -= usize::from(self.pos > 0 && t != Tok::End);
                Err(SyntaxError { span, message: format!("expected a condition, found {}", describe(&t)) })
            }
        }
    }

    fn path(&mut self) -> Result<Path, SyntaxError> {
        match self.peek().clone() {
            Tok::Ident(w) if !KEYWORDS.contains(&w.as_str()) => {
                let span = self.bump().1;
                Ok(Path { text: w, span })
            }
            t => Err(self.error(format!("expected an attribute path, found {}", describe(&t)))),
        }
    }

    fn test(&mut self) -> Result<Option<Test>, SyntaxError> {
        match self.peek().clone() {
            Tok::Op(op) => {
                self.bump();
                Ok(Some(Test::Cmp(op, self.literal()?)))
            }
            Tok::Ident(w) if w == "in" => {
                self.bump();
                Ok(Some(Test::In { negated: false, set: self.set()? }))
            }
            Tok::Ident(w) if w == "not" && matches!(&self.toks[self.pos + 1].0, Tok::Ident(n) if n == "in") => {
                self.bump();
                self.bump();
                Ok(Some(Test::In { negated: true, set: self.set()? }))
            }
            _ => Ok(None),
        }
    }

    fn literal(&mut self) -> Result<Literal, SyntaxError> {
        let (tok, span) = self.bump();
        let value = match tok {
            Tok::Str(s) => LitValue::Str(s),
            Tok::Int(n) => LitValue::Int(n),
            Tok::Ident(w) if w == "true" || w == "false" => LitValue::Bool(w == "true"),
            Tok::Ident(w) => {
                return Err(SyntaxError { span, message: format!("expected a value, found `{w}`") }.with_quote_hint(&w));
            }
            t => {
                return Err(SyntaxError { span, message: format!("expected a value, found {}", describe(&t)) });
            }
        };
        Ok(Literal { value, span })
    }

    fn set(&mut self) -> Result<SetExpr, SyntaxError> {
        let (tok, span) = self.bump();
        match tok {
            Tok::LBracket => {
                let mut items = Vec::new();
                loop {
                    if *self.peek() == Tok::RBracket {
                        break;
                    }
                    items.push(self.literal()?);
                    if *self.peek() == Tok::Comma {
                        self.bump();
                    } else {
                        break;
                    }
                }
                let end = self.expect(Tok::RBracket)?.end;
                Ok(SetExpr::List(items, span.start..end))
            }
            Tok::Ident(w) if w.starts_with("data.") && w.len() > 5 => Ok(SetExpr::Data(w[5..].to_string(), span)),
            t => Err(SyntaxError {
                span,
                message: format!("expected `[...]` or `data.NAME` after `in`, found {}", describe(&t)),
            }),
        }
    }
}

impl SyntaxError {
    fn with_quote_hint(mut self, word: &str) -> Self {
        self.message.push_str(&format!(" (strings are quoted: \"{word}\")"));
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(src: &str) -> Expr {
        parse(src).unwrap_or_else(|e| panic!("{src}: {e:?}"))
    }

    #[test]
    fn parses_precedence_and_spans() {
        let e = ok(r#"a == "x" or b and not c"#);
        let ExprKind::Or(items) = &e.kind else { panic!("{e:?}") };
        assert_eq!(items.len(), 2);
        assert!(matches!(items[1].kind, ExprKind::And(_)));
        assert_eq!(items[0].span, 0..8);
        assert_eq!(e.span, 0..23);
    }

    #[test]
    fn parses_quantifiers_sets_and_data() {
        ok(r#"any services in ["exchange", "custody",]"#);
        ok("none crypto.signature == 'sm2'");
        ok(r#"any operator.licences where (regulator == "MAS" and kind == "dpt")"#);
        ok("any addresses in data.ofac_sdn and not present(operator)");
        ok("node_count >= 4 and x not in []");
        ok("labels.team-a == \"x\" # trailing comment");
    }

    #[test]
    fn reports_errors_at_the_right_place() {
        let e = parse("a = 1").unwrap_err();
        assert_eq!(e.span, 2..3);
        assert!(e.message.contains("use `==`"));
        let e = parse("a == mining").unwrap_err();
        assert_eq!(e.span, 5..11);
        assert!(e.message.contains("\"mining\""), "{}", e.message);
        let e = parse("(a and b").unwrap_err();
        assert!(e.message.contains("expected `)`"), "{}", e.message);
        let e = parse("a b").unwrap_err();
        assert_eq!(e.span, 2..3);
        assert!(parse("").is_err());
        assert!(parse("any x").is_err());
        assert!(parse(&"not ".repeat(100)).is_err());
        assert!(parse(&format!("{}a{}", "(".repeat(100), ")".repeat(100))).is_err());
    }
}
