//! PostgreSQL plumbing shared by the store, the job queue and the Kafka
//! log's idempotency claims: the pool with its per-connection settings, the
//! schema-name check, schema creation and advisory-locked migrations.
//!
//! Why per-connection settings (`SET statement_timeout`, `search_path` in
//! `after_connect`) rather than per role or database: the limits travel
//! with the binary, whoever administers the server.
//!
//! Why one advisory lock key for every migration ledger: a store, a queue
//! and a claims table created in one database at the same moment take
//! turns, and concurrent `CREATE SCHEMA IF NOT EXISTS` (which can still
//! fail on the catalog's unique index) is serialised too.
//!
//! Adapters hold their pools as [`Watched`] (`watched.rs`), which reports
//! them in the `db_pool_*` metrics.

use std::sync::Arc;
use std::time::Duration;

use domain::ports::PortError;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions};
use sqlx::{AssertSqlSafe, Postgres, Transaction};

use crate::error::sqlx_error;

mod watched;
pub use watched::Watched;

/// Advisory lock key (a single `bigint`) serialising schema creation and
/// migrations across processes; "rushhour" in ASCII, so it is recognisable
/// in `pg_locks`. Adapters that take two-`int4` keys of their own cannot
/// collide with it (a different key space).
pub const MIGRATION_LOCK: i64 = 0x7275_7368_686f_7572;

/// How a pool connects; each adapter's options struct fills one in.
#[derive(Debug, Clone, Copy)]
pub struct PoolSettings<'a> {
    /// Connections in the pool (at least one).
    pub max_connections: u32,
    /// How long a call waits for a free connection before `Unavailable`.
    pub acquire_timeout: Duration,
    /// Server-side limit per statement; a statement cancelled by it is
    /// `Unavailable`.
    pub statement_timeout: Duration,
    /// Idle connections beyond this age are closed.
    pub idle_timeout: Duration,
    /// Schema for every table (`search_path`). Letters, digits and `_` only.
    pub schema: Option<&'a str>,
}

/// The [`PoolSettings`] of an adapter's options struct, which by
/// convention has fields of the same names (`max_connections`,
/// `acquire_timeout`, `statement_timeout`, `idle_timeout`, and `schema` as
/// an `Option<String>`). A macro rather than a trait, so each options
/// struct keeps its plain public fields and nothing to implement.
#[macro_export]
macro_rules! pool_settings {
    ($opts:expr) => {
        $crate::postgres::PoolSettings {
            max_connections: $opts.max_connections,
            acquire_timeout: $opts.acquire_timeout,
            statement_timeout: $opts.statement_timeout,
            idle_timeout: $opts.idle_timeout,
            schema: $opts.schema.as_deref(),
        }
    };
}

/// An adapter's migrations: embedded SQL files applied in order, recorded
/// in a ledger table of its own, so adapters sharing a database migrate
/// independently.
#[derive(Debug, Clone, Copy)]
pub struct Migrations {
    /// What the schema is called in messages ("database", "job queue").
    pub label: &'static str,
    /// The ledger table, `(version integer PRIMARY KEY, applied_at)`.
    pub ledger: &'static str,
    /// One SQL script per version.
    pub steps: &'static [&'static str],
}

/// Schema names are formatted into `SET search_path` and `CREATE SCHEMA`
/// (neither takes a bind parameter), so only plain identifiers are allowed.
pub fn check_schema_name(s: &str) -> Result<(), PortError> {
    let ok = !s.is_empty()
        && s.len() <= 63
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && !s.as_bytes()[0].is_ascii_digit();
    if ok {
        Ok(())
    } else {
        Err(PortError::Invalid(format!(
            "schema name {s:?} must be 1 to 63 letters, digits or '_', not starting with a digit"
        )))
    }
}

