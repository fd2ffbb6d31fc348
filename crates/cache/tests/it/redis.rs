//! The Redis menu cache and live feed against a real Redis
//! (`RUSHHOUR_TEST_REDIS_URL`): the same contract suites as the in-process
//! backends, plus what only a shared L2 can show — two instances sharing
//! loads and invalidations, compressed values, and serving through an
//! outage. Each test uses its own key prefix so they can run in parallel on
//! one Redis.

use cache::{RedisCacheOptions, RedisFeed, RedisFeedOptions, RedisMenuCache};
use domain::StoreId;
use domain::menu::Menu;
use domain::menu::{MenuSnapshot, demo_menu};
use domain::ports::LiveFeed;
use domain::ports::{MenuCache, MenuLoad, PortError};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use testkit::cache as contract;

const VAR: &str = "RUSHHOUR_TEST_REDIS_URL";

/// A prefix no other test (or earlier run) uses.
fn prefix(test: &str) -> String {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos();
    format!("rhtest:{test}:{nanos}")
}

fn options(prefix: &str) -> RedisCacheOptions {
    RedisCacheOptions {
        // Test keys expire soon after the run instead of piling up.
        l2_ttl: Duration::from_secs(120),
        timeout: Duration::from_secs(2),
        key_prefix: prefix.into(),
        ..RedisCacheOptions::default()
    }
}

async fn menus(test: &str) -> Option<contract::Menus> {
    let url = testkit::service_url(VAR, test)?;
    Some(Arc::new(
        RedisMenuCache::connect(&url, options(&prefix(test))).await.unwrap(),
    ))
}

fn counting(calls: &Arc<AtomicUsize>, menu: Menu) -> MenuLoad<'static> {
    let calls = calls.clone();
    Box::pin(async move {
        calls.fetch_add(1, Ordering::SeqCst);
        Ok(Arc::new(MenuSnapshot::new(menu)))
    })
}

#[tokio::test]
async fn redis_loads_once_then_hits_until_invalidated() {
    let Some(cache) = menus("redis_loads_once_then_hits_until_invalidated").await else {
        return;
    };
    contract::loads_once_then_hits_until_invalidated(cache).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_concurrent_misses_load_once() {
    let Some(cache) = menus("redis_concurrent_misses_load_once").await else {
        return;
    };
    contract::concurrent_misses_load_once(cache).await;
}

#[tokio::test]
async fn redis_failed_loads_are_not_cached() {
    let Some(cache) = menus("redis_failed_loads_are_not_cached").await else {
        return;
    };
    contract::failed_loads_are_not_cached(cache).await;
}

#[tokio::test]
async fn redis_feed_delivers_in_order() {
    let Some(url) = testkit::service_url(VAR, "redis_feed_delivers_in_order") else {
        return;
    };
    let opts = RedisFeedOptions {
        capacity: 64,
        channel_prefix: prefix("redis_feed_delivers_in_order"),
        timeout: Duration::from_secs(2),
        ..RedisFeedOptions::default()
    };
    contract::feed_delivers_in_order(Arc::new(RedisFeed::connect(&url, opts).await.unwrap())).await;
}

#[tokio::test]
async fn instances_share_loads_and_invalidations() {
    let Some(url) = testkit::service_url(VAR, "instances_share_loads_and_invalidations") else {
        return;
    };
    let p = prefix("instances_share_loads_and_invalidations");
    let a = RedisMenuCache::connect(&url, options(&p)).await.unwrap();
    let b = RedisMenuCache::connect(&url, options(&p)).await.unwrap();
    let store = StoreId("demo-downtown".into());
    let (a_calls, b_calls) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));

    let from_a = a.get_or_load(&store, counting(&a_calls, demo_menu())).await.unwrap();
    let from_b = b.get_or_load(&store, counting(&b_calls, demo_menu())).await.unwrap();
    assert_eq!(a_calls.load(Ordering::SeqCst), 1);
    assert_eq!(b_calls.load(Ordering::SeqCst), 0, "B found A's load in Redis");
    assert_eq!(from_a.etag, from_b.etag, "the snapshot is rebuilt identically");
    assert_eq!(from_b.item("latte").unwrap().name, "Caffè Latte");

    // B now holds the menu in its L1. A's invalidation reaches B over pub/sub,
    // which is asynchronous: poll B with a deadline until it reloads.
    let mut changed = demo_menu();
    changed.items[0].available = false;
    a.invalidate(&store).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    let reloaded = loop {
        let got = b
            .get_or_load(&store, counting(&b_calls, changed.clone()))
            .await
            .unwrap();
        if b_calls.load(Ordering::SeqCst) == 1 {
            break got;
        }
        assert!(Instant::now() < deadline, "B never saw A's invalidation");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert!(!reloaded.item("espresso").unwrap().available);
    assert_ne!(reloaded.etag, from_a.etag);
}

