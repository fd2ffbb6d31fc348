//! `SqliteStore`: the embedded backend of the `Store` port, one SQLite file
//! in WAL mode with one writer and a small pool of readers.
//!
//! # Durability
//!
//! The store defaults to `synchronous=NORMAL`, which in WAL mode means a
//! commit is not fsynced at once: a power loss (not a process crash, which
//! loses nothing) may drop the last few transactions. That is safe here
//! because the store is not the source of truth for orders. The event log is
//! a separate file written with `synchronous=FULL`, and every processor
//! batch commits its consumer position in the same transaction as the rows
//! it wrote. If power loss drops a batch, its position goes back with it, so
//! on restart the processor re-reads those records from the log and
//! re-applies them; inserts are idempotent (`ON CONFLICT DO NOTHING`), so
//! nothing is applied twice. Staff transitions committed in the lost window
//! are the one thing that can be lost (a ticket may show `queued` again);
//! `Synchronous::Full` trades write latency for not losing those either.
//!
//! # Hot path
//!
//! `apply_batch` is what bounds the processors' drain rate: one `IMMEDIATE`
//! transaction per batch, one `SELECT` per batch to find orders already
//! applied (a replay), multi-row inserts of a few cached shapes (`batch`),
//! and the row encoding done before the write is queued (see
//! `rows::NewOrder`).
//! A batch's payments add two statements whatever their number, and none
//! when there are none (`ops::apply_payments`).

mod batch;
mod conn;
mod fleet;
use crate::error;
mod identity;
mod ops;
mod points;
mod reports;
pub(crate) mod rows;
mod webhooks;

use std::path::Path;
use std::time::Duration;

use async_trait::async_trait;
use domain::events::{LiveEvent, LiveEventKind};
use domain::ids::{OrderId, StoreId};
use domain::menu::{Category, Item, Menu, StoreInfo};
use domain::ops::{LoyaltyAccount, PerfSnapshot, PruneStats, Retention, SyncRun};
use domain::order::{self, Action, Order, OrderStatus, TransitionError};
use domain::ports::{
    AccountStore, ApplyBatch, BatchApplied, BoardSnapshot, DeadLetter, EventScope, MenuStore, OpsStore, OrderFilter,
    OrderStore, OrderSummary, PickupSnapshot, PortError, PortResult, StoreBackend, TicketsQuery, TicketsSnapshot,
    system_now_ms,
};
use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params, params_from_iter};

use dbkit::sqlite::Database;
pub(crate) use error::Error;
use rows::NewOrder;

#[cfg(test)]
pub(crate) use conn::open_writer;

/// How long `health()` waits for a read connection and `SELECT 1`.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(2);

/// Orders the nightly cleanup deletes per transaction.
const PRUNE_CHUNK: u32 = 2_000;

/// SQLite's `synchronous` setting for the store's connection. `Normal`
/// (the store's default) may lose the last commits on power loss, which
/// the processors re-apply from the log (module docs).
pub use dbkit::Synchronous;

/// The store's database profile (schema and pragmas) for `dbkit::sqlite`,
/// so tools can open the store's file exactly as its writer does.
pub use conn::PROFILE;

#[derive(Debug, Clone)]
pub struct SqliteStoreOptions {
    pub synchronous: Synchronous,
    /// Read connections in the pool (at least one is opened). Reads beyond
    /// this many wait asynchronously for a free connection.
    pub read_connections: usize,
}

impl Default for SqliteStoreOptions {
    fn default() -> Self {
        Self {
            synchronous: Synchronous::Normal,
            read_connections: 4,
        }
    }
}

