//! The embedded event log: SQLite (through rusqlite) with group commit.
//!
//! Why one writer thread: SQLite allows one writer at a time, so several
//! writers would only queue on its lock and each pay their own fsync. A
//! dedicated thread owns the write connection; appends reach it over a
//! bounded channel, and each time it wakes it takes *everything* that queued
//! up while the previous transaction was committing (up to `max_batch`,
//! optionally lingering a little for more), writes it in one transaction and
//! pays one fsync for all of it. Each waiting caller is answered only after
//! that commit returned: a 202 is never sent for a record that is not on
//! disk. Turning `group_commit` off makes every append its own transaction,
//! so the difference can be measured (`rushhour bench suite`).
//!
//! Why rusqlite and not sqlx here: this path is one thread doing many small
//! synchronous statements; sqlx's SQLite driver runs every statement through
//! its own worker thread and channel, which costs more than the insert
//! itself. The measurement is in `docs/adr/0002-rusqlite-for-the-embedded-log.md`.
//!
//! Durability: `synchronous=FULL` (default) fsyncs the WAL on every commit
//! and survives power loss; `NORMAL` survives a process crash (`kill -9`)
//! but may lose the last commits on power loss, in exchange for cheaper
//! commits. Readers use their own connections; WAL lets them read while the
//! writer writes.
//!
//! Opening the file, the schema's versioned migrations (`migrations/sqlite`,
//! counted by `PRAGMA user_version`), the read pool and the background
//! checkpointer are `dbkit::sqlite`'s, shared with the store and the job
//! queue; the group-commit writer loop is this module's own.

use async_trait::async_trait;
use dbkit::sqlite::{Nudge, Profile, Readers};
use dbkit::sqlite_error;
use domain::ports::{
    AppendOutcome, AppendRequest, EventLog, IdempotencyRecord, LogRecord, Membership, PortError, PortResult, Position,
    Rebalance,
};
use rusqlite::{Connection, OptionalExtension, params};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{oneshot, watch};
use tracing::Instrument;

/// How hard a commit waits for the disk: `Full` survives power loss;
/// `Normal` survives a process crash, but the last commits may be lost on
/// power loss.
pub use dbkit::Synchronous;

#[derive(Debug, Clone)]
pub struct SqliteLogOptions {
    pub partitions: u32,
    /// Gather concurrent appends into one transaction. Off = one per append.
    pub group_commit: bool,
    /// Most records in one group-commit transaction.
    pub max_batch: usize,
    /// How long the writer waits for more appends once it has some. Zero
    /// (the default) relies on natural batching: whatever arrives while a
    /// commit is in flight forms the next batch, so an idle system adds no
    /// latency and a busy one batches more.
    pub linger: Duration,
    pub synchronous: Synchronous,
    /// Bound of the append queue; a full queue makes appends wait
    /// (backpressure) rather than grow memory.
    pub queue_capacity: usize,
}

impl Default for SqliteLogOptions {
    fn default() -> Self {
        Self {
            partitions: 8,
            group_commit: true,
            max_batch: 1024,
            linger: Duration::ZERO,
            synchronous: Synchronous::Full,
            queue_capacity: 16 * 1024,
        }
    }
}

/// The log file's database: 16 MB of page cache; no foreign keys (records,
/// commits and meta refer to nothing).
const PROFILE: Profile = Profile::new("event log", "eventlog", MIGRATIONS).with_cache_kib(16_000);

/// One embedded file per schema version, applied in order; `PRAGMA
/// user_version` counts how many have run. Files written before versioning
/// have version 0 and the tables of version 1, which adopts them.
const MIGRATIONS: &[&str] = &[
    include_str!("../migrations/sqlite/0001_init.sql"),
    include_str!("../migrations/sqlite/0002_trace.sql"),
];

/// The schema version this binary writes (and the newest it can open).
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// The next offset of every partition in the log file at `path` (a
/// backup's copy; opened read-only), for the backup manifest: a restored
/// instance has exactly these records.
pub fn end_offsets(path: &Path) -> Result<std::collections::BTreeMap<u32, u64>, PortError> {
    let conn = Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).map_err(sqlite_error)?;
    let mut stmt = conn
        .prepare("SELECT partition, MAX(offset) + 1 FROM records GROUP BY partition")
        .map_err(sqlite_error)?;
    let rows = stmt
        .query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?)))
        .map_err(sqlite_error)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(sqlite_error)?;
    Ok(rows
        .into_iter()
        .map(|(p, next)| (p as u32, next.max(0) as u64))
        .collect())
}

