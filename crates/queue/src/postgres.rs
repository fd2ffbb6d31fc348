//! `PgQueue`: the scale-mode backend of the `JobQueue` port, on PostgreSQL
//! through sqlx's async pool, shared by every process of a deployment.
//!
//! # One round trip per call
//!
//! - `claim` is one statement: CTEs settle the queue's expired leases on
//!   their last attempt (dead, `lease expired`), pick up to `n` due jobs
//!   (and expired leases with attempts left) in claim order with
//!   `FOR UPDATE SKIP LOCKED`, so concurrent claimers pass each other
//!   instead of queueing on the same rows, and the outer
//!   `UPDATE ... RETURNING` leases them.
//! - `enqueue` binds each column of the batch as an array and inserts with
//!   `INSERT ... SELECT FROM UNNEST(...)`. Unique keys are enforced by the
//!   partial unique index with `ON CONFLICT ... DO NOTHING`; the statement
//!   draws the ids itself (`nextval` in a materialised CTE) so it can
//!   answer, per input row, which id it got and whether it was inserted.
//!   Only when some rows were duplicates does a second statement look up
//!   the live holders of their keys. A holder that finished in between
//!   (rare) makes that job go round again.
//! - `complete`, `heartbeat`, `release` take all the ids as one array
//!   (`id = ANY($1)`).
//! - `fire` records the slot (`ON CONFLICT DO NOTHING`) and enqueues in the
//!   same transaction, so exactly one process wins a slot and its job
//!   exists iff the slot is recorded.
//!
//! The tables live next to the store's (same database, same optional
//! schema) under their own names, with their own migration ledger
//! (`queue_migrations`), so the two crates migrate independently.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use dbkit::observe::observed;
use dbkit::postgres::Watched;
use domain::jobs::{BulkFilter, Enqueued, Job, JobFilter, JobId, JobInfo, JobQueue, JobState, NewJob, QueueCounts};
use domain::ports::{PortError, PortResult};
use sqlx::postgres::{PgConnection, PgRow};
use sqlx::{AssertSqlSafe, Row};

use crate::{
    Bulk, BulkArg, EncodedJob, QueueError, assemble_counts, bulk_statement, count_u32, lease_until, parse_payload,
};

/// The queue's tables live next to the store's under their own migration
/// ledger. Schema creation and migrations take `dbkit`'s advisory lock, the
/// same key the store uses, so a store and a queue creating one schema at
/// the same moment take turns too.
const MIGRATIONS: dbkit::postgres::Migrations = dbkit::postgres::Migrations {
    label: "job queue",
    ledger: "queue_migrations",
    steps: &[
        include_str!("../migrations/postgres/0001_init.sql"),
        include_str!("../migrations/postgres/0002_trace.sql"),
    ],
};

/// How long `health()` waits for `SELECT 1`.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(2);

/// Rounds `enqueue` makes for duplicates whose key holder finished before
/// it could be looked up; more than one is already rare.
const ENQUEUE_ROUNDS: usize = 5;

#[derive(Debug, Clone)]
pub struct PgQueueOptions {
    /// Connections in the pool.
    pub max_connections: u32,
    /// How long a call waits for a free connection before `Unavailable`.
    pub acquire_timeout: Duration,
    /// Server-side limit per statement; a statement cancelled by it is
    /// `Unavailable`.
    pub statement_timeout: Duration,
    /// Idle connections beyond this age are closed.
    pub idle_timeout: Duration,
    /// Schema for the queue's tables (`search_path`), created if missing.
    /// Letters, digits and `_` only.
    pub schema: Option<String>,
}

impl Default for PgQueueOptions {
    fn default() -> Self {
        Self {
            max_connections: 16,
            acquire_timeout: Duration::from_secs(2),
            statement_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(600),
            schema: None,
        }
    }
}

pub struct PgQueue {
    pool: Watched,
}

impl std::fmt::Debug for PgQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgQueue").finish_non_exhaustive()
    }
}