pub struct SqliteStore {
    db: Database,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.db.path())
            .finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Open the store at `path`, creating the file and its folder if
    /// needed, switching to WAL and applying pending migrations. Blocking:
    /// call it at startup (or from `spawn_blocking`).
    pub fn open(path: &Path, opts: SqliteStoreOptions) -> Result<Self, PortError> {
        let db = Database::open(path, &conn::PROFILE, opts.synchronous, opts.read_connections)?;
        Ok(Self { db })
    }

    pub fn path(&self) -> &Path {
        self.db.path()
    }

    // Not `async fn`: `#[track_caller]` hands the port method's call site
    // to `dbkit::observe` (the slow-query warning names it).
    #[track_caller]
    fn read<T, F>(&self, f: F) -> impl Future<Output = PortResult<T>> + Send + use<T, F>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, Error> + Send + 'static,
    {
        self.db.read(f)
    }

    #[track_caller]
    fn write<T, F>(&self, f: F) -> impl Future<Output = PortResult<T>> + Send + '_
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, Error> + Send + 'static,
    {
        let run = self.db.writer().run(f);
        async move { Ok(run.await??) }
    }
}

#[async_trait]
impl MenuStore for SqliteStore {
    async fn list_stores(&self) -> PortResult<Vec<StoreInfo>> {
        self.read(|c| {
            let mut stmt = c.prepare_cached("SELECT id, name, time_zone, currency FROM stores ORDER BY id")?;
            let mut rows = stmt.query([])?;
            let mut out = Vec::new();
            while let Some(r) = rows.next()? {
                out.push(rows::store_row(r)?);
            }
            Ok(out)
        })
        .await
    }

    async fn load_menu(&self, store: &StoreId) -> PortResult<Option<Menu>> {
        let store = store.0.clone();
        self.read(move |c| {
            let tx = c.unchecked_transaction()?;
            rows::load_menu(&tx, &store)
        })
        .await
    }

