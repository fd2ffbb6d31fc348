//! Integration tests of the store crate: the `Store` contract suite run
//! against `SqliteStore` (one test per case, so failures are named), the
//! SQLite-specific behaviour the suite cannot see (files, migrations,
//! pragmas, unreadable rows). `postgres` runs
//! the same suite against `PgStore` when a server is configured, and `tls`
//! proves the PostgreSQL pool speaks TLS (`sslmode=require`, `verify-full`).

mod postgres;
mod tls;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use domain::ports::{AccountStore, ApplyBatch, OrderStore, PortError, Store, StoreBackend, UserStore};
use store::{SqliteStore, SqliteStoreOptions, Synchronous};
use tempfile::TempDir;
use testkit::fixtures::placed_order;

/// A fresh store in its own directory; the directory lives as long as the
/// returned guard.
fn fresh() -> (TempDir, Arc<dyn Store>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SqliteStore::open(&dir.path().join("store.db"), SqliteStoreOptions::default()).expect("open");
    (dir, Arc::new(store))
}

/// Every store port's contract cases, one test each, named
/// `contract::<port>::<case>`.
mod contract {
    macro_rules! sqlite_contract {
        ($port:ident: $($case:ident),* $(,)?) => {
            mod $port {
                $(
                    // Multi-threaded so the concurrency cases race for real.
                    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                    async fn $case() {
                        let (_dir, store) = crate::fresh();
                        testkit::store::$port::$case(store).await;
                    }
                )*
            }
        };
    }
    testkit::store_contract_cases!(sqlite_contract);
}

#[tokio::test]
async fn run_all_runs_every_case_on_a_fresh_store() {
    let dir = tempfile::tempdir().unwrap();
    let made = AtomicUsize::new(0);
    testkit::store::run_all(|| {
        let n = made.fetch_add(1, Ordering::SeqCst);
        let path = dir.path().join(format!("store-{n}.db"));
        async move {
            let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&path, SqliteStoreOptions::default()).unwrap());
            store
        }
    })
    .await;
    assert_eq!(made.load(Ordering::SeqCst), testkit::store::cases().len());
}

fn raw(path: &Path) -> rusqlite::Connection {
    rusqlite::Connection::open(path).unwrap()
}

#[tokio::test]
async fn open_creates_folders_uses_wal_and_keeps_data_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested/data/store.db");
    let order = placed_order(2, 1_000);
    {
        let store = SqliteStore::open(&path, SqliteStoreOptions::default()).unwrap();
        assert_eq!(store.path(), path);
        let decided = domain::ports::Decided {
            placed: order.clone(),
            decision: domain::ports::Decision::Confirm,
            trace: None,
        };
        store
            .apply_batch(ApplyBatch {
                orders: &[decided],
                ..ApplyBatch::new("g", 0, 1, 2_000)
            })
            .await
            .unwrap();
    }
    let conn = raw(&path);
    let mode: String = conn.query_row("PRAGMA journal_mode", [], |r| r.get(0)).unwrap();
    assert_eq!(mode, "wal");
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
    assert_eq!(version, 7, "every migration applied");
    drop(conn);

    // Reopening runs no migration twice and sees the data, with the other
    // durability setting too.
    let store = SqliteStore::open(
        &path,
        SqliteStoreOptions {
            synchronous: Synchronous::Full,
            read_connections: 1,
        },
    )
    .unwrap();
    let got = store
        .get_order(order.order_id)
        .await
        .unwrap()
        .expect("order survives reopen");
    assert_eq!(got.lines.len(), 2);
    assert_eq!(store.consumer_position("g", 0).await.unwrap(), 1);
    store.health().await.unwrap();
}

#[test]
fn a_schema_from_a_newer_binary_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    drop(SqliteStore::open(&path, SqliteStoreOptions::default()).unwrap());
    raw(&path).execute_batch("PRAGMA user_version = 99").unwrap();
    match SqliteStore::open(&path, SqliteStoreOptions::default()) {
        Err(PortError::Invalid(msg)) => assert!(msg.contains("99"), "{msg}"),
        other => panic!("expected Invalid, got {other:?}"),
    }
}

#[test]
fn a_file_that_is_not_a_database_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    std::fs::write(&path, vec![b'x'; 4096]).unwrap();
    assert!(matches!(
        SqliteStore::open(&path, SqliteStoreOptions::default()),
        Err(PortError::Invalid(_))
    ));
}

