//! `SqliteQueue`: the embedded backend of the `JobQueue` port, one SQLite
//! file of its own (`<data_dir>/jobs.db`) in WAL mode.
//!
//! # Durability
//!
//! Unlike the store, whose rows the processors can rebuild from the event
//! log, the queue is the only record of a job: a receipt email enqueued and
//! then lost to a power cut would simply never be sent. So the queue
//! defaults to `synchronous=FULL` (every commit fsynced). Being its own
//! file, that costs the store nothing, and the fsyncs are amortised by
//! batching: a claim of 500 jobs or a complete of 500 is one commit.
//!
//! # Hot path
//!
//! Everything that writes runs on one writer thread (see `conn`), as one
//! `IMMEDIATE` transaction with cached prepared statements:
//!
//! - `enqueue`: one insert per job in a single transaction (`ON CONFLICT
//!   DO NOTHING RETURNING id`; a duplicate then looks up the live holder of
//!   its key through the partial unique index).
//! - `claim`: first the queue's expired leases are settled in one statement
//!   (dead on their last attempt, queued again otherwise), then one
//!   `UPDATE ... WHERE id IN (SELECT ... ORDER BY priority DESC, run_at, id
//!   LIMIT n) RETURNING ...` that reads the head of the `jobs_claim` index.
//! - `complete`, `heartbeat`, `release`: one statement for all the ids,
//!   passed as a JSON array and expanded with `json_each`.

mod conn;

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use async_trait::async_trait;
use domain::jobs::{BulkFilter, Enqueued, Job, JobFilter, JobId, JobInfo, JobQueue, JobState, NewJob, QueueCounts};
use domain::ports::PortResult;
use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension, Row, Transaction, TransactionBehavior, params, params_from_iter};

use crate::{
    Bulk, BulkArg, EncodedJob, QueueError, assemble_counts, bulk_statement, count_u32, lease_until, parse_payload,
};
use dbkit::sqlite::Database;

/// SQLite's `synchronous` setting for the queue's write connection. The
/// queue defaults to `Full` (module docs); `Normal` may lose the last
/// commits on power loss (enqueued jobs, completions that then run again).
pub use dbkit::Synchronous;

#[derive(Debug, Clone)]
pub struct SqliteQueueOptions {
    pub synchronous: Synchronous,
    /// Read connections for `get`, `list`, `counts`, `last_fired` and
    /// `health` (at least one is opened).
    pub read_connections: usize,
}

impl Default for SqliteQueueOptions {
    fn default() -> Self {
        Self {
            synchronous: Synchronous::Full,
            read_connections: 2,
        }
    }
}

pub struct SqliteQueue {
    db: Database,
}

impl std::fmt::Debug for SqliteQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteQueue")
            .field("path", &self.db.path())
            .finish_non_exhaustive()
    }
}

/// How long `health()` waits for a read connection and `SELECT 1`.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(2);

/// The columns `info_row` reads, in order.
const INFO_COLUMNS: &str = "id, kind, queue, state, payload, priority, attempts, max_attempts, run_at, unique_key, \
                            last_error, worker, lease_until, created_at, updated_at, finished_at";

const INSERT_JOB: &str = "INSERT INTO jobs (queue, kind, state, payload, priority, run_at, attempts, max_attempts, \
                          unique_key, created_at, updated_at, trace) \
                          VALUES (?1, ?2, 'queued', ?3, ?4, ?5, 0, ?6, ?7, ?8, ?8, ?9) \
                          ON CONFLICT DO NOTHING RETURNING id";

const LIVE_HOLDER: &str = "SELECT id FROM jobs WHERE unique_key = ?1 AND state IN ('queued', 'running')";

/// Settle the queue's expired leases: dead on the last attempt, queued
/// again (keeping `run_at`, so their place in line) otherwise.
const EXPIRE: &str = "UPDATE jobs SET \
                      state = CASE WHEN attempts >= max_attempts THEN 'dead' ELSE 'queued' END, \
                      finished_at = CASE WHEN attempts >= max_attempts THEN ?2 ELSE NULL END, \
                      last_error = 'lease expired', worker = NULL, lease_until = NULL, updated_at = ?2 \
                      WHERE queue = ?1 AND state = 'running' AND lease_until <= ?2";

