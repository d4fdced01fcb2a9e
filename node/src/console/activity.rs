//! The decision series the console charts: counts by jurisdiction, verdict and rule in
//! time buckets, and the latest decisions, in fixed memory (no scan of the log).
//!
//! Two rings of buckets: 60 one-minute buckets (the last hour) and 96 fifteen-minute
//! buckets (the last day). A bucket holds counts per series key; keys (jurisdiction,
//! verdict, rule) are interned in one table of at most [`MAX_KEYS`] entries, so memory is
//! bounded whatever the policies say. Decisions whose key does not fit are counted in
//! `overflow` and reported, never dropped silently.

use std::collections::VecDeque;
use std::sync::Mutex;

use serde::Serialize;

/// Most distinct (jurisdiction, verdict, rule) keys counted; later ones go to `overflow`.
pub const MAX_KEYS: usize = 512;
/// Latest decisions kept for the console's list.
pub const RECENT: usize = 100;
/// Longest id, jurisdiction or rule id kept, in bytes (they come from policies and the
/// node, so this is a bound, not a check).
const MAX_TEXT: usize = 128;
/// Most rule ids kept per recent decision.
const MAX_RULES: usize = 32;

/// A time window the console can show.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Window {
    Hour,
    Day,
}

impl Window {
    pub fn parse(s: &str) -> Option<Window> {
        match s {
            "hour" => Some(Window::Hour),
            "day" => Some(Window::Day),
            _ => None,
        }
    }

    fn bucket_secs(self) -> i64 {
        match self {
            Window::Hour => 60,
            Window::Day => 900,
        }
    }

    fn buckets(self) -> usize {
        match self {
            Window::Hour => 60,
            Window::Day => 96,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Window::Hour => "hour",
            Window::Day => "day",
        }
    }
}

/// One series key. `rule` is empty for the count of decisions itself; a decision also
/// counts once under each rule it matched.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Key {
    pub jurisdiction: String,
    pub verdict: String,
    pub rule: String,
}

/// A bucket: the start of its period (Unix seconds, a multiple of the bucket length) and
/// the counts, as (key index, count) pairs.
#[derive(Default)]
struct Bucket {
    start: i64,
    counts: Vec<(u16, u32)>,
    overflow: u32,
}

impl Bucket {
    fn add(&mut self, key: Option<u16>) {
        match key {
            None => self.overflow = self.overflow.saturating_add(1),
            Some(k) => match self.counts.iter_mut().find(|(i, _)| *i == k) {
                Some((_, n)) => *n = n.saturating_add(1),
                None => self.counts.push((k, 1)),
            },
        }
    }
}

struct Ring {
    window: Window,
    buckets: Vec<Bucket>,
}

impl Ring {
    fn new(window: Window) -> Self {
        Ring {
            window,
            buckets: (0..window.buckets()).map(|_| Bucket { start: i64::MIN, ..Default::default() }).collect(),
        }
    }

    /// The bucket for time `t`, emptied first if it still holds an older period.
    fn at(&mut self, t: i64) -> &mut Bucket {
        let len = self.window.bucket_secs();
        let start = t.div_euclid(len) * len;
        let slot = (t.div_euclid(len)).rem_euclid(self.buckets.len() as i64) as usize;
        let b = &mut self.buckets[slot];
        if b.start != start {
            *b = Bucket { start, ..Default::default() };
        }
        b
    }
}

/// One of the latest decisions: nothing of the request beyond what the decision holds.
#[derive(Clone, Debug, Serialize)]
pub struct Recent {
    pub decision_id: String,
    /// Unix seconds.
    pub time: i64,
    pub jurisdiction: String,
    pub verdict: String,
    pub rules: Vec<String>,
}

struct Inner {
    keys: Vec<Key>,
    hour: Ring,
    day: Ring,
    recent: VecDeque<Recent>,
}

/// The node's decision series. One short lock per decision.
pub struct Activity {
    inner: Mutex<Inner>,
}

impl Default for Activity {
    fn default() -> Self {
        Self::new()
    }
}

/// The counts of one window, for the console's charts.
#[derive(Debug, Serialize)]
pub struct Snapshot {
    pub window: &'static str,
    pub bucket_secs: i64,
    /// Start of the first bucket, Unix seconds; bucket `i` starts at `start + i * bucket_secs`.
    pub start: i64,
    pub series: Vec<Series>,
    /// Decisions in the window whose key did not fit in the key table.
    pub overflow: u64,
}

#[derive(Debug, Serialize)]
pub struct Series {
    #[serde(flatten)]
    pub key: Key,
    /// One count per bucket, oldest first.
    pub counts: Vec<u32>,
}

