//! Waivers applied to an evaluation: which matched soft rules a signed waiver covers, and
//! the verdict once they no longer block. Pure, and outside the evaluator: the evaluator
//! reports every matched rule as it always does, and this runs on its outcome.
//!
//! A waiver covers a matched rule when, at the decision's time, it is in force
//! (`not_before <= t < expires`, whole seconds), names the rule, the rule is soft, and its
//! scope matches the request (the request digest, or every attribute it gives).

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::policy::{Effect, Level, Outcome, Policy, Verdict};
use crate::proto;
use crate::request::Request;
use crate::time::UnixTime;

pub use silkgate_verify::waiver::{VerifiedWaiver, WAIVER_PAYLOAD_TYPE, in_force};

/// A checked waiver as a node holds it.
#[derive(Debug)]
pub struct Waiver {
    pub verified: VerifiedWaiver,
    /// The waiver's entry in the node's log, when it keeps one.
    pub log_index: Option<u64>,
}

/// The waivers a node holds, by jurisdiction (expired ones included: they apply to
/// nothing, and `NodeInfo` counts them).
pub type Waivers = BTreeMap<String, Vec<Arc<Waiver>>>;

/// An outcome after waivers: the verdict recomputed without the waived rules, and which
/// waiver covered which matched rule (by rule index).
#[derive(Debug)]
pub struct Applied {
    pub outcome: Outcome,
    pub waived: Vec<(u16, Arc<Waiver>)>,
}

/// Checks that a waiver may waive its rules under `policy`: every rule exists and is
/// soft (hard rules can never be waived), and the waiver lasts no longer than the
/// smallest `max_waiver_days` among them.
pub fn check_against(w: &VerifiedWaiver, policy: &Policy) -> Result<(), String> {
    let mut max_days = u32::MAX;
    for id in &w.waiver.rule_ids {
        let Some(rule) = policy.rules.iter().find(|r| &r.id == id) else {
            return Err(format!("rule `{id}` is not in policy {} {}", policy.id, policy.version));
        };
        match rule.level {
            Level::Soft => max_days = max_days.min(rule.max_waiver_days),
            Level::Hard => return Err(format!("rule `{id}` is hard: hard rules cannot be waived")),
            other => return Err(format!("rule `{id}` is {}, not soft: only soft rules can be waived", other.as_str())),
        }
    }
    let days = (w.expires.secs - w.not_before.secs) as f64 / 86_400.0;
    if w.expires.secs - w.not_before.secs > i64::from(max_days) * 86_400 {
        return Err(format!("lasts {days:.1} days, more than the {max_days} days its rules allow (max_waiver_days)"));
    }
    Ok(())
}

/// Whether `w`'s scope covers this request. Without the request's digest (a preview over
/// request files, which are not the bytes a portal sent), a waiver scoped to one request
/// digest covers nothing.
pub fn scope_covers(w: &proto::Waiver, req: &Request, request_sha256: Option<&[u8; 32]>) -> bool {
    let Some(scope) = &w.scope else { return false };
    if !scope.request_sha256.is_empty() {
        return request_sha256.is_some_and(|d| scope.request_sha256 == d);
    }
    let country = req.operator.as_ref().map(|o| o.entity_country.as_str()).unwrap_or_default();
    (scope.operator_entity_country.is_empty() || scope.operator_entity_country == country)
        && (scope.protocol_name.is_empty() || scope.protocol_name == req.protocol.name)
        && (scope.deployment_kind == 0 || scope.deployment_kind == req.deployment_kind)
}

/// Applies `waivers` (of the policy's jurisdiction) to an outcome of `policy` for `req`
/// at `at`. Without waivers this allocates nothing and returns the outcome unchanged.
pub fn apply(
    policy: &Policy,
    outcome: Outcome,
    waivers: &[Arc<Waiver>],
    req: &Request,
    request_sha256: Option<&[u8; 32]>,
    at: UnixTime,
) -> Applied {
    let mut waived = Vec::new();
    if waivers.is_empty() {
        return Applied { outcome, waived };
    }
    for &i in &outcome.matched {
        let rule = &policy.rules[i as usize];
        if rule.level != Level::Soft {
            continue;
        }
        let covering = waivers.iter().find(|w| {
            in_force(&w.verified, at)
                && w.verified.waiver.rule_ids.contains(&rule.id)
                && scope_covers(&w.verified.waiver, req, request_sha256)
        });
        if let Some(w) = covering {
            waived.push((i, w.clone()));
        }
    }
    if waived.is_empty() {
        return Applied { outcome, waived };
    }
    let blocking = |e: Effect| {
        outcome.matched.iter().any(|&i| policy.rules[i as usize].effect == e && !waived.iter().any(|(w, _)| *w == i))
    };
    let (verdict, default_applied) = if blocking(Effect::Deny) {
        (Verdict::Deny, false)
    } else if blocking(Effect::Allow) {
        (Verdict::Allow, false)
    } else {
        (policy.default, true)
    };
    Applied { outcome: Outcome { verdict, default_applied, ..outcome }, waived }
}

