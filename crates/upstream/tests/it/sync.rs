//! The sync procedures end to end: simulator → `UpstreamClient` →
//! `domain::sync` → a real store and the in-process menu cache.
//!
//! Each scenario is one function over `&dyn Store`, run against
//! `SqliteStore` and (when `RUSHHOUR_TEST_POSTGRES_URL` is set) `PgStore`.
//! Query counts are asserted; wall time is only printed (speed belongs to
//! benchmarks).

use cache::MemoryMenuCache;
use domain::ids::StoreId;
use domain::menu::{Menu, MenuSnapshot, StoreInfo, demo_menu};
use domain::ports::{AccountStore, MenuCache, MenuStore, OpsStore, Store};
use domain::sync::{self, NoProgress, naive_queries};
use std::sync::Arc;
use std::time::{Duration, Instant};
use store::{PgStore, PgStoreOptions, SqliteStore, SqliteStoreOptions};
use upstream::{Simulator, UpstreamClient, UpstreamOptions};

use crate::support::{Recorder, client_config, sim_config, start};
use testkit::clock::ManualClock;

const PG_URL: &str = "RUSHHOUR_TEST_POSTGRES_URL";

fn sqlite() -> (tempfile::TempDir, SqliteStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("store.db"), SqliteStoreOptions::default()).unwrap();
    (dir, store)
}

/// A PostgreSQL store in a schema of its own; drop it with `drop_schema`.
async fn postgres(test: &str) -> Option<(String, String, PgStore)> {
    let url = testkit::service_url(PG_URL, test)?;
    let schema = format!("rh_test_{}", uuid::Uuid::now_v7().simple());
    let store = PgStore::connect(
        &url,
        PgStoreOptions {
            max_connections: 4,
            schema: Some(schema.clone()),
            ..PgStoreOptions::default()
        },
    )
    .await
    .expect("connect");
    store.migrate().await.expect("migrate");
    Some((url, schema, store))
}

async fn cached(cache: &MemoryMenuCache, store: &dyn Store, id: &StoreId) -> Arc<MenuSnapshot> {
    cache
        .get_or_load(
            id,
            Box::pin(async move {
                let menu = store.load_menu(id).await?.expect("store exists");
                Ok(Arc::new(MenuSnapshot::new(menu)))
            }),
        )
        .await
        .unwrap()
}

/// A second store whose menu has one catalog item (changed) and one the
/// catalog does not know.
fn uptown() -> Menu {
    let demo = demo_menu();
    let mut latte = demo.items.iter().find(|i| i.sku == "latte").unwrap().clone();
    latte.sizes[0].price = 999;
    let mut house = latte.clone();
    house.sku = "house-blend".into();
    Menu {
        store: StoreInfo {
            id: StoreId("uptown".into()),
            name: "Uptown".into(),
            ..demo.store.clone()
        },
        categories: demo.categories.clone(),
        items: vec![latte, house],
    }
}

async fn menu_scenario(store: &dyn Store) {
    let (sim, client) = start(10).await;
    let menus = MemoryMenuCache::new(Duration::from_secs(600), 100);
    let clock = ManualClock::at_system_now();
    let demo = demo_menu();
    let demo_id = demo.store.id.clone();
    store.upsert_menu(&demo).await.unwrap();
    store.upsert_menu(&uptown()).await.unwrap();
    assert!(store.set_availability(&demo_id, "latte", false).await.unwrap());
    assert_eq!(cached(&menus, store, &demo_id).await.menu.items.len(), 16, "cache warm");

    // First run: the demo store gains the 184 items it lacks (its 16 are
    // the catalog's already); uptown gains 199, gets latte's price back
    // (200 upserts) and loses house-blend (1 removal).
    let run = sync::sync_menu(store, &menus, &client, &*clock, &NoProgress)
        .await
        .unwrap();
    assert_eq!(run.outcome, "ok");
    assert_eq!(run.fetched, 200);
    assert_eq!(run.changed, 184 + 200 + 1);
    // cursor, list, 2 × (load + apply), cursor, record
    assert_eq!(run.db_queries, 8);
    let menu = store.load_menu(&demo_id).await.unwrap().unwrap();
    assert_eq!(menu.items.len(), 200);
    assert!(menu.categories.iter().any(|c| c.code == "seasonal"));
    let latte = menu.items.iter().find(|i| i.sku == "latte").unwrap();
    assert!(!latte.available, "an 86'd item stays 86'd");
    assert_eq!(
        cached(&menus, store, &demo_id).await.menu.items.len(),
        200,
        "cache invalidated"
    );
    let up = store.load_menu(&StoreId("uptown".into())).await.unwrap().unwrap();
    assert_eq!(up.items.len(), 200);
    assert!(up.items.iter().all(|i| i.sku != "house-blend"));
    assert_eq!(up.items.iter().find(|i| i.sku == "latte").unwrap().sizes, latte.sizes);

    // Unchanged catalog: one 304, nothing read or written but the cursor.
    let run = sync::sync_menu(store, &menus, &client, &*clock, &NoProgress)
        .await
        .unwrap();
    assert_eq!(
        (run.outcome.as_str(), run.fetched, run.changed, run.db_queries),
        ("not_modified", 0, 0, 2)
    );
    assert_eq!(sim.stats().not_modified, 1);

    // Five price changes upstream, one of them on an item the store 86'd.
    let skus = sim.mutate_items(5);
    assert!(store.set_availability(&demo_id, &skus[0], false).await.unwrap());
    let run = sync::sync_menu(store, &menus, &client, &*clock, &NoProgress)
        .await
        .unwrap();
    assert_eq!((run.outcome.as_str(), run.fetched, run.changed), ("ok", 200, 5 * 2));
    let menu = cached(&menus, store, &demo_id).await;
    for sku in &skus {
        assert_eq!(
            menu.item(sku).unwrap().sizes,
            sim.item(sku).unwrap().sizes,
            "{sku} repriced"
        );
    }
    assert!(!menu.item(&skus[0]).unwrap().available, "repriced and still 86'd");
    assert!(!menu.item("latte").unwrap().available);
    assert_eq!(
        store.sync_cursor(sync::MENU).await.unwrap().as_deref(),
        Some(sim.catalog_etag().as_str())
    );
    let runs = store.sync_runs(Some(sync::MENU), 10).await.unwrap();
    let outcomes: Vec<&str> = runs.iter().map(|r| r.outcome.as_str()).collect();
    assert_eq!(outcomes, ["ok", "not_modified", "ok"], "newest first");
}

