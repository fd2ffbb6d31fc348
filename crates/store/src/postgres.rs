//! `PgStore`: the scale-mode backend of the `Store` port, on PostgreSQL
//! through sqlx's async pool (ADR 0002: sqlx stays the library where the
//! network round-trip, not the per-statement cost, dominates).
//!
//! # Round-trips
//!
//! Every write is one transaction and, on the hot path, one statement per
//! table: `apply_batch` binds each column of the batch as an array and
//! inserts with `INSERT ... SELECT FROM UNNEST(...)`. Replays are detected
//! by `ON CONFLICT (id) DO NOTHING RETURNING id`: only the returned (new)
//! orders get lines and events, so a replayed batch writes nothing but the
//! consumer position. A batch's payments are one more statement (recorded
//! and applied together, `ops::apply_payments`), none when there are none.
//! `COPY` would be faster for very large batches but
//! cannot express `ON CONFLICT` (it would need a temporary staging table
//! and a second statement); with batches of at most a few hundred orders
//! the difference is to be measured before it is worth the complexity.
//!
//! # Event ids follow commit order, per store
//!
//! Live-event ids double as SSE `Last-Event-ID`, so a reader that has seen
//! id N must never later find a smaller id committed in its scope. A bare
//! identity column does not promise that under concurrency (A draws 10, B
//! draws 11 and commits first). SQLite gets it for free from its single
//! writer; here every transaction takes a transaction-scoped advisory lock
//! per store it writes events for, *before* drawing ids, and holds it to
//! commit. Scopes (`EventScope`) are a store or an order of one store, so
//! per-store order is all readers need, and writers to different stores
//! never wait for each other. Locks are taken in key order, so two batches
//! spanning the same stores cannot deadlock. The events insert is the last
//! statement before `COMMIT` to keep the lock short.
//!
//! # Reads
//!
//! Reads that tolerate replica lag (`list_orders`, `events_after`,
//! `list_stores`, `load_menu`) go to the replica pool when one is
//! configured; `get_order`, `consumer_position` and `dead_letters` read the
//! primary (read-your-writes, and a processor must resume from where it
//! really committed).

use crate::error;
mod fleet;
mod identity;
mod ops;
mod points;
mod reports;
mod rows;
mod webhooks;

use std::collections::HashSet;
use std::time::Duration;

use async_trait::async_trait;
use dbkit::observe::observed;
use dbkit::postgres::Watched;
use domain::events::{LiveEvent, LiveEventKind, OrderPlacedV1};
use domain::ids::{OrderId, StoreId};
use domain::menu::{Category, Item, Menu, StoreInfo};
use domain::ops::{LoyaltyAccount, PerfSnapshot, PruneStats, Retention, SyncRun};
use domain::order::{self, Action, Order, OrderStatus, TicketStatus, TransitionError};
use domain::ports::{
    AccountStore, ApplyBatch, BatchApplied, BoardSnapshot, DeadLetter, Decided, Decision, EventScope, MenuStore,
    OpsStore, OrderFilter, OrderStore, OrderSummary, PaymentsApplied, PickupSnapshot, PortError, PortResult,
    StoreBackend, TicketsQuery, TicketsSnapshot, system_now_ms,
};
use sqlx::postgres::PgConnection;
use sqlx::{AssertSqlSafe, QueryBuilder, Row};
use uuid::Uuid;

pub(crate) use error::Error;

/// The schema, one embedded file per version, applied in order; the
/// `schema_migrations` table records which have run.
const MIGRATIONS: dbkit::postgres::Migrations = dbkit::postgres::Migrations {
    label: "database",
    ledger: "schema_migrations",
    steps: &[
        include_str!("../migrations/postgres/0001_init.sql"),
        include_str!("../migrations/postgres/0002_operations.sql"),
        include_str!("../migrations/postgres/0003_identity.sql"),
        include_str!("../migrations/postgres/0004_floor.sql"),
        include_str!("../migrations/postgres/0005_fleet_and_points.sql"),
        include_str!("../migrations/postgres/0006_webhooks.sql"),
        include_str!("../migrations/postgres/0007_trace.sql"),
    ],
};

/// First half of the two-`int4` advisory lock keys that order event ids
/// per store (module docs); the second half is `hashtext(store_id)`. The
/// two-key space cannot collide with the one-key space of
/// `dbkit::postgres::MIGRATION_LOCK`.
const EVENTS_LOCK_SPACE: i32 = 0x7268;

/// How long `health()` waits for `SELECT 1`.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(2);

/// Payment status of a freshly applied order; payments move it later.
const UNPAID: &str = "unpaid";

/// Orders the nightly cleanup deletes per statement.
const PRUNE_CHUNK: u32 = 2_000;

#[derive(Debug, Clone)]
pub struct PgStoreOptions {
    /// Connections per pool (primary and, if configured, replica).
    pub max_connections: u32,
    /// How long a call waits for a free connection before `Unavailable`.
    pub acquire_timeout: Duration,
    /// Server-side limit per statement (`SET statement_timeout`); a
    /// statement cancelled by it is `Unavailable`.
    pub statement_timeout: Duration,
    /// Idle connections beyond this age are closed.
    pub idle_timeout: Duration,
    /// A hot standby for the reads that tolerate lag (module docs).
    pub read_replica_url: Option<String>,
    /// Schema for every table (`search_path`), created if missing. Tests
    /// use one per case for isolation. Letters, digits and `_` only.
    pub schema: Option<String>,
}

impl Default for PgStoreOptions {
    fn default() -> Self {
        Self {
            max_connections: 16,
            acquire_timeout: Duration::from_secs(2),
            statement_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(600),
            read_replica_url: None,
            schema: None,
        }
    }
}

pub struct PgStore {
    primary: Watched,
    replica: Option<Watched>,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("replica", &self.replica.is_some())
            .finish_non_exhaustive()
    }
}

impl PgStore {
    /// Open the pools (one connection each is made now, so a wrong URL or a
    /// server that is down fails here) and create the schema if one is
    /// configured and missing. Does not migrate: call `migrate`.
    pub async fn connect(url: &str, opts: PgStoreOptions) -> Result<Self, PortError> {
        let settings = dbkit::pool_settings!(opts);
        let primary = Watched::new(dbkit::postgres::connect(url, &settings).await?, "store");
        let replica = match &opts.read_replica_url {
            Some(url) => Some(Watched::new(
                dbkit::postgres::pool(url, &settings).await?,
                "store replica",
            )),
            None => None,
        };
        Ok(Self { primary, replica })
    }

