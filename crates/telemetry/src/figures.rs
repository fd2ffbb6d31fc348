//! The live figures of this process: a few atomics and coarse histograms
//! kept beside the Prometheus metrics, and a ring of the last
//! [`RING_SECONDS`] one-second samples taken from them, which
//! `GET /v1/admin/figures` serves to the `/ops` page and `rushhour monitor`.
//!
//! Why not read the Prometheus recorder back: its handle only renders the
//! whole text exposition, and parsing that every second to get six numbers
//! would cost more than recording them twice. Recording here is one relaxed
//! atomic add per event (two for a latency), so it can sit on the intake
//! and processor paths. Latency quantiles come from log-spaced buckets
//! (each about 19 % wide), which is the precision a dashboard needs.
//!
//! The figures are process-wide (one [`figures()`] per process), like the
//! metrics recorder: every part of the process records into the same one
//! wherever it runs, and nothing has to be threaded through the ports.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::Instant;

/// How many one-second samples the ring keeps (five minutes).
pub const RING_SECONDS: usize = 300;

/// Buckets of the latency histograms: bucket `i` holds values up to
/// `BASE_MS * 2^(i/4)`, from 50 µs to about 52 s; the last one holds the rest.
const BUCKETS: usize = 81;
const BASE_MS: f64 = 0.05;

fn bucket_upper_ms(i: usize) -> f64 {
    BASE_MS * 2f64.powf(i as f64 / 4.0)
}

fn bucket_of(ms: f64) -> usize {
    if ms <= BASE_MS {
        return 0;
    }
    let i = (4.0 * (ms / BASE_MS).log2()).ceil() as usize;
    i.min(BUCKETS - 1)
}

/// A latency histogram whose counts the sampler takes (and zeroes) each
/// second, so each sample's quantiles cover that second only.
struct Window {
    buckets: [AtomicU64; BUCKETS],
}

impl Window {
    fn new() -> Self {
        Self {
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }

    fn record(&self, ms: f64) {
        self.buckets[bucket_of(ms.max(0.0))].fetch_add(1, Relaxed);
    }

    fn take(&self) -> [u64; BUCKETS] {
        std::array::from_fn(|i| self.buckets[i].swap(0, Relaxed))
    }
}

/// The `q` quantile (0..=1) of bucket counts, as the upper bound of the
/// bucket it falls in; `None` without values.
fn quantile(counts: &[u64; BUCKETS], q: f64) -> Option<f64> {
    let total: u64 = counts.iter().sum();
    if total == 0 {
        return None;
    }
    let rank = ((total as f64) * q).ceil().max(1.0) as u64;
    let mut seen = 0;
    for (i, c) in counts.iter().enumerate() {
        seen += c;
        if seen >= rank {
            return Some(round2(bucket_upper_ms(i)));
        }
    }
    Some(round2(bucket_upper_ms(BUCKETS - 1)))
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// Where one partition's processor stands, as it last reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionFigures {
    pub partition: u32,
    pub lag: u64,
    pub next_offset: u64,
    pub end_offset: u64,
}

/// Menu cache lookups of one store since this process started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreCacheFigures {
    pub store: String,
    pub hits: u64,
    pub misses: u64,
    /// When the store's cached menu was loaded (epoch ms); `None` while
    /// nothing is cached for it.
    pub loaded_at_ms: Option<i64>,
}

#[derive(Default)]
struct CacheCounters {
    hits: AtomicU64,
    misses: AtomicU64,
    /// Epoch ms of the cached entry's load; 0 when none is cached.
    loaded_at: std::sync::atomic::AtomicI64,
}

/// One second of figures. Rates are per second; `None` where nothing was
/// measured in that second (no intake, no batch, no cache lookup).
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Epoch ms at which the sample was taken.
    pub at: i64,
    pub intake_per_sec: f64,
    pub confirmed_per_sec: f64,
    pub intake_p50_ms: Option<f64>,
    pub intake_p99_ms: Option<f64>,
    pub confirm_p50_ms: Option<f64>,
    pub confirm_p99_ms: Option<f64>,
    pub batch_size_avg: Option<f64>,
    pub cache_hit_ratio: Option<f64>,
    /// Records in the log not yet applied, over the partitions this process
    /// runs processors for.
    pub lag_total: u64,
    /// Records this process's processors set aside since it started.
    pub dead_letters: u64,
}

