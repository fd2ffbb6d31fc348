//! The PostgreSQL half of `optimize-db`: what the statistics collector
//! knows about the tables and indexes of one schema. Unused indexes
//! (`pg_stat_user_indexes.idx_scan = 0` since the last reset), duplicate
//! indexes (`pg_index`: same table, columns, operator classes, expressions
//! and predicate), sequential scans reading large tables
//! (`pg_stat_user_tables`), dead tuples and a bloat estimate; `VACUUM
//! (ANALYZE)` of the schema's tables only when asked.
//!
//! The bloat figure is an estimate from the collector's counts (the dead
//! share of a table's rows times its size), not `pgstattuple`, which needs
//! an extension and reads every page.

use domain::ports::PortError;
use sqlx::{AssertSqlSafe, PgPool, Row};

use super::{IndexStat, Report, TableStat, Vacuumed, human_bytes, mark_redundant};
use crate::error::sqlx_error;

/// A table is "large" for the sequential-scan hint from this many rows.
const LARGE_TABLE_ROWS: u64 = 10_000;
/// Dead tuples worth a hint: a fifth of the table, and at least this many.
const DEAD_ROWS_WORTH: u64 = 1_000;

/// [`inspect`] over a connection of its own to `url` (`schema`, else the
/// server's default `search_path`), closed afterwards.
pub async fn inspect_url(url: &str, schema: Option<&str>, label: &str, vacuum: bool) -> Result<Report, PortError> {
    let settings = crate::postgres::PoolSettings {
        max_connections: 1,
        acquire_timeout: std::time::Duration::from_secs(10),
        // VACUUM of a big table takes a while; nothing here is on a
        // request's path.
        statement_timeout: std::time::Duration::from_secs(3600),
        idle_timeout: std::time::Duration::from_secs(60),
        schema,
    };
    let pool = crate::postgres::pool(url, &settings).await?;
    let report = inspect(&pool, label, vacuum).await;
    pool.close().await;
    report
}

/// Inspect the tables of `pool`'s current schema (its `search_path`).
/// With `vacuum`, `VACUUM (ANALYZE)` each of them first.
pub async fn inspect(pool: &PgPool, label: &str, vacuum: bool) -> Result<Report, PortError> {
    let schema: String = sqlx::query_scalar("SELECT current_schema()")
        .fetch_one(pool)
        .await
        .map_err(sqlx_error)?;
    let mut actions = Vec::new();
    let before = schema_size(pool, &schema).await?;
    let vacuumed = if vacuum {
        let names: Vec<String> =
            sqlx::query_scalar("SELECT relname::text FROM pg_stat_user_tables WHERE schemaname = $1 ORDER BY relname")
                .bind(&schema)
                .fetch_all(pool)
                .await
                .map_err(sqlx_error)?;
        for name in &names {
            // Identifiers from the catalog, quoted; VACUUM takes no binds.
            let quoted = format!("\"{}\".\"{}\"", schema.replace('"', "\"\""), name.replace('"', "\"\""));
            sqlx::raw_sql(AssertSqlSafe(format!("VACUUM (ANALYZE) {quoted}")))
                .execute(pool)
                .await
                .map_err(sqlx_error)?;
        }
        actions.push(format!(
            "VACUUM (ANALYZE) of {} tables (a plain VACUUM: no exclusive lock, readers and writers went on)",
            names.len()
        ));
        Some(Vacuumed {
            before_bytes: before,
            after_bytes: schema_size(pool, &schema).await?,
        })
    } else {
        None
    };
    let stats_reset: Option<String> =
        sqlx::query_scalar("SELECT stats_reset::text FROM pg_stat_database WHERE datname = current_database()")
            .fetch_optional(pool)
            .await
            .map_err(sqlx_error)?
            .flatten();

    let table_rows = sqlx::query(
        "SELECT relname::text AS name, n_live_tup, seq_scan, seq_tup_read, idx_scan, n_dead_tup,
                pg_table_size(relid) AS size
         FROM pg_stat_user_tables WHERE schemaname = $1 ORDER BY relname",
    )
    .bind(&schema)
    .fetch_all(pool)
    .await
    .map_err(sqlx_error)?;
    let count = |v: Option<i64>| v.map(|n| n.max(0) as u64);
    let mut tables = Vec::with_capacity(table_rows.len());
    for row in table_rows {
        tables.push(TableStat {
            name: row.try_get("name").map_err(sqlx_error)?,
            rows: count(row.try_get("n_live_tup").map_err(sqlx_error)?),
            seq_scans: count(row.try_get("seq_scan").map_err(sqlx_error)?),
            seq_rows_read: count(row.try_get("seq_tup_read").map_err(sqlx_error)?),
            index_scans: count(row.try_get("idx_scan").map_err(sqlx_error)?),
            dead_rows: count(row.try_get("n_dead_tup").map_err(sqlx_error)?),
            size_bytes: count(row.try_get("size").map_err(sqlx_error)?),
        });
    }

    let index_rows = sqlx::query(
        // An index duplicates an older one (a smaller OID) of the same
        // table, columns, operator classes, expressions and predicate.
        "SELECT s.indexrelname::text AS name, s.relname::text AS tbl, i.indisunique OR i.indisprimary AS uniq,
                s.idx_scan, pg_relation_size(s.indexrelid) AS size,
                ARRAY(SELECT pg_get_indexdef(s.indexrelid, k, true)
                      FROM generate_series(1, i.indnkeyatts) AS k) AS columns,
                (SELECT min(d.indexrelid::regclass::text) FROM pg_index d
                  WHERE d.indrelid = i.indrelid AND d.indexrelid < i.indexrelid
                    AND d.indkey::text = i.indkey::text AND d.indclass::text = i.indclass::text
                    AND coalesce(pg_get_expr(d.indexprs, d.indrelid), '') = coalesce(pg_get_expr(i.indexprs, i.indrelid), '')
                    AND coalesce(pg_get_expr(d.indpred, d.indrelid), '') = coalesce(pg_get_expr(i.indpred, i.indrelid), '')
                ) AS duplicate_of
         FROM pg_stat_user_indexes s JOIN pg_index i ON i.indexrelid = s.indexrelid
         WHERE s.schemaname = $1 ORDER BY s.relname, s.indexrelname",
    )
    .bind(&schema)
    .fetch_all(pool)
    .await
    .map_err(sqlx_error)?;
    let mut indexes = Vec::with_capacity(index_rows.len());
    for row in index_rows {
        indexes.push(IndexStat {
            name: row.try_get("name").map_err(sqlx_error)?,
            table: row.try_get("tbl").map_err(sqlx_error)?,
            unique: row.try_get("uniq").map_err(sqlx_error)?,
            columns: row.try_get("columns").map_err(sqlx_error)?,
            rows: None,
            rows_per_key: None,
            scans: count(row.try_get("idx_scan").map_err(sqlx_error)?),
            size_bytes: count(row.try_get("size").map_err(sqlx_error)?),
            redundant_with: row
                .try_get::<Option<String>, _>("duplicate_of")
                .map_err(sqlx_error)?
                // regclass text may be schema-qualified; keep the name.
                .map(|n| n.rsplit('.').next().unwrap_or(&n).trim_matches('"').to_owned()),
        });
    }
    mark_redundant(&mut indexes);

    let size_bytes = schema_size(pool, &schema).await?;
    let reclaimable_bytes = tables.iter().map(bloat_estimate).sum();
    let mut report = Report {
        label: label.to_owned(),
        engine: "postgres",
        location: format!("schema {schema}"),
        planner_source: "pg_stat_user_indexes.idx_scan (scans since the statistics were reset)",
        actions,
        integrity: None,
        size_bytes,
        reclaimable_bytes,
        pages: None,
        tables,
        indexes,
        vacuum: vacuumed,
        hints: Vec::new(),
    };
    report.hints = hints(&report, stats_reset.as_deref());
    Ok(report)
}

