//! The same HTTP flow with the store on PostgreSQL (the log stays on
//! SQLite): intake, confirmation, staff actions, listings and 86'ing an
//! item, end to end through the real wiring. Needs
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
        .get(&format!("/v1/orders?store={STORE}&status=in_progress"))
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

    app.stop().await.unwrap();
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    // The name is ours (a uuid), not user input.
    let drop = format!("DROP SCHEMA \"{schema}\" CASCADE");
    sqlx::raw_sql(sqlx::AssertSqlSafe(drop)).execute(&pool).await.unwrap();
}
