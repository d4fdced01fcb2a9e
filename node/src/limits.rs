//! Admission control: a concurrency limit that sheds load, a per-request timeout, and a
//! per-client rate limit (token bucket per client address).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::Status;

#[derive(Clone, Debug)]
pub struct LimitConfig {
    /// Requests served at once; more are refused with RESOURCE_EXHAUSTED, not queued.
    pub max_concurrency: usize,
    /// Server time allowed per call; past it the call fails with DEADLINE_EXCEEDED.
    pub request_timeout: Duration,
    /// Sustained calls per second per client address; 0 turns the limit off.
    pub rate_per_client: f64,
    /// Calls a client may make in a burst above the sustained rate.
    pub rate_burst: f64,
}

impl Default for LimitConfig {
    fn default() -> Self {
        LimitConfig {
            max_concurrency: 1024,
            request_timeout: Duration::from_secs(5),
            rate_per_client: 0.0,
            rate_burst: 0.0,
        }
    }
}

pub struct Limits {
    pub config: LimitConfig,
    permits: Arc<Semaphore>,
    buckets: Mutex<HashMap<IpAddr, (f64, Instant)>>,
}

/// Why a call was refused before it was evaluated.
pub enum Refusal {
    Overloaded,
    RateLimited,
}

impl Refusal {
    pub fn reason(&self) -> &'static str {
        match self {
            Refusal::Overloaded => "overloaded",
            Refusal::RateLimited => "rate_limited",
        }
    }

    pub fn status(&self) -> Status {
        match self {
            Refusal::Overloaded => Status::resource_exhausted("server busy: concurrency limit reached, retry later"),
            Refusal::RateLimited => Status::resource_exhausted("rate limit for this client exceeded, retry later"),
        }
    }
}

impl Limits {
    pub fn new(config: LimitConfig) -> Self {
        Limits {
            permits: Arc::new(Semaphore::new(config.max_concurrency.max(1))),
            buckets: Mutex::new(HashMap::new()),
            config,
        }
    }

    /// Admits one call from `client`, or says why not. Holding the permit counts the
    /// call against the concurrency limit.
    pub fn admit(&self, client: Option<IpAddr>) -> Result<OwnedSemaphorePermit, Refusal> {
        if self.config.rate_per_client > 0.0
            && let Some(ip) = client
            && !self.take_token(ip, Instant::now())
        {
            return Err(Refusal::RateLimited);
        }
        self.permits.clone().try_acquire_owned().map_err(|_| Refusal::Overloaded)
    }

    fn take_token(&self, ip: IpAddr, now: Instant) -> bool {
        let (rate, burst) = (self.config.rate_per_client, self.config.rate_burst.max(1.0));
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if buckets.len() > 100_000 {
            // Forget clients idle long enough to have a full bucket again.
            buckets.retain(|_, (tokens, at)| *tokens + now.duration_since(*at).as_secs_f64() * rate < burst);
        }
        let (tokens, at) = buckets.entry(ip).or_insert((burst, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * rate).min(burst);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sheds_load_past_the_concurrency_limit() {
        let l = Limits::new(LimitConfig { max_concurrency: 2, ..Default::default() });
        let a = l.admit(None).ok().unwrap();
        let _b = l.admit(None).ok().unwrap();
        assert!(matches!(l.admit(None), Err(Refusal::Overloaded)));
        drop(a);
        assert!(l.admit(None).is_ok());
    }

    #[test]
    fn rate_limits_each_client_separately() {
        let l = Limits::new(LimitConfig { rate_per_client: 1.0, rate_burst: 3.0, ..Default::default() });
        let (a, b): (IpAddr, IpAddr) = ("127.0.0.1".parse().unwrap(), "127.0.0.2".parse().unwrap());
        let t0 = Instant::now();
        assert!((0..3).all(|_| l.take_token(a, t0)));
        assert!(!l.take_token(a, t0));
        assert!(l.take_token(b, t0));
        assert!(l.take_token(a, t0 + Duration::from_millis(1100)));
    }
}
