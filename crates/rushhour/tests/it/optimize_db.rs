//! `rushhour optimize-db` against real databases: the embedded files of a
//! running app (every SQLite file the configuration names) and a
//! PostgreSQL store. The tests read the report's content: the indexes the
//! schema declares with the planner's figures, integrity, free space, and
//! the hints a planted redundant index and a dropped table must produce.

use crate::support::*;
use rushhour::db_cli::{OptimizeArgs, optimize};
use serde_json::Value;

async fn report(app: &TestApp, vacuum: bool) -> Value {
    let mut out = Vec::new();
    optimize(&app.config, &OptimizeArgs { vacuum, json: true }, &mut out)
        .await
        .expect("optimize-db");
    serde_json::from_slice(&out).expect("optimize-db --json prints JSON")
}

fn database<'a>(report: &'a Value, label: &str) -> &'a Value {
    report["databases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["label"] == label)
        .unwrap_or_else(|| panic!("no {label} in {report:#}"))
}

fn hints(db: &Value) -> Vec<String> {
    db["hints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h.as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn optimize_db_reports_every_embedded_database_while_the_app_runs() {
    let app = spawn_app().await;
    for _ in 0..20 {
        let id = app.place(&latte_order()).await;
        app.settled(&id).await;
    }
    // A redundant index (a prefix of orders_by_store) and 4 MiB of free
    // pages, planted in the store's file beside the running app.
    let store_path = app.config.data_dir.join("rushhour.db");
    {
        let conn = rusqlite::Connection::open(&store_path).unwrap();
        conn.busy_timeout(std::time::Duration::from_secs(5)).unwrap();
        conn.execute_batch(
            "CREATE INDEX orders_store_only ON orders (store_id);
             CREATE TABLE ballast (b BLOB);
             WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 64)
             INSERT INTO ballast SELECT zeroblob(65536) FROM n;
             DROP TABLE ballast;",
        )
        .unwrap();
    }

    let r = report(&app, false).await;
    let labels: Vec<&str> = r["databases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["label"].as_str().unwrap())
        .collect();
    assert_eq!(labels, ["sessions", "store", "job queue", "event log"]);
    let store = database(&r, "store");
    assert_eq!(store["engine"], "sqlite");
    assert_eq!(store["integrity"], serde_json::json!(["ok"]));
    assert_eq!(store["actions"], serde_json::json!(["ANALYZE", "PRAGMA optimize"]));
    assert!(store["planner_source"].as_str().unwrap().contains("sqlite_stat1"));
    let orders_by_store = store["indexes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"] == "orders_by_store")
        .expect("the schema's index is listed");
    assert_eq!(orders_by_store["table"], "orders");
    assert_eq!(orders_by_store["columns"], serde_json::json!(["store_id", "id"]));
    assert_eq!(
        orders_by_store["rows"], 20,
        "sqlite_stat1 counted the orders after ANALYZE"
    );
    let orders = store["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "orders")
        .unwrap();
    assert_eq!(orders["rows"], 20);
    assert!(
        store["pages"]["free_pages"].as_u64().unwrap() >= 64,
        "the dropped table's pages are free"
    );
    assert!(store["reclaimable_bytes"].as_u64().unwrap() >= 4 << 20);
    let store_hints = hints(store);
    assert!(
        store_hints
            .iter()
            .any(|h| h.contains("orders_store_only") && h.contains("leading prefix of orders_by_store")),
        "{store_hints:?}"
    );
    assert!(store_hints.iter().any(|h| h.contains("--vacuum")), "{store_hints:?}");
    let log = database(&r, "event log");
    assert!(
        log["indexes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["name"] == "records_by_key")
    );

    // --vacuum gives the space back (and says it held the write lock).
    let r = report(&app, true).await;
    let store = database(&r, "store");
    let vacuum = &store["vacuum"];
    assert!(vacuum["after_bytes"].as_u64().unwrap() + (4 << 20) <= vacuum["before_bytes"].as_u64().unwrap());
    assert!(store["actions"][2].as_str().unwrap().starts_with("VACUUM"));
    assert!(!hints(store).iter().any(|h| h.contains("--vacuum")));

    // The app still takes orders afterwards.
    let id = app.place(&latte_order()).await;
    assert_eq!(app.settled(&id).await, "confirmed");

    // The readable form carries the same facts.
    let mut out = Vec::new();
    optimize(
        &app.config,
        &OptimizeArgs {
            vacuum: false,
            json: false,
        },
        &mut out,
    )
    .await
    .unwrap();
    let text = String::from_utf8(out).unwrap();
    assert!(text.contains("== store (sqlite"), "{text}");
    assert!(text.contains("integrity_check: ok"), "{text}");
    assert!(text.contains("orders_store_only"), "{text}");
}

#[tokio::test]
async fn optimize_db_reports_a_postgres_store() {
    let Some(url) = testkit::service_url("RUSHHOUR_TEST_POSTGRES_URL", "optimize_db_reports_a_postgres_store") else {
        return;
    };
    let schema = format!("rh_it_{}", uuid::Uuid::new_v4().simple());
    let app = spawn_app_with(|c| {
        c.store.url = url.clone();
        c.store.schema = schema.clone();
    })
    .await;
    let id = app.place(&latte_order()).await;
    app.settled(&id).await;
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    // A duplicate of orders_by_store (same table, columns and order).
    let dup = format!("CREATE INDEX orders_by_store_again ON \"{schema}\".orders (store_id, id DESC)");
    sqlx::raw_sql(sqlx::AssertSqlSafe(dup)).execute(&pool).await.unwrap();

    let r = report(&app, false).await;
    let store = database(&r, "store");
    assert_eq!(store["engine"], "postgres");
    assert_eq!(store["location"], format!("schema {schema}"));
    assert!(store["planner_source"].as_str().unwrap().contains("idx_scan"));
    let indexes = store["indexes"].as_array().unwrap();
    let again = indexes
        .iter()
        .find(|i| i["name"] == "orders_by_store_again")
        .expect("listed");
    assert_eq!(again["redundant_with"], "orders_by_store");
    assert_eq!(again["scans"], 0);
    assert!(indexes.iter().any(|i| i["name"] == "orders_by_status"));
    let orders = store["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "orders")
        .unwrap();
    assert!(orders["seq_scans"].is_u64() && orders["dead_rows"].is_u64());
    let h = hints(store);
    assert!(
        h.iter()
            .any(|h| h.contains("orders_by_store_again") && h.contains("duplicates")),
        "{h:?}"
    );
    assert!(
        h.iter()
            .any(|h| h.contains("never used") && h.contains("consider dropping")),
        "{h:?}"
    );
    // The job queue shares the store's database and schema: reported once.
    let labels: Vec<&str> = r["databases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["label"].as_str().unwrap())
        .collect();
    assert_eq!(labels, ["sessions", "store", "event log"]);

    let r = report(&app, true).await;
    let store = database(&r, "store");
    assert!(store["actions"][0].as_str().unwrap().starts_with("VACUUM (ANALYZE)"));
    assert!(store["vacuum"]["after_bytes"].is_u64());

    app.stop().await.unwrap();
    let drop = format!("DROP SCHEMA \"{schema}\" CASCADE");
    sqlx::raw_sql(sqlx::AssertSqlSafe(drop)).execute(&pool).await.unwrap();
}
