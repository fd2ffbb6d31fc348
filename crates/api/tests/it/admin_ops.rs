//! The operator routes of issue 11 through the whole router: live figures
//! and snapshots, schedules with "run now", dead letters (list, replay,
//! discard), bulk job actions by filter, and the menu cache per store —
//! each refused to a barista and a manager, each answering the contract's
//! shapes over the real embedded adapters.
//!
//! States are made with the ports themselves (a dead letter through
//! `apply_batch`, dead jobs through claim and fail, a snapshot through
//! `record_snapshot`), as the processors and jobs would make them.

use axum::http::Method;
use domain::identity::Role;
use domain::jobs::{JobQueue, JobState, NewJob};
use domain::ops::PerfSnapshot;
use domain::ports::{ApplyBatch, DeadLetter};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use tempfile::TempDir;

use crate::harness::{Harness, STORE, harness_with, two_drinks};

struct Ops {
    h: Harness,
    queue: Arc<dyn JobQueue>,
    _dir: TempDir,
}

fn now() -> i64 {
    domain::ports::system_now_ms()
}

/// A router with a real queue and two schedules configured.
async fn ops() -> Ops {
    let dir = TempDir::new().unwrap();
    let queue: Arc<dyn JobQueue> = Arc::new(
        queue::SqliteQueue::open(&dir.path().join("jobs.db"), queue::SqliteQueueOptions::default())
            .expect("open the job queue"),
    );
    let q = queue.clone();
    let schedules = vec![
        worker::parse_schedule(
            "menu_sync",
            "*/30 * * * *",
            domain::jobs::sync_job(domain::jobs::SYNC_MENU, 0),
        )
        .unwrap(),
        worker::parse_schedule(
            "cleanup",
            "0 3 * * *",
            NewJob::new(domain::jobs::CLEANUP, "maintenance", json!({}), 0),
        )
        .unwrap(),
    ];
    let h = harness_with(move |c| {
        c.jobs = Some(q);
        c.ops.schedules = Some(Arc::new(worker::ScheduleList(schedules)));
        c.ops.instance = "test-host-1".into();
    })
    .await;
    Ops { h, queue, _dir: dir }
}

impl Ops {
    async fn admin(&self, method: Method, uri: &str, body: Option<Value>) -> crate::harness::Answer {
        self.h.as_role(Role::Admin, method, uri, body).await
    }

    /// Set a dead letter aside as a processor would: with a batch.
    async fn dead_letter(&self, partition: u32, offset: u64, payload: &[u8]) -> DeadLetter {
        let letter = DeadLetter {
            group: "processors".into(),
            partition,
            offset,
            key: format!("key-{offset}"),
            payload: payload.to_vec(),
            error: "undecodable record: expected value".into(),
            attempts: 1,
            at: now(),
        };
        let position = self
            .h
            .app
            .store
            .consumer_position("processors", partition)
            .await
            .unwrap();
        self.h
            .app
            .store
            .apply_batch(ApplyBatch {
                dead: std::slice::from_ref(&letter),
                ..ApplyBatch::new("processors", partition, position.max(offset + 1), now())
            })
            .await
            .unwrap();
        letter
    }
}

const NEW_ROUTES: &[(&str, &str)] = &[
    ("GET", "/v1/admin/figures"),
    ("GET", "/v1/admin/snapshots"),
    ("GET", "/v1/admin/schedules"),
    ("POST", "/v1/admin/schedules/menu_sync/run"),
    ("GET", "/v1/admin/dead-letters"),
    ("POST", "/v1/admin/dead-letters/processors/0/5/replay"),
    ("DELETE", "/v1/admin/dead-letters/processors/0/5"),
    ("POST", "/v1/admin/jobs/retry"),
    ("POST", "/v1/admin/jobs/discard"),
    ("GET", "/v1/admin/cache"),
    ("POST", "/v1/admin/cache/stores/demo-downtown/invalidate"),
];

