//! Idempotency claims of the Kafka log, kept in PostgreSQL.
//!
//! Kafka cannot claim a key atomically with an append, so the claim is made
//! first, durably, and carries everything needed to redo the append: the
//! record's key and payload (the payload names the order id, so a redone
//! append is the *same* order and the processors' idempotent apply keeps it
//! once). The protocol:
//!
//! 1. `INSERT … ON CONFLICT DO NOTHING`: whoever inserts owns the key and
//!    appends; the row is `pending` until the broker acknowledges, then
//!    `appended`.
//! 2. A request that finds the key taken gets the stored response; if the
//!    claim is still `pending` it first waits for the owner, and if the owner
//!    never finishes (crashed, or the broker refused it) it appends the
//!    stored record itself. Either way no response is replayed for a record
//!    that is not durable in the log.
//!
//! Both statements are batched across concurrent appends (issue 13): a
//! claim is one row of a multi-row `INSERT … SELECT FROM unnest(…) ON
//! CONFLICT DO NOTHING RETURNING key` run by one of [`FLUSHERS`] tasks that
//! take every claim queued while the previous statement ran (the group
//! commit of the embedded log, here on PostgreSQL), and the "appended"
//! marks are one `UPDATE … WHERE key = ANY(…)` per batch. One statement per
//! order was two round trips and two commits per order in the api, the
//! largest share of its CPU per order. Rows are sorted by key in each
//! batch, so two batches wanting the same keys take their locks in the
//! same order and cannot deadlock; a key twice in one batch is owned by
//! its first request only.

use dbkit::postgres::Watched;
use dbkit::sqlx_error;
use domain::ports::{IdempotencyClaim, IdempotencyRecord, PortError, PortResult};
use sqlx::PgPool;
use sqlx::Row;
use tokio::sync::oneshot;

/// Statements in flight at once per log: enough to overlap one batch's
/// round trip with the next one's filling, few enough that the batches stay
/// large.
pub(crate) const FLUSHERS: usize = 4;
/// Rows per statement at most.
pub(crate) const MAX_BATCH: usize = 256;
/// Claims waiting for a statement at most; an append beyond it waits for
/// room (back-pressure, never an unbounded queue).
const QUEUE: usize = 4096;

/// The claim table, versioned in its own ledger (`log_migrations`) beside
/// whatever else lives in the database, and created under `dbkit`'s
/// advisory lock so processes starting together do not race on
/// `CREATE TABLE`.
const MIGRATIONS: dbkit::postgres::Migrations = dbkit::postgres::Migrations {
    label: "idempotency claims",
    ledger: "log_migrations",
    steps: &[include_str!("../../migrations/postgres/0001_claims.sql")],
};

#[derive(Debug, Clone)]
pub(crate) struct Claims {
    pool: Watched,
    topic: String,
    /// Claims for the flushers; they stop when every `Claims` is dropped.
    claims: flume::Sender<Pending>,
    /// Keys to mark appended, fire and forget.
    marks: flume::Sender<String>,
}

/// One claim waiting for its statement.
struct Pending {
    key: String,
    fingerprint: String,
    status: i32,
    response: Vec<u8>,
    record_key: String,
    payload: Vec<u8>,
    created_at: i64,
    owned: oneshot::Sender<PortResult<bool>>,
}

impl std::fmt::Debug for Pending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pending")
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

/// What the claim table says about a key someone else claimed first.
#[derive(Debug)]
pub(crate) struct Existing {
    pub record: IdempotencyRecord,
    pub appended: bool,
    pub record_key: String,
    pub payload: Vec<u8>,
}

impl Claims {
    pub(crate) async fn open(pool: PgPool, topic: &str) -> Result<Self, PortError> {
        dbkit::postgres::migrate(&pool, &MIGRATIONS).await?;
        // `db_pool_*{pool="idempotency claims"}`, the name its migrations
        // go by. The flushers hold clones: they end (and let the pool
        // close) when the last `Claims`, holding the senders, is dropped.
        let pool = Watched::new(pool, "idempotency claims");
        let (claims, claim_rx) = flume::bounded(QUEUE);
        let (marks, mark_rx) = flume::bounded(QUEUE);
        for _ in 0..FLUSHERS {
            tokio::spawn(flush_claims(pool.clone(), topic.to_owned(), claim_rx.clone()));
        }
        tokio::spawn(flush_marks(pool.clone(), topic.to_owned(), mark_rx));
        Ok(Self {
            pool,
            topic: topic.to_owned(),
            claims,
            marks,
        })
    }