    /// Apply the migrations the database has not seen yet, all in one
    /// transaction under an advisory lock, so concurrent callers (several
    /// processes starting at once) queue up and the later ones find nothing
    /// left to do. A schema newer than this binary is refused (`Invalid`).
    pub async fn migrate(&self) -> Result<(), PortError> {
        dbkit::postgres::migrate(self.primary.raw(), &MIGRATIONS).await
    }

    /// The pool for reads that tolerate replica lag.
    fn reader(&self) -> &Watched {
        self.replica.as_ref().unwrap_or(&self.primary)
    }
}

// ------------------------------------------------------------------- Store

#[async_trait]
impl MenuStore for PgStore {
    async fn list_stores(&self) -> PortResult<Vec<StoreInfo>> {
        let rows = sqlx::query("SELECT id, name, time_zone, currency FROM stores ORDER BY id")
            .fetch_all(observed(self.reader()))
            .await
            .map_err(Error::from)?;
        Ok(rows.iter().map(rows::store_row).collect::<Result<_, _>>()?)
    }

    async fn load_menu(&self, store: &StoreId) -> PortResult<Option<Menu>> {
        Ok(load_menu(self.reader(), store).await?)
    }

    async fn upsert_menu(&self, menu: &Menu) -> PortResult<()> {
        Ok(upsert_menu(&self.primary, menu).await?)
    }

    async fn set_availability(&self, store: &StoreId, sku: &str, available: bool) -> PortResult<bool> {
        let done = sqlx::query("UPDATE items SET available = $1 WHERE store_id = $2 AND sku = $3")
            .bind(available)
            .bind(&store.0)
            .bind(sku)
            .execute(observed(&self.primary))
            .await
            .map_err(Error::from)?;
        Ok(done.rows_affected() > 0)
    }

    async fn apply_menu_diff(
        &self,
        store: &StoreId,
        categories: &[Category],
        items: &[Item],
        removed: &[String],
    ) -> PortResult<()> {
        Ok(ops::apply_menu_diff(&self.primary, store, categories, items, removed).await?)
    }
}

#[async_trait]
impl OrderStore for PgStore {
    async fn consumer_position(&self, group: &str, partition: u32) -> PortResult<u64> {
        let next: Option<i64> =
            sqlx::query_scalar("SELECT next_offset FROM consumer_positions WHERE grp = $1 AND log_partition = $2")
                .bind(group)
                .bind(i64::from(partition))
                .fetch_optional(observed(&self.primary))
                .await
                .map_err(Error::from)?;
        match next {
            None => Ok(0),
            Some(n) => u64::try_from(n).map_err(|_| PortError::Invalid(format!("unreadable consumer position: {n}"))),
        }
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
        Ok(apply_batch(&self.primary, batch).await?)
    }

    async fn order_trace(&self, id: OrderId) -> PortResult<Option<String>> {
        let found: Option<Option<String>> = sqlx::query_scalar("SELECT trace FROM orders WHERE id = $1")
            .bind(id.0)
            .fetch_optional(&self.primary)
            .await
            .map_err(Error::from)?;
        Ok(found.flatten())
    }

    async fn get_order(&self, id: OrderId) -> PortResult<Option<Order>> {
        // One statement, so the order and its lines are one snapshot without
        // the two extra round-trips of an explicit transaction.
        let sql = format!(
            "SELECT {}, {} FROM orders o LEFT JOIN order_lines l ON l.order_id = o.id WHERE o.id = $1 ORDER BY l.line",
            prefixed("o", rows::ORDER_COLUMNS),
            prefixed("l", rows::LINE_COLUMNS),
        );
        let found = sqlx::query(AssertSqlSafe(sql))
            .bind(id.0)
            .fetch_all(observed(&self.primary))
            .await
            .map_err(Error::from)?;
        let Some(first) = found.first() else {
            return Ok(None);
        };
        let mut order = rows::order_row(first)?;
        for r in &found {
            // A LEFT JOIN row with a NULL line: the order has no lines.
            if r.try_get::<Option<i32>, _>(ORDER_WIDTH).map_err(Error::from)?.is_some() {
                order.lines.push(rows::line_row_at(r, ORDER_WIDTH)?);
            }
        }
        Ok(Some(order))
    }

    async fn list_orders(&self, filter: &OrderFilter) -> PortResult<Vec<OrderSummary>> {
        // Values are always bound, never formatted into the SQL; there are
        // 32 shapes at most, each prepared once per connection.
        let mut q = QueryBuilder::new(format!("SELECT {} FROM orders", rows::SUMMARY_COLUMNS));
        let mut sep = " WHERE ";
        if let Some(store) = &filter.store {
            q.push(sep).push("store_id = ").push_bind(store.0.clone());
            sep = " AND ";
        }
        if let Some(status) = filter.status {
            q.push(sep).push("status = ").push_bind(status.as_str());
            sep = " AND ";
        }
        if let Some(before) = filter.before {
            q.push(sep).push("id < ").push_bind(before.0);
            sep = " AND ";
        }
        if let Some(code) = &filter.pickup_code {
            q.push(sep).push("pickup_code = ").push_bind(code.clone());
            sep = " AND ";
        }
        if let Some(since) = filter.placed_since {
            q.push(sep).push("placed_at >= ").push_bind(since);
        }
        q.push(" ORDER BY id DESC LIMIT ").push_bind(i64::from(filter.limit));
        let found = q
            .build()
            .fetch_all(observed(self.reader()))
            .await
            .map_err(Error::from)?;
        Ok(found.iter().map(rows::summary_row).collect::<Result<_, _>>()?)
    }

    #[tracing::instrument(level = "debug", skip_all, fields(order = %id, action = action.name()))]
    async fn transition(
        &self,
        id: OrderId,
        action: Action,
        now: i64,
    ) -> Result<(Order, Vec<LiveEvent>), TransitionError> {
        Ok(transition(&self.primary, id, action, None, now).await?)
    }

    async fn cancel(
        &self,
        id: OrderId,
        reason: Option<&str>,
        now: i64,
    ) -> Result<(Order, Vec<LiveEvent>), TransitionError> {
        Ok(transition(&self.primary, id, Action::Cancel, reason, now).await?)
    }

