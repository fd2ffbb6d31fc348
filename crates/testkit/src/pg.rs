//! A PostgreSQL schema of its own for one test: every PostgreSQL-backed
//! test (store, queue, runner, binary) isolates itself in a fresh schema on
//! the shared test database and drops it at the end, so tests run in
//! parallel and leave nothing behind. A test that panics skips `drop`,
//! leaving its schema to be looked at.

use sqlx::Connection;
use std::time::Duration;

/// Where service-backed PostgreSQL tests find their server.
pub const URL_VAR: &str = "RUSHHOUR_TEST_POSTGRES_URL";

#[derive(Debug, Clone)]
pub struct TestSchema {
    pub url: String,
    /// `<prefix>_<uuid>`: a plain identifier, safe to format into SQL.
    pub name: String,
}

impl TestSchema {
    /// A fresh schema name for `test`, or `None` (with the loud notice of
    /// `service_url`) when no server is configured.
    pub fn new(prefix: &str, test: &str) -> Option<Self> {
        let url = crate::service_url(URL_VAR, test)?;
        let name = format!("{prefix}_{}", uuid::Uuid::now_v7().simple());
        Some(Self { url, name })
    }

    /// A raw connection with this schema on its search path.
    pub async fn raw(&self) -> sqlx::PgConnection {
        let mut conn = sqlx::PgConnection::connect(&self.url).await.expect("raw connect");
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("SET search_path = \"{}\"", self.name)))
            .execute(&mut conn)
            .await
            .expect("set search_path");
        conn
    }

    /// Drop the schema; again a moment later should a straggling backend
    /// of a killed child process have recreated part of it meanwhile.
    pub async fn drop(self) {
        let mut conn = sqlx::PgConnection::connect(&self.url).await.expect("raw connect");
        for _ in 0..5 {
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                "DROP SCHEMA IF EXISTS \"{}\" CASCADE",
                self.name
            )))
            .execute(&mut conn)
            .await
            .expect("drop schema");
            let left: Option<String> = sqlx::query_scalar("SELECT nspname::text FROM pg_namespace WHERE nspname = $1")
                .bind(&self.name)
                .fetch_optional(&mut conn)
                .await
                .expect("look for the schema");
            if left.is_none() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        panic!("schema {} keeps coming back", self.name);
    }
}
