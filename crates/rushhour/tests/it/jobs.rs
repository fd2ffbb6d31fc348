//! Background jobs end to end: a receipt e-mail after pickup, a menu sync
//! run as a job against the upstream simulator, the scheduler run by two
//! real processes at once (each tick fires once), and a job whose worker
//! process is killed mid-run (it runs again once its lease expires).

use crate::support::{STAFF_KEY, STORE, spawn_app_with};
use domain::OpsStore;
use domain::jobs::{JobFilter, JobQueue, JobState};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::process::{Child, Command};

const SIM_SECRET: &str = "jobs-test-secret";

async fn simulator(accounts: usize) -> upstream::Simulator {
    let (_, sim) = upstream::Simulator::start(upstream::SimOptions {
        accounts,
        client_secret: SIM_SECRET.into(),
        ..Default::default()
    })
    .await
    .expect("start the upstream simulator");
    sim
}

/// An embedded app whose upstream is `sim` (its client credentials set),
/// with `tweak` applied to the configuration on top.
async fn app_on(
    sim: &upstream::Simulator,
    tweak: impl FnOnce(&mut rushhour::config::Config),
) -> crate::support::TestApp {
    let base = sim.base_url().to_owned();
    spawn_app_with(move |c| {
        c.upstream.base_url = base;
        c.upstream.client_secret = SIM_SECRET.into();
        tweak(c);
    })
    .await
}

/// The newest `limit` jobs of `kind`.
async fn jobs_of(queue: &dyn JobQueue, kind: &str, limit: u32) -> Vec<domain::jobs::JobInfo> {
    queue
        .list(&JobFilter {
            kind: Some(kind.into()),
            limit,
            ..Default::default()
        })
        .await
        .unwrap()
}