    async fn events_after(&self, scope: &EventScope, after: i64, limit: u32) -> PortResult<Vec<LiveEvent>> {
        let (column, key) = match scope {
            EventScope::Order(id) => ("order_id", Key::Order(id.0)),
            EventScope::Store(s) => ("store_id", Key::Store(s.0.clone())),
        };
        let sql = format!(
            "{} WHERE e.{column} = $1 AND e.id > $2 ORDER BY e.id LIMIT $3",
            rows::EVENT_SELECT
        );
        let q = sqlx::query(AssertSqlSafe(sql));
        let q = match key {
            Key::Order(id) => q.bind(id),
            Key::Store(s) => q.bind(s),
        };
        let found = q
            .bind(after)
            .bind(i64::from(limit))
            .fetch_all(observed(self.reader()))
            .await
            .map_err(Error::from)?;
        Ok(found.iter().map(rows::event_row).collect::<Result<_, _>>()?)
    }

    async fn open_board(&self, store: &StoreId, placed_since: i64, limit: u32) -> PortResult<BoardSnapshot> {
        // As in SQLite: the cursor first, then the open orders through
        // `orders_by_status` and their events through `events_by_order`.
        let open: Vec<&str> = OrderStatus::ALL
            .iter()
            .filter(|s| !s.is_terminal())
            .map(|s| s.as_str())
            .collect();
        let cursor: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(id), 0)::bigint FROM events WHERE store_id = $1")
            .bind(&store.0)
            .fetch_one(observed(self.reader()))
            .await
            .map_err(Error::from)?;
        let sql = format!(
            "{} WHERE e.order_id IN \
               (SELECT id FROM orders WHERE status = ANY($1) AND store_id = $2 AND placed_at >= $3) \
             AND e.id <= $4 ORDER BY e.id LIMIT $5",
            rows::EVENT_SELECT
        );
        let found = sqlx::query(AssertSqlSafe(sql))
            .bind(&open)
            .bind(&store.0)
            .bind(placed_since)
            .bind(cursor)
            .bind(i64::from(limit))
            .fetch_all(observed(self.reader()))
            .await
            .map_err(Error::from)?;
        let events = found.iter().map(rows::event_row).collect::<Result<_, _>>()?;
        Ok(BoardSnapshot { cursor, events })
    }

    async fn tickets(&self, query: &TicketsQuery) -> PortResult<TicketsSnapshot> {
        Ok(tickets(self.reader(), query).await?)
    }

    async fn pickup_board(&self, store: &StoreId, placed_since: i64, limit: u32) -> PortResult<PickupSnapshot> {
        // The cursor first, then the orders (as `open_board`): a change in
        // between is in the tail after the cursor.
        let cursor = store_cursor(self.reader(), store).await?;
        let found = sqlx::query(AssertSqlSafe(format!(
            "SELECT {} FROM orders WHERE store_id = $1 AND status IN ('confirmed', 'in_progress', 'ready') \
             AND placed_at >= $2 AND pickup_code IS NOT NULL ORDER BY id LIMIT $3",
            rows::ORDER_COLUMNS
        )))
        .bind(&store.0)
        .bind(placed_since)
        .bind(i64::from(limit))
        .fetch_all(observed(self.reader()))
        .await
        .map_err(Error::from)?;
        let orders = found.iter().map(rows::order_row).collect::<Result<_, _>>()?;
        Ok(PickupSnapshot { cursor, orders })
    }

    async fn dead_letters(&self, limit: u32) -> PortResult<Vec<DeadLetter>> {
        let sql = format!(
            "SELECT {} FROM dead_letters ORDER BY id DESC LIMIT $1",
            rows::DEAD_LETTER_COLUMNS
        );
        let found = sqlx::query(AssertSqlSafe(sql))
            .bind(i64::from(limit))
            .fetch_all(observed(&self.primary))
            .await
            .map_err(Error::from)?;
        Ok(found.iter().map(rows::dead_letter_row).collect::<Result<_, _>>()?)
    }

    async fn remove_dead_letter(&self, group: &str, partition: u32, offset: u64) -> PortResult<bool> {
        let done = sqlx::query("DELETE FROM dead_letters WHERE grp = $1 AND log_partition = $2 AND log_offset = $3")
            .bind(group)
            .bind(i64::from(partition))
            .bind(offset as i64)
            .execute(observed(&self.primary))
            .await
            .map_err(Error::from)?;
        Ok(done.rows_affected() > 0)
    }

    async fn expire_ready(&self, ready_before: i64, limit: u32, now: i64) -> PortResult<Vec<LiveEvent>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        Ok(ops::expire_ready(&self.primary, ready_before, limit, now).await?)
    }

    async fn order_counts(&self) -> PortResult<Vec<(OrderStatus, u64)>> {
        Ok(ops::order_counts(self.reader()).await?)
    }
}

#[async_trait]
impl AccountStore for PgStore {
    async fn upsert_accounts(&self, accounts: &[LoyaltyAccount], cursor: Option<&str>) -> PortResult<u64> {
        Ok(ops::upsert_accounts(&self.primary, accounts, cursor, system_now_ms()).await?)
    }

    async fn loyalty_account(&self, id: &str) -> PortResult<Option<LoyaltyAccount>> {
        Ok(ops::loyalty_account(&self.primary, id).await?)
    }

    async fn count_accounts(&self) -> PortResult<u64> {
        Ok(ops::count_accounts(&self.primary).await?)
    }

    /// From the primary: a sync resumes from where it really committed.
    async fn sync_cursor(&self, kind: &str) -> PortResult<Option<String>> {
        Ok(ops::sync_cursor(&self.primary, kind).await?)
    }

    async fn set_sync_cursor(&self, kind: &str, cursor: Option<&str>) -> PortResult<()> {
        Ok(ops::set_sync_cursor(&self.primary, kind, cursor, system_now_ms()).await?)
    }
}

#[async_trait]
impl OpsStore for PgStore {
    async fn record_sync_run(&self, run: &SyncRun) -> PortResult<()> {
        Ok(ops::record_sync_run(&self.primary, run).await?)
    }

    async fn sync_runs(&self, kind: Option<&str>, limit: u32) -> PortResult<Vec<SyncRun>> {
        Ok(ops::sync_runs(self.reader(), kind, limit).await?)
    }