/// Open a pool on `url` (one connection is made now, so a wrong URL or a
/// server that is down fails here). Does not create the schema: see
/// [`connect`].
pub async fn pool(url: &str, settings: &PoolSettings<'_>) -> Result<PgPool, PortError> {
    if let Some(schema) = settings.schema {
        check_schema_name(schema)?;
    }
    let connect: PgConnectOptions = url
        .parse()
        .map_err(|e| PortError::Invalid(format!("invalid PostgreSQL URL: {e}")))?;
    let mut setup = format!(
        "SET statement_timeout = {};",
        settings.statement_timeout.as_millis().max(1)
    );
    if let Some(schema) = settings.schema {
        setup.push_str(&format!(" SET search_path = \"{schema}\";"));
    }
    let setup: Arc<str> = setup.into();
    PgPoolOptions::new()
        .max_connections(settings.max_connections.max(1))
        .acquire_timeout(settings.acquire_timeout)
        .idle_timeout(settings.idle_timeout)
        .after_connect(move |conn: &mut PgConnection, _meta| {
            let setup = setup.clone();
            Box::pin(async move {
                sqlx::raw_sql(AssertSqlSafe(setup)).execute(conn).await?;
                Ok(())
            })
        })
        .connect_with(connect)
        .await
        .map_err(sqlx_error)
}

/// [`pool`], then create the configured schema if it is missing.
///
/// An existing schema is found without the advisory lock, so connecting to
/// it never waits (within `statement_timeout`) behind another process's
/// migration; only a missing one is created under the lock.
pub async fn connect(url: &str, settings: &PoolSettings<'_>) -> Result<PgPool, PortError> {
    let pool = pool(url, settings).await?;
    if let Some(schema) = settings.schema {
        let exists: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)")
            .bind(schema)
            .fetch_one(&pool)
            .await
            .map_err(sqlx_error)?;
        if exists {
            return Ok(pool);
        }
        let mut tx = locked(&pool).await?;
        sqlx::raw_sql(AssertSqlSafe(format!("CREATE SCHEMA IF NOT EXISTS \"{schema}\"")))
            .execute(&mut *tx)
            .await
            .map_err(sqlx_error)?;
        tx.commit().await.map_err(sqlx_error)?;
    }
    Ok(pool)
}

/// Apply the migrations the database has not seen yet, all in one
/// transaction under the advisory lock, so concurrent callers (several
/// processes starting at once) queue up and the later ones find nothing
/// left to do. A schema newer than this binary is refused (`Invalid`).
pub async fn migrate(pool: &PgPool, m: &Migrations) -> Result<(), PortError> {
    let mut tx = locked(pool).await?;
    let ledger = m.ledger;
    sqlx::raw_sql(AssertSqlSafe(format!(
        "CREATE TABLE IF NOT EXISTS {ledger} (\
         version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
    )))
    .execute(&mut *tx)
    .await
    .map_err(sqlx_error)?;
    let newest: Option<i32> = sqlx::query_scalar(AssertSqlSafe(format!("SELECT max(version) FROM {ledger}")))
        .fetch_one(&mut *tx)
        .await
        .map_err(sqlx_error)?;
    let known = m.steps.len();
    let done = newest.unwrap_or(0);
    let Some(done) = usize::try_from(done).ok().filter(|&d| d <= known) else {
        return Err(PortError::Invalid(format!(
            "{} schema version {done} is not one this binary knows (0 to {known})",
            m.label
        )));
    };
    let record = format!("INSERT INTO {ledger} (version) VALUES ($1)");
    for (i, sql) in m.steps.iter().enumerate().skip(done) {
        sqlx::raw_sql(*sql).execute(&mut *tx).await.map_err(sqlx_error)?;
        sqlx::query(AssertSqlSafe(record.as_str()))
            .bind(i as i32 + 1)
            .execute(&mut *tx)
            .await
            .map_err(sqlx_error)?;
    }
    tx.commit().await.map_err(sqlx_error)
}

/// A transaction holding [`MIGRATION_LOCK`] until it ends.
async fn locked(pool: &PgPool) -> Result<Transaction<'static, Postgres>, PortError> {
    let mut tx = pool.begin().await.map_err(sqlx_error)?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(MIGRATION_LOCK)
        .execute(&mut *tx)
        .await
        .map_err(sqlx_error)?;
    Ok(tx)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_names_are_plain_identifiers() {
        for ok in ["a", "rushhour_test_1", "_x", &"s".repeat(63)] {
            assert!(check_schema_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "1abc", "a-b", "a\"b", "a b", "ä", &"s".repeat(64)] {
            assert!(matches!(check_schema_name(bad), Err(PortError::Invalid(_))), "{bad}");
        }
    }
}
