//! Mapping between PostgreSQL rows and domain values, both ways.
//!
//! Reading never panics: a value the domain cannot represent (an unknown
//! status, malformed JSON, a negative quantity) becomes `Error::Invalid`
//! naming the column, because the database may have been written by another
//! binary or edited by hand. Column lists are constants so each query and
//! its decoder cannot drift apart.

use domain::Menu;
use domain::events::LiveEvent;
use domain::ids::{OrderId, StoreId};
use domain::menu::{Category, Item, StoreInfo};
use domain::ops::{LoyaltyAccount, PerfSnapshot, SyncRun};
use domain::order::{Order, OrderLine, Timestamps};
use domain::ports::{DeadLetter, OrderSummary};
use sqlx::Row;
use sqlx::postgres::PgRow;

use super::error::Error;
use crate::decode::{json, kind, station, status, ticket, u32_of, u64_of};

/// Line numbers and quantities are `integer` columns.
pub(crate) fn i32_of(what: &str, v: u32) -> Result<i32, Error> {
    i32::try_from(v).map_err(|_| Error::OutOfRange(format!("{what} {v} does not fit in a signed 32-bit integer")))
}

pub(crate) const ORDER_COLUMNS: &str = "id, store_id, customer, status, reject_reason, payment_status, currency, total, \
     placed_at, confirmed_at, rejected_at, started_at, ready_at, picked_up_at, cancelled_at, expired_at, \
     name, pickup_code, cancel_reason";

/// An order row (`ORDER_COLUMNS`), without its lines.
pub(crate) fn order_row(r: &PgRow) -> Result<Order, Error> {
    Ok(Order {
        id: OrderId(r.try_get(0)?),
        store: StoreId(r.try_get(1)?),
        customer: r.try_get(2)?,
        status: status(r.try_get(3)?)?,
        reject_reason: r.try_get(4)?,
        payment_status: r.try_get(5)?,
        currency: r.try_get(6)?,
        total: r.try_get(7)?,
        lines: Vec::new(),
        at: Timestamps {
            placed_at: r.try_get(8)?,
            confirmed_at: r.try_get(9)?,
            rejected_at: r.try_get(10)?,
            started_at: r.try_get(11)?,
            ready_at: r.try_get(12)?,
            picked_up_at: r.try_get(13)?,
            cancelled_at: r.try_get(14)?,
            expired_at: r.try_get(15)?,
        },
        name: r.try_get(16)?,
        pickup_code: r.try_get(17)?,
        cancel_reason: r.try_get(18)?,
    })
}

pub(crate) const LINE_COLUMNS: &str =
    "line, sku, name, station, size, modifiers::text, qty, unit_price, line_total, ticket";

pub(crate) fn line_row(r: &PgRow) -> Result<OrderLine, Error> {
    line_row_at(r, 0)
}

/// A line whose `LINE_COLUMNS` start at column `at` (after a join).
pub(crate) fn line_row_at(r: &PgRow, at: usize) -> Result<OrderLine, Error> {
    Ok(OrderLine {
        line: u32_of("line number", i64::from(r.try_get::<i32, _>(at)?))?,
        sku: r.try_get(at + 1)?,
        name: r.try_get(at + 2)?,
        station: station(r.try_get(at + 3)?)?,
        size: r.try_get(at + 4)?,
        modifiers: json("line modifiers", r.try_get(at + 5)?)?,
        qty: u32_of("quantity", i64::from(r.try_get::<i32, _>(at + 6)?))?,
        unit_price: r.try_get(at + 7)?,
        line_total: r.try_get(at + 8)?,
        ticket: ticket(r.try_get(at + 9)?)?,
    })
}

pub(crate) const SUMMARY_COLUMNS: &str =
    "id, store_id, status, customer, currency, total, placed_at, name, pickup_code";

pub(crate) fn summary_row(r: &PgRow) -> Result<OrderSummary, Error> {
    Ok(OrderSummary {
        id: OrderId(r.try_get(0)?),
        store: StoreId(r.try_get(1)?),
        status: status(r.try_get(2)?)?,
        customer: r.try_get(3)?,
        currency: r.try_get(4)?,
        total: r.try_get(5)?,
        placed_at: r.try_get(6)?,
        name: r.try_get(7)?,
        pickup_code: r.try_get(8)?,
    })
}

