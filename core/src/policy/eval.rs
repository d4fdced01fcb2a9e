//! Stage three: evaluating a compiled policy against a request, at a given day.
//!
//! Pure and synchronous. The plain path ([`Policy::evaluate`]) allocates nothing unless
//! more than eight rules match; explanations take a separate path, so they cost nothing
//! when not asked for.

use smallvec::SmallVec;

use super::compile::{Cond, ListGet, Node, Presence, Src, StrGet, StrSet, StrTest};
use super::data::DataSet;
use super::expr::{CmpOp, Quant};
use super::{Effect, Policy, Verdict};
use crate::request::Request;
use crate::schema::{Item, Items};
use crate::time::Day;

/// The result of evaluating one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    pub verdict: Verdict,
    /// True when no deny or allow rule matched and the policy's default decided.
    pub default_applied: bool,
    /// Indexes into `Policy::rules` of every rule whose condition held, in policy order.
    pub matched: SmallVec<[u16; 8]>,
}

/// One rule's evaluation, for explanations.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleTrace {
    pub rule: usize,
    pub in_force: bool,
    pub matched: bool,
    /// The sub-condition that failed, as written, and the value it saw.
    pub failed: Option<(String, String)>,
}

struct Env<'a> {
    req: &'a Request,
    /// The item a `where (...)` is testing; set only inside one.
    item: Option<Item<'a>>,
    day: Day,
    data: &'a [DataSet],
}

impl Policy {
    /// Evaluates `req` as of `day`. Deny overrides; every matching rule in force is reported.
    pub fn evaluate(&self, req: &Request, day: Day) -> Outcome {
        let env = Env { req, item: None, day, data: &self.data };
        let mut matched = SmallVec::new();
        for rule in &self.rules {
            if rule.in_force(day) && holds(&rule.cond, &env) {
                matched.push(rule.index);
            }
        }
        self.decide(matched)
    }

    fn decide(&self, matched: SmallVec<[u16; 8]>) -> Outcome {
        let has = |e: Effect| matched.iter().any(|&i| self.rules[i as usize].effect == e);
        let (verdict, default_applied) = if has(Effect::Deny) {
            (Verdict::Deny, false)
        } else if has(Effect::Allow) {
            (Verdict::Allow, false)
        } else {
            (self.default, true)
        };
        Outcome { verdict, default_applied, matched }
    }

    /// Evaluates like [`Policy::evaluate`] and also says, rule by rule, why.
    pub fn explain(&self, req: &Request, day: Day) -> (Outcome, Vec<RuleTrace>) {
        let env = Env { req, item: None, day, data: &self.data };
        let mut matched = SmallVec::new();
        let mut traces = Vec::with_capacity(self.rules.len());
        for (i, rule) in self.rules.iter().enumerate() {
            let in_force = rule.in_force(day);
            let held = holds(&rule.cond, &env);
            if in_force && held {
                matched.push(rule.index);
            }
            let failed = (!held).then(|| {
                let (span, actual) = why(&rule.cond, &env);
                let text = rule.when.get(span.start as usize..span.end as usize).unwrap_or(&rule.when);
                (text.trim().to_string(), actual)
            });
            traces.push(RuleTrace { rule: i, in_force, matched: in_force && held, failed });
        }
        (self.decide(matched), traces)
    }
}

