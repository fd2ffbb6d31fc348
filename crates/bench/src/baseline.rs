//! The "raw SQLite" ceiling for benchmarks: how fast plain multi-row
//! `INSERT`s write the rows a processor writes for a set of orders.
//!
//! The processors' drain rate is reported next to this number, so the cost
//! of everything they add (idempotency checks, consumer positions, batching
//! and the writer hop) is visible rather than guessed. The schema is the
//! store's own: the file is opened by `dbkit` with the store's profile
//! (`store::sqlite::PROFILE`: its migrations and the writer's pragmas), so
//! the benchmark needs no access to the store's internals (it used to live
//! in the store crate for that, which made benchmark SQL part of a
//! production library).

use std::path::Path;
use std::time::{Duration, Instant};

use domain::events::OrderPlacedV1;
use domain::ports::{PortError, system_now_ms};
use rusqlite::{Connection, ToSql};

/// Rows per `INSERT` statement. 100 rows of the widest table bind 1,100
/// parameters, far below SQLite's limit of 32,766, and larger statements
/// stop paying off once the per-statement overhead is amortized.
const ROWS_PER_STATEMENT: usize = 100;

/// Insert the same rows a processor would write for `orders` (orders,
/// lines with `queued` tickets, one `status` event each, all confirmed)
/// into a fresh database at `path` with the store's schema, using plain
/// multi-row `INSERT`s in one transaction and nothing else: no idempotency
/// checks, no consumer position. Returns the time from `BEGIN` to the end
/// of `COMMIT`; opening, migrating and encoding the rows are not counted.
///
/// Refuses (`Conflict`) a `path` that already exists, since inserting into
/// a database that already has rows would measure something else.
pub fn raw_insert(path: &Path, orders: &[OrderPlacedV1]) -> Result<Duration, PortError> {
    if path.exists() {
        return Err(PortError::Conflict(format!(
            "{} already exists; the baseline needs a fresh database",
            path.display()
        )));
    }
    let rows = orders.iter().map(encode).collect::<Result<Vec<_>, _>>()?;
    // Created and migrated exactly as the store's writer does it, with the
    // store's default `synchronous=NORMAL`.
    let mut conn = dbkit::sqlite::open_writer(path, &store::sqlite::PROFILE, store::Synchronous::Normal)?;
    timed_insert(&mut conn, &rows).map_err(unavailable)
}

fn unavailable(e: rusqlite::Error) -> PortError {
    PortError::Unavailable(format!("sqlite baseline: {e}"))
}

/// One order encoded as the store encodes it (`store::sqlite::rows`).
struct Row {
    id: String,
    store: String,
    customer: Option<String>,
    currency: String,
    total: i64,
    placed_at: i64,
    lines: Vec<Line>,
}

struct Line {
    line: i64,
    sku: String,
    name: String,
    station: &'static str,
    size: String,
    modifiers: String,
    qty: i64,
    unit_price: i64,
    line_total: i64,
}

fn encode(o: &OrderPlacedV1) -> Result<Row, PortError> {
    let lines = o
        .lines
        .iter()
        .map(|l| {
            Ok(Line {
                line: i64::from(l.line),
                sku: l.sku.clone(),
                name: l.name.clone(),
                station: l.station.as_str(),
                size: l.size.clone(),
                modifiers: serde_json::to_string(&l.modifiers)
                    .map_err(|e| PortError::Invalid(format!("line modifiers: {e}")))?,
                qty: i64::from(l.qty),
                unit_price: l.unit_price,
                line_total: l.line_total,
            })
        })
        .collect::<Result<_, PortError>>()?;
    Ok(Row {
        id: o.order_id.to_string(),
        store: o.store.0.clone(),
        customer: o.customer.clone(),
        currency: o.currency.clone(),
        total: o.total,
        placed_at: o.placed_at,
        lines,
    })
}

fn timed_insert(conn: &mut Connection, rows: &[Row]) -> Result<Duration, rusqlite::Error> {
    let now = system_now_ms();
    let started = Instant::now();
    let tx = conn.transaction()?;
    insert_all(&tx, rows, now)?;
    tx.commit()?;
    Ok(started.elapsed())
}

fn insert_all(c: &Connection, rows: &[Row], now: i64) -> Result<(), rusqlite::Error> {
    const ORDERS: &str = "INSERT INTO orders (id, store_id, customer, status, reject_reason, payment_status, currency, \
                          total, placed_at, confirmed_at) VALUES ";
    const LINES: &str = "INSERT INTO order_lines (order_id, line, sku, name, station, size, modifiers, qty, \
                         unit_price, line_total, ticket) VALUES ";
    const EVENTS: &str = "INSERT INTO events (order_id, store_id, kind, status, at) VALUES ";

    for chunk in rows.chunks(ROWS_PER_STATEMENT) {
        let mut args: Vec<&dyn ToSql> = Vec::with_capacity(chunk.len() * 10);
        for o in chunk {
            args.extend_from_slice(&[
                &o.id,
                &o.store,
                &o.customer,
                &"confirmed",
                &None::<String>,
                &"unpaid",
                &o.currency,
                &o.total,
                &o.placed_at,
                &now,
            ]);
        }
        execute(c, ORDERS, 10, chunk.len(), &args)?;
    }

    let lines: Vec<_> = rows.iter().flat_map(|o| o.lines.iter().map(move |l| (o, l))).collect();
    for chunk in lines.chunks(ROWS_PER_STATEMENT) {
        let mut args: Vec<&dyn ToSql> = Vec::with_capacity(chunk.len() * 11);
        for (o, l) in chunk {
            args.extend_from_slice(&[
                &o.id,
                &l.line,
                &l.sku,
                &l.name,
                &l.station,
                &l.size,
                &l.modifiers,
                &l.qty,
                &l.unit_price,
                &l.line_total,
                &"queued",
            ]);
        }
        execute(c, LINES, 11, chunk.len(), &args)?;
    }

    for chunk in rows.chunks(ROWS_PER_STATEMENT) {
        let mut args: Vec<&dyn ToSql> = Vec::with_capacity(chunk.len() * 5);
        for o in chunk {
            args.extend_from_slice(&[&o.id, &o.store, &"status", &"confirmed", &now]);
        }
        execute(c, EVENTS, 5, chunk.len(), &args)?;
    }
    Ok(())
}

/// Run `head` followed by `rows` groups of `columns` placeholders. The
/// statement is cached, so only the last, shorter chunk prepares anew.
fn execute(
    c: &Connection,
    head: &str,
    columns: usize,
    rows: usize,
    args: &[&dyn ToSql],
) -> Result<(), rusqlite::Error> {
    let group = format!("({})", vec!["?"; columns].join(", "));
    let sql = format!("{head}{}", vec![group.as_str(); rows].join(", "));
    c.prepare_cached(&sql)?.execute(args)?;
    Ok(())
}
