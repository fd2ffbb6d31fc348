//! Contract suites for the `MenuCache` and `LiveFeed` ports, shared by the
//! in-process backends and the Redis ones.

use domain::events::{LiveEvent, LiveEventKind};
use domain::ids::{OrderId, StoreId};
use domain::menu::{MenuSnapshot, demo_menu};
use domain::order::OrderStatus;
use domain::ports::{FeedItem, LiveFeed, MenuCache, PortError};
use futures::StreamExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

pub type Menus = Arc<dyn MenuCache>;

fn loader(calls: Arc<AtomicUsize>) -> domain::ports::MenuLoad<'static> {
    Box::pin(async move {
        calls.fetch_add(1, Ordering::SeqCst);
        tokio::task::yield_now().await;
        Ok(Arc::new(MenuSnapshot::new(demo_menu())))
    })
}

/// A hit does not call the loader; an invalidation makes the next get load.
pub async fn loads_once_then_hits_until_invalidated(cache: Menus) {
    let store = StoreId("demo-downtown".into());
    let calls = Arc::new(AtomicUsize::new(0));
    let a = cache.get_or_load(&store, loader(calls.clone())).await.unwrap();
    let b = cache.get_or_load(&store, loader(calls.clone())).await.unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(a.etag, b.etag);
    cache.invalidate(&store).await.unwrap();
    cache.get_or_load(&store, loader(calls.clone())).await.unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    cache.clear().await.unwrap();
    cache.get_or_load(&store, loader(calls.clone())).await.unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    cache.health().await.unwrap();
}

/// Fifty concurrent misses on one store run the loader once.
pub async fn concurrent_misses_load_once(cache: Menus) {
    let store = StoreId("demo-downtown".into());
    let calls = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let (cache, store, calls) = (cache.clone(), store.clone(), calls.clone());
            tokio::spawn(async move { cache.get_or_load(&store, loader(calls)).await.unwrap().etag.clone() })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

/// A failed load is returned to the caller and not cached.
pub async fn failed_loads_are_not_cached(cache: Menus) {
    let store = StoreId("nowhere".into());
    let err = cache
        .get_or_load(&store, Box::pin(async { Err(PortError::NotFound) }))
        .await
        .unwrap_err();
    assert_eq!(err, PortError::NotFound);
    let calls = Arc::new(AtomicUsize::new(0));
    cache.get_or_load(&store, loader(calls.clone())).await.unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

fn event(id: i64) -> LiveEvent {
    LiveEvent {
        id,
        kind: LiveEventKind::Status,
        order_id: OrderId::new(),
        store: StoreId("demo-downtown".into()),
        status: OrderStatus::Confirmed,
        line: None,
        station: None,
        ticket: None,
        at: 1,
        pickup_code: None,
        name: None,
    }
}

/// Subscribers see what is published after they subscribed, in order.
pub async fn feed_delivers_in_order(feed: Arc<dyn LiveFeed>) {
    let mut a = feed.subscribe().await.unwrap();
    let mut b = feed.subscribe().await.unwrap();
    let events: Vec<_> = (1..=5).map(event).collect();
    feed.publish(&events).await.unwrap();
    for sub in [&mut a, &mut b] {
        for want in &events {
            match sub.next().await {
                Some(FeedItem::Event(got)) => assert_eq!(&got, want),
                other => panic!("expected event {}, got {other:?}", want.id),
            }
        }
    }
}
