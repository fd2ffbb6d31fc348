//! Contract suite for the `RateLimiter` port: the behaviour every backend
//! (in process, and through Redis) must show, as plain `async fn`s taking
//! a fresh limiter. A backend's `tests/it` runs the cases one test each by
//! handing a macro to `ratelimit_contract_cases!`, or all of them with
//! `run_all`; both read the single list of cases there.
//!
//! Time: the in-process limiter takes an injectable clock, so its tests
//! move time by hand; the Redis limiter reads Redis's own clock (one clock
//! for every instance), so its tests let real time pass. A [`Subject`]
//! carries the limiter with its way of passing time, and the cases that
//! need a refill pass exactly the time the limiter itself reported
//! (`retry_after`, `reset_after`), never a guessed sleep. Real time only
//! ever adds budget, so the cases assert nothing a slow machine could
//! break: the quotas that must not refill during a case have periods of a
//! minute.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use domain::ports::{Quota, RateDecision, RateLimiter};
use futures::future::BoxFuture;

/// Lets time pass for a limiter.
pub type PassTime = Arc<dyn Fn(Duration) -> BoxFuture<'static, ()> + Send + Sync>;

/// A limiter under test and how to let time pass for it.
#[derive(Clone)]
pub struct Subject {
    pub limiter: Arc<dyn RateLimiter>,
    pub pass: PassTime,
}

/// Calls `$callback! { case, case, ... }` with every case of the suite.
#[macro_export]
macro_rules! ratelimit_contract_cases {
    ($callback:ident) => {
        $callback! {
            a_burst_is_allowed_then_refused,
            remaining_counts_down_as_reset_grows,
            keys_are_independent,
            quotas_are_independent,
            the_budget_refills_with_time,
        }
    };
}

macro_rules! case_names {
    ($($case:ident),* $(,)?) => { &[$(stringify!($case)),*] };
}

/// The names of every case, in the order `run_all` runs them.
pub const CASES: &[&str] = ratelimit_contract_cases!(case_names);

/// Run every case, each on a fresh limiter from `make`.
pub async fn run_all<F, Fut>(make: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Subject>,
{
    macro_rules! run {
        ($($case:ident),* $(,)?) => {$(
            $case(make().await).await;
        )*};
    }
    ratelimit_contract_cases!(run);
}

/// `burst` per minute: no refill a case could notice.
fn per_minute(burst: u32) -> Quota {
    Quota {
        burst,
        period: Duration::from_secs(60),
    }
}

/// Check `n` times and assert each was allowed; the decisions.
pub async fn allow_n(limiter: &dyn RateLimiter, key: &str, quota: Quota, n: u32) -> Vec<RateDecision> {
    let mut out = Vec::new();
    for i in 0..n {
        let d = limiter.check(key, quota).await;
        assert!(
            d.allowed,
            "request {} of a burst of {} under {key}: {d:?}",
            i + 1,
            quota.burst
        );
        out.push(d);
    }
    out
}

/// The whole burst goes through, the next request is refused with a wait
/// of at most one emission interval, and the decision says so in the
/// fields the `RateLimit` headers are made of.
pub async fn a_burst_is_allowed_then_refused(s: Subject) {
    let quota = per_minute(3);
    let allowed = allow_n(&*s.limiter, "ip:198.51.100.1", quota, 3).await;
    for d in &allowed {
        assert_eq!((d.limit, d.retry_after), (3, Duration::ZERO), "{d:?}");
    }
    let refused = s.limiter.check("ip:198.51.100.1", quota).await;
    assert!(!refused.allowed, "{refused:?}");
    assert_eq!((refused.limit, refused.remaining), (3, 0), "{refused:?}");
    assert!(refused.retry_after > Duration::ZERO, "{refused:?}");
    assert!(
        refused.retry_after <= quota.period / 3,
        "at most one interval: {refused:?}"
    );
    assert!(refused.reset_after >= refused.retry_after, "{refused:?}");
    assert!(refused.reset_after <= quota.period, "{refused:?}");
    let again = s.limiter.check("ip:198.51.100.1", quota).await;
    assert!(
        !again.allowed,
        "a refusal does not spend budget it does not have: {again:?}"
    );
}

/// `remaining` counts down by one per request to zero while `reset_after`
/// (until the budget is full again) grows, never past the period.
pub async fn remaining_counts_down_as_reset_grows(s: Subject) {
    let quota = per_minute(5);
    let decisions = allow_n(&*s.limiter, "key:till-3", quota, 5).await;
    let remaining: Vec<u32> = decisions.iter().map(|d| d.remaining).collect();
    assert_eq!(remaining, [4, 3, 2, 1, 0]);
    for pair in decisions.windows(2) {
        assert!(pair[1].reset_after > pair[0].reset_after, "{pair:?}");
    }
    assert!(decisions[0].reset_after > Duration::ZERO);
    assert!(decisions[4].reset_after <= quota.period, "{:?}", decisions[4]);
}

/// Spending one key's budget leaves every other key's whole.
pub async fn keys_are_independent(s: Subject) {
    let quota = per_minute(2);
    allow_n(&*s.limiter, "ip:192.0.2.1", quota, 2).await;
    assert!(!s.limiter.check("ip:192.0.2.1", quota).await.allowed);
    let other = s.limiter.check("ip:192.0.2.2", quota).await;
    assert!(other.allowed, "{other:?}");
    assert_eq!(other.remaining, 1);
}

/// One key has a separate budget under each quota (route classes with
/// their own limits), even quotas with the same burst.
pub async fn quotas_are_independent(s: Subject) {
    let key = "ip:192.0.2.9";
    let login = per_minute(2);
    allow_n(&*s.limiter, key, login, 2).await;
    assert!(!s.limiter.check(key, login).await.allowed);

    let orders = per_minute(3);
    let d = s.limiter.check(key, orders).await;
    assert!(d.allowed, "{d:?}");
    assert_eq!((d.limit, d.remaining), (3, 2));

    let same_burst = Quota {
        burst: 2,
        period: Duration::from_secs(120),
    };
    let d = s.limiter.check(key, same_burst).await;
    assert!(d.allowed, "{d:?}");
    assert_eq!((d.limit, d.remaining), (2, 1));
}

/// After a refusal, waiting the reported `retry_after` lets one more
/// through; waiting the reported `reset_after` restores the whole burst.
pub async fn the_budget_refills_with_time(s: Subject) {
    let key = "user:refill";
    let quota = Quota {
        burst: 3,
        period: Duration::from_millis(300),
    };
    // Spend until refused: under real time a slow machine may refill a
    // request or two meanwhile, which only means more were allowed.
    let mut refused = None;
    for _ in 0..50 {
        let d = s.limiter.check(key, quota).await;
        if !d.allowed {
            refused = Some(d);
            break;
        }
    }
    let refused = refused.expect("the burst runs out");
    assert!(refused.retry_after > Duration::ZERO, "{refused:?}");
    (s.pass)(refused.retry_after).await;
    let d = s.limiter.check(key, quota).await;
    assert!(d.allowed, "allowed again after retry_after: {d:?}");
    (s.pass)(d.reset_after).await;
    let d = s.limiter.check(key, quota).await;
    assert!(d.allowed, "{d:?}");
    assert_eq!(d.remaining, 2, "the whole burst is back after reset_after: {d:?}");
}
