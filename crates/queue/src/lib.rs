//! Durable job queues: the two backends of `domain::jobs::JobQueue`.
//!
//! - [`SqliteQueue`] (embedded mode) keeps jobs in their own SQLite file
//!   (`<data_dir>/jobs.db`), apart from the store, so job churn never
//!   competes with orders for the store's single writer and the queue can
//!   fsync every commit (`synchronous=FULL`) without slowing the store down.
//! - [`PgQueue`] (scale mode) keeps them in PostgreSQL, shared by every
//!   process of a deployment; claimers skip each other's rows with
//!   `FOR UPDATE SKIP LOCKED`.
//!
//! Both keep the semantics the port's module docs state (leases, batched
//! claim and complete, priority order, unique keys, fire-once schedules),
//! and both pass the `testkit::queue` contract suite. A few details the
//! port leaves open are decided here, the same way for both:
//!
//! - `fail` with a `retry_at` still makes the job dead when it has used all
//!   its attempts: `max_attempts` is enforced by the queue, whatever the
//!   caller computed.
//! - A job whose lease expired with attempts left is claimed again (by
//!   `claim`, attempt + 1) with `last_error = "lease expired"`.
//! - `fire` answers `true` to the one caller that recorded the slot, even if
//!   the job itself was a `Duplicate` of a live one with its unique key.
//! - `prune` never deletes a schedule's newest fired slot, so `last_fired`
//!   survives retention.
//! - `retry` of a dead job whose unique key a live job holds meanwhile is
//!   refused with `Conflict` (two live holders would break the key).
//! - `counts` lists the four standard queues first (in `QUEUES` order),
//!   then any other queue with jobs, by name.

mod config;
mod error;
mod postgres;
mod sqlite;

pub use config::QueueConfig;
pub use error::QueueError;
pub use postgres::{PgQueue, PgQueueOptions};
pub use sqlite::{SqliteQueue, SqliteQueueOptions, Synchronous};

use domain::jobs::{NewJob, QUEUES, QueueCounts};

/// A job checked and encoded for insertion, built before any database work
/// so the write path only binds values.
#[derive(Debug, Clone)]
pub(crate) struct EncodedJob {
    pub queue: String,
    pub kind: String,
    pub payload: String,
    pub priority: i16,
    pub run_at: i64,
    pub max_attempts: i32,
    pub unique_key: Option<String>,
    pub trace: Option<String>,
}

impl EncodedJob {
    pub(crate) fn encode(job: &NewJob) -> Result<Self, QueueError> {
        if job.kind.is_empty() {
            return Err(QueueError::Invalid("a job needs a kind".into()));
        }
        if job.queue.is_empty() {
            return Err(QueueError::Invalid(format!("job {} needs a queue", job.kind)));
        }
        let payload = serde_json::to_string(&job.payload)
            .map_err(|e| QueueError::Invalid(format!("payload of job {}: {e}", job.kind)))?;
        Ok(Self {
            queue: job.queue.clone(),
            kind: job.kind.clone(),
            payload,
            priority: job.priority,
            run_at: job.run_at,
            // At least one attempt, and no count the database cannot hold.
            max_attempts: i32::try_from(job.max_attempts.max(1)).unwrap_or(i32::MAX),
            unique_key: job.unique_key.clone(),
            // The enqueuer's context: the caller's own, else the span this
            // enqueue runs in (nothing when traces are off).
            trace: job.trace.clone().or_else(telemetry::traces::current_traceparent),
        })
    }

    pub(crate) fn encode_all(jobs: &[NewJob]) -> Result<Vec<Self>, QueueError> {
        jobs.iter().map(Self::encode).collect()
    }
}

/// `now + lease` in epoch ms, saturating.
pub(crate) fn lease_until(now: i64, lease: std::time::Duration) -> i64 {
    now.saturating_add(i64::try_from(lease.as_millis()).unwrap_or(i64::MAX))
}

pub(crate) fn parse_payload(id: i64, text: &str) -> Result<serde_json::Value, QueueError> {
    serde_json::from_str(text).map_err(|e| QueueError::Invalid(format!("payload of job {id} is not JSON: {e}")))
}

pub(crate) fn count_u32(id: i64, what: &str, n: i64) -> Result<u32, QueueError> {
    u32::try_from(n).map_err(|_| QueueError::Invalid(format!("job {id} has {what} {n}")))
}

