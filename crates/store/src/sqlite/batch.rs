//! The processors' hot write: a batch's orders, lines and `status` events
//! inserted inside `apply_batch`'s transaction with a few multi-row
//! statements per table, not one statement per row.
//!
//! Why this shape (issue 13, measured in `docs/benchmarks.md`, "Intake and
//! drain profiles"): the profile of `rushhour bench drain` had the store's
//! writer thread spending most of its time stepping one `INSERT` per order,
//! per line and per event, plus, per confirmed order, an upsert of the
//! pickup counter and an `UPDATE orders SET pickup_code` that rewrote the
//! row just inserted and its `(store_id, pickup_code)` index entry. Now:
//!
//! - one `SELECT id … IN (…)` per batch finds the orders already applied
//!   (a replayed batch), instead of learning it from each insert changing
//!   no row; the writer is the only one, so the answer holds for the
//!   transaction;
//! - pickup numbers are drawn in memory from one read of each
//!   `(store, day)` counter and written back once per batch, so a code is
//!   known before its order's row is written and goes in with it;
//! - rows go in multi-row `INSERT`s of fixed shapes (`CHUNKS`), so every
//!   shape stays in the connection's statement cache; one statement per
//!   batch size would re-prepare on nearly every batch.
//!
//! Rejected alternative: one statement per whole batch, as the raw-insert
//! baseline does. Batch sizes vary from 1 to `max_batch`, and a prepare of
//! a 100-row statement costs more than the steps it saves.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::sync::OnceLock;

use domain::events::LiveEventKind;
use domain::ids::StoreId;
use domain::order::OrderStatus;
use domain::ports::{BatchApplied, PaymentsApplied};
use rusqlite::{Connection, OptionalExtension, ToSql, params};

use super::rows::NewOrder;
use super::{Error, EventDraft};

/// Rows per statement, largest first. A batch of 100 orders with 3 lines
/// each takes 4 order statements and 9 line statements.
const CHUNKS: [usize; 4] = [64, 16, 4, 1];

/// Payment status of a freshly applied order; payments move it later.
const UNPAID: &str = "unpaid";

