//! Order processors: one task per log partition, each reading micro-batches
//! and applying every batch to the store in ONE transaction together with
//! the consumer position, then telling the log it may move on.
//!
//! Ordering and exactly-once effect: a partition is processed by one task,
//! strictly in offset order; the position moves in the same transaction as
//! the rows, and inserts skip orders already present, so a crash anywhere
//! replays at most the last batch and changes nothing twice. Payment
//! callbacks (`PaymentV1`) share their order's partition and are applied in
//! the same transaction, each provider event id once.
//!
//! Failure policy: a backend that is unavailable is retried forever with
//! capped exponential backoff (an outage must not throw orders away). A
//! record that is itself bad — undecodable, or refused by the store — is
//! retried `max_attempts` times, then the batch is applied record by record
//! and the culprit goes to the dead-letter table, so it cannot block its
//! partition.
//!
//! Supervision: a partition's processor task that dies (a panic inside a
//! batch, or the task ending without being asked to) is restarted from the
//! store's position after a backoff on the app's `Clock`, and counted in
//! `processor_restarts_total`. While a partition assigned to this process
//! has no running processor, [`ProcessorStatus::health`] fails, and with it
//! `/health/ready`: a worker that confirms nothing must not say it is ready.

use domain::events::LogEvent;
use domain::ports::{DeadLetter, Decided, LogRecord, PortError, Rebalance};
use domain::{MenuSnapshot, Rushhour, StoreId};
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use telemetry::names;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

#[derive(Debug, Clone)]
pub struct ProcessorConfig {
    /// Consumer group name; positions are stored per group.
    pub group: String,
    /// Most records per micro-batch.
    pub max_batch: usize,
    /// After the first record of a batch arrives, wait up to this long for
    /// the batch to fill. Zero takes whatever is there; a few milliseconds
    /// make fewer, larger store transactions, which leaves more of the
    /// machine to intake (measurements in docs/adr/0003).
    pub linger: Duration,
    /// Attempts at a batch that fails for a non-transient reason before the
    /// culprit record is dead-lettered.
    pub max_attempts: u32,
    /// How long one idle read waits for records (bounds shutdown latency).
    pub poll_wait: Duration,
    /// First retry delay; doubles up to `max_backoff`.
    pub backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for ProcessorConfig {
    fn default() -> Self {
        Self {
            group: "order-processors".into(),
            max_batch: 100,
            linger: Duration::from_millis(5),
            max_attempts: 5,
            poll_wait: Duration::from_millis(250),
            backoff: Duration::from_millis(50),
            max_backoff: Duration::from_secs(5),
        }
    }
}

/// What the processors of this process are doing, for readiness: which
/// partitions the log assigned here, which have a live processor task, and
/// how many times a dead task was restarted. Cheap to clone (one `Arc`).
#[derive(Debug, Clone, Default)]
pub struct ProcessorStatus(Arc<Mutex<StatusState>>);

#[derive(Debug, Default)]
struct StatusState {
    assigned: BTreeSet<u32>,
    running: BTreeSet<u32>,
    restarts: u64,
}

impl ProcessorStatus {
    fn state(&self) -> MutexGuard<'_, StatusState> {
        // Set inserts and removes only: a poisoned lock is still whole.
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Partitions assigned to this process that have no running processor
    /// (dead and waiting for their restart).
    pub fn stalled(&self) -> Vec<u32> {
        let s = self.state();
        s.assigned.difference(&s.running).copied().collect()
    }

    /// How many dead processor tasks were restarted so far.
    pub fn restarts(&self) -> u64 {
        self.state().restarts
    }

