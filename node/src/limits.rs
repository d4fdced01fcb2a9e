//! Admission control: a concurrency limit that sheds load, a share of it per client, a
//! per-request timeout, and a per-client rate limit (token bucket per client address,
//! IPv6 clients per /64).

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::Status;

#[derive(Clone, Debug)]
pub struct LimitConfig {
    /// Requests served at once; more are refused with RESOURCE_EXHAUSTED, not queued.
    pub max_concurrency: usize,
    /// Requests served at once for one client address (an IPv6 client by its /64); more
    /// are refused with RESOURCE_EXHAUSTED; 0 is no limit but `max_concurrency`. Without
    /// it one client that floods, or opens calls and never reads their answers, holds
    /// every permit and every other client is refused.
    pub max_concurrency_per_client: usize,
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
            max_concurrency_per_client: DEFAULT_MAX_CONCURRENCY_PER_CLIENT,
            request_timeout: Duration::from_secs(5),
            rate_per_client: 0.0,
            rate_burst: 0.0,
        }
    }
}

/// The default share of the concurrency limit one client address may hold.
pub const DEFAULT_MAX_CONCURRENCY_PER_CLIENT: usize = 64;

/// Most clients the rate limiter keeps a bucket for. Past it, each new client makes the
/// limiter forget the client it has tracked longest (which starts again with a full
/// bucket if it comes back): memory stays under about 5 MB (some 70 bytes a client),
/// and a call costs O(1) however many addresses a client rotates through.
pub const MAX_TRACKED_CLIENTS: usize = 65_536;

pub struct Limits {
    pub config: LimitConfig,
    permits: Arc<Semaphore>,
    buckets: Mutex<Buckets>,
    /// Calls admitted and not yet answered, by client key: at most `max_concurrency`
    /// entries, since each holds a permit.
    busy: Busy,
}

/// Calls admitted per client key.
type Busy = Arc<Mutex<HashMap<IpAddr, usize>>>;

/// An admitted call's share of the concurrency limit and of its client's; both are
/// given back when it is dropped.
pub struct Permit {
    _global: OwnedSemaphorePermit,
    client: Option<(IpAddr, Busy)>,
}

impl Drop for Permit {
    fn drop(&mut self) {
        if let Some((key, busy)) = self.client.take() {
            let mut busy = busy.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(n) = busy.get_mut(&key) {
                *n -= 1;
                if *n == 0 {
                    busy.remove(&key);
                }
            }
        }
    }
}

/// Token buckets by client key, and the keys in the order they were first seen.
#[derive(Default)]
struct Buckets {
    by_client: HashMap<IpAddr, (f64, Instant)>,
    order: VecDeque<IpAddr>,
    /// Entries looked up or evicted so far: the work calls did, for tests.
    work: u64,
}

/// The key a client is rate limited under: its IPv4 address, or its IPv6 /64 (one host
/// commonly holds a whole /64, and can change addresses inside it at will).
pub fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !(u128::from(u64::MAX)))),
        },
    }
}

/// An admitted call's permit. Shared, so that it can ride in the response's extensions
/// (which must be `Clone`) and then in its body (see `server`): the call counts against
/// the concurrency limit until its answer has been sent, not only until it was made, so
/// clients that read no answers cannot pile up answers past the limit.
#[derive(Clone)]
pub struct Admitted(pub Arc<Permit>);

/// Why a call was refused before it was evaluated.
pub enum Refusal {
    Overloaded,
    /// The client already has its share of the concurrency limit.
    ClientOverloaded,
    RateLimited,
}

impl Refusal {
    pub fn reason(&self) -> &'static str {
        match self {
            Refusal::Overloaded => "overloaded",
            Refusal::ClientOverloaded => "client_overloaded",
            Refusal::RateLimited => "rate_limited",
        }
    }

    pub fn status(&self) -> Status {
        match self {
            Refusal::Overloaded => Status::resource_exhausted("server busy: concurrency limit reached, retry later"),
            Refusal::ClientOverloaded => Status::resource_exhausted(
                "too many calls from this client at once: concurrency limit per client reached, retry later",
            ),
            Refusal::RateLimited => Status::resource_exhausted("rate limit for this client exceeded, retry later"),
        }
    }
}

impl Limits {
    pub fn new(config: LimitConfig) -> Self {
        Limits {
            permits: Arc::new(Semaphore::new(config.max_concurrency.max(1))),
            buckets: Mutex::new(Buckets::default()),
            busy: Arc::new(Mutex::new(HashMap::new())),
            config,
        }
    }