    async fn upsert_menu(&self, menu: &Menu) -> PortResult<()> {
        let menu = menu.clone();
        let encoded = menu
            .items
            .iter()
            .map(|i| {
                Ok((
                    crate::decode::to_json("item sizes", &i.sizes)?,
                    crate::decode::to_json("item modifiers", &i.modifiers)?,
                ))
            })
            .collect::<Result<Vec<_>, Error>>()?;
        self.write(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let s = &menu.store;
            // An upsert, not `INSERT OR REPLACE`: replacing would delete the
            // row and cascade to the categories and items mid-transaction.
            tx.execute(
                "INSERT INTO stores (id, name, time_zone, currency) VALUES (?1, ?2, ?3, ?4) \
                 ON CONFLICT (id) DO UPDATE SET name = excluded.name, time_zone = excluded.time_zone, \
                 currency = excluded.currency",
                params![s.id.0, s.name, s.time_zone, s.currency],
            )?;
            tx.execute("DELETE FROM categories WHERE store_id = ?1", params![s.id.0])?;
            tx.execute("DELETE FROM items WHERE store_id = ?1", params![s.id.0])?;
            {
                let mut cat = tx.prepare_cached(
                    "INSERT INTO categories (store_id, code, name, position) VALUES (?1, ?2, ?3, ?4)",
                )?;
                for c in &menu.categories {
                    cat.execute(params![s.id.0, c.code, c.name, c.position])?;
                }
                let mut item = tx.prepare_cached(
                    "INSERT INTO items (store_id, sku, ord, name, category, station, available, sizes, modifiers) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                )?;
                for (ord, (i, (sizes, modifiers))) in menu.items.iter().zip(&encoded).enumerate() {
                    item.execute(params![
                        s.id.0,
                        i.sku,
                        ord as i64,
                        i.name,
                        i.category,
                        i.station.as_str(),
                        i.available,
                        sizes,
                        modifiers
                    ])?;
                }
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn set_availability(&self, store: &StoreId, sku: &str, available: bool) -> PortResult<bool> {
        let (store, sku) = (store.0.clone(), sku.to_owned());
        self.write(move |c| {
            let mut stmt = c.prepare_cached("UPDATE items SET available = ?1 WHERE store_id = ?2 AND sku = ?3")?;
            Ok(stmt.execute(params![available, store, sku])? > 0)
        })
        .await
    }

    async fn apply_menu_diff(
        &self,
        store: &StoreId,
        categories: &[Category],
        items: &[Item],
        removed: &[String],
    ) -> PortResult<()> {
        let diff = ops::MenuDiffRows::new(store, categories, items, removed)?;
        self.write(move |c| ops::apply_menu_diff(c, &diff)).await
    }
}

#[async_trait]
impl OrderStore for SqliteStore {
    async fn consumer_position(&self, group: &str, partition: u32) -> PortResult<u64> {
        let group = group.to_owned();
        self.read(move |c| {
            let mut stmt =
                c.prepare_cached("SELECT next_offset FROM consumer_positions WHERE grp = ?1 AND log_partition = ?2")?;
            let next: Option<i64> = stmt.query_row(params![group, partition], |r| r.get(0)).optional()?;
            match next {
                None => Ok(0),
                Some(n) => u64::try_from(n).map_err(|_| Error::Invalid(format!("unreadable consumer position: {n}"))),
            }
        })
        .await
    }

    #[tracing::instrument(
        level = "debug",
        skip_all,
        fields(
            group = batch.group,
            partition = batch.partition,
            orders = batch.orders.len(),
            payments = batch.payments.len(),
            dead = batch.dead.len()
        )
    )]
    async fn apply_batch(&self, batch: ApplyBatch<'_>) -> PortResult<BatchApplied> {
        let ApplyBatch {
            group,
            partition,
            next_offset,
            orders,
            payments,
            dead,
            now,
        } = batch;
        let batch = orders
            .iter()
            .map(|d| NewOrder::new(&d.placed, &d.decision, d.trace.as_deref()))
            .collect::<Result<Vec<_>, Error>>()?;
        let dead = dead
            .iter()
            .map(|d| Ok((d.clone(), crate::decode::i64_of("dead letter offset", d.offset)?)))
            .collect::<Result<Vec<_>, Error>>()?;
        let payments = ops::PaymentBatch::new(payments)?;
        let next = crate::decode::i64_of("consumer position", next_offset)?;
        let group = group.to_owned();
        self.write(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let mut applied = batch::insert_orders(&tx, &batch, now)?;
            if let Some(payments) = &payments {
                applied.payments = ops::apply_payments(&tx, payments, now)?;
            }
            {
                let mut stmt = tx.prepare_cached(
                    "INSERT INTO dead_letters (grp, log_partition, log_offset, key, payload, error, attempts, at) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                )?;
                for (d, offset) in &dead {
                    stmt.execute(params![
                        d.group,
                        d.partition,
                        offset,
                        d.key,
                        d.payload,
                        d.error,
                        d.attempts,
                        d.at
                    ])?;
                }
                let mut stmt = tx.prepare_cached(
                    "INSERT INTO consumer_positions (grp, log_partition, next_offset, updated_at) \
                     VALUES (?1, ?2, ?3, ?4) ON CONFLICT (grp, log_partition) DO UPDATE \
                     SET next_offset = excluded.next_offset, updated_at = excluded.updated_at",
                )?;
                stmt.execute(params![group, partition, next, now])?;
            }
            tx.commit()?;
            Ok(applied)
        })
        .await
    }

    async fn get_order(&self, id: OrderId) -> PortResult<Option<Order>> {
        self.read(move |c| {
            let tx = c.unchecked_transaction()?;
            rows::load_order(&tx, &id.to_string())
        })
        .await
    }

    async fn order_trace(&self, id: OrderId) -> PortResult<Option<String>> {
        let id = id.to_string();
        self.read(move |c| {
            Ok(c.prepare_cached("SELECT trace FROM orders WHERE id = ?1")?
                .query_row(params![id], |r| r.get::<_, Option<String>>(0))
                .optional()?
                .flatten())
        })
        .await
    }

    async fn list_orders(&self, filter: &OrderFilter) -> PortResult<Vec<OrderSummary>> {
        // One SQL text per filter shape (32 at most), each cached: the
        // values are always bound, never formatted into the SQL.
        let mut sql = format!("SELECT {} FROM orders", rows::SUMMARY_COLUMNS);
        let mut args: Vec<Value> = Vec::with_capacity(4);
        let mut clauses: Vec<&str> = Vec::with_capacity(3);
        if let Some(store) = &filter.store {
            clauses.push("store_id = ?");
            args.push(Value::Text(store.0.clone()));
        }
        if let Some(status) = filter.status {
            clauses.push("status = ?");
            args.push(Value::Text(status.as_str().to_owned()));
        }
        if let Some(before) = filter.before {
            clauses.push("id < ?");
            args.push(Value::Text(before.to_string()));
        }
        if let Some(code) = &filter.pickup_code {
            clauses.push("pickup_code = ?");
            args.push(Value::Text(code.clone()));
        }
        if let Some(since) = filter.placed_since {
            clauses.push("placed_at >= ?");
            args.push(Value::Integer(since));
        }
        if !clauses.is_empty() {
            sql.push_str(" WHERE ");
            sql.push_str(&clauses.join(" AND "));
        }
        sql.push_str(" ORDER BY id DESC LIMIT ?");
        args.push(Value::Integer(i64::from(filter.limit)));
        self.read(move |c| {
            let mut stmt = c.prepare_cached(&sql)?;
            let mut rows = stmt.query(params_from_iter(args))?;
            let mut out = Vec::new();
            while let Some(r) = rows.next()? {
                out.push(rows::summary_row(r)?);
            }
            Ok(out)
        })
        .await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(order = %id, action = action.name()))]
    async fn transition(
        &self,
        id: OrderId,
        action: Action,
        now: i64,
    ) -> Result<(Order, Vec<LiveEvent>), TransitionError> {
        let result = self
            .db
            .writer()
            .run(move |c| transition(c, id, action, None, now))
            .await?;
        Ok(result?)
    }

    async fn cancel(
        &self,
        id: OrderId,
        reason: Option<&str>,
        now: i64,
    ) -> Result<(Order, Vec<LiveEvent>), TransitionError> {
        let reason = reason.map(str::to_owned);
        let result = self
            .db
            .writer()
            .run(move |c| transition(c, id, Action::Cancel, reason, now))
            .await?;
        Ok(result?)
    }

    async fn events_after(&self, scope: &EventScope, after: i64, limit: u32) -> PortResult<Vec<LiveEvent>> {
        let (sql, key) = match scope {
            EventScope::Order(id) => ("order_id", id.to_string()),
            EventScope::Store(s) => ("store_id", s.0.clone()),
        };
        let sql = format!(
            "{} WHERE e.{sql} = ?1 AND e.id > ?2 ORDER BY e.id LIMIT ?3",
            rows::EVENT_SELECT
        );
        self.read(move |c| {
            let mut stmt = c.prepare_cached(&sql)?;
            let mut rows = stmt.query(params![key, after, limit])?;
            let mut out = Vec::new();
            while let Some(r) = rows.next()? {
                out.push(rows::event_row(r)?);
            }
            Ok(out)
        })
        .await
    }

    async fn open_board(&self, store: &StoreId, placed_since: i64, limit: u32) -> PortResult<BoardSnapshot> {
        // Open orders are few at any time (they finish or expire), so the
        // orders are found through `orders_by_status` and their events
        // through `events_by_order`: nothing scans the store's history.
        let open = OrderStatus::ALL
            .iter()
            .filter(|s| !s.is_terminal())
            .map(|s| format!("'{}'", s.as_str()))
            .collect::<Vec<_>>()
            .join(",");
        let sql = format!(
            "{} WHERE e.order_id IN \
               (SELECT id FROM orders WHERE status IN ({open}) AND store_id = ?1 AND placed_at >= ?2) \
             AND e.id <= ?3 ORDER BY e.id LIMIT ?4",
            rows::EVENT_SELECT
        );
        let store = store.0.clone();
        self.read(move |c| {
            // The cursor first: an event committed after it is left to the
            // live tail, so none is lost between the two reads.
            let cursor: i64 = c
                .prepare_cached("SELECT COALESCE(MAX(id), 0) FROM events WHERE store_id = ?1")?
                .query_row(params![store], |r| r.get(0))?;
            let mut stmt = c.prepare_cached(&sql)?;
            let mut rows = stmt.query(params![store, placed_since, cursor, limit])?;
            let mut events = Vec::new();
            while let Some(r) = rows.next()? {
                events.push(rows::event_row(r)?);
            }
            Ok(BoardSnapshot { cursor, events })
        })
        .await
    }

    async fn tickets(&self, query: &TicketsQuery) -> PortResult<TicketsSnapshot> {
        let q = query.clone();
        self.read(move |c| {
            // One read transaction: a WAL snapshot, taken at the cursor's
            // read, so the orders are exactly as of the cursor.
            let tx = c.unchecked_transaction()?;
            let store = q.store.0.as_str();
            let station = q.station.map(|s| s.as_str());
            let cursor = store_cursor(&tx, store)?;
            let open = ids(
                &tx,
                "SELECT o.id FROM orders o WHERE o.store_id = ?1 AND o.status IN ('confirmed', 'in_progress') \
                 AND o.placed_at >= ?3 AND EXISTS (SELECT 1 FROM order_lines l WHERE l.order_id = o.id \
                 AND (?2 IS NULL OR l.station = ?2) AND l.ticket <> 'done') ORDER BY o.id LIMIT ?4",
                params![store, station, q.placed_since, q.open_limit],
            )?;
            // Through `order_lines_by_done`: only lines done since the cutoff
            // are looked at, whatever the store's history.
            let recent = ids(
                &tx,
                "SELECT l.order_id FROM order_lines l JOIN orders o ON o.id = l.order_id \
                 WHERE l.done_at >= ?3 AND o.store_id = ?1 AND (?2 IS NULL OR l.station = ?2) \
                 AND NOT EXISTS (SELECT 1 FROM order_lines m WHERE m.order_id = l.order_id \
                   AND (?2 IS NULL OR m.station = ?2) AND (m.ticket IS NULL OR m.ticket <> 'done')) \
                 GROUP BY l.order_id ORDER BY MAX(l.done_at) DESC, l.order_id DESC LIMIT ?4",
                params![store, station, q.done_since, q.recent_limit],
            )?;
            // Both lists' orders with their lines in two statements,
            // whatever their number (it was two per order: the N+1 guard
            // found it).
            let wanted: Vec<String> = open.iter().chain(&recent).cloned().collect();
            let mut loaded = rows::load_orders(&tx, &wanted)?;
            if loaded.len() != wanted.len() {
                return Err(Error::Invalid("an order vanished inside a read transaction".into()));
            }
            let recent_orders = loaded.split_off(open.len());
            Ok(TicketsSnapshot {
                cursor,
                open: loaded,
                recent: recent_orders,
            })
        })
        .await
    }

    async fn pickup_board(&self, store: &StoreId, placed_since: i64, limit: u32) -> PortResult<PickupSnapshot> {
        let store = store.0.clone();
        self.read(move |c| {
            let tx = c.unchecked_transaction()?;
            let cursor = store_cursor(&tx, &store)?;
            let mut stmt = tx.prepare_cached(&format!(
                "SELECT {} FROM orders WHERE store_id = ?1 AND status IN ('confirmed', 'in_progress', 'ready') \
                 AND placed_at >= ?2 AND pickup_code IS NOT NULL ORDER BY id LIMIT ?3",
                rows::ORDER_COLUMNS
            ))?;
            let mut found = stmt.query(params![store, placed_since, limit])?;
            let mut orders = Vec::new();
            while let Some(r) = found.next()? {
                orders.push(rows::order_row(r)?);
            }
            Ok(PickupSnapshot { cursor, orders })
        })
        .await
    }

    async fn dead_letters(&self, limit: u32) -> PortResult<Vec<DeadLetter>> {
        self.read(move |c| {
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {} FROM dead_letters ORDER BY id DESC LIMIT ?1",
                rows::DEAD_LETTER_COLUMNS
            ))?;
            let mut rows = stmt.query(params![limit])?;
            let mut out = Vec::new();
            while let Some(r) = rows.next()? {
                out.push(rows::dead_letter_row(r)?);
            }
            Ok(out)
        })
        .await
    }

    async fn remove_dead_letter(&self, group: &str, partition: u32, offset: u64) -> PortResult<bool> {
        let group = group.to_owned();
        self.write(move |c| {
            let mut stmt =
                c.prepare_cached("DELETE FROM dead_letters WHERE grp = ?1 AND log_partition = ?2 AND log_offset = ?3")?;
            Ok(stmt.execute(params![group, partition, offset as i64])? > 0)
        })
        .await
    }

    async fn expire_ready(&self, ready_before: i64, limit: u32, now: i64) -> PortResult<Vec<LiveEvent>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        self.write(move |c| ops::expire_ready(c, ready_before, limit, now))
            .await
    }

    async fn order_counts(&self) -> PortResult<Vec<(OrderStatus, u64)>> {
        self.read(ops::order_counts).await
    }
}

