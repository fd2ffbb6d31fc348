//! The SQLite half of `optimize-db`: refresh the planner's statistics
//! (`ANALYZE`, then `PRAGMA optimize`), check integrity, list every index
//! with what `sqlite_stat1` tells the planner about it, count free pages,
//! and `VACUUM` only when asked.
//!
//! Per-index figures come from `sqlite_stat1` (rows covered, average rows
//! per distinct leading column), not from `EXPLAIN QUERY PLAN` of the
//! adapters' queries: SQLite keeps no usage counters, and the statistics
//! are what the planner itself weighs an index by; an index whose key
//! narrows a lookup to half the table is one it will seldom pick.

use std::path::Path;

use domain::ports::PortError;
use rusqlite::{Connection, OpenFlags, OptionalExtension};

use super::{IndexStat, Pages, Report, TableStat, Vacuumed, human_bytes, mark_redundant};
use crate::error::sqlite_error;
use crate::sqlite::BUSY_TIMEOUT;

/// Free space worth a `VACUUM`: a quarter of the file, and at least this.
const VACUUM_WORTH_BYTES: u64 = 1 << 20;

/// Inspect the database at `path` (which must exist: a missing file is
/// `Invalid`, never created). With `vacuum`, `VACUUM` it at the end.
pub fn inspect(path: &Path, label: &str, vacuum: bool) -> Result<Report, PortError> {
    if !path.exists() {
        return Err(PortError::Invalid(format!(
            "{label}: {} does not exist",
            path.display()
        )));
    }
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(sqlite_error)?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(sqlite_error)?;
    let mut actions = Vec::new();
    conn.execute_batch("ANALYZE").map_err(sqlite_error)?;
    actions.push("ANALYZE".to_owned());
    conn.execute_batch("PRAGMA optimize").map_err(sqlite_error)?;
    actions.push("PRAGMA optimize".to_owned());

    let integrity = integrity(&conn)?;
    let pages = pages(&conn)?;
    let tables = tables(&conn)?;
    let mut indexes = indexes(&conn, &tables)?;
    mark_redundant(&mut indexes);
    let size_bytes = pages.page_size * pages.page_count;
    let reclaimable_bytes = pages.page_size * pages.free_pages;

    let vacuum = if vacuum {
        conn.execute_batch("VACUUM").map_err(sqlite_error)?;
        actions.push("VACUUM (held the write lock: writers waited until it finished)".to_owned());
        let after = self::pages(&conn)?;
        Some(Vacuumed {
            before_bytes: size_bytes,
            after_bytes: after.page_size * after.page_count,
        })
    } else {
        None
    };
    let mut report = Report {
        label: label.to_owned(),
        engine: "sqlite",
        location: path.display().to_string(),
        planner_source: "sqlite_stat1 after ANALYZE (rows covered, average rows per leading key)",
        actions,
        integrity: Some(integrity),
        size_bytes,
        reclaimable_bytes,
        pages: Some(pages),
        tables,
        indexes,
        vacuum,
        hints: Vec::new(),
    };
    report.hints = hints(&report);
    Ok(report)
}

fn integrity(conn: &Connection) -> Result<Vec<String>, PortError> {
    let mut stmt = conn.prepare("PRAGMA integrity_check").map_err(sqlite_error)?;
    let rows = stmt
        .query_map([], |r| r.get::<_, String>(0))
        .map_err(sqlite_error)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(sqlite_error)?;
    Ok(rows)
}

fn pages(conn: &Connection) -> Result<Pages, PortError> {
    let get = |pragma: &str| -> Result<u64, PortError> {
        conn.pragma_query_value(None, pragma, |r| r.get::<_, i64>(0))
            .map(|v| v.max(0) as u64)
            .map_err(sqlite_error)
    };
    Ok(Pages {
        page_size: get("page_size")?,
        page_count: get("page_count")?,
        free_pages: get("freelist_count")?,
    })
}

fn has_stat1(conn: &Connection) -> Result<bool, PortError> {
    conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = 'sqlite_stat1')",
        [],
        |r| r.get(0),
    )
    .map_err(sqlite_error)
}

/// `sqlite_stat1`'s `stat` column: rows, then average rows per distinct
/// value of each leading column prefix.
fn parse_stat(stat: &str) -> (Option<u64>, Option<u64>) {
    let mut numbers = stat.split_whitespace().map(|n| n.parse::<u64>().ok());
    (numbers.next().flatten(), numbers.next().flatten())
}

fn tables(conn: &Connection) -> Result<Vec<TableStat>, PortError> {
    let stat1 = has_stat1(conn)?;
    let mut stmt = conn
        .prepare("SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")
        .map_err(sqlite_error)?;
    let names = stmt
        .query_map([], |r| r.get::<_, String>(0))
        .map_err(sqlite_error)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(sqlite_error)?;
    names
        .into_iter()
        .map(|name| {
            let rows = if stat1 {
                conn.query_row("SELECT stat FROM sqlite_stat1 WHERE tbl = ?1 LIMIT 1", [&name], |r| {
                    r.get::<_, String>(0)
                })
                .optional()
                .map_err(sqlite_error)?
                .and_then(|s| parse_stat(&s).0)
            } else {
                None
            };
            Ok(TableStat {
                name,
                // ANALYZE writes no row for an empty table.
                rows: rows.or(Some(0).filter(|_| stat1)),
                seq_scans: None,
                seq_rows_read: None,
                index_scans: None,
                dead_rows: None,
                size_bytes: None,
            })
        })
        .collect()
}