#[tokio::test]
async fn large_menus_are_compressed_in_redis_and_read_back() {
    let Some(url) = testkit::service_url(VAR, "large_menus_are_compressed_in_redis_and_read_back") else {
        return;
    };
    let p = prefix("large_menus_are_compressed_in_redis_and_read_back");
    let a = RedisMenuCache::connect(&url, options(&p)).await.unwrap();
    let b = RedisMenuCache::connect(&url, options(&p)).await.unwrap();
    let mut big = demo_menu();
    let template = big.items[0].clone();
    for i in 0..500 {
        let mut item = template.clone();
        item.sku = format!("sku-{i}");
        item.name = format!("Seasonal special number {i}");
        big.items.push(item);
    }
    let json_len = serde_json::to_vec(&big).unwrap().len();
    let store = big.store.id.clone();
    let calls = Arc::new(AtomicUsize::new(0));
    let loaded = a.get_or_load(&store, counting(&calls, big.clone())).await.unwrap();

    let client = redis::Client::open(url.as_str()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let raw: Vec<u8> = redis::cmd("GET")
        .arg(format!("{p}:menu:{}", store.0))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(raw[0], 1, "flagged as lz4");
    assert!(
        raw.len() < json_len / 2,
        "{} bytes stored for {json_len} bytes of JSON",
        raw.len()
    );

    let read = b.get_or_load(&store, counting(&calls, demo_menu())).await.unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 1, "B read A's compressed entry");
    assert_eq!(read.menu, big);
    assert_eq!(read.etag, loaded.etag);
}

/// Needs no Redis, so it always runs: the point is that there is none.
#[tokio::test]
async fn unreachable_redis_serves_from_the_loader_without_errors() {
    let opts = RedisCacheOptions {
        timeout: Duration::from_millis(300),
        ..options(&prefix("unreachable"))
    };
    let cache = RedisMenuCache::connect("redis://127.0.0.1:1", opts)
        .await
        .expect("connects lazily");
    let store = StoreId("demo-downtown".into());
    let calls = Arc::new(AtomicUsize::new(0));
    let got = cache.get_or_load(&store, counting(&calls, demo_menu())).await.unwrap();
    assert_eq!(got.store().id, store);
    cache.get_or_load(&store, counting(&calls, demo_menu())).await.unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 1, "L1 still caches while Redis is down");
    cache.invalidate(&store).await.unwrap();
    cache.get_or_load(&store, counting(&calls, demo_menu())).await.unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 2, "invalidate dropped L1");
    cache.clear().await.unwrap();
    assert!(matches!(cache.health().await, Err(PortError::Unavailable(_))));

    // The feed starts too; publishing reports the outage to the caller
    // (who decides whether a lost notification matters).
    let feed_opts = RedisFeedOptions {
        timeout: Duration::from_millis(300),
        ..RedisFeedOptions::default()
    };
    let feed = RedisFeed::connect("redis://127.0.0.1:1", feed_opts)
        .await
        .expect("connects lazily");
    let _sub = feed.subscribe().await.expect("subscribing joins the local channel");
    let event = domain::LiveEvent {
        id: 1,
        kind: domain::LiveEventKind::Status,
        order_id: domain::OrderId::new(),
        store: store.clone(),
        status: domain::order::OrderStatus::Confirmed,
        line: None,
        station: None,
        ticket: None,
        at: 0,
        pickup_code: None,
        name: None,
    };
    assert!(matches!(feed.publish(&[event]).await, Err(PortError::Unavailable(_))));
}

#[tokio::test]
async fn malformed_urls_are_refused() {
    let err = RedisMenuCache::connect("not a url", RedisCacheOptions::default())
        .await
        .err()
        .unwrap();
    assert!(matches!(err, PortError::Invalid(_)), "{err:?}");
}