    /// `Unavailable` while an assigned partition has no running processor.
    pub fn health(&self) -> Result<(), PortError> {
        let stalled = self.stalled();
        if stalled.is_empty() {
            Ok(())
        } else {
            Err(PortError::Unavailable(format!(
                "partitions {stalled:?} have no running processor"
            )))
        }
    }
}

/// Join the consumer group and run one processor task per partition the
/// log assigns to this process, on `tracker`. On a revocation the affected
/// processors finish their current batch, report their position and stop
/// before the log is told it may hand the partitions on. Everything stops
/// after the current batches once `shutdown` is cancelled. A processor
/// task that dies is restarted (see the module docs); the returned status
/// says whether every assigned partition is being processed.
pub fn spawn_processors(
    app: Arc<Rushhour>,
    config: ProcessorConfig,
    tracker: &TaskTracker,
    shutdown: CancellationToken,
) -> ProcessorStatus {
    let status = ProcessorStatus::default();
    let tasks = tracker.clone();
    let st = status.clone();
    tracker.spawn(async move {
        let status = st;
        let mut backoff = config.backoff;
        let mut membership = loop {
            match app.log.join(&config.group).await {
                Ok(m) => break m,
                Err(e) => {
                    tracing::warn!(group = %config.group, error = %e, "cannot join the consumer group; retrying");
                    if sleep_or_cancel(backoff, &shutdown).await {
                        return;
                    }
                    backoff = (backoff * 2).min(config.max_backoff);
                }
            }
        };
        let mut running: HashMap<u32, (CancellationToken, tokio::task::JoinHandle<()>)> = HashMap::new();
        loop {
            let change = tokio::select! {
                c = membership.next() => c,
                _ = shutdown.cancelled() => break,
            };
            match change {
                Some(Rebalance::Assigned(partitions)) => {
                    tracing::info!(group = %config.group, ?partitions, "partitions assigned");
                    for p in partitions {
                        if running.contains_key(&p) {
                            continue;
                        }
                        {
                            // Running from the start: no window in which a
                            // fresh assignment reads as stalled.
                            let mut s = status.state();
                            s.assigned.insert(p);
                            s.running.insert(p);
                        }
                        let stop = shutdown.child_token();
                        let handle =
                            tasks.spawn(supervise(app.clone(), config.clone(), p, stop.clone(), status.clone()));
                        running.insert(p, (stop, handle));
                    }
                }
                Some(Rebalance::Revoked { partitions, done }) => {
                    tracing::info!(group = %config.group, ?partitions, "partitions revoked; finishing their batches");
                    {
                        let mut s = status.state();
                        for p in &partitions {
                            s.assigned.remove(p);
                        }
                    }
                    stop_all(partitions.iter().filter_map(|p| running.remove(p))).await;
                    let _ = done.send(());
                }
                None => {
                    tracing::warn!(group = %config.group, "the log ended this consumer-group membership");
                    break;
                }
            }
        }
        status.state().assigned.clear();
        stop_all(running.into_values()).await;
        // Dropping the membership leaves the group only now, after every
        // batch in hand was committed.
        drop(membership);
    });
    status
}

/// Run one partition's processor until `stop`, restarting it after a
/// backoff whenever its task dies. The processor runs in a task of its own
/// so that a panic inside a batch ends that task, not this one; its
/// uncommitted batch is simply read again from the store's position.
async fn supervise(
    app: Arc<Rushhour>,
    config: ProcessorConfig,
    partition: u32,
    stop: CancellationToken,
    status: ProcessorStatus,
) {
    let label = partition.to_string();
    let mut backoff = config.backoff;
    // The partition is marked running by whoever starts the task: the
    // spawner for the first run, this loop for each restart.
    loop {
        let started = Instant::now();
        let result = tokio::spawn(run_partition(app.clone(), config.clone(), partition, stop.clone())).await;
        status.state().running.remove(&partition);
        match result {
            Ok(()) if stop.is_cancelled() => return,
            Ok(()) => tracing::error!(partition, "processor ended without being stopped; restarting"),
            Err(e) if e.is_panic() => tracing::error!(partition, error = %e, "processor panicked; restarting"),
            Err(e) => tracing::error!(partition, error = %e, "processor task failed; restarting"),
        }
        // A processor that ran for a while before dying starts the backoff
        // over; one that keeps dying at once backs off further each time.
        if started.elapsed() >= config.max_backoff {
            backoff = config.backoff;
        }
        // On the app's clock, so a test holds the partition dead (and
        // readiness failing) until it moves time.
        tokio::select! {
            _ = app.clock.sleep(backoff) => {}
            _ = stop.cancelled() => return,
        }
        backoff = (backoff * 2).min(config.max_backoff);
        {
            let mut s = status.state();
            s.restarts += 1;
            s.running.insert(partition);
        }
        metrics::counter!(names::PROCESSOR_RESTARTS, "partition" => label.clone()).increment(1);
    }
}

async fn stop_all(workers: impl Iterator<Item = (CancellationToken, tokio::task::JoinHandle<()>)>) {
    let handles: Vec<_> = workers
        .map(|(stop, handle)| {
            stop.cancel();
            handle
        })
        .collect();
    for h in handles {
        let _ = h.await;
    }
}

/// One partition's processor, from the position the store holds for it
/// until `stop`.
async fn run_partition(app: Arc<Rushhour>, config: ProcessorConfig, partition: u32, stop: CancellationToken) {
    let mut backoff = config.backoff;
    // The starting position comes from the store; retry until it answers.
    let mut worker = loop {
        match PartitionWorker::start(app.clone(), config.clone(), partition).await {
            Ok(w) => break w,
            Err(e) => {
                tracing::warn!(partition, error = %e, "processor cannot load its position; retrying");
                if sleep_or_cancel(backoff, &stop).await {
                    return;
                }
                backoff = (backoff * 2).min(config.max_backoff);
            }
        }
    };
    worker.run(stop).await;
}

/// Returns true if cancelled.
async fn sleep_or_cancel(d: Duration, shutdown: &CancellationToken) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(d) => false,
        _ = shutdown.cancelled() => true,
    }
}