const CLAIM: &str = "UPDATE jobs SET state = 'running', worker = ?3, lease_until = ?4, attempts = attempts + 1, \
                     updated_at = ?2 \
                     WHERE id IN (SELECT id FROM jobs WHERE queue = ?1 AND state = 'queued' AND run_at <= ?2 \
                                  ORDER BY priority DESC, run_at, id LIMIT ?5) \
                     RETURNING id, kind, queue, payload, priority, attempts, max_attempts, run_at, lease_until, trace";

impl SqliteQueue {
    /// Open the queue at `path`, creating the file and its folder if
    /// needed, switching to WAL and applying pending migrations. Blocking:
    /// call it at startup (or from `spawn_blocking`).
    pub fn open(path: &Path, opts: SqliteQueueOptions) -> Result<Self, QueueError> {
        let db = Database::open(path, &conn::PROFILE, opts.synchronous, opts.read_connections)?;
        Ok(Self { db })
    }

    pub fn path(&self) -> &Path {
        self.db.path()
    }

    // Not `async fn`: `#[track_caller]` hands the port method's call site
    // to `dbkit::observe` (the slow-query warning names it).
    #[track_caller]
    fn read<T, F>(&self, f: F) -> impl Future<Output = PortResult<T>> + Send + use<T, F>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, QueueError> + Send + 'static,
    {
        self.db.read(f)
    }

    /// `f` inside one `IMMEDIATE` transaction on the writer thread,
    /// committed when it returns `Ok`.
    #[track_caller]
    fn write<T, F>(&self, f: F) -> impl Future<Output = PortResult<T>> + Send + '_
    where
        T: Send + 'static,
        F: FnOnce(&Transaction<'_>) -> Result<T, QueueError> + Send + 'static,
    {
        let run = self.db.writer().run(move |conn| -> Result<T, QueueError> {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let out = f(&tx)?;
            tx.commit()?;
            Ok(out)
        });
        async move { Ok(run.await??) }
    }
}

/// Ids as a JSON array, for `id IN (SELECT value FROM json_each(?))`.
fn id_list(ids: &[JobId]) -> String {
    let mut s = String::with_capacity(ids.len() * 8 + 2);
    s.push('[');
    for (i, id) in ids.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        s.push_str(&id.to_string());
    }
    s.push(']');
    s
}

fn enqueue_in(tx: &Transaction<'_>, jobs: &[EncodedJob], now: i64) -> Result<Vec<Enqueued>, QueueError> {
    let mut insert = tx.prepare_cached(INSERT_JOB)?;
    let mut out = Vec::with_capacity(jobs.len());
    for j in jobs {
        let created: Option<i64> = insert
            .query_row(
                params![
                    j.queue,
                    j.kind,
                    j.payload,
                    j.priority,
                    j.run_at,
                    j.max_attempts,
                    j.unique_key,
                    now,
                    j.trace
                ],
                |r| r.get(0),
            )
            .optional()?;
        match (created, &j.unique_key) {
            (Some(id), _) => out.push(Enqueued::Created(id)),
            (None, Some(key)) => {
                let holder: Option<i64> = tx
                    .prepare_cached(LIVE_HOLDER)?
                    .query_row(params![key], |r| r.get(0))
                    .optional()?;
                match holder {
                    Some(id) => out.push(Enqueued::Duplicate(id)),
                    None => {
                        return Err(QueueError::Invalid(format!(
                            "job {} was not inserted but no live job holds its key {key:?}",
                            j.kind
                        )));
                    }
                }
            }
            (None, None) => {
                return Err(QueueError::Invalid(format!("job {} was not inserted", j.kind)));
            }
        }
    }
    Ok(out)
}