#[async_trait]
impl AccountStore for SqliteStore {
    async fn upsert_accounts(&self, accounts: &[LoyaltyAccount], cursor: Option<&str>) -> PortResult<u64> {
        if accounts.is_empty() && cursor.is_none() {
            return Ok(0);
        }
        let accounts: Vec<LoyaltyAccount> = crate::bulk::unique_accounts(accounts).into_iter().cloned().collect();
        let cursor = cursor.map(str::to_owned);
        let now = system_now_ms();
        self.write(move |c| ops::upsert_accounts(c, &accounts, cursor.as_deref(), now))
            .await
    }

    async fn loyalty_account(&self, id: &str) -> PortResult<Option<LoyaltyAccount>> {
        let id = id.to_owned();
        self.read(move |c| ops::loyalty_account(c, &id)).await
    }

    async fn count_accounts(&self) -> PortResult<u64> {
        self.read(|c| {
            let n: i64 = c
                .prepare_cached("SELECT count(*) FROM loyalty_accounts")?
                .query_row([], |r| r.get(0))?;
            Ok(crate::decode::u64_of("account count", n)?)
        })
        .await
    }

    async fn sync_cursor(&self, kind: &str) -> PortResult<Option<String>> {
        let kind = kind.to_owned();
        self.read(move |c| {
            let cursor: Option<Option<String>> = c
                .prepare_cached("SELECT cursor FROM sync_state WHERE kind = ?1")?
                .query_row(params![kind], |r| r.get(0))
                .optional()?;
            Ok(cursor.flatten())
        })
        .await
    }

