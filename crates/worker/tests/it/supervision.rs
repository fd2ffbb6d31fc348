//! A processor task that dies is restarted, and readiness tells the truth
//! meanwhile: a log wrapper panics inside the first batch it hands out, the
//! partition shows up as stalled (the readiness check fails) while the
//! restart backoff runs on a manual clock, and once the test moves time the
//! processor is back, the restart is counted, readiness recovers and the
//! batch the dead task held is applied from the stored position.

use async_trait::async_trait;
use domain::ports::{
    AppendOutcome, AppendRequest, DeadLetter, EventLog, IdempotencyRecord, LogRecord, Membership, MenuStore, PortResult,
};
use domain::{OrderStatus, Rushhour, RushhourConfig};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tempfile::TempDir;
use testkit::clock::ManualClock;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use worker::{ProcessorConfig, spawn_processors};

use crate::jobs::wait_until;

const WAIT: Duration = Duration::from_secs(20);

/// Delegates to a real log, but panics (once) right after reading a
/// non-empty batch: the processor dies holding records it has not applied.
struct PanicsInABatch {
    inner: Arc<dyn EventLog>,
    armed: AtomicBool,
}

#[async_trait]
impl EventLog for PanicsInABatch {
    fn partitions(&self) -> u32 {
        self.inner.partitions()
    }

    async fn append(&self, req: AppendRequest) -> PortResult<AppendOutcome> {
        self.inner.append(req).await
    }

    async fn idempotency(&self, key: &str) -> PortResult<Option<IdempotencyRecord>> {
        self.inner.idempotency(key).await
    }

    async fn find(&self, key: &str) -> PortResult<Option<LogRecord>> {
        self.inner.find(key).await
    }

    async fn read(&self, partition: u32, from: u64, max: usize, wait: Duration) -> PortResult<Vec<LogRecord>> {
        let records = self.inner.read(partition, from, max, wait).await?;
        if !records.is_empty() && self.armed.swap(false, Ordering::SeqCst) {
            panic!("injected fault: the processor of partition {partition} dies inside a batch");
        }
        Ok(records)
    }

    async fn end_offset(&self, partition: u32) -> PortResult<u64> {
        self.inner.end_offset(partition).await
    }

    async fn commit(&self, group: &str, partition: u32, next: u64) -> PortResult<()> {
        self.inner.commit(group, partition, next).await
    }

    async fn join(&self, group: &str) -> PortResult<Membership> {
        self.inner.join(group).await
    }

    async fn dead_letter(&self, letter: &DeadLetter) -> PortResult<()> {
        self.inner.dead_letter(letter).await
    }

    async fn prune_idempotency(&self, before: i64) -> PortResult<u64> {
        self.inner.prune_idempotency(before).await
    }

    async fn health(&self) -> PortResult<()> {
        self.inner.health().await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_processor_that_dies_is_restarted_and_readiness_fails_meanwhile() {
    let dir = TempDir::new().unwrap();
    let log = eventlog::SqliteEventLog::open(&dir.path().join("log.db"), Default::default()).unwrap();
    let store = store::SqliteStore::open(&dir.path().join("store.db"), Default::default()).unwrap();
    store.upsert_menu(&domain::menu::demo_menu()).await.unwrap();
    let clock = ManualClock::at_system_now();
    let app = Arc::new(Rushhour {
        log: Arc::new(PanicsInABatch {
            inner: Arc::new(log),
            armed: AtomicBool::new(true),
        }),
        store: Arc::new(store),
        menus: Arc::new(cache::MemoryMenuCache::new(Duration::from_secs(60), 10)),
        feed: Arc::new(cache::BroadcastFeed::new(1024)),
        clock: clock.clone(),
        config: RushhourConfig::default(),
    });
    let (order, at) = crate::append_order(&*app.log, "k").await;

    let tracker = TaskTracker::new();
    let shutdown = CancellationToken::new();
    let config = ProcessorConfig {
        linger: Duration::ZERO,
        poll_wait: Duration::from_millis(20),
        backoff: Duration::from_secs(5),
        ..Default::default()
    };
    let status = spawn_processors(app.clone(), config, &tracker, shutdown.clone());

    // The task died in its first batch; until the backoff (on the manual
    // clock) is over, its partition has no processor and readiness fails.
    wait_until("the processor to die and wait for its restart", WAIT, || async {
        status.stalled() == [at.partition] && clock.sleeps() >= 1
    })
    .await;
    let err = status.health().expect_err("not ready while a partition is stalled");
    assert!(err.is_retryable(), "{err}");
    assert!(err.to_string().contains(&at.partition.to_string()), "{err}");
    assert_eq!(status.restarts(), 0);
    assert!(
        app.store.get_order(order).await.unwrap().is_none(),
        "the batch died unapplied"
    );

    clock.advance(Duration::from_secs(5));
    wait_until("the processor to be restarted", WAIT, || async {
        status.restarts() == 1 && status.stalled().is_empty()
    })
    .await;
    assert_eq!(status.health(), Ok(()));
    wait_until("the restarted processor to apply the batch", WAIT, || async {
        app.store
            .get_order(order)
            .await
            .unwrap()
            .is_some_and(|o| o.status == OrderStatus::Confirmed)
    })
    .await;

    shutdown.cancel();
    tracker.close();
    tokio::time::timeout(WAIT, tracker.wait())
        .await
        .expect("the processors stop");
    assert_eq!(status.restarts(), 1, "one death, one restart");
}
