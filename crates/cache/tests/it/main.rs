//! Integration tests of the in-process cache and feed: the shared contract
//! suites, plus the lag signal only a bounded broadcast can show. The Redis
//! backends run the same suites in `redis`, and through TLS (`rediss://`)
//! in `tls`.

mod redis;
mod tls;

use cache::{BroadcastFeed, MemoryMenuCache};
use domain::ports::{FeedItem, LiveFeed};
use futures::StreamExt;
use std::sync::Arc;
use std::time::Duration;
use testkit::cache as contract;

fn menus() -> contract::Menus {
    Arc::new(MemoryMenuCache::new(Duration::from_secs(60), 100))
}

#[tokio::test]
async fn loads_once_then_hits_until_invalidated() {
    contract::loads_once_then_hits_until_invalidated(menus()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_misses_load_once() {
    contract::concurrent_misses_load_once(menus()).await;
}

#[tokio::test]
async fn failed_loads_are_not_cached() {
    contract::failed_loads_are_not_cached(menus()).await;
}

#[tokio::test]
async fn feed_delivers_in_order() {
    contract::feed_delivers_in_order(Arc::new(BroadcastFeed::new(64))).await;
}

#[tokio::test]
async fn slow_subscribers_are_told_they_lagged() {
    let feed = BroadcastFeed::new(2);
    let mut sub = feed.subscribe().await.unwrap();
    let events: Vec<_> = (0..5)
        .map(|i| domain::LiveEvent {
            id: i,
            kind: domain::LiveEventKind::Status,
            order_id: domain::OrderId::new(),
            store: domain::StoreId("s".into()),
            status: domain::OrderStatus::Confirmed,
            line: None,
            station: None,
            ticket: None,
            at: 0,
            pickup_code: None,
            name: None,
        })
        .collect();
    feed.publish(&events).await.unwrap();
    assert_eq!(sub.next().await, Some(FeedItem::Lagged));
}