const ENQUEUE: &str = "WITH input AS MATERIALIZED ( \
        SELECT nextval('jobs_id_seq') AS id, t.* \
        FROM UNNEST($1::text[], $2::text[], $3::text[], $4::int2[], $5::int8[], $6::int4[], $7::text[], \
                    $9::text[]) \
             WITH ORDINALITY AS t(queue, kind, payload, priority, run_at, max_attempts, unique_key, trace, ord) \
    ), ins AS ( \
        INSERT INTO jobs (id, queue, kind, state, payload, priority, run_at, attempts, max_attempts, unique_key, \
                          created_at, updated_at, trace) \
        SELECT id, queue, kind, 'queued', payload::jsonb, priority, run_at, 0, max_attempts, unique_key, $8, $8, \
               trace \
        FROM input ORDER BY ord \
        ON CONFLICT (unique_key) WHERE state IN ('queued', 'running') AND unique_key IS NOT NULL DO NOTHING \
        RETURNING id \
    ) \
    SELECT input.ord, input.id, ins.id IS NOT NULL AS created \
    FROM input LEFT JOIN ins ON ins.id = input.id ORDER BY input.ord";

const LIVE_HOLDERS: &str =
    "SELECT unique_key, id FROM jobs WHERE unique_key = ANY($1) AND state IN ('queued', 'running')";

const CLAIM: &str = "WITH expired AS ( \
        UPDATE jobs SET state = 'dead', last_error = 'lease expired', worker = NULL, lease_until = NULL, \
                        finished_at = $2, updated_at = $2 \
        WHERE id IN (SELECT id FROM jobs WHERE queue = $1 AND state = 'running' AND lease_until <= $2 \
                     AND attempts >= max_attempts FOR UPDATE SKIP LOCKED) \
    ), due AS ( \
        SELECT id, priority, run_at FROM jobs WHERE queue = $1 AND state = 'queued' AND run_at <= $2 \
        ORDER BY priority DESC, run_at, id LIMIT $5 FOR UPDATE SKIP LOCKED \
    ), lapsed AS ( \
        SELECT id, priority, run_at FROM jobs WHERE queue = $1 AND state = 'running' AND lease_until <= $2 \
        AND attempts < max_attempts \
        ORDER BY priority DESC, run_at, id LIMIT $5 FOR UPDATE SKIP LOCKED \
    ), picked AS ( \
        SELECT id FROM (SELECT * FROM due UNION ALL SELECT * FROM lapsed) c \
        ORDER BY priority DESC, run_at, id LIMIT $5 \
    ) \
    UPDATE jobs j SET state = 'running', worker = $3, lease_until = $4, attempts = j.attempts + 1, updated_at = $2, \
        last_error = CASE WHEN j.state = 'running' THEN 'lease expired' ELSE j.last_error END \
    FROM picked WHERE j.id = picked.id \
    RETURNING j.id, j.kind, j.queue, j.payload::text, j.priority, j.attempts, j.max_attempts, j.run_at, j.lease_until, \
        j.trace";

const INFO_COLUMNS: &str = "id, kind, queue, state, payload::text, priority, attempts, max_attempts, run_at, \
                            unique_key, last_error, worker, lease_until, created_at, updated_at, finished_at";

impl PgQueue {
    /// Open the pool (one connection is made now, so a wrong URL or a
    /// server that is down fails here) and create the schema if one is
    /// configured and missing. Does not migrate: call `migrate`.
    pub async fn connect(url: &str, opts: PgQueueOptions) -> Result<Self, QueueError> {
        let settings = dbkit::pool_settings!(opts);
        let pool = Watched::new(dbkit::postgres::connect(url, &settings).await?, "job queue");
        Ok(Self { pool })
    }

    /// Apply the migrations the database has not seen yet, in one
    /// transaction under an advisory lock, so processes starting together
    /// take turns and the later ones find nothing to do. A schema newer
    /// than this binary is refused (`Invalid`).
    pub async fn migrate(&self) -> Result<(), QueueError> {
        Ok(dbkit::postgres::migrate(self.pool.raw(), &MIGRATIONS).await?)
    }
}

