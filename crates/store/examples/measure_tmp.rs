//! Temporary measurement (deleted after use).
use std::time::Instant;
use domain::ports::{Decided, Decision, Store};
use store::{SqliteStore, SqliteStoreOptions, Synchronous, baseline};
use testkit::fixtures::placed_order;

#[tokio::main]
async fn main() {
    for sync in [Synchronous::Normal, Synchronous::Full] {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("s.db"), SqliteStoreOptions { synchronous: sync, read_connections: 4 }).unwrap();
        let batches = 100;
        let mut times = Vec::new();
        let mut all = Vec::new();
        for b in 0..batches {
            let orders: Vec<Decided> = (0..100).map(|i| Decided { placed: placed_order(1 + i % 4, 1), decision: Decision::Confirm }).collect();
            let t = Instant::now();
            let out = store.apply_batch("g", 0, (b + 1) * 100, &orders, &[], 2).await.unwrap();
            times.push(t.elapsed());
            assert_eq!(out.inserted, 100);
            all.push(orders);
        }
        times.sort();
        let total: std::time::Duration = times.iter().sum();
        println!("{sync:?}: apply_batch(100 orders, 250 lines): median {:?}, p90 {:?}, mean {:?} => {:.0} orders/s",
            times[batches as usize / 2], times[batches as usize * 9 / 10], total / batches as u32, (batches * 100) as f64 / total.as_secs_f64());
        let t = Instant::now();
        for o in &all[..10] { let out = store.apply_batch("g", 0, 1, o, &[], 3).await.unwrap(); assert_eq!(out.inserted, 0); }
        println!("{sync:?}: replayed batch of 100 (all skipped): mean {:?}", t.elapsed() / 10);
        let id = all[0][0].placed.order_id;
        let t = Instant::now();
        store.transition(id, domain::Action::StartLine(1), 5).await.unwrap();
        println!("{sync:?}: one transition: {:?}", t.elapsed());
        let t = Instant::now();
        for o in &all[1] { store.get_order(o.placed.order_id).await.unwrap().unwrap(); }
        println!("{sync:?}: get_order mean {:?}", t.elapsed() / 100);
    }
    {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("s.db"), SqliteStoreOptions::default()).unwrap();
        let t = Instant::now();
        for b in 0..200u64 {
            let orders = [Decided { placed: placed_order(2, 1), decision: Decision::Confirm }];
            store.apply_batch("g", 0, b, &orders, &[], 2).await.unwrap();
        }
        println!("apply_batch of 1 order: mean {:?}", t.elapsed() / 200);
        let t = Instant::now();
        for b in 0..200u64 {
            store.apply_batch("g", 0, b, &[], &[], 2).await.unwrap();
        }
        println!("apply_batch of 0 orders (position only): mean {:?}", t.elapsed() / 200);
    }
    for _ in 0..1 {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("s.db"), SqliteStoreOptions::default()).unwrap();
    let orders: Vec<Decided> = (0..10_000).map(|i| Decided { placed: placed_order(1 + i % 4, 1), decision: Decision::Confirm }).collect();
    let t = Instant::now();
    store.apply_batch("g", 0, 1, &orders, &[], 2).await.unwrap();
    let d = t.elapsed();
    println!("apply_batch 10000 orders in one batch: {d:?} => {:.0} orders/s", 10_000.0 / d.as_secs_f64());
    let orders: Vec<_> = (0..10_000).map(|i| placed_order(1 + i % 4, 1)).collect();
    let dir = tempfile::tempdir().unwrap();
    let d = baseline::raw_insert(&dir.path().join("raw.db"), &orders).unwrap();
    println!("raw_insert 10000 orders: {d:?} => {:.0} orders/s", 10_000.0 / d.as_secs_f64());
    let dir = tempfile::tempdir().unwrap();
    let d = baseline::raw_insert(&dir.path().join("raw.db"), &orders[..100]).unwrap();
    println!("raw_insert 100 orders: {d:?}");
    }
    let orders: Vec<_> = (0..10_000).map(|i| placed_order(1 + i % 4, 1)).collect();
    let dir = tempfile::tempdir().unwrap();
    let d = baseline::raw_insert(&dir.path().join("raw.db"), &orders).unwrap();
    println!("raw_insert 10000 orders: {d:?} => {:.0} orders/s", 10_000.0 / d.as_secs_f64());
}