enum Job {
    Append {
        req: AppendRequest,
        reply: oneshot::Sender<PortResult<AppendOutcome>>,
    },
    Commit {
        group: String,
        partition: u32,
        next: u64,
        reply: oneshot::Sender<PortResult<()>>,
    },
}

/// A partitioned durable log in one SQLite file. Cheap to clone.
#[derive(Clone)]
pub struct SqliteEventLog {
    inner: Arc<Inner>,
}

struct Inner {
    jobs: flume::Sender<Job>,
    partitions: u32,
    /// Next offset per partition, published by the writer after each commit.
    ends: Vec<watch::Receiver<u64>>,
    readers: Arc<Readers>,
    claims: Arc<Claims>,
}

/// Read connections; readers beyond wait (asynchronously) for one.
const READERS: usize = 8;

/// How long an idempotency key is honoured. The product promises at least
/// 24 hours; two more cover clock skew between a client's retries.
pub const IDEMPOTENCY_RETENTION: Duration = Duration::from_secs(26 * 3600);

/// A claimed idempotency key: where its record is and what it answered.
#[derive(Debug, Clone)]
struct Claim {
    fingerprint: String,
    status: u16,
    partition: u32,
    offset: u64,
    created_at: i64,
}

/// The index of idempotency keys claimed within the retention window.
///
/// Why in memory: a B-tree keyed by client-chosen (random) keys dirties a
/// different page for nearly every append, and those pages are what a
/// group commit writes and fsyncs. Measured with 64 concurrent intakes,
/// removing that table cut the average commit from 2.06 ms to 0.77 ms and
/// raised intake from 8.5k to 11.7k orders/s (docs/adr/0003). The claim is
/// durable on its record row; this index is rebuilt from the log on open,
/// like Kafka rebuilds idempotent-producer state from its log.
///
/// Consequence: one appending process per log file (the embedded mode's
/// `serve`, or one `api` process); scale mode keeps claims in a shared engine.
/// Memory is about 150 bytes per key claimed in the last 26 hours.
#[derive(Default)]
struct Claims {
    by_key: Mutex<std::collections::HashMap<String, Claim>>,
}

impl Claims {
    fn get(&self, key: &str) -> Option<Claim> {
        self.by_key.lock().ok()?.get(key).cloned()
    }

    /// Add claims that just became durable, and forget expired ones now
    /// and then (amortized: one sweep per 4096 additions).
    fn extend(&self, fresh: Vec<(String, Claim)>, now: i64) {
        let Ok(mut map) = self.by_key.lock() else { return };
        let before = map.len();
        map.extend(fresh);
        if before / 4096 != map.len() / 4096 {
            let horizon = now - IDEMPOTENCY_RETENTION.as_millis() as i64;
            map.retain(|_, c| c.created_at >= horizon);
        }
    }
}

impl Claims {
    /// Forget claims made before `before`; returns how many went.
    fn prune(&self, before: i64) -> u64 {
        let Ok(mut map) = self.by_key.lock() else { return 0 };
        let had = map.len();
        map.retain(|_, c| c.created_at >= before);
        (had - map.len()) as u64
    }
}

fn unavailable(e: impl std::fmt::Display) -> PortError {
    PortError::Unavailable(format!("sqlite log: {e}"))
}

fn now_ms() -> i64 {
    domain::ports::system_now_ms()
}

impl SqliteEventLog {
    /// The append itself, inside the append span when there is one: a
    /// request without a trace of its own takes that span's context.
    async fn append_traced(&self, mut req: AppendRequest) -> PortResult<AppendOutcome> {
        if req.trace.is_none() {
            req.trace = telemetry::traces::current_traceparent();
        }
        let started = Instant::now();
        let (reply, rx) = oneshot::channel();
        self.submit(Job::Append { req, reply }).await?;
        let out = rx.await.map_err(|_| unavailable("writer thread dropped the append"))?;
        metrics::histogram!(telemetry::names::LOG_APPEND_DURATION).record(started.elapsed().as_secs_f64());
        out
    }