/// Insert `jobs` on `conn` (a pooled connection, or a transaction for
/// `fire`), answering per job in order.
async fn enqueue_on(conn: &mut PgConnection, jobs: &[EncodedJob], now: i64) -> Result<Vec<Enqueued>, QueueError> {
    let mut out: Vec<Option<Enqueued>> = vec![None; jobs.len()];
    let mut pending: Vec<usize> = (0..jobs.len()).collect();
    for _ in 0..ENQUEUE_ROUNDS {
        let batch: Vec<&EncodedJob> = pending.iter().map(|&i| &jobs[i]).collect();
        let queues: Vec<&str> = batch.iter().map(|j| j.queue.as_str()).collect();
        let kinds: Vec<&str> = batch.iter().map(|j| j.kind.as_str()).collect();
        let payloads: Vec<&str> = batch.iter().map(|j| j.payload.as_str()).collect();
        let priorities: Vec<i16> = batch.iter().map(|j| j.priority).collect();
        let run_ats: Vec<i64> = batch.iter().map(|j| j.run_at).collect();
        let maxes: Vec<i32> = batch.iter().map(|j| j.max_attempts).collect();
        let keys: Vec<Option<&str>> = batch.iter().map(|j| j.unique_key.as_deref()).collect();
        let traces: Vec<Option<&str>> = batch.iter().map(|j| j.trace.as_deref()).collect();
        let rows = sqlx::query(ENQUEUE)
            .bind(&queues)
            .bind(&kinds)
            .bind(&payloads)
            .bind(&priorities)
            .bind(&run_ats)
            .bind(&maxes)
            .bind(&keys)
            .bind(now)
            .bind(&traces)
            .fetch_all(observed(&mut *conn))
            .await?;
        if rows.len() != pending.len() {
            return Err(QueueError::Invalid(format!(
                "enqueue answered {} rows for {} jobs",
                rows.len(),
                pending.len()
            )));
        }
        let mut dups: Vec<usize> = Vec::new();
        for (row, &i) in rows.iter().zip(&pending) {
            let id: i64 = row.try_get(1)?;
            if row.try_get::<bool, _>(2)? {
                out[i] = Some(Enqueued::Created(id));
            } else if jobs[i].unique_key.is_some() {
                dups.push(i);
            } else {
                return Err(QueueError::Invalid(format!("job {} was not inserted", jobs[i].kind)));
            }
        }
        if dups.is_empty() {
            pending.clear();
            break;
        }
        let keys: Vec<&str> = dups.iter().filter_map(|&i| jobs[i].unique_key.as_deref()).collect();
        let holders: HashMap<String, i64> = sqlx::query_as::<_, (String, i64)>(LIVE_HOLDERS)
            .bind(&keys)
            .fetch_all(observed(&mut *conn))
            .await?
            .into_iter()
            .collect();
        pending.clear();
        for i in dups {
            match jobs[i].unique_key.as_ref().and_then(|k| holders.get(k)) {
                Some(&id) => out[i] = Some(Enqueued::Duplicate(id)),
                // The holder finished meanwhile: try inserting again.
                None => pending.push(i),
            }
        }
        if pending.is_empty() {
            break;
        }
    }
    if !pending.is_empty() {
        return Err(QueueError::Unavailable(
            "unique keys kept changing hands while enqueueing; try again".into(),
        ));
    }
    out.into_iter()
        .map(|e| e.ok_or_else(|| QueueError::Invalid("a job got no answer".into())))
        .collect()
}

fn job_row(r: &PgRow) -> Result<Job, QueueError> {
    let id: i64 = r.try_get(0)?;
    let payload: String = r.try_get(3)?;
    Ok(Job {
        id,
        kind: r.try_get(1)?,
        queue: r.try_get(2)?,
        payload: parse_payload(id, &payload)?,
        priority: r.try_get(4)?,
        attempt: count_u32(id, "attempts", i64::from(r.try_get::<i32, _>(5)?))?,
        max_attempts: count_u32(id, "max_attempts", i64::from(r.try_get::<i32, _>(6)?))?,
        run_at: r.try_get(7)?,
        lease_until: r.try_get(8)?,
        trace: r.try_get(9)?,
    })
}