fn cut(s: &str) -> String {
    let mut end = s.len().min(MAX_TEXT);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

impl Activity {
    pub fn new() -> Self {
        Activity {
            inner: Mutex::new(Inner {
                keys: Vec::new(),
                hour: Ring::new(Window::Hour),
                day: Ring::new(Window::Day),
                recent: VecDeque::with_capacity(RECENT),
            }),
        }
    }

    /// Records one decision, now. `rules` is the matched rule ids joined with commas.
    pub fn record(&self, jurisdiction: &str, verdict: &str, rules: &str, decision_id: &str) {
        self.record_at(silkgate_core::time::UnixTime::now().secs, jurisdiction, verdict, rules, decision_id);
    }

    /// Records one decision at Unix time `t`.
    pub fn record_at(&self, t: i64, jurisdiction: &str, verdict: &str, rules: &str, decision_id: &str) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let rules: Vec<&str> = rules.split(',').filter(|r| !r.is_empty()).collect();
        let mut ids = Vec::with_capacity(rules.len() + 1);
        for rule in std::iter::once("").chain(rules.iter().copied()) {
            ids.push(inner.intern(jurisdiction, verdict, rule));
        }
        for &id in &ids {
            inner.hour.at(t).add(id);
            inner.day.at(t).add(id);
        }
        if inner.recent.len() == RECENT {
            inner.recent.pop_back();
        }
        inner.recent.push_front(Recent {
            decision_id: cut(decision_id),
            time: t,
            jurisdiction: cut(jurisdiction),
            verdict: cut(verdict),
            rules: rules.iter().take(MAX_RULES).map(|r| cut(r)).collect(),
        });
    }

    /// The counts of `window` ending with the bucket that holds `now`.
    pub fn snapshot(&self, window: Window, now: i64) -> Snapshot {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let ring = match window {
            Window::Hour => &inner.hour,
            Window::Day => &inner.day,
        };
        let len = window.bucket_secs();
        let n = window.buckets();
        let last = now.div_euclid(len) * len;
        let start = last - (n as i64 - 1) * len;
        let mut counts: Vec<Vec<u32>> = vec![Vec::new(); inner.keys.len()];
        let mut overflow = 0u64;
        for b in &ring.buckets {
            if b.start < start || b.start > last {
                continue;
            }
            let i = ((b.start - start) / len) as usize;
            overflow += u64::from(b.overflow);
            for &(k, c) in &b.counts {
                let row = &mut counts[k as usize];
                if row.is_empty() {
                    row.resize(n, 0);
                }
                row[i] += c;
            }
        }
        let series = counts
            .into_iter()
            .enumerate()
            .filter(|(_, c)| !c.is_empty())
            .map(|(k, counts)| Series { key: inner.keys[k].clone(), counts })
            .collect();
        Snapshot { window: window.as_str(), bucket_secs: len, start, series, overflow }
    }

    /// The latest decisions, newest first, at most `limit`.
    pub fn recent(&self, limit: usize) -> Vec<Recent> {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.recent.iter().take(limit).cloned().collect()
    }
}

impl Inner {
    fn intern(&mut self, jurisdiction: &str, verdict: &str, rule: &str) -> Option<u16> {
        if let Some(i) =
            self.keys.iter().position(|k| k.jurisdiction == jurisdiction && k.verdict == verdict && k.rule == rule)
        {
            return Some(i as u16);
        }
        if self.keys.len() >= MAX_KEYS {
            return None;
        }
        self.keys.push(Key { jurisdiction: cut(jurisdiction), verdict: cut(verdict), rule: cut(rule) });
        Some((self.keys.len() - 1) as u16)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(s: &Snapshot, j: &str, v: &str, rule: &str) -> u32 {
        s.series
            .iter()
            .filter(|x| x.key.jurisdiction == j && x.key.verdict == v && x.key.rule == rule)
            .map(|x| x.counts.iter().sum::<u32>())
            .sum()
    }

    #[test]
    fn counts_decisions_and_rules_in_their_windows() {
        let a = Activity::new();
        let t0 = 1_800_000_000;
        a.record_at(t0, "CN", "deny", "cn.mining,cn.tokens", "d1");
        a.record_at(t0 + 30, "CN", "allow", "", "d2");
        a.record_at(t0 + 3 * 3600, "EU", "allow", "eu.mica", "d3");
        let now = t0 + 3 * 3600 + 10;
        let hour = a.snapshot(Window::Hour, now);
        assert_eq!(count(&hour, "EU", "allow", ""), 1);
        assert_eq!(count(&hour, "EU", "allow", "eu.mica"), 1);
        assert_eq!(count(&hour, "CN", "deny", ""), 0, "three hours ago is outside the hour");
        let day = a.snapshot(Window::Day, now);
        assert_eq!(count(&day, "CN", "deny", ""), 1);
        assert_eq!(count(&day, "CN", "deny", "cn.tokens"), 1);
        assert_eq!(count(&day, "CN", "allow", ""), 1);
        assert_eq!(day.series.iter().map(|s| s.counts.len()).max(), Some(96));
        // A day later the ring slots are reused: the old counts are gone.
        let later = a.snapshot(Window::Day, now + 86_400);
        assert!(later.series.is_empty());
        a.record_at(now + 86_400, "EU", "deny", "", "d4");
        let later = a.snapshot(Window::Day, now + 86_400);
        assert_eq!(count(&later, "EU", "allow", ""), 0);
        assert_eq!(count(&later, "EU", "deny", ""), 1);
        assert_eq!(a.recent(10).iter().map(|r| r.decision_id.as_str()).collect::<Vec<_>>(), ["d4", "d3", "d2", "d1"]);
    }

    #[test]
    fn memory_is_bounded() {
        let a = Activity::new();
        for i in 0..(MAX_KEYS + 10) {
            a.record_at(1000, &format!("J{i}"), "allow", "", &format!("d{i}"));
        }
        let s = a.snapshot(Window::Hour, 1000);
        assert_eq!(s.series.len(), MAX_KEYS);
        assert_eq!(s.overflow, 10);
        assert_eq!(a.recent(usize::MAX).len(), RECENT);
    }
}