/// Per-queue counts from `(queue, state, scheduled, count)` rows: the
/// standard queues first (present even when empty), then the others by
/// name.
pub(crate) fn assemble_counts(rows: Vec<(String, String, bool, i64)>) -> Result<Vec<QueueCounts>, QueueError> {
    let mut out: Vec<QueueCounts> = QUEUES
        .iter()
        .map(|q| QueueCounts {
            queue: (*q).to_owned(),
            ..QueueCounts::default()
        })
        .collect();
    let mut others: std::collections::BTreeMap<String, QueueCounts> = std::collections::BTreeMap::new();
    for (queue, state, scheduled, n) in rows {
        let n = u64::try_from(n).unwrap_or(0);
        let entry = match out.iter_mut().find(|c| c.queue == queue) {
            Some(c) => c,
            None => others.entry(queue.clone()).or_insert_with(|| QueueCounts {
                queue,
                ..QueueCounts::default()
            }),
        };
        match state.as_str() {
            "queued" => {
                entry.queued += n;
                if scheduled {
                    entry.scheduled += n;
                }
            }
            "running" => entry.running += n,
            "done" => entry.done += n,
            "dead" => entry.dead += n,
            other => return Err(QueueError::Invalid(format!("unknown job state {other:?}"))),
        }
    }
    out.extend(others.into_values());
    Ok(out)
}

/// A bulk action's statement parameter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum BulkArg {
    Text(String),
    Int(i64),
}

/// Which bulk action a statement is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Bulk {
    Retry,
    Discard,
}

/// The one statement of a bulk action over `filter`, with its parameters,
/// for either backend (`ph(n)` writes the n-th placeholder, 1-based);
/// `None` when the action cannot change anything (a retry of ready jobs,
/// which are due already). Written once so both backends select exactly
/// the same jobs.
///
/// A retry of dead jobs skips one whose unique key a live job holds, and
/// of several dead jobs sharing a key retries only the newest: two live
/// holders would break the key (the single `retry` answers `Conflict`
/// instead; a bulk action over hundreds of jobs should not fail for one).
pub(crate) fn bulk_statement(
    action: Bulk,
    filter: &domain::jobs::BulkFilter,
    now: i64,
    ph: impl Fn(usize) -> String,
) -> Option<(String, Vec<BulkArg>)> {
    use domain::jobs::BulkState;
    let state = match (action, filter.state) {
        (Bulk::Retry, None) => Some(BulkState::Dead),
        (Bulk::Retry, Some(BulkState::Ready)) => return None,
        (_, s) => s,
    };
    // `now` is bound only where the statement uses it: SQLite refuses
    // a parameter no placeholder names.
    let uses_now = action == Bulk::Retry || matches!(state, Some(BulkState::Scheduled | BulkState::Ready));
    let mut args = Vec::new();
    if uses_now {
        args.push(BulkArg::Int(now));
    }
    let now_ph = ph(1);
    let mut cond = match state {
        None => "state IN ('queued', 'dead')".to_owned(),
        Some(BulkState::Dead) => "state = 'dead'".to_owned(),
        Some(BulkState::Scheduled) => format!("state = 'queued' AND run_at > {now_ph}"),
        Some(BulkState::Ready) => format!("state = 'queued' AND run_at <= {now_ph}"),
    };
    for (col, v) in [("queue", &filter.queue), ("kind", &filter.kind)] {
        if let Some(v) = v {
            args.push(BulkArg::Text(v.clone()));
            cond.push_str(&format!(" AND {col} = {}", ph(args.len())));
        }
    }
    let sql = match (action, state) {
        (Bulk::Discard, _) => format!("DELETE FROM jobs WHERE {cond}"),
        (Bulk::Retry, Some(BulkState::Dead)) => format!(
            "UPDATE jobs SET state = 'queued', attempts = 0, run_at = {now_ph}, worker = NULL, lease_until = NULL, \
             finished_at = NULL, updated_at = {now_ph} WHERE {cond} AND (unique_key IS NULL OR (\
             NOT EXISTS (SELECT 1 FROM jobs l WHERE l.unique_key = jobs.unique_key AND l.state IN ('queued', 'running')) \
             AND id = (SELECT max(d.id) FROM jobs d WHERE d.unique_key = jobs.unique_key AND d.state = 'dead')))"
        ),
        (Bulk::Retry, _) => format!("UPDATE jobs SET run_at = {now_ph}, updated_at = {now_ph} WHERE {cond}"),
    };
    Some((sql, args))
}