    /// Open (creating if needed) the log at `path` and start its writer thread.
    pub fn open(path: &Path, opts: SqliteLogOptions) -> Result<Self, PortError> {
        if opts.partitions == 0 {
            return Err(PortError::Invalid("log partitions must be at least 1".into()));
        }
        let conn = dbkit::sqlite::open_writer(path, &PROFILE, opts.synchronous)?;
        // Sorting and grouping spill to memory, not to a temporary file.
        conn.pragma_update(None, "temp_store", "MEMORY").map_err(sqlite_error)?;
        check_partitions(&conn, opts.partitions)?;
        let mut next = vec![0u64; opts.partitions as usize];
        {
            let mut st = conn
                .prepare("SELECT partition, MAX(offset) + 1 FROM records GROUP BY partition")
                .map_err(sqlite_error)?;
            let rows = st
                .query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?)))
                .map_err(sqlite_error)?;
            for row in rows {
                let (p, n) = row.map_err(sqlite_error)?;
                if let Some(slot) = next.get_mut(p as usize) {
                    *slot = n as u64;
                }
            }
        }
        // Checkpoints run on their own thread, off the commit path (see
        // `dbkit::sqlite`); the writer keeps SQLite's auto-checkpoint only as
        // a far-off safety net.
        let nudge = dbkit::sqlite::spawn_checkpointer(dbkit::sqlite::open_checkpointer(path)?, &PROFILE)?;
        let readers = (0..READERS)
            .map(|_| dbkit::sqlite::open_reader(path, &PROFILE))
            .collect::<Result<Vec<_>, _>>()?;
        let claims = Arc::new(Claims::default());
        load_claims(&conn, &claims)?;
        let (senders, ends): (Vec<_>, Vec<_>) = next.iter().map(|&n| watch::channel(n)).unzip();
        let (tx, rx) = flume::bounded(opts.queue_capacity.max(1));
        let max_batch = if opts.group_commit { opts.max_batch.max(1) } else { 1 };
        let writer = Writer {
            conn,
            next,
            ends: senders,
            partitions: opts.partitions,
            max_batch,
            linger: opts.linger,
            nudge,
            claims: claims.clone(),
        };
        std::thread::Builder::new()
            .name("eventlog-writer".into())
            .spawn(move || writer.run(rx))
            .map_err(|e| unavailable(format!("spawn writer: {e}")))?;
        Ok(Self {
            inner: Arc::new(Inner {
                jobs: tx,
                partitions: opts.partitions,
                ends,
                readers: Readers::new(readers, PROFILE.label),
                claims,
            }),
        })
    }

    /// Run `f` on a pooled read connection, off the async runtime.
    async fn with_reader<T, F>(&self, f: F) -> PortResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        self.inner.readers.run(move |c| f(c).map_err(sqlite_error)).await?
    }

    async fn submit(&self, job: Job) -> PortResult<()> {
        self.inner
            .jobs
            .send_async(job)
            .await
            .map_err(|_| unavailable("writer thread has stopped"))
    }
}

/// Refuse to reopen a log with another partition count: keys would move to
/// other partitions and per-order ordering would break.
fn check_partitions(conn: &Connection, partitions: u32) -> Result<(), PortError> {
    let existing: Option<String> = conn
        .query_row("SELECT value FROM meta WHERE name = 'partitions'", [], |r| r.get(0))
        .optional()
        .map_err(sqlite_error)?;
    match existing {
        None => {
            conn.execute(
                "INSERT INTO meta (name, value) VALUES ('partitions', ?1)",
                params![partitions.to_string()],
            )
            .map_err(sqlite_error)?;
            Ok(())
        }
        Some(v) if v == partitions.to_string() => Ok(()),
        Some(v) => Err(PortError::Invalid(format!(
            "this log was created with {v} partitions but {partitions} are configured; \
             changing the partition count of an existing log would reorder orders"
        ))),
    }
}

struct Writer {
    conn: Connection,
    next: Vec<u64>,
    ends: Vec<watch::Sender<u64>>,
    partitions: u32,
    max_batch: usize,
    linger: Duration,
    /// Wakes the checkpointer after a commit; dropping it stops the thread.
    nudge: Nudge,
    claims: Arc<Claims>,
}

