//! What `SqliteStore` does for payments and the background jobs: applying
//! payment callbacks inside a processor batch, menu diffs from the catalog
//! sync, bulk account upserts, sync cursors and records, order expiry, the
//! nightly cleanup and planner maintenance.
//!
//! Everything here is blocking and runs on the writer thread (or a read
//! connection), like the rest of the backend. Rows are encoded before the
//! write is queued (`PaymentBatch::new`, `MenuDiffRows::new`) so the single
//! writer only binds and steps statements.
//!
//! Bulk statements pass a whole batch as one JSON parameter read with
//! `json_each`, or as multi-row `VALUES`: SQLite has no array parameters,
//! and either keeps a batch to one statement. `json_each` also keeps the SQL
//! text fixed, so the statement is prepared once and cached.

use std::collections::HashMap;
use std::sync::LazyLock;

use domain::events::{LiveEvent, LiveEventKind, PaymentV1};
use domain::ids::StoreId;
use domain::menu::{Category, Item};
use domain::ops::{LoyaltyAccount, PerfSnapshot, SyncRun};
use domain::order::OrderStatus;
use domain::ports::PaymentsApplied;
use rusqlite::types::ToSql;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params, params_from_iter};

use super::rows::{self, order_id};
use super::{Error, EventDraft, insert_event};
use crate::bulk;
use crate::decode::{i64_of, to_json};

// ---------------------------------------------------------------- payments

/// A batch's payments, ready for the writer: de-duplicated by event id and
/// encoded as one JSON array of
/// `[event_id, order_id, status, amount, currency, provider_ts, received_at]`.
pub(super) struct PaymentBatch {
    /// How many the caller passed, repeats included.
    total: usize,
    /// The first of each event id, in batch order.
    unique: Vec<PaymentV1>,
    json: String,
}

impl PaymentBatch {
    /// `None` for no payments, so a batch without any runs no extra statement.
    pub(super) fn new(payments: &[PaymentV1]) -> Result<Option<Self>, Error> {
        if payments.is_empty() {
            return Ok(None);
        }
        let unique: Vec<PaymentV1> = bulk::unique_payments(payments).into_iter().cloned().collect();
        let rows: Vec<_> = unique
            .iter()
            .map(|p| {
                (
                    p.event_id.as_str(),
                    p.order_id.to_string(),
                    p.status.as_str(),
                    p.amount,
                    p.currency.as_str(),
                    p.provider_ts,
                    p.received_at,
                )
            })
            .collect();
        Ok(Some(Self {
            total: payments.len(),
            json: to_json("payments", &rows)?,
            unique,
        }))
    }
}

/// Record a batch's new payment events (`?1` the batch's JSON, `?2` now),
/// deciding each one's outcome against its order; answers the events that
/// were new. The LEFT JOIN keeps `json_each` the outer loop, so each event
/// looks its order up by primary key (a test holds the plan to that).
static RECORD_PAYMENTS: LazyLock<String> = LazyLock::new(|| {
    format!(
        "INSERT INTO payment_events (event_id, order_id, status, amount, currency, provider_ts, received_at, \
         outcome, applied_at) \
         SELECT p.event_id, p.order_id, p.status, p.amount, p.currency, p.provider_ts, p.received_at, {}, ?2 \
         FROM (SELECT value ->> 0 AS event_id, value ->> 1 AS order_id, value ->> 2 AS status, \
         value ->> 3 AS amount, value ->> 4 AS currency, value ->> 5 AS provider_ts, value ->> 6 AS received_at \
         FROM json_each(?1)) AS p LEFT JOIN orders o ON o.id = p.order_id \
         WHERE true ON CONFLICT (event_id) DO NOTHING RETURNING event_id, outcome",
        bulk::OUTCOME_SQL
    )
});

/// Set the payment status of the orders in `?1` (a JSON array of order
/// ids) from their newest applied payment event, the batch's included
/// (recorded by the statement before): an event that arrives late and is
/// older than one already applied is kept in the history but changes
/// nothing. `payment_events_by_order` finds an order's few events.
static SETTLE_PAYMENTS: LazyLock<String> = LazyLock::new(|| {
    format!(
        "UPDATE orders SET payment_status = (SELECT e.status FROM payment_events e \
         WHERE e.order_id = orders.id AND e.outcome = '{applied}' ORDER BY {newest} LIMIT 1) \
         WHERE orders.id IN (SELECT value FROM json_each(?1))",
        applied = bulk::APPLIED,
        newest = bulk::newest_payment_first("e"),
    )
});