async fn accounts_scenario(store: &dyn Store, backend: &str) {
    const ACCOUNTS: usize = 150_000;
    const PAGE: u32 = 1000;
    let (sim, client) = start(ACCOUNTS).await;
    let clock = ManualClock::at_system_now();
    let progress = Recorder::default();

    let started = Instant::now();
    let first = sync::sync_accounts(store, &client, &*clock, PAGE, &progress)
        .await
        .unwrap();
    let took = started.elapsed();
    assert_eq!(first.outcome, "ok");
    assert_eq!((first.fetched, first.changed), (ACCOUNTS as u64, ACCOUNTS as u64));
    assert_eq!(store.count_accounts().await.unwrap(), ACCOUNTS as u64);
    // cursor + one upsert per page + record
    assert_eq!(first.db_queries, 1 + ACCOUNTS as u64 / u64::from(PAGE) + 1);
    assert_eq!(progress.get(), (ACCOUNTS as u64, ACCOUNTS as u64));
    eprintln!(
        "[{backend}] first accounts sync: {ACCOUNTS} accounts in {took:?}, {} db queries (naive: {})",
        first.db_queries,
        naive_queries(&first)
    );

    // 1000 accounts change: only they are fetched and written.
    let ids = sim.mutate_accounts(1000);
    let started = Instant::now();
    let second = sync::sync_accounts(store, &client, &*clock, PAGE, &NoProgress)
        .await
        .unwrap();
    let took = started.elapsed();
    assert_eq!((second.fetched, second.changed), (1000, 1000));
    assert_eq!(second.db_queries, 3, "cursor, one bulk upsert, record");
    assert!(
        naive_queries(&second) >= 13 * second.db_queries,
        "{} queries vs {} naive",
        second.db_queries,
        naive_queries(&second)
    );
    // Seed 002's "before" fetched every account and looked each one up.
    let full_scan = ACCOUNTS as u64 + second.changed;
    eprintln!(
        "[{backend}] incremental sync: 1000 changes in {took:?}, {} db queries (naive per change: {}, naive full scan: {})",
        second.db_queries,
        naive_queries(&second),
        full_scan
    );
    for id in ids.iter().step_by(97) {
        let want = sim.account(id).unwrap();
        let got = store.loyalty_account(id).await.unwrap().unwrap();
        assert_eq!(
            (got.points, got.tier.as_str(), got.version),
            (want.points, want.tier.as_str(), want.version)
        );
    }
    assert_eq!(store.count_accounts().await.unwrap(), ACCOUNTS as u64);

    // Nothing changed: one empty page, no write.
    let idle = sync::sync_accounts(store, &client, &*clock, PAGE, &NoProgress)
        .await
        .unwrap();
    assert_eq!((idle.fetched, idle.changed, idle.db_queries), (0, 0, 2));
    let runs = store.sync_runs(Some(sync::ACCOUNTS), 10).await.unwrap();
    assert_eq!(
        runs.iter().map(|r| r.fetched).collect::<Vec<_>>(),
        [0, 1000, ACCOUNTS as u64]
    );
}

