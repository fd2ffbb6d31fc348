//! The same HTTP flow with the store on PostgreSQL (the log stays on
//! SQLite): intake, confirmation, staff actions, listings and 86'ing an
//! item, end to end through the real wiring, and the PostgreSQL pools in
//! the `db_pool_*` metrics. Needs
//! `RUSHHOUR_TEST_POSTGRES_URL`; each run uses its own schema, dropped after.

use crate::support::*;
use reqwest::StatusCode;
use serde_json::Value;

#[tokio::test]
async fn the_order_flow_runs_on_a_postgres_store() {
    let Some(url) = testkit::service_url("RUSHHOUR_TEST_POSTGRES_URL", "the_order_flow_runs_on_a_postgres_store")
    else {
        return;
    };
    let schema = format!("rh_it_{}", uuid::Uuid::new_v4().simple());
    let app = spawn_app_with(|c| {
        c.store.url = url.clone();
        c.store.schema = schema.clone();
        // The same server as a "replica", so the replica pool exists: its
        // label is PostgreSQL's alone (the embedded store has none).
        c.store.read_replica_url = url.clone();
        c.store.max_connections = 7;
    })
    .await;

    let stores: Value = app.get("/v1/stores").await.json().await.unwrap();
    assert_eq!(
        stores["items"][0]["id"], STORE,
        "the demo menu was seeded into PostgreSQL"
    );
    let id = app.place(&latte_order()).await;
    assert_eq!(app.settled(&id).await, "confirmed");
    let o = app.order(&id).await;
    assert_eq!(o["lines"].as_array().unwrap().len(), 2);
    assert_eq!(o["total"]["amount"], 1460);

    let started = app.staff_post(&format!("/v1/orders/{id}/lines/1/start")).await;
    assert_eq!(started.status(), StatusCode::OK);
    assert_eq!(started.json::<Value>().await.unwrap()["status"], "in_progress");
    problem(
        app.staff_post(&format!("/v1/orders/{id}/lines/1/start")).await,
        409,
        "invalid_transition",
    )
    .await;

    let listed: Value = app
        .staff_get(&format!("/v1/orders?store={STORE}&status=in_progress"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(listed["items"][0]["id"], id.as_str());

    assert_eq!(
        app.set_available("croissant", false).await.status(),
        StatusCode::NO_CONTENT
    );
    let v = problem(app.post_order(&latte_order(), None).await, 422, "validation_failed").await;
    assert_eq!(v["errors"][0]["field"], "lines[1].sku");

    // The PostgreSQL pools report like the embedded reader pools: the
    // binary's sampler calls this every second.
    dbkit::observe::sample_pools();
    let metrics = app.get("/metrics").await.text().await.unwrap();
    let value = |series: &str| -> f64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(series).and_then(|v| v.trim().parse().ok()))
            .unwrap_or_else(|| panic!("no {series} in /metrics"))
    };
    // No other test has a replica pool, so the sum over pools of this name
    // is this app's alone.
    assert_eq!(value(r#"db_pool_connections_max{pool="store replica"}"#), 7.0);
    assert!(
        value(r#"db_pool_connections_idle{pool="store replica"}"#)
            + value(r#"db_pool_connections_in_use{pool="store replica"}"#)
            >= 1.0,
        "the pool opened a connection"
    );
    assert!(
        value(r#"db_pool_acquire_seconds_count{pool="store replica"}"#) >= 1.0,
        "the menu and the order list were read through the replica pool"
    );
    for series in [
        r#"db_pool_waiting{pool="store replica"}"#,
        r#"db_pool_acquire_seconds_count{pool="store"}"#,
    ] {
        assert!(value(series) >= 0.0, "{series}");
    }

    app.stop().await.unwrap();
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    // The name is ours (a uuid), not user input.
    let drop = format!("DROP SCHEMA \"{schema}\" CASCADE");
    sqlx::raw_sql(sqlx::AssertSqlSafe(drop)).execute(&pool).await.unwrap();
}

/// Two instances sharing the PostgreSQL store and Redis: an item 86'd
/// through one is gone from the other's menu within a second, and an
/// order confirmed by one instance's processors streams live to an SSE
/// client of the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_share_menu_invalidation_and_live_events_through_redis() {
    let name = "instances_share_menu_invalidation_and_live_events_through_redis";
    let (Some(pg), Some(redis)) = (
        testkit::service_url("RUSHHOUR_TEST_POSTGRES_URL", name),
        testkit::service_url("RUSHHOUR_TEST_REDIS_URL", name),
    ) else {
        return;
    };
    let tag = uuid::Uuid::new_v4().simple().to_string();
    let schema = format!("rh_it_{tag}");
    let scale = |c: &mut rushhour::config::Config| {
        c.store.url = pg.clone();
        c.store.schema = schema.clone();
        c.cache.url = redis.clone();
        c.cache.key_prefix = format!("rhtest:{tag}");
    };
    let a = spawn_app_with(scale).await;
    // B only serves reads: its own embedded log stays empty.
    let b = spawn_app_with(|c| {
        scale(c);
        c.processor.enabled = false;
    })
    .await;

    let latte = |menu: &Value| {
        menu["categories"][0]["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["sku"] == "latte")
            .unwrap()["available"]
            .clone()
    };
    let menu_path = format!("/v1/stores/{STORE}/menu");
    let before: Value = b.get(&menu_path).await.json().await.unwrap();
    assert_eq!(latte(&before), true);

    assert_eq!(a.set_available("latte", false).await.status(), StatusCode::NO_CONTENT);
    // A cross-process message: bounded wait, well inside the 1 s promise.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(1);
    loop {
        let now: Value = b.get(&menu_path).await.json().await.unwrap();
        if latte(&now) == false {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "B still serves the latte a second later"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }

    let mut board = b.sse(&format!("/v1/stores/{STORE}/board"), None).await;
    let body = serde_json::json!({"store": STORE, "lines": [{"sku": "flat-white", "size": "small", "qty": 1}]});
    let id = a.place(&body).await;
    let event = board.next_event().await.unwrap();
    assert_eq!(event.data["order_id"], id.as_str());
    assert_eq!(event.data["status"], "confirmed");
    assert_eq!(
        b.order(&id).await["status"],
        "confirmed",
        "B reads what A's processors applied"
    );

    a.stop().await.unwrap();
    b.stop().await.unwrap();
    testkit::pg::TestSchema { url: pg, name: schema }.drop().await;
}
