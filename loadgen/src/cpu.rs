//! CPU time from `/proc`: of a process (the target server, a baseline server, the load
//! client itself), or of the whole host (to see how much other processes took during a
//! measurement).
//!
//! `utime + stime` (fields 14 and 15 of `stat`) are in clock ticks; the tick rate is read
//! with `sysconf(_SC_CLK_TCK)` (100 on Linux in practice, so a 10 s window at full load
//! resolves CPU time to about 0.05 %).

use std::fs;
use std::time::Instant;

/// Thread name of the load client's runtime workers (at most 15 bytes: Linux truncates).
pub const CLIENT_THREADS: &str = "sg-load";

/// Whose CPU time to read.
#[derive(Clone, Copy, Debug)]
pub enum Source {
    /// A whole process, every thread it ever ran included.
    Process(u32),
    /// Every CPU of the host: busy time (user, nice, system, irq, softirq, steal).
    Host,
}

/// CPU time at one instant.
#[derive(Clone, Copy, Debug)]
pub struct Sample {
    at: Instant,
    ticks: u64,
}

/// CPU time used between two samples.
#[derive(Clone, Copy, Debug)]
pub struct Usage {
    /// CPU seconds (user plus system).
    pub cpu_secs: f64,
    /// Wall-clock seconds between the samples.
    pub wall_secs: f64,
}

impl Usage {
    pub fn between(a: Sample, b: Sample) -> Usage {
        Usage {
            cpu_secs: b.ticks.saturating_sub(a.ticks) as f64 / ticks_per_sec() as f64,
            wall_secs: b.at.duration_since(a.at).as_secs_f64(),
        }
    }

    /// Share of one core, in percent.
    pub fn percent_of_core(&self) -> f64 {
        if self.wall_secs > 0.0 { 100.0 * self.cpu_secs / self.wall_secs } else { 0.0 }
    }

    /// Microseconds of CPU per unit of work (request or decision).
    pub fn micros_per(&self, n: u64) -> Option<f64> {
        (n > 0).then(|| self.cpu_secs * 1e6 / n as f64)
    }
}

impl Source {
    /// Reads the CPU time now; `None` when `/proc` cannot be read (the process is gone).
    pub fn sample(self) -> Option<Sample> {
        let at = Instant::now();
        let ticks = match self {
            Source::Process(pid) => ticks_of(&fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)?.1,
            Source::Host => host_busy_ticks(&fs::read_to_string("/proc/stat").ok()?)?,
        };
        Some(Sample { at, ticks })
    }
}

/// The command name and `utime + stime` of a `stat` line. The name sits in parentheses
/// and may itself hold spaces or parentheses, so the fields are counted after the last `)`.
fn ticks_of(stat: &str) -> Option<(&str, u64)> {
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let comm = stat.get(open + 1..close)?;
    // After ")": field 3 (state) is the first; utime and stime are fields 14 and 15.
    let mut fields = stat.get(close + 1..)?.split_ascii_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((comm, utime + stime))
}

/// Busy ticks of all CPUs from `/proc/stat`'s first line:
/// `cpu user nice system idle iowait irq softirq steal ...`.
fn host_busy_ticks(stat: &str) -> Option<u64> {
    let line = stat.lines().next()?.strip_prefix("cpu ")?;
    let f: Vec<u64> = line.split_ascii_whitespace().take(8).map(|x| x.parse().ok()).collect::<Option<_>>()?;
    let [user, nice, system, _idle, _iowait, irq, softirq, steal] = f[..] else { return None };
    Some(user + nice + system + irq + softirq + steal)
}

/// Clock ticks per second of `/proc` times.
pub fn ticks_per_sec() -> u64 {
    // SAFETY: sysconf only reads a configuration value; it has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if n > 0 { n as u64 } else { 100 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_times_after_a_tricky_command_name() {
        let stat = "4242 (a (b) c) S 1 2 3 4 5 6 7 8 9 10 111 222 12 13 14";
        assert_eq!(ticks_of(stat), Some(("a (b) c", 333)));
    }

    #[test]
    fn host_busy_time_leaves_out_idle_and_iowait() {
        let stat = "cpu  10 1 5 1000 7 2 3 4 0 0\ncpu0 5 0 2 500 3 1 1 2 0 0\n";
        assert_eq!(host_busy_ticks(stat), Some(10 + 1 + 5 + 2 + 3 + 4));
        assert!(Source::Host.sample().is_some());
    }

    #[test]
    fn samples_this_process() {
        let me = Source::Process(std::process::id()).sample().expect("own stat");
        let later = Source::Process(std::process::id()).sample().expect("own stat");
        assert!(later.ticks >= me.ticks);
    }
}