    /// Claim `claim.key` for the record (`record_key`, `payload`). `true`
    /// if this call owns it now (durably: the insert is committed).
    pub(crate) async fn claim(
        &self,
        claim: &IdempotencyClaim,
        record_key: &str,
        payload: &[u8],
        now: i64,
    ) -> PortResult<bool> {
        let (owned, answer) = oneshot::channel();
        let pending = Pending {
            key: claim.key.clone(),
            fingerprint: claim.fingerprint.clone(),
            status: i32::from(claim.status),
            response: claim.response.clone(),
            record_key: record_key.to_owned(),
            payload: payload.to_vec(),
            created_at: now,
            owned,
        };
        self.claims
            .send_async(pending)
            .await
            .map_err(|_| PortError::Unavailable("the idempotency claim flushers have stopped".into()))?;
        answer
            .await
            .map_err(|_| PortError::Unavailable("the idempotency claim flushers have stopped".into()))?
    }

    /// Mark the claim's record as acknowledged by the broker, soon, in a
    /// batch with others. Not waited on: if the mark is lost (a full queue,
    /// a crash), a retry finds the claim pending and appends the same
    /// record again, which the processors apply once.
    pub(crate) fn mark_appended_later(&self, key: &str) {
        if self.marks.try_send(key.to_owned()).is_err() {
            tracing::debug!("idempotency mark queue full; the claim stays pending");
        }
    }

    /// Mark the claim's record as acknowledged by the broker, now (the
    /// slow path of a request that appended someone else's record).
    pub(crate) async fn mark_appended(&self, key: &str) -> PortResult<()> {
        mark(&self.pool, &self.topic, &[key.to_owned()]).await
    }

    pub(crate) async fn get(&self, key: &str) -> PortResult<Option<Existing>> {
        let row = sqlx::query(
            "SELECT fingerprint, status, response, created_at, appended, record_key, payload
             FROM log_idempotency WHERE topic = $1 AND key = $2",
        )
        .bind(&self.topic)
        .bind(key)
        .fetch_optional(&self.pool)
        .await
        .map_err(sqlx_error)?;
        let Some(r) = row else { return Ok(None) };
        let status: i32 = r.try_get("status").map_err(sqlx_error)?;
        Ok(Some(Existing {
            record: IdempotencyRecord {
                fingerprint: r.try_get("fingerprint").map_err(sqlx_error)?,
                status: u16::try_from(status).map_err(|_| PortError::Invalid(format!("claim status {status}")))?,
                response: r.try_get("response").map_err(sqlx_error)?,
                created_at: r.try_get("created_at").map_err(sqlx_error)?,
            },
            appended: r.try_get("appended").map_err(sqlx_error)?,
            record_key: r.try_get("record_key").map_err(sqlx_error)?,
            payload: r.try_get("payload").map_err(sqlx_error)?,
        }))
    }

    /// Delete claims made before `before` (the nightly cleanup).
    pub(crate) async fn prune(&self, before: i64) -> PortResult<u64> {
        let done = sqlx::query("DELETE FROM log_idempotency WHERE topic = $1 AND created_at < $2")
            .bind(&self.topic)
            .bind(before)
            .execute(&self.pool)
            .await
            .map_err(sqlx_error)?;
        Ok(done.rows_affected())
    }

    pub(crate) async fn health(&self) -> PortResult<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await.map_err(sqlx_error)?;
        Ok(())
    }
}

/// Take the first claim queued, then every other one already there (up to
/// [`MAX_BATCH`]).
async fn next_batch<T>(rx: &flume::Receiver<T>) -> Option<Vec<T>> {
    let first = rx.recv_async().await.ok()?;
    let mut batch = Vec::with_capacity(rx.len().min(MAX_BATCH - 1) + 1);
    batch.push(first);
    while batch.len() < MAX_BATCH {
        match rx.try_recv() {
            Ok(p) => batch.push(p),
            Err(_) => break,
        }
    }
    Some(batch)
}

