//! The N+1 guard (issue 12): every read endpoint runs as many database
//! statements for one result as for a hundred. Black-box: the app runs with
//! `observability.query_count_header = true` and every response says how
//! many statements it ran in `x-db-queries`.
//!
//! Every `GET` of the permission table (`api::RULES`) is measured twice:
//! once against "one of everything" (store A: one order of one line, a
//! menu of the demo's items; one extra user, key, job, dead letter,
//! snapshot) and once against "a hundred of everything" (store B: a hundred
//! orders of distinct items plus one of fifty lines, a menu a hundred items
//! longer; a hundred more users, keys, jobs, dead letters, snapshots). The
//! store-scoped routes get store A and store B, so each first read is
//! uncached in both rounds (the popular items and menus are cached per
//! store); the menu is read twice per round, uncached (its cache entry
//! dropped first: intake loaded it) then cached. The
//! whole table runs once beforehand on a third store, so lazily warmed
//! state (first use of a pool, a cache) is equal in both rounds.
//!
//! Runs on SQLite, and on PostgreSQL when `RUSHHOUR_TEST_POSTGRES_URL` is
//! set (store and job queue there).

use crate::support::*;
use domain::identity::{ApiKey, Role, User};
use domain::menu::{Item, Menu, Size, Station, StoreInfo};
use domain::ops::PerfSnapshot;
use domain::ports::{ApplyBatch, DeadLetter};
use reqwest::Method;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::time::Duration;

