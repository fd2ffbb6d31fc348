//! Recording outcomes while the load runs, and turning them into the report.
//!
//! Workers record into a few mutex-guarded shards rather than one histogram
//! per worker: a rush run has 256 workers and an HDR histogram at 3
//! significant digits is tens of KiB, so per-worker histograms would cost
//! megabytes and a long merge, while a shard lock is held for a few
//! nanoseconds and contended only by the runtime's few threads. A single
//! global lock was rejected for the same reason in reverse: every request of
//! every thread would serialize on it.

use std::collections::BTreeMap;
use std::fmt::{self, Write as _};
use std::sync::Mutex;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

use super::config::Op;

/// Why a request did not count as a success. `Ord` so the report lists
/// kinds in a stable order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ErrorKind {
    /// An unexpected HTTP status (503 is `Outcome::Shed`, not an error).
    Status(u16),
    Timeout,
    Connect,
    /// The response body broke off.
    Body,
    /// A success status with a body we could not read (no order id).
    Decode,
    /// Any other transport failure.
    Transport,
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ErrorKind::Status(code) => write!(f, "status_{code}"),
            ErrorKind::Timeout => f.write_str("timeout"),
            ErrorKind::Connect => f.write_str("connect"),
            ErrorKind::Body => f.write_str("body"),
            ErrorKind::Decode => f.write_str("decode"),
            ErrorKind::Transport => f.write_str("transport"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    /// 503 + `Retry-After`: the server protecting itself, which is working as
    /// designed, so it is reported apart from errors.
    Shed,
    Error(ErrorKind),
}

/// Counters and the latency histogram of one operation.
#[derive(Debug, Clone)]
pub struct OpStats {
    /// Latency of successful requests in microseconds. Sheds and errors are
    /// left out: a fast 503 would otherwise flatter the percentiles.
    pub hist: Histogram<u64>,
    pub count: u64,
    pub ok: u64,
    pub shed: u64,
    pub errors: BTreeMap<ErrorKind, u64>,
}

impl Default for OpStats {
    fn default() -> Self {
        Self {
            // Auto-resizing from the smallest size: most runs never see a
            // latency above a second, so most histograms stay small.
            hist: Histogram::new(3).expect("3 significant digits is valid"),
            count: 0,
            ok: 0,
            shed: 0,
            errors: BTreeMap::new(),
        }
    }
}

impl OpStats {
    pub fn record(&mut self, outcome: Outcome, latency: Duration) {
        self.count += 1;
        match outcome {
            Outcome::Ok => {
                self.ok += 1;
                // Clamped to [1 µs, 1 h]: 1 µs is the lowest trackable value,
                // and the cap bounds how far one absurd value can grow the
                // histogram. `record` (not `saturating_record`, which clamps
                // to the current size instead of growing) lets it resize.
                let us = u64::try_from(latency.as_micros())
                    .unwrap_or(u64::MAX)
                    .clamp(1, MAX_LATENCY_US);
                if self.hist.record(us).is_err() {
                    self.hist.saturating_record(us);
                }
            }
            Outcome::Shed => self.shed += 1,
            Outcome::Error(kind) => *self.errors.entry(kind).or_default() += 1,
        }
    }

    pub fn merge(&mut self, other: &OpStats) {
        self.hist.add(&other.hist).expect("auto-resizing histograms always add");
        self.count += other.count;
        self.ok += other.ok;
        self.shed += other.shed;
        for (kind, n) in &other.errors {
            *self.errors.entry(*kind).or_default() += n;
        }
    }

    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }
}

type Shard = [OpStats; Op::COUNT];

/// One hour in microseconds; far beyond any request timeout.
const MAX_LATENCY_US: u64 = 3_600_000_000;

/// Shared, sharded recorder; see the module comment for why shards.
#[derive(Debug)]
pub struct Recorder {
    shards: Box<[Mutex<Shard>]>,
}

impl Recorder {
    pub fn new(shards: usize) -> Self {
        Self {
            shards: (0..shards.max(1)).map(|_| Mutex::new(Shard::default())).collect(),
        }
    }