/// Record the batch's new payment events (one statement; the outcome of
/// each is decided in SQL against its order) and settle the payment status
/// of the orders whose events applied (one more). Runs inside the batch's
/// transaction, after its orders were inserted, so a payment may follow its
/// order in the same batch.
pub(super) fn apply_payments(tx: &Connection, batch: &PaymentBatch, now: i64) -> Result<PaymentsApplied, Error> {
    let mut outcomes: HashMap<String, String> = HashMap::with_capacity(batch.unique.len());
    {
        let mut stmt = tx.prepare_cached(&RECORD_PAYMENTS)?;
        let mut rows = stmt.query(params![batch.json, now])?;
        while let Some(r) = rows.next()? {
            outcomes.insert(r.get(0)?, r.get(1)?);
        }
    }
    let unique: Vec<&PaymentV1> = batch.unique.iter().collect();
    let settle: Vec<String> = bulk::orders_with_applied_payments(&unique, &outcomes)
        .into_iter()
        .map(|o| o.to_string())
        .collect();
    if !settle.is_empty() {
        let mut stmt = tx.prepare_cached(&SETTLE_PAYMENTS)?;
        stmt.execute(params![to_json("payment orders", &settle)?])?;
    }
    let mut by_outcome: HashMap<&str, usize> = HashMap::new();
    for o in outcomes.values() {
        *by_outcome.entry(o.as_str()).or_default() += 1;
    }
    Ok(bulk::count_outcomes(batch.total, by_outcome)?)
}

// ------------------------------------------------------------------- menus

/// A menu diff encoded for the writer.
pub(super) struct MenuDiffRows {
    store: String,
    categories: Vec<Category>,
    /// `(item, sizes JSON, modifiers JSON)`, one per sku.
    items: Vec<(Item, String, String)>,
    removed: Vec<String>,
}

impl MenuDiffRows {
    pub(super) fn new(
        store: &StoreId,
        categories: &[Category],
        items: &[Item],
        removed: &[String],
    ) -> Result<Self, Error> {
        let items = bulk::unique_items(items)
            .into_iter()
            .map(|i| {
                Ok((
                    i.clone(),
                    to_json("item sizes", &i.sizes)?,
                    to_json("item modifiers", &i.modifiers)?,
                ))
            })
            .collect::<Result<_, Error>>()?;
        Ok(Self {
            store: store.0.clone(),
            categories: categories.to_vec(),
            items,
            removed: removed.to_vec(),
        })
    }
}

/// One `IMMEDIATE` transaction: categories upserted by code, removed skus
/// deleted, items upserted by sku. Row by row through cached statements, as
/// `upsert_menu` writes a menu: a diff is tens of rows, hourly. An existing
/// item keeps its availability and its place (`ord`); new ones are
/// available and go after the store's last item, in the diff's order.
pub(super) fn apply_menu_diff(c: &mut Connection, d: &MenuDiffRows) -> Result<(), Error> {
    let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let known: Option<i64> = tx
        .prepare_cached("SELECT 1 FROM stores WHERE id = ?1")?
        .query_row(params![d.store], |r| r.get(0))
        .optional()?;
    if known.is_none() {
        return Err(Error::NotFound);
    }
    {
        let mut cat = tx.prepare_cached(
            "INSERT INTO categories (store_id, code, name, position) VALUES (?1, ?2, ?3, ?4) \
             ON CONFLICT (store_id, code) DO UPDATE SET name = excluded.name, position = excluded.position",
        )?;
        for k in &d.categories {
            cat.execute(params![d.store, k.code, k.name, k.position])?;
        }
        let mut gone = tx.prepare_cached("DELETE FROM items WHERE store_id = ?1 AND sku = ?2")?;
        for sku in &d.removed {
            gone.execute(params![d.store, sku])?;
        }
        let next: i64 = tx
            .prepare_cached("SELECT coalesce(max(ord), -1) + 1 FROM items WHERE store_id = ?1")?
            .query_row(params![d.store], |r| r.get(0))?;
        let mut item = tx.prepare_cached(
            "INSERT INTO items (store_id, sku, ord, name, category, station, available, sizes, modifiers) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, 1, ?7, ?8) \
             ON CONFLICT (store_id, sku) DO UPDATE SET name = excluded.name, category = excluded.category, \
             station = excluded.station, sizes = excluded.sizes, modifiers = excluded.modifiers",
        )?;
        for (n, (i, sizes, modifiers)) in d.items.iter().enumerate() {
            item.execute(params![
                d.store,
                i.sku,
                next + n as i64,
                i.name,
                i.category,
                i.station.as_str(),
                sizes,
                modifiers
            ])?;
        }
    }
    tx.commit()?;
    Ok(())
}