const HEADER: &str = "x-db-queries";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_read_runs_as_many_statements_for_one_result_as_for_a_hundred_on_sqlite() {
    let app = spawn_app_with(|c| {
        c.observability.query_count_header = true;
        c.processor.enabled = false;
        c.jobs.enabled = false;
    })
    .await;
    constant_query_counts(&app).await;
    app.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_read_runs_as_many_statements_for_one_result_as_for_a_hundred_on_postgres() {
    let name = "every_read_runs_as_many_statements_for_one_result_as_for_a_hundred_on_postgres";
    let Some(url) = testkit::service_url("RUSHHOUR_TEST_POSTGRES_URL", name) else {
        return;
    };
    let schema = format!("rh_q_{}", uuid::Uuid::new_v4().simple());
    let app = spawn_app_with(|c| {
        c.store.url = url.clone();
        c.store.schema = schema.clone();
        c.observability.query_count_header = true;
        c.processor.enabled = false;
        c.jobs.enabled = false;
    })
    .await;
    constant_query_counts(&app).await;
    app.stop().await.unwrap();
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    // The name is ours (a uuid), not user input.
    let drop = format!("DROP SCHEMA \"{schema}\" CASCADE");
    sqlx::raw_sql(sqlx::AssertSqlSafe(drop)).execute(&pool).await.unwrap();
}

/// What one round reads: a store, an order of it, a job.
struct Round {
    store: String,
    order: String,
    job: String,
}

async fn constant_query_counts(app: &TestApp) {
    // Warm-up round on a store of its own.
    let warm = seed(app, "q-warm", 1, 1).await;
    measure(app, &warm).await;

    let one = seed(app, "q-one", 1, 1).await;
    let counts_one = measure(app, &one).await;
    let many = seed(app, "q-many", 100, 100).await;
    let counts_many = measure(app, &many).await;

    let mut differ = Vec::new();
    for (route, n) in &counts_one {
        let m = counts_many[route];
        if *n != m {
            differ.push(format!("{route}: {n} statements for one, {m} for a hundred"));
        }
    }
    assert!(
        differ.is_empty(),
        "query counts grow with the result:\n{}",
        differ.join("\n")
    );
    // The guard is live: reads that must touch the database did.
    assert!(counts_one["GET /v1/orders"] > 0, "{counts_one:?}");
    assert!(counts_one["GET /v1/stores/{id}/menu (uncached)"] > 0, "{counts_one:?}");
    assert_eq!(counts_one["GET /v1/stores/{id}/menu (cached)"], 0, "{counts_one:?}");
}

/// A store with the demo menu plus `extra_items` items, `orders` orders of
/// one line (each of a different item when there are extras) plus one of
/// fifty lines (the round's order), and `orders` more of each global row.
async fn seed(app: &TestApp, store: &str, orders: usize, rows: usize) -> Round {
    let ports = &app.built.app.store;
    let mut menu = domain::menu::demo_menu();
    menu.store = StoreInfo {
        id: domain::ids::StoreId(store.into()),
        ..menu.store.clone()
    };
    let extra = if orders > 1 { orders } else { 0 };
    for i in 0..extra {
        menu.items.push(item(&menu, i));
    }
    ports.upsert_menu(&menu).await.unwrap();
    let sku = |i: usize| {
        if extra > 0 {
            format!("q-item-{i}")
        } else {
            "latte".into()
        }
    };
    for i in 0..orders {
        let size = if extra > 0 { "regular" } else { "small" };
        app.place(&json!({"store": store, "lines": [{"sku": sku(i), "size": size, "qty": 1}]}))
            .await;
    }
    let n = if orders > 1 { 50 } else { 1 };
    let lines: Vec<Value> = (0..n)
        .map(|_| json!({"sku": "latte", "size": "small", "qty": 1}))
        .collect();
    let order = app.place(&json!({"store": store, "lines": lines})).await;
    app.process_all().await;

    let now = domain::ports::system_now_ms();
    let tag = uuid::Uuid::now_v7().simple().to_string();
    let letters: Vec<DeadLetter> = (0..rows)
        .map(|i| DeadLetter {
            group: format!("q-{tag}"),
            partition: 0,
            offset: i as u64,
            key: format!("key-{i}"),
            payload: b"not a record".to_vec(),
            error: "test".into(),
            attempts: 1,
            at: now,
        })
        .collect();
    ports
        .apply_batch(ApplyBatch {
            dead: &letters,
            ..ApplyBatch::new(&format!("q-{tag}"), 0, rows as u64, now)
        })
        .await
        .unwrap();
    for i in 0..rows {
        let user = User {
            id: uuid::Uuid::now_v7(),
            username: format!("q-{tag}-{i}"),
            role: Role::Barista,
            disabled: false,
            password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA".into(),
            created_at: now,
            updated_at: now,
        };
        ports.create_user(&user).await.unwrap();
        ports
            .create_api_key(&ApiKey {
                id: uuid::Uuid::now_v7(),
                prefix: format!("rhk_{}", &uuid::Uuid::new_v4().simple().to_string()[..12]),
                hash: "0".repeat(64),
                name: format!("q key {i}"),
                user_id: Some(user.id),
                role: Role::Barista,
                store: None,
                created_at: now,
                last_used_at: None,
                revoked_at: None,
            })
            .await
            .unwrap();
        ports
            .append_audit(&domain::identity::AuditEntry {
                id: 0,
                at: now,
                actor: "cli".into(),
                role: None,
                action: "user_add".into(),
                target: user.username.clone(),
                detail: "{}".into(),
                source: String::new(),
            })
            .await
            .unwrap();
        ports
            .record_snapshot(&PerfSnapshot {
                at: now,
                instance: format!("q-{tag}"),
                metrics: json!({"orders_per_min": i}),
            })
            .await
            .unwrap();
    }
    let jobs: Vec<domain::jobs::NewJob> = (0..rows)
        .map(|i| domain::jobs::NewJob {
            kind: "q.test".into(),
            queue: "q-test".into(),
            payload: json!({"i": i}),
            priority: 0,
            // Never due: nothing claims them.
            run_at: now + 86_400_000,
            max_attempts: 1,
            unique_key: None,
            trace: None,
        })
        .collect();
    let enqueued = app.built.jobs.enqueue(&jobs, now).await.unwrap();
    Round {
        store: store.into(),
        order,
        job: enqueued[0].id().to_string(),
    }
}

fn item(menu: &Menu, i: usize) -> Item {
    Item {
        sku: format!("q-item-{i}"),
        name: format!("Item {i}"),
        category: menu.categories[0].code.clone(),
        station: Station::Kitchen,
        sizes: vec![Size {
            code: "regular".into(),
            name: "Regular".into(),
            price: 100 + i as i64,
        }],
        modifiers: vec![],
        available: true,
    }
}

/// The statements of every `GET` route of the permission table, by route
/// (the menu twice: uncached, then cached).
async fn measure(app: &TestApp, r: &Round) -> BTreeMap<String, u32> {
    let s = &r.store;
    let uri = |template: &str| -> Option<String> {
        let path = match template {
            "/v1/orders" => format!("/v1/orders?store={s}&limit=100"),
            "/v1/orders/{id}" => format!("/v1/orders/{}", r.order),
            "/v1/orders/{id}/events" => format!("/v1/orders/{}/events", r.order),
            "/orders/{id}" => format!("/orders/{}", r.order),
            "/v1/admin/jobs" => "/v1/admin/jobs?queue=q-test&limit=100".into(),
            "/v1/admin/jobs/{id}" => format!("/v1/admin/jobs/{}", r.job),
            "/v1/admin/dead-letters" => "/v1/admin/dead-letters?limit=1000".into(),
            "/v1/admin/audit" => "/v1/admin/audit?limit=500".into(),
            "/assets/{name}" => "/assets/none.css".into(),
            "/v1/admin/profile/cpu" => "/v1/admin/profile/cpu?seconds=1".into(),
            "/v1/stores/{id}/menu" => return None,
            t if t.contains("{id}") => t.replace("{id}", s),
            t => t.into(),
        };
        Some(path)
    };
    let mut counts = BTreeMap::new();
    // The heap profile reads no database, and this in-process app does not
    // allocate through jemalloc, so it answers 503 `profiling_unavailable`
    // by design (tests/it/profile.rs takes one from the real binary).
    let measured = api::RULES
        .iter()
        .filter(|r| r.method == Method::GET && r.path != "/v1/admin/profile/heap");
    for rule in measured {
        let key = format!("GET {}", rule.path);
        match uri(rule.path) {
            Some(path) => {
                counts.insert(key, statements(app, &path).await);
            }
            None => {
                let path = format!("/v1/stores/{s}/menu");
                // Intake loaded it into the cache: drop it first.
                let store = domain::ids::StoreId(s.clone());
                app.built.app.menus.invalidate(&store).await.unwrap();
                counts.insert(format!("{key} (uncached)"), statements(app, &path).await);
                counts.insert(format!("{key} (cached)"), statements(app, &path).await);
            }
        }
    }
    counts
}

/// The `x-db-queries` of one GET as an admin (the configured staff key,
/// checked without the database). A stream's count is its opening.
async fn statements(app: &TestApp, path: &str) -> u32 {
    let res = tokio::time::timeout(
        Duration::from_secs(30),
        app.client.get(app.url(path)).bearer_auth(STAFF_KEY).send(),
    )
    .await
    .unwrap_or_else(|_| panic!("GET {path} answered in time"))
    .unwrap();
    assert!(!res.status().is_server_error(), "GET {path}: {}", res.status());
    res.headers()
        .get(HEADER)
        .unwrap_or_else(|| panic!("GET {path} has {HEADER}"))
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

/// The schedules come from configuration, not from rows: one app with one
/// schedule and one with every default schedule list them with as many
/// statements (one `last_fired` per schedule was the N+1 this test found).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_schedule_list_runs_as_many_statements_for_one_schedule_as_for_all() {
    let one = spawn_app_with(|c| {
        c.observability.query_count_header = true;
        c.scheduler.schedules.retain(|name, _| name == "cleanup");
    })
    .await;
    let all = spawn_app_with(|c| c.observability.query_count_header = true).await;
    assert!(all.config.scheduler.schedules.len() > 5);
    let (n, m) = (
        statements(&one, "/v1/admin/schedules").await,
        statements(&all, "/v1/admin/schedules").await,
    );
    assert_eq!(n, m, "one schedule: {n} statements, all: {m}");
    one.stop().await.unwrap();
    all.stop().await.unwrap();
}