/// Insert a batch's new orders, their lines and one `status` event each.
/// Orders already in the store (a replayed record, or a repeat within the
/// batch) are skipped entirely: their lines and event were written the
/// first time, and they draw no pickup number.
pub(super) fn insert_orders(c: &Connection, batch: &[NewOrder], now: i64) -> Result<BatchApplied, Error> {
    let existing = existing_ids(c, batch)?;
    let mut seen = HashSet::with_capacity(batch.len());
    let fresh: Vec<&NewOrder> = batch
        .iter()
        .filter(|o| !existing.contains(o.id_text.as_str()) && seen.insert(o.id_text.as_str()))
        .collect();
    let mut applied = BatchApplied {
        inserted: fresh.len(),
        events: Vec::with_capacity(fresh.len()),
        payments: PaymentsApplied::default(),
    };
    if fresh.is_empty() {
        return Ok(applied);
    }

    let mut counters = PickupCodes::default();
    let codes = fresh
        .iter()
        .map(|o| {
            if o.status == OrderStatus::Confirmed {
                counters.draw(c, &o.store, o.placed_at).map(Some)
            } else {
                Ok(None)
            }
        })
        .collect::<Result<Vec<_>, Error>>()?;
    counters.save(c)?;

    let decided: Vec<_> = fresh.iter().map(|o| o.decided_at(now)).collect();
    let statuses: Vec<&'static str> = fresh.iter().map(|o| o.status.as_str()).collect();
    chunked(fresh.len(), |at, n| {
        let mut args: Vec<&dyn ToSql> = Vec::with_capacity(n * 14);
        for i in at..at + n {
            let o = fresh[i];
            let (confirmed_at, rejected_at) = &decided[i];
            args.extend_from_slice(&[
                &o.id_text,
                &o.store.0,
                &o.customer,
                &statuses[i],
                &o.reject_reason,
                &UNPAID,
                &o.currency,
                &o.total,
                &o.placed_at,
                confirmed_at,
                rejected_at,
                &o.name,
                &o.trace,
                &codes[i],
            ]);
        }
        c.prepare_cached(ORDERS.sql(n))?.execute(args.as_slice())?;
        Ok(())
    })?;

    let tickets: Vec<_> = fresh.iter().map(|o| o.ticket()).collect();
    let lines: Vec<_> = fresh
        .iter()
        .enumerate()
        .flat_map(|(i, o)| o.lines.iter().map(move |l| (i, l)))
        .collect();
    chunked(lines.len(), |at, n| {
        let mut args: Vec<&dyn ToSql> = Vec::with_capacity(n * 11);
        for (i, l) in &lines[at..at + n] {
            args.extend_from_slice(&[
                &fresh[*i].id_text,
                &l.line,
                &l.sku,
                &l.name,
                &l.station,
                &l.size,
                &l.modifiers,
                &l.qty,
                &l.unit_price,
                &l.line_total,
                &tickets[*i],
            ]);
        }
        c.prepare_cached(LINES.sql(n))?.execute(args.as_slice())?;
        Ok(())
    })?;

    // Event ids are assigned in the order of the rows, which is the
    // batch's (log) order; they are read back by order id rather than by
    // position, since SQLite does not promise `RETURNING`'s row order.
    let kind = LiveEventKind::Status.as_str();
    let mut ids: HashMap<String, i64> = HashMap::with_capacity(fresh.len());
    chunked(fresh.len(), |at, n| {
        let mut args: Vec<&dyn ToSql> = Vec::with_capacity(n * 5);
        for (o, status) in fresh[at..at + n].iter().zip(&statuses[at..at + n]) {
            args.extend_from_slice(&[&o.id_text, &o.store.0, &kind, status, &now]);
        }
        let mut stmt = c.prepare_cached(EVENTS.sql(n))?;
        let mut rows = stmt.query(args.as_slice())?;
        while let Some(r) = rows.next()? {
            ids.insert(r.get(0)?, r.get(1)?);
        }
        Ok(())
    })?;
    for (o, code) in fresh.iter().zip(codes) {
        let id = ids
            .get(&o.id_text)
            .copied()
            .ok_or_else(|| Error::Invalid(format!("no event id came back for order {}", o.id_text)))?;
        let draft = EventDraft {
            kind: LiveEventKind::Status,
            order: o.id,
            order_text: &o.id_text,
            store: &o.store,
            status: o.status,
            ticket: None,
            at: now,
            pickup_code: code.as_deref(),
            name: o.name.as_deref(),
        };
        applied.events.push(draft.event(id));
    }
    Ok(applied)
}

/// The ids of the batch's orders that the store already has.
fn existing_ids(c: &Connection, batch: &[NewOrder]) -> Result<HashSet<String>, Error> {
    let mut found = HashSet::new();
    chunked(batch.len(), |at, n| {
        let args: Vec<&dyn ToSql> = batch[at..at + n].iter().map(|o| &o.id_text as &dyn ToSql).collect();
        let mut stmt = c.prepare_cached(EXISTING.sql(n))?;
        let mut rows = stmt.query(args.as_slice())?;
        while let Some(r) = rows.next()? {
            found.insert(r.get(0)?);
        }
        Ok(())
    })?;
    Ok(found)
}

/// Call `f(start, len)` over `0..total` in chunks of the sizes of `CHUNKS`,
/// largest first.
fn chunked(total: usize, mut f: impl FnMut(usize, usize) -> Result<(), Error>) -> Result<(), Error> {
    let mut at = 0;
    for size in CHUNKS {
        while total - at >= size {
            f(at, size)?;
            at += size;
        }
    }
    Ok(())
}

/// One statement's text for each size in `CHUNKS`, built once per process:
/// the hot path looks its shape up instead of formatting it per chunk.
struct Shapes {
    head: &'static str,
    /// Placeholders per row: `(?, …, ?)` groups when `grouped`, else
    /// single `?`s (an `IN` list).
    columns: usize,
    grouped: bool,
    tail: &'static str,
    built: OnceLock<[String; CHUNKS.len()]>,
}

