//! Stage two: condition syntax trees to typed, compiled nodes.
//!
//! Every path is resolved against [`crate::schema`] and every literal checked against
//! the attribute's type here, once; enum values become bit masks and dates day numbers,
//! so the evaluator only calls accessors and compares numbers.

use std::collections::HashMap;
use std::ops::Range;

use super::expr::{CmpOp, Expr, ExprKind, LitValue, Literal, Path, Quant, QuantBody, SetExpr, Test};
use super::source::RuleDoc;
use crate::diag::{Diagnostic, suggest};
use crate::request::{EnumSet, Request};
use crate::schema::{self, Case, EnumDef, FieldGetter, Getter, Item, Items};
use crate::time::Day;

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
    Bool(Src<bool>),
    Int(Src<i64>, CmpOp, i64),
    Str(StrGet, StrTest),
    /// Holds when the attribute's number is in the mask.
    Enum(&'static EnumDef, Src<i32>, EnumSet),
    /// Quantified over the set's members; the mask holds the members that pass the test.
    EnumSet(&'static EnumDef, Src<EnumSet>, Quant, EnumSet),
    StrList(ListGet, Quant, StrTest),
    /// An item's date against a fixed day; an absent date fails every comparison.
    Date(fn(Item<'_>) -> Option<Day>, CmpOp, Day),
    /// The licence being tested is in force on the evaluation day.
    InForce,
    /// Quantified over a list of messages: the node is the `where (...)` condition.
    Each(Items, Quant, Box<Node>),
    Present(Presence),
}

impl std::fmt::Debug for Cond {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Function pointers say nothing useful; the rule's `when` text is the readable form.
        f.write_str("Cond")
    }
}

/// Where a value comes from: the request, or the item a `where (...)` is testing.
#[derive(Clone, Copy)]
pub(crate) enum Src<T> {
    Req(fn(&Request) -> T),
    Item(fn(Item<'_>) -> T),
}

impl<T> Src<T> {
    /// Identifies the accessor, so lint can see two conditions on the same attribute.
    pub(crate) fn key(&self) -> (bool, usize) {
        match self {
            Src::Req(g) => (false, *g as usize),
            Src::Item(g) => (true, *g as usize),
        }
    }
}

pub(crate) enum StrGet {
    Req(fn(&Request) -> &str),
    Item(fn(Item<'_>) -> &str),
    Label(Box<str>),
}

pub(crate) enum ListGet {
    Req(fn(&Request) -> &[String]),
    Item(fn(Item<'_>) -> &[String]),
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
    Int(Src<i64>),
    Enum(Src<i32>),
    EnumSet(Src<EnumSet>),
    List(ListGet),
    Items(Items),
    Date(fn(Item<'_>) -> Option<Day>),
}

/// Data sets visible to a policy: name -> (index, normalisation).
pub(crate) type DataIndex = HashMap<String, (usize, Option<Case>)>;

pub(crate) struct Compiler<'a> {
    pub(crate) file: &'a str,
    pub(crate) text: &'a str,
    pub(crate) data: &'a DataIndex,
    pub(crate) diags: Vec<Diagnostic>,
}

/// What the paths of a condition name: the request's attributes, or inside
/// `where (...)` the fields of the list's items.
#[derive(Clone, Copy)]
enum Scope {
    Request,
    Items(Items),
}

/// A path resolved to its type and accessor, whichever scope it came from.
enum Typed {
    Bool(Src<bool>),
    Int(Src<i64>),
    Str(Case, StrGet),
    Enum(&'static EnumDef, Src<i32>),
    EnumSet(&'static EnumDef, Src<EnumSet>),
    StrList(Case, ListGet),
    Items(Items),
    Message(fn(&Request) -> bool),
    Date(fn(Item<'_>) -> Option<Day>),
    InForce,
}

impl Typed {
    fn from_attr(g: Getter) -> Typed {
        match g {
            Getter::Bool(g) => Typed::Bool(Src::Req(g)),
            Getter::Int(g) => Typed::Int(Src::Req(g)),
            Getter::Str(case, g) => Typed::Str(case, StrGet::Req(g)),
            Getter::Enum(def, g) => Typed::Enum(def, Src::Req(g)),
            Getter::EnumSet(def, g) => Typed::EnumSet(def, Src::Req(g)),
            Getter::StrList(case, g) => Typed::StrList(case, ListGet::Req(g)),
            Getter::Items(items) => Typed::Items(items),
            Getter::Message(g) => Typed::Message(g),
        }
    }

    fn from_field(g: FieldGetter) -> Typed {
        match g {
            FieldGetter::Bool(g) => Typed::Bool(Src::Item(g)),
            FieldGetter::Str(case, g) => Typed::Str(case, StrGet::Item(g)),
            FieldGetter::Enum(def, g) => Typed::Enum(def, Src::Item(g)),
            FieldGetter::EnumSet(def, g) => Typed::EnumSet(def, Src::Item(g)),
            FieldGetter::StrList(case, g) => Typed::StrList(case, ListGet::Item(g)),
            FieldGetter::Date(g) => Typed::Date(g),
            FieldGetter::InForce => Typed::InForce,
        }
    }

    fn type_name(&self) -> String {
        match self {
            Typed::Bool(_) | Typed::InForce => "bool".into(),
            Typed::Int(_) => "integer".into(),
            Typed::Str(..) => "string".into(),
            Typed::Enum(def, _) => format!("enum {}", def.name),
            Typed::EnumSet(def, _) => format!("list of enum {}", def.name),
            Typed::StrList(..) => "list of strings".into(),
            Typed::Items(items) => format!("list of {}s", items.noun()),
            Typed::Message(_) => "message".into(),
            Typed::Date(_) => "date".into(),
        }
    }
}

/// The paths that hold lists of messages, for error messages.
fn item_lists() -> String {
    let paths: Vec<String> = schema::ATTRS
        .iter()
        .filter(|a| matches!(a.getter, Getter::Items(_)))
        .map(|a| format!("`{}`", a.path))
        .collect();
    paths.join(", ")
}

fn field_names(items: Items) -> Vec<&'static str> {
    items.fields().iter().map(|f| f.name).collect()
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
        self.expr(rule, &rule.expr, Scope::Request)
    }

    fn resolve(&mut self, rule: &RuleDoc, path: &Path, scope: Scope) -> Option<Typed> {
        let p = path.text.as_str();
        if let Scope::Items(items) = scope {
            if let Some(f) = items.fields().iter().find(|f| f.name == p) {
                return Some(Typed::from_field(f.getter));
            }
            let noun = items.noun();
            let names = field_names(items);
            let help = match suggest(p, names.iter().copied()) {
                Some(s) => format!("did you mean `{s}`?"),
                None if schema::lookup(p).is_some() || p.starts_with("labels.") => format!(
                    "`{p}` is a request attribute; inside `where`, conditions read only the {noun}'s fields ({}): test `{p}` outside the `where (...)`",
                    names.join(", ")
                ),
                None => format!(
                    "inside `where`, conditions read only the {noun}'s fields ({}); test the rest of the request outside the `where (...)`",
                    names.join(", ")
                ),
            };
            self.err_help(rule, path.span.clone(), format!("unknown {noun} field `{p}`"), help);
            return None;
        }
        if let Some(name) = p.strip_prefix("labels.") {
            if name.is_empty() || name.contains('.') {
                self.err(rule, path.span.clone(), format!("`{p}` is not a label name"));
                return None;
            }
            return Some(Typed::Str(Case::AsIs, StrGet::Label(name.into())));
        }
        if let Some(a) = schema::lookup(p) {
            return Some(Typed::from_attr(a.getter));
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

    fn expr(&mut self, rule: &RuleDoc, e: &Expr, scope: Scope) -> Option<Node> {
        match &e.kind {
            ExprKind::Const(b) => Self::node(Cond::Const(*b), &e.span),
            ExprKind::And(items) | ExprKind::Or(items) => {
                let nodes: Vec<Option<Node>> = items.iter().map(|i| self.expr(rule, i, scope)).collect();
                let nodes: Option<Vec<Node>> = nodes.into_iter().collect();
                let nodes = nodes?.into_boxed_slice();
                let cond = if matches!(e.kind, ExprKind::And(_)) { Cond::And(nodes) } else { Cond::Or(nodes) };
                Self::node(cond, &e.span)
            }
            ExprKind::Not(inner) => {
                let n = self.expr(rule, inner, scope)?;
                Self::node(Cond::Not(Box::new(n)), &e.span)
            }
            ExprKind::Present(path) => {
                let presence = match self.resolve(rule, path, scope)? {
                    t @ (Typed::Bool(_) | Typed::InForce) => {
                        return self.err(
                            rule,
                            path.span.clone(),
                            format!("`{}` is a {} and always present; test it directly", path.text, t.type_name()),
                        );
                    }
                    Typed::Int(g) => Presence::Int(g),
                    Typed::Str(_, g) => Presence::Str(g),
                    Typed::Enum(_, g) => Presence::Enum(g),
                    Typed::EnumSet(_, g) => Presence::EnumSet(g),
                    Typed::StrList(_, g) => Presence::List(g),
                    Typed::Items(items) => Presence::Items(items),
                    Typed::Message(g) => Presence::Message(g),
                    Typed::Date(g) => Presence::Date(g),
                };
                Self::node(Cond::Present(presence), &e.span)
            }
            ExprKind::Test(path, test) => self.test(rule, e, path, test.as_ref(), scope),
            ExprKind::Quant(q, path, body) => self.quant(rule, e, *q, path, body, scope),
        }
    }

    fn test(&mut self, rule: &RuleDoc, e: &Expr, path: &Path, test: Option<&Test>, scope: Scope) -> Option<Node> {
        let typed = self.resolve(rule, path, scope)?;
        let p = &path.text;
        match typed {
            Typed::Bool(_) | Typed::InForce => {
                let base = match typed {
                    Typed::Bool(g) => Cond::Bool(g),
                    _ => Cond::InForce,
                };
                match test {
                    None => Self::node(base, &e.span),
                    Some(Test::Cmp(op @ (CmpOp::Eq | CmpOp::Ne), Literal { value: LitValue::Bool(b), .. })) => {
                        let base = Node { cond: base, span: e.span.start as u32..e.span.end as u32 };
                        if (*op == CmpOp::Eq) == *b {
                            Some(base)
                        } else {
                            Self::node(Cond::Not(Box::new(base)), &e.span)
                        }
                    }
                    Some(_) => self.err(
                        rule,
                        e.span.clone(),
                        format!("`{p}` is a bool: test it alone, or with `== true` / `== false`"),
                    ),
                }
            }
            Typed::Int(g) => match test {
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
            Typed::Date(g) => {
                let date = |lit: &Literal| match &lit.value {
                    LitValue::Str(s) if crate::request::is_date(s) => Day::parse(s),
                    _ => None,
                };
                match test {
                    Some(Test::Cmp(op, lit)) => match date(lit) {
                        Some(day) => Self::node(Cond::Date(g, *op, day), &e.span),
                        None => self.err(
                            rule,
                            lit.span.clone(),
                            format!("`{p}` is a date; compare it with a date such as \"2027-01-01\""),
                        ),
                    },
                    _ => self.err(
                        rule,
                        e.span.clone(),
                        format!(
                            "`{p}` is a date; compare it with `==`, `!=`, `<`, `<=`, `>` or `>=` and a \"YYYY-MM-DD\" date, or test `present({p})`"
                        ),
                    ),
                }
            }
            Typed::Str(case, g) => self.str_test(rule, e, path, g, case, test),
            Typed::Enum(def, g) => {
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
            Typed::Items(items) => {
                let fields = field_names(items);
                self.err_help(
                    rule,
                    e.span.clone(),
                    format!("`{p}` is a list of {}s; say which of them must pass, and test their fields", items.noun()),
                    format!("use `any {p} where (...)` (or `all`, `none`) over {}", fields.join(", ")),
                );
                None
            }
            t @ (Typed::EnumSet(..) | Typed::StrList(..)) => {
                let example = match test {
                    Some(Test::Cmp(op, lit)) => {
                        format!("any {p} {} {}", op.as_str(), &self.text_of(rule, &lit.span))
                    }
                    Some(Test::In { .. }) | None => format!("any {p} in [...]"),
                };
                self.err_help(
                    rule,
                    e.span.clone(),
                    format!("`{p}` is a {}; say which of its items must pass", t.type_name()),
                    format!("use `any`, `all` or `none`, e.g. `{example}`"),
                );
                None
            }
            Typed::Message(_) => {
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
        scope: Scope,
    ) -> Option<Node> {
        if let (Scope::Items(outer), QuantBody::Where(_)) = (scope, body) {
            // No item holds a list of messages, so a nested `where` could only reach back
            // to the request; that is written as a separate condition outside this one.
            self.err_help(
                rule,
                e.span.clone(),
                format!("`where` cannot be nested: this condition already tests one {}", outer.noun()),
                "test the other list in its own `any ... where (...)` beside this one, joined with `and`",
            );
            return None;
        }
        let typed = self.resolve(rule, path, scope)?;
        let p = &path.text;
        match (typed, body) {
            (Typed::EnumSet(def, g), QuantBody::Test(test)) => {
                let mask = self.enum_mask(rule, path, def, test)?;
                Self::node(Cond::EnumSet(def, g, q, mask), &e.span)
            }
            (Typed::StrList(case, g), QuantBody::Test(test)) => {
                let t = self.str_set(rule, path, case, test)?;
                Self::node(Cond::StrList(g, q, t), &e.span)
            }
            (Typed::Items(items), QuantBody::Where(inner)) => {
                let n = self.expr(rule, inner, Scope::Items(items))?;
                Self::node(Cond::Each(items, q, Box::new(n)), &e.span)
            }
            (Typed::Items(items), QuantBody::Test(_)) => {
                let fields = field_names(items);
                self.err_help(
                    rule,
                    e.span.clone(),
                    format!("`{p}` holds {}s; test their fields with `where (...)`", items.noun()),
                    format!("e.g. `any {p} where ({} == \"...\")`; fields: {}", fields[0], fields.join(", ")),
                );
                None
            }
            (t, QuantBody::Where(_)) => self.err(
                rule,
                e.span.clone(),
                format!("`where` applies to lists of messages ({}), and `{p}` is a {}", item_lists(), t.type_name()),
            ),
            (t, QuantBody::Test(_)) => {
                self.err(rule, path.span.clone(), format!("`{p}` is a {}, not a list", t.type_name()))
            }
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