    async fn set_sync_cursor(&self, kind: &str, cursor: Option<&str>) -> PortResult<()> {
        let (kind, cursor) = (kind.to_owned(), cursor.map(str::to_owned));
        let now = system_now_ms();
        self.write(move |c| ops::set_sync_cursor(c, &kind, cursor.as_deref(), now))
            .await
    }
}

#[async_trait]
impl OpsStore for SqliteStore {
    async fn record_sync_run(&self, run: &SyncRun) -> PortResult<()> {
        let run = run.clone();
        self.write(move |c| ops::record_sync_run(c, &run)).await
    }

    async fn sync_runs(&self, kind: Option<&str>, limit: u32) -> PortResult<Vec<SyncRun>> {
        let kind = kind.map(str::to_owned);
        self.read(move |c| ops::sync_runs(c, kind.as_deref(), limit)).await
    }

    async fn record_snapshot(&self, snapshot: &PerfSnapshot) -> PortResult<()> {
        let metrics = crate::decode::to_json("snapshot metrics", &snapshot.metrics)?;
        let snapshot = snapshot.clone();
        self.write(move |c| ops::record_snapshot(c, &snapshot, &metrics)).await
    }

    async fn snapshots(&self, limit: u32) -> PortResult<Vec<PerfSnapshot>> {
        self.read(move |c| ops::snapshots(c, limit)).await
    }

