//! `RedisLimiter` against a real Redis: the same contract suite as the
//! in-process limiter (on the shared server, `RUSHHOUR_TEST_REDIS_URL`, one
//! key prefix per test), two instances drawing on one budget, and the
//! promise that matters most: whatever Redis does — unreachable, paused,
//! killed and restarted — `check` answers, from the in-process fallback,
//! and goes back to the shared budget by itself.
//!
//! The outage tests run a Redis server of their own on port 6391 and stop
//! it or pause it; the machine's shared Redis is never touched.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use domain::ports::{Quota, RateLimiter};
use ratelimit::{RateLimitConfig, RedisLimiter, RedisLimiterOptions};
use testkit::ratelimit::allow_n;

const VAR: &str = "RUSHHOUR_TEST_REDIS_URL";

/// The port of the tests' own server.
const OWN_PORT: u16 = 6391;

/// A prefix no other test (or earlier run) uses.
fn prefix(test: &str) -> String {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos();
    format!("rhtest:{test}:{nanos}")
}

/// Generous per-call timeout and no cooldown: on a busy test machine a
/// 50 ms deadline could fall back now and then, which the shared-budget
/// assertions would read as a bug; the outage tests set their own.
fn options(prefix: &str) -> RedisLimiterOptions {
    RedisLimiterOptions {
        key_prefix: prefix.into(),
        timeout: Duration::from_secs(2),
        cooldown: Duration::ZERO,
    }
}

macro_rules! redis_contract {
    ($($case:ident),* $(,)?) => {
        mod contract {
            $(
                #[tokio::test]
                async fn $case() {
                    let test = concat!("ratelimit_redis_", stringify!($case));
                    let Some(url) = testkit::service_url(super::VAR, test) else {
                        return;
                    };
                    let limiter = ratelimit::RedisLimiter::connect(&url, super::options(&super::prefix(test))).unwrap();
                    let limiter = std::sync::Arc::new(limiter);
                    testkit::ratelimit::$case(testkit::ratelimit::Subject {
                        limiter: limiter.clone(),
                        // Redis keeps its own time: let real time pass.
                        pass: std::sync::Arc::new(|d| Box::pin(tokio::time::sleep(d))),
                    })
                    .await;
                    assert!(!limiter.degraded(), "every decision came from redis");
                }
            )*
        }
    };
}
testkit::ratelimit_contract_cases!(redis_contract);

const PER_MINUTE: Quota = Quota {
    burst: 4,
    period: Duration::from_secs(60),
};

/// Two instances on one Redis (two API processes) spend one budget.
async fn assert_shared(a: &RedisLimiter, b: &RedisLimiter, key: &str) {
    let remaining = [
        a.check(key, PER_MINUTE).await,
        b.check(key, PER_MINUTE).await,
        a.check(key, PER_MINUTE).await,
        b.check(key, PER_MINUTE).await,
    ]
    .map(|d| {
        assert!(d.allowed, "{d:?}");
        d.remaining
    });
    assert_eq!(remaining, [3, 2, 1, 0]);
    assert!(!a.check(key, PER_MINUTE).await.allowed);
    assert!(!b.check(key, PER_MINUTE).await.allowed);
    assert!(!a.degraded() && !b.degraded());
}

#[tokio::test]
async fn two_instances_share_one_budget() {
    let Some(url) = testkit::service_url(VAR, "two_instances_share_one_budget") else {
        return;
    };
    let p = prefix("two_instances_share_one_budget");
    let a = RedisLimiter::connect(&url, options(&p)).unwrap();
    let b = RedisLimiter::connect(&url, options(&p)).unwrap();
    assert_shared(&a, &b, "ip:203.0.113.1").await;
    a.health().await.unwrap();
}

/// `RateLimitConfig::Redis` builds a limiter on the shared budget (with
/// the production timeout and cooldown).
#[tokio::test]
async fn redis_config_builds_a_shared_limiter() {
    let Some(url) = testkit::service_url(VAR, "redis_config_builds_a_shared_limiter") else {
        return;
    };
    let config = RateLimitConfig::Redis {
        url,
        key_prefix: prefix("redis_config_builds_a_shared_limiter"),
    };
    let (a, b) = (config.build().await.unwrap(), config.build().await.unwrap());
    a.health().await.unwrap();
    let q = Quota {
        burst: 2,
        period: Duration::from_secs(60),
    };
    assert!(a.check("k", q).await.allowed);
    assert!(b.check("k", q).await.allowed);
    assert!(!a.check("k", q).await.allowed);
}