/// The processor of one partition. `run_once` is one step, so tests and the
/// drain benchmark can drive it without timers.
pub struct PartitionWorker {
    app: Arc<Rushhour>,
    config: ProcessorConfig,
    partition: u32,
    next: u64,
    /// Failed attempts at the batch starting at `next`.
    attempts: u32,
    partition_label: String,
    /// When the position was last reported to the log (see `housekeeping`).
    last_log_commit: Option<Instant>,
    /// The position last reported to the log.
    reported: Option<u64>,
}

/// How often the position is reported to the log while records keep
/// coming. The store holds the authoritative position; the log's copy only
/// allows pruning, so a durable write per batch would be wasted.
const LOG_COMMIT_EVERY: Duration = Duration::from_secs(1);

impl PartitionWorker {
    pub async fn start(app: Arc<Rushhour>, config: ProcessorConfig, partition: u32) -> Result<Self, PortError> {
        let next = app.store.consumer_position(&config.group, partition).await?;
        Ok(Self {
            app,
            config,
            partition,
            next,
            attempts: 0,
            partition_label: partition.to_string(),
            last_log_commit: None,
            reported: None,
        })
    }

    /// The next offset this worker will read.
    pub fn position(&self) -> u64 {
        self.next
    }

    async fn run(&mut self, shutdown: CancellationToken) {
        let mut backoff = self.config.backoff;
        tracing::debug!(partition = self.partition, from = self.next, "processor started");
        while !shutdown.is_cancelled() {
            match self.run_once(self.config.poll_wait).await {
                Ok(_) => backoff = self.config.backoff,
                Err(e) => {
                    metrics::counter!(names::BATCH_RETRIES, "partition" => self.partition_label.clone()).increment(1);
                    tracing::warn!(partition = self.partition, offset = self.next, error = %e, "batch failed; retrying");
                    if sleep_or_cancel(backoff, &shutdown).await {
                        break;
                    }
                    backoff = (backoff * 2).min(self.config.max_backoff);
                }
            }
        }
        // Hand over cleanly: the log learns the final position now, not a
        // second later (another member may take the partition next).
        self.report_position().await;
        // This process no longer processes the partition: its lag reading
        // would go stale (dashboards take the max over processes).
        metrics::gauge!(names::PROCESSOR_LAG, "partition" => self.partition_label.clone()).set(0.0);
        telemetry::figures().forget_partition(self.partition);
        tracing::debug!(partition = self.partition, at = self.next, "processor stopped");
    }

