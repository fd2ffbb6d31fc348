//! The "raw SQLite" ceiling for benchmarks: how fast plain multi-row
//! `INSERT`s write the rows a processor writes for a set of orders.
//!
//! The processors' drain rate is reported next to this number, so the cost
//! of everything they add (idempotency checks, consumer positions, batching
//! and the writer hop) is visible rather than guessed. It lives in the store
//! crate because it must use the very same schema and connection settings.

use std::path::Path;
use std::time::{Duration, Instant};

use domain::events::OrderPlacedV1;
use domain::ports::{Decision, PortError, system_now_ms};
use rusqlite::{Connection, ToSql};

use crate::sqlite::{Error, Synchronous, open_writer, rows::NewOrder};

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
    timed_insert(path, orders).map_err(PortError::from)
}

fn timed_insert(path: &Path, orders: &[OrderPlacedV1]) -> Result<Duration, Error> {
    let rows = orders
        .iter()
        .map(|o| NewOrder::new(o, &Decision::Confirm))
        .collect::<Result<Vec<_>, _>>()?;
    let mut conn = open_writer(path, Synchronous::Normal)?;
    let now = system_now_ms();
    let started = Instant::now();
    let tx = conn.transaction()?;
    insert_all(&tx, &rows, now)?;
    tx.commit()?;
    Ok(started.elapsed())
}

fn insert_all(c: &Connection, rows: &[NewOrder], now: i64) -> Result<(), Error> {
    const ORDERS: &str = "INSERT INTO orders (id, store_id, customer, status, reject_reason, payment_status, currency, \
                          total, placed_at, confirmed_at) VALUES ";
    const LINES: &str = "INSERT INTO order_lines (order_id, line, sku, name, station, size, modifiers, qty, \
                         unit_price, line_total, ticket) VALUES ";
    const EVENTS: &str = "INSERT INTO events (order_id, store_id, kind, status, at) VALUES ";

    for chunk in rows.chunks(ROWS_PER_STATEMENT) {
        let mut args: Vec<&dyn ToSql> = Vec::with_capacity(chunk.len() * 10);
        for o in chunk {
            args.extend_from_slice(&[
                &o.id_text,
                &o.store.0,
                &o.customer,
                &"confirmed",
                &o.reject_reason,
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
                &o.id_text,
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
            args.extend_from_slice(&[&o.id_text, &o.store.0, &"status", &"confirmed", &now]);
        }
        execute(c, EVENTS, 5, chunk.len(), &args)?;
    }
    Ok(())
}

/// Run `head` followed by `rows` groups of `columns` placeholders. The
/// statement is cached, so only the last, shorter chunk prepares anew.
fn execute(c: &Connection, head: &str, columns: usize, rows: usize, args: &[&dyn ToSql]) -> Result<(), Error> {
    let group = format!("({})", vec!["?"; columns].join(", "));
    let sql = format!("{head}{}", vec![group.as_str(); rows].join(", "));
    c.prepare_cached(&sql)?.execute(args)?;
    Ok(())
}