async fn resume_scenario(store: &dyn Store) {
    const ACCOUNTS: usize = 20_000;
    let (url, sim) = Simulator::start(sim_config(ACCOUNTS)).await.unwrap();
    let client = UpstreamClient::new(
        UpstreamOptions {
            max_retries: 1,
            ..client_config(&url)
        },
        ManualClock::at_system_now(),
    )
    .unwrap();
    let clock = ManualClock::at_system_now();
    // The token and five pages go through; the sixth page fails twice,
    // which is all the retries the client has.
    sim.fail_after(6, 2, 503);
    let err = sync::sync_accounts(store, &client, &*clock, 1000, &NoProgress)
        .await
        .unwrap_err();
    assert!(err.is_retryable(), "{err:?}");
    assert_eq!(store.count_accounts().await.unwrap(), 5_000, "five pages made it");
    let failed = &store.sync_runs(Some(sync::ACCOUNTS), 1).await.unwrap()[0];
    assert!(failed.outcome.starts_with("failed: "), "{failed:?}");
    assert_eq!((failed.fetched, failed.changed, failed.errors), (5_000, 5_000, 1));

    let run = sync::sync_accounts(store, &client, &*clock, 1000, &NoProgress)
        .await
        .unwrap();
    assert_eq!(run.outcome, "ok");
    assert_eq!(run.fetched, 15_000, "resumed after the last written page");
    assert_eq!(store.count_accounts().await.unwrap(), ACCOUNTS as u64);
    assert_eq!(sim.stats().loyalty_changes, 5 + 2 + 15);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn menu_sync_against_sqlite() {
    let (_dir, store) = sqlite();
    menu_scenario(&store).await;
}

#[tokio::test]
async fn an_empty_catalog_is_refused_and_recorded_as_a_failure() {
    let (_dir, store) = sqlite();
    store.upsert_menu(&demo_menu()).await.unwrap();
    let (url, _sim) = Simulator::start(upstream::SimOptions {
        items: 0,
        ..sim_config(10)
    })
    .await
    .unwrap();
    let client = UpstreamClient::new(client_config(&url), ManualClock::at_system_now()).unwrap();
    let menus = MemoryMenuCache::new(Duration::from_secs(600), 100);
    let err = sync::sync_menu(&store, &menus, &client, &*ManualClock::at_system_now(), &NoProgress)
        .await
        .unwrap_err();
    assert!(matches!(err, domain::ports::PortError::Invalid(_)), "{err:?}");
    let menu = store.load_menu(&demo_menu().store.id).await.unwrap().unwrap();
    assert_eq!(menu.items.len(), 16, "the menu is untouched");
    let run = &store.sync_runs(Some(sync::MENU), 1).await.unwrap()[0];
    assert!(run.outcome.starts_with("failed: "), "{run:?}");
    assert_eq!(store.sync_cursor(sync::MENU).await.unwrap(), None, "no ETag saved");
}

/// A catalog with a negative or absurd price is refused whole, the run
/// recorded as failed naming the item, every menu left as it was and the
/// ETag not saved (so the next run fetches again); once upstream mends the
/// price, the sync goes through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_catalog_with_invalid_prices_is_refused_and_recorded_as_a_failure() {
    let (_dir, store) = sqlite();
    let demo = demo_menu();
    store.upsert_menu(&demo).await.unwrap();
    let before = store.load_menu(&demo.store.id).await.unwrap().unwrap();
    let (sim, client) = start(10).await;
    let menus = MemoryMenuCache::new(Duration::from_secs(600), 100);
    let clock = ManualClock::at_system_now();
    for (price, says) in [(-120, "is negative"), (i64::MAX, "beyond the largest accepted")] {
        assert!(sim.set_price("latte", price));
        let err = sync::sync_menu(&store, &menus, &client, &*clock, &NoProgress)
            .await
            .unwrap_err();
        let domain::ports::PortError::Invalid(why) = &err else {
            panic!("refused as invalid: {err:?}")
        };
        assert!(why.contains("item 'latte' size") && why.contains(says), "{why}");
        let run = &store.sync_runs(Some(sync::MENU), 1).await.unwrap()[0];
        assert!(
            run.outcome.starts_with("failed: ") && run.outcome.contains("latte"),
            "{run:?}"
        );
        assert_eq!(
            store.load_menu(&demo.store.id).await.unwrap().unwrap(),
            before,
            "untouched"
        );
        assert_eq!(store.sync_cursor(sync::MENU).await.unwrap(), None, "no ETag saved");
    }
    assert!(sim.set_price("latte", 460));
    let run = sync::sync_menu(&store, &menus, &client, &*clock, &NoProgress)
        .await
        .unwrap();
    assert_eq!(run.outcome, "ok");
    let menu = store.load_menu(&demo.store.id).await.unwrap().unwrap();
    let latte = menu.items.iter().find(|i| i.sku == "latte").unwrap();
    assert!(latte.sizes.iter().all(|s| s.price == 460));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accounts_sync_against_sqlite() {
    let (_dir, store) = sqlite();
    accounts_scenario(&store, "sqlite").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accounts_sync_resumes_after_a_failure_against_sqlite() {
    let (_dir, store) = sqlite();
    resume_scenario(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn syncs_against_postgres() {
    let Some((url, schema, store)) = postgres("sync::syncs_against_postgres").await else {
        return;
    };
    menu_scenario(&store).await;
    accounts_scenario(&store, "postgres").await;
    drop(store);
    testkit::pg::TestSchema { url, name: schema }.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_resumes_against_postgres() {
    let Some((url, schema, store)) = postgres("sync::sync_resumes_against_postgres").await else {
        return;
    };
    resume_scenario(&store).await;
    drop(store);
    testkit::pg::TestSchema { url, name: schema }.drop().await;
}
