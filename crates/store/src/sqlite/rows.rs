//! Mapping between SQL rows and domain values, both ways.
//!
//! Reading never panics: a value the domain cannot represent (an unknown
//! status, a malformed id or JSON column, a negative quantity) becomes
//! `Error::Invalid` naming the column, because a database file may have
//! been written by another binary or edited by hand.

use domain::Menu;
use domain::events::{LiveEvent, OrderPlacedV1};
use domain::ids::{OrderId, StoreId};
use domain::menu::{Category, Item, StoreInfo};
use domain::ops::{LoyaltyAccount, PerfSnapshot, SyncRun};
use domain::order::{Order, OrderLine, OrderStatus, TicketStatus, Timestamps};
use domain::ports::{DeadLetter, Decision, OrderSummary};
use rusqlite::{Connection, Row, params};

use super::error::Error;
use crate::decode::{invalid, json, kind, station, status, ticket, to_json, u32_of, u64_of};

// --------------------------------------------------------------- decoding

pub(crate) fn order_id(s: &str) -> Result<OrderId, Error> {
    OrderId::parse(s).ok_or_else(|| invalid("order id", s).into())
}

pub(crate) const ORDER_COLUMNS: &str = "id, store_id, customer, status, reject_reason, payment_status, currency, total, \
     placed_at, confirmed_at, rejected_at, started_at, ready_at, picked_up_at, cancelled_at, expired_at, \
     name, pickup_code, cancel_reason";

/// An order row (`ORDER_COLUMNS`), without its lines.
pub(crate) fn order_row(r: &Row<'_>) -> Result<Order, Error> {
    Ok(Order {
        id: order_id(&r.get::<_, String>(0)?)?,
        store: StoreId(r.get(1)?),
        customer: r.get(2)?,
        status: status(&r.get::<_, String>(3)?)?,
        reject_reason: r.get(4)?,
        payment_status: r.get(5)?,
        currency: r.get(6)?,
        total: r.get(7)?,
        lines: Vec::new(),
        at: Timestamps {
            placed_at: r.get(8)?,
            confirmed_at: r.get(9)?,
            rejected_at: r.get(10)?,
            started_at: r.get(11)?,
            ready_at: r.get(12)?,
            picked_up_at: r.get(13)?,
            cancelled_at: r.get(14)?,
            expired_at: r.get(15)?,
        },
        name: r.get(16)?,
        pickup_code: r.get(17)?,
        cancel_reason: r.get(18)?,
    })
}

const LINE_COLUMNS: &str = "line, sku, name, station, size, modifiers, qty, unit_price, line_total, ticket";
/// How many columns `LINE_COLUMNS` names.
const LINE_COLUMN_COUNT: usize = 10;

fn line_row(r: &Row<'_>) -> Result<OrderLine, Error> {
    Ok(OrderLine {
        line: u32_of("line number", r.get(0)?)?,
        sku: r.get(1)?,
        name: r.get(2)?,
        station: station(&r.get::<_, String>(3)?)?,
        size: r.get(4)?,
        modifiers: json("line modifiers", &r.get::<_, String>(5)?)?,
        qty: u32_of("quantity", r.get(6)?)?,
        unit_price: r.get(7)?,
        line_total: r.get(8)?,
        ticket: ticket(r.get(9)?)?,
    })
}

/// An order with its lines, in two queries. Callers run it inside a
/// transaction so the order and its lines are one snapshot.
pub(crate) fn load_order(conn: &Connection, id: &str) -> Result<Option<Order>, Error> {
    let mut stmt = conn.prepare_cached(&format!("SELECT {ORDER_COLUMNS} FROM orders WHERE id = ?1"))?;
    let mut rows = stmt.query(params![id])?;
    let Some(row) = rows.next()? else {
        return Ok(None);
    };
    let mut order = order_row(row)?;
    drop(rows);
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {LINE_COLUMNS} FROM order_lines WHERE order_id = ?1 ORDER BY line"
    ))?;
    let mut rows = stmt.query(params![id])?;
    while let Some(row) = rows.next()? {
        order.lines.push(line_row(row)?);
    }
    Ok(Some(order))
}

/// The orders `ids` with their lines, in the order of `ids` (ids not found
/// are left out): two statements whatever their number (`json_each` lists),
/// so a read of many orders is not one read per order (the N+1 guard,
/// `tests/it/queries.rs`, found the board's tickets doing that).
pub(crate) fn load_orders(conn: &Connection, ids: &[String]) -> Result<Vec<Order>, Error> {
    let list = to_json("order ids", &ids)?;
    let mut found: std::collections::HashMap<String, Order> = std::collections::HashMap::with_capacity(ids.len());
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {ORDER_COLUMNS} FROM orders WHERE id IN (SELECT value FROM json_each(?1))"
    ))?;
    let mut rows = stmt.query(params![list])?;
    while let Some(row) = rows.next()? {
        found.insert(row.get(0)?, order_row(row)?);
    }
    drop(rows);
    // `order_id` after the line's own columns, so `line_row` reads them
    // where it always does.
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {LINE_COLUMNS}, order_id FROM order_lines \
         WHERE order_id IN (SELECT value FROM json_each(?1)) ORDER BY order_id, line"
    ))?;
    let mut rows = stmt.query(params![list])?;
    while let Some(row) = rows.next()? {
        let order: String = row.get(LINE_COLUMN_COUNT)?;
        if let Some(o) = found.get_mut(&order) {
            o.lines.push(line_row(row)?);
        }
    }
    Ok(ids.iter().filter_map(|id| found.remove(id)).collect())
}

