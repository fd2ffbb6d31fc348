//! Scheduler tests on real queues: two instances sharing one queue (two
//! handles on one SQLite file, or two pools on one PostgreSQL schema) fire
//! each cron tick exactly once as a manual clock crosses the ticks; a
//! restart after missed ticks fires only the latest; bad cron is refused.
//!
//! Each instance is a `Scheduler` stepped with `run_once` at the manual
//! clock's `now`, so "nothing fired" is a step that returns nothing, not a
//! wait; one test runs the spawned loops to show they step on their own.

use crate::jobs::wait_until;
use domain::Clock;
use domain::jobs::{JobFilter, JobInfo, JobQueue, NewJob};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;
use tempfile::TempDir;
use testkit::clock::ManualClock;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use worker::{Fired, Schedule, ScheduleError, Scheduler, parse_schedule, spawn_scheduler};

const WAIT: Duration = Duration::from_secs(20);
/// A step that fired nothing.
const NONE: Vec<Fired> = Vec::new();
const MINUTE: i64 = 60_000;
const T0: i64 = 1_735_689_600_000; // 2025-01-01T00:00:00Z, a tick of every schedule below

fn every_minute(name: &str) -> Schedule {
    parse_schedule(
        name,
        "* * * * *",
        NewJob::new("maintenance.snapshot", "maintenance", json!({}), 0),
    )
    .unwrap()
}