fn holds(n: &Node, env: &Env<'_>) -> bool {
    match &n.cond {
        Cond::Const(b) => *b,
        Cond::And(items) => items.iter().all(|i| holds(i, env)),
        Cond::Or(items) => items.iter().any(|i| holds(i, env)),
        Cond::Not(inner) => !holds(inner, env),
        Cond::Bool(g) => get(g, env),
        Cond::Int(g, op, v) => cmp(get(g, env), *op, *v),
        Cond::Str(get, test) => {
            str_of(get, env).is_some_and(|s| str_test(s, test, env)) || str_absent_passes(get, test, env)
        }
        Cond::Enum(_, g, mask) => bit(get(g, env)) & mask != 0,
        Cond::EnumSet(_, g, q, mask) => {
            let set = get(g, env);
            match q {
                Quant::Any => set & mask != 0,
                Quant::All => set & !mask == 0,
                Quant::None => set & mask == 0,
            }
        }
        Cond::StrList(g, q, test) => {
            let list = list_of(g, env);
            match q {
                Quant::Any => list.iter().any(|s| str_test(s, test, env)),
                Quant::All => list.iter().all(|s| str_test(s, test, env)),
                Quant::None => !list.iter().any(|s| str_test(s, test, env)),
            }
        }
        Cond::Date(g, op, day) => env.item.and_then(*g).is_some_and(|d| cmp(i64::from(d.0), *op, i64::from(day.0))),
        Cond::InForce => matches!(env.item, Some(Item::Licence(l)) if l.in_force(env.day)),
        Cond::Each(items, q, inner) => each(*items, *q, env, |item| holds(inner, &Env { item: Some(item), ..*env })),
        Cond::Present(p) => present(p, env),
    }
}

impl Clone for Env<'_> {
    fn clone(&self) -> Self {
        *self
    }
}
impl Copy for Env<'_> {}

/// Whether `pass` holds for any, all or none of the items, in order, stopping early.
fn each<'a>(items: Items, q: Quant, env: &Env<'a>, pass: impl Fn(Item<'a>) -> bool) -> bool {
    fn quant<'a, T>(list: &'a [T], q: Quant, pass: impl Fn(&'a T) -> bool) -> bool {
        match q {
            Quant::Any => list.iter().any(pass),
            Quant::All => list.iter().all(pass),
            Quant::None => !list.iter().any(pass),
        }
    }
    match items {
        Items::Licences(g) => quant(g(env.req), q, |l| pass(Item::Licence(l))),
        Items::Tokens(g) => quant(g(env.req), q, |t| pass(Item::Token(t))),
        Items::Assets(g) => quant(g(env.req), q, |a| pass(Item::Asset(a))),
    }
}

/// A value from the request or from the item under test. Outside a `where` there is no
/// item, and the compiler gives item accessors only to conditions inside one.
fn get<T: Default>(src: &Src<T>, env: &Env<'_>) -> T {
    match src {
        Src::Req(g) => g(env.req),
        Src::Item(g) => env.item.map_or_else(T::default, *g),
    }
}

fn list_of<'a>(g: &ListGet, env: &Env<'a>) -> &'a [String] {
    match g {
        ListGet::Req(g) => g(env.req),
        ListGet::Item(g) => env.item.map_or(&[], *g),
    }
}

fn bit(n: i32) -> u64 {
    if (0..64).contains(&n) { 1 << n } else { 0 }
}

fn cmp(a: i64, op: CmpOp, b: i64) -> bool {
    match op {
        CmpOp::Eq => a == b,
        CmpOp::Ne => a != b,
        CmpOp::Lt => a < b,
        CmpOp::Le => a <= b,
        CmpOp::Gt => a > b,
        CmpOp::Ge => a >= b,
    }
}

/// The string an accessor reads; `None` for a label the request does not carry.
fn str_of<'a>(get: &StrGet, env: &Env<'a>) -> Option<&'a str> {
    match get {
        StrGet::Req(g) => Some(g(env.req)),
        StrGet::Item(g) => env.item.map(*g),
        StrGet::Label(k) => env.req.labels.get(&**k).map(String::as_str),
    }
}

/// A missing label passes only negated tests (`labels.x != "y"`, `not in`).
fn str_absent_passes(get: &StrGet, test: &StrTest, env: &Env<'_>) -> bool {
    test.negated && str_of(get, env).is_none()
}