pub(crate) const SUMMARY_COLUMNS: &str =
    "id, store_id, status, customer, currency, total, placed_at, name, pickup_code";

pub(crate) fn summary_row(r: &Row<'_>) -> Result<OrderSummary, Error> {
    Ok(OrderSummary {
        id: order_id(&r.get::<_, String>(0)?)?,
        store: StoreId(r.get(1)?),
        status: status(&r.get::<_, String>(2)?)?,
        customer: r.get(3)?,
        currency: r.get(4)?,
        total: r.get(5)?,
        placed_at: r.get(6)?,
        name: r.get(7)?,
        pickup_code: r.get(8)?,
    })
}

/// Events with their order's pickup code and name, read through the join
/// so an event written before the code was drawn still shows it (`e` is the
/// event, `o` its order; filter and order on `e.`).
pub(crate) const EVENT_SELECT: &str = "SELECT e.id, e.kind, e.order_id, e.store_id, e.status, e.line, e.station, \
     e.ticket, e.at, o.pickup_code, o.name FROM events e LEFT JOIN orders o ON o.id = e.order_id";

pub(crate) fn event_row(r: &Row<'_>) -> Result<LiveEvent, Error> {
    Ok(LiveEvent {
        id: r.get(0)?,
        kind: kind(&r.get::<_, String>(1)?)?,
        order_id: order_id(&r.get::<_, String>(2)?)?,
        store: StoreId(r.get(3)?),
        status: status(&r.get::<_, String>(4)?)?,
        line: r
            .get::<_, Option<i64>>(5)?
            .map(|l| u32_of("event line", l))
            .transpose()?,
        station: r.get::<_, Option<String>>(6)?.map(|s| station(&s)).transpose()?,
        ticket: ticket(r.get(7)?)?,
        at: r.get(8)?,
        pickup_code: r.get(9)?,
        name: r.get(10)?,
    })
}

pub(crate) const DEAD_LETTER_COLUMNS: &str = "grp, log_partition, log_offset, key, payload, error, attempts, at";

pub(crate) fn dead_letter_row(r: &Row<'_>) -> Result<DeadLetter, Error> {
    Ok(DeadLetter {
        group: r.get(0)?,
        partition: u32_of("dead letter partition", r.get(1)?)?,
        offset: u64_of("dead letter offset", r.get(2)?)?,
        key: r.get(3)?,
        payload: r.get(4)?,
        error: r.get(5)?,
        attempts: u32_of("dead letter attempts", r.get(6)?)?,
        at: r.get(7)?,
    })
}

pub(crate) fn store_row(r: &Row<'_>) -> Result<StoreInfo, Error> {
    Ok(StoreInfo {
        id: StoreId(r.get(0)?),
        name: r.get(1)?,
        time_zone: r.get(2)?,
        currency: r.get(3)?,
    })
}

/// A store's whole menu, in three queries. Callers run it inside a
/// transaction so a concurrent `upsert_menu` cannot be seen half-applied.
pub(crate) fn load_menu(conn: &Connection, store: &str) -> Result<Option<Menu>, Error> {
    let mut stmt = conn.prepare_cached("SELECT id, name, time_zone, currency FROM stores WHERE id = ?1")?;
    let info = {
        let mut rows = stmt.query(params![store])?;
        match rows.next()? {
            Some(r) => store_row(r)?,
            None => return Ok(None),
        }
    };
    let mut categories = Vec::new();
    let mut stmt =
        conn.prepare_cached("SELECT code, name, position FROM categories WHERE store_id = ?1 ORDER BY position, code")?;
    let mut rows = stmt.query(params![store])?;
    while let Some(r) = rows.next()? {
        categories.push(Category {
            code: r.get(0)?,
            name: r.get(1)?,
            position: r.get(2)?,
        });
    }
    let mut items = Vec::new();
    let mut stmt = conn.prepare_cached(
        "SELECT sku, name, category, station, sizes, modifiers, available FROM items WHERE store_id = ?1 ORDER BY ord",
    )?;
    let mut rows = stmt.query(params![store])?;
    while let Some(r) = rows.next()? {
        items.push(Item {
            sku: r.get(0)?,
            name: r.get(1)?,
            category: r.get(2)?,
            station: station(&r.get::<_, String>(3)?)?,
            sizes: json("item sizes", &r.get::<_, String>(4)?)?,
            modifiers: json("item modifiers", &r.get::<_, String>(5)?)?,
            available: r.get(6)?,
        });
    }
    Ok(Some(Menu {
        store: info,
        categories,
        items,
    }))
}