    /// Read one micro-batch (waiting up to `wait` for the first record) and
    /// apply it. Returns how many log records were consumed; 0 if none came.
    pub async fn run_once(&mut self, wait: Duration) -> Result<usize, PortError> {
        let log = &self.app.log;
        let max = self.config.max_batch;
        let mut records = log.read(self.partition, self.next, max, wait).await?;
        if records.is_empty() {
            self.housekeeping(true).await;
            return Ok(0);
        }
        if !self.config.linger.is_zero() && records.len() < max {
            // Let the batch fill for the rest of the window, then take what
            // came in one read. (Re-reading as each record arrives would cost
            // a query per record, which is what batching is meant to save.)
            tokio::time::sleep(self.config.linger).await;
            let from = records.last().map_or(self.next, |r| r.offset + 1);
            records.extend(
                log.read(self.partition, from, max - records.len(), Duration::ZERO)
                    .await?,
            );
        }
        let n = records.len();
        let started = Instant::now();
        let work = async {
            if self.attempts >= self.config.max_attempts {
                self.apply_one_by_one(&records).await
            } else {
                self.apply(&records).await
            }
        };
        let applied = match batch_span(self.partition, &records) {
            Some(span) => work.instrument(span).await,
            None => work.await,
        };
        match applied {
            Ok(()) => {
                self.attempts = 0;
                self.next = records.last().map_or(self.next, |r| r.offset + 1);
                let p = self.partition_label.clone();
                metrics::histogram!(names::BATCH_SIZE, "partition" => p.clone()).record(n as f64);
                telemetry::figures().record_batch(n);
                metrics::histogram!(names::BATCH_APPLY_DURATION, "partition" => p)
                    .record(started.elapsed().as_secs_f64());
                self.housekeeping(false).await;
                Ok(n)
            }
            Err(e) => {
                if !e.is_retryable() {
                    self.attempts += 1;
                }
                Err(e)
            }
        }
    }

    /// Once a second (and when idle with something unreported): tell the
    /// log our position and publish the lag gauge. Neither belongs on the
    /// per-batch path: the store already holds the authoritative position,
    /// and each log commit is a durable write on the intake writer's thread.
    async fn housekeeping(&mut self, idle: bool) {
        let due = self.last_log_commit.is_none_or(|t| t.elapsed() >= LOG_COMMIT_EVERY);
        let unreported = self.reported != Some(self.next);
        if !(due || (idle && unreported)) {
            return;
        }
        if unreported {
            self.report_position().await;
        }
        self.last_log_commit = Some(Instant::now());
        if let Ok(end) = self.app.log.end_offset(self.partition).await {
            metrics::gauge!(names::PROCESSOR_LAG, "partition" => self.partition_label.clone())
                .set(end.saturating_sub(self.next) as f64);
            telemetry::figures().record_partition(self.partition, self.next, end);
        }
    }

    async fn report_position(&mut self) {
        if self.reported == Some(self.next) {
            return;
        }
        match self.app.log.commit(&self.config.group, self.partition, self.next).await {
            Ok(()) => self.reported = Some(self.next),
            Err(e) => tracing::warn!(partition = self.partition, error = %e, "log commit failed"),
        }
    }

    /// Decode and decide every record, then write them all in one
    /// transaction. Undecodable records are dead-lettered right away:
    /// retrying cannot make them readable.
    async fn apply(&self, records: &[LogRecord]) -> Result<(), PortError> {
        let now = self.app.clock.now_ms();
        let mut menus: HashMap<StoreId, Option<Arc<MenuSnapshot>>> = HashMap::new();
        let mut decided = Vec::with_capacity(records.len());
        let mut payments = Vec::new();
        let mut dead = Vec::new();
        for rec in records {
            match LogEvent::decode(&rec.payload) {
                Ok(LogEvent::OrderPlacedV1(placed)) => {
                    if !menus.contains_key(&placed.store) {
                        let menu = match self.app.menu(&placed.store).await {
                            Ok(m) => Some(m),
                            Err(domain::AppError::NotFound(_)) => None,
                            Err(domain::AppError::Backend(e)) => return Err(e),
                            Err(e) => return Err(PortError::Unavailable(e.to_string())),
                        };
                        menus.insert(placed.store.clone(), menu);
                    }
                    let decision = domain::order::decide(&placed, menus[&placed.store].as_deref());
                    decided.push(Decided {
                        placed,
                        decision,
                        trace: rec.trace.clone(),
                    });
                }
                // Handed to the store with the batch; it applies them after
                // the batch's orders (a payment follows its order in the
                // partition), each event id once. Whether the order exists
                // is checked there, not at intake.
                Ok(LogEvent::PaymentV1(payment)) => payments.push(payment),
                Err(e) => dead.push(self.dead_letter(rec, format!("undecodable record: {e}"), 1, now)),
            }
        }
        let end = records.last().map_or(self.next, |r| r.offset + 1);
        let out = self
            .app
            .store
            .apply_batch(domain::ports::ApplyBatch {
                orders: &decided,
                payments: &payments,
                dead: &dead,
                ..domain::ports::ApplyBatch::new(&self.config.group, self.partition, end, now)
            })
            .await?;
        let confirmed = decided
            .iter()
            .filter(|d| d.decision == domain::ports::Decision::Confirm)
            .count();
        metrics::counter!(names::ORDERS_APPLIED, "outcome" => "confirmed").increment(confirmed as u64);
        // 202 → confirmed, for the live figures: `placed_at` is stamped at
        // intake just before the append that the 202 waits for.
        let figures = telemetry::figures();
        for d in decided
            .iter()
            .filter(|d| d.decision == domain::ports::Decision::Confirm)
        {
            figures.record_confirmed(now.saturating_sub(d.placed.placed_at) as f64);
        }
        metrics::counter!(names::ORDERS_APPLIED, "outcome" => "rejected").increment((decided.len() - confirmed) as u64);
        metrics::counter!(names::ORDERS_APPLIED, "outcome" => "duplicate")
            .increment((decided.len() - out.inserted.min(decided.len())) as u64);
        if !payments.is_empty() {
            let p = out.payments;
            for (outcome, n) in [
                ("applied", p.applied),
                ("duplicate", p.duplicates),
                ("unknown_order", p.unknown_order),
                ("mismatched", p.mismatched),
            ] {
                metrics::counter!(names::PAYMENTS_APPLIED, "outcome" => outcome).increment(n as u64);
            }
            if p.unknown_order + p.mismatched > 0 {
                tracing::warn!(
                    partition = self.partition,
                    unknown_order = p.unknown_order,
                    mismatched = p.mismatched,
                    "payment events recorded without effect"
                );
            }
        }
        if !dead.is_empty() {
            metrics::counter!(names::DEAD_LETTERS).increment(dead.len() as u64);
            telemetry::figures().record_dead_letters(dead.len());
            self.mirror_dead_letters(&dead).await;
        }
        self.app.publish(&out.events).await;
        Ok(())
    }