    /// Admits one call from `client`, or says why not. Holding the permit counts the
    /// call against the concurrency limit and its client's share of it.
    pub fn admit(&self, client: Option<IpAddr>) -> Result<Permit, Refusal> {
        if self.config.rate_per_client > 0.0
            && let Some(ip) = client
            && !self.take_token(ip, Instant::now())
        {
            return Err(Refusal::RateLimited);
        }
        let global = self.permits.clone().try_acquire_owned().map_err(|_| Refusal::Overloaded)?;
        let cap = self.config.max_concurrency_per_client;
        let client = match client {
            Some(ip) if cap > 0 => {
                let key = client_key(ip);
                let mut busy = self.busy.lock().unwrap_or_else(|e| e.into_inner());
                let n = busy.entry(key).or_insert(0);
                if *n >= cap {
                    return Err(Refusal::ClientOverloaded);
                }
                *n += 1;
                Some((key, self.busy.clone()))
            }
            _ => None,
        };
        Ok(Permit { _global: global, client })
    }

    fn take_token(&self, ip: IpAddr, now: Instant) -> bool {
        let (rate, burst) = (self.config.rate_per_client, self.config.rate_burst.max(1.0));
        let key = client_key(ip);
        let mut b = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let b = &mut *b;
        b.work += 1;
        if !b.by_client.contains_key(&key) {
            while b.by_client.len() >= MAX_TRACKED_CLIENTS {
                let Some(oldest) = b.order.pop_front() else { break };
                b.by_client.remove(&oldest);
                b.work += 1;
            }
            b.order.push_back(key);
        }
        let (tokens, at) = b.by_client.entry(key).or_insert((burst, now));
        *tokens = (*tokens + now.saturating_duration_since(*at).as_secs_f64() * rate).min(burst);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Connections open at once, in all and per client key; see [`Connections::admit`].
///
/// Without a bound on connections a client can hold as many as the node has file
/// descriptors: each costs a task, a socket and the HTTP/2 state (about 7 KB idle, up
/// to `max_streams_per_connection` answers when it reads nothing), and once descriptors
/// run out every other client is refused at accept.
pub struct Connections {
    max_total: usize,
    max_per_client: usize,
    open: Mutex<OpenConnections>,
    on_refuse: Option<Box<dyn Fn(&'static str) + Send + Sync>>,
}

#[derive(Default)]
struct OpenConnections {
    total: usize,
    by_client: HashMap<IpAddr, usize>,
}

/// One admitted connection's place; given back when dropped (when the connection ends).
pub struct ConnectionSlot {
    key: IpAddr,
    table: Arc<Connections>,
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let mut open = self.table.open.lock().unwrap_or_else(|e| e.into_inner());
        open.total -= 1;
        if let Some(n) = open.by_client.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                open.by_client.remove(&self.key);
            }
        }
    }
}

