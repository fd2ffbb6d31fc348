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

use dbkit::postgres::Watched;
use dbkit::sqlx_error;
use domain::ports::{IdempotencyClaim, IdempotencyRecord, PortError, PortResult};
use sqlx::PgPool;
use sqlx::Row;

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
        Ok(Self {
            // `db_pool_*{pool="idempotency claims"}`, the name its
            // migrations go by.
            pool: Watched::new(pool, "idempotency claims"),
            topic: topic.to_owned(),
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
        let done = sqlx::query(
            "INSERT INTO log_idempotency
                 (topic, key, fingerprint, status, response, record_key, payload, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
             ON CONFLICT (topic, key) DO NOTHING",
        )
        .bind(&self.topic)
        .bind(&claim.key)
        .bind(&claim.fingerprint)
        .bind(i32::from(claim.status))
        .bind(&claim.response)
        .bind(record_key)
        .bind(payload)
        .bind(now)
        .execute(&self.pool)
        .await
        .map_err(sqlx_error)?;
        Ok(done.rows_affected() == 1)
    }

    /// Mark the claim's record as acknowledged by the broker. Not waited on
    /// for durability: if this is lost, a retry finds the claim pending and
    /// appends the same record again, which the processors apply once.
    pub(crate) async fn mark_appended(&self, key: &str) -> PortResult<()> {
        let mut tx = self.pool.begin().await.map_err(sqlx_error)?;
        sqlx::query("SET LOCAL synchronous_commit = off")
            .execute(&mut *tx)
            .await
            .map_err(sqlx_error)?;
        sqlx::query("UPDATE log_idempotency SET appended = true WHERE topic = $1 AND key = $2")
            .bind(&self.topic)
            .bind(key)
            .execute(&mut *tx)
            .await
            .map_err(sqlx_error)?;
        tx.commit().await.map_err(sqlx_error)
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
