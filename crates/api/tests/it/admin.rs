//! The `/v1/admin/...` job routes through the whole router over a real
//! `queue::SqliteQueue`: the staff key guard, the 503 of a process without
//! a queue, counts, listing with filters and keyset pages, and the
//! show / retry / discard flow of a dead job, including the 404 and 409
//! answers for jobs in the wrong state.
//!
//! Jobs are put into the states under test with the port itself (enqueue,
//! claim, fail), exactly as the job runner would, so these tests pin the
//! HTTP contract and not a hand-written table row.

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use domain::jobs::{JobId, JobQueue, NewJob};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use tempfile::TempDir;

use crate::harness::{Answer, Harness, harness, harness_with};

const WORKER: &str = "test-worker";

struct Admin {
    h: Harness,
    queue: Arc<dyn JobQueue>,
    _dir: TempDir,
}

async fn admin() -> Admin {
    let dir = TempDir::new().unwrap();
    let queue: Arc<dyn JobQueue> = Arc::new(
        queue::SqliteQueue::open(&dir.path().join("jobs.db"), queue::SqliteQueueOptions::default())
            .expect("open the job queue"),
    );
    let q = queue.clone();
    let h = harness_with(move |c| c.jobs = Some(q)).await;
    Admin { h, queue, _dir: dir }
}

fn now() -> i64 {
    domain::ports::system_now_ms()
}

impl Admin {
    async fn enqueue(&self, job: NewJob) -> JobId {
        self.queue.enqueue(&[job], now()).await.unwrap()[0].id()
    }

    /// A `mail.receipt` job that failed its only attempt: dead, with an error.
    async fn dead_job(&self) -> JobId {
        let id = self
            .enqueue(NewJob::new("mail.receipt", "mail", json!({"order": "o-1"}), now()).attempts(1))
            .await;
        self.run_and_fail(id).await;
        id
    }

    /// Claim the `mail` queue's due jobs and fail `id` for good.
    async fn run_and_fail(&self, id: JobId) {
        let claimed = self
            .queue
            .claim("mail", WORKER, 10, Duration::from_secs(60), now())
            .await
            .unwrap();
        assert!(claimed.iter().any(|j| j.id == id), "claimed {claimed:?}");
        self.queue
            .fail(id, WORKER, "smtp: connection refused", None, now())
            .await
            .unwrap();
    }
}

async fn anonymous(h: &Harness, method: Method, uri: &str, key: Option<&str>) -> Answer {
    let mut req = Request::builder().method(method).uri(uri);
    if let Some(k) = key {
        req = req.header(header::AUTHORIZATION, format!("Bearer {k}"));
    }
    h.send(req.body(Body::empty()).unwrap()).await
}

const ROUTES: [(&str, &str); 6] = [
    ("GET", "/v1/admin/queues"),
    ("GET", "/v1/admin/jobs"),
    ("GET", "/v1/admin/jobs/1"),
    ("POST", "/v1/admin/jobs/1/retry"),
    ("DELETE", "/v1/admin/jobs/1"),
    ("POST", "/v1/admin/sync/menu"),
];

#[tokio::test]
async fn every_admin_route_needs_the_staff_key() {
    let a = admin().await;
    let id = a.dead_job().await;
    for (method, uri) in ROUTES {
        let method: Method = method.parse().unwrap();
        let uri = uri.replace("/1", &format!("/{id}"));
        for key in [None, Some("wrong-key")] {
            let ans = anonymous(&a.h, method.clone(), &uri, key).await;
            ans.problem(401, "unauthorized");
            assert_eq!(ans.headers[header::WWW_AUTHENTICATE], "Bearer");
        }
    }
    // Nothing was retried or discarded by the refused calls.
    assert_eq!(
        a.queue.get(id).await.unwrap().unwrap().state,
        domain::jobs::JobState::Dead
    );
}