/// The dead share of a table's rows times its size.
fn bloat_estimate(t: &TableStat) -> u64 {
    match (t.rows, t.dead_rows, t.size_bytes) {
        (Some(live), Some(dead), Some(size)) if live + dead > 0 => {
            (size as u128 * dead as u128 / (live + dead) as u128) as u64
        }
        _ => 0,
    }
}

async fn schema_size(pool: &PgPool, schema: &str) -> Result<u64, PortError> {
    let size: Option<i64> = sqlx::query_scalar(
        "SELECT sum(pg_total_relation_size(relid))::bigint FROM pg_stat_user_tables WHERE schemaname = $1",
    )
    .bind(schema)
    .fetch_one(pool)
    .await
    .map_err(sqlx_error)?;
    Ok(size.unwrap_or(0).max(0) as u64)
}

fn hints(r: &Report, stats_reset: Option<&str>) -> Vec<String> {
    let since = stats_reset.map_or_else(|| "since the statistics began".to_owned(), |t| format!("since {t}"));
    let mut hints = Vec::new();
    for index in &r.indexes {
        if let Some(other) = &index.redundant_with {
            hints.push(format!(
                "index {} on {}({}) duplicates or is a leading prefix of {other}: consider dropping it",
                index.name,
                index.table,
                index.columns.join(", ")
            ));
        } else if index.scans == Some(0) && !index.unique {
            hints.push(format!(
                "index {} on {} never used {since} ({}): consider dropping it",
                index.name,
                index.table,
                human_bytes(index.size_bytes.unwrap_or(0))
            ));
        }
    }
    for t in &r.tables {
        let (rows, seq, seq_read, idx) = (
            t.rows.unwrap_or(0),
            t.seq_scans.unwrap_or(0),
            t.seq_rows_read.unwrap_or(0),
            t.index_scans.unwrap_or(0),
        );
        if rows >= LARGE_TABLE_ROWS && seq > 0 && seq >= idx {
            hints.push(format!(
                "table {} ({rows} rows) was read by {seq} sequential scans ({seq_read} rows) against {idx} index \
                 scans: a query filters on a column no index leads with",
                t.name
            ));
        }
        let dead = t.dead_rows.unwrap_or(0);
        if r.vacuum.is_none() && dead >= DEAD_ROWS_WORTH && dead * 5 >= rows {
            hints.push(format!(
                "table {} has {dead} dead rows beside {rows} live (~{} bloat): autovacuum is behind; \
                 `rushhour optimize-db --vacuum` runs VACUUM (ANALYZE) now",
                t.name,
                human_bytes(bloat_estimate(t))
            ));
        }
    }
    hints
}