/// Rows the domain cannot represent come back as `Invalid`, never a panic.
#[tokio::test]
async fn unreadable_rows_are_invalid_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let store = SqliteStore::open(&path, SqliteStoreOptions::default()).unwrap();
    let order = placed_order(1, 1_000);
    let decided = domain::ports::Decided {
        placed: order.clone(),
        decision: domain::ports::Decision::Confirm,
        trace: None,
    };
    store
        .apply_batch(ApplyBatch {
            orders: &[decided],
            ..ApplyBatch::new("g", 0, 1, 2_000)
        })
        .await
        .unwrap();
    let id = order.order_id.to_string();
    let conn = raw(&path);
    conn.execute("UPDATE orders SET status = 'teleported' WHERE id = ?1", [&id])
        .unwrap();
    assert!(matches!(
        store.get_order(order.order_id).await,
        Err(PortError::Invalid(_))
    ));
    assert!(matches!(
        store
            .list_orders(&domain::ports::OrderFilter {
                store: None,
                status: None,
                before: None,
                limit: 10,
                pickup_code: None,
                placed_since: None,
            })
            .await,
        Err(PortError::Invalid(_))
    ));
    conn.execute("UPDATE orders SET status = 'confirmed' WHERE id = ?1", [&id])
        .unwrap();
    conn.execute(
        "UPDATE order_lines SET modifiers = 'not json' WHERE order_id = ?1",
        [&id],
    )
    .unwrap();
    assert!(matches!(
        store.get_order(order.order_id).await,
        Err(PortError::Invalid(_))
    ));
    // A transition must load the order first, so it reports the same.
    assert!(matches!(
        store
            .transition(order.order_id, domain::Action::StartLine(1), 3_000)
            .await,
        Err(domain::TransitionError::Backend(PortError::Invalid(_)))
    ));
    conn.execute(
        "UPDATE order_lines SET modifiers = '[]', qty = -1 WHERE order_id = ?1",
        [&id],
    )
    .unwrap();
    assert!(matches!(
        store.get_order(order.order_id).await,
        Err(PortError::Invalid(_))
    ));
}

/// A database written by the previous binary (schema version 1, with an
/// order in it) is upgraded in place on open: the order is still there,
/// unpaid, and payments, accounts, records and users work on it.
#[tokio::test]
async fn a_version_1_database_is_upgraded_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let order = placed_order(2, 1_000);
    {
        let conn = raw(&path);
        conn.execute_batch(include_str!("../../migrations/0001_init.sql"))
            .unwrap();
        conn.execute_batch("PRAGMA user_version = 1").unwrap();
        conn.execute(
            "INSERT INTO orders (id, store_id, customer, status, payment_status, currency, total, placed_at, \
             confirmed_at) VALUES (?1, ?2, NULL, 'confirmed', 'unpaid', ?3, ?4, 1000, 2000)",
            rusqlite::params![order.order_id.to_string(), order.store.0, order.currency, order.total],
        )
        .unwrap();
    }
    let store = SqliteStore::open(&path, SqliteStoreOptions::default()).unwrap();
    let version: i64 = raw(&path).query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
    assert_eq!(version, 7);
    let got = store
        .get_order(order.order_id)
        .await
        .unwrap()
        .expect("the old order survives");
    assert_eq!(got.payment_status, "unpaid");

    let paid = testkit::fixtures::payment(&order, "evt-1", domain::events::PaymentStatus::Paid, 3_000);
    let out = store
        .apply_batch(ApplyBatch {
            payments: &[paid],
            ..ApplyBatch::new("g", 0, 1, 3_100)
        })
        .await
        .unwrap();
    assert_eq!(out.payments.applied, 1);
    assert_eq!(
        store.get_order(order.order_id).await.unwrap().unwrap().payment_status,
        "paid"
    );
    let accounts = [testkit::fixtures::loyalty_account(1, 1)];
    assert_eq!(store.upsert_accounts(&accounts, Some("c")).await.unwrap(), 1);
    assert_eq!(store.sync_cursor("accounts").await.unwrap().as_deref(), Some("c"));
    // The identity tables (0003) came with the upgrade.
    let admin = domain::identity::User {
        id: uuid::Uuid::now_v7(),
        username: "admin".into(),
        role: domain::identity::Role::Admin,
        disabled: false,
        password_hash: "$argon2id$v=19$m=19456,t=2,p=1$salt$hash".into(),
        created_at: 4_000,
        updated_at: 4_000,
    };
    store.create_user(&admin).await.unwrap();
    assert_eq!(store.user_by_name("admin").await.unwrap(), Some(admin));

    // The e-mail lookup index exists on the expression lookups use.
    let index: String = raw(&path)
        .query_row(
            "SELECT sql FROM sqlite_master WHERE type = 'index' AND name = 'loyalty_accounts_by_email'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(index.contains("lower(email)"), "{index}");
}