enum Reply {
    Append(oneshot::Sender<PortResult<AppendOutcome>>, PortResult<AppendOutcome>),
    Commit(oneshot::Sender<PortResult<()>>, PortResult<()>),
}

impl Writer {
    fn run(mut self, rx: flume::Receiver<Job>) {
        let mut batch = Vec::with_capacity(self.max_batch);
        // `recv` keeps returning queued jobs after every sender is gone, so
        // everything accepted before shutdown is still written.
        while let Ok(first) = rx.recv() {
            batch.push(first);
            while batch.len() < self.max_batch {
                match rx.try_recv() {
                    Ok(j) => batch.push(j),
                    Err(_) => break,
                }
            }
            if !self.linger.is_zero() && batch.len() < self.max_batch {
                let deadline = Instant::now() + self.linger;
                while batch.len() < self.max_batch {
                    match rx.recv_deadline(deadline) {
                        Ok(j) => batch.push(j),
                        Err(_) => break,
                    }
                }
            }
            self.write(&mut batch);
        }
    }

    fn write(&mut self, batch: &mut Vec<Job>) {
        let started = Instant::now();
        let size = batch.len();
        let saved = self.next.clone();
        let mut replies = Vec::with_capacity(size);
        let now = now_ms();
        // Claims made by this transaction; they join `self.claims` only once
        // it has committed, and a second claim of a key within the batch sees
        // the first here.
        let mut fresh: Vec<(String, Claim)> = Vec::new();
        let result = (|| -> rusqlite::Result<()> {
            let tx = self
                .conn
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            for job in batch.drain(..) {
                match job {
                    Job::Append { req, reply } => {
                        let out = append_one(&tx, &mut self.next, self.partitions, req, now, &self.claims, &mut fresh);
                        replies.push(Reply::Append(reply, out));
                    }
                    Job::Commit {
                        group,
                        partition,
                        next,
                        reply,
                    } => {
                        let out = tx
                            .prepare_cached(
                                "INSERT INTO commits (grp, partition, next_offset) VALUES (?1, ?2, ?3)
                                 ON CONFLICT (grp, partition) DO UPDATE SET next_offset = excluded.next_offset",
                            )
                            .and_then(|mut st| st.execute(params![group, partition, next as i64]))
                            .map(drop)
                            .map_err(sqlite_error);
                        replies.push(Reply::Commit(reply, out));
                    }
                }
            }
            tx.commit()
        })();
        match result {
            Ok(()) => {
                if !fresh.is_empty() {
                    self.claims.extend(fresh, now);
                }
                self.nudge.after_commit();
                for (p, end) in self.ends.iter().enumerate() {
                    end.send_if_modified(|v| {
                        let changed = *v != self.next[p];
                        *v = self.next[p];
                        changed
                    });
                }
                for r in replies {
                    match r {
                        Reply::Append(tx, out) => drop(tx.send(out)),
                        Reply::Commit(tx, out) => drop(tx.send(out)),
                    }
                }
            }
            Err(e) => {
                // Nothing of this batch is durable: undo the offsets we
                // handed out and fail every waiter, who may retry.
                self.next = saved;
                let err = sqlite_error(e);
                tracing::error!(error = %err, size, "event log commit failed");
                for r in replies {
                    match r {
                        Reply::Append(tx, _) => drop(tx.send(Err(err.clone()))),
                        Reply::Commit(tx, _) => drop(tx.send(Err(err.clone()))),
                    }
                }
            }
        }
        metrics::histogram!(telemetry::names::LOG_GROUP_COMMIT_SIZE).record(size as f64);
        metrics::histogram!(telemetry::names::LOG_COMMIT_DURATION).record(started.elapsed().as_secs_f64());
    }
}