    async fn record_snapshot(&self, snapshot: &PerfSnapshot) -> PortResult<()> {
        Ok(ops::record_snapshot(&self.primary, snapshot).await?)
    }

    async fn snapshots(&self, limit: u32) -> PortResult<Vec<PerfSnapshot>> {
        Ok(ops::snapshots(self.reader(), limit).await?)
    }

    /// Orders go in chunks of `PRUNE_CHUNK`, one statement (and
    /// transaction) each, so no single statement nears the timeout and row
    /// locks are held briefly.
    async fn prune(&self, retention: &Retention) -> PortResult<PruneStats> {
        let mut orders = 0;
        loop {
            let n = ops::prune_orders(&self.primary, retention.orders_before, PRUNE_CHUNK).await?;
            orders += n;
            if n < u64::from(PRUNE_CHUNK) {
                break;
            }
        }
        let records = ops::prune_records(&self.primary, retention.records_before, retention.orders_before).await?;
        Ok(PruneStats { orders, records })
    }

    async fn maintain(&self) -> PortResult<String> {
        Ok(ops::maintain(&self.primary).await?)
    }
}

#[async_trait]
impl StoreBackend for PgStore {
    async fn health(&self) -> PortResult<()> {
        for pool in std::iter::once(&self.primary).chain(self.replica.as_ref()) {
            let probe = sqlx::query_scalar::<_, i32>("SELECT 1").fetch_one(observed(pool));
            match tokio::time::timeout(HEALTH_TIMEOUT, probe).await {
                Ok(Ok(1)) => {}
                Ok(Ok(other)) => return Err(PortError::Invalid(format!("SELECT 1 returned {other}"))),
                Ok(Err(e)) => return Err(Error::from(e).into()),
                Err(_) => {
                    return Err(PortError::Unavailable(format!(
                        "no answer from PostgreSQL within {HEALTH_TIMEOUT:?}"
                    )));
                }
            }
        }
        Ok(())
    }
}

/// The id of the store's newest event (0 if none).
async fn store_cursor(pool: &Watched, store: &StoreId) -> Result<i64, Error> {
    Ok(
        sqlx::query_scalar("SELECT COALESCE(MAX(id), 0)::bigint FROM events WHERE store_id = $1")
            .bind(&store.0)
            .fetch_one(observed(pool))
            .await?,
    )
}

/// A station board's snapshot: the cursor, then the ids of the open and the
/// recently finished orders, then those orders with their lines in one
/// joined statement (never a query per order).
async fn tickets(pool: &Watched, q: &TicketsQuery) -> Result<TicketsSnapshot, Error> {
    let cursor = store_cursor(pool, &q.store).await?;
    let station = q.station.map(|s| s.as_str());
    let open: Vec<Uuid> = sqlx::query_scalar(
        "SELECT o.id FROM orders o WHERE o.store_id = $1 AND o.status IN ('confirmed', 'in_progress') \
         AND o.placed_at >= $3 AND EXISTS (SELECT 1 FROM order_lines l WHERE l.order_id = o.id \
         AND ($2::text IS NULL OR l.station = $2) AND l.ticket <> 'done') ORDER BY o.id LIMIT $4",
    )
    .bind(&q.store.0)
    .bind(station)
    .bind(q.placed_since)
    .bind(i64::from(q.open_limit))
    .fetch_all(observed(pool))
    .await?;
    let recent: Vec<Uuid> = sqlx::query_scalar(
        "SELECT l.order_id FROM order_lines l JOIN orders o ON o.id = l.order_id \
         WHERE l.done_at >= $3 AND o.store_id = $1 AND ($2::text IS NULL OR l.station = $2) \
         AND NOT EXISTS (SELECT 1 FROM order_lines m WHERE m.order_id = l.order_id \
           AND ($2::text IS NULL OR m.station = $2) AND (m.ticket IS NULL OR m.ticket <> 'done')) \
         GROUP BY l.order_id ORDER BY MAX(l.done_at) DESC, l.order_id DESC LIMIT $4",
    )
    .bind(&q.store.0)
    .bind(station)
    .bind(q.done_since)
    .bind(i64::from(q.recent_limit))
    .fetch_all(observed(pool))
    .await?;
    let mut all = load_orders(pool, open.iter().chain(&recent).copied().collect()).await?;
    let mut take = |ids: &[Uuid]| ids.iter().filter_map(|id| all.remove(id)).collect::<Vec<_>>();
    let open = take(&open);
    let recent = take(&recent);
    Ok(TicketsSnapshot { cursor, open, recent })
}

/// Orders with their lines by id, in one statement.
async fn load_orders(pool: &Watched, ids: Vec<Uuid>) -> Result<std::collections::HashMap<Uuid, Order>, Error> {
    let mut out: std::collections::HashMap<Uuid, Order> = std::collections::HashMap::with_capacity(ids.len());
    if ids.is_empty() {
        return Ok(out);
    }
    let sql = format!(
        "SELECT {}, {} FROM orders o LEFT JOIN order_lines l ON l.order_id = o.id WHERE o.id = ANY($1) \
         ORDER BY o.id, l.line",
        prefixed("o", rows::ORDER_COLUMNS),
        prefixed("l", rows::LINE_COLUMNS),
    );
    let found = sqlx::query(AssertSqlSafe(sql))
        .bind(&ids)
        .fetch_all(observed(pool))
        .await?;
    for r in &found {
        let order = rows::order_row(r)?;
        let entry = out.entry(order.id.0).or_insert(order);
        if r.try_get::<Option<i32>, _>(ORDER_WIDTH)?.is_some() {
            entry.lines.push(rows::line_row_at(r, ORDER_WIDTH)?);
        }
    }
    Ok(out)
}

/// The value an `EventScope` filters on.
enum Key {
    Order(Uuid),
    Store(String),
}

/// How many columns `ORDER_COLUMNS` has: where the line columns start in
/// `get_order`'s join.
const ORDER_WIDTH: usize = 19;

/// `a, b::text` → `o.a, o.b::text`.
fn prefixed(alias: &str, columns: &str) -> String {
    columns
        .split(", ")
        .map(|c| format!("{alias}.{c}"))
        .collect::<Vec<_>>()
        .join(", ")
}

// ------------------------------------------------------------------- menus