/// Poll `check` every 50 ms until it returns `Some`, for at most `limit`.
async fn eventually<T, F, Fut>(limit: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_picked_up_order_gets_a_receipt_in_the_outbox() {
    let app = spawn_app_with(|_| {}).await;
    let body = json!({"store": STORE, "customer": "ana@example.com", "lines": [
        {"sku": "latte", "size": "large", "qty": 2}
    ]});
    let id = app.place(&body).await;
    assert_eq!(app.settled(&id).await, "confirmed");
    for step in ["lines/1/start", "lines/1/done", "pickup"] {
        let res = app.staff_post(&format!("/v1/orders/{id}/{step}")).await;
        assert_eq!(res.status(), StatusCode::OK, "{step}");
    }
    let outbox = app.config.data_dir.join("outbox");
    let eml = eventually(Duration::from_secs(20), "the receipt", || {
        let outbox = outbox.clone();
        async move {
            let entries = std::fs::read_dir(&outbox).ok()?;
            entries
                .filter_map(Result::ok)
                .filter(|e| e.path().extension().is_some_and(|x| x == "eml"))
                .find_map(|e| std::fs::read_to_string(e.path()).ok())
        }
    })
    .await;
    assert!(eml.contains("To: ana@example.com"), "{eml}");
    assert!(eml.contains(&id), "the receipt names the order: {eml}");
    // A second pickup request is refused and sends nothing more.
    let again = app.staff_post(&format!("/v1/orders/{id}/pickup")).await;
    assert_eq!(again.status(), StatusCode::CONFLICT);
    let receipts = jobs_of(&*app.built.jobs, "mail.receipt", 10).await;
    assert_eq!(receipts.len(), 1, "one receipt job per order");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_menu_sync_job_brings_upstream_changes_to_the_menu() {
    let sim = simulator(1_000).await;
    let app = app_on(&sim, |_| {}).await;
    let tasks = app.built.tasks(&app.config);
    let registry = worker::catalog::registry(tasks);
    let now = domain::ports::system_now_ms();
    let job = worker::catalog::unique_job(&registry, "sync.menu", now).unwrap();
    let id = app.built.jobs.enqueue(&[job], now).await.unwrap()[0].id();
    let jobs = app.built.jobs.clone();
    let done = eventually(Duration::from_secs(30), "the sync job", || {
        let jobs = jobs.clone();
        async move {
            let j = jobs.get(id).await.unwrap()?;
            assert_ne!(j.state, JobState::Dead, "sync failed: {:?}", j.last_error);
            (j.state == JobState::Done).then_some(j)
        }
    })
    .await;
    assert_eq!(done.attempts, 1);
    let menu: Value = app.get(&format!("/v1/stores/{STORE}/menu")).await.json().await.unwrap();
    let skus: Vec<&str> = menu["categories"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|c| c["items"].as_array().unwrap())
        .filter_map(|i| i["sku"].as_str())
        .collect();
    assert!(
        skus.len() >= sim.catalog_len(),
        "the menu has the upstream catalog ({} of {} items)",
        skus.len(),
        sim.catalog_len()
    );
    let runs = app.built.app.store.sync_runs(Some("menu"), 5).await.unwrap();
    assert_eq!(runs[0].outcome, "ok");
    assert!(runs[0].changed > 0);
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Every schedule switched off but `keep` (set to `cron`).
fn only_schedule(cmd: &mut Command, keep: &str, cron: &str) {
    for (name, _) in worker::catalog::SCHEDULES {
        let value = if name == keep { cron } else { "" };
        cmd.env(
            format!("RUSHHOUR__SCHEDULER__SCHEDULES__{}", name.to_uppercase()),
            value,
        );
    }
}

fn rushhour(role: &str, data_dir: &Path, env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rushhour"));
    cmd.args([role, "--addr", &format!("127.0.0.1:{}", free_port()), "--data-dir"])
        .arg(data_dir)
        .env("RUSHHOUR__TELEMETRY__LOG_FILTER", "warn")
        .env("RUSHHOUR__AUTH__STAFF_KEY", STAFF_KEY)
        // Scale mode (a PostgreSQL store) refuses to start without them.
        .env("RUSHHOUR__WEBHOOKS__SECRET", crate::support::WEBHOOK_SECRET)
        .env("RUSHHOUR__AUTH__SESSION_KEY", crate::support::SESSION_KEY)
        .env(
            "RUSHHOUR__AUTH__BOOTSTRAP_ADMIN_PASSWORD",
            crate::support::ADMIN_PASSWORD,
        )
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    cmd
}

async fn kill(mut child: Child) {
    let _ = child.kill().await;
    let _ = child.wait().await;
}

/// Two full processes (scheduler and job workers each) firing a snapshot
/// every second until three ticks have run: every tick becomes one job,
/// run once, whichever process won it. (Real processes on the wall clock:
/// the single-step, manual-clock version of this is the worker crate's
/// scheduler tests.) (The snapshot job is unique, so a tick whose
/// predecessor is still queued is skipped, never doubled.)
async fn two_schedulers_fire_each_tick_once(env: &[(&str, &str)], jobs: &dyn JobQueue) {
    let dirs = [tempfile::TempDir::new().unwrap(), tempfile::TempDir::new().unwrap()];
    let status = rushhour("migrate", dirs[0].path(), env).status().await.unwrap();
    assert!(status.success(), "migrate");
    let mut children = Vec::new();
    for d in &dirs {
        let mut cmd = rushhour("serve", d.path(), env);
        only_schedule(&mut cmd, "perf_snapshot", "* * * * * *");
        children.push(cmd.spawn().expect("start rushhour serve"));
    }
    let snapshots = || jobs_of(jobs, "perf.snapshot", 100);
    // Until three ticks have fired and run (about three seconds), bounded.
    eventually(Duration::from_secs(30), "three ticks fired and run", || async {
        let fired = snapshots().await;
        (fired.iter().filter(|j| j.state == JobState::Done).count() >= 3).then_some(())
    })
    .await;
    for c in children {
        kill(c).await;
    }
    let fired = snapshots().await;
    assert!(fired.len() >= 3, "at least three ticks fired: {fired:?}");
    let mut slots: Vec<i64> = fired.iter().map(|j| j.run_at).collect();
    slots.sort_unstable();
    slots.dedup();
    assert_eq!(slots.len(), fired.len(), "a tick fired twice: {fired:?}");
    assert!(slots.iter().all(|s| s % 1000 == 0), "slots are whole seconds");
    let done = fired.iter().filter(|j| j.state == JobState::Done).count();
    assert!(
        done >= fired.len() - 1,
        "the snapshots ran (all but maybe the last): {fired:?}"
    );
    assert!(fired.iter().all(|j| j.attempts <= 1), "each ran once: {fired:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_scheduler_processes_fire_each_tick_once_on_sqlite() {
    let shared = tempfile::TempDir::new().unwrap();
    let jobs_db = shared.path().join("jobs.db");
    let url = format!("sqlite://{}", jobs_db.display());
    // Create the schema before the processes race to.
    let queue = queue::SqliteQueue::open(&jobs_db, Default::default()).unwrap();
    two_schedulers_fire_each_tick_once(&[("RUSHHOUR__JOBS__URL", &url)], &queue).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_scheduler_processes_fire_each_tick_once_on_postgres() {
    let Some(schema) =
        testkit::pg::TestSchema::new("rh_sched", "two_scheduler_processes_fire_each_tick_once_on_postgres")
    else {
        return;
    };
    let queue = queue::PgQueue::connect(
        &schema.url,
        queue::PgQueueOptions {
            schema: Some(schema.name.clone()),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    queue.migrate().await.unwrap();
    two_schedulers_fire_each_tick_once(
        &[
            ("RUSHHOUR__JOBS__URL", &schema.url),
            ("RUSHHOUR__STORE__URL", &schema.url),
            ("RUSHHOUR__STORE__SCHEMA", &schema.name),
        ],
        &queue,
    )
    .await;
    drop(queue);
    schema.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_whose_worker_is_killed_runs_again_after_its_lease() {
    let sim = simulator(1_000).await;
    // The sync's first upstream call hangs long enough to kill the worker
    // in the middle of it.
    sim.set_latency(Duration::from_secs(3));
    let dir = tempfile::TempDir::new().unwrap();
    let env = [
        ("RUSHHOUR__UPSTREAM__BASE_URL", sim.base_url()),
        ("RUSHHOUR__UPSTREAM__CLIENT_SECRET", SIM_SECRET),
        ("RUSHHOUR__JOBS__LEASE_SECS", "2"),
        ("RUSHHOUR__UPSTREAM__TIMEOUT_MS", "10000"),
    ];
    let jobs_db = dir.path().join("jobs.db");
    let queue = queue::SqliteQueue::open(&jobs_db, Default::default()).unwrap();
    let now = domain::ports::system_now_ms();
    let job = domain::jobs::NewJob::new("sync.menu", "sync", json!({}), now)
        .attempts(3)
        .unique("sync.menu");
    let id = queue.enqueue(&[job], now).await.unwrap()[0].id();

    let first = rushhour("worker", dir.path(), &env).spawn().unwrap();
    let running = eventually(Duration::from_secs(30), "the first worker to take the job", || {
        let queue = &queue;
        async move {
            let j = queue.get(id).await.unwrap()?;
            (j.state == JobState::Running).then_some(j)
        }
    })
    .await;
    kill(first).await;
    sim.set_latency(Duration::ZERO);

    let second = rushhour("worker", dir.path(), &env).spawn().unwrap();
    let done = eventually(Duration::from_secs(30), "the job to run again", || {
        let queue = &queue;
        async move {
            let j = queue.get(id).await.unwrap()?;
            (j.state == JobState::Done).then_some(j)
        }
    })
    .await;
    kill(second).await;
    assert!(running.worker.is_some(), "a running job names its worker");
    assert_eq!(done.attempts, 2, "the killed attempt counts, the second one ran it");
    let runs = eventually(Duration::from_secs(5), "the sync run record", || async {
        let store = store::SqliteStore::open(&dir.path().join("rushhour.db"), Default::default()).ok()?;
        let runs = store.sync_runs(Some("menu"), 5).await.ok()?;
        (!runs.is_empty()).then_some(runs)
    })
    .await;
    assert_eq!(runs[0].outcome, "ok");
}

/// Issue 12's breaker bug: a sync job that failed with the upstream circuit
/// open is shown failed (queued again, its error kept), retried no sooner
/// than the circuit closes rather than burning its attempts inside the
/// cooldown, and an operator's retry once the upstream is back runs at once
/// as a half-open probe, although the circuit is still open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_job_waits_out_an_open_circuit_and_an_operator_retry_probes_it() {
    let sim = simulator(1_000).await;
    let app = app_on(&sim, |c| {
        c.upstream.max_retries = 0;
        c.upstream.circuit_failures = 1;
        c.upstream.circuit_cooldown_secs = 600;
    })
    .await;
    sim.fail_next(1, 503);
    let now = domain::ports::system_now_ms();
    let id = app
        .built
        .jobs
        .enqueue(&[domain::jobs::sync_job("sync.menu", now)], now)
        .await
        .unwrap()[0]
        .id();
    let jobs = app.built.jobs.clone();
    let failed = eventually(Duration::from_secs(30), "the failed attempt", || {
        let jobs = jobs.clone();
        async move {
            let j = jobs.get(id).await.unwrap()?;
            (j.attempts == 1 && j.state != JobState::Running).then_some(j)
        }
    })
    .await;
    assert_eq!(failed.state, JobState::Queued, "failed, to be retried: {failed:?}");
    assert!(
        failed.last_error.as_deref().is_some_and(|e| e.contains("503")),
        "{failed:?}"
    );
    assert!(
        failed.run_at >= failed.updated_at + 590_000,
        "the retry waits for the circuit's cooldown (600 s), not the 1 s backoff: {failed:?}"
    );

    // The upstream is back (the one injected failure is used up); the
    // operator retries at once, well inside the cooldown.
    let retried = app
        .built
        .jobs
        .retry_matching(
            &domain::jobs::BulkFilter {
                kind: Some("sync.menu".into()),
                state: Some(domain::jobs::BulkState::Scheduled),
                ..Default::default()
            },
            domain::ports::system_now_ms(),
        )
        .await
        .unwrap();
    assert_eq!(retried, 1);
    let done = eventually(Duration::from_secs(30), "the retried job", || {
        let jobs = jobs.clone();
        async move {
            let j = jobs.get(id).await.unwrap()?;
            assert_ne!(j.state, JobState::Dead, "{j:?}");
            (j.state == JobState::Done).then_some(j)
        }
    })
    .await;
    assert_eq!(done.attempts, 2, "the probe reached the upstream: {done:?}");
    let runs = app.built.app.store.sync_runs(Some("menu"), 5).await.unwrap();
    assert_eq!(runs[0].outcome, "ok", "{runs:?}");
}

/// `rushhour serve` on `port`, with `env`.
fn serve_on(dir: &Path, port: u16, env: &[(&str, &str)]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_rushhour"))
        .args(["serve", "--addr", &format!("127.0.0.1:{port}"), "--data-dir"])
        .arg(dir)
        .env("RUSHHOUR__TELEMETRY__LOG_FILTER", "warn")
        .env("RUSHHOUR__AUTH__STAFF_KEY", STAFF_KEY)
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("start rushhour serve")
}

/// The pickup's outbox (issue 12): a server that commits a pickup and dies
/// before its relay moved the receipt to the job queue (here its job
/// workers, and so its relay, are off; then it is killed with SIGKILL)
/// sends the receipt after a restart, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pickup_committed_before_a_crash_gets_its_receipt_once_after_the_restart() {
    let dir = tempfile::TempDir::new().unwrap();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let client = crate::support::http_client(Duration::from_secs(10));
    let first = serve_on(dir.path(), port, &[("RUSHHOUR__JOBS__ENABLED", "false")]);
    crate::crash::ready(&client, &base).await;

    let body = json!({"store": STORE, "customer": "bea@example.com", "lines": [
        {"sku": "latte", "size": "medium", "qty": 1}
    ]});
    let res = client
        .post(format!("{base}/v1/orders"))
        .header("Idempotency-Key", "outbox-1")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let id = res.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
    eventually(Duration::from_secs(20), "the order to be confirmed", || {
        let (client, url) = (client.clone(), format!("{base}/v1/orders/{id}"));
        async move {
            let res = client.get(url).bearer_auth(STAFF_KEY).send().await.ok()?;
            let v: Value = res.json().await.ok()?;
            (v["status"] == "confirmed").then_some(())
        }
    })
    .await;
    for step in ["lines/1/start", "lines/1/done", "pickup"] {
        let res = client
            .post(format!("{base}/v1/orders/{id}/{step}"))
            .bearer_auth(STAFF_KEY)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK, "{step}");
    }
    kill(first).await;

    let outbox = dir.path().join("outbox");
    let emls = || -> Vec<String> {
        std::fs::read_dir(&outbox)
            .map(|d| {
                d.filter_map(Result::ok)
                    .filter(|e| e.path().extension().is_some_and(|x| x == "eml"))
                    .filter_map(|e| std::fs::read_to_string(e.path()).ok())
                    .collect()
            })
            .unwrap_or_default()
    };
    assert!(emls().is_empty(), "nothing was sent before the crash");

    let second = serve_on(dir.path(), port, &[]);
    let queue = queue::SqliteQueue::open(&dir.path().join("jobs.db"), Default::default()).unwrap();
    let receipts = eventually(Duration::from_secs(30), "the receipt job to finish", || {
        let queue = &queue;
        async move {
            let jobs = jobs_of(queue, "mail.receipt", 10).await;
            (!jobs.is_empty() && jobs.iter().all(|j| j.state == JobState::Done)).then_some(jobs)
        }
    })
    .await;
    kill(second).await;
    assert_eq!(receipts.len(), 1, "one receipt job: {receipts:?}");
    let sent = emls();
    assert_eq!(sent.len(), 1, "one receipt e-mail");
    assert!(
        sent[0].contains("To: bea@example.com") && sent[0].contains(&id),
        "{}",
        sent[0]
    );
}

/// Loyalty points (issue 12): a picked-up order whose customer is a
/// loyalty account earns points once — a relay replayed from before the
/// pickup awards nothing more — shown on the order and the account, and
/// reported to the loyalty service once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pickup_earns_loyalty_points_once_and_reports_them_once() {
    let sim = simulator(100).await;
    let app = app_on(&sim, |_| {}).await;
    let tasks = app.built.tasks(&app.config);
    tasks.sync_accounts(&domain::sync::NoProgress).await.unwrap();
    let account = "L000007";
    let store = app.built.app.store.clone();
    let before = store.loyalty_account(account).await.unwrap().expect("synced").points;

    let body = json!({"store": STORE, "customer": account, "lines": [
        {"sku": "latte", "size": "large", "qty": 2}
    ]});
    let id = app.place(&body).await;
    assert_eq!(app.settled(&id).await, "confirmed");
    for step in ["lines/1/start", "lines/1/done", "pickup"] {
        let res = app.staff_post(&format!("/v1/orders/{id}/{step}")).await;
        assert_eq!(res.status(), StatusCode::OK, "{step}");
    }
    let (points, order) = eventually(Duration::from_secs(20), "the order's points", || async {
        let v = app.order(&id).await;
        v["points"].as_i64().map(|p| (p, v))
    })
    .await;
    let total = order["total"]["amount"].as_i64().unwrap();
    assert_eq!(points, total / 100, "1 point per whole unit of {total}");
    assert!(points > 0);
    eventually(Duration::from_secs(20), "the points report", || async {
        (sim.stats().points_applied == 1).then_some(())
    })
    .await;
    assert_eq!(sim.reported_points(account), points);

    // The pickup replayed: the relay reads the store's events from the
    // start again.
    let cursor = domain::outbox::cursor_key(&domain::StoreId(STORE.into()));
    store.set_sync_cursor(&cursor, Some("0")).await.unwrap();
    let relay = worker::Relay::new(app.built.app.clone(), app.built.jobs.clone(), Default::default());
    relay.run_once().await.unwrap();
    let after = store.loyalty_account(account).await.unwrap().unwrap().points;
    assert_eq!(after, before + points, "the points counted once");

    // The account, as an admin sees it, once the report is acknowledged;
    // the replay's report job found nothing more to report.
    let jobs = app.built.jobs.clone();
    eventually(Duration::from_secs(20), "the replayed jobs to finish", || {
        let jobs = jobs.clone();
        async move {
            let all = jobs_of(&*jobs, "loyalty.report", 10).await;
            all.iter().all(|j| j.state == JobState::Done).then_some(())
        }
    })
    .await;
    let view: Value = app
        .staff_get(&format!("/v1/admin/loyalty/accounts/{account}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(view["points"], after);
    let awards = view["awards"].as_array().unwrap();
    assert_eq!(awards.len(), 1, "{view}");
    assert_eq!(awards[0]["order_id"], id.as_str());
    assert_eq!(awards[0]["points"], points);
    assert!(awards[0]["reported_at"].is_string(), "{view}");
    assert_eq!(sim.stats().points_applied, 1, "reported once to the service");
    let missing = app.staff_get("/v1/admin/loyalty/accounts/nobody").await;
    crate::support::problem(missing, 404, "account_not_found").await;
}