/// One append inside the group transaction. A failing statement answers its
/// own caller and leaves the rest of the batch alone (SQLite keeps the
/// transaction open after a failed statement).
fn append_one(
    tx: &rusqlite::Transaction<'_>,
    next: &mut [u64],
    partitions: u32,
    req: AppendRequest,
    now: i64,
    claims: &Claims,
    fresh: &mut Vec<(String, Claim)>,
) -> PortResult<AppendOutcome> {
    if let Some(claim) = &req.idempotency {
        let earlier = fresh
            .iter()
            .find(|(k, _)| *k == claim.key)
            .map(|(_, c)| c.clone())
            .or_else(|| claims.get(&claim.key));
        if let Some(c) = earlier {
            return claim_record(tx, &c)
                .map_err(sqlite_error)?
                .map(AppendOutcome::Duplicate)
                .ok_or_else(|| PortError::Invalid(format!("claimed record {}:{} is missing", c.partition, c.offset)));
        }
    }
    let partition = domain::ids::partition_for(req.key.as_bytes(), partitions);
    let offset = next[partition as usize];
    let claim = req.idempotency.as_ref();
    tx.prepare_cached(
        "INSERT INTO records (partition, offset, key, payload, appended_at,
                              idem_key, idem_fingerprint, idem_status, idem_response, trace)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    )
    .and_then(|mut st| {
        st.execute(params![
            partition,
            offset as i64,
            req.key,
            req.payload,
            now,
            claim.map(|c| &c.key),
            claim.map(|c| &c.fingerprint),
            claim.map(|c| c.status),
            claim.map(|c| &c.response),
            req.trace,
        ])
    })
    .map_err(sqlite_error)?;
    next[partition as usize] = offset + 1;
    if let Some(c) = req.idempotency {
        fresh.push((
            c.key,
            Claim {
                fingerprint: c.fingerprint,
                status: c.status,
                partition,
                offset,
                created_at: now,
            },
        ));
    }
    Ok(AppendOutcome::Appended(Position { partition, offset }))
}

/// The stored answer of a claim, read from its record.
fn claim_record(conn: &Connection, c: &Claim) -> rusqlite::Result<Option<IdempotencyRecord>> {
    conn.prepare_cached("SELECT idem_response FROM records WHERE partition = ?1 AND offset = ?2")?
        .query_row(params![c.partition, c.offset as i64], |r| {
            r.get::<_, Option<Vec<u8>>>(0)
        })
        .optional()
        .map(|row| {
            row.flatten().map(|response| IdempotencyRecord {
                fingerprint: c.fingerprint.clone(),
                status: c.status,
                response,
                created_at: c.created_at,
            })
        })
}

/// Rebuild the claim index from the records of the retention window.
fn load_claims(conn: &Connection, claims: &Claims) -> Result<(), PortError> {
    let horizon = now_ms() - IDEMPOTENCY_RETENTION.as_millis() as i64;
    let mut st = conn
        .prepare(
            "SELECT idem_key, idem_fingerprint, idem_status, partition, offset, appended_at
             FROM records WHERE idem_key IS NOT NULL AND appended_at >= ?1",
        )
        .map_err(sqlite_error)?;
    let rows = st
        .query_map(params![horizon], |r| {
            Ok((
                r.get::<_, String>(0)?,
                Claim {
                    fingerprint: r.get(1)?,
                    status: r.get(2)?,
                    partition: r.get(3)?,
                    offset: r.get::<_, i64>(4)? as u64,
                    created_at: r.get(5)?,
                },
            ))
        })
        .map_err(sqlite_error)?;
    let loaded = rows.collect::<rusqlite::Result<Vec<_>>>().map_err(sqlite_error)?;
    claims.extend(loaded, now_ms());
    Ok(())
}

fn record_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<LogRecord> {
    Ok(LogRecord {
        partition: r.get(0)?,
        offset: r.get::<_, i64>(1)? as u64,
        key: r.get(2)?,
        payload: r.get(3)?,
        appended_at: r.get(4)?,
        trace: r.get(5)?,
    })
}

/// How often a waiting reader re-checks the file for records appended by
/// another process (`api` and `worker` run separately on one SQLite log);
/// appends from this process wake readers at once.
const CROSS_PROCESS_POLL: Duration = Duration::from_millis(25);

#[async_trait]
impl EventLog for SqliteEventLog {
    fn partitions(&self) -> u32 {
        self.inner.partitions
    }

    async fn append(&self, req: AppendRequest) -> PortResult<AppendOutcome> {
        // The span (and the context it stores on the record) only when
        // traces are exported: intake pays one atomic load otherwise.
        if telemetry::traces::enabled() {
            let span = tracing::info_span!("log.append", otel.name = "log append", otel.kind = "producer");
            return self.append_traced(req).instrument(span).await;
        }
        self.append_traced(req).await
    }