/// A store's whole menu in one `REPEATABLE READ` snapshot, so a concurrent
/// `upsert_menu` cannot be seen half-applied (allowed on a hot standby).
async fn load_menu(pool: &Watched, store: &StoreId) -> Result<Option<Menu>, Error> {
    let mut tx = pool
        .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .await?;
    let info = sqlx::query("SELECT id, name, time_zone, currency FROM stores WHERE id = $1")
        .bind(&store.0)
        .fetch_optional(observed(&mut *tx))
        .await?;
    let Some(info) = info else {
        tx.commit().await?;
        return Ok(None);
    };
    let categories =
        sqlx::query("SELECT code, name, position FROM categories WHERE store_id = $1 ORDER BY position, code")
            .bind(&store.0)
            .fetch_all(observed(&mut *tx))
            .await?;
    let items = sqlx::query(
        "SELECT sku, name, category, station, sizes::text, modifiers::text, available FROM items \
         WHERE store_id = $1 ORDER BY ord",
    )
    .bind(&store.0)
    .fetch_all(observed(&mut *tx))
    .await?;
    tx.commit().await?;
    Ok(Some(rows::menu(
        rows::store_row(&info)?,
        categories.iter().map(rows::category_row).collect::<Result<_, _>>()?,
        items.iter().map(rows::item_row).collect::<Result<_, _>>()?,
    )))
}

/// Replace a store row, its categories and its items in one transaction.
async fn upsert_menu(pool: &Watched, menu: &Menu) -> Result<(), Error> {
    let s = &menu.store;
    let n = menu.items.len();
    let (mut skus, mut ords, mut names, mut cats, mut stations, mut avail, mut sizes, mut mods) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    for (ord, i) in menu.items.iter().enumerate() {
        skus.push(i.sku.clone());
        ords.push(i32::try_from(ord).map_err(|_| Error::OutOfRange(format!("{n} items in one menu")))?);
        names.push(i.name.clone());
        cats.push(i.category.clone());
        stations.push(i.station.as_str());
        avail.push(i.available);
        sizes.push(crate::decode::to_json("item sizes", &i.sizes)?);
        mods.push(crate::decode::to_json("item modifiers", &i.modifiers)?);
    }
    let codes: Vec<&str> = menu.categories.iter().map(|c| c.code.as_str()).collect();
    let cat_names: Vec<&str> = menu.categories.iter().map(|c| c.name.as_str()).collect();
    let positions: Vec<i32> = menu.categories.iter().map(|c| c.position).collect();

    let mut tx = pool.begin().await?;
    // An upsert, not delete-and-insert of the store row, which would cascade.
    sqlx::query(
        "INSERT INTO stores (id, name, time_zone, currency) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (id) DO UPDATE SET name = excluded.name, time_zone = excluded.time_zone, \
         currency = excluded.currency",
    )
    .bind(&s.id.0)
    .bind(&s.name)
    .bind(&s.time_zone)
    .bind(&s.currency)
    .execute(observed(&mut *tx))
    .await?;
    sqlx::query("DELETE FROM categories WHERE store_id = $1")
        .bind(&s.id.0)
        .execute(observed(&mut *tx))
        .await?;
    sqlx::query("DELETE FROM items WHERE store_id = $1")
        .bind(&s.id.0)
        .execute(observed(&mut *tx))
        .await?;
    sqlx::query(
        "INSERT INTO categories (store_id, code, name, position) \
         SELECT $1, * FROM UNNEST($2::text[], $3::text[], $4::int[])",
    )
    .bind(&s.id.0)
    .bind(&codes)
    .bind(&cat_names)
    .bind(&positions)
    .execute(observed(&mut *tx))
    .await?;
    sqlx::query(
        "INSERT INTO items (store_id, sku, ord, name, category, station, available, sizes, modifiers) \
         SELECT $1, u.sku, u.ord, u.name, u.category, u.station, u.available, u.sizes::jsonb, u.modifiers::jsonb \
         FROM UNNEST($2::text[], $3::int[], $4::text[], $5::text[], $6::text[], $7::bool[], $8::text[], $9::text[]) \
         AS u(sku, ord, name, category, station, available, sizes, modifiers)",
    )
    .bind(&s.id.0)
    .bind(&skus)
    .bind(&ords)
    .bind(&names)
    .bind(&cats)
    .bind(&stations)
    .bind(&avail)
    .bind(&sizes)
    .bind(&mods)
    .execute(observed(&mut *tx))
    .await?;
    tx.commit().await?;
    Ok(())
}

// ------------------------------------------------------------------ writes

/// A live event before the store has numbered it.
struct EventDraft {
    kind: LiveEventKind,
    order: OrderId,
    store: StoreId,
    status: OrderStatus,
    ticket: Option<(u32, domain::Station, TicketStatus)>,
    at: i64,
    /// Carried on the returned event (readers get them through the join).
    pickup_code: Option<String>,
    name: Option<String>,
}

