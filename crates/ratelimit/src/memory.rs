//! `MemoryLimiter`: the in-process `RateLimiter` (embedded mode, and the
//! fallback of the Redis one), GCRA by the `governor` crate.
//!
//! One keyed governor limiter per distinct `Quota`, found in a small map:
//! quotas come from configuration (one per route class), so the map holds
//! a handful of entries and never grows with traffic. Keys do grow with
//! traffic (one entry per client address seen), so every
//! [`CLEANUP_EVERY`] decisions a limiter drops the keys whose state is
//! indistinguishable from a fresh one (`retain_recent`): memory stays
//! bounded by the clients active within one period, and a flood of
//! one-off addresses cannot grow it for good.
//!
//! The clock is governor's, injectable: production uses its default
//! monotonic clock; tests pass a `FakeRelativeClock` and move it by hand.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use domain::ports::{PortResult, Quota, RateDecision, RateLimiter};
use governor::clock::{Clock, DefaultClock, Reference};
use governor::middleware::StateInformationMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;

/// Decisions between two sweeps of a limiter's stale keys. A sweep walks
/// every key (tens of nanoseconds each), so at this spacing it costs well
/// under a microsecond per decision even with a million keys tracked.
pub const CLEANUP_EVERY: u64 = 10_000;

type Keyed<C> = governor::RateLimiter<String, DefaultKeyedStateStore<String>, C, StateInformationMiddleware>;

/// One quota's limiter.
struct Limiter<C: Clock> {
    gcra: Keyed<C>,
    burst: u32,
    /// One request's share of the period (GCRA's emission interval).
    interval: Duration,
    decisions: AtomicU64,
}

pub struct MemoryLimiter<C: Clock = DefaultClock> {
    clock: C,
    limiters: RwLock<HashMap<Quota, Arc<Limiter<C>>>>,
}

impl<C: Clock> std::fmt::Debug for MemoryLimiter<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryLimiter").finish_non_exhaustive()
    }
}

impl MemoryLimiter<DefaultClock> {
    pub fn new() -> Self {
        Self::with_clock(DefaultClock::default())
    }
}

impl Default for MemoryLimiter<DefaultClock> {
    fn default() -> Self {
        Self::new()
    }
}

/// The burst and emission interval a quota means. A burst of 0 would
/// refuse everything forever, which no configuration means; it counts as
/// 1. A zero period is one nanosecond (governor's smallest interval).
pub(crate) fn gcra_parameters(quota: Quota) -> (u32, Duration) {
    let burst = quota.burst.max(1);
    (burst, (quota.period / burst).max(Duration::from_nanos(1)))
}

impl<C: Clock + Clone> MemoryLimiter<C> {
    pub fn with_clock(clock: C) -> Self {
        Self {
            clock,
            limiters: RwLock::new(HashMap::new()),
        }
    }

    fn limiter(&self, quota: Quota) -> Arc<Limiter<C>> {
        if let Some(l) = self.limiters.read().unwrap_or_else(PoisonError::into_inner).get(&quota) {
            return l.clone();
        }
        let mut all = self.limiters.write().unwrap_or_else(PoisonError::into_inner);
        all.entry(quota)
            .or_insert_with(|| {
                let (burst, interval) = gcra_parameters(quota);
                let q = governor::Quota::with_period(interval)
                    .expect("the interval is at least a nanosecond")
                    .allow_burst(NonZeroU32::new(burst).expect("the burst is at least 1"));
                Arc::new(Limiter {
                    gcra: governor::RateLimiter::dashmap_with_clock(q, self.clock.clone())
                        .with_middleware::<StateInformationMiddleware>(),
                    burst,
                    interval,
                    decisions: AtomicU64::new(0),
                })
            })
            .clone()
    }

    /// Count one request under `key` against `quota`.
    pub fn decide(&self, key: &str, quota: Quota) -> RateDecision {
        let l = self.limiter(quota);
        if l.decisions.fetch_add(1, Ordering::Relaxed) % CLEANUP_EVERY == CLEANUP_EVERY - 1 {
            l.gcra.retain_recent();
            l.gcra.shrink_to_fit();
        }
        // Read before the decision, so the wait measured from it is never
        // shorter than the one the decision meant (with a moving clock it
        // can only be a little longer).
        let before = self.clock.now();
        match l.gcra.check_key(&key.to_owned()) {
            Ok(state) => {
                let remaining = state.remaining_burst_capacity().min(l.burst);
                RateDecision {
                    allowed: true,
                    limit: l.burst,
                    remaining,
                    // governor does not expose its theoretical arrival
                    // time; the used part of the burst, in intervals, is
                    // the full-again time rounded up to one interval.
                    reset_after: l.interval * (l.burst - remaining),
                    retry_after: Duration::ZERO,
                }
            }
            Err(refused) => {
                let earliest = refused.earliest_possible();
                let retry_after: Duration = earliest.duration_since(earliest.min(before)).into();
                RateDecision {
                    allowed: false,
                    limit: l.burst,
                    remaining: 0,
                    // Refused means the whole burst is in use: one
                    // interval after `retry_after` per request of it but
                    // the one that becomes free then.
                    reset_after: retry_after + l.interval * (l.burst - 1),
                    retry_after,
                }
            }
        }
    }

    /// Drop every key whose state is indistinguishable from a fresh one,
    /// now rather than at the next sweep.
    pub fn retain_recent(&self) {
        for l in self.limiters.read().unwrap_or_else(PoisonError::into_inner).values() {
            l.gcra.retain_recent();
            l.gcra.shrink_to_fit();
        }
    }

    /// How many keys the limiters hold state for.
    pub fn tracked_keys(&self) -> usize {
        self.limiters
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .map(|l| l.gcra.len())
            .sum()
    }
}

#[async_trait]
impl<C> RateLimiter for MemoryLimiter<C>
where
    C: Clock + Clone + Send + Sync + 'static,
    C::Instant: Send + Sync,
{
    async fn check(&self, key: &str, quota: Quota) -> RateDecision {
        self.decide(key, quota)
    }

    /// Nothing outside the process to ask.
    async fn health(&self) -> PortResult<()> {
        Ok(())
    }
}