    /// The batch keeps failing: isolate the culprit by applying records one
    /// at a time; whichever still fails is dead-lettered with its error.
    async fn apply_one_by_one(&self, records: &[LogRecord]) -> Result<(), PortError> {
        for rec in records {
            if let Err(e) = self.apply(std::slice::from_ref(rec)).await {
                if e.is_retryable() {
                    return Err(e);
                }
                let now = self.app.clock.now_ms();
                let dl = self.dead_letter(rec, e.to_string(), self.attempts, now);
                tracing::error!(partition = self.partition, offset = rec.offset, error = %e, "record dead-lettered");
                self.app
                    .store
                    .apply_batch(domain::ports::ApplyBatch {
                        dead: std::slice::from_ref(&dl),
                        ..domain::ports::ApplyBatch::new(&self.config.group, self.partition, rec.offset + 1, now)
                    })
                    .await?;
                metrics::counter!(names::DEAD_LETTERS).increment(1);
                telemetry::figures().record_dead_letters(1);
                self.mirror_dead_letters(std::slice::from_ref(&dl)).await;
            }
        }
        Ok(())
    }

    /// Copy dead letters to the log's own dead-letter area (a topic in
    /// Kafka) for tools that watch it. Best effort: the store's copy, written
    /// in the batch transaction, is the one `replay-dlq` re-drives.
    async fn mirror_dead_letters(&self, dead: &[DeadLetter]) {
        for dl in dead {
            if let Err(e) = self.app.log.dead_letter(dl).await {
                tracing::warn!(partition = self.partition, offset = dl.offset, error = %e, "dead letter not mirrored to the log");
            }
        }
    }

    fn dead_letter(&self, rec: &LogRecord, error: String, attempts: u32, now: i64) -> DeadLetter {
        DeadLetter {
            group: self.config.group.clone(),
            partition: self.partition,
            offset: rec.offset,
            key: rec.key.clone(),
            payload: rec.payload.clone(),
            error,
            attempts,
            at: now,
        }
    }
}

/// The batch's span when traces are exported: a root of its own, linked to
/// the trace of every record it applies (links, not a parent: one batch
/// serves many orders, and a payment's callback has a trace too).
fn batch_span(partition: u32, records: &[LogRecord]) -> Option<tracing::Span> {
    if !telemetry::traces::enabled() {
        return None;
    }
    let span = tracing::info_span!(
        parent: None,
        "processor.batch",
        otel.name = "apply batch",
        otel.kind = "consumer",
        partition,
        records = records.len(),
    );
    for trace in records.iter().filter_map(|r| r.trace.as_deref()) {
        telemetry::traces::link(&span, trace);
    }
    Some(span)
}
