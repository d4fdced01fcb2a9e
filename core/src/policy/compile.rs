//! Stage two: condition syntax trees to typed, compiled nodes.
//!
//! Every path is resolved against [`crate::schema`] and every literal checked against
//! the attribute's type here, once; enum values become bit masks, so the evaluator
//! only calls accessors and compares numbers.

use std::collections::HashMap;
use std::ops::Range;

use super::expr::{CmpOp, Expr, ExprKind, LitValue, Literal, Path, Quant, QuantBody, SetExpr, Test};
use super::source::RuleDoc;
use crate::diag::{Diagnostic, suggest};
use crate::request::{EnumSet, Licence, Request};
use crate::schema::{self, Case, EnumDef, Getter};

/// A compiled condition with the span of its text inside the rule's `when`.
#[derive(Debug)]
pub struct Node {
    pub(crate) cond: Cond,
    pub(crate) span: Range<u32>,
}

pub(crate) enum Cond {
    Const(bool),
    And(Box<[Node]>),
    Or(Box<[Node]>),
    Not(Box<Node>),
    Bool(fn(&Request) -> bool),
    Int(fn(&Request) -> i64, CmpOp, i64),
    Str(StrGet, StrTest),
    /// Holds when the attribute's number is in the mask.
    Enum(&'static EnumDef, fn(&Request) -> i32, EnumSet),
    /// Quantified over the set's members; the mask holds the members that pass the test.
    EnumSet(&'static EnumDef, fn(&Request) -> EnumSet, Quant, EnumSet),
    StrList(fn(&Request) -> &[String], Quant, StrTest),
    Licences(fn(&Request) -> &[Licence], Quant, Box<Node>),
    Present(Presence),
}

impl std::fmt::Debug for Cond {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Function pointers say nothing useful; the rule's `when` text is the readable form.
        f.write_str("Cond")
    }
}

pub(crate) enum StrGet {
    Req(fn(&Request) -> &str),
    Licence(fn(&Licence) -> &str),
    Label(Box<str>),
}

pub(crate) struct StrTest {
    pub(crate) negated: bool,
    pub(crate) set: StrSet,
}

pub(crate) enum StrSet {
    One(Box<str>),
    List(Box<[Box<str>]>),
    /// Index into the policy's data sets.
    Data(usize),
}

pub(crate) enum Presence {
    Message(fn(&Request) -> bool),
    Str(StrGet),
    Int(fn(&Request) -> i64),
    Enum(fn(&Request) -> i32),
    EnumSet(fn(&Request) -> EnumSet),
    List(fn(&Request) -> &[String]),
    Licences(fn(&Request) -> &[Licence]),
}

/// Data sets visible to a policy: name -> (index, normalisation).
pub(crate) type DataIndex = HashMap<String, (usize, Option<Case>)>;

pub(crate) struct Compiler<'a> {
    pub(crate) file: &'a str,
    pub(crate) text: &'a str,
    pub(crate) data: &'a DataIndex,
    pub(crate) diags: Vec<Diagnostic>,
}

/// What a path resolved to.
enum Resolved {
    Attr(Getter),
    Label(Box<str>),
    LicenceField(Case, fn(&Licence) -> &str),
}

