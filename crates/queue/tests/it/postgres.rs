//! The `JobQueue` contract suite against `PgQueue`, plus what the suite
//! cannot see: concurrent migrations, refusing a newer schema, two
//! processes sharing one queue, a large drain.
//!
//! Needs a server: `RUSHHOUR_TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/test`.
//! Without it every test here returns early with a loud notice (and fails
//! when `RUSHHOUR_REQUIRE_SERVICES=1`). Each test gets its own schema
//! (`rh_queue_test_<uuid>`), dropped when it finishes without panicking.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use domain::jobs::{JobQueue, NewJob};
use queue::{PgQueue, PgQueueOptions, QueueError};

/// A schema of its own for one test (`testkit::pg::TestSchema`); `drop`
/// it at the end.
pub(crate) struct Schema(testkit::pg::TestSchema);

impl std::ops::Deref for Schema {
    type Target = testkit::pg::TestSchema;

    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl Schema {
    pub(crate) fn new(test: &str) -> Option<Self> {
        testkit::pg::TestSchema::new("rh_queue_test", test).map(Self)
    }

    fn options(&self) -> PgQueueOptions {
        PgQueueOptions {
            max_connections: 6,
            schema: Some(self.name.clone()),
            ..PgQueueOptions::default()
        }
    }

    pub(crate) async fn queue(&self) -> PgQueue {
        let q = PgQueue::connect(&self.url, self.options()).await.expect("connect");
        q.migrate().await.expect("migrate");
        q
    }

    pub(crate) async fn drop(self) {
        self.0.drop().await
    }
}

macro_rules! pg_contract {
    ($($case:ident),* $(,)?) => {
        mod contract {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let Some(schema) = super::Schema::new(concat!("postgres::", stringify!($case))) else {
                        return;
                    };
                    let q: std::sync::Arc<dyn domain::jobs::JobQueue> = std::sync::Arc::new(schema.queue().await);
                    testkit::queue::$case(q).await;
                    schema.drop().await;
                }
            )*
        }
    };
}
testkit::queue_contract_cases!(pg_contract);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_migrations_both_succeed() {
    let Some(schema) = Schema::new("postgres::concurrent_migrations_both_succeed") else {
        return;
    };
    let a = PgQueue::connect(&schema.url, schema.options()).await.unwrap();
    let b = PgQueue::connect(&schema.url, schema.options()).await.unwrap();
    let (ra, rb) = tokio::join!(a.migrate(), b.migrate());
    ra.expect("first migrate");
    rb.expect("second migrate");
    a.migrate().await.expect("idempotent migrate");
    let mut raw = schema.raw().await;
    let versions: Vec<i32> = sqlx::query_scalar("SELECT version FROM queue_migrations ORDER BY version")
        .fetch_all(&mut raw)
        .await
        .unwrap();
    assert_eq!(versions, vec![1, 2], "each migration recorded once");
    a.health().await.unwrap();
    b.health().await.unwrap();
    drop(raw);
    schema.drop().await;
}

#[tokio::test]
async fn a_schema_from_a_newer_binary_is_refused() {
    let Some(schema) = Schema::new("postgres::a_schema_from_a_newer_binary_is_refused") else {
        return;
    };
    let q = schema.queue().await;
    let mut raw = schema.raw().await;
    sqlx::query("INSERT INTO queue_migrations (version) VALUES (99)")
        .execute(&mut raw)
        .await
        .unwrap();
    match q.migrate().await {
        Err(QueueError::Invalid(msg)) => assert!(msg.contains("99"), "{msg}"),
        other => panic!("expected Invalid, got {other:?}"),
    }
    drop(raw);
    schema.drop().await;
}

/// Checked before any connection is made, so no server is needed.
#[tokio::test]
async fn a_schema_name_that_is_not_an_identifier_is_refused() {
    let opts = PgQueueOptions {
        schema: Some("jobs; DROP TABLE x".into()),
        ..PgQueueOptions::default()
    };
    assert!(matches!(
        PgQueue::connect("postgres://nobody@127.0.0.1:1/none", opts).await,
        Err(QueueError::Invalid(_))
    ));
}

/// Two processes on one queue: their claimers never get the same job, and
/// only one of them fires a slot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_share_one_queue() {
    let Some(schema) = Schema::new("postgres::two_processes_share_one_queue") else {
        return;
    };
    let a: Arc<dyn JobQueue> = Arc::new(schema.queue().await);
    let b: Arc<dyn JobQueue> = Arc::new(schema.queue().await);
    let jobs: Vec<NewJob> = (0..600)
        .map(|i| NewJob::new("noop", "default", serde_json::json!({ "n": i }), 1_000))
        .collect();
    a.enqueue(&jobs, 1_000).await.unwrap();
    let tasks: Vec<_> = [a.clone(), b.clone(), a.clone(), b.clone()]
        .into_iter()
        .enumerate()
        .map(|(w, q)| {
            tokio::spawn(async move {
                let worker = format!("p{w}");
                let mut mine = Vec::new();
                loop {
                    let got = q
                        .claim("default", &worker, 25, Duration::from_secs(60), 2_000)
                        .await
                        .unwrap();
                    if got.is_empty() {
                        break mine;
                    }
                    mine.extend(got.iter().map(|j| j.id));
                }
            })
        })
        .collect();
    let mut seen = HashSet::new();
    let mut total = 0;
    for t in tasks {
        let mine = t.await.unwrap();
        total += mine.len();
        seen.extend(mine);
    }
    assert_eq!((total, seen.len()), (600, 600));

    let tick = NewJob::new("maintenance.prune", "maintenance", serde_json::json!({}), 1_000);
    let (fa, fb) = tokio::join!(
        a.fire("prune", 60_000, &tick, 1_000),
        b.fire("prune", 60_000, &tick, 1_000)
    );
    assert!(fa.unwrap() ^ fb.unwrap(), "exactly one process fires the slot");
    let fired = a
        .list(&domain::jobs::JobFilter {
            kind: Some("maintenance.prune".into()),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(fired.len(), 1);
    schema.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_batch_drains_completely() {
    let Some(schema) = Schema::new("postgres::a_large_batch_drains_completely") else {
        return;
    };
    super::drain(Arc::new(schema.queue().await)).await;
    schema.drop().await;
}