#[tokio::test]
async fn baristas_and_managers_are_refused_every_operator_route() {
    let o = ops().await;
    o.dead_letter(0, 5, b"{}").await;
    for (method, uri) in NEW_ROUTES {
        let method: Method = method.parse().unwrap();
        let body = (method == Method::POST).then(|| json!({}));
        for role in [Role::Barista, Role::Manager] {
            o.h.as_role(role, method.clone(), uri, body.clone())
                .await
                .problem(403, "forbidden");
        }
    }
    // Nothing happened on their behalf.
    assert_eq!(o.h.app.store.dead_letters(10).await.unwrap().len(), 1);
    assert!(
        o.queue
            .list(&domain::jobs::JobFilter {
                limit: 10,
                ..Default::default()
            })
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn figures_are_non_zero_after_orders() {
    let o = ops().await;
    for _ in 0..3 {
        o.h.place(&two_drinks()).await;
    }
    o.h.process_all().await;
    // The sampler's step, taken here rather than waited for.
    telemetry::figures().sample(now());
    let f = o.admin(Method::GET, "/v1/admin/figures", None).await;
    assert_eq!(f.status, 200, "{:?}", f.body);
    let f = f.json();
    assert_eq!(
        (f["instance"].as_str(), f["role"].as_str()),
        (Some("test-host-1"), Some("serve"))
    );
    assert!(f["at"].as_i64().unwrap() > 0);
    for field in [
        "intake_per_sec",
        "confirmed_per_sec",
        "lag_total",
        "dead_letters",
        "open_streams",
    ] {
        assert!(f["now"][field].is_number(), "now.{field}: {f}");
    }
    let s = &f["series"];
    let t = s["t"].as_array().unwrap();
    assert!(!t.is_empty(), "{s}");
    for col in [
        "intake_per_sec",
        "confirmed_per_sec",
        "intake_p99_ms",
        "confirm_p99_ms",
        "lag_total",
        "batch_size_avg",
        "cache_hit_ratio",
        "dead_letters",
    ] {
        assert_eq!(s[col].as_array().unwrap().len(), t.len(), "series.{col}");
    }
    // Tests of this binary share the process's figures; whichever sample
    // took these orders is in the ring.
    let some = |col: &str| {
        s[col]
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v.as_f64().is_some_and(|x| x > 0.0))
    };
    for col in [
        "intake_per_sec",
        "confirmed_per_sec",
        "intake_p99_ms",
        "confirm_p99_ms",
        "batch_size_avg",
    ] {
        assert!(some(col), "series.{col} is all zero: {s}");
    }
    assert!(!f["partitions"].as_array().unwrap().is_empty(), "{f}");
    let queues = f["queues"].as_array().unwrap();
    assert_eq!(queues[0]["queue"], "default");
    for k in ["ready", "scheduled", "running", "done", "dead"] {
        assert!(queues[0][k].is_u64(), "{k}");
    }
    assert!(f["sync_runs"].is_array());

    let short = o.admin(Method::GET, "/v1/admin/figures?window=1", None).await.json();
    assert_eq!(short["series"]["t"].as_array().unwrap().len(), 1);
    for bad in ["0", "301", "x"] {
        let a = o
            .admin(Method::GET, &format!("/v1/admin/figures?window={bad}"), None)
            .await;
        a.problem(400, "invalid_query");
    }
}

#[tokio::test]
async fn snapshots_of_the_last_hours_newest_first() {
    let o = ops().await;
    let t = now();
    for (at, n) in [(t - 50 * 3_600_000, 0), (t - 600_000, 1), (t - 300_000, 2)] {
        o.h.app
            .store
            .record_snapshot(&PerfSnapshot {
                at,
                instance: "i-1".into(),
                metrics: json!({ "n": n }),
            })
            .await
            .unwrap();
    }
    let items = o.admin(Method::GET, "/v1/admin/snapshots", None).await.json()["items"].clone();
    let ns: Vec<_> = items
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["metrics"]["n"].clone())
        .collect();
    assert_eq!(ns, vec![json!(2), json!(1)], "48 h by default, newest first");
    assert_eq!(items[0]["instance"], "i-1");
    let all = o.admin(Method::GET, "/v1/admin/snapshots?hours=72", None).await.json();
    assert_eq!(all["items"].as_array().unwrap().len(), 3);
    o.admin(Method::GET, "/v1/admin/snapshots?hours=0", None)
        .await
        .problem(400, "invalid_query");
}

