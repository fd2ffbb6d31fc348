//! What `PgStore` does for payments and the background jobs: applying
//! payment callbacks inside a processor batch, menu diffs from the catalog
//! sync, bulk account upserts, sync cursors and records, order expiry, the
//! nightly cleanup and planner maintenance.
//!
//! As on the hot path, a batch travels as one array per column through
//! `UNNEST`, and work that must be atomic but needs no answer in between is
//! folded into one statement with data-modifying CTEs (all of a statement's
//! CTEs run, in one snapshot, whether or not the final `SELECT` reads them):
//! a batch's payments are recorded and applied in one round-trip, an
//! accounts page is upserted and its cursor moved in one.

use std::sync::LazyLock;

use dbkit::observe::observed;
use dbkit::postgres::Watched;
use domain::events::{LiveEvent, LiveEventKind, PaymentV1};
use domain::ids::{OrderId, StoreId};
use domain::menu::{Category, Item};
use domain::ops::{LoyaltyAccount, PerfSnapshot, SyncRun};
use domain::order::OrderStatus;
use domain::ports::PaymentsApplied;
use sqlx::postgres::PgConnection;
use sqlx::{AssertSqlSafe, Row};
use uuid::Uuid;

use super::{Error, EventDraft, insert_events, rows};
use crate::bulk;
use crate::decode::{i64_of, to_json};

// ---------------------------------------------------------------- payments

/// Record a batch's payment events and apply the new ones, in one
/// statement: `p` is the batch, `recorded` the events that were not there
/// yet (with the outcome decided against their order), `history` every
/// applied event of the orders `recorded` applied to (the statement's
/// snapshot does not see its own inserts, so the new ones come from
/// `recorded` and the earlier ones from the table), `settled` the newest
/// of each order's history by the provider's time (`newest_payment_first`:
/// a late, older event is kept but changes nothing), `updated` sets those
/// orders' payment status. Answers the new events' count per outcome.
static APPLY_PAYMENTS: LazyLock<String> = LazyLock::new(|| {
    format!(
        "WITH p AS (\
           SELECT * FROM UNNEST($1::text[], $2::uuid[], $3::text[], $4::bigint[], $5::text[], $6::bigint[], \
           $7::bigint[]) \
           AS u(event_id, order_id, status, amount, currency, provider_ts, received_at)), \
         recorded AS (\
           INSERT INTO payment_events (event_id, order_id, status, amount, currency, provider_ts, received_at, \
           outcome, applied_at) \
           SELECT p.event_id, p.order_id, p.status, p.amount, p.currency, p.provider_ts, p.received_at, {outcome}, $8 \
           FROM p LEFT JOIN orders o ON o.id = p.order_id \
           ON CONFLICT (event_id) DO NOTHING RETURNING order_id, status, provider_ts, outcome), \
         history AS (\
           SELECT r.order_id, r.status, r.provider_ts FROM recorded r WHERE r.outcome = '{applied}' \
           UNION ALL \
           SELECT e.order_id, e.status, e.provider_ts FROM payment_events e \
           WHERE e.outcome = '{applied}' \
           AND e.order_id IN (SELECT r.order_id FROM recorded r WHERE r.outcome = '{applied}')), \
         settled AS (\
           SELECT DISTINCT ON (h.order_id) h.order_id, h.status FROM history h ORDER BY h.order_id, {newest}), \
         updated AS (\
           UPDATE orders SET payment_status = s.status FROM settled s WHERE orders.id = s.order_id RETURNING 1) \
         SELECT outcome, count(*) FROM recorded GROUP BY outcome",
        outcome = bulk::OUTCOME_SQL,
        applied = bulk::APPLIED,
        newest = bulk::newest_payment_first("h"),
    )
});