impl Connections {
    /// `max_total` connections in all and `max_per_client` per client key (IPv4
    /// address, IPv6 /64); 0 is no limit. `on_refuse` is told each refusal's reason
    /// (`"connections"` or `"client_connections"`), for metrics.
    pub fn new(
        max_total: usize,
        max_per_client: usize,
        on_refuse: Option<Box<dyn Fn(&'static str) + Send + Sync>>,
    ) -> Arc<Self> {
        Arc::new(Connections { max_total, max_per_client, open: Mutex::new(OpenConnections::default()), on_refuse })
    }

    /// Takes a place for a connection from `peer`, or refuses it: the caller closes a
    /// refused connection at once.
    pub fn admit(self: &Arc<Self>, peer: IpAddr) -> Option<ConnectionSlot> {
        let key = client_key(peer);
        let refused = {
            let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
            let here = open.by_client.get(&key).copied().unwrap_or(0);
            if self.max_total > 0 && open.total >= self.max_total {
                Some("connections")
            } else if self.max_per_client > 0 && here >= self.max_per_client {
                Some("client_connections")
            } else {
                open.total += 1;
                *open.by_client.entry(key).or_insert(0) += 1;
                None
            }
        };
        match refused {
            None => Some(ConnectionSlot { key, table: self.clone() }),
            Some(reason) => {
                if let Some(f) = &self.on_refuse {
                    f(reason);
                }
                None
            }
        }
    }

    /// Connections open now, in all.
    pub fn open(&self) -> usize {
        self.open.lock().unwrap_or_else(|e| e.into_inner()).total
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
    fn each_client_holds_at_most_its_share_of_the_limit() {
        let config = LimitConfig { max_concurrency: 10, max_concurrency_per_client: 3, ..Default::default() };
        let l = Limits::new(config);
        let ip = |s: &str| -> Option<IpAddr> { Some(s.parse().unwrap()) };
        let a: Vec<Permit> = (0..3).map(|_| l.admit(ip("127.0.0.2")).ok().unwrap()).collect();
        assert!(matches!(l.admit(ip("127.0.0.2")), Err(Refusal::ClientOverloaded)), "one past the share");
        assert!(l.admit(ip("127.0.0.1")).is_ok(), "another client is admitted");
        let v6: Vec<Permit> = (0..3).map(|i| l.admit(ip(&format!("2001:db8::{i}"))).ok().unwrap()).collect();
        assert!(matches!(l.admit(ip("2001:db8::ffff")), Err(Refusal::ClientOverloaded)), "same /64");
        drop(a);
        assert!(l.admit(ip("127.0.0.2")).is_ok(), "answered calls give their share back");
        assert!(l.busy.lock().unwrap().get(&"127.0.0.2".parse::<IpAddr>().unwrap()).is_none());
        drop(v6);
        assert!(l.busy.lock().unwrap().is_empty(), "no entry is left for a client with no call");
        // The share never lifts the global limit; a refused call holds nothing.
        let l = Limits::new(LimitConfig { max_concurrency: 2, max_concurrency_per_client: 5, ..Default::default() });
        let _both: Vec<Permit> = (0..2).map(|_| l.admit(ip("127.0.0.3")).ok().unwrap()).collect();
        assert!(matches!(l.admit(ip("127.0.0.4")), Err(Refusal::Overloaded)));
        assert_eq!(l.busy.lock().unwrap().len(), 1);
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

    #[test]
    fn ipv6_clients_are_limited_per_64() {
        let l = Limits::new(LimitConfig { rate_per_client: 1.0, rate_burst: 1.0, ..Default::default() });
        let t0 = Instant::now();
        let ip = |s: &str| -> IpAddr { s.parse().unwrap() };
        assert!(l.take_token(ip("2001:db8:1:2::1"), t0));
        assert!(!l.take_token(ip("2001:db8:1:2:ffff:1234:5678:9abc"), t0), "same /64");
        assert!(l.take_token(ip("2001:db8:1:3::1"), t0), "another /64");
        assert!(l.take_token(ip("::ffff:192.0.2.1"), t0));
        assert!(!l.take_token(ip("192.0.2.1"), t0), "an IPv4-mapped address is its IPv4 address");
    }

    /// 200,000 clients, none of whose buckets refill during the test (the old limiter
    /// kept them all, and scanned them all on every call once it held 100,000).
    #[test]
    fn many_clients_cost_bounded_memory_and_constant_work_per_call() {
        let l = Limits::new(LimitConfig { rate_per_client: 0.001, rate_burst: 1.0, ..Default::default() });
        let t0 = Instant::now();
        let mut most = 0;
        for i in 0..200_000u32 {
            let before = l.buckets.lock().unwrap().work;
            let ip = if i % 2 == 0 {
                IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000u32 + i))
            } else {
                IpAddr::from(Ipv6Addr::from((0x2001_0db8u128 << 96) | (u128::from(i) << 64) | 1))
            };
            assert!(l.take_token(ip, t0));
            let b = l.buckets.lock().unwrap();
            most = most.max(b.work - before);
            assert!(b.by_client.len() <= MAX_TRACKED_CLIENTS);
            assert_eq!(b.order.len(), b.by_client.len());
        }
        assert!(most <= 2, "a call looked at {most} entries");
        assert_eq!(l.buckets.lock().unwrap().by_client.len(), MAX_TRACKED_CLIENTS);
        // The newest clients are still limited.
        assert!(!l.take_token(IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000u32 + 199_998)), t0));
    }

    #[test]
    fn connections_are_bounded_in_all_and_per_client() {
        let refused = Arc::new(Mutex::new(Vec::new()));
        let r = refused.clone();
        let table = Connections::new(5, 2, Some(Box::new(move |why| r.lock().unwrap().push(why))));
        let ip = |s: &str| -> IpAddr { s.parse().unwrap() };
        let a: Vec<ConnectionSlot> = (0..2).map(|_| table.admit(ip("10.0.0.1")).unwrap()).collect();
        assert!(table.admit(ip("10.0.0.1")).is_none(), "one past the client's bound");
        let v6 = table.admit(ip("2001:db8::1")).unwrap();
        let _v6b = table.admit(ip("2001:db8::2")).unwrap();
        assert!(table.admit(ip("2001:db8::3")).is_none(), "same /64");
        let _c = table.admit(ip("10.0.0.2")).unwrap();
        assert_eq!(table.open(), 5);
        assert!(table.admit(ip("10.0.0.3")).is_none(), "one past the total");
        assert_eq!(*refused.lock().unwrap(), ["client_connections", "client_connections", "connections"]);
        drop(a);
        drop(v6);
        assert_eq!(table.open(), 2);
        assert!(table.admit(ip("10.0.0.1")).is_some(), "closed connections give their places back");
        assert!(!table.open.lock().unwrap().by_client.contains_key(&ip("10.0.0.1")), "and leave no entry");
        let unbounded = Connections::new(0, 0, None);
        let _many: Vec<ConnectionSlot> = (0..1000).map(|_| unbounded.admit(ip("10.0.0.9")).unwrap()).collect();
    }
}
