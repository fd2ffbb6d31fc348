//! Integration tests of the queue crate: the `JobQueue` contract suite
//! (`testkit::queue`) against `SqliteQueue`, one test per case so failures
//! are named, plus what the suite cannot see (the file, migrations,
//! unreadable rows, a large drain). `postgres` runs the same suite and more
//! against `PgQueue` when a server is configured.

mod postgres;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use domain::jobs::{JobFilter, JobQueue, JobState, NewJob};
use domain::ports::PortError;
use queue::{QueueError, SqliteQueue, SqliteQueueOptions, Synchronous};
use tempfile::TempDir;

/// A fresh queue in its own directory, alive as long as the guard.
fn fresh() -> (TempDir, Arc<dyn JobQueue>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let q = SqliteQueue::open(&dir.path().join("jobs.db"), SqliteQueueOptions::default()).expect("open");
    (dir, Arc::new(q))
}

macro_rules! sqlite_contract {
    ($($case:ident),* $(,)?) => {
        mod contract {
            $(
                // Multi-threaded so the concurrency cases race for real.
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let (_dir, q) = super::fresh();
                    testkit::queue::$case(q).await;
                }
            )*
        }
    };
}
testkit::queue_contract_cases!(sqlite_contract);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_all_runs_every_case_on_a_fresh_queue() {
    let dir = tempfile::tempdir().unwrap();
    let made = AtomicUsize::new(0);
    testkit::queue::run_all(|| {
        let n = made.fetch_add(1, Ordering::SeqCst);
        let path = dir.path().join(format!("jobs-{n}.db"));
        async move {
            let q: Arc<dyn JobQueue> = Arc::new(SqliteQueue::open(&path, SqliteQueueOptions::default()).unwrap());
            q
        }
    })
    .await;
    assert_eq!(made.load(Ordering::SeqCst), testkit::queue::CASES.len());
}

fn raw(path: &Path) -> rusqlite::Connection {
    rusqlite::Connection::open(path).unwrap()
}

#[tokio::test]
async fn open_creates_folders_uses_wal_and_keeps_jobs_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested/data/jobs.db");
    let id = {
        let q = SqliteQueue::open(&path, SqliteQueueOptions::default()).unwrap();
        assert_eq!(q.path(), path);
        let out = q
            .enqueue(
                &[NewJob::new(
                    "mail.receipt",
                    "mail",
                    serde_json::json!({"to": "a@b.c"}),
                    1_000,
                )],
                1_000,
            )
            .await
            .unwrap();
        out[0].id()
    };
    let conn = raw(&path);
    let mode: String = conn.query_row("PRAGMA journal_mode", [], |r| r.get(0)).unwrap();
    assert_eq!(mode, "wal");
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
    assert_eq!(version, 2, "every migration applied");
    drop(conn);

    let q = SqliteQueue::open(
        &path,
        SqliteQueueOptions {
            synchronous: Synchronous::Normal,
            read_connections: 1,
        },
    )
    .unwrap();
    let job = q.get(id).await.unwrap().expect("job survives reopen");
    assert_eq!((job.state, job.kind.as_str()), (JobState::Queued, "mail.receipt"));
    let claimed = q.claim("mail", "w1", 10, Duration::from_secs(30), 2_000).await.unwrap();
    assert_eq!(claimed.len(), 1);
    q.health().await.unwrap();
}

#[test]
fn a_schema_from_a_newer_binary_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jobs.db");
    drop(SqliteQueue::open(&path, SqliteQueueOptions::default()).unwrap());
    raw(&path).execute_batch("PRAGMA user_version = 99").unwrap();
    match SqliteQueue::open(&path, SqliteQueueOptions::default()) {
        Err(QueueError::Invalid(msg)) => assert!(msg.contains("99"), "{msg}"),
        other => panic!("expected Invalid, got {other:?}"),
    }
}

#[test]
fn a_file_that_is_not_a_database_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jobs.db");
    std::fs::write(&path, vec![b'x'; 4096]).unwrap();
    assert!(matches!(
        SqliteQueue::open(&path, SqliteQueueOptions::default()),
        Err(QueueError::Invalid(_))
    ));
}

/// Rows the domain cannot represent come back as `Invalid`, never a panic,
/// and the error converts into the port's `Invalid`.
#[tokio::test]
async fn unreadable_rows_are_invalid_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jobs.db");
    let q = SqliteQueue::open(&path, SqliteQueueOptions::default()).unwrap();
    let id = q
        .enqueue(&[NewJob::new("k", "default", serde_json::json!({}), 1_000)], 1_000)
        .await
        .unwrap()[0]
        .id();
    let conn = raw(&path);
    conn.execute("UPDATE jobs SET payload = 'not json' WHERE id = ?1", [id])
        .unwrap();
    assert!(matches!(q.get(id).await, Err(PortError::Invalid(_))));
    assert!(matches!(
        q.claim("default", "w", 1, Duration::from_secs(1), 2_000).await,
        Err(PortError::Invalid(_))
    ));
    conn.execute("UPDATE jobs SET payload = '{}', attempts = -1 WHERE id = ?1", [id])
        .unwrap();
    assert!(matches!(
        q.list(&JobFilter {
            limit: 10,
            ..JobFilter::default()
        })
        .await,
        Err(PortError::Invalid(_))
    ));
}

/// The path the benchmark takes: 20,000 jobs enqueued in chunks of 1,000,
/// drained with claims of 500 and one `complete` per claim.
#[tokio::test]
async fn a_large_batch_drains_completely() {
    let (_dir, q) = fresh();
    drain(q).await;
}

/// Shared with the PostgreSQL tests.
pub(crate) async fn drain(q: Arc<dyn JobQueue>) {
    const JOBS: usize = 20_000;
    let now = 1_000;
    for chunk in 0..JOBS / 1_000 {
        let jobs: Vec<NewJob> = (0..1_000)
            .map(|i| NewJob::new("noop", "default", serde_json::json!({ "n": chunk * 1_000 + i }), now))
            .collect();
        let out = q.enqueue(&jobs, now).await.unwrap();
        assert_eq!(out.len(), 1_000);
    }
    let mut drained = 0;
    loop {
        let got = q
            .claim("default", "w1", 500, Duration::from_secs(60), now + 1)
            .await
            .unwrap();
        if got.is_empty() {
            break;
        }
        assert!(got.len() <= 500);
        let ids: Vec<i64> = got.iter().map(|j| j.id).collect();
        q.complete(&ids, "w1", now + 2).await.unwrap();
        drained += ids.len();
    }
    assert_eq!(drained, JOBS);
    let counts = q.counts(now + 3).await.unwrap();
    assert_eq!(
        (counts[0].queue.as_str(), counts[0].done, counts[0].queued),
        ("default", JOBS as u64, 0)
    );
    assert_eq!(q.prune(now + 3).await.unwrap(), JOBS as u64);
}