    /// Orders go in chunks of `PRUNE_CHUNK`, each its own write: the writer
    /// serves the processors and staff in between, so a large nightly
    /// cleanup never holds the write lock for long.
    async fn prune(&self, retention: &Retention) -> PortResult<PruneStats> {
        let Retention {
            orders_before,
            records_before,
        } = *retention;
        let mut orders = 0;
        loop {
            let n = self
                .write(move |c| ops::prune_orders(c, orders_before, PRUNE_CHUNK))
                .await?;
            orders += n;
            if n < u64::from(PRUNE_CHUNK) {
                break;
            }
        }
        let records = self
            .write(move |c| ops::prune_records(c, records_before, orders_before))
            .await?;
        Ok(PruneStats { orders, records })
    }

    async fn maintain(&self) -> PortResult<String> {
        self.write(|c| ops::maintain(c)).await
    }
}

#[async_trait]
impl StoreBackend for SqliteStore {
    async fn health(&self) -> PortResult<()> {
        self.db.health(HEALTH_TIMEOUT).await
    }
}

/// The id of the store's newest event (0 if none): where a snapshot's live
/// tail starts.
fn store_cursor(c: &Connection, store: &str) -> Result<i64, Error> {
    Ok(
        c.prepare_cached("SELECT COALESCE(MAX(id), 0) FROM events WHERE store_id = ?1")?
            .query_row(params![store], |r| r.get(0))?,
    )
}