/// Apply a batch's payments inside its transaction, after its orders were
/// inserted (so a payment may follow its order in the same batch).
pub(super) async fn apply_payments(
    tx: &mut PgConnection,
    payments: &[PaymentV1],
    now: i64,
) -> Result<PaymentsApplied, Error> {
    let unique = bulk::unique_payments(payments);
    let n = unique.len();
    let (mut events, mut orders, mut statuses, mut amounts, mut currencies, mut provider_ts, mut received) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    for p in &unique {
        events.push(p.event_id.as_str());
        orders.push(p.order_id.0);
        statuses.push(p.status.as_str());
        amounts.push(p.amount);
        currencies.push(p.currency.as_str());
        provider_ts.push(p.provider_ts);
        received.push(p.received_at);
    }
    let counts: Vec<(String, i64)> = sqlx::query_as(AssertSqlSafe(APPLY_PAYMENTS.as_str()))
        .bind(&events)
        .bind(&orders)
        .bind(&statuses)
        .bind(&amounts)
        .bind(&currencies)
        .bind(&provider_ts)
        .bind(&received)
        .bind(now)
        .fetch_all(observed(&mut *tx))
        .await?;
    let counts = counts
        .iter()
        .map(|(outcome, n)| {
            Ok((
                outcome.as_str(),
                usize::try_from(*n).map_err(|_| crate::decode::invalid("count", n))?,
            ))
        })
        .collect::<Result<Vec<_>, crate::decode::DecodeError>>()?;
    Ok(bulk::count_outcomes(payments.len(), counts)?)
}

// ------------------------------------------------------------------- menus

/// One transaction: the store row is share-locked (it cannot be deleted
/// meanwhile; a missing store is `NotFound`), categories are upserted by
/// code, removed skus deleted, items upserted by sku. An existing item keeps
/// its availability and its place (`ord`); new ones are available and go
/// after the store's last item, in the diff's order.
pub(super) async fn apply_menu_diff(
    pool: &Watched,
    store: &StoreId,
    categories: &[Category],
    items: &[Item],
    removed: &[String],
) -> Result<(), Error> {
    let categories = bulk::unique_categories(categories);
    let codes: Vec<&str> = categories.iter().map(|c| c.code.as_str()).collect();
    let names: Vec<&str> = categories.iter().map(|c| c.name.as_str()).collect();
    let positions: Vec<i32> = categories.iter().map(|c| c.position).collect();
    let items = bulk::unique_items(items);
    let n = items.len();
    let (mut skus, mut item_names, mut cats, mut stations, mut sizes, mut mods) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    for i in &items {
        skus.push(i.sku.as_str());
        item_names.push(i.name.as_str());
        cats.push(i.category.as_str());
        stations.push(i.station.as_str());
        sizes.push(to_json("item sizes", &i.sizes)?);
        mods.push(to_json("item modifiers", &i.modifiers)?);
    }

    let mut tx = pool.begin().await?;
    let known: Option<i32> = sqlx::query_scalar("SELECT 1 FROM stores WHERE id = $1 FOR KEY SHARE")
        .bind(&store.0)
        .fetch_optional(observed(&mut *tx))
        .await?;
    if known.is_none() {
        return Err(Error::NotFound);
    }
    if !codes.is_empty() {
        sqlx::query(
            "INSERT INTO categories (store_id, code, name, position) \
             SELECT $1, u.code, u.name, u.position FROM UNNEST($2::text[], $3::text[], $4::int[]) \
             AS u(code, name, position) \
             ON CONFLICT (store_id, code) DO UPDATE SET name = excluded.name, position = excluded.position",
        )
        .bind(&store.0)
        .bind(&codes)
        .bind(&names)
        .bind(&positions)
        .execute(observed(&mut *tx))
        .await?;
    }
    if !removed.is_empty() {
        sqlx::query("DELETE FROM items WHERE store_id = $1 AND sku = ANY($2::text[])")
            .bind(&store.0)
            .bind(removed)
            .execute(observed(&mut *tx))
            .await?;
    }
    if !skus.is_empty() {
        sqlx::query(
            "INSERT INTO items (store_id, sku, ord, name, category, station, available, sizes, modifiers) \
             SELECT $1, u.sku, (SELECT coalesce(max(ord), -1) FROM items WHERE store_id = $1) + u.n::int, \
             u.name, u.category, u.station, true, u.sizes::jsonb, u.modifiers::jsonb \
             FROM UNNEST($2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[]) WITH ORDINALITY \
             AS u(sku, name, category, station, sizes, modifiers, n) \
             ON CONFLICT (store_id, sku) DO UPDATE SET name = excluded.name, category = excluded.category, \
             station = excluded.station, sizes = excluded.sizes, modifiers = excluded.modifiers",
        )
        .bind(&store.0)
        .bind(&skus)
        .bind(&item_names)
        .bind(&cats)
        .bind(&stations)
        .bind(&sizes)
        .bind(&mods)
        .execute(observed(&mut *tx))
        .await?;
    }
    tx.commit().await?;
    Ok(())
}