/// Cumulative counters as the previous sample saw them, to turn them into
/// rates.
struct Previous {
    taken: Instant,
    intake: u64,
    confirmed: u64,
    batches: u64,
    batch_records: u64,
    hits: u64,
    misses: u64,
}

/// The process's figures: what is recorded, and the ring of samples.
pub struct Figures {
    started: Instant,
    intake: AtomicU64,
    intake_ms: Window,
    confirmed: AtomicU64,
    confirm_ms: Window,
    batches: AtomicU64,
    batch_records: AtomicU64,
    cache_hits: AtomicU64,
    cache_misses: AtomicU64,
    dead_letters: AtomicU64,
    partitions: Mutex<BTreeMap<u32, PartitionFigures>>,
    /// Read-locked on every menu lookup, write-locked once per new store.
    stores: RwLock<HashMap<String, Arc<CacheCounters>>>,
    ring: Mutex<(VecDeque<Sample>, Option<Previous>)>,
}

static FIGURES: OnceLock<Figures> = OnceLock::new();

/// This process's figures.
pub fn figures() -> &'static Figures {
    FIGURES.get_or_init(Figures::new)
}

impl Figures {
    fn new() -> Self {
        Self {
            started: Instant::now(),
            intake: AtomicU64::new(0),
            intake_ms: Window::new(),
            confirmed: AtomicU64::new(0),
            confirm_ms: Window::new(),
            batches: AtomicU64::new(0),
            batch_records: AtomicU64::new(0),
            cache_hits: AtomicU64::new(0),
            cache_misses: AtomicU64::new(0),
            dead_letters: AtomicU64::new(0),
            partitions: Mutex::new(BTreeMap::new()),
            stores: RwLock::new(HashMap::new()),
            ring: Mutex::new((VecDeque::with_capacity(RING_SECONDS), None)),
        }
    }

    /// Seconds since the figures were first used (about the process's uptime).
    pub fn uptime_secs(&self) -> u64 {
        self.started.elapsed().as_secs()
    }

    /// An order accepted at intake (a 202), answered in `ms`.
    pub fn record_intake(&self, ms: f64) {
        self.intake.fetch_add(1, Relaxed);
        self.intake_ms.record(ms);
    }

    /// An order confirmed by a processor `ms` after it was placed.
    pub fn record_confirmed(&self, ms: f64) {
        self.confirmed.fetch_add(1, Relaxed);
        self.confirm_ms.record(ms);
        // The same sample for Prometheus, so alert rules can watch the
        // 202 → confirmed p99 across instances.
        metrics::histogram!(crate::names::ORDER_CONFIRM_LATENCY).record(ms / 1000.0);
    }

    /// A processor micro-batch of `records` applied.
    pub fn record_batch(&self, records: usize) {
        self.batches.fetch_add(1, Relaxed);
        self.batch_records.fetch_add(records as u64, Relaxed);
    }

    /// Records set aside as dead letters.
    pub fn record_dead_letters(&self, n: usize) {
        self.dead_letters.fetch_add(n as u64, Relaxed);
    }

    /// A partition's processor position and the log's end.
    pub fn record_partition(&self, partition: u32, next_offset: u64, end_offset: u64) {
        let p = PartitionFigures {
            partition,
            lag: end_offset.saturating_sub(next_offset),
            next_offset,
            end_offset,
        };
        self.partitions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(partition, p);
    }