    pub fn record(&self, worker: usize, op: Op, outcome: Outcome, latency: Duration) {
        let shard = &self.shards[worker % self.shards.len()];
        // A poisoned shard only means another worker panicked mid-record;
        // the counters are still usable for the report.
        let mut shard = shard.lock().unwrap_or_else(|e| e.into_inner());
        shard[op.index()].record(outcome, latency);
    }

    /// Merge all shards into one `OpStats` per operation.
    pub fn snapshot(&self) -> Shard {
        let mut out = Shard::default();
        for shard in self.shards.iter() {
            let shard = shard.lock().unwrap_or_else(|e| e.into_inner());
            for (acc, s) in out.iter_mut().zip(shard.iter()) {
                acc.merge(s);
            }
        }
        out
    }
}

/// Latency percentiles in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Latency {
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
    pub mean: f64,
}

impl Latency {
    /// `None` for an empty histogram: there are no percentiles of nothing,
    /// and printing zeros would read as "instant".
    pub fn from_histogram(h: &Histogram<u64>) -> Option<Self> {
        if h.is_empty() {
            return None;
        }
        // Both the quantiles and `max` report the top of the bucket a value
        // fell into, so they agree with each other at every scale.
        Some(Self {
            p50: h.value_at_quantile(0.50),
            p90: h.value_at_quantile(0.90),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            max: h.max(),
            mean: h.mean(),
        })
    }
}

/// One line of the report: an operation, or `overall`.
#[derive(Debug, Clone, Serialize)]
pub struct OpReport {
    pub op: String,
    pub count: u64,
    pub ok: u64,
    pub shed: u64,
    pub errors: u64,
    /// Errors by kind, e.g. `status_500`, `timeout`.
    pub errors_by_kind: BTreeMap<String, u64>,
    /// All completed requests per second of the measured window.
    pub rps: f64,
    /// Successful requests per second (202/s for orders).
    pub ok_rps: f64,
    /// Successful requests only; absent when there were none.
    pub latency_us: Option<Latency>,
}

impl OpReport {
    pub fn new(op: &str, stats: &OpStats, window: Duration) -> Self {
        let secs = window.as_secs_f64();
        let per_sec = |n: u64| if secs > 0.0 { n as f64 / secs } else { 0.0 };
        Self {
            op: op.to_owned(),
            count: stats.count,
            ok: stats.ok,
            shed: stats.shed,
            errors: stats.error_count(),
            errors_by_kind: stats.errors.iter().map(|(k, n)| (k.to_string(), *n)).collect(),
            rps: per_sec(stats.count),
            ok_rps: per_sec(stats.ok),
            latency_us: Latency::from_histogram(&stats.hist),
        }
    }
}

/// `850µs`, `12.3ms`, `1.20s`: three significant-ish digits at every scale.
pub fn fmt_us(us: u64) -> String {
    match us {
        0..1_000 => format!("{us}µs"),
        1_000..10_000 => format!("{:.2}ms", us as f64 / 1e3),
        10_000..1_000_000 => format!("{:.1}ms", us as f64 / 1e3),
        _ => format!("{:.2}s", us as f64 / 1e6),
    }
}