fn indexes(conn: &Connection, tables: &[TableStat]) -> Result<Vec<IndexStat>, PortError> {
    let stat1 = has_stat1(conn)?;
    let mut out = Vec::new();
    for table in tables {
        let mut list = conn
            .prepare("SELECT name, \"unique\", origin FROM pragma_index_list(?1) ORDER BY name")
            .map_err(sqlite_error)?;
        let listed = list
            .query_map([&table.name], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, bool>(1)?, r.get::<_, String>(2)?))
            })
            .map_err(sqlite_error)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(sqlite_error)?;
        for (name, unique, _origin) in listed {
            let mut info = conn
                .prepare("SELECT name FROM pragma_index_info(?1) ORDER BY seqno")
                .map_err(sqlite_error)?;
            let columns = info
                .query_map([&name], |r| r.get::<_, Option<String>>(0))
                .map_err(sqlite_error)?
                .collect::<Result<Vec<_>, _>>()
                .map_err(sqlite_error)?
                .into_iter()
                .map(|c| c.unwrap_or_else(|| "<expression>".to_owned()))
                .collect();
            let (rows, rows_per_key) = if stat1 {
                conn.query_row("SELECT stat FROM sqlite_stat1 WHERE idx = ?1", [&name], |r| {
                    r.get::<_, String>(0)
                })
                .optional()
                .map_err(sqlite_error)?
                .map(|s| parse_stat(&s))
                .unwrap_or((Some(0), None))
            } else {
                (None, None)
            };
            out.push(IndexStat {
                name,
                table: table.name.clone(),
                unique,
                columns,
                rows,
                rows_per_key,
                scans: None,
                size_bytes: None,
                redundant_with: None,
            });
        }
    }
    Ok(out)
}

fn hints(r: &Report) -> Vec<String> {
    let mut hints = Vec::new();
    if let Some(problems) = &r.integrity
        && problems.iter().any(|p| p != "ok")
    {
        hints.push(format!(
            "integrity_check found {} problem(s): stop the server and restore the last backup (rushhour restore)",
            problems.len()
        ));
    }
    if r.vacuum.is_none() && r.reclaimable_bytes >= VACUUM_WORTH_BYTES && r.reclaimable_bytes * 4 >= r.size_bytes {
        hints.push(format!(
            "{} of {} is free pages: `rushhour optimize-db --vacuum` gives it back (VACUUM blocks writers while it runs; \
             do it in a quiet hour)",
            human_bytes(r.reclaimable_bytes),
            human_bytes(r.size_bytes)
        ));
    }
    for index in &r.indexes {
        if let Some(wider) = &index.redundant_with {
            hints.push(format!(
                "index {} on {}({}) is a leading prefix of {}: consider dropping it",
                index.name,
                index.table,
                index.columns.join(", "),
                wider
            ));
        }
        if let (Some(rows), Some(per_key)) = (index.rows, index.rows_per_key)
            && rows >= 1_000
            && per_key * 2 >= rows
        {
            hints.push(format!(
                "index {} on {}: a key matches {per_key} of {rows} rows on average, so the planner will seldom use \
                 it: consider dropping it or leading with a more selective column",
                index.name, index.table
            ));
        }
    }
    hints
}

/// A consistent copy of the database at `src` into the new file `dest`,
/// taken while writers keep writing: `VACUUM INTO` reads one snapshot (a
/// WAL read transaction, which never blocks the writer) and writes a
/// compact file. Returns the copy's schema version (`user_version`).
///
/// Why not the online backup API: it restarts from the first page whenever
/// another connection writes between its steps, so under a rush a
/// step-by-step backup may never finish, and a single step holds the same
/// snapshot `VACUUM INTO` does without compacting.
pub fn snapshot_into(src: &Path, dest: &Path) -> Result<i64, PortError> {
    if !src.exists() {
        return Err(PortError::Invalid(format!("{} does not exist", src.display())));
    }
    if dest.exists() {
        return Err(PortError::Conflict(format!("{} already exists", dest.display())));
    }
    let conn = Connection::open_with_flags(src, OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX)
        .map_err(sqlite_error)?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(sqlite_error)?;
    let dest_str = dest
        .to_str()
        .ok_or_else(|| PortError::Invalid(format!("{} is not valid UTF-8", dest.display())))?;
    conn.execute("VACUUM INTO ?1", [dest_str]).map_err(sqlite_error)?;
    drop(conn);
    let copy = Connection::open_with_flags(dest, OpenFlags::SQLITE_OPEN_READ_ONLY).map_err(sqlite_error)?;
    crate::sqlite::schema_version(&copy)
}

/// The schema version (`user_version`) of the database file at `path`.
pub fn schema_version_of(path: &Path) -> Result<i64, PortError> {
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY).map_err(sqlite_error)?;
    crate::sqlite::schema_version(&conn)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_rows_parse() {
        assert_eq!(parse_stat("1200 600 1"), (Some(1200), Some(600)));
        assert_eq!(parse_stat("5"), (Some(5), None));
        assert_eq!(parse_stat(""), (None, None));
    }
}