/// The first column of every row of `sql`, as text (order ids).
fn ids(c: &Connection, sql: &str, args: impl rusqlite::Params) -> Result<Vec<String>, Error> {
    let mut stmt = c.prepare_cached(sql)?;
    let mut found = stmt.query(args)?;
    let mut out = Vec::new();
    while let Some(r) = found.next()? {
        out.push(r.get(0)?);
    }
    Ok(out)
}

struct EventDraft<'a> {
    kind: LiveEventKind,
    order: OrderId,
    order_text: &'a str,
    store: &'a StoreId,
    /// The order's status after the change.
    status: OrderStatus,
    /// `(line, station, ticket)` for a ticket event.
    ticket: Option<(u32, domain::Station, domain::TicketStatus)>,
    at: i64,
    /// The order's pickup code and name, carried on the returned event (the
    /// table reads them back from the order).
    pickup_code: Option<&'a str>,
    name: Option<&'a str>,
}

fn insert_event(c: &Connection, e: EventDraft<'_>) -> Result<LiveEvent, Error> {
    let mut stmt = c.prepare_cached(
        "INSERT INTO events (order_id, store_id, kind, status, line, station, ticket, at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?;
    let (line, station, ticket) = e.ticket_columns();
    stmt.execute(params![
        e.order_text,
        e.store.0,
        e.kind.as_str(),
        e.status.as_str(),
        line,
        station.map(|s| s.as_str()),
        ticket.map(|t| t.as_str()),
        e.at,
    ])?;
    // The connection is ours alone (the writer thread), so the last rowid
    // is this insert's.
    Ok(e.event(c.last_insert_rowid()))
}

impl EventDraft<'_> {
    /// `line`, `station` and `ticket` as the row and the event hold them.
    fn ticket_columns(&self) -> (Option<u32>, Option<domain::Station>, Option<domain::TicketStatus>) {
        match self.ticket {
            Some((l, s, t)) => (Some(l), Some(s), Some(t)),
            None => (None, None, None),
        }
    }

    /// The event as published, once the row has its id.
    fn event(&self, id: i64) -> LiveEvent {
        let (line, station, ticket) = self.ticket_columns();
        LiveEvent {
            id,
            kind: self.kind,
            order_id: self.order,
            store: self.store.clone(),
            status: self.status,
            line,
            station,
            ticket,
            at: self.at,
            pickup_code: self.pickup_code.map(str::to_owned),
            name: self.name.map(str::to_owned),
        }
    }
}

