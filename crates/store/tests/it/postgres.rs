//! The `Store` contract suite against `PgStore`, plus what the suite cannot
//! see: concurrent migrations, refusing a newer schema, unreadable rows.
//!
//! Needs a server: `RUSHHOUR_TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/test`.
//! Without it every test here returns early with a loud notice (and fails
//! when `RUSHHOUR_REQUIRE_SERVICES=1`). Each test gets its own schema
//! (`rh_test_<uuid>`), dropped when the test finishes without panicking; a
//! failed test leaves its schema behind to be looked at.

use domain::ports::{
    AccountStore, ApplyBatch, Decided, Decision, OrderFilter, OrderStore, PortError, StoreBackend, UserStore,
};
use sqlx::Connection;
use store::{PgStore, PgStoreOptions};
use testkit::fixtures::placed_order;

use testkit::pg::URL_VAR;

/// A schema of its own for one test (`testkit::pg::TestSchema`); `drop`
/// it at the end.
struct Schema(testkit::pg::TestSchema);

impl std::ops::Deref for Schema {
    type Target = testkit::pg::TestSchema;

    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl Schema {
    fn new(test: &str) -> Option<Self> {
        testkit::pg::TestSchema::new("rh_test", test).map(Self)
    }

    fn options(&self) -> PgStoreOptions {
        PgStoreOptions {
            max_connections: 4,
            schema: Some(self.name.clone()),
            ..PgStoreOptions::default()
        }
    }

    async fn store(&self) -> PgStore {
        let store = PgStore::connect(&self.url, self.options()).await.expect("connect");
        store.migrate().await.expect("migrate");
        store
    }

    async fn drop(self) {
        self.0.drop().await
    }
}

/// Every store port's contract cases, one test each, named
/// `postgres::contract::<port>::<case>`.
mod contract {
    macro_rules! pg_contract {
        ($port:ident: $($case:ident),* $(,)?) => {
            mod $port {
                $(
                    // Multi-threaded so the concurrency cases race for real.
                    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                    async fn $case() {
                        let test = concat!("postgres::", stringify!($port), "::", stringify!($case));
                        let Some(schema) = crate::postgres::Schema::new(test) else {
                            return;
                        };
                        let store: std::sync::Arc<dyn domain::ports::Store> = std::sync::Arc::new(schema.store().await);
                        testkit::store::$port::$case(store).await;
                        schema.drop().await;
                    }
                )*
            }
        };
    }
    testkit::store_contract_cases!(pg_contract);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_migrations_both_succeed() {
    let Some(schema) = Schema::new("postgres::concurrent_migrations_both_succeed") else {
        return;
    };
    let a = PgStore::connect(&schema.url, schema.options()).await.unwrap();
    let b = PgStore::connect(&schema.url, schema.options()).await.unwrap();
    let (ra, rb) = tokio::join!(a.migrate(), b.migrate());
    ra.expect("first migrate");
    rb.expect("second migrate");
    // Once more, sequentially: nothing left to do.
    a.migrate().await.expect("idempotent migrate");
    let mut raw = schema.raw().await;
    let versions: Vec<i32> = sqlx::query_scalar("SELECT version FROM schema_migrations ORDER BY version")
        .fetch_all(&mut raw)
        .await
        .unwrap();
    assert_eq!(versions, vec![1, 2, 3, 4, 5, 6, 7], "each migration recorded once");
    a.health().await.unwrap();
    b.apply_batch(ApplyBatch::new("g", 0, 1, 1)).await.unwrap();
    assert_eq!(a.consumer_position("g", 0).await.unwrap(), 1);
    drop(raw);
    schema.drop().await;
}

#[tokio::test]
async fn a_schema_from_a_newer_binary_is_refused() {
    let Some(schema) = Schema::new("postgres::a_schema_from_a_newer_binary_is_refused") else {
        return;
    };
    let store = schema.store().await;
    let mut raw = schema.raw().await;
    sqlx::query("INSERT INTO schema_migrations (version) VALUES (99)")
        .execute(&mut raw)
        .await
        .unwrap();
    match store.migrate().await {
        Err(PortError::Invalid(msg)) => assert!(msg.contains("99"), "{msg}"),
        other => panic!("expected Invalid, got {other:?}"),
    }
    drop(raw);
    schema.drop().await;
}

#[tokio::test]
async fn bad_settings_are_refused_before_connecting() {
    let Some(url) = testkit::service_url(URL_VAR, "postgres::bad_settings_are_refused_before_connecting") else {
        return;
    };
    let opts = PgStoreOptions {
        schema: Some("x\"; DROP TABLE orders; --".into()),
        ..PgStoreOptions::default()
    };
    assert!(matches!(PgStore::connect(&url, opts).await, Err(PortError::Invalid(_))));
    assert!(matches!(
        PgStore::connect("not a url", PgStoreOptions::default()).await,
        Err(PortError::Invalid(_))
    ));
}

/// Rows the domain cannot represent come back as `Invalid`, never a panic.
#[tokio::test]
async fn unreadable_rows_are_invalid_not_a_panic() {
    let Some(schema) = Schema::new("postgres::unreadable_rows_are_invalid_not_a_panic") else {
        return;
    };
    let store = schema.store().await;
    let order = placed_order(1, 1_000);
    let decided = Decided {
        placed: order.clone(),
        decision: Decision::Confirm,
        trace: None,
    };
    store
        .apply_batch(ApplyBatch {
            orders: &[decided],
            ..ApplyBatch::new("g", 0, 1, 2_000)
        })
        .await
        .unwrap();
    let mut raw = schema.raw().await;
    sqlx::query("UPDATE orders SET status = 'teleported' WHERE id = $1")
        .bind(order.order_id.0)
        .execute(&mut raw)
        .await
        .unwrap();
    assert!(matches!(
        store.get_order(order.order_id).await,
        Err(PortError::Invalid(_))
    ));
    let all = OrderFilter {
        store: None,
        status: None,
        before: None,
        limit: 10,
        pickup_code: None,
        placed_since: None,
    };
    assert!(matches!(store.list_orders(&all).await, Err(PortError::Invalid(_))));
    sqlx::query("UPDATE orders SET status = 'confirmed' WHERE id = $1")
        .bind(order.order_id.0)
        .execute(&mut raw)
        .await
        .unwrap();
    sqlx::query("UPDATE order_lines SET modifiers = '{\"not\": \"a list\"}' WHERE order_id = $1")
        .bind(order.order_id.0)
        .execute(&mut raw)
        .await
        .unwrap();
    assert!(matches!(
        store.get_order(order.order_id).await,
        Err(PortError::Invalid(_))
    ));
    assert!(matches!(
        store
            .transition(order.order_id, domain::Action::StartLine(1), 3_000)
            .await,
        Err(domain::TransitionError::Backend(PortError::Invalid(_)))
    ));
    drop(raw);
    schema.drop().await;
}

/// `statement_timeout` is set on every connection, and a statement it
/// cancels is `Unavailable` (a retry may help): a transition waiting on a
/// row lock held elsewhere gives up after the configured time.
#[tokio::test]
async fn a_statement_past_its_timeout_is_unavailable() {
    let Some(schema) = Schema::new("postgres::a_statement_past_its_timeout_is_unavailable") else {
        return;
    };
    // Set up with the normal timeout: migrations and batches wait on
    // advisory locks that other tests may hold for longer than 200 ms.
    let setup = PgStore::connect(&schema.url, schema.options()).await.unwrap();
    setup.migrate().await.unwrap();
    let store = PgStore::connect(
        &schema.url,
        PgStoreOptions {
            statement_timeout: std::time::Duration::from_millis(200),
            ..schema.options()
        },
    )
    .await
    .unwrap();
    let order = placed_order(1, 1_000);
    let decided = Decided {
        placed: order.clone(),
        decision: Decision::Confirm,
        trace: None,
    };
    setup
        .apply_batch(ApplyBatch {
            orders: &[decided],
            ..ApplyBatch::new("g", 0, 1, 2_000)
        })
        .await
        .unwrap();
    let mut raw = schema.raw().await;
    let mut tx = raw.begin().await.unwrap();
    sqlx::query("SELECT id FROM orders WHERE id = $1 FOR UPDATE")
        .bind(order.order_id.0)
        .execute(&mut *tx)
        .await
        .unwrap();
    match store.transition(order.order_id, domain::Action::Cancel, 3_000).await {
        Err(domain::TransitionError::Backend(PortError::Unavailable(msg))) => {
            assert!(msg.contains("statement timeout"), "{msg}")
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
    tx.rollback().await.unwrap();
    // Once the lock is gone the same call goes through.
    store
        .transition(order.order_id, domain::Action::Cancel, 3_000)
        .await
        .expect("cancel after the lock is released");
    drop(raw);
    schema.drop().await;
}

/// A schema written by the previous binary (version 1, with an order in it)
/// is upgraded in place: the order is still there, unpaid, and payments,
/// accounts and users work on it.
#[tokio::test]
async fn a_version_1_schema_is_upgraded_in_place() {
    let Some(schema) = Schema::new("postgres::a_version_1_schema_is_upgraded_in_place") else {
        return;
    };
    // Creates the schema, nothing in it yet.
    let store = PgStore::connect(&schema.url, schema.options()).await.unwrap();
    let order = placed_order(2, 1_000);
    let mut raw = schema.raw().await;
    sqlx::raw_sql(include_str!("../../migrations/postgres/0001_init.sql"))
        .execute(&mut raw)
        .await
        .unwrap();
    sqlx::raw_sql(
        "CREATE TABLE schema_migrations (version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now()); \
         INSERT INTO schema_migrations (version) VALUES (1)",
    )
    .execute(&mut raw)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO orders (id, store_id, status, payment_status, currency, total, placed_at, confirmed_at) \
         VALUES ($1, $2, 'confirmed', 'unpaid', $3, $4, 1000, 2000)",
    )
    .bind(order.order_id.0)
    .bind(&order.store.0)
    .bind(&order.currency)
    .bind(order.total)
    .execute(&mut raw)
    .await
    .unwrap();

    store.migrate().await.expect("upgrade");
    let versions: Vec<i32> = sqlx::query_scalar("SELECT version FROM schema_migrations ORDER BY version")
        .fetch_all(&mut raw)
        .await
        .unwrap();
    assert_eq!(versions, vec![1, 2, 3, 4, 5, 6, 7]);
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
    let index: String = sqlx::query_scalar(
        "SELECT indexdef FROM pg_indexes WHERE schemaname = current_schema() AND indexname = 'loyalty_accounts_by_email'",
    )
    .fetch_one(&mut raw)
    .await
    .unwrap();
    assert!(index.contains("lower(email)"), "{index}");
    drop(raw);
    schema.drop().await;
}

/// The store's pools are in the `db_pool_*` sample while it lives; dropping
/// the store closes their connections and the next sample forgets them (the
/// registry holds only a `Weak` of each pool's gauge, never the pool).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_store_closes_its_pools() {
    let Some(schema) = Schema::new("postgres::dropping_the_store_closes_its_pools") else {
        return;
    };
    // Its connections are told apart from every other test's by name.
    let name = format!("rh_drop_{}", uuid::Uuid::now_v7().simple());
    let sep = if schema.url.contains('?') { '&' } else { '?' };
    let url = format!("{}{sep}application_name={name}", schema.url);
    let store = PgStore::connect(
        &url,
        PgStoreOptions {
            read_replica_url: Some(url.clone()),
            ..schema.options()
        },
    )
    .await
    .expect("connect");
    store.migrate().await.expect("migrate");
    domain::ports::MenuStore::list_stores(&store).await.unwrap();
    let mut raw = schema.raw().await;
    let open = async |raw: &mut sqlx::PgConnection| -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM pg_stat_activity WHERE application_name = $1")
            .bind(&name)
            .fetch_one(raw)
            .await
            .unwrap()
    };
    assert!(open(&mut raw).await >= 2, "a primary and a replica connection");
    // No other test opens a replica pool.
    let replica = dbkit::observe::pool_stats()["store replica"];
    assert_eq!(replica.max, 4);
    assert!(replica.idle + replica.in_use >= 1);

    drop(store);
    assert!(
        !dbkit::observe::pool_stats().contains_key("store replica"),
        "the dropped store's pool is gone from the sample"
    );
    // The sockets closed with the pools; the server ends the backends as
    // it notices, so wait for that, bounded.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let left = open(&mut raw).await;
        if left == 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{left} connections of the dropped store are still open"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    drop(raw);
    schema.drop().await;
}