fn info_row(r: &PgRow) -> Result<JobInfo, QueueError> {
    let id: i64 = r.try_get(0)?;
    let state: String = r.try_get(3)?;
    let payload: String = r.try_get(4)?;
    Ok(JobInfo {
        id,
        kind: r.try_get(1)?,
        queue: r.try_get(2)?,
        state: JobState::parse(&state)
            .ok_or_else(|| QueueError::Invalid(format!("job {id} has an unknown state {state:?}")))?,
        payload: parse_payload(id, &payload)?,
        priority: r.try_get(5)?,
        attempts: count_u32(id, "attempts", i64::from(r.try_get::<i32, _>(6)?))?,
        max_attempts: count_u32(id, "max_attempts", i64::from(r.try_get::<i32, _>(7)?))?,
        run_at: r.try_get(8)?,
        unique_key: r.try_get(9)?,
        last_error: r.try_get(10)?,
        worker: r.try_get(11)?,
        lease_until: r.try_get(12)?,
        created_at: r.try_get(13)?,
        updated_at: r.try_get(14)?,
        finished_at: r.try_get(15)?,
    })
}

impl PgQueue {
    /// A bulk retry or discard: one statement.
    async fn bulk(&self, action: Bulk, filter: &BulkFilter, now: i64) -> PortResult<u64> {
        let Some((sql, args)) = bulk_statement(action, filter, now, |n| format!("${n}")) else {
            return Ok(0);
        };
        // The statement is built from fixed fragments only; every value is
        // bound.
        let mut q = sqlx::query(AssertSqlSafe(sql));
        for a in args {
            q = match a {
                BulkArg::Text(t) => q.bind(t),
                BulkArg::Int(i) => q.bind(i),
            };
        }
        let done = q.execute(observed(&self.pool)).await.map_err(QueueError::from)?;
        Ok(done.rows_affected())
    }
}

#[async_trait]
impl JobQueue for PgQueue {
    async fn enqueue(&self, jobs: &[NewJob], now: i64) -> PortResult<Vec<Enqueued>> {
        if jobs.is_empty() {
            return Ok(Vec::new());
        }
        let jobs = EncodedJob::encode_all(jobs)?;
        let mut conn = self.pool.acquire().await.map_err(QueueError::from)?;
        Ok(enqueue_on(&mut conn, &jobs, now).await?)
    }