/// One flusher: insert each batch of claims in one statement and tell each
/// request whether it owns its key. Ends when every sender is gone.
async fn flush_claims(pool: Watched, topic: String, rx: flume::Receiver<Pending>) {
    while let Some(mut batch) = next_batch(&rx).await {
        // Sorted, so concurrent batches lock keys in one order (no
        // deadlock); stable, so the first request for a key stays first.
        batch.sort_by(|a, b| a.key.cmp(&b.key));
        let mut first = vec![true; batch.len()];
        for i in 1..batch.len() {
            first[i] = batch[i].key != batch[i - 1].key;
        }
        let rows: Vec<&Pending> = batch.iter().zip(&first).filter(|(_, f)| **f).map(|(p, _)| p).collect();
        let result = insert_claims(&pool, &topic, &rows).await;
        for (p, is_first) in batch.into_iter().zip(first) {
            let answer = match &result {
                Ok(inserted) => Ok(is_first && inserted.contains(&p.key)),
                Err(e) => Err(e.clone()),
            };
            // The request may have given up (its deadline); nothing to tell.
            let _ = p.owned.send(answer);
        }
    }
}

/// Insert `rows` (distinct keys); answers the keys this statement inserted.
async fn insert_claims(
    pool: &Watched,
    topic: &str,
    rows: &[&Pending],
) -> PortResult<std::collections::HashSet<String>> {
    let inserted: Vec<String> = sqlx::query_scalar(
        "INSERT INTO log_idempotency
             (topic, key, fingerprint, status, response, record_key, payload, created_at)
         SELECT $1, k, f, s, r, rk, p, c
         FROM unnest($2::text[], $3::text[], $4::int4[], $5::bytea[], $6::text[], $7::bytea[], $8::int8[])
              AS t(k, f, s, r, rk, p, c)
         ON CONFLICT (topic, key) DO NOTHING
         RETURNING key",
    )
    .bind(topic)
    .bind(rows.iter().map(|p| p.key.as_str()).collect::<Vec<_>>())
    .bind(rows.iter().map(|p| p.fingerprint.as_str()).collect::<Vec<_>>())
    .bind(rows.iter().map(|p| p.status).collect::<Vec<_>>())
    .bind(rows.iter().map(|p| p.response.as_slice()).collect::<Vec<_>>())
    .bind(rows.iter().map(|p| p.record_key.as_str()).collect::<Vec<_>>())
    .bind(rows.iter().map(|p| p.payload.as_slice()).collect::<Vec<_>>())
    .bind(rows.iter().map(|p| p.created_at).collect::<Vec<_>>())
    .fetch_all(pool)
    .await
    .map_err(sqlx_error)?;
    Ok(inserted.into_iter().collect())
}

/// The marks' flusher: one `UPDATE` per batch of keys, without waiting for
/// the WAL flush (a lost mark costs a re-append, never an order).
async fn flush_marks(pool: Watched, topic: String, rx: flume::Receiver<String>) {
    while let Some(keys) = next_batch(&rx).await {
        if let Err(e) = mark(&pool, &topic, &keys).await {
            tracing::debug!(error = %e, keys = keys.len(), "idempotency claims not marked appended");
        }
    }
}

async fn mark(pool: &Watched, topic: &str, keys: &[String]) -> PortResult<()> {
    let mut sorted: Vec<&str> = keys.iter().map(String::as_str).collect();
    sorted.sort_unstable();
    sorted.dedup();
    let mut tx = pool.begin().await.map_err(sqlx_error)?;
    sqlx::query("SET LOCAL synchronous_commit = off")
        .execute(&mut *tx)
        .await
        .map_err(sqlx_error)?;
    sqlx::query("UPDATE log_idempotency SET appended = true WHERE topic = $1 AND key = ANY($2)")
        .bind(topic)
        .bind(sorted)
        .execute(&mut *tx)
        .await
        .map_err(sqlx_error)?;
    tx.commit().await.map_err(sqlx_error)
}