/// Nothing listening: every check still answers, from the fallback, which
/// enforces the quota per instance; health says Redis is not there.
#[tokio::test]
async fn an_unreachable_redis_falls_back_without_errors() {
    let l = RedisLimiter::connect(
        "redis://127.0.0.1:1",
        RedisLimiterOptions {
            key_prefix: "unused".into(),
            ..RedisLimiterOptions::default()
        },
    )
    .unwrap();
    let q = Quota {
        burst: 2,
        period: Duration::from_secs(60),
    };
    allow_n(&l, "k", q, 2).await;
    let refused = l.check("k", q).await;
    assert!(!refused.allowed && refused.retry_after > Duration::ZERO, "{refused:?}");
    assert!(l.degraded());
    assert!(l.health().await.is_err());
}

/// A Redis server of the test's own, stopped when dropped.
struct OwnRedis {
    child: Child,
}

impl OwnRedis {
    fn url() -> String {
        format!("redis://127.0.0.1:{OWN_PORT}")
    }

    async fn start() -> Self {
        let child = Command::new("redis-server")
            .args(["--port", &OWN_PORT.to_string(), "--bind", "127.0.0.1", "--save", ""])
            .args(["--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server on PATH (the Redis-backed tests need it)");
        let own = Self { child };
        let client = redis::Client::open(Self::url()).unwrap();
        // Waiting for another process to start listening: nothing to
        // drive, so poll, with a deadline.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(mut c) = client.get_multiplexed_async_connection().await
                && redis::cmd("PING").query_async::<String>(&mut c).await.is_ok()
            {
                return own;
            }
            assert!(
                Instant::now() < deadline,
                "redis-server on port {OWN_PORT} did not start"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn stop(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Check until a decision comes from Redis again (the limiter leaves the
/// fallback by itself once Redis answers), with a deadline.
async fn until_shared(l: &RedisLimiter, key: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        l.check(key, PER_MINUTE).await;
        if !l.degraded() {
            return;
        }
        assert!(Instant::now() < deadline, "the limiter did not go back to redis");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The one test that owns port 6391 (tests in a binary run in parallel):
/// a paused server (slow: every call times out), a killed one, and one
/// started again. Through all of it `check` answers; afterwards the two
/// instances share one budget again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outages_fall_back_and_recover_by_themselves() {
    if testkit::service_url(VAR, "outages_fall_back_and_recover_by_themselves").is_none() {
        return;
    }
    let server = OwnRedis::start().await;
    let opts = RedisLimiterOptions {
        key_prefix: "rhtest:outage".into(),
        timeout: Duration::from_millis(50),
        cooldown: Duration::ZERO,
    };
    let a = RedisLimiter::connect(&OwnRedis::url(), opts.clone()).unwrap();
    let b = RedisLimiter::connect(&OwnRedis::url(), opts).unwrap();
    until_shared(&a, "warm-up").await;
    until_shared(&b, "warm-up").await;
    assert_shared(&a, &b, "before").await;

    // Slow: the server holds every command for 2 s; a check gives up at
    // 50 ms and the fallback decides. The pause ends by itself.
    let mut admin = redis::Client::open(OwnRedis::url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let _: () = redis::cmd("CLIENT")
        .arg("PAUSE")
        .arg(2_000)
        .arg("ALL")
        .query_async(&mut admin)
        .await
        .unwrap();
    let d = a.check("paused", PER_MINUTE).await;
    assert!(d.allowed && a.degraded(), "{d:?}");
    until_shared(&a, "paused").await;

    // Down: the fallback answers, per instance.
    server.stop();
    let q = Quota {
        burst: 2,
        period: Duration::from_secs(60),
    };
    allow_n(&a, "down", q, 2).await;
    assert!(!a.check("down", q).await.allowed);
    assert!(a.degraded());
    assert!(a.health().await.is_err());

    // Back (empty: it keeps no data): shared again without a restart.
    let _server = OwnRedis::start().await;
    until_shared(&a, "back").await;
    until_shared(&b, "back").await;
    a.health().await.unwrap();
    assert_shared(&a, &b, "after").await;
}