impl Compiler<'_> {
    fn err(&mut self, rule: &RuleDoc, span: Range<usize>, msg: impl Into<String>) -> Option<Node> {
        let d = Diagnostic::at(self.file, self.text, rule.map_span(span), msg);
        self.diags.push(d);
        None
    }

    fn err_help(&mut self, rule: &RuleDoc, span: Range<usize>, msg: impl Into<String>, help: impl Into<String>) {
        let d = Diagnostic::at(self.file, self.text, rule.map_span(span), msg).with_help(help);
        self.diags.push(d);
    }

    pub(crate) fn rule(&mut self, rule: &RuleDoc) -> Option<Node> {
        self.expr(rule, &rule.expr, false)
    }

    fn resolve(&mut self, rule: &RuleDoc, path: &Path, in_licence: bool) -> Option<Resolved> {
        let p = path.text.as_str();
        if in_licence {
            if let Some((_, case, get)) = schema::LICENCE_FIELDS.iter().find(|(n, ..)| *n == p) {
                return Some(Resolved::LicenceField(*case, *get));
            }
            let names: Vec<&str> = schema::LICENCE_FIELDS.iter().map(|(n, ..)| *n).collect();
            let help = match suggest(p, names.iter().copied()) {
                Some(s) => format!("did you mean `{s}`?"),
                None => format!("inside `where`, conditions read the licence's fields: {}", names.join(", ")),
            };
            self.err_help(rule, path.span.clone(), format!("unknown licence field `{p}`"), help);
            return None;
        }
        if let Some(name) = p.strip_prefix("labels.") {
            if name.is_empty() || name.contains('.') {
                self.err(rule, path.span.clone(), format!("`{p}` is not a label name"));
                return None;
            }
            return Some(Resolved::Label(name.into()));
        }
        if let Some(a) = schema::lookup(p) {
            return Some(Resolved::Attr(a.getter));
        }
        let mut candidates: Vec<&str> = schema::ATTRS.iter().map(|a| a.path).collect();
        candidates.push("labels.NAME");
        let help = match suggest(p, candidates.iter().copied()) {
            Some(s) => format!("did you mean `{s}`?"),
            None => "see the README's attribute table for the paths a condition can read".to_string(),
        };
        self.err_help(rule, path.span.clone(), format!("unknown attribute `{p}`"), help);
        None
    }

    fn node(cond: Cond, span: &Range<usize>) -> Option<Node> {
        Some(Node { cond, span: span.start as u32..span.end as u32 })
    }

    fn expr(&mut self, rule: &RuleDoc, e: &Expr, in_licence: bool) -> Option<Node> {
        match &e.kind {
            ExprKind::Const(b) => Self::node(Cond::Const(*b), &e.span),
            ExprKind::And(items) | ExprKind::Or(items) => {
                let nodes: Vec<Option<Node>> = items.iter().map(|i| self.expr(rule, i, in_licence)).collect();
                let nodes: Option<Vec<Node>> = nodes.into_iter().collect();
                let nodes = nodes?.into_boxed_slice();
                let cond = if matches!(e.kind, ExprKind::And(_)) { Cond::And(nodes) } else { Cond::Or(nodes) };
                Self::node(cond, &e.span)
            }
            ExprKind::Not(inner) => {
                let n = self.expr(rule, inner, in_licence)?;
                Self::node(Cond::Not(Box::new(n)), &e.span)
            }
            ExprKind::Present(path) => {
                let presence = match self.resolve(rule, path, in_licence)? {
                    Resolved::Label(k) => Presence::Str(StrGet::Label(k)),
                    Resolved::LicenceField(_, g) => Presence::Str(StrGet::Licence(g)),
                    Resolved::Attr(g) => match g {
                        Getter::Bool(_) => {
                            return self.err(
                                rule,
                                path.span.clone(),
                                format!("`{}` is a bool and always present; test it directly", path.text),
                            );
                        }
                        Getter::Int(g) => Presence::Int(g),
                        Getter::Str(_, g) => Presence::Str(StrGet::Req(g)),
                        Getter::Enum(_, g) => Presence::Enum(g),
                        Getter::EnumSet(_, g) => Presence::EnumSet(g),
                        Getter::StrList(_, g) => Presence::List(g),
                        Getter::Licences(g) => Presence::Licences(g),
                        Getter::Message(g) => Presence::Message(g),
                    },
                };
                Self::node(Cond::Present(presence), &e.span)
            }
            ExprKind::Test(path, test) => self.test(rule, e, path, test.as_ref(), in_licence),
            ExprKind::Quant(q, path, body) => self.quant(rule, e, *q, path, body, in_licence),
        }
    }

    fn test(&mut self, rule: &RuleDoc, e: &Expr, path: &Path, test: Option<&Test>, in_licence: bool) -> Option<Node> {
        let resolved = self.resolve(rule, path, in_licence)?;
        let getter = match resolved {
            Resolved::Label(k) => {
                return self.str_test(rule, e, path, StrGet::Label(k), Case::AsIs, test);
            }
            Resolved::LicenceField(case, g) => {
                return self.str_test(rule, e, path, StrGet::Licence(g), case, test);
            }
            Resolved::Attr(g) => g,
        };
        let p = &path.text;
        match getter {
            Getter::Bool(g) => match test {
                None => Self::node(Cond::Bool(g), &e.span),
                Some(Test::Cmp(op @ (CmpOp::Eq | CmpOp::Ne), Literal { value: LitValue::Bool(b), .. })) => {
                    let base = Node { cond: Cond::Bool(g), span: e.span.start as u32..e.span.end as u32 };
                    if (*op == CmpOp::Eq) == *b { Some(base) } else { Self::node(Cond::Not(Box::new(base)), &e.span) }
                }
                Some(_) => self.err(
                    rule,
                    e.span.clone(),
                    format!("`{p}` is a bool: test it alone, or with `== true` / `== false`"),
                ),
            },
            Getter::Int(g) => match test {
                Some(Test::Cmp(op, Literal { value: LitValue::Int(n), .. })) => {
                    Self::node(Cond::Int(g, *op, *n), &e.span)
                }
                Some(Test::Cmp(_, lit)) => {
                    self.err(rule, lit.span.clone(), format!("`{p}` is an integer; compare it with a number"))
                }
                _ => self.err(
                    rule,
                    e.span.clone(),
                    format!("`{p}` is an integer; compare it with `==`, `!=`, `<`, `<=`, `>` or `>=`"),
                ),
            },
            Getter::Str(case, g) => self.str_test(rule, e, path, StrGet::Req(g), case, test),
            Getter::Enum(def, g) => {
                let Some(test) = test else {
                    return self.err(
                        rule,
                        e.span.clone(),
                        format!("`{p}` is an enum; compare it with `==`, `!=` or `in`"),
                    );
                };
                let mask = self.enum_mask(rule, path, def, test)?;
                Self::node(Cond::Enum(def, g, mask), &e.span)
            }
            Getter::EnumSet(..) | Getter::StrList(..) | Getter::Licences(_) => {
                let example = match test {
                    Some(Test::Cmp(op, lit)) => {
                        format!("any {p} {} {}", op.as_str(), &self.text_of(rule, &lit.span))
                    }
                    Some(Test::In { .. }) | None => format!("any {p} in [...]"),
                };
                self.err_help(
                    rule,
                    e.span.clone(),
                    format!("`{p}` is a {}; say which of its items must pass", getter.type_name()),
                    format!("use `any`, `all` or `none`, e.g. `{example}`"),
                );
                None
            }
            Getter::Message(_) => {
                self.err(rule, e.span.clone(), format!("`{p}` is a message: test `present({p})` or one of its fields"))
            }
        }
    }

    fn text_of(&self, rule: &RuleDoc, span: &Range<usize>) -> String {
        rule.when.get(span.clone()).unwrap_or("...").to_string()
    }

    fn quant(
        &mut self,
        rule: &RuleDoc,
        e: &Expr,
        q: Quant,
        path: &Path,
        body: &QuantBody,
        in_licence: bool,
    ) -> Option<Node> {
        let resolved = self.resolve(rule, path, in_licence)?;
        let p = &path.text;
        let Resolved::Attr(getter) = resolved else {
            return self.err(rule, path.span.clone(), format!("`{p}` is not a list; drop the `any`/`all`/`none`"));
        };
        match (getter, body) {
            (Getter::EnumSet(def, g), QuantBody::Test(test)) => {
                let mask = self.enum_mask(rule, path, def, test)?;
                Self::node(Cond::EnumSet(def, g, q, mask), &e.span)
            }
            (Getter::StrList(case, g), QuantBody::Test(test)) => {
                let t = self.str_set(rule, path, case, test)?;
                Self::node(Cond::StrList(g, q, t), &e.span)
            }
            (Getter::Licences(g), QuantBody::Where(inner)) => {
                let n = self.expr(rule, inner, true)?;
                Self::node(Cond::Licences(g, q, Box::new(n)), &e.span)
            }
            (Getter::Licences(_), QuantBody::Test(_)) => self.err(
                rule,
                e.span.clone(),
                format!(
                    "`{p}` holds licences; test their fields with `where (regulator == \"...\" and kind == \"...\")`"
                ),
            ),
            (_, QuantBody::Where(_)) => self.err(
                rule,
                e.span.clone(),
                format!("`where` applies to lists of licences, and `{p}` is a {}", getter.type_name()),
            ),
            _ => self.err(rule, path.span.clone(), format!("`{p}` is a {}, not a list", getter.type_name())),
        }
    }

    fn str_test(
        &mut self,
        rule: &RuleDoc,
        e: &Expr,
        path: &Path,
        get: StrGet,
        case: Case,
        test: Option<&Test>,
    ) -> Option<Node> {
        let Some(test) = test else {
            return self.err(
                rule,
                e.span.clone(),
                format!("`{}` is a string; compare it with `==`, `!=` or `in`, or test `present(...)`", path.text),
            );
        };
        let t = self.str_set(rule, path, case, test)?;
        Self::node(Cond::Str(get, t), &e.span)
    }

    fn str_literal(&mut self, rule: &RuleDoc, path: &Path, case: Case, lit: &Literal) -> Option<Box<str>> {
        let LitValue::Str(s) = &lit.value else {
            self.err(rule, lit.span.clone(), format!("`{}` holds strings; quote the value", path.text));
            return None;
        };
        let normal = match case {
            Case::AsIs => s.clone(),
            Case::Upper => s.to_ascii_uppercase(),
            Case::Lower => s.to_ascii_lowercase(),
        };
        if &normal != s {
            self.err_help(
                rule,
                lit.span.clone(),
                format!(
                    "`{}` is compared in {} case, so `{s}` can never match",
                    path.text,
                    if case == Case::Upper { "upper" } else { "lower" }
                ),
                format!("write \"{normal}\""),
            );
            return None;
        }
        Some(normal.into_boxed_str())
    }

    fn str_set(&mut self, rule: &RuleDoc, path: &Path, case: Case, test: &Test) -> Option<StrTest> {
        match test {
            Test::Cmp(op @ (CmpOp::Eq | CmpOp::Ne), lit) => {
                let s = self.str_literal(rule, path, case, lit)?;
                Some(StrTest { negated: *op == CmpOp::Ne, set: StrSet::One(s) })
            }
            Test::Cmp(op, lit) => {
                self.err(
                    rule,
                    lit.span.clone(),
                    format!("strings compare with `==`, `!=` or `in`, not `{}`", op.as_str()),
                );
                None
            }
            Test::In { negated, set: SetExpr::List(items, _) } => {
                let mut out = Vec::new();
                for lit in items {
                    out.push(self.str_literal(rule, path, case, lit));
                }
                let out: Option<Vec<Box<str>>> = out.into_iter().collect();
                Some(StrTest { negated: *negated, set: StrSet::List(out?.into_boxed_slice()) })
            }
            Test::In { negated, set: SetExpr::Data(name, span) } => {
                let Some(&(idx, data_case)) = self.data.get(name) else {
                    let names: Vec<&str> = self.data.keys().map(String::as_str).collect();
                    let help = match suggest(name, names.iter().copied()) {
                        Some(s) => format!("did you mean `data.{s}`?"),
                        None => "declare it with a [data.NAME] table naming its file".to_string(),
                    };
                    self.err_help(rule, span.clone(), format!("unknown data set `{name}`"), help);
                    return None;
                };
                if case != Case::AsIs && data_case != Some(case) {
                    let want = if case == Case::Upper { "uppercase" } else { "lowercase" };
                    self.err_help(
                        rule,
                        span.clone(),
                        format!(
                            "`{}` is compared in {want}, but data set `{name}` is not normalised that way",
                            path.text
                        ),
                        format!("add `normalize = \"{want}\"` to its data file"),
                    );
                    return None;
                }
                Some(StrTest { negated: *negated, set: StrSet::Data(idx) })
            }
        }
    }

    fn enum_value(&mut self, rule: &RuleDoc, path: &Path, def: &EnumDef, lit: &Literal) -> Option<i32> {
        let LitValue::Str(s) = &lit.value else {
            self.err(rule, lit.span.clone(), format!("`{}` is an enum; name its value as a string", path.text));
            return None;
        };
        if let Some(n) = def.number(s) {
            return Some(n);
        }
        let names = def.names();
        let help = match suggest(&s.to_ascii_lowercase(), names.iter().map(String::as_str)) {
            Some(x) => format!("did you mean \"{x}\"?"),
            None => format!("expected one of: {}", names.join(", ")),
        };
        self.err_help(rule, lit.span.clone(), format!("`{s}` is not a value of `{}` ({})", path.text, def.name), help);
        None
    }

    /// The mask of enum numbers that pass `test`.
    fn enum_mask(&mut self, rule: &RuleDoc, path: &Path, def: &EnumDef, test: &Test) -> Option<EnumSet> {
        let (negated, values) = match test {
            Test::Cmp(op @ (CmpOp::Eq | CmpOp::Ne), lit) => {
                (*op == CmpOp::Ne, vec![self.enum_value(rule, path, def, lit)])
            }
            Test::Cmp(op, lit) => {
                self.err(
                    rule,
                    lit.span.clone(),
                    format!("enums compare with `==`, `!=` or `in`, not `{}`", op.as_str()),
                );
                return None;
            }
            Test::In { negated, set: SetExpr::List(items, _) } => {
                (*negated, items.iter().map(|l| self.enum_value(rule, path, def, l)).collect())
            }
            Test::In { set: SetExpr::Data(_, span), .. } => {
                self.err(rule, span.clone(), format!("`{}` is an enum; list its values inline", path.text));
                return None;
            }
        };
        let mut mask = 0u64;
        for v in values {
            mask |= 1u64 << v?;
        }
        Some(if negated { !mask } else { mask })
    }
}