/// Insert `drafts` as the last statements of the caller's transaction and
/// return them numbered, in id order (= the order of `drafts`).
///
/// First the per-store advisory locks (module docs), then one `INSERT ...
/// SELECT ... ORDER BY n`: identity values are drawn in the order the rows
/// are inserted, so the drafts' order becomes the id order.
async fn insert_events(tx: &mut PgConnection, drafts: Vec<EventDraft>) -> Result<Vec<LiveEvent>, Error> {
    if drafts.is_empty() {
        return Ok(Vec::new());
    }
    let stores: Vec<&str> = drafts
        .iter()
        .map(|d| d.store.0.as_str())
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    sqlx::query(
        "SELECT pg_advisory_xact_lock($1, k) FROM \
         (SELECT DISTINCT hashtext(s) AS k FROM UNNEST($2::text[]) AS s ORDER BY k) AS keys",
    )
    .bind(EVENTS_LOCK_SPACE)
    .bind(&stores)
    .execute(observed(&mut *tx))
    .await?;

    let n = drafts.len();
    let (mut orders, mut store_ids, mut kinds, mut statuses, mut lines, mut stations, mut tickets, mut ats) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    for d in &drafts {
        orders.push(d.order.0);
        store_ids.push(d.store.0.as_str());
        kinds.push(d.kind.as_str());
        statuses.push(d.status.as_str());
        let (line, station, ticket) = match d.ticket {
            Some((l, s, t)) => (Some(rows::i32_of("event line", l)?), Some(s.as_str()), Some(t.as_str())),
            None => (None, None, None),
        };
        lines.push(line);
        stations.push(station);
        tickets.push(ticket);
        ats.push(d.at);
    }
    let mut ids: Vec<i64> = sqlx::query_scalar(
        "INSERT INTO events (order_id, store_id, kind, status, line, station, ticket, at) \
         SELECT u.order_id, u.store_id, u.kind, u.status, u.line, u.station, u.ticket, u.at \
         FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::text[], $5::int[], $6::text[], $7::text[], $8::bigint[]) \
         WITH ORDINALITY AS u(order_id, store_id, kind, status, line, station, ticket, at, n) \
         ORDER BY u.n RETURNING id",
    )
    .bind(&orders)
    .bind(&store_ids)
    .bind(&kinds)
    .bind(&statuses)
    .bind(&lines)
    .bind(&stations)
    .bind(&tickets)
    .bind(&ats)
    .fetch_all(observed(&mut *tx))
    .await?;
    // RETURNING's order is not promised; the ids' is.
    ids.sort_unstable();
    if ids.len() != n {
        return Err(Error::Invalid(format!("inserted {n} events but got {} ids", ids.len())));
    }
    Ok(drafts
        .into_iter()
        .zip(ids)
        .map(|(d, id)| {
            let (line, station, ticket) = match d.ticket {
                Some((l, s, t)) => (Some(l), Some(s), Some(t)),
                None => (None, None, None),
            };
            LiveEvent {
                id,
                kind: d.kind,
                order_id: d.order,
                store: d.store,
                status: d.status,
                line,
                station,
                ticket,
                at: d.at,
                pickup_code: d.pickup_code,
                name: d.name,
            }
        })
        .collect())
}

async fn apply_batch(pool: &Watched, batch: ApplyBatch<'_>) -> Result<BatchApplied, Error> {
    let ApplyBatch {
        group,
        partition,
        next_offset,
        orders,
        payments,
        dead,
        now,
    } = batch;
    let next = crate::decode::i64_of("consumer position", next_offset)?;
    let n = orders.len();
    let (mut ids, mut stores, mut customers, mut statuses, mut reasons, mut currencies) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    let (mut totals, mut placed, mut confirmed, mut rejected, mut names, mut traces) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    for d in orders {
        let p = &d.placed;
        let (status, reason) = decided(&d.decision);
        ids.push(p.order_id.0);
        stores.push(p.store.0.as_str());
        customers.push(p.customer.as_deref());
        statuses.push(status.as_str());
        reasons.push(reason);
        currencies.push(p.currency.as_str());
        totals.push(p.total);
        placed.push(p.placed_at);
        confirmed.push((status == OrderStatus::Confirmed).then_some(now));
        rejected.push((status == OrderStatus::Rejected).then_some(now));
        names.push(p.name.as_deref());
        traces.push(d.trace.as_deref());
    }

    let mut tx = pool.begin().await?;
    let new: HashSet<Uuid> = if orders.is_empty() {
        HashSet::new()
    } else {
        let returned: Vec<Uuid> = sqlx::query_scalar(
            "INSERT INTO orders (id, store_id, customer, status, reject_reason, payment_status, currency, total, \
             placed_at, confirmed_at, rejected_at, name, trace) \
             SELECT u.id, u.store_id, u.customer, u.status, u.reason, $11, u.currency, u.total, u.placed_at, \
             u.confirmed_at, u.rejected_at, u.name, u.trace \
             FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::bigint[], \
             $8::bigint[], $9::bigint[], $10::bigint[], $12::text[], $13::text[]) \
             AS u(id, store_id, customer, status, reason, currency, total, placed_at, confirmed_at, rejected_at, \
             name, trace) \
             ON CONFLICT (id) DO NOTHING RETURNING id",
        )
        .bind(&ids)
        .bind(&stores)
        .bind(&customers)
        .bind(&statuses)
        .bind(&reasons)
        .bind(&currencies)
        .bind(&totals)
        .bind(&placed)
        .bind(&confirmed)
        .bind(&rejected)
        .bind(UNPAID)
        .bind(&names)
        .bind(&traces)
        .fetch_all(observed(&mut *tx))
        .await?;
        returned.into_iter().collect()
    };
    // Only the new orders, in batch order: a replayed one already has its
    // lines and its event from the first time.
    let fresh: Vec<&Decided> = orders.iter().filter(|d| new.contains(&d.placed.order_id.0)).collect();

    if !fresh.is_empty() {
        let mut cols = LineColumns::default();
        for d in &fresh {
            let ticket = (decided(&d.decision).0 == OrderStatus::Confirmed).then_some(TicketStatus::Queued.as_str());
            for l in &d.placed.lines {
                cols.order.push(d.placed.order_id.0);
                cols.line.push(rows::i32_of("line number", l.line)?);
                cols.sku.push(l.sku.as_str());
                cols.name.push(l.name.as_str());
                cols.station.push(l.station.as_str());
                cols.size.push(l.size.as_str());
                cols.modifiers
                    .push(crate::decode::to_json("line modifiers", &l.modifiers)?);
                cols.qty.push(rows::i32_of("quantity", l.qty)?);
                cols.unit_price.push(l.unit_price);
                cols.line_total.push(l.line_total);
                cols.ticket.push(ticket);
            }
        }
        sqlx::query(
            "INSERT INTO order_lines (order_id, line, sku, name, station, size, modifiers, qty, unit_price, \
             line_total, ticket) \
             SELECT u.order_id, u.line, u.sku, u.name, u.station, u.size, u.modifiers::jsonb, u.qty, \
             u.unit_price, u.line_total, u.ticket \
             FROM UNNEST($1::uuid[], $2::int[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], \
             $8::int[], $9::bigint[], $10::bigint[], $11::text[]) \
             AS u(order_id, line, sku, name, station, size, modifiers, qty, unit_price, line_total, ticket)",
        )
        .bind(&cols.order)
        .bind(&cols.line)
        .bind(&cols.sku)
        .bind(&cols.name)
        .bind(&cols.station)
        .bind(&cols.size)
        .bind(&cols.modifiers)
        .bind(&cols.qty)
        .bind(&cols.unit_price)
        .bind(&cols.line_total)
        .bind(&cols.ticket)
        .execute(observed(&mut *tx))
        .await?;
    }

    let payments = if payments.is_empty() {
        PaymentsApplied::default()
    } else {
        ops::apply_payments(&mut tx, payments, now).await?
    };

    if !dead.is_empty() {
        let offsets = dead
            .iter()
            .map(|d| crate::decode::i64_of("dead letter offset", d.offset))
            .collect::<Result<Vec<_>, _>>()?;
        let groups: Vec<&str> = dead.iter().map(|d| d.group.as_str()).collect();
        let partitions: Vec<i64> = dead.iter().map(|d| i64::from(d.partition)).collect();
        let keys: Vec<&str> = dead.iter().map(|d| d.key.as_str()).collect();
        let payloads: Vec<&[u8]> = dead.iter().map(|d| d.payload.as_slice()).collect();
        let errors: Vec<&str> = dead.iter().map(|d| d.error.as_str()).collect();
        let attempts: Vec<i64> = dead.iter().map(|d| i64::from(d.attempts)).collect();
        let ats: Vec<i64> = dead.iter().map(|d| d.at).collect();
        // Ordered, so ids (and so `dead_letters`' newest-first) follow the batch.
        sqlx::query(
            "INSERT INTO dead_letters (grp, log_partition, log_offset, key, payload, error, attempts, at) \
             SELECT u.grp, u.log_partition, u.log_offset, u.key, u.payload, u.error, u.attempts, u.at \
             FROM UNNEST($1::text[], $2::bigint[], $3::bigint[], $4::text[], $5::bytea[], $6::text[], \
             $7::bigint[], $8::bigint[]) WITH ORDINALITY \
             AS u(grp, log_partition, log_offset, key, payload, error, attempts, at, n) ORDER BY u.n",
        )
        .bind(&groups)
        .bind(&partitions)
        .bind(&offsets)
        .bind(&keys)
        .bind(&payloads)
        .bind(&errors)
        .bind(&attempts)
        .bind(&ats)
        .execute(observed(&mut *tx))
        .await?;
    }

    sqlx::query(
        "INSERT INTO consumer_positions (grp, log_partition, next_offset, updated_at) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (grp, log_partition) DO UPDATE \
         SET next_offset = excluded.next_offset, updated_at = excluded.updated_at",
    )
    .bind(group)
    .bind(i64::from(partition))
    .bind(next)
    .bind(now)
    .execute(observed(&mut *tx))
    .await?;

    // Last but the events, which carry the codes: the counter row of a
    // (store, day) stays locked until commit, and every partition's batch
    // of that store queues behind it. Drawn first, the lock was held over
    // the lines, payments and positions too, and the processors of one
    // store ran one transaction at a time (issue 13: 1–2.6 s waits on this
    // statement with eight partitions draining a backlog).
    let codes = draw_pickup_codes(&mut tx, &fresh).await?;
    let drafts = fresh
        .iter()
        .map(|d| EventDraft {
            kind: LiveEventKind::Status,
            order: d.placed.order_id,
            store: d.placed.store.clone(),
            status: decided(&d.decision).0,
            ticket: None,
            at: now,
            pickup_code: codes.get(&d.placed.order_id.0).cloned(),
            name: d.placed.name.clone(),
        })
        .collect();
    let events = insert_events(&mut tx, drafts).await?;
    tx.commit().await?;
    Ok(BatchApplied {
        inserted: fresh.len(),
        events,
        payments,
    })
}