async fn jobs_of(queue: &dyn JobQueue, kind: &str) -> Vec<JobInfo> {
    let mut jobs = queue
        .list(&JobFilter {
            kind: Some(kind.into()),
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    jobs.sort_by_key(|j| j.run_at);
    jobs
}

fn scheduler(queue: &Arc<dyn JobQueue>, clock: &Arc<ManualClock>, schedules: Vec<Schedule>) -> Scheduler {
    let clock: Arc<dyn Clock> = clock.clone();
    Scheduler::new(queue.clone(), clock, schedules)
}

/// Two schedulers on `queues` (two handles on one queue) cross three ticks:
/// three jobs, one per tick, due at their tick, each won by one instance.
async fn three_ticks_fire_three_jobs(a: Arc<dyn JobQueue>, b: Arc<dyn JobQueue>) {
    let clock = ManualClock::new(T0 + 30_000);
    let mut sa = scheduler(&a, &clock, vec![every_minute("snapshot")]);
    let mut sb = scheduler(&b, &clock, vec![every_minute("snapshot")]);
    // Never fired before: the tick at T0 is in the past and is not caught up.
    assert_eq!(sa.run_once().await.unwrap(), NONE);
    assert_eq!(sb.run_once().await.unwrap(), NONE);
    assert_eq!(sa.next_tick(), Some(T0 + MINUTE));

    for tick in 1..=3 {
        clock.advance(Duration::from_secs(60));
        let slot = T0 + tick * MINUTE;
        // Alternate who gets there first: exactly one wins either way.
        let (first, second) = if tick % 2 == 1 {
            (&mut sa, &mut sb)
        } else {
            (&mut sb, &mut sa)
        };
        let won = |won| {
            vec![Fired {
                schedule: "snapshot".into(),
                slot,
                won,
            }]
        };
        assert_eq!(first.run_once().await.unwrap(), won(true), "tick {tick}");
        assert_eq!(second.run_once().await.unwrap(), won(false), "tick {tick}");
        // Handled: another step at the same time fires nothing.
        assert_eq!(first.run_once().await.unwrap(), NONE);
        assert_eq!(jobs_of(&*a, "maintenance.snapshot").await.len(), tick as usize);
    }
    clock.advance(Duration::from_secs(29));
    assert_eq!(sa.run_once().await.unwrap(), NONE, "the next tick is a second away");

    let jobs = jobs_of(&*b, "maintenance.snapshot").await;
    let run_ats: Vec<i64> = jobs.iter().map(|j| j.run_at).collect();
    assert_eq!(run_ats, [T0 + MINUTE, T0 + 2 * MINUTE, T0 + 3 * MINUTE]);
    assert!(jobs.iter().all(|j| j.queue == "maintenance"));
    assert_eq!(a.last_fired("snapshot").await.unwrap(), Some(T0 + 3 * MINUTE));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_on_one_sqlite_queue_fire_each_tick_once() {
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("jobs.db");
    let a: Arc<dyn JobQueue> = Arc::new(queue::SqliteQueue::open(&path, Default::default()).unwrap());
    let b: Arc<dyn JobQueue> = Arc::new(queue::SqliteQueue::open(&path, Default::default()).unwrap());
    three_ticks_fire_three_jobs(a, b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_on_one_postgres_queue_fire_each_tick_once() {
    let Some(schema) = testkit::pg::TestSchema::new("rh_worker_sched", "scheduler::postgres") else {
        return;
    };
    let opts = queue::PgQueueOptions {
        max_connections: 4,
        schema: Some(schema.name.clone()),
        ..Default::default()
    };
    let a = queue::PgQueue::connect(&schema.url, opts.clone()).await.unwrap();
    a.migrate().await.unwrap();
    let b = queue::PgQueue::connect(&schema.url, opts).await.unwrap();
    three_ticks_fire_three_jobs(Arc::new(a), Arc::new(b)).await;
    schema.drop().await;
}

#[tokio::test]
async fn after_downtime_only_the_latest_missed_tick_fires() {
    let dir = TempDir::new().unwrap();
    let q: Arc<dyn JobQueue> =
        Arc::new(queue::SqliteQueue::open(&dir.path().join("jobs.db"), Default::default()).unwrap());
    let s = parse_schedule(
        "retention",
        "*/5 * * * *",
        NewJob::new("maintenance.prune", "maintenance", json!({}), 0),
    )
    .unwrap();
    // Fired at T0, then every instance was down for 22 minutes: the ticks
    // at +5, +10, +15 and +20 were missed.
    assert!(
        q.fire(
            "retention",
            T0,
            &NewJob {
                run_at: T0,
                ..s.job.clone()
            },
            T0
        )
        .await
        .unwrap()
    );
    let clock = ManualClock::new(T0 + 22 * MINUTE);
    let mut sched = scheduler(&q, &clock, vec![s]);
    let fired = sched.run_once().await.unwrap();
    assert_eq!(fired.iter().map(|f| f.slot).collect::<Vec<_>>(), [T0 + 20 * MINUTE]);
    // The next tick (+25) is not due yet: nothing more fires.
    assert_eq!(sched.run_once().await.unwrap(), NONE);
    assert_eq!(sched.next_tick(), Some(T0 + 25 * MINUTE));
    clock.advance(Duration::from_secs(3 * 60));
    assert_eq!(sched.run_once().await.unwrap().len(), 1);

    let run_ats: Vec<i64> = jobs_of(&*q, "maintenance.prune")
        .await
        .iter()
        .map(|j| j.run_at)
        .collect();
    assert_eq!(run_ats, [T0, T0 + 20 * MINUTE, T0 + 25 * MINUTE]);
}

/// The spawned loops step by themselves: two instances, sleeping on the
/// manual clock, fire each tick once as the test moves time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spawned_schedulers_fire_as_the_clock_moves() {
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("jobs.db");
    let a: Arc<dyn JobQueue> = Arc::new(queue::SqliteQueue::open(&path, Default::default()).unwrap());
    let b: Arc<dyn JobQueue> = Arc::new(queue::SqliteQueue::open(&path, Default::default()).unwrap());
    let clock = ManualClock::new(T0 + 30_000);
    let tracker = TaskTracker::new();
    let shutdown = CancellationToken::new();
    for q in [&a, &b] {
        let c: Arc<dyn Clock> = clock.clone();
        spawn_scheduler(q.clone(), c, vec![every_minute("snapshot")], &tracker, shutdown.clone());
    }
    // Both have read their (empty) history at T0+30s and sleep on the
    // clock; moving time before that would make the first tick "missed".
    wait_until("both schedulers to wait for their first tick", WAIT, || async {
        clock.sleeps() >= 2
    })
    .await;
    for tick in 1..=2 {
        clock.advance(Duration::from_secs(60));
        wait_until(&format!("tick {tick} to fire"), WAIT, || async {
            jobs_of(&*a, "maintenance.snapshot").await.len() == tick
        })
        .await;
    }
    shutdown.cancel();
    tracker.close();
    tokio::time::timeout(WAIT, tracker.wait())
        .await
        .expect("schedulers stop");
    let run_ats: Vec<i64> = jobs_of(&*a, "maintenance.snapshot")
        .await
        .iter()
        .map(|j| j.run_at)
        .collect();
    assert_eq!(run_ats, [T0 + MINUTE, T0 + 2 * MINUTE]);
}

#[test]
fn bad_cron_expressions_and_names_are_refused() {
    let job = || NewJob::new("x", "default", json!({}), 0);
    for cron in [
        "",
        "* * * *",
        "*/5 * * * * * * *",
        "60 * * * *",
        "* * 32 * *",
        "* * * 13 *",
        "every day",
        "0 0 31 2 *",
    ] {
        match parse_schedule("s", cron, job()) {
            Err(ScheduleError::InvalidCron { name, cron: c, reason }) => {
                assert_eq!((name.as_str(), c.as_str()), ("s", cron));
                assert!(!reason.is_empty());
            }
            other => panic!("{cron:?} should be refused, got {other:?}"),
        }
    }
    assert_eq!(parse_schedule(" ", "* * * * *", job()), Err(ScheduleError::EmptyName));
    let ok = parse_schedule("nightly", " 0 3 * * * ", job()).unwrap();
    assert_eq!(ok.cron, "0 3 * * *");
    assert_eq!(ok.next_after(T0).unwrap(), Some(T0 + 3 * 60 * MINUTE));
}