fn job_row(r: &Row<'_>) -> Result<Job, QueueError> {
    let id: i64 = r.get(0)?;
    let payload: String = r.get(3)?;
    Ok(Job {
        id,
        kind: r.get(1)?,
        queue: r.get(2)?,
        payload: parse_payload(id, &payload)?,
        priority: r.get(4)?,
        attempt: count_u32(id, "attempts", r.get(5)?)?,
        max_attempts: count_u32(id, "max_attempts", r.get(6)?)?,
        run_at: r.get(7)?,
        lease_until: r.get(8)?,
        trace: r.get(9)?,
    })
}

fn info_row(r: &Row<'_>) -> Result<JobInfo, QueueError> {
    let id: i64 = r.get(0)?;
    let state: String = r.get(3)?;
    let payload: String = r.get(4)?;
    Ok(JobInfo {
        id,
        kind: r.get(1)?,
        queue: r.get(2)?,
        state: JobState::parse(&state)
            .ok_or_else(|| QueueError::Invalid(format!("job {id} has an unknown state {state:?}")))?,
        payload: parse_payload(id, &payload)?,
        priority: r.get(5)?,
        attempts: count_u32(id, "attempts", r.get(6)?)?,
        max_attempts: count_u32(id, "max_attempts", r.get(7)?)?,
        run_at: r.get(8)?,
        unique_key: r.get(9)?,
        last_error: r.get(10)?,
        worker: r.get(11)?,
        lease_until: r.get(12)?,
        created_at: r.get(13)?,
        updated_at: r.get(14)?,
        finished_at: r.get(15)?,
    })
}

/// The claim order, for the rows `RETURNING` hands back unordered.
fn sort_claimed(jobs: &mut [Job]) {
    jobs.sort_by(|a, b| {
        b.priority
            .cmp(&a.priority)
            .then(a.run_at.cmp(&b.run_at))
            .then(a.id.cmp(&b.id))
    });
}

impl SqliteQueue {
    /// A bulk retry or discard: one statement on the writer.
    async fn bulk(&self, action: Bulk, filter: &BulkFilter, now: i64) -> PortResult<u64> {
        let Some((sql, args)) = bulk_statement(action, filter, now, |n| format!("?{n}")) else {
            return Ok(0);
        };
        let args: Vec<Value> = args
            .into_iter()
            .map(|a| match a {
                BulkArg::Text(t) => Value::Text(t),
                BulkArg::Int(i) => Value::Integer(i),
            })
            .collect();
        self.write(move |tx| Ok(tx.prepare_cached(&sql)?.execute(params_from_iter(args))? as u64))
            .await
    }
}

#[async_trait]
impl JobQueue for SqliteQueue {
    async fn enqueue(&self, jobs: &[NewJob], now: i64) -> PortResult<Vec<Enqueued>> {
        if jobs.is_empty() {
            return Ok(Vec::new());
        }
        let jobs = EncodedJob::encode_all(jobs)?;
        self.write(move |tx| enqueue_in(tx, &jobs, now)).await
    }