// ---------------------------------------------------------------- accounts

/// Accounts per multi-row `INSERT`: 7 parameters each, 28,000 in all, under
/// SQLite's limit of 32,766. Callers send 1,000 at a time, one statement.
const ACCOUNTS_PER_STATEMENT: usize = 4_000;
const ACCOUNT_PARAMS: usize = 7;

/// The upsert for `rows` accounts. The text depends on the row count, so it
/// is prepared uncached (a few a sync run) rather than crowding the hot
/// statements out of the cache.
fn upsert_accounts_sql(rows: usize) -> String {
    let mut sql = String::with_capacity(120 + rows * 24 + 300);
    sql.push_str("INSERT INTO loyalty_accounts (id, email, name, tier, points, version, synced_at) VALUES ");
    for i in 0..rows {
        if i > 0 {
            sql.push_str(", ");
        }
        sql.push_str("(?, ?, ?, ?, ?, ?, ?)");
    }
    sql.push_str(
        " ON CONFLICT (id) DO UPDATE SET email = excluded.email, name = excluded.name, tier = excluded.tier, \
         points = excluded.points, version = excluded.version, synced_at = excluded.synced_at \
         WHERE loyalty_accounts.version < excluded.version",
    );
    sql
}

/// Upsert (a newer version wins) and move the `accounts` cursor, in one
/// `IMMEDIATE` transaction. `accounts` are already de-duplicated. Returns
/// the rows inserted or overwritten.
pub(super) fn upsert_accounts(
    c: &mut Connection,
    accounts: &[LoyaltyAccount],
    cursor: Option<&str>,
    now: i64,
) -> Result<u64, Error> {
    let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut written = 0u64;
    for chunk in accounts.chunks(ACCOUNTS_PER_STATEMENT) {
        let mut stmt = tx.prepare(&upsert_accounts_sql(chunk.len()))?;
        let mut args: Vec<&dyn ToSql> = Vec::with_capacity(chunk.len() * ACCOUNT_PARAMS);
        for a in chunk {
            args.extend([
                &a.id as &dyn ToSql,
                &a.email,
                &a.name,
                &a.tier,
                &a.points,
                &a.version,
                &now,
            ]);
        }
        written += stmt.execute(params_from_iter(args))? as u64;
    }
    if let Some(cursor) = cursor {
        set_sync_cursor(&tx, domain::sync::ACCOUNTS, Some(cursor), now)?;
    }
    tx.commit()?;
    Ok(written)
}

pub(super) fn loyalty_account(c: &Connection, id: &str) -> Result<Option<LoyaltyAccount>, Error> {
    let mut stmt = c.prepare_cached(&format!(
        "SELECT {} FROM loyalty_accounts WHERE id = ?1",
        rows::ACCOUNT_COLUMNS
    ))?;
    let mut found = stmt.query(params![id])?;
    match found.next()? {
        Some(r) => Ok(Some(rows::account_row(r)?)),
        None => Ok(None),
    }
}

pub(super) fn set_sync_cursor(c: &Connection, kind: &str, cursor: Option<&str>, now: i64) -> Result<(), Error> {
    let mut stmt = c.prepare_cached(
        "INSERT INTO sync_state (kind, cursor, updated_at) VALUES (?1, ?2, ?3) \
         ON CONFLICT (kind) DO UPDATE SET cursor = excluded.cursor, updated_at = excluded.updated_at",
    )?;
    stmt.execute(params![kind, cursor, now])?;
    Ok(())
}

// ----------------------------------------------------------------- records