/// Draw a pickup code for each new confirmed order of the batch, in batch
/// order, and write it to the order. One statement reads the stores' time
/// zones, one bumps every (store, local day) counter by its number of
/// orders at once (`RETURNING` the new last number, so a group's codes are
/// `last - n + 1 ..= last`), one writes the codes. The counter rows are
/// locked in key order until commit: two partitions confirming orders of
/// one store queue up here and never draw the same number, and cannot
/// deadlock. Replayed orders are not in `fresh`, so they burn nothing.
async fn draw_pickup_codes(
    tx: &mut PgConnection,
    fresh: &[&Decided],
) -> Result<std::collections::HashMap<Uuid, String>, Error> {
    use std::collections::{BTreeMap, HashMap};
    let confirmed: Vec<&OrderPlacedV1> = fresh
        .iter()
        .filter(|d| d.decision == Decision::Confirm)
        .map(|d| &d.placed)
        .collect();
    if confirmed.is_empty() {
        return Ok(HashMap::new());
    }
    let stores: Vec<&str> = confirmed
        .iter()
        .map(|p| p.store.0.as_str())
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    let zones: HashMap<String, String> = sqlx::query_as("SELECT id, time_zone FROM stores WHERE id = ANY($1)")
        .bind(&stores)
        .fetch_all(observed(&mut *tx))
        .await?
        .into_iter()
        .collect();
    // (store, day) → the batch's orders of that day, in batch order.
    let mut groups: BTreeMap<(&str, String), Vec<Uuid>> = BTreeMap::new();
    for p in &confirmed {
        // A store the menu sync has not brought in yet counts as UTC.
        let zone = zones.get(&p.store.0).map(String::as_str).unwrap_or("UTC");
        let day = domain::pickup::local_day(zone, p.placed_at);
        groups.entry((p.store.0.as_str(), day)).or_default().push(p.order_id.0);
    }
    let (keys, counts): (Vec<_>, Vec<i32>) = groups
        .iter()
        .map(|(k, v)| (k, i32::try_from(v.len()).unwrap_or(i32::MAX)))
        .unzip();
    let g_stores: Vec<&str> = keys.iter().map(|(s, _)| *s).collect();
    let g_days: Vec<&str> = keys.iter().map(|(_, d)| d.as_str()).collect();
    let lasts: Vec<(String, String, i32)> = sqlx::query_as(
        "INSERT INTO pickup_counters (store_id, day, last) \
         SELECT u.store_id, u.day, u.n FROM UNNEST($1::text[], $2::text[], $3::int[]) AS u(store_id, day, n) \
         ORDER BY u.store_id, u.day \
         ON CONFLICT (store_id, day) DO UPDATE SET last = pickup_counters.last + excluded.last \
         RETURNING store_id, day, last",
    )
    .bind(&g_stores)
    .bind(&g_days)
    .bind(&counts)
    .fetch_all(observed(&mut *tx))
    .await?;
    let mut codes = HashMap::with_capacity(confirmed.len());
    for (store, day, last) in lasts {
        let Some(ids) = groups.get(&(store.as_str(), day)) else {
            continue;
        };
        let first = i64::from(last) - ids.len() as i64 + 1;
        for (i, id) in ids.iter().enumerate() {
            let n = u32::try_from(first + i as i64).unwrap_or(1);
            codes.insert(*id, domain::pickup::PickupCode::nth(n).into_string());
        }
    }
    let (ids, texts): (Vec<Uuid>, Vec<&str>) = codes.iter().map(|(id, c)| (*id, c.as_str())).unzip();
    sqlx::query(
        "UPDATE orders o SET pickup_code = u.code FROM UNNEST($1::uuid[], $2::text[]) AS u(id, code) WHERE o.id = u.id",
    )
    .bind(&ids)
    .bind(&texts)
    .execute(observed(&mut *tx))
    .await?;
    Ok(codes)
}

