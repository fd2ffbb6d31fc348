//! Integration tests of the ratelimit crate: the `RateLimiter` contract
//! suite (`testkit::ratelimit`) against `MemoryLimiter` on a manual clock,
//! one test per case so failures are named, plus what the suite cannot
//! see (exact decisions, odd quotas, memory kept bounded). `redis` runs the
//! same suite against `RedisLimiter`, and its outages.

mod redis;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use domain::ports::{Quota, RateDecision};
use governor::clock::FakeRelativeClock;
use ratelimit::{CLEANUP_EVERY, MemoryLimiter, RateLimitConfig};
use testkit::ratelimit::Subject;

/// A limiter on a clock that moves only when the test passes time.
fn manual() -> (Arc<MemoryLimiter<FakeRelativeClock>>, FakeRelativeClock) {
    let clock = FakeRelativeClock::default();
    (Arc::new(MemoryLimiter::with_clock(clock.clone())), clock)
}

fn subject() -> Subject {
    let (limiter, clock) = manual();
    Subject {
        limiter,
        pass: Arc::new(move |d| {
            clock.advance(d);
            Box::pin(async {})
        }),
    }
}

macro_rules! memory_contract {
    ($($case:ident),* $(,)?) => {
        mod contract {
            $(
                #[tokio::test]
                async fn $case() {
                    testkit::ratelimit::$case(super::subject()).await;
                }
            )*
        }
    };
}
testkit::ratelimit_contract_cases!(memory_contract);

#[tokio::test]
async fn run_all_runs_every_case_on_a_fresh_limiter() {
    let made = AtomicUsize::new(0);
    testkit::ratelimit::run_all(|| {
        made.fetch_add(1, Ordering::SeqCst);
        async { subject() }
    })
    .await;
    assert_eq!(made.load(Ordering::SeqCst), testkit::ratelimit::CASES.len());
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn decision(allowed: bool, remaining: u32, reset_ms: u64, retry_ms: u64) -> RateDecision {
    RateDecision {
        allowed,
        limit: 3,
        remaining,
        reset_after: ms(reset_ms),
        retry_after: ms(retry_ms),
    }
}

/// On a still clock every field is exact: 3 per 300 ms is one request per
/// 100 ms.
#[test]
fn decisions_are_exact_on_a_still_clock() {
    let (l, clock) = manual();
    let q = Quota {
        burst: 3,
        period: ms(300),
    };
    assert_eq!(l.decide("k", q), decision(true, 2, 100, 0));
    assert_eq!(l.decide("k", q), decision(true, 1, 200, 0));
    assert_eq!(l.decide("k", q), decision(true, 0, 300, 0));
    assert_eq!(l.decide("k", q), decision(false, 0, 300, 100));
    clock.advance(ms(40));
    assert_eq!(l.decide("k", q), decision(false, 0, 260, 60));
    clock.advance(ms(60));
    assert_eq!(l.decide("k", q), decision(true, 0, 300, 0));
    clock.advance(ms(1_000));
    assert_eq!(l.decide("k", q), decision(true, 2, 100, 0));
}

/// A burst of 0 would refuse everything forever; it counts as 1. A zero
/// period never refuses for long.
#[test]
fn odd_quotas_still_answer() {
    let (l, _clock) = manual();
    let none = Quota {
        burst: 0,
        period: Duration::from_secs(60),
    };
    let first = l.decide("k", none);
    assert!(first.allowed && first.limit == 1 && first.remaining == 0, "{first:?}");
    assert!(!l.decide("k", none).allowed);
    let instant = Quota {
        burst: 2,
        period: Duration::ZERO,
    };
    assert!(l.decide("k", instant).allowed);
}

/// Keys whose budget is whole again are dropped, on request and by the
/// periodic sweep, so one-off client addresses do not pile up.
#[test]
fn idle_keys_are_dropped() {
    let (l, clock) = manual();
    let q = Quota {
        burst: 5,
        period: Duration::from_secs(1),
    };
    for i in 0..1_000 {
        l.decide(&format!("ip:{i}"), q);
    }
    assert_eq!(l.tracked_keys(), 1_000);
    clock.advance(Duration::from_secs(2));
    l.retain_recent();
    assert_eq!(l.tracked_keys(), 0);

    for i in 0..1_000 {
        l.decide(&format!("ip:{i}"), q);
    }
    clock.advance(Duration::from_secs(2));
    // The sweep runs by itself every CLEANUP_EVERY decisions; these come
    // from one key, so after it only that key is left.
    for _ in 0..CLEANUP_EVERY {
        l.decide("ip:busy", q);
    }
    assert!(l.tracked_keys() <= 1, "{} keys tracked", l.tracked_keys());
}

#[tokio::test]
async fn memory_config_builds_a_healthy_limiter() {
    let l = RateLimitConfig::Memory.build().await.unwrap();
    l.health().await.unwrap();
    let q = Quota {
        burst: 1,
        period: Duration::from_secs(60),
    };
    assert!(l.check("k", q).await.allowed);
    assert!(!l.check("k", q).await.allowed);
}
