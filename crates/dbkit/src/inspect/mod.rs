//! `rushhour optimize-db`'s inspection of every database the configuration
//! names: what the planner knows, what is wasted, what to do about it.
//! [`sqlite`] refreshes statistics (`ANALYZE`, `PRAGMA optimize`), checks
//! integrity and reads the page counts; [`postgres`] (feature `postgres`)
//! reads the statistics collector's views. Both answer one [`Report`]
//! shape with plain-language [`Report::hints`], which the binary prints or
//! serializes as JSON.
//!
//! Why here and not in each adapter: nothing in it is specific to the
//! store, the queue or the log (it reads the catalogs, never their tables),
//! and every adapter would otherwise carry the same code three times.
//!
//! Safe beside a running server: SQLite readers never block the writer in
//! WAL mode, `ANALYZE` takes the write lock for a moment (within the busy
//! timeout); PostgreSQL's views are plain reads. Only `VACUUM` (asked for
//! with `vacuum = true`) holds a lock for long, and the report says so.

#[cfg(feature = "postgres")]
pub mod postgres;
pub mod sqlite;

use serde::Serialize;

/// One database's inspection.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// What the database is ("store", "event log", "job queue", "sessions").
    pub label: String,
    /// `sqlite` or `postgres`.
    pub engine: &'static str,
    /// The file, or the PostgreSQL schema (never a URL: it may hold a password).
    pub location: String,
    /// Where the per-index planner figures come from.
    pub planner_source: &'static str,
    /// What was run on the database (`ANALYZE`, `PRAGMA optimize`, `VACUUM`…).
    pub actions: Vec<String>,
    /// `ok`, or SQLite's integrity problems (PostgreSQL: not checked).
    pub integrity: Option<Vec<String>>,
    pub size_bytes: u64,
    /// Bytes a `VACUUM` would give back (SQLite: free pages at least;
    /// PostgreSQL: the dead-tuple estimate).
    pub reclaimable_bytes: u64,
    /// SQLite: page size, pages and free pages.
    pub pages: Option<Pages>,
    pub tables: Vec<TableStat>,
    pub indexes: Vec<IndexStat>,
    /// Size before and after, when `VACUUM` ran.
    pub vacuum: Option<Vacuumed>,
    pub hints: Vec<String>,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct Pages {
    pub page_size: u64,
    pub page_count: u64,
    pub free_pages: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct TableStat {
    pub name: String,
    /// Rows as the statistics count them (SQLite: `sqlite_stat1`;
    /// PostgreSQL: live tuples).
    pub rows: Option<u64>,
    /// PostgreSQL: sequential scans and the rows they read, index scans,
    /// dead tuples.
    pub seq_scans: Option<u64>,
    pub seq_rows_read: Option<u64>,
    pub index_scans: Option<u64>,
    pub dead_rows: Option<u64>,
    pub size_bytes: Option<u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct IndexStat {
    pub name: String,
    pub table: String,
    pub unique: bool,
    pub columns: Vec<String>,
    /// SQLite: `sqlite_stat1`'s rows covered and average rows per
    /// distinct first column, after `ANALYZE`.
    pub rows: Option<u64>,
    pub rows_per_key: Option<u64>,
    /// PostgreSQL: scans since the statistics were reset.
    pub scans: Option<u64>,
    pub size_bytes: Option<u64>,
    /// Another index of the same table whose leading columns make this one
    /// redundant (or the index it duplicates).
    pub redundant_with: Option<String>,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct Vacuumed {
    pub before_bytes: u64,
    pub after_bytes: u64,
}

/// Bytes in a human unit for hints.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

/// Indexes whose columns are a leading prefix of another index's on the
/// same table (a non-unique `(a)` beside `(a, b)`): the longer one serves
/// every lookup the shorter one does.
fn mark_redundant(indexes: &mut [IndexStat]) {
    let snapshot: Vec<(String, String, Vec<String>)> = indexes
        .iter()
        .map(|i| (i.name.clone(), i.table.clone(), i.columns.clone()))
        .collect();
    for index in indexes.iter_mut() {
        if index.unique || index.columns.is_empty() || index.redundant_with.is_some() {
            continue;
        }
        let wider = snapshot.iter().find(|(name, table, cols)| {
            *name != index.name
                && *table == index.table
                && cols.len() >= index.columns.len()
                && cols[..index.columns.len()] == index.columns[..]
                && (cols.len() > index.columns.len() || *name < index.name)
        });
        if let Some((name, ..)) = wider {
            index.redundant_with = Some(name.clone());
        }
    }
}