    async fn claim(&self, queue: &str, worker: &str, max: usize, lease: Duration, now: i64) -> PortResult<Vec<Job>> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let queue = queue.to_owned();
        let worker = worker.to_owned();
        let until = lease_until(now, lease);
        let max = i64::try_from(max).unwrap_or(i64::MAX);
        self.write(move |tx| {
            tx.prepare_cached(EXPIRE)?.execute(params![queue, now])?;
            let mut stmt = tx.prepare_cached(CLAIM)?;
            let mut rows = stmt.query(params![queue, now, worker, until, max])?;
            let mut jobs = Vec::new();
            while let Some(r) = rows.next()? {
                jobs.push(job_row(r)?);
            }
            sort_claimed(&mut jobs);
            Ok(jobs)
        })
        .await
    }

    async fn heartbeat(&self, ids: &[JobId], worker: &str, lease: Duration, now: i64) -> PortResult<Vec<JobId>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let list = id_list(ids);
        let asked = ids.to_vec();
        let worker = worker.to_owned();
        let until = lease_until(now, lease);
        let held = self
            .write(move |tx| {
                let mut stmt = tx.prepare_cached(
                    "UPDATE jobs SET lease_until = ?3, updated_at = ?4 \
                     WHERE id IN (SELECT value FROM json_each(?1)) AND state = 'running' AND worker = ?2 \
                     RETURNING id",
                )?;
                let held = stmt
                    .query_map(params![list, worker, until, now], |r| r.get::<_, i64>(0))?
                    .collect::<Result<std::collections::HashSet<_>, _>>()?;
                Ok(held)
            })
            .await?;
        Ok(asked.into_iter().filter(|id| held.contains(id)).collect())
    }

    async fn complete(&self, ids: &[JobId], worker: &str, now: i64) -> PortResult<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let list = id_list(ids);
        let worker = worker.to_owned();
        self.write(move |tx| {
            tx.prepare_cached(
                "UPDATE jobs SET state = 'done', worker = NULL, lease_until = NULL, finished_at = ?3, updated_at = ?3 \
                 WHERE id IN (SELECT value FROM json_each(?1)) AND state = 'running' AND worker = ?2",
            )?
            .execute(params![list, worker, now])?;
            Ok(())
        })
        .await
    }

    async fn fail(&self, id: JobId, worker: &str, error: &str, retry_at: Option<i64>, now: i64) -> PortResult<()> {
        let worker = worker.to_owned();
        let error = error.to_owned();
        self.write(move |tx| {
            tx.prepare_cached(
                "UPDATE jobs SET \
                 state = CASE WHEN ?3 IS NULL OR attempts >= max_attempts THEN 'dead' ELSE 'queued' END, \
                 run_at = CASE WHEN ?3 IS NULL OR attempts >= max_attempts THEN run_at ELSE ?3 END, \
                 finished_at = CASE WHEN ?3 IS NULL OR attempts >= max_attempts THEN ?4 ELSE NULL END, \
                 last_error = ?5, worker = NULL, lease_until = NULL, updated_at = ?4 \
                 WHERE id = ?1 AND state = 'running' AND worker = ?2",
            )?
            .execute(params![id, worker, retry_at, now, error])?;
            Ok(())
        })
        .await
    }

    async fn release(&self, ids: &[JobId], worker: &str, now: i64) -> PortResult<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let list = id_list(ids);
        let worker = worker.to_owned();
        self.write(move |tx| {
            tx.prepare_cached(
                "UPDATE jobs SET state = 'queued', attempts = max(attempts - 1, 0), worker = NULL, \
                 lease_until = NULL, updated_at = ?3 \
                 WHERE id IN (SELECT value FROM json_each(?1)) AND state = 'running' AND worker = ?2",
            )?
            .execute(params![list, worker, now])?;
            Ok(())
        })
        .await
    }

    async fn fire(&self, schedule: &str, slot: i64, job: &NewJob, now: i64) -> PortResult<bool> {
        let job = EncodedJob::encode(job)?;
        let schedule = schedule.to_owned();
        self.write(move |tx| {
            let won = tx
                .prepare_cached(
                    "INSERT INTO schedule_fires (schedule, slot, fired_at) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING",
                )?
                .execute(params![schedule, slot, now])?
                == 1;
            if won {
                enqueue_in(tx, std::slice::from_ref(&job), now)?;
            }
            Ok(won)
        })
        .await
    }

    async fn last_fired(&self, schedule: &str) -> PortResult<Option<i64>> {
        let schedule = schedule.to_owned();
        self.read(move |c| {
            Ok(
                c.prepare_cached("SELECT max(slot) FROM schedule_fires WHERE schedule = ?1")?
                    .query_row(params![schedule], |r| r.get(0))?,
            )
        })
        .await
    }

    async fn last_fired_all(&self) -> PortResult<HashMap<String, i64>> {
        self.read(move |c| {
            let mut stmt = c.prepare_cached("SELECT schedule, max(slot) FROM schedule_fires GROUP BY schedule")?;
            let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
            Ok(rows.collect::<Result<HashMap<String, i64>, _>>()?)
        })
        .await
    }

    async fn get(&self, id: JobId) -> PortResult<Option<JobInfo>> {
        self.read(move |c| {
            let mut stmt = c.prepare_cached(&format!("SELECT {INFO_COLUMNS} FROM jobs WHERE id = ?1"))?;
            let mut rows = stmt.query(params![id])?;
            match rows.next()? {
                Some(r) => Ok(Some(info_row(r)?)),
                None => Ok(None),
            }
        })
        .await
    }

    async fn list(&self, filter: &JobFilter) -> PortResult<Vec<JobInfo>> {
        let filter = filter.clone();
        self.read(move |c| {
            // Only the filters given become conditions, so each shape gets a
            // plan of its own (and a cached statement).
            let mut sql = format!("SELECT {INFO_COLUMNS} FROM jobs WHERE 1 = 1");
            let mut args: Vec<Value> = Vec::new();
            let mut cond = |col: &str, v: Value| {
                args.push(v);
                sql.push_str(&format!(" AND {col} ?{}", args.len()));
            };
            if let Some(q) = filter.queue {
                cond("queue =", Value::Text(q));
            }
            if let Some(s) = filter.state {
                cond("state =", Value::Text(s.as_str().to_owned()));
            }
            if let Some(k) = filter.kind {
                cond("kind =", Value::Text(k));
            }
            if let Some(b) = filter.before {
                cond("id <", Value::Integer(b));
            }
            args.push(Value::Integer(i64::from(filter.limit)));
            sql.push_str(&format!(" ORDER BY id DESC LIMIT ?{}", args.len()));
            let mut stmt = c.prepare_cached(&sql)?;
            let mut rows = stmt.query(params_from_iter(args))?;
            let mut out = Vec::new();
            while let Some(r) = rows.next()? {
                out.push(info_row(r)?);
            }
            Ok(out)
        })
        .await
    }

    async fn counts(&self, now: i64) -> PortResult<Vec<QueueCounts>> {
        let rows = self
            .read(move |c| {
                let mut stmt = c.prepare_cached(
                    "SELECT queue, state, state = 'queued' AND run_at > ?1, count(*) FROM jobs GROUP BY 1, 2, 3",
                )?;
                let rows = stmt
                    .query_map(params![now], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(rows)
            })
            .await?;
        Ok(assemble_counts(rows)?)
    }

    async fn retry(&self, id: JobId, now: i64) -> PortResult<bool> {
        self.write(move |tx| {
            let n = tx
                .prepare_cached(
                    "UPDATE jobs SET state = 'queued', attempts = 0, run_at = ?2, worker = NULL, lease_until = NULL, \
                     finished_at = NULL, updated_at = ?2 WHERE id = ?1 AND state = 'dead'",
                )?
                .execute(params![id, now])?;
            Ok(n > 0)
        })
        .await
    }

    async fn discard(&self, id: JobId) -> PortResult<bool> {
        self.write(move |tx| {
            let n = tx
                .prepare_cached("DELETE FROM jobs WHERE id = ?1 AND state IN ('queued', 'dead')")?
                .execute(params![id])?;
            Ok(n > 0)
        })
        .await
    }

    async fn retry_matching(&self, filter: &BulkFilter, now: i64) -> PortResult<u64> {
        self.bulk(Bulk::Retry, filter, now).await
    }

    async fn discard_matching(&self, filter: &BulkFilter, now: i64) -> PortResult<u64> {
        self.bulk(Bulk::Discard, filter, now).await
    }

    async fn prune(&self, before: i64) -> PortResult<u64> {
        self.write(move |tx| {
            let jobs = tx
                .prepare_cached("DELETE FROM jobs WHERE state = 'done' AND finished_at < ?1")?
                .execute(params![before])?;
            // Each schedule's newest slot stays, so `last_fired` survives.
            tx.prepare_cached(
                "DELETE FROM schedule_fires WHERE slot < ?1 \
                 AND slot < (SELECT max(f.slot) FROM schedule_fires f WHERE f.schedule = schedule_fires.schedule)",
            )?
            .execute(params![before])?;
            Ok(jobs as u64)
        })
        .await
    }

    async fn health(&self) -> PortResult<()> {
        self.db.health(HEALTH_TIMEOUT).await
    }
}