    /// This process stopped processing `partition`: its figures would go stale.
    pub fn forget_partition(&self, partition: u32) {
        self.partitions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&partition);
    }

    /// A menu cache lookup for `store`.
    pub fn record_cache(&self, store: &str, hit: bool) {
        let (all, pick): (&AtomicU64, fn(&CacheCounters) -> &AtomicU64) = if hit {
            (&self.cache_hits, |c| &c.hits)
        } else {
            (&self.cache_misses, |c| &c.misses)
        };
        all.fetch_add(1, Relaxed);
        if let Some(c) = self.stores.read().unwrap_or_else(|e| e.into_inner()).get(store) {
            pick(c).fetch_add(1, Relaxed);
            return;
        }
        let mut stores = self.stores.write().unwrap_or_else(|e| e.into_inner());
        let c = stores.entry(store.to_owned()).or_default();
        pick(c).fetch_add(1, Relaxed);
    }

    /// `store`'s menu was loaded into the cache at `at_ms` (epoch ms).
    pub fn record_cache_load(&self, store: &str, at_ms: i64) {
        if let Some(c) = self.stores.read().unwrap_or_else(|e| e.into_inner()).get(store) {
            c.loaded_at.store(at_ms, Relaxed);
            return;
        }
        let mut stores = self.stores.write().unwrap_or_else(|e| e.into_inner());
        stores
            .entry(store.to_owned())
            .or_default()
            .loaded_at
            .store(at_ms, Relaxed);
    }

    /// `store`'s cached menu left the cache (expired, evicted, invalidated).
    pub fn forget_cache_entry(&self, store: &str) {
        if let Some(c) = self.stores.read().unwrap_or_else(|e| e.into_inner()).get(store) {
            c.loaded_at.store(0, Relaxed);
        }
    }

    /// Menu cache lookups per store, by store id.
    pub fn cache_stores(&self) -> Vec<StoreCacheFigures> {
        let stores = self.stores.read().unwrap_or_else(|e| e.into_inner());
        let mut out: Vec<_> = stores
            .iter()
            .map(|(store, c)| StoreCacheFigures {
                store: store.clone(),
                hits: c.hits.load(Relaxed),
                misses: c.misses.load(Relaxed),
                loaded_at_ms: Some(c.loaded_at.load(Relaxed)).filter(|&at| at > 0),
            })
            .collect();
        out.sort_by(|a, b| a.store.cmp(&b.store));
        out
    }

    /// Forget one store's cache counters (its cache entry was invalidated
    /// by an operator, who wants to watch it warm up again).
    pub fn reset_cache_store(&self, store: &str) {
        self.stores.write().unwrap_or_else(|e| e.into_inner()).remove(store);
    }

    /// The partitions this process runs processors for, by number.
    pub fn partitions(&self) -> Vec<PartitionFigures> {
        self.partitions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .copied()
            .collect()
    }

    /// Take a sample of the figures since the previous one and push it on
    /// the ring (dropping the oldest beyond [`RING_SECONDS`]). The sampler
    /// calls it every second; tests call it directly.
    pub fn sample(&self, at: i64) -> Sample {
        let mut ring = self.ring.lock().unwrap_or_else(|e| e.into_inner());
        let now = Previous {
            taken: Instant::now(),
            intake: self.intake.load(Relaxed),
            confirmed: self.confirmed.load(Relaxed),
            batches: self.batches.load(Relaxed),
            batch_records: self.batch_records.load(Relaxed),
            hits: self.cache_hits.load(Relaxed),
            misses: self.cache_misses.load(Relaxed),
        };
        let before = ring.1.take().unwrap_or(Previous {
            taken: self.started,
            intake: 0,
            confirmed: 0,
            batches: 0,
            batch_records: 0,
            hits: 0,
            misses: 0,
        });
        // A second at least: a sample taken early (a test, a late tick
        // followed by a prompt one) must not inflate the rates.
        let secs = now.taken.duration_since(before.taken).as_secs_f64().max(1.0);
        let rate = |a: u64, b: u64| round2(a.saturating_sub(b) as f64 / secs);
        let batches = now.batches.saturating_sub(before.batches);
        let lookups = (now.hits + now.misses).saturating_sub(before.hits + before.misses);
        let intake = self.intake_ms.take();
        let confirm = self.confirm_ms.take();
        let sample = Sample {
            at,
            intake_per_sec: rate(now.intake, before.intake),
            confirmed_per_sec: rate(now.confirmed, before.confirmed),
            intake_p50_ms: quantile(&intake, 0.5),
            intake_p99_ms: quantile(&intake, 0.99),
            confirm_p50_ms: quantile(&confirm, 0.5),
            confirm_p99_ms: quantile(&confirm, 0.99),
            batch_size_avg: (batches > 0)
                .then(|| round2(now.batch_records.saturating_sub(before.batch_records) as f64 / batches as f64)),
            cache_hit_ratio: (lookups > 0)
                .then(|| (now.hits.saturating_sub(before.hits) as f64 / lookups as f64 * 1000.0).round() / 1000.0),
            lag_total: self.partitions().iter().map(|p| p.lag).sum(),
            dead_letters: self.dead_letters.load(Relaxed),
        };
        ring.1 = Some(now);
        if ring.0.len() == RING_SECONDS {
            ring.0.pop_front();
        }
        ring.0.push_back(sample.clone());
        sample
    }

    /// The samples of the last `window` seconds (at most [`RING_SECONDS`]),
    /// oldest first.
    pub fn series(&self, window: usize) -> Vec<Sample> {
        let ring = self.ring.lock().unwrap_or_else(|e| e.into_inner());
        let skip = ring.0.len().saturating_sub(window.min(RING_SECONDS));
        ring.0.iter().skip(skip).cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_bound_their_values() {
        for ms in [0.01, 0.05, 0.07, 1.0, 3.3, 250.0, 10_000.0] {
            let i = bucket_of(ms);
            assert!(bucket_upper_ms(i) >= ms, "{ms} in bucket {i}");
            assert!(
                i == 0 || bucket_upper_ms(i - 1) < ms,
                "{ms} in the lowest bucket that holds it"
            );
        }
        assert_eq!(bucket_of(1e9), BUCKETS - 1);
    }

    #[test]
    fn quantiles_come_from_the_buckets() {
        let w = Window::new();
        for _ in 0..98 {
            w.record(1.0);
        }
        w.record(100.0);
        w.record(100.0);
        let counts = w.take();
        let p50 = quantile(&counts, 0.5).unwrap();
        let p99 = quantile(&counts, 0.99).unwrap();
        assert!((1.0..1.2).contains(&p50), "{p50}");
        assert!((100.0..120.0).contains(&p99), "{p99}");
        assert_eq!(quantile(&w.take(), 0.5), None, "taking empties the window");
    }

    #[test]
    fn samples_turn_counters_into_rates_and_the_ring_is_bounded() {
        let f = Figures::new();
        f.record_intake(2.0);
        f.record_intake(4.0);
        f.record_confirmed(30.0);
        f.record_batch(3);
        f.record_batch(1);
        f.record_cache("a", true);
        f.record_cache("a", true);
        f.record_cache("a", true);
        f.record_cache("b", false);
        f.record_partition(1, 10, 15);
        f.record_partition(0, 7, 7);
        f.record_dead_letters(2);
        let s = f.sample(1_000);
        assert!(s.intake_per_sec > 0.0 && s.intake_per_sec <= 2.0, "{s:?}");
        assert!(s.confirmed_per_sec > 0.0);
        assert!(s.intake_p99_ms.unwrap() >= 4.0);
        assert!(s.confirm_p50_ms.unwrap() >= 30.0);
        assert_eq!(s.batch_size_avg, Some(2.0));
        assert_eq!(s.cache_hit_ratio, Some(0.75));
        assert_eq!((s.lag_total, s.dead_letters), (5, 2));
        f.record_cache_load("a", 1_234);
        assert_eq!(
            f.cache_stores(),
            vec![
                StoreCacheFigures {
                    store: "a".into(),
                    hits: 3,
                    misses: 0,
                    loaded_at_ms: Some(1_234),
                },
                StoreCacheFigures {
                    store: "b".into(),
                    hits: 0,
                    misses: 1,
                    loaded_at_ms: None,
                },
            ]
        );
        // An eviction forgets the entry's age, not the counters.
        f.forget_cache_entry("a");
        assert_eq!((f.cache_stores()[0].loaded_at_ms, f.cache_stores()[0].hits), (None, 3));
        assert_eq!(f.partitions().iter().map(|p| p.partition).collect::<Vec<_>>(), [0, 1]);

        let quiet = f.sample(2_000);
        assert_eq!((quiet.intake_per_sec, quiet.intake_p99_ms), (0.0, None), "{quiet:?}");
        assert_eq!((quiet.batch_size_avg, quiet.cache_hit_ratio), (None, None));
        for t in 0..RING_SECONDS as i64 {
            f.sample(3_000 + t);
        }
        let all = f.series(10_000);
        assert_eq!(all.len(), RING_SECONDS);
        assert_eq!(all.last().unwrap().at, 3_000 + RING_SECONDS as i64 - 1);
        assert_eq!(f.series(5).len(), 5);
        f.reset_cache_store("a");
        f.forget_partition(1);
        assert_eq!(f.cache_stores().len(), 1);
        assert_eq!(f.partitions().len(), 1);
    }
}