pub(super) fn record_sync_run(c: &Connection, run: &SyncRun) -> Result<(), Error> {
    let mut stmt = c.prepare_cached(&format!(
        "INSERT INTO sync_runs ({}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        rows::SYNC_RUN_COLUMNS
    ))?;
    stmt.execute(params![
        run.kind,
        run.started_at,
        run.finished_at,
        i64_of("sync run fetched", run.fetched)?,
        i64_of("sync run changed", run.changed)?,
        i64_of("sync run db_queries", run.db_queries)?,
        i64_of("sync run errors", run.errors)?,
        run.outcome,
    ])?;
    Ok(())
}

pub(super) fn sync_runs(c: &Connection, kind: Option<&str>, limit: u32) -> Result<Vec<SyncRun>, Error> {
    let mut stmt = c.prepare_cached(&format!(
        "SELECT {} FROM sync_runs WHERE ?1 IS NULL OR kind = ?1 ORDER BY started_at DESC, id DESC LIMIT ?2",
        rows::SYNC_RUN_COLUMNS
    ))?;
    let mut found = stmt.query(params![kind, limit])?;
    let mut out = Vec::new();
    while let Some(r) = found.next()? {
        out.push(rows::sync_run_row(r)?);
    }
    Ok(out)
}

pub(super) fn record_snapshot(c: &Connection, s: &PerfSnapshot, metrics: &str) -> Result<(), Error> {
    let mut stmt = c.prepare_cached("INSERT INTO perf_snapshots (at, instance, metrics) VALUES (?1, ?2, ?3)")?;
    stmt.execute(params![s.at, s.instance, metrics])?;
    Ok(())
}

pub(super) fn snapshots(c: &Connection, limit: u32) -> Result<Vec<PerfSnapshot>, Error> {
    let mut stmt = c.prepare_cached(&format!(
        "SELECT {} FROM perf_snapshots ORDER BY at DESC, id DESC LIMIT ?1",
        rows::SNAPSHOT_COLUMNS
    ))?;
    let mut found = stmt.query(params![limit])?;
    let mut out = Vec::new();
    while let Some(r) = found.next()? {
        out.push(rows::snapshot_row(r)?);
    }
    Ok(out)
}

// ------------------------------------------------------------------ orders

/// `ready` → `expired` for up to `limit` orders ready since before
/// `ready_before` (longest-waiting first), with one `status` event each,
/// written by `insert_event` exactly as `transition` writes them, in one
/// `IMMEDIATE` transaction. Events follow order-id order.
pub(super) fn expire_ready(
    c: &mut Connection,
    ready_before: i64,
    limit: u32,
    now: i64,
) -> Result<Vec<LiveEvent>, Error> {
    let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
    type Expired = (String, String, Option<String>, Option<String>);
    let mut expired: Vec<Expired> = Vec::new();
    {
        let mut stmt = tx.prepare_cached(
            "UPDATE orders SET status = ?1, expired_at = ?2 WHERE id IN \
             (SELECT id FROM orders WHERE status = ?3 AND ready_at < ?4 ORDER BY ready_at, id LIMIT ?5) \
             RETURNING id, store_id, pickup_code, name",
        )?;
        let mut rows = stmt.query(params![
            OrderStatus::Expired.as_str(),
            now,
            OrderStatus::Ready.as_str(),
            ready_before,
            limit
        ])?;
        while let Some(r) = rows.next()? {
            expired.push((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?));
        }
    }
    expired.sort_unstable();
    let mut events = Vec::with_capacity(expired.len());
    for (id_text, store, code, name) in &expired {
        events.push(insert_event(
            &tx,
            EventDraft {
                kind: LiveEventKind::Status,
                order: order_id(id_text)?,
                order_text: id_text,
                store: &StoreId(store.clone()),
                status: OrderStatus::Expired,
                ticket: None,
                at: now,
                pickup_code: code.as_deref(),
                name: name.as_deref(),
            },
        )?);
    }
    tx.commit()?;
    Ok(events)
}

pub(super) fn order_counts(c: &Connection) -> Result<Vec<(OrderStatus, u64)>, Error> {
    let mut stmt = c.prepare_cached("SELECT status, count(*) FROM orders GROUP BY status")?;
    let mut found = stmt.query([])?;
    let mut raw = Vec::new();
    while let Some(r) = found.next()? {
        raw.push((r.get::<_, String>(0)?, r.get::<_, i64>(1)?));
    }
    Ok(bulk::all_counts(raw)?)
}