    /// The claims index is in memory (see `Claims`); the durable copy rides
    /// on the record rows, which compaction drops with their records.
    async fn prune_idempotency(&self, before: i64) -> PortResult<u64> {
        Ok(self.inner.claims.prune(before))
    }

    async fn idempotency(&self, key: &str) -> PortResult<Option<IdempotencyRecord>> {
        let Some(claim) = self.inner.claims.get(key) else {
            return Ok(None);
        };
        self.with_reader(move |c| claim_record(c, &claim)).await
    }

    async fn find(&self, key: &str) -> PortResult<Option<LogRecord>> {
        let key = key.to_owned();
        self.with_reader(move |c| {
            c.prepare_cached(
                "SELECT partition, offset, key, payload, appended_at, trace FROM records
                 WHERE key = ?1 ORDER BY offset DESC LIMIT 1",
            )?
            .query_row(params![key], record_from_row)
            .optional()
        })
        .await
    }

    async fn read(&self, partition: u32, from: u64, max: usize, wait: Duration) -> PortResult<Vec<LogRecord>> {
        if partition >= self.inner.partitions {
            return Err(PortError::Invalid(format!("no partition {partition}")));
        }
        let deadline = tokio::time::Instant::now() + wait;
        let mut end = self.inner.ends[partition as usize].clone();
        loop {
            // Mark the current end as seen before reading, so an append that
            // commits after the read below still wakes us.
            end.borrow_and_update();
            let rows = self
                .with_reader(move |c| {
                    let mut st = c.prepare_cached(
                        "SELECT partition, offset, key, payload, appended_at, trace FROM records
                         WHERE partition = ?1 AND offset >= ?2 ORDER BY offset LIMIT ?3",
                    )?;
                    st.query_map(params![partition, from as i64, max as i64], record_from_row)?
                        .collect::<rusqlite::Result<Vec<_>>>()
                })
                .await?;
            let now = tokio::time::Instant::now();
            if !rows.is_empty() || now >= deadline {
                return Ok(rows);
            }
            // Appends from this process wake us through `end`; appends by
            // another process are found by the periodic re-read.
            let nap = CROSS_PROCESS_POLL.min(deadline - now);
            let _ = tokio::time::timeout(nap, end.changed()).await;
        }
    }

    async fn end_offset(&self, partition: u32) -> PortResult<u64> {
        if partition >= self.inner.partitions {
            return Err(PortError::Invalid(format!("no partition {partition}")));
        }
        let local = *self.inner.ends[partition as usize].borrow();
        let stored: Option<i64> = self
            .with_reader(move |c| {
                c.prepare_cached("SELECT MAX(offset) + 1 FROM records WHERE partition = ?1")?
                    .query_row(params![partition], |r| r.get(0))
            })
            .await?;
        Ok(local.max(stored.unwrap_or(0) as u64))
    }

    async fn commit(&self, group: &str, partition: u32, next: u64) -> PortResult<()> {
        let (reply, rx) = oneshot::channel();
        self.submit(Job::Commit {
            group: group.to_owned(),
            partition,
            next,
            reply,
        })
        .await?;
        rx.await.map_err(|_| unavailable("writer thread dropped the commit"))?
    }

    /// One process reads the embedded log, so it owns every partition for
    /// as long as it runs; the sender is kept in the membership so the
    /// stream stays open (no revocation ever comes).
    async fn join(&self, _group: &str) -> PortResult<Membership> {
        let (tx, rx) = futures::channel::mpsc::unbounded();
        tx.unbounded_send(Rebalance::Assigned((0..self.inner.partitions).collect()))
            .map_err(|_| unavailable("membership channel closed"))?;
        Ok(Membership::new(rx, Box::new(tx)))
    }

    async fn health(&self) -> PortResult<()> {
        if self.inner.jobs.is_disconnected() {
            return Err(unavailable("writer thread has stopped"));
        }
        self.with_reader(|c| c.query_row("SELECT 1", [], |r| r.get::<_, i64>(0)))
            .await?;
        Ok(())
    }
}