/// One lifecycle action in one `IMMEDIATE` transaction: taking the write
/// lock up front means the order read here cannot change before it is
/// written back, whoever else (another process) shares the file. The rules
/// are the domain's (`order::plan`), and the new state is computed by
/// `order::apply`, so this only persists what it says.
fn transition(
    c: &mut Connection,
    id: OrderId,
    action: Action,
    reason: Option<String>,
    now: i64,
) -> Result<(Order, Vec<LiveEvent>), Error> {
    let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let id_text = id.to_string();
    let mut order = rows::load_order(&tx, &id_text)?.ok_or(Error::Rule(TransitionError::OrderNotFound(id)))?;
    let plan = order::plan(&order, action).map_err(Error::Rule)?;
    order::apply(&mut order, &plan, now);
    if reason.is_some() {
        order.cancel_reason = reason;
        tx.prepare_cached("UPDATE orders SET cancel_reason = ?1 WHERE id = ?2")?
            .execute(params![order.cancel_reason, id_text])?;
    }
    let mut events = Vec::with_capacity(2);
    if let Some((line, ticket)) = plan.ticket {
        let station = order
            .lines
            .iter()
            .find(|l| l.line == line)
            .map(|l| l.station)
            .ok_or(Error::Rule(TransitionError::LineNotFound(line)))?;
        // A step forward stamps the line's time of it; an undo clears the
        // time of the step it takes back (`line_times`).
        let (started, done) = crate::lines::line_times(ticket, plan.reverts);
        let mut stmt = tx.prepare_cached(
            "UPDATE order_lines SET ticket = ?1, \
             started_at = CASE WHEN ?4 THEN ?5 WHEN ?6 THEN NULL ELSE started_at END, \
             done_at = CASE WHEN ?7 THEN ?5 ELSE NULL END WHERE order_id = ?2 AND line = ?3",
        )?;
        stmt.execute(params![
            ticket.as_str(),
            id_text,
            line,
            started == crate::lines::LineTime::Stamp,
            now,
            started == crate::lines::LineTime::Clear,
            done == crate::lines::LineTime::Stamp,
        ])?;
        events.push(insert_event(
            &tx,
            EventDraft {
                kind: LiveEventKind::Ticket,
                order: id,
                order_text: &id_text,
                store: &order.store,
                status: order.status,
                ticket: Some((line, station, ticket)),
                at: now,
                pickup_code: order.pickup_code.as_deref(),
                name: order.name.as_deref(),
            },
        )?);
    }
    if let Some(status) = plan.status {
        // Every timestamp is written back from the order `order::stamp`
        // updated, rather than picking the column here, so which transition
        // sets which column is decided in exactly one place.
        let at = &order.at;
        let mut stmt = tx.prepare_cached(
            "UPDATE orders SET status = ?1, confirmed_at = ?2, rejected_at = ?3, started_at = ?4, ready_at = ?5, \
             picked_up_at = ?6, cancelled_at = ?7, expired_at = ?8 WHERE id = ?9",
        )?;
        stmt.execute(params![
            status.as_str(),
            at.confirmed_at,
            at.rejected_at,
            at.started_at,
            at.ready_at,
            at.picked_up_at,
            at.cancelled_at,
            at.expired_at,
            id_text,
        ])?;
        events.push(insert_event(
            &tx,
            EventDraft {
                kind: LiveEventKind::Status,
                order: id,
                order_text: &id_text,
                store: &order.store,
                status,
                ticket: None,
                at: now,
                pickup_code: order.pickup_code.as_deref(),
                name: order.name.as_deref(),
            },
        )?);
    }
    tx.commit()?;
    Ok((order, events))
}

/// Every row `sql` yields for `args`, decoded by `row` (the identity and
/// webhook modules' list reads).
fn all<T>(
    c: &Connection,
    sql: &str,
    args: impl rusqlite::Params,
    row: fn(&rusqlite::Row<'_>) -> Result<T, Error>,
) -> Result<Vec<T>, Error> {
    let mut stmt = c.prepare_cached(sql)?;
    let mut rows = stmt.query(args)?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        out.push(row(r)?);
    }
    Ok(out)
}