/// The human table for one run: one row per operation plus `overall`.
pub fn render_table(rows: &[OpReport]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<8} {:>9} {:>9} {:>7} {:>7} {:>10} {:>10} {:>8} {:>8} {:>8} {:>8} {:>8}",
        "op", "count", "ok", "shed", "errors", "req/s", "ok/s", "p50", "p90", "p99", "p99.9", "max"
    );
    for r in rows {
        let lat = |f: fn(&Latency) -> u64| r.latency_us.as_ref().map_or_else(|| "-".to_owned(), |l| fmt_us(f(l)));
        let _ = writeln!(
            out,
            "{:<8} {:>9} {:>9} {:>7} {:>7} {:>10.1} {:>10.1} {:>8} {:>8} {:>8} {:>8} {:>8}",
            r.op,
            r.count,
            r.ok,
            r.shed,
            r.errors,
            r.rps,
            r.ok_rps,
            lat(|l| l.p50),
            lat(|l| l.p90),
            lat(|l| l.p99),
            lat(|l| l.p999),
            lat(|l| l.max),
        );
    }
    for r in rows
        .iter()
        .filter(|r| r.op != "overall" && !r.errors_by_kind.is_empty())
    {
        let kinds: Vec<String> = r.errors_by_kind.iter().map(|(k, n)| format!("{k}={n}")).collect();
        let _ = writeln!(out, "errors[{}]: {}", r.op, kinds.join(", "));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn us(n: u64) -> Duration {
        Duration::from_micros(n)
    }

    #[test]
    fn percentiles_come_from_the_histogram() {
        let mut s = OpStats::default();
        // 1..=1000 µs, one each: pXX is XX% of the way up.
        for v in 1..=1000 {
            s.record(Outcome::Ok, us(v));
        }
        let l = Latency::from_histogram(&s.hist).unwrap();
        assert_eq!(l.p50, 500);
        assert_eq!(l.p90, 900);
        assert_eq!(l.p99, 990);
        assert_eq!(l.p999, 999);
        assert_eq!(l.max, 1000);
        assert!((l.mean - 500.5).abs() < 0.5);
    }

    #[test]
    fn percentiles_keep_three_digits_at_large_values() {
        let mut s = OpStats::default();
        for _ in 0..99 {
            s.record(Outcome::Ok, us(2_000));
        }
        s.record(Outcome::Ok, Duration::from_secs(3));
        let l = Latency::from_histogram(&s.hist).unwrap();
        assert_eq!(l.p50, 2_000);
        assert_eq!(l.p99, 2_000);
        // 3 s recorded at 3 significant digits: within 0.1 %.
        assert!(l.max.abs_diff(3_000_000) <= 3_000, "max {}", l.max);
    }

    #[test]
    fn sheds_and_errors_are_counted_but_not_timed() {
        let mut s = OpStats::default();
        s.record(Outcome::Ok, us(100));
        s.record(Outcome::Shed, us(1));
        s.record(Outcome::Error(ErrorKind::Status(500)), us(1));
        s.record(Outcome::Error(ErrorKind::Status(500)), us(1));
        s.record(Outcome::Error(ErrorKind::Timeout), us(1));
        assert_eq!((s.count, s.ok, s.shed, s.error_count()), (5, 1, 1, 3));
        assert_eq!(s.hist.len(), 1);
        let r = OpReport::new("orders", &s, Duration::from_secs(2));
        assert_eq!(r.rps, 2.5);
        assert_eq!(r.ok_rps, 0.5);
        assert_eq!(r.errors_by_kind["status_500"], 2);
        assert_eq!(r.errors_by_kind["timeout"], 1);
        assert_eq!(r.latency_us.unwrap().p50, 100);
    }

    #[test]
    fn empty_histogram_has_no_percentiles() {
        let r = OpReport::new("live", &OpStats::default(), Duration::from_secs(1));
        assert!(r.latency_us.is_none());
        assert!(render_table(&[r]).contains(" -"));
    }

    #[test]
    fn shards_merge_into_one_view() {
        let rec = Recorder::new(4);
        for worker in 0..10 {
            rec.record(worker, Op::Menu, Outcome::Ok, us(10 * (worker as u64 + 1)));
        }
        rec.record(3, Op::Orders, Outcome::Shed, us(5));
        let snap = rec.snapshot();
        assert_eq!(snap[Op::Menu.index()].ok, 10);
        assert_eq!(snap[Op::Menu.index()].hist.max(), 100);
        assert_eq!(snap[Op::Orders.index()].shed, 1);
        assert_eq!(snap[Op::Live.index()].count, 0);
    }

    #[test]
    fn durations_print_at_a_readable_scale() {
        assert_eq!(fmt_us(850), "850µs");
        assert_eq!(fmt_us(1_234), "1.23ms");
        assert_eq!(fmt_us(12_345), "12.3ms");
        assert_eq!(fmt_us(1_200_000), "1.20s");
    }
}