#[tokio::test]
async fn schedules_list_their_ticks_and_run_now() {
    let o = ops().await;
    let list = o.admin(Method::GET, "/v1/admin/schedules", None).await.json();
    let items = list["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!(items[0]["name"], "menu_sync");
    assert_eq!(items[0]["cron"], "*/30 * * * *");
    assert_eq!(items[0]["job_kind"], "sync.menu");
    assert_eq!(items[0]["queue"], "sync");
    assert!(items[0]["next_at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(items[0]["last_run_at"], Value::Null, "never fired");

    let run = o.admin(Method::POST, "/v1/admin/schedules/menu_sync/run", None).await;
    assert_eq!(run.status, 202, "{:?}", run.body);
    let run = run.json();
    assert_eq!(run["created"], true);
    let job = o.queue.get(run["job_id"].as_i64().unwrap()).await.unwrap().unwrap();
    assert_eq!((job.kind.as_str(), job.state), ("sync.menu", JobState::Queued));
    let again = o
        .admin(Method::POST, "/v1/admin/schedules/menu_sync/run", None)
        .await
        .json();
    assert_eq!(
        (again["job_id"].clone(), again["created"].clone()),
        (run["job_id"].clone(), json!(false)),
        "unique while queued"
    );

    // A tick fired by a scheduler shows as the last run.
    let slot = now() - 60_000;
    o.queue
        .fire(
            "cleanup",
            slot,
            &NewJob::new("cleanup.nightly", "maintenance", json!({}), slot),
            now(),
        )
        .await
        .unwrap();
    let list = o.admin(Method::GET, "/v1/admin/schedules", None).await.json();
    assert!(list["items"][1]["last_run_at"].is_string(), "{list}");

    o.admin(Method::POST, "/v1/admin/schedules/nope/run", None)
        .await
        .problem(404, "schedule_not_found");
}

#[tokio::test]
async fn dead_letters_are_listed_replayed_and_discarded() {
    let o = ops().await;
    let big = vec![b'x'; 10_000];
    let first = o.dead_letter(0, 5, b"{\"not\":\"an order\"}").await;
    o.dead_letter(1, 7, &big).await;
    let list = o.admin(Method::GET, "/v1/admin/dead-letters", None).await.json();
    let items = list["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    let one = items.iter().find(|i| i["offset"] == 5).unwrap();
    assert_eq!(one["group"], "processors");
    assert_eq!(one["key"], "key-5");
    assert_eq!(one["payload"], "{\"not\":\"an order\"}");
    assert_eq!(one["attempts"], 1);
    assert!(one["at"].as_str().unwrap().ends_with('Z'));
    let long = items.iter().find(|i| i["offset"] == 7).unwrap();
    assert_eq!(long["payload"].as_str().unwrap().len(), 4096, "cut at 4 KiB");
    o.admin(Method::GET, "/v1/admin/dead-letters?limit=0", None)
        .await
        .problem(400, "invalid_query");

    let before = o.h.log_records().await;
    let replayed = o
        .admin(Method::POST, "/v1/admin/dead-letters/processors/0/5/replay", None)
        .await;
    assert_eq!(replayed.status, 200, "{:?}", replayed.body);
    assert_eq!(replayed.json()["key"], "key-5");
    assert_eq!(o.h.log_records().await, before + 1, "appended again");
    let found =
        o.h.app
            .log
            .find(&first.key)
            .await
            .unwrap()
            .expect("the record is in the log");
    assert_eq!(found.payload, first.payload);
    o.admin(Method::POST, "/v1/admin/dead-letters/processors/0/5/replay", None)
        .await
        .problem(404, "dead_letter_not_found");

    let gone = o
        .admin(Method::DELETE, "/v1/admin/dead-letters/processors/1/7", None)
        .await;
    assert_eq!(gone.status, 204);
    o.admin(Method::DELETE, "/v1/admin/dead-letters/processors/1/7", None)
        .await
        .problem(404, "dead_letter_not_found");
    assert!(o.h.app.store.dead_letters(10).await.unwrap().is_empty());
    o.admin(Method::DELETE, "/v1/admin/dead-letters/processors/x/7", None)
        .await
        .problem(400, "invalid_path");
}

#[tokio::test]
async fn bulk_retry_and_discard_by_filter() {
    let o = ops().await;
    let t = now();
    let ids: Vec<_> = o
        .queue
        .enqueue(
            &[
                NewJob::new("mail.receipt", "mail", json!({}), t).attempts(1),
                NewJob::new("mail.receipt", "mail", json!({}), t).attempts(1),
                NewJob::new("noop", "default", json!({}), t).attempts(1),
            ],
            t,
        )
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.id())
        .collect();
    for q in ["mail", "default"] {
        for j in o.queue.claim(q, "w", 10, Duration::from_secs(60), t).await.unwrap() {
            o.queue.fail(j.id, "w", "boom", None, t).await.unwrap();
        }
    }
    let retried = o
        .admin(
            Method::POST,
            "/v1/admin/jobs/retry",
            Some(json!({"queue": "mail", "state": "dead"})),
        )
        .await;
    assert_eq!(retried.status, 200, "{:?}", retried.body);
    assert_eq!(retried.json(), json!({"affected": 2}));
    for id in &ids[..2] {
        assert_eq!(o.queue.get(*id).await.unwrap().unwrap().state, JobState::Queued);
    }
    assert_eq!(o.queue.get(ids[2]).await.unwrap().unwrap().state, JobState::Dead);
    let discarded = o
        .admin(Method::POST, "/v1/admin/jobs/discard", Some(json!({"kind": "noop"})))
        .await
        .json();
    assert_eq!(discarded, json!({"affected": 1}));
    assert!(o.queue.get(ids[2]).await.unwrap().is_none());
    o.admin(Method::POST, "/v1/admin/jobs/retry", Some(json!({"state": "running"})))
        .await
        .problem(422, "invalid_body");
    o.admin(Method::POST, "/v1/admin/jobs/discard", Some(json!({"nope": 1})))
        .await
        .problem(422, "invalid_body");
    // The audit log says who did what to how many.
    let audit = o.admin(Method::GET, "/v1/admin/audit", None).await.json();
    let text = audit.to_string();
    assert!(text.contains("jobs_retry") && text.contains("jobs_discard"), "{text}");
}

#[tokio::test]
async fn cache_hit_ratio_per_store_and_invalidation() {
    let o = ops().await;
    for _ in 0..3 {
        assert_eq!(o.h.get(&format!("/v1/stores/{STORE}/menu")).await.status, 200);
    }
    let c = o.admin(Method::GET, "/v1/admin/cache", None).await.json();
    let store = c["stores"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["store"] == STORE)
        .cloned()
        .unwrap();
    assert!(store["hits"].as_u64().unwrap() >= 2, "{c}");
    assert!(store["hit_ratio"].as_f64().unwrap() > 0.0);
    assert!(c["hits"].as_u64().unwrap() >= store["hits"].as_u64().unwrap());

    let inv = o
        .admin(
            Method::POST,
            &format!("/v1/admin/cache/stores/{STORE}/invalidate"),
            None,
        )
        .await;
    assert_eq!(inv.status, 204, "{:?}", inv.body);
    o.admin(Method::POST, "/v1/admin/cache/stores/no-such-store/invalidate", None)
        .await
        .problem(404, "store_not_found");
    // The menu still reads (from the store, then cached again).
    assert_eq!(o.h.get(&format!("/v1/stores/{STORE}/menu")).await.status, 200);
}

#[tokio::test]
async fn openapi_documents_the_operator_routes() {
    let o = ops().await;
    let doc = o.h.get("/openapi.json").await.json();
    let paths = doc["paths"].as_object().unwrap();
    for (method, path) in NEW_ROUTES {
        let path = path
            .replace("/menu_sync/", "/{name}/")
            .replace("/processors/0/5", "/{group}/{partition}/{offset}")
            .replace("/demo-downtown/", "/{id}/");
        let op = paths
            .get(&path)
            .and_then(|p| p.get(method.to_lowercase()))
            .unwrap_or_else(|| panic!("{method} {path} undocumented"));
        assert_eq!(op["security"][0]["bearer"], json!([]), "{method} {path}");
        assert!(op["responses"]["403"].is_object(), "{method} {path} documents its 403");
    }
    assert!(doc["components"]["schemas"]["FiguresView"].is_object());
}

#[tokio::test]
async fn a_worker_serves_its_figures_to_admins_only() {
    use axum::body::Body;
    use axum::http::{Request, header};
    use tower::ServiceExt;
    let mut captured = None;
    let h = harness_with(|c| {
        c.ops.role = "worker";
        captured = Some(c.clone());
    })
    .await;
    let ops = api::ops_router(h.app.clone(), telemetry::prometheus(), captured.unwrap());
    let get = |key: Option<String>| {
        let mut req = Request::get("/v1/admin/figures");
        if let Some(k) = key {
            req = req.header(header::AUTHORIZATION, format!("Bearer {k}"));
        }
        ops.clone().oneshot(req.body(Body::empty()).unwrap())
    };
    let ok = get(Some(h.keys[&Role::Admin].clone())).await.unwrap();
    assert_eq!(ok.status(), 200);
    let body = axum::body::to_bytes(ok.into_body(), usize::MAX).await.unwrap();
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["role"], "worker");
    assert_eq!(get(None).await.unwrap().status(), 401);
    assert_eq!(get(Some(h.keys[&Role::Manager].clone())).await.unwrap().status(), 403);
    let probe = ops
        .clone()
        .oneshot(Request::get("/health/live").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(probe.status(), 200, "probes stay open");
}

/// The heap profile in this test binary, which allocates with the system
/// allocator: with the real `profiling::ProcessProfiler` wired in, the
/// route says 503 `profiling_unavailable` (why, in the detail) instead of
/// answering an empty profile; without any profiler the same. Admins only;
/// the query is checked first.
#[tokio::test]
async fn a_heap_profile_without_jemalloc_is_profiling_unavailable() {
    let h = harness_with(|c| c.ops.profiler = Some(profiling::ProcessProfiler::shared())).await;
    let unavailable = h
        .as_role(Role::Admin, Method::GET, "/v1/admin/profile/heap?seconds=1", None)
        .await
        .problem(503, "profiling_unavailable");
    assert!(
        unavailable["detail"].as_str().unwrap().contains("jemalloc"),
        "{unavailable}"
    );
    let pprof = h
        .as_role(Role::Admin, Method::GET, "/v1/admin/profile/heap?format=pprof", None)
        .await;
    pprof.problem(503, "profiling_unavailable");
    for bad in ["seconds=0", "seconds=601", "format=png", "window=5"] {
        h.as_role(Role::Admin, Method::GET, &format!("/v1/admin/profile/heap?{bad}"), None)
            .await
            .problem(400, "invalid_query");
    }
    for role in [Role::Barista, Role::Manager] {
        h.as_role(role, Method::GET, "/v1/admin/profile/heap", None)
            .await
            .problem(403, "forbidden");
    }

    let none = harness_with(|c| c.ops.profiler = None).await;
    none.as_role(Role::Admin, Method::GET, "/v1/admin/profile/heap", None)
        .await
        .problem(503, "profiling_unavailable");
}
