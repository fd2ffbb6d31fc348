//! `RedisLimiter`: the scale-mode `RateLimiter`, GCRA in one Lua script on
//! Redis, so every API instance draws on one budget per key.
//!
//! Each (quota, key) has one Redis key, `{prefix}:rl:{burst}:{period_ms}:
//! {key}`, holding its theoretical arrival time (TAT, microseconds) with a
//! TTL of the time until the budget is full again, after which it is
//! indistinguishable from no key at all. The script reads Redis's own
//! clock (`TIME`), so the instances share one clock as well as one budget
//! and their clock skew does not matter. It is sent by `EVALSHA` through
//! `redis::Script`, which loads it again after a Redis restart.
//!
//! The limiter must never slow down or fail a request. Every call is
//! bounded by a short timeout (50 ms by default); when Redis fails or is
//! slow, the decision comes from an in-process [`MemoryLimiter`] instead
//! (each instance then enforces the quota alone, so the fleet's budget is
//! briefly multiplied by its size, which beats refusing or slowing every
//! request). After a failure Redis is bypassed for a cooldown (a second by
//! default), so an outage costs one timeout per cooldown, not one per
//! request; the first call after the cooldown tries Redis again, which is
//! how the limiter recovers by itself. A warning is logged once per outage
//! and its end once; every fallback decision counts in
//! `telemetry::names::RATE_LIMIT_FALLBACKS`.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use dbkit::redis::{bounded, lazy_manager};
use domain::ports::{PortError, PortResult, Quota, RateDecision, RateLimiter};
use redis::Script;
use redis::aio::ConnectionManager;
use telemetry::names;

use crate::memory::{MemoryLimiter, gcra_parameters};

#[derive(Debug, Clone)]
pub struct RedisLimiterOptions {
    /// Namespace and encoding version of every key.
    pub key_prefix: String,
    /// Upper bound on one decision through Redis; past it the fallback
    /// decides.
    pub timeout: Duration,
    /// How long Redis is bypassed after it failed.
    pub cooldown: Duration,
}

impl Default for RedisLimiterOptions {
    fn default() -> Self {
        Self {
            key_prefix: "rh:v1".into(),
            timeout: Duration::from_millis(50),
            cooldown: Duration::from_secs(1),
        }
    }
}

/// KEYS: the TAT key. ARGV: emission interval (µs), burst. Returns
/// `{allowed, remaining, reset_after_us, retry_after_us}`.
///
/// GCRA as governor does it: with `tau = interval * (burst - 1)`, a request
/// at `now` is allowed when `tat - now <= tau` (the stored TAT, or `now`
/// when none or past), and then moves the TAT one interval on. Times are
/// microseconds from `TIME` (16 digits, exact in Lua's doubles), written
/// back with `%.0f` since Lua's default number format keeps 14 digits.
const GCRA: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local tau = interval * (burst - 1)
local tat = now
local stored = redis.call('GET', KEYS[1])
if stored then tat = math.max(tonumber(stored), now) end
if tat - now > tau then
  return {0, 0, tat - now, tat - now - tau}
end
local new_tat = tat + interval
local ttl_ms = math.ceil((new_tat - now) / 1000)
redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', string.format('%.0f', ttl_ms))
return {1, math.floor((tau + interval - (new_tat - now)) / interval), new_tat - now, 0}
";

pub struct RedisLimiter {
    conn: ConnectionManager,
    script: Script,
    opts: RedisLimiterOptions,
    fallback: MemoryLimiter,
    origin: Instant,
    /// Milliseconds since `origin` until which Redis is bypassed.
    bypass_until_ms: AtomicU64,
    /// Whether the last attempt at Redis failed (an outage is going on).
    degraded: AtomicBool,
}

impl std::fmt::Debug for RedisLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisLimiter")
            .field("key_prefix", &self.opts.key_prefix)
            .field("degraded", &self.degraded())
            .finish_non_exhaustive()
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

impl RedisLimiter {
    /// Returns without Redis being reachable: the connection is made on
    /// first use and re-made after failures, and until then the fallback
    /// decides. Errors only on a malformed URL.
    pub fn connect(url: &str, opts: RedisLimiterOptions) -> PortResult<Self> {
        Ok(Self {
            conn: lazy_manager(url)?,
            script: Script::new(GCRA),
            opts,
            fallback: MemoryLimiter::new(),
            origin: Instant::now(),
            bypass_until_ms: AtomicU64::new(0),
            degraded: AtomicBool::new(false),
        })
    }

    /// Whether decisions come from the in-process fallback because Redis
    /// failed last time it was asked.
    pub fn degraded(&self) -> bool {
        self.degraded.load(Ordering::Relaxed)
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn key(&self, key: &str, quota: Quota) -> String {
        format!(
            "{}:rl:{}:{}:{key}",
            self.opts.key_prefix,
            quota.burst,
            quota.period.as_millis()
        )
    }

    async fn shared(&self, key: &str, quota: Quota) -> PortResult<RateDecision> {
        let (burst, interval) = gcra_parameters(quota);
        let mut conn = self.conn.clone();
        let (allowed, remaining, reset_us, retry_us): (i64, i64, i64, i64) = bounded(
            self.opts.timeout,
            self.script
                .key(self.key(key, quota))
                .arg(micros(interval).max(1))
                .arg(burst)
                .invoke_async(&mut conn),
        )
        .await?;
        let us = |n: i64| Duration::from_micros(u64::try_from(n).unwrap_or(0));
        Ok(RateDecision {
            allowed: allowed == 1,
            limit: burst,
            remaining: u32::try_from(remaining)
                .map_err(|_| PortError::Invalid(format!("rate limit script returned remaining {remaining}")))?
                .min(burst),
            reset_after: us(reset_us),
            retry_after: us(retry_us),
        })
    }

    fn failed(&self, e: &PortError) {
        let until = self
            .now_ms()
            .saturating_add(u64::try_from(self.opts.cooldown.as_millis()).unwrap_or(u64::MAX));
        self.bypass_until_ms.store(until, Ordering::Relaxed);
        if !self.degraded.swap(true, Ordering::Relaxed) {
            tracing::warn!(error = %e, "rate limiter cannot reach redis; limiting per instance until it is back");
        }
    }

    fn recovered(&self) {
        if self.degraded.swap(false, Ordering::Relaxed) {
            tracing::info!("rate limiter reaches redis again; budgets are shared");
        }
    }
}

#[async_trait]
impl RateLimiter for RedisLimiter {
    async fn check(&self, key: &str, quota: Quota) -> RateDecision {
        if self.bypass_until_ms.load(Ordering::Relaxed) <= self.now_ms() {
            match self.shared(key, quota).await {
                Ok(decision) => {
                    self.recovered();
                    return decision;
                }
                Err(e) => self.failed(&e),
            }
        }
        metrics::counter!(names::RATE_LIMIT_FALLBACKS).increment(1);
        self.fallback.decide(key, quota)
    }

    /// Whether Redis answers now. An error here means degraded (budgets per
    /// instance), not down: `check` still answers.
    async fn health(&self) -> PortResult<()> {
        let mut conn = self.conn.clone();
        bounded(
            self.opts.timeout.max(Duration::from_millis(500)),
            redis::cmd("PING").query_async::<String>(&mut conn),
        )
        .await
        .map(drop)
    }
}
