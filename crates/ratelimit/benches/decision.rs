//! What one rate-limit decision costs, in process (`MemoryLimiter`, the
//! embedded mode and the fallback) and through Redis (`RedisLimiter`: one
//! `EVALSHA` round trip), one at a time and 64 at once. The Redis half
//! runs when `RUSHHOUR_TEST_REDIS_URL` names a server. Run:
//! `cargo bench -p ratelimit --bench decision`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use domain::ports::{Quota, RateLimiter};
use ratelimit::{MemoryLimiter, RedisLimiter, RedisLimiterOptions};

/// Client addresses the decisions rotate over.
const KEYS: u64 = 10_000;

/// A budget no key runs out of during a run: the allowed path.
const ROOMY: Quota = Quota {
    burst: 1_000_000,
    period: Duration::from_secs(1),
};

/// A budget every key has spent after its first request: the refused path.
const SPENT: Quota = Quota {
    burst: 1,
    period: Duration::from_secs(3_600),
};

fn key(n: &AtomicU64) -> String {
    format!("ip:10.0.{}", n.fetch_add(1, Ordering::Relaxed) % KEYS)
}

fn in_process(c: &mut Criterion) {
    let mut g = c.benchmark_group("memory");
    let l = MemoryLimiter::new();
    let n = AtomicU64::new(0);
    g.bench_function("allowed", |b| b.iter(|| l.decide(&key(&n), ROOMY)));
    g.bench_function("refused", |b| b.iter(|| l.decide(&key(&n), SPENT)));
    g.finish();
}

fn through_redis(c: &mut Criterion) {
    let Some(url) = testkit::service_url("RUSHHOUR_TEST_REDIS_URL", "ratelimit bench (redis)") else {
        return;
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let l = rt.block_on(async {
        let l = RedisLimiter::connect(
            &url,
            RedisLimiterOptions {
                key_prefix: format!("rhbench:{}", std::process::id()),
                // Measure Redis, not the fallback: on a busy machine the
                // production 50 ms deadline would now and then hand a
                // decision to the in-process limiter (and bypass Redis for
                // the cooldown), which would pass for a very fast Redis.
                timeout: Duration::from_secs(2),
                cooldown: Duration::ZERO,
            },
        )
        .unwrap();
        l.health().await.unwrap();
        l
    });
    let n = AtomicU64::new(0);
    let mut g = c.benchmark_group("redis");
    g.bench_function("one_at_a_time", |b| {
        b.to_async(&rt).iter(|| async { l.check(&key(&n), ROOMY).await })
    });
    // 64 decisions in flight on the one multiplexed connection, as under
    // load; the time reported is per decision.
    g.bench_function("64_concurrent_per_decision", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            let (l, n) = (&l, &n);
            async move {
                let start = Instant::now();
                let mut left = iters;
                while left > 0 {
                    let batch = left.min(64);
                    futures::future::join_all((0..batch).map(|_| async move {
                        let k = key(n);
                        l.check(&k, ROOMY).await
                    }))
                    .await;
                    left -= batch;
                }
                start.elapsed()
            }
        })
    });
    g.finish();
    assert!(!l.degraded(), "every decision went through redis");
}

criterion_group!(benches, in_process, through_redis);
criterion_main!(benches);