// ---------------------------------------------------------------- accounts

/// The upsert: a row is overwritten only by a newer version.
const UPSERT_ACCOUNTS: &str = "INSERT INTO loyalty_accounts (id, email, name, tier, points, version, synced_at) \
     SELECT u.id, u.email, u.name, u.tier, u.points, u.version, $7 \
     FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[], $6::bigint[]) \
     AS u(id, email, name, tier, points, version) \
     ON CONFLICT (id) DO UPDATE SET email = excluded.email, name = excluded.name, tier = excluded.tier, \
     points = excluded.points, version = excluded.version, synced_at = excluded.synced_at \
     WHERE loyalty_accounts.version < excluded.version";

/// The same upsert moving a sync cursor too, still one statement (and so
/// one transaction).
static UPSERT_ACCOUNTS_WITH_CURSOR: LazyLock<String> = LazyLock::new(|| {
    format!(
        "WITH up AS ({UPSERT_ACCOUNTS} RETURNING 1), \
         cur AS (INSERT INTO sync_state (kind, cursor, updated_at) VALUES ($8, $9, $7) \
           ON CONFLICT (kind) DO UPDATE SET cursor = excluded.cursor, updated_at = excluded.updated_at) \
         SELECT count(*) FROM up"
    )
});

/// One statement whatever `accounts` holds (de-duplicated first); returns
/// the rows inserted or overwritten.
pub(super) async fn upsert_accounts(
    pool: &Watched,
    accounts: &[LoyaltyAccount],
    cursor: Option<&str>,
    now: i64,
) -> Result<u64, Error> {
    if accounts.is_empty() {
        if let Some(cursor) = cursor {
            set_sync_cursor(pool, domain::sync::ACCOUNTS, Some(cursor), now).await?;
        }
        return Ok(0);
    }
    let accounts = bulk::unique_accounts(accounts);
    let ids: Vec<&str> = accounts.iter().map(|a| a.id.as_str()).collect();
    let emails: Vec<Option<&str>> = accounts.iter().map(|a| a.email.as_deref()).collect();
    let names: Vec<&str> = accounts.iter().map(|a| a.name.as_str()).collect();
    let tiers: Vec<&str> = accounts.iter().map(|a| a.tier.as_str()).collect();
    let points: Vec<i64> = accounts.iter().map(|a| a.points).collect();
    let versions: Vec<i64> = accounts.iter().map(|a| a.version).collect();
    let sql = match cursor {
        None => UPSERT_ACCOUNTS,
        Some(_) => UPSERT_ACCOUNTS_WITH_CURSOR.as_str(),
    };
    let q = sqlx::query(AssertSqlSafe(sql))
        .bind(&ids)
        .bind(&emails)
        .bind(&names)
        .bind(&tiers)
        .bind(&points)
        .bind(&versions)
        .bind(now);
    match cursor {
        None => Ok(q.execute(observed(pool)).await?.rows_affected()),
        Some(cursor) => {
            let row = q
                .bind(domain::sync::ACCOUNTS)
                .bind(cursor)
                .fetch_one(observed(pool))
                .await?;
            let n: i64 = row.try_get(0)?;
            Ok(crate::decode::u64_of("accounts written", n)?)
        }
    }
}

pub(super) async fn loyalty_account(pool: &Watched, id: &str) -> Result<Option<LoyaltyAccount>, Error> {
    let sql = format!("SELECT {} FROM loyalty_accounts WHERE id = $1", rows::ACCOUNT_COLUMNS);
    let row = sqlx::query(AssertSqlSafe(sql))
        .bind(id)
        .fetch_optional(observed(pool))
        .await?;
    row.as_ref().map(rows::account_row).transpose()
}

pub(super) async fn count_accounts(pool: &Watched) -> Result<u64, Error> {
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM loyalty_accounts")
        .fetch_one(observed(pool))
        .await?;
    Ok(crate::decode::u64_of("account count", n)?)
}