// --------------------------------------------------------------- encoding

/// A decided order in the shape its rows are written in. Built on the
/// caller's task, before the write is queued, so the JSON encoding and
/// string formatting of many processors run in parallel and the single
/// writer thread only binds and steps statements.
pub(crate) struct NewOrder {
    pub(crate) id: OrderId,
    pub(crate) id_text: String,
    pub(crate) store: StoreId,
    pub(crate) customer: Option<String>,
    pub(crate) status: OrderStatus,
    pub(crate) reject_reason: Option<String>,
    pub(crate) currency: String,
    pub(crate) total: i64,
    pub(crate) placed_at: i64,
    pub(crate) name: Option<String>,
    pub(crate) trace: Option<String>,
    pub(crate) lines: Vec<NewLine>,
}

pub(crate) struct NewLine {
    pub(crate) line: i64,
    pub(crate) sku: String,
    pub(crate) name: String,
    pub(crate) station: &'static str,
    pub(crate) size: String,
    pub(crate) modifiers: String,
    pub(crate) qty: i64,
    pub(crate) unit_price: i64,
    pub(crate) line_total: i64,
}

impl NewOrder {
    pub(crate) fn new(placed: &OrderPlacedV1, decision: &Decision, trace: Option<&str>) -> Result<Self, Error> {
        let (status, reject_reason) = match decision {
            Decision::Confirm => (OrderStatus::Confirmed, None),
            Decision::Reject(reason) => (OrderStatus::Rejected, Some(reason.clone())),
        };
        let lines = placed
            .lines
            .iter()
            .map(|l| {
                Ok(NewLine {
                    line: i64::from(l.line),
                    sku: l.sku.clone(),
                    name: l.name.clone(),
                    station: l.station.as_str(),
                    size: l.size.clone(),
                    modifiers: to_json("line modifiers", &l.modifiers)?,
                    qty: i64::from(l.qty),
                    unit_price: l.unit_price,
                    line_total: l.line_total,
                })
            })
            .collect::<Result<_, Error>>()?;
        Ok(Self {
            id: placed.order_id,
            id_text: placed.order_id.to_string(),
            store: placed.store.clone(),
            customer: placed.customer.clone(),
            status,
            reject_reason,
            currency: placed.currency.clone(),
            total: placed.total,
            placed_at: placed.placed_at,
            name: placed.name.clone(),
            trace: trace.map(str::to_owned),
            lines,
        })
    }

    /// Tickets start `queued` when the order is confirmed; a rejected
    /// order's lines never get one.
    pub(crate) fn ticket(&self) -> Option<&'static str> {
        (self.status == OrderStatus::Confirmed).then_some(TicketStatus::Queued.as_str())
    }

    /// `(confirmed_at, rejected_at)` for a decision taken at `now`.
    pub(crate) fn decided_at(&self, now: i64) -> (Option<i64>, Option<i64>) {
        match self.status {
            OrderStatus::Confirmed => (Some(now), None),
            _ => (None, Some(now)),
        }
    }
}

// ------------------------------------------------------------ operations

pub(crate) const ACCOUNT_COLUMNS: &str = "id, email, name, tier, points, version";

pub(crate) fn account_row(r: &Row<'_>) -> Result<LoyaltyAccount, Error> {
    Ok(LoyaltyAccount {
        id: r.get(0)?,
        email: r.get(1)?,
        name: r.get(2)?,
        tier: r.get(3)?,
        points: r.get(4)?,
        version: r.get(5)?,
    })
}

pub(crate) const SYNC_RUN_COLUMNS: &str =
    "kind, started_at, finished_at, fetched, changed, db_queries, errors, outcome";

pub(crate) fn sync_run_row(r: &Row<'_>) -> Result<SyncRun, Error> {
    Ok(SyncRun {
        kind: r.get(0)?,
        started_at: r.get(1)?,
        finished_at: r.get(2)?,
        fetched: u64_of("sync run fetched", r.get(3)?)?,
        changed: u64_of("sync run changed", r.get(4)?)?,
        db_queries: u64_of("sync run db_queries", r.get(5)?)?,
        errors: u64_of("sync run errors", r.get(6)?)?,
        outcome: r.get(7)?,
    })
}

pub(crate) const SNAPSHOT_COLUMNS: &str = "at, instance, metrics";

pub(crate) fn snapshot_row(r: &Row<'_>) -> Result<PerfSnapshot, Error> {
    Ok(PerfSnapshot {
        at: r.get(0)?,
        instance: r.get(1)?,
        metrics: json("snapshot metrics", &r.get::<_, String>(2)?)?,
    })
}