#[tokio::test]
async fn a_sync_is_enqueued_once_and_caches_can_be_cleared() {
    let a = admin().await;
    let first = a.h.staff(Method::POST, "/v1/admin/sync/all", None).await;
    assert_eq!(first.status, StatusCode::ACCEPTED, "{:?}", first.body);
    let jobs = first.json()["jobs"].as_array().unwrap().clone();
    assert_eq!(jobs.len(), 2);
    assert!(jobs.iter().all(|j| j["created"] == true), "{jobs:?}");
    let kinds: Vec<&str> = jobs.iter().map(|j| j["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["sync.menu", "sync.accounts"]);
    // Asked again while queued: the same jobs, nothing new.
    let again = a.h.staff(Method::POST, "/v1/admin/sync/menu", None).await;
    assert_eq!(again.status, StatusCode::ACCEPTED);
    let j = &again.json()["jobs"][0];
    assert_eq!(
        (j["id"].clone(), j["created"].clone()),
        (jobs[0]["id"].clone(), json!(false))
    );
    let queued = a.queue.get(jobs[0]["id"].as_i64().unwrap()).await.unwrap().unwrap();
    assert_eq!(
        (queued.queue.as_str(), queued.state),
        ("sync", domain::jobs::JobState::Queued)
    );
    a.h.staff(Method::POST, "/v1/admin/sync/everything", None)
        .await
        .problem(404, "sync_not_found");

    let cleared = a.h.staff(Method::POST, "/v1/admin/cache/clear", None).await;
    assert_eq!(cleared.status, StatusCode::NO_CONTENT);
    anonymous(&a.h, Method::POST, "/v1/admin/cache/clear", None)
        .await
        .problem(401, "unauthorized");
}

#[tokio::test]
async fn without_a_queue_admin_routes_answer_jobs_unavailable() {
    let h = harness().await;
    for (method, uri) in ROUTES {
        let a = h.staff(method.parse().unwrap(), uri, None).await;
        a.problem(503, "jobs_unavailable");
    }
}

#[tokio::test]
async fn a_dead_job_can_be_listed_shown_retried_and_discarded() {
    let a = admin().await;
    let id = a.dead_job().await;
    let other = a.enqueue(NewJob::new("sync.menu", "sync", json!({}), now())).await;

    // Listed, filtered by state, queue and kind.
    let page = a.h.staff(Method::GET, "/v1/admin/jobs?state=dead", None).await;
    assert_eq!(page.status, 200, "{:?}", page.body);
    let v = page.json();
    let jobs = v["jobs"].as_array().unwrap();
    assert_eq!(jobs.len(), 1, "{v}");
    assert_eq!(jobs[0]["id"], id);
    assert_eq!(v["next_cursor"], Value::Null);
    for uri in ["/v1/admin/jobs?queue=mail", "/v1/admin/jobs?kind=mail.receipt"] {
        let v = a.h.staff(Method::GET, uri, None).await.json();
        let ids: Vec<i64> = v["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|j| j["id"].as_i64().unwrap())
            .collect();
        assert_eq!(ids, vec![id], "{uri}");
    }
    let all = a.h.staff(Method::GET, "/v1/admin/jobs", None).await.json();
    let ids: Vec<i64> = all["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, vec![other, id], "newest first");

    // Shown, with everything an operator needs.
    let show = a.h.staff(Method::GET, &format!("/v1/admin/jobs/{id}"), None).await;
    assert_eq!(show.status, 200);
    let job = show.json();
    assert_eq!(job["state"], "dead");
    assert_eq!(job["kind"], "mail.receipt");
    assert_eq!(job["queue"], "mail");
    assert_eq!(job["payload"], json!({"order": "o-1"}));
    assert_eq!(job["attempts"], 1);
    assert_eq!(job["max_attempts"], 1);
    assert_eq!(job["last_error"], "smtp: connection refused");
    assert!(job["run_at"].as_str().unwrap().ends_with('Z'), "{job}");
    assert!(job["finished_at"].as_str().is_some(), "{job}");

    // Retried: queued again, attempts reset; a second retry is a conflict.
    let retried =
        a.h.staff(Method::POST, &format!("/v1/admin/jobs/{id}/retry"), None)
            .await;
    assert_eq!(retried.status, 200, "{:?}", retried.body);
    let job = retried.json();
    assert_eq!(job["state"], "queued");
    assert_eq!(job["attempts"], 0);
    assert_eq!(job["finished_at"], Value::Null);
    a.h.staff(Method::POST, &format!("/v1/admin/jobs/{id}/retry"), None)
        .await
        .problem(409, "job_not_dead");

    // Running: cannot be discarded.
    let claimed = a
        .queue
        .claim("mail", WORKER, 10, Duration::from_secs(60), now())
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    a.h.staff(Method::DELETE, &format!("/v1/admin/jobs/{id}"), None)
        .await
        .problem(409, "job_running");
    a.queue
        .fail(id, WORKER, "smtp: connection refused", None, now())
        .await
        .unwrap();

    // Dead again: discarded, and then gone for every route.
    let gone = a.h.staff(Method::DELETE, &format!("/v1/admin/jobs/{id}"), None).await;
    assert_eq!(gone.status, StatusCode::NO_CONTENT, "{:?}", gone.body);
    assert!(gone.body.is_empty());
    assert!(a.queue.get(id).await.unwrap().is_none());
    for (method, uri) in [
        (Method::GET, format!("/v1/admin/jobs/{id}")),
        (Method::POST, format!("/v1/admin/jobs/{id}/retry")),
        (Method::DELETE, format!("/v1/admin/jobs/{id}")),
    ] {
        a.h.staff(method, &uri, None).await.problem(404, "job_not_found");
    }
    // The other job was never touched.
    assert!(a.queue.get(other).await.unwrap().is_some());
}

#[tokio::test]
async fn counts_cover_every_queue_and_state() {
    let a = admin().await;
    let t = now();
    let _dead = a.dead_job().await;
    a.enqueue(NewJob::new("mail.receipt", "mail", json!({}), t)).await;
    a.enqueue(NewJob::new("mail.receipt", "mail", json!({}), t).at(t + 3_600_000))
        .await;
    let done = a.enqueue(NewJob::new("sync.menu", "sync", json!({}), t)).await;
    let running = a.enqueue(NewJob::new("sync.loyalty", "sync", json!({}), t)).await;
    let claimed = a
        .queue
        .claim("sync", WORKER, 10, Duration::from_secs(60), now())
        .await
        .unwrap();
    assert_eq!(claimed.len(), 2);
    a.queue.complete(&[done], WORKER, now()).await.unwrap();

    let ans = a.h.staff(Method::GET, "/v1/admin/queues", None).await;
    assert_eq!(ans.status, 200, "{:?}", ans.body);
    let v = ans.json();
    let queues = v["queues"].as_array().unwrap();
    let of = |name: &str| {
        queues
            .iter()
            .find(|q| q["queue"] == name)
            .unwrap_or_else(|| panic!("no {name} in {v}"))
            .clone()
    };
    assert_eq!(
        of("mail"),
        json!({"queue": "mail", "queued": 2, "scheduled": 1, "running": 0, "done": 0, "dead": 1})
    );
    assert_eq!(
        of("sync"),
        json!({"queue": "sync", "queued": 0, "scheduled": 0, "running": 1, "done": 1, "dead": 0})
    );
    for standard in domain::jobs::QUEUES {
        of(standard);
    }
    let job =
        a.h.staff(Method::GET, &format!("/v1/admin/jobs/{running}"), None)
            .await
            .json();
    assert_eq!(job["state"], "running");
    assert_eq!(job["worker"], WORKER);
    assert!(job["lease_until"].is_string(), "{job}");
}

#[tokio::test]
async fn job_lists_page_by_cursor_and_validate_their_query() {
    let a = admin().await;
    let mut ids = Vec::new();
    for n in 0..5 {
        ids.push(
            a.enqueue(NewJob::new("maintenance.prune", "maintenance", json!({"n": n}), now()))
                .await,
        );
    }
    ids.reverse(); // newest first

    let mut seen = Vec::new();
    let mut uri = "/v1/admin/jobs?limit=2".to_owned();
    loop {
        let v = a.h.staff(Method::GET, &uri, None).await.json();
        let page: Vec<i64> = v["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|j| j["id"].as_i64().unwrap())
            .collect();
        assert!(page.len() <= 2, "{v}");
        seen.extend(page);
        match v["next_cursor"].as_i64() {
            Some(c) => uri = format!("/v1/admin/jobs?limit=2&before={c}"),
            None => break,
        }
    }
    assert_eq!(seen, ids);

    for bad in [
        "/v1/admin/jobs?limit=0",
        "/v1/admin/jobs?limit=101",
        "/v1/admin/jobs?limit=many",
        "/v1/admin/jobs?state=zombie",
        "/v1/admin/jobs?before=abc",
    ] {
        a.h.staff(Method::GET, bad, None).await.problem(400, "invalid_query");
    }
    a.h.staff(Method::GET, "/v1/admin/jobs/abc", None)
        .await
        .problem(400, "invalid_path");
}

#[tokio::test]
async fn openapi_documents_the_admin_routes() {
    let a = admin().await;
    let doc = a.h.get("/openapi.json").await.json();
    let paths = doc["paths"].as_object().unwrap();
    for (path, method) in [
        ("/v1/admin/queues", "get"),
        ("/v1/admin/jobs", "get"),
        ("/v1/admin/jobs/{id}", "get"),
        ("/v1/admin/jobs/{id}", "delete"),
        ("/v1/admin/jobs/{id}/retry", "post"),
    ] {
        let op = paths
            .get(path)
            .and_then(|p| p.get(method))
            .unwrap_or_else(|| panic!("{method} {path} undocumented"));
        assert_eq!(op["security"][0]["bearer"], json!([]), "{method} {path}");
    }
    assert!(doc["components"]["schemas"]["JobView"].is_object());
}