/// The status and reject reason a decision gives a new order.
fn decided(d: &Decision) -> (OrderStatus, Option<&str>) {
    match d {
        Decision::Confirm => (OrderStatus::Confirmed, None),
        Decision::Reject(reason) => (OrderStatus::Rejected, Some(reason.as_str())),
    }
}

/// A batch's order lines, column by column, as `UNNEST` takes them.
#[derive(Default)]
struct LineColumns<'a> {
    order: Vec<Uuid>,
    line: Vec<i32>,
    sku: Vec<&'a str>,
    name: Vec<&'a str>,
    station: Vec<&'static str>,
    size: Vec<&'a str>,
    modifiers: Vec<String>,
    qty: Vec<i32>,
    unit_price: Vec<i64>,
    line_total: Vec<i64>,
    ticket: Vec<Option<&'static str>>,
}

/// One lifecycle action in one transaction. `SELECT ... FOR UPDATE` on the
/// order row serialises actions on one order (ten baristas tapping "start"
/// at once queue up here); the lines are read by a second statement *after*
/// the lock is held, because in `READ COMMITTED` a joined row read by the
/// locking statement itself could be the version from before the wait. The
/// rules are the domain's (`order::plan`), the new state `order::apply`'s.
async fn transition(
    pool: &Watched,
    id: OrderId,
    action: Action,
    reason: Option<&str>,
    now: i64,
) -> Result<(Order, Vec<LiveEvent>), Error> {
    let mut tx = pool.begin().await?;
    let row = sqlx::query(AssertSqlSafe(format!(
        "SELECT {} FROM orders WHERE id = $1 FOR UPDATE",
        rows::ORDER_COLUMNS
    )))
    .bind(id.0)
    .fetch_optional(observed(&mut *tx))
    .await?;
    let Some(row) = row else {
        return Err(Error::Rule(TransitionError::OrderNotFound(id)));
    };
    let mut order = rows::order_row(&row)?;
    let lines = sqlx::query(AssertSqlSafe(format!(
        "SELECT {} FROM order_lines WHERE order_id = $1 ORDER BY line",
        rows::LINE_COLUMNS
    )))
    .bind(id.0)
    .fetch_all(observed(&mut *tx))
    .await?;
    order.lines = lines.iter().map(rows::line_row).collect::<Result<_, _>>()?;

    let plan = order::plan(&order, action).map_err(Error::Rule)?;
    order::apply(&mut order, &plan, now);
    if let Some(reason) = reason {
        order.cancel_reason = Some(reason.to_owned());
        sqlx::query("UPDATE orders SET cancel_reason = $1 WHERE id = $2")
            .bind(reason)
            .bind(id.0)
            .execute(observed(&mut *tx))
            .await?;
    }
    let mut drafts = Vec::with_capacity(2);
    if let Some((line, ticket)) = plan.ticket {
        let station = order
            .lines
            .iter()
            .find(|l| l.line == line)
            .map(|l| l.station)
            .ok_or(Error::Rule(TransitionError::LineNotFound(line)))?;
        // A step forward stamps the line's time of it; an undo clears the
        // time of the step it takes back (`lines::line_times`).
        let (started, done) = crate::lines::line_times(ticket, plan.reverts);
        sqlx::query(
            "UPDATE order_lines SET ticket = $1, \
             started_at = CASE WHEN $4 THEN $5 WHEN $6 THEN NULL ELSE started_at END, \
             done_at = CASE WHEN $7 THEN $5 ELSE NULL END WHERE order_id = $2 AND line = $3",
        )
        .bind(ticket.as_str())
        .bind(id.0)
        .bind(rows::i32_of("line number", line)?)
        .bind(started == crate::lines::LineTime::Stamp)
        .bind(now)
        .bind(started == crate::lines::LineTime::Clear)
        .bind(done == crate::lines::LineTime::Stamp)
        .execute(observed(&mut *tx))
        .await?;
        drafts.push(EventDraft {
            kind: LiveEventKind::Ticket,
            order: id,
            store: order.store.clone(),
            status: order.status,
            ticket: Some((line, station, ticket)),
            at: now,
            pickup_code: order.pickup_code.clone(),
            name: order.name.clone(),
        });
    }
    if let Some(status) = plan.status {
        // Every timestamp is written back from the order `order::stamp`
        // updated, so which transition sets which column is decided in
        // exactly one place.
        let at = &order.at;
        sqlx::query(
            "UPDATE orders SET status = $1, confirmed_at = $2, rejected_at = $3, started_at = $4, ready_at = $5, \
             picked_up_at = $6, cancelled_at = $7, expired_at = $8 WHERE id = $9",
        )
        .bind(status.as_str())
        .bind(at.confirmed_at)
        .bind(at.rejected_at)
        .bind(at.started_at)
        .bind(at.ready_at)
        .bind(at.picked_up_at)
        .bind(at.cancelled_at)
        .bind(at.expired_at)
        .bind(id.0)
        .execute(observed(&mut *tx))
        .await?;
        drafts.push(EventDraft {
            kind: LiveEventKind::Status,
            order: id,
            store: order.store.clone(),
            status,
            ticket: None,
            at: now,
            pickup_code: order.pickup_code.clone(),
            name: order.name.clone(),
        });
    }
    let events = insert_events(&mut tx, drafts).await?;
    tx.commit().await?;
    Ok((order, events))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_width_is_the_number_of_order_columns() {
        assert_eq!(rows::ORDER_COLUMNS.split(", ").count(), ORDER_WIDTH);
        assert_eq!(prefixed("o", "a, b::text"), "o.a, o.b::text");
    }
}