fn str_test(s: &str, test: &StrTest, env: &Env<'_>) -> bool {
    let inside = match &test.set {
        StrSet::One(v) => s == &**v,
        StrSet::List(vs) => vs.iter().any(|v| s == &**v),
        StrSet::Data(i) => env.data[*i].contains(s, env.day),
    };
    inside != test.negated
}

fn present(p: &Presence, env: &Env<'_>) -> bool {
    match p {
        Presence::Message(g) => g(env.req),
        Presence::Str(g) => str_of(g, env).is_some_and(|s| !s.is_empty()),
        Presence::Int(g) => get(g, env) != 0,
        Presence::Enum(g) => get(g, env) != 0,
        Presence::EnumSet(g) => get(g, env) != 0,
        Presence::List(g) => !list_of(g, env).is_empty(),
        Presence::Items(items) => !items.is_empty(env.req),
        Presence::Date(g) => env.item.and_then(*g).is_some(),
    }
}

/// For a node that does not hold: the deepest sub-condition that explains it, and the
/// actual value that sub-condition saw.
fn why(n: &Node, env: &Env<'_>) -> (std::ops::Range<u32>, String) {
    match &n.cond {
        Cond::And(items) => match items.iter().find(|i| !holds(i, env)) {
            Some(i) => why(i, env),
            None => (n.span.clone(), "true".into()),
        },
        Cond::Or(items) => {
            let parts: Vec<String> = items.iter().map(|i| why(i, env).1).collect();
            (n.span.clone(), parts.join("; "))
        }
        Cond::Not(inner) => (n.span.clone(), format!("{} (the negated condition held)", actual(inner, env))),
        _ => (n.span.clone(), actual(n, env)),
    }
}

/// The value a leaf condition reads, as text.
fn actual(n: &Node, env: &Env<'_>) -> String {
    let quote = |s: Option<&str>| s.map_or("(absent)".to_string(), |s| format!("{s:?}"));
    match &n.cond {
        Cond::Const(b) => b.to_string(),
        Cond::And(_) | Cond::Or(_) | Cond::Not(_) => why(n, env).1,
        Cond::Bool(g) => get(g, env).to_string(),
        Cond::Int(g, ..) => get(g, env).to_string(),
        Cond::Str(g, _) => quote(str_of(g, env)),
        Cond::Enum(def, g, _) => def.short_name(get(g, env)).unwrap_or_else(|| "unknown".into()),
        Cond::EnumSet(def, g, ..) => def.render_set(get(g, env)),
        Cond::StrList(g, ..) => format!("{:?}", list_of(g, env)),
        Cond::Date(g, ..) => env.item.and_then(*g).map_or("(absent)".to_string(), |d| d.to_string()),
        Cond::InForce => match env.item {
            Some(Item::Licence(l)) => {
                let status = crate::schema::LICENCE_STATUS.short_name(l.status).unwrap_or_default();
                let expires = l.expires.map_or("no expiry".to_string(), |d| format!("expires {d}"));
                format!("{status}, {expires}, on {}", env.day)
            }
            _ => "false".into(),
        },
        Cond::Each(items, ..) => {
            let list: Vec<String> = match items {
                Items::Licences(g) => g(env.req)
                    .iter()
                    .map(|l| {
                        let status = crate::schema::LICENCE_STATUS.short_name(l.status).unwrap_or_default();
                        format!("{}/{} ({status})", l.regulator, l.kind)
                    })
                    .collect(),
                Items::Tokens(g) => g(env.req)
                    .iter()
                    .map(|t| crate::schema::TOKEN_KIND.short_name(t.kind).unwrap_or_default())
                    .collect(),
                Items::Assets(g) => g(env.req)
                    .iter()
                    .map(|a| format!("{} {}", a.symbol, crate::schema::ASSET_CLASS.render_set(a.classes)))
                    .collect(),
            };
            format!("[{}]", list.join(", "))
        }
        Cond::Present(_) => "absent".into(),
    }
}