    async fn claim(&self, queue: &str, worker: &str, max: usize, lease: Duration, now: i64) -> PortResult<Vec<Job>> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let rows = sqlx::query(CLAIM)
            .bind(queue)
            .bind(now)
            .bind(worker)
            .bind(lease_until(now, lease))
            .bind(i64::try_from(max).unwrap_or(i64::MAX))
            .fetch_all(observed(&self.pool))
            .await
            .map_err(QueueError::from)?;
        let mut jobs = rows.iter().map(job_row).collect::<Result<Vec<_>, _>>()?;
        jobs.sort_by(|a, b| {
            b.priority
                .cmp(&a.priority)
                .then(a.run_at.cmp(&b.run_at))
                .then(a.id.cmp(&b.id))
        });
        Ok(jobs)
    }

    async fn heartbeat(&self, ids: &[JobId], worker: &str, lease: Duration, now: i64) -> PortResult<Vec<JobId>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let held: std::collections::HashSet<i64> = sqlx::query_scalar(
            "UPDATE jobs SET lease_until = $3, updated_at = $4 \
             WHERE id = ANY($1) AND state = 'running' AND worker = $2 RETURNING id",
        )
        .bind(ids)
        .bind(worker)
        .bind(lease_until(now, lease))
        .bind(now)
        .fetch_all(observed(&self.pool))
        .await
        .map_err(QueueError::from)?
        .into_iter()
        .collect();
        Ok(ids.iter().copied().filter(|id| held.contains(id)).collect())
    }

    async fn complete(&self, ids: &[JobId], worker: &str, now: i64) -> PortResult<()> {
        if ids.is_empty() {
            return Ok(());
        }
        sqlx::query(
            "UPDATE jobs SET state = 'done', worker = NULL, lease_until = NULL, finished_at = $3, updated_at = $3 \
             WHERE id = ANY($1) AND state = 'running' AND worker = $2",
        )
        .bind(ids)
        .bind(worker)
        .bind(now)
        .execute(observed(&self.pool))
        .await
        .map_err(QueueError::from)?;
        Ok(())
    }

    async fn fail(&self, id: JobId, worker: &str, error: &str, retry_at: Option<i64>, now: i64) -> PortResult<()> {
        sqlx::query(
            "UPDATE jobs SET \
             state = CASE WHEN $3::int8 IS NULL OR attempts >= max_attempts THEN 'dead' ELSE 'queued' END, \
             run_at = CASE WHEN $3::int8 IS NULL OR attempts >= max_attempts THEN run_at ELSE $3::int8 END, \
             finished_at = CASE WHEN $3::int8 IS NULL OR attempts >= max_attempts THEN $4 ELSE NULL END, \
             last_error = $5, worker = NULL, lease_until = NULL, updated_at = $4 \
             WHERE id = $1 AND state = 'running' AND worker = $2",
        )
        .bind(id)
        .bind(worker)
        .bind(retry_at)
        .bind(now)
        .bind(error)
        .execute(observed(&self.pool))
        .await
        .map_err(QueueError::from)?;
        Ok(())
    }

    async fn release(&self, ids: &[JobId], worker: &str, now: i64) -> PortResult<()> {
        if ids.is_empty() {
            return Ok(());
        }
        sqlx::query(
            "UPDATE jobs SET state = 'queued', attempts = greatest(attempts - 1, 0), worker = NULL, \
             lease_until = NULL, updated_at = $3 \
             WHERE id = ANY($1) AND state = 'running' AND worker = $2",
        )
        .bind(ids)
        .bind(worker)
        .bind(now)
        .execute(observed(&self.pool))
        .await
        .map_err(QueueError::from)?;
        Ok(())
    }

    async fn fire(&self, schedule: &str, slot: i64, job: &NewJob, now: i64) -> PortResult<bool> {
        let job = EncodedJob::encode(job)?;
        let won = async {
            let mut tx = self.pool.begin().await?;
            let won = sqlx::query(
                "INSERT INTO schedule_fires (schedule, slot, fired_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
            )
            .bind(schedule)
            .bind(slot)
            .bind(now)
            .execute(observed(&mut *tx))
            .await?
            .rows_affected()
                == 1;
            if won {
                enqueue_on(&mut tx, std::slice::from_ref(&job), now).await?;
            }
            tx.commit().await?;
            Ok::<_, QueueError>(won)
        }
        .await?;
        Ok(won)
    }

    async fn last_fired(&self, schedule: &str) -> PortResult<Option<i64>> {
        let slot: Option<i64> = sqlx::query_scalar("SELECT max(slot) FROM schedule_fires WHERE schedule = $1")
            .bind(schedule)
            .fetch_one(observed(&self.pool))
            .await
            .map_err(QueueError::from)?;
        Ok(slot)
    }

    async fn last_fired_all(&self) -> PortResult<HashMap<String, i64>> {
        let rows: Vec<(String, i64)> =
            sqlx::query_as("SELECT schedule, max(slot) FROM schedule_fires GROUP BY schedule")
                .fetch_all(observed(&self.pool))
                .await
                .map_err(QueueError::from)?;
        Ok(rows.into_iter().collect())
    }

    async fn get(&self, id: JobId) -> PortResult<Option<JobInfo>> {
        let sql = format!("SELECT {INFO_COLUMNS} FROM jobs WHERE id = $1");
        let row = sqlx::query(AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(observed(&self.pool))
            .await
            .map_err(QueueError::from)?;
        Ok(row.as_ref().map(info_row).transpose()?)
    }

    async fn list(&self, filter: &JobFilter) -> PortResult<Vec<JobInfo>> {
        // Only the filters given become conditions, so each shape gets a
        // plan (and a cached statement) of its own.
        let mut sql = format!("SELECT {INFO_COLUMNS} FROM jobs WHERE true");
        let mut n = 0;
        let mut cond = |expr: &str| {
            n += 1;
            sql.push_str(&format!(" AND {expr} ${n}"));
        };
        if filter.queue.is_some() {
            cond("queue =");
        }
        if filter.state.is_some() {
            cond("state =");
        }
        if filter.kind.is_some() {
            cond("kind =");
        }
        if filter.before.is_some() {
            cond("id <");
        }
        sql.push_str(&format!(" ORDER BY id DESC LIMIT ${}", n + 1));
        let mut q = sqlx::query(AssertSqlSafe(sql));
        if let Some(v) = &filter.queue {
            q = q.bind(v);
        }
        if let Some(v) = filter.state {
            q = q.bind(v.as_str());
        }
        if let Some(v) = &filter.kind {
            q = q.bind(v);
        }
        if let Some(v) = filter.before {
            q = q.bind(v);
        }
        let rows = q
            .bind(i64::from(filter.limit))
            .fetch_all(observed(&self.pool))
            .await
            .map_err(QueueError::from)?;
        Ok(rows.iter().map(info_row).collect::<Result<_, _>>()?)
    }

    async fn counts(&self, now: i64) -> PortResult<Vec<QueueCounts>> {
        let rows: Vec<(String, String, bool, i64)> = sqlx::query_as(
            "SELECT queue, state, (state = 'queued' AND run_at > $1), count(*) FROM jobs GROUP BY 1, 2, 3",
        )
        .bind(now)
        .fetch_all(observed(&self.pool))
        .await
        .map_err(QueueError::from)?;
        Ok(assemble_counts(rows)?)
    }

    async fn retry(&self, id: JobId, now: i64) -> PortResult<bool> {
        let done = sqlx::query(
            "UPDATE jobs SET state = 'queued', attempts = 0, run_at = $2, worker = NULL, lease_until = NULL, \
             finished_at = NULL, updated_at = $2 WHERE id = $1 AND state = 'dead'",
        )
        .bind(id)
        .bind(now)
        .execute(observed(&self.pool))
        .await
        .map_err(QueueError::from)?;
        Ok(done.rows_affected() > 0)
    }

    async fn discard(&self, id: JobId) -> PortResult<bool> {
        let done = sqlx::query("DELETE FROM jobs WHERE id = $1 AND state IN ('queued', 'dead')")
            .bind(id)
            .execute(observed(&self.pool))
            .await
            .map_err(QueueError::from)?;
        Ok(done.rows_affected() > 0)
    }

    async fn retry_matching(&self, filter: &BulkFilter, now: i64) -> PortResult<u64> {
        self.bulk(Bulk::Retry, filter, now).await
    }

    async fn discard_matching(&self, filter: &BulkFilter, now: i64) -> PortResult<u64> {
        self.bulk(Bulk::Discard, filter, now).await
    }

    async fn prune(&self, before: i64) -> PortResult<u64> {
        let deleted = async {
            let mut tx = self.pool.begin().await?;
            let jobs = sqlx::query("DELETE FROM jobs WHERE state = 'done' AND finished_at < $1")
                .bind(before)
                .execute(observed(&mut *tx))
                .await?
                .rows_affected();
            // Each schedule's newest slot stays, so `last_fired` survives.
            sqlx::query(
                "DELETE FROM schedule_fires f WHERE f.slot < $1 \
                 AND f.slot < (SELECT max(g.slot) FROM schedule_fires g WHERE g.schedule = f.schedule)",
            )
            .bind(before)
            .execute(observed(&mut *tx))
            .await?;
            tx.commit().await?;
            Ok::<_, QueueError>(jobs)
        }
        .await?;
        Ok(deleted)
    }

    async fn health(&self) -> PortResult<()> {
        let probe = sqlx::query_scalar::<_, i32>("SELECT 1").fetch_one(observed(&self.pool));
        match tokio::time::timeout(HEALTH_TIMEOUT, probe).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(QueueError::from(e).into()),
            Err(_) => Err(PortError::Unavailable("the job queue did not answer in time".into())),
        }
    }
}