impl Shapes {
    const fn new(head: &'static str, columns: usize, grouped: bool, tail: &'static str) -> Self {
        Self {
            head,
            columns,
            grouped,
            tail,
            built: OnceLock::new(),
        }
    }

    /// The text for `rows` rows; `rows` is one of `CHUNKS` (what `chunked`
    /// hands out).
    fn sql(&self, rows: usize) -> &str {
        let built = self.built.get_or_init(|| CHUNKS.map(|n| self.build(n)));
        let i = CHUNKS
            .iter()
            .position(|&n| n == rows)
            .expect("statement sizes come from CHUNKS");
        &built[i]
    }

    /// `head`, then `rows` groups of `columns` placeholders, then `tail`.
    fn build(&self, rows: usize) -> String {
        let one = if self.grouped {
            format!("({})", vec!["?"; self.columns].join(", "))
        } else {
            "?".to_owned()
        };
        format!("{}{}{}", self.head, vec![one; rows].join(", "), self.tail)
    }
}

static ORDERS: Shapes = Shapes::new(
    "INSERT INTO orders (id, store_id, customer, status, reject_reason, payment_status, currency, total, \
     placed_at, confirmed_at, rejected_at, name, trace, pickup_code) VALUES ",
    14,
    true,
    "",
);
static LINES: Shapes = Shapes::new(
    "INSERT INTO order_lines (order_id, line, sku, name, station, size, modifiers, qty, unit_price, \
     line_total, ticket) VALUES ",
    11,
    true,
    "",
);
static EVENTS: Shapes = Shapes::new(
    "INSERT INTO events (order_id, store_id, kind, status, at) VALUES ",
    5,
    true,
    " RETURNING order_id, id",
);
static EXISTING: Shapes = Shapes::new("SELECT id FROM orders WHERE id IN (", 1, false, ")");

/// Pickup numbers drawn for one batch: each store's time zone and each
/// `(store, local day)` counter are read once, the numbers handed out in
/// memory in batch order, and the counters written back by `save` in the
/// same transaction (the writer is single, so no other batch interleaves).
#[derive(Default)]
struct PickupCodes {
    zones: HashMap<String, String>,
    last: HashMap<(String, String), i64>,
}

impl PickupCodes {
    fn draw(&mut self, c: &Connection, store: &StoreId, placed_at: i64) -> Result<String, Error> {
        let zone = match self.zones.get(&store.0) {
            Some(z) => z.clone(),
            None => {
                // A store the menu sync has not brought in yet counts as UTC.
                let z: String = c
                    .prepare_cached("SELECT time_zone FROM stores WHERE id = ?1")?
                    .query_row(params![store.0], |r| r.get(0))
                    .optional()?
                    .unwrap_or_else(|| "UTC".to_owned());
                self.zones.insert(store.0.clone(), z.clone());
                z
            }
        };
        let day = domain::pickup::local_day(&zone, placed_at);
        let n = match self.last.entry((store.0.clone(), day)) {
            Entry::Occupied(mut e) => {
                *e.get_mut() += 1;
                *e.get()
            }
            Entry::Vacant(e) => {
                let (store, day) = e.key();
                let last: i64 = c
                    .prepare_cached("SELECT last FROM pickup_counters WHERE store_id = ?1 AND day = ?2")?
                    .query_row(params![store, day], |r| r.get(0))
                    .optional()?
                    .unwrap_or(0);
                *e.insert(last + 1)
            }
        };
        Ok(domain::pickup::PickupCode::nth(u32::try_from(n).unwrap_or(u32::MAX)).into_string())
    }

    fn save(&self, c: &Connection) -> Result<(), Error> {
        let mut stmt = c.prepare_cached(
            "INSERT INTO pickup_counters (store_id, day, last) VALUES (?1, ?2, ?3) \
             ON CONFLICT (store_id, day) DO UPDATE SET last = excluded.last",
        )?;
        for ((store, day), last) in &self.last {
            stmt.execute(params![store, day, last])?;
        }
        Ok(())
    }
}