/// Marks the waived rules of a decision built from `applied.outcome` with the waiver's
/// digest and log index.
pub fn annotate(d: &mut proto::Decision, policy: &Policy, applied: &Applied) {
    for (i, w) in &applied.waived {
        let id = &policy.rules[*i as usize].id;
        if let Some(m) = d.matched_rules.iter_mut().find(|m| &m.id == id) {
            m.waiver_sha256 = w.verified.digest.to_vec();
            m.waiver_log_index = w.log_index;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy;
    use crate::request::Request;

    const POLICY: &str = r#"[policy]
id = "xx"
jurisdiction = "XX"
name = "XX"
version = "1"
default = "allow"

[[rule]]
id = "xx.soft"
level = "soft"
max_waiver_days = 30
when = 'deployment_kind == "mining"'
message = "m"
citation = "c"

[[rule]]
id = "xx.hard"
level = "hard"
when = 'protocol.name == "bad"'
message = "m"
citation = "c"

[[rule]]
id = "xx.note"
effect = "warn"
when = 'true'
message = "m"
citation = "c"
"#;

    fn request(kind: proto::DeploymentKind, protocol: &str) -> Request {
        let p = proto::DeploymentRequest {
            request_id: "r".into(),
            deployment_kind: kind as i32,
            protocol: Some(proto::Protocol { name: protocol.into(), ..Default::default() }),
            permission_model: proto::PermissionModel::Permissioned as i32,
            ..Default::default()
        };
        Request::try_from(p).unwrap()
    }

    fn waiver(rules: &[&str], scope: proto::WaiverScope, from: i64, until: i64) -> Arc<Waiver> {
        let w = proto::Waiver {
            jurisdiction: "XX".into(),
            waiver_id: "w".into(),
            rule_ids: rules.iter().map(|r| r.to_string()).collect(),
            scope: Some(scope),
            justification: "j".into(),
            ticket: "t".into(),
            not_before: Some(prost_types::Timestamp { seconds: from, nanos: 0 }),
            expires: Some(prost_types::Timestamp { seconds: until, nanos: 0 }),
        };
        let (not_before, expires) = silkgate_verify::waiver::check_fields(&w).unwrap();
        let verified = VerifiedWaiver { waiver: w, digest: [7; 32], signers: vec![], not_before, expires };
        Arc::new(Waiver { verified, log_index: Some(3) })
    }

    fn by_protocol(p: &str) -> proto::WaiverScope {
        proto::WaiverScope { protocol_name: p.into(), ..Default::default() }
    }

    #[test]
    fn a_waiver_lifts_a_soft_rule_in_its_scope_until_it_expires() {
        let p = policy::from_text("xx.toml", POLICY).unwrap();
        let w = [waiver(&["xx.soft"], by_protocol("ethereum"), 1000, 2000)];
        let req = request(proto::DeploymentKind::Mining, "ethereum");
        let at = |secs| UnixTime { secs, nanos: 0 };
        let o = p.evaluate(&req, at(1000).day());
        assert_eq!(o.verdict, Verdict::Deny);
        let applied = apply(&p, o.clone(), &w, &req, None, at(1000));
        assert_eq!(applied.outcome.verdict, Verdict::Allow);
        assert_eq!(applied.outcome.matched, o.matched, "waived rules are still reported");
        assert_eq!(applied.waived.len(), 1);
        assert_eq!(apply(&p, o.clone(), &w, &req, None, at(1999)).outcome.verdict, Verdict::Allow);
        // The expiry second and after, and before not_before: no effect.
        for t in [2000, 2001, 999] {
            let a = apply(&p, o.clone(), &w, &req, None, at(t));
            assert_eq!(a.outcome.verdict, Verdict::Deny, "at {t}");
            assert!(a.waived.is_empty());
        }
        // Out of scope: another protocol.
        let other = request(proto::DeploymentKind::Mining, "bitcoin");
        let o2 = p.evaluate(&other, at(1500).day());
        assert_eq!(apply(&p, o2, &w, &other, None, at(1500)).outcome.verdict, Verdict::Deny);
        // By request digest.
        let one =
            [waiver(&["xx.soft"], proto::WaiverScope { request_sha256: vec![5; 32], ..Default::default() }, 0, 10)];
        assert_eq!(apply(&p, o.clone(), &one, &req, Some(&[5; 32]), at(5)).outcome.verdict, Verdict::Allow);
        assert_eq!(apply(&p, o, &one, &req, Some(&[6; 32]), at(5)).outcome.verdict, Verdict::Deny);
    }

    #[test]
    fn a_hard_rule_still_blocks_and_cannot_be_waived() {
        let p = policy::from_text("xx.toml", POLICY).unwrap();
        let req = request(proto::DeploymentKind::Mining, "bad");
        let at = UnixTime { secs: 1500, nanos: 0 };
        let o = p.evaluate(&req, at.day());
        let w = [waiver(&["xx.soft", "xx.hard"], by_protocol("bad"), 1000, 2000)];
        let applied = apply(&p, o, &w, &req, None, at);
        assert_eq!(applied.outcome.verdict, Verdict::Deny);
        assert_eq!(applied.waived.len(), 1, "only the soft rule is waived");
        let e = check_against(&w[0].verified, &p).unwrap_err();
        assert!(e.contains("`xx.hard` is hard"), "{e}");
        let e = check_against(&waiver(&["xx.note"], by_protocol("x"), 0, 10).verified, &p).unwrap_err();
        assert!(e.contains("advisory, not soft"), "{e}");
        assert!(check_against(&waiver(&["xx.soft"], by_protocol("x"), 0, 30 * 86_400).verified, &p).is_ok());
        let e = check_against(&waiver(&["xx.soft"], by_protocol("x"), 0, 30 * 86_400 + 1).verified, &p).unwrap_err();
        assert!(e.contains("more than the 30 days"), "{e}");
    }
}