/// Delete up to `limit` finished orders placed before `before`, with their
/// lines, events and payment events, in one `IMMEDIATE` transaction.
/// Returns how many orders went; fewer than `limit` means none are left.
pub(super) fn prune_orders(c: &mut Connection, before: i64, limit: u32) -> Result<u64, Error> {
    let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let finished = bulk::finished_statuses();
    let ids: Vec<String> = {
        let mut stmt =
            tx.prepare_cached("SELECT id FROM orders WHERE status IN (?1, ?2, ?3, ?4) AND placed_at < ?5 LIMIT ?6")?;
        let mut args: Vec<&dyn ToSql> = finished.iter().map(|s| s as &dyn ToSql).collect();
        args.extend([&before as &dyn ToSql, &limit]);
        let mut rows = stmt.query(params_from_iter(args))?;
        let mut ids = Vec::new();
        while let Some(r) = rows.next()? {
            ids.push(r.get(0)?);
        }
        ids
    };
    if ids.is_empty() {
        return Ok(0);
    }
    let ids_json = to_json("order ids", &ids)?;
    for table in ["events", "payment_events", "order_lines"] {
        let mut stmt = tx.prepare_cached(&format!(
            "DELETE FROM {table} WHERE order_id IN (SELECT value FROM json_each(?1))"
        ))?;
        stmt.execute(params![ids_json])?;
    }
    let deleted = tx
        .prepare_cached("DELETE FROM orders WHERE id IN (SELECT value FROM json_each(?1))")?
        .execute(params![ids_json])?;
    tx.commit()?;
    Ok(deleted as u64)
}

/// Delete sync runs and snapshots from before `records_before`, and
/// payment events for unknown orders received before `orders_before` (no
/// order will take them with it). Returns the runs and snapshots deleted.
pub(super) fn prune_records(c: &mut Connection, records_before: i64, orders_before: i64) -> Result<u64, Error> {
    let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let runs = tx
        .prepare_cached("DELETE FROM sync_runs WHERE started_at < ?1")?
        .execute(params![records_before])?;
    let snapshots = tx
        .prepare_cached("DELETE FROM perf_snapshots WHERE at < ?1")?
        .execute(params![records_before])?;
    // The outcome is a literal so the partial index on it can serve.
    tx.prepare_cached("DELETE FROM payment_events WHERE outcome = 'unknown_order' AND received_at < ?1")?
        .execute(params![orders_before])?;
    tx.commit()?;
    Ok((runs + snapshots) as u64)
}

/// Rows `ANALYZE` samples per index: enough for the planner, and it keeps
/// the run to milliseconds however large the tables are.
const ANALYSIS_LIMIT: i64 = 1_000;

/// Refresh the planner's statistics on the writer connection.
pub(super) fn maintain(c: &Connection) -> Result<String, Error> {
    c.pragma_update(None, "analysis_limit", ANALYSIS_LIMIT)?;
    c.execute_batch("ANALYZE; PRAGMA optimize;")?;
    Ok(format!(
        "sqlite: ANALYZE (analysis_limit={ANALYSIS_LIMIT}) and PRAGMA optimize"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The payment statements look orders (and an order's payment events)
    /// up by key, never by scanning: a webhook flood must cost the same
    /// however many orders there are.
    #[test]
    fn payment_statements_find_orders_by_primary_key() {
        let dir = tempfile::tempdir().unwrap();
        let conn = super::super::open_writer(&dir.path().join("store.db"), super::super::Synchronous::Normal).unwrap();
        let plan = |sql: &str, args: &[&dyn ToSql]| -> String {
            let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
            stmt.query_map(args, |r| r.get::<_, String>(3))
                .unwrap()
                .collect::<Result<Vec<_>, _>>()
                .unwrap()
                .join("; ")
        };
        let record = plan(&RECORD_PAYMENTS, &[&"[]", &0]);
        assert!(record.contains("SEARCH o USING PRIMARY KEY"), "{record}");
        let settle = plan(&SETTLE_PAYMENTS, &[&"[]"]);
        assert!(settle.contains("SEARCH orders USING PRIMARY KEY"), "{settle}");
        assert!(!settle.contains("SCAN orders"), "{settle}");
        // Each order's history is found by its index, not by scanning.
        assert!(settle.contains("USING INDEX payment_events_by_order"), "{settle}");
        assert!(!settle.contains("SCAN e"), "{settle}");
    }
}