/// Events with their order's pickup code and name, read through the join
/// so an event written before the code was drawn still shows it (`e` is the
/// event, `o` its order; filter and order on `e.`).
pub(crate) const EVENT_SELECT: &str = "SELECT e.id, e.kind, e.order_id, e.store_id, e.status, e.line, e.station, \
     e.ticket, e.at, o.pickup_code, o.name FROM events e LEFT JOIN orders o ON o.id = e.order_id";

pub(crate) fn event_row(r: &PgRow) -> Result<LiveEvent, Error> {
    Ok(LiveEvent {
        id: r.try_get(0)?,
        kind: kind(r.try_get(1)?)?,
        order_id: OrderId(r.try_get(2)?),
        store: StoreId(r.try_get(3)?),
        status: status(r.try_get(4)?)?,
        line: r
            .try_get::<Option<i32>, _>(5)?
            .map(|l| u32_of("event line", i64::from(l)))
            .transpose()?,
        station: r.try_get::<Option<&str>, _>(6)?.map(station).transpose()?,
        ticket: ticket(r.try_get(7)?)?,
        at: r.try_get(8)?,
        pickup_code: r.try_get(9)?,
        name: r.try_get(10)?,
    })
}

pub(crate) const DEAD_LETTER_COLUMNS: &str = "grp, log_partition, log_offset, key, payload, error, attempts, at";

pub(crate) fn dead_letter_row(r: &PgRow) -> Result<DeadLetter, Error> {
    Ok(DeadLetter {
        group: r.try_get(0)?,
        partition: u32_of("dead letter partition", r.try_get(1)?)?,
        offset: u64_of("dead letter offset", r.try_get(2)?)?,
        key: r.try_get(3)?,
        payload: r.try_get(4)?,
        error: r.try_get(5)?,
        attempts: u32_of("dead letter attempts", r.try_get(6)?)?,
        at: r.try_get(7)?,
    })
}

pub(crate) fn store_row(r: &PgRow) -> Result<StoreInfo, Error> {
    Ok(StoreInfo {
        id: StoreId(r.try_get(0)?),
        name: r.try_get(1)?,
        time_zone: r.try_get(2)?,
        currency: r.try_get(3)?,
    })
}

pub(crate) fn category_row(r: &PgRow) -> Result<Category, Error> {
    Ok(Category {
        code: r.try_get(0)?,
        name: r.try_get(1)?,
        position: r.try_get(2)?,
    })
}

pub(crate) fn item_row(r: &PgRow) -> Result<Item, Error> {
    Ok(Item {
        sku: r.try_get(0)?,
        name: r.try_get(1)?,
        category: r.try_get(2)?,
        station: station(r.try_get(3)?)?,
        sizes: json("item sizes", r.try_get(4)?)?,
        modifiers: json("item modifiers", r.try_get(5)?)?,
        available: r.try_get(6)?,
    })
}

pub(crate) fn menu(info: StoreInfo, categories: Vec<Category>, items: Vec<Item>) -> Menu {
    Menu {
        store: info,
        categories,
        items,
    }
}

pub(crate) const ACCOUNT_COLUMNS: &str = "id, email, name, tier, points, version";

pub(crate) fn account_row(r: &PgRow) -> Result<LoyaltyAccount, Error> {
    Ok(LoyaltyAccount {
        id: r.try_get(0)?,
        email: r.try_get(1)?,
        name: r.try_get(2)?,
        tier: r.try_get(3)?,
        points: r.try_get(4)?,
        version: r.try_get(5)?,
    })
}

pub(crate) const SYNC_RUN_COLUMNS: &str =
    "kind, started_at, finished_at, fetched, changed, db_queries, errors, outcome";

pub(crate) fn sync_run_row(r: &PgRow) -> Result<SyncRun, Error> {
    Ok(SyncRun {
        kind: r.try_get(0)?,
        started_at: r.try_get(1)?,
        finished_at: r.try_get(2)?,
        fetched: u64_of("sync run fetched", r.try_get(3)?)?,
        changed: u64_of("sync run changed", r.try_get(4)?)?,
        db_queries: u64_of("sync run db_queries", r.try_get(5)?)?,
        errors: u64_of("sync run errors", r.try_get(6)?)?,
        outcome: r.try_get(7)?,
    })
}

/// `metrics` is `jsonb`, read as text and parsed like every JSON column.
pub(crate) const SNAPSHOT_COLUMNS: &str = "at, instance, metrics::text";

pub(crate) fn snapshot_row(r: &PgRow) -> Result<PerfSnapshot, Error> {
    Ok(PerfSnapshot {
        at: r.try_get(0)?,
        instance: r.try_get(1)?,
        metrics: json("snapshot metrics", r.try_get(2)?)?,
    })
}