pub(super) async fn sync_cursor(pool: &Watched, kind: &str) -> Result<Option<String>, Error> {
    let cursor: Option<Option<String>> = sqlx::query_scalar("SELECT cursor FROM sync_state WHERE kind = $1")
        .bind(kind)
        .fetch_optional(observed(pool))
        .await?;
    Ok(cursor.flatten())
}

pub(super) async fn set_sync_cursor(pool: &Watched, kind: &str, cursor: Option<&str>, now: i64) -> Result<(), Error> {
    sqlx::query(
        "INSERT INTO sync_state (kind, cursor, updated_at) VALUES ($1, $2, $3) \
         ON CONFLICT (kind) DO UPDATE SET cursor = excluded.cursor, updated_at = excluded.updated_at",
    )
    .bind(kind)
    .bind(cursor)
    .bind(now)
    .execute(observed(pool))
    .await?;
    Ok(())
}

// ----------------------------------------------------------------- records

pub(super) async fn record_sync_run(pool: &Watched, run: &SyncRun) -> Result<(), Error> {
    let sql = format!(
        "INSERT INTO sync_runs ({}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        rows::SYNC_RUN_COLUMNS
    );
    sqlx::query(AssertSqlSafe(sql))
        .bind(&run.kind)
        .bind(run.started_at)
        .bind(run.finished_at)
        .bind(i64_of("sync run fetched", run.fetched)?)
        .bind(i64_of("sync run changed", run.changed)?)
        .bind(i64_of("sync run db_queries", run.db_queries)?)
        .bind(i64_of("sync run errors", run.errors)?)
        .bind(&run.outcome)
        .execute(observed(pool))
        .await?;
    Ok(())
}

pub(super) async fn sync_runs(pool: &Watched, kind: Option<&str>, limit: u32) -> Result<Vec<SyncRun>, Error> {
    let sql = format!(
        "SELECT {} FROM sync_runs WHERE $1::text IS NULL OR kind = $1 ORDER BY started_at DESC, id DESC LIMIT $2",
        rows::SYNC_RUN_COLUMNS
    );
    let found = sqlx::query(AssertSqlSafe(sql))
        .bind(kind)
        .bind(i64::from(limit))
        .fetch_all(observed(pool))
        .await?;
    found.iter().map(rows::sync_run_row).collect()
}

pub(super) async fn record_snapshot(pool: &Watched, s: &PerfSnapshot) -> Result<(), Error> {
    sqlx::query("INSERT INTO perf_snapshots (at, instance, metrics) VALUES ($1, $2, $3::jsonb)")
        .bind(s.at)
        .bind(&s.instance)
        .bind(to_json("snapshot metrics", &s.metrics)?)
        .execute(observed(pool))
        .await?;
    Ok(())
}

pub(super) async fn snapshots(pool: &Watched, limit: u32) -> Result<Vec<PerfSnapshot>, Error> {
    let sql = format!(
        "SELECT {} FROM perf_snapshots ORDER BY at DESC, id DESC LIMIT $1",
        rows::SNAPSHOT_COLUMNS
    );
    let found = sqlx::query(AssertSqlSafe(sql))
        .bind(i64::from(limit))
        .fetch_all(observed(pool))
        .await?;
    found.iter().map(rows::snapshot_row).collect()
}

// ------------------------------------------------------------------ orders

/// `ready` → `expired` for up to `limit` orders ready since before
/// `ready_before` (longest-waiting first), with one `status` event each
/// through `insert_events`, as `transition` writes them, in one
/// transaction. Rows a staff action holds right now are skipped (`SKIP
/// LOCKED`), not waited for: the next run gets them if still ready. Events
/// follow order-id order.
pub(super) async fn expire_ready(
    pool: &Watched,
    ready_before: i64,
    limit: u32,
    now: i64,
) -> Result<Vec<LiveEvent>, Error> {
    let mut tx = pool.begin().await?;
    type Expired = (Uuid, String, Option<String>, Option<String>);
    let mut expired: Vec<Expired> = sqlx::query_as(
        "UPDATE orders SET status = $1, expired_at = $2 WHERE id IN \
         (SELECT id FROM orders WHERE status = $3 AND ready_at < $4 ORDER BY ready_at, id LIMIT $5 \
         FOR UPDATE SKIP LOCKED) AND status = $3 RETURNING id, store_id, pickup_code, name",
    )
    .bind(OrderStatus::Expired.as_str())
    .bind(now)
    .bind(OrderStatus::Ready.as_str())
    .bind(ready_before)
    .bind(i64::from(limit))
    .fetch_all(observed(&mut *tx))
    .await?;
    expired.sort_unstable();
    let drafts = expired
        .into_iter()
        .map(|(id, store, pickup_code, name)| EventDraft {
            kind: LiveEventKind::Status,
            order: OrderId(id),
            store: StoreId(store),
            status: OrderStatus::Expired,
            ticket: None,
            at: now,
            pickup_code,
            name,
        })
        .collect();
    let events = insert_events(&mut tx, drafts).await?;
    tx.commit().await?;
    Ok(events)
}

pub(super) async fn order_counts(pool: &Watched) -> Result<Vec<(OrderStatus, u64)>, Error> {
    let found: Vec<(String, i64)> = sqlx::query_as("SELECT status, count(*) FROM orders GROUP BY status")
        .fetch_all(observed(pool))
        .await?;
    Ok(bulk::all_counts(found)?)
}

/// Delete up to `limit` finished orders placed before `before`, with their
/// events and payment events (lines go by `ON DELETE CASCADE`), in one
/// statement. Returns how many orders went; fewer than `limit` means none
/// are left (or the rest are locked right now; the next run gets them).
pub(super) async fn prune_orders(pool: &Watched, before: i64, limit: u32) -> Result<u64, Error> {
    let n: i64 = sqlx::query_scalar(
        "WITH doomed AS (SELECT id FROM orders WHERE status = ANY($1::text[]) AND placed_at < $2 LIMIT $3 \
           FOR UPDATE SKIP LOCKED), \
         ev AS (DELETE FROM events WHERE order_id IN (SELECT id FROM doomed)), \
         pay AS (DELETE FROM payment_events WHERE order_id IN (SELECT id FROM doomed)), \
         gone AS (DELETE FROM orders WHERE id IN (SELECT id FROM doomed) RETURNING 1) \
         SELECT count(*) FROM gone",
    )
    .bind(bulk::finished_statuses())
    .bind(before)
    .bind(i64::from(limit))
    .fetch_one(observed(pool))
    .await?;
    Ok(crate::decode::u64_of("orders pruned", n)?)
}

/// Delete sync runs and snapshots from before `records_before`, and
/// payment events for unknown orders received before `orders_before` (no
/// order will take them with it). Returns the runs and snapshots deleted.
pub(super) async fn prune_records(pool: &Watched, records_before: i64, orders_before: i64) -> Result<u64, Error> {
    // The outcome is a literal so the partial index on it can serve.
    let n: i64 = sqlx::query_scalar(
        "WITH r AS (DELETE FROM sync_runs WHERE started_at < $1 RETURNING 1), \
         s AS (DELETE FROM perf_snapshots WHERE at < $1 RETURNING 1), \
         p AS (DELETE FROM payment_events WHERE outcome = 'unknown_order' AND received_at < $2) \
         SELECT (SELECT count(*) FROM r) + (SELECT count(*) FROM s)",
    )
    .bind(records_before)
    .bind(orders_before)
    .fetch_one(observed(pool))
    .await?;
    Ok(crate::decode::u64_of("records pruned", n)?)
}

/// Every table of the schema, for `ANALYZE`.
const TABLES: &[&str] = &[
    "stores",
    "categories",
    "items",
    "orders",
    "order_lines",
    "events",
    "consumer_positions",
    "dead_letters",
    "payment_events",
    "loyalty_accounts",
    "sync_state",
    "sync_runs",
    "perf_snapshots",
    "users",
    "api_keys",
    "audit_log",
];

/// `ANALYZE` table by table: each is bounded by its sample size, so each
/// stays within the statement timeout however large the tables grow.
pub(super) async fn maintain(pool: &Watched) -> Result<String, Error> {
    for table in TABLES {
        sqlx::raw_sql(AssertSqlSafe(format!("ANALYZE {table}")))
            .execute(observed(pool))
            .await?;
    }
    Ok(format!("postgres: ANALYZE of {} tables", TABLES.len()))
}
