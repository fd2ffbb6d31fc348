//! The checks a chaos run ends with: every acknowledgement the clients
//! got is held to, from three independent places.
//!
//! - **The event log's idempotency claims**: an order's claim names the
//!   record it was answered for, so the records carrying one key are the
//!   orders that key produced. More than one is a duplicated order; none
//!   for an acknowledged key, or another order id than the one the client
//!   was given, is a lost one. The same for each callback's claim
//!   (`payment:{event}`): a redelivery or a retry after a kill must have
//!   been answered from the claim, never appended again. Embedded, the
//!   claim is written on the record's row in `log.db`, so that file is
//!   read directly. In scale mode the claims are rows of PostgreSQL's
//!   `log_idempotency` (one per key, by its primary key), and Kafka itself
//!   may hold a record twice (an api killed between the broker's ack and
//!   marking the claim appended leaves it pending, and the retry appends
//!   the record again from the claim, with the same order id); so "once"
//!   is judged where it matters, in the store, by the next point.
//! - **The store** (`rushhour.db`, or the run's PostgreSQL schema): each
//!   acknowledged order is there, confirmed, with exactly one `status`
//!   live event (an order applied twice would have two; one in the log and
//!   not here is unconfirmed, not lost: the log is the source of truth,
//!   and the store lags it); every store order answers an acknowledged key
//!   or a key that was never answered at all; each acknowledged callback
//!   has its `payment_events` row (one per event id, by its primary key),
//!   with outcome `applied`, and its order reads `paid`.
//! - **The API**, as a client would look: `GET /v1/orders/{id}` with the
//!   staff key shows every acknowledged order confirmed, and paid when it
//!   was paid.
//!
//! Reading the stores is what makes "once" checkable at all: no API lists
//! an order's log records or payment events, and a count from the API
//! could only show that the store deduplicates, not that nothing was
//! appended twice. The SQLite files are opened read-only while the server
//! still runs (WAL readers never block its writer).

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use futures::StreamExt;
use rusqlite::{Connection, OpenFlags};
use serde::{Deserialize, Serialize};
use sqlx::postgres::PgRow;
use sqlx::{PgPool, Row};
use tokio::time::Instant;
use uuid::Uuid;

use super::ChaosError;
use super::traffic::Ledger;

/// Statuses an order may have reached without any staff action: the
/// processor confirms it; nothing else moves it during a run.
const DONE: &[&str] = &["confirmed", "in_progress", "ready", "picked_up"];
/// The store is polled this often while the run settles.
const SETTLE_POLL: Duration = Duration::from_millis(100);
/// `GET /v1/orders/{id}` in flight at once during the API check.
const API_CONCURRENCY: usize = 16;
/// Problems listed in the report (the counts cover them all).
const MAX_PROBLEMS: usize = 20;

/// What the checks found. Lost, duplicated and unconfirmed must be 0.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Checks {
    pub orders_checked: usize,
    /// Acknowledged and not in the log under its key, or not found by the
    /// API.
    pub orders_lost: usize,
    /// Extra orders: a key with more than one order in the log, an order
    /// applied twice, or a store order that answers no key sent.
    pub orders_duplicated: usize,
    /// Acknowledged and in the log, but not in the store, or not
    /// confirmed there or through the API, once settled.
    pub orders_unconfirmed: usize,
    /// Durable orders for keys that never got an answer before the run
    /// stopped waiting: allowed (the client never learnt either way).
    pub orders_durable_unanswered: usize,
    pub payments_checked: usize,
    /// Acknowledged callbacks not in the log.
    pub payments_lost: usize,
    /// Acknowledged callbacks in the log but not applied once settled: no
    /// `payment_events` row, another outcome than `applied`, or an order
    /// that does not read `paid` in the store or through the API.
    pub payments_unapplied: usize,
    /// Callbacks appended to the log more than once.
    pub payments_duplicated: usize,
    /// The first problems found, in words.
    pub problems: Vec<String>,
}

impl Checks {
    pub fn passed(&self) -> bool {
        self.orders_lost == 0
            && self.orders_duplicated == 0
            && self.orders_unconfirmed == 0
            && self.payments_lost == 0
            && self.payments_unapplied == 0
            && self.payments_duplicated == 0
    }

    fn problem(&mut self, what: String) {
        if self.problems.len() < MAX_PROBLEMS {
            self.problems.push(what);
        }
    }
}

/// Where a run's log claims and store are read from.
pub enum Source<'a> {
    /// An embedded `serve`'s data directory.
    Files { log_db: PathBuf, store_db: PathBuf },
    /// Scale mode: the claim table (in the database's default schema,
    /// rows of this run's `topic`) and the store in `schema`.
    Postgres {
        pool: &'a PgPool,
        schema: &'a str,
        topic: &'a str,
    },
}

fn pg(what: &'static str) -> impl FnOnce(sqlx::Error) -> ChaosError {
    move |source| ChaosError::Pg { what, source }
}

impl Source<'_> {
    /// The store's orders, by id.
    async fn orders(&self) -> Result<HashMap<String, StoreOrder>, ChaosError> {
        match self {
            Source::Files { store_db, .. } => store_orders(&open(store_db, "the store")?),
            Source::Postgres { pool, schema, .. } => {
                let sql = format!("SELECT id::text, status, payment_status FROM \"{schema}\".orders");
                pg_rows(pool, sql, &[], "the store's orders", |r| {
                    Ok((
                        r.try_get(0)?,
                        StoreOrder {
                            status: r.try_get(1)?,
                            payment_status: r.try_get(2)?,
                        },
                    ))
                })
                .await
            }
        }
    }

    /// What the claims and the store hold (everything but the API's views).
    async fn read(&self) -> Result<Found, ChaosError> {
        match self {
            Source::Files { log_db, store_db } => read_files(log_db, store_db),
            Source::Postgres { pool, schema, topic } => read_postgres(pool, schema, topic).await,
        }
    }
}

/// Which of `ids` the store has confirmed (or moved past): how a run
/// sees a restarted worker catch up with the orders acknowledged before
/// its kill.
pub async fn confirmed_among(pool: &PgPool, schema: &str, ids: &[Uuid]) -> Result<HashSet<Uuid>, ChaosError> {
    // A join on the unnested ids casts each id once; `id = ANY(CAST($1 AS
    // text[])::uuid[])` cast the whole array again for every row scanned
    // (measured: 285 s for 25,000 ids against 36,000 orders).
    let sql = format!(
        "SELECT o.id::text FROM \"{schema}\".orders o \
         JOIN unnest(CAST($1 AS text[])) AS wanted(id) ON o.id = wanted.id::uuid \
         WHERE o.status = ANY($2)"
    );
    let ids: Vec<String> = ids.iter().map(Uuid::to_string).collect();
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(ids)
        .bind(DONE)
        .fetch_all(pool)
        .await
        .map_err(pg("the store's orders"))?;
    let mut done = HashSet::with_capacity(rows.len());
    for r in &rows {
        let id: String = r.try_get(0).map_err(pg("the store's orders"))?;
        done.insert(Uuid::parse_str(&id).map_err(|e| ChaosError::Api(format!("order id {id}: {e}")))?);
    }
    Ok(done)
}

/// An order row as the checks need it.
#[derive(Debug)]
pub(super) struct StoreOrder {
    status: String,
    payment_status: String,
}

fn open(path: &Path, what: &'static str) -> Result<Connection, ChaosError> {
    let db = |source| ChaosError::Db { what, source };
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)
        .map_err(db)?;
    conn.busy_timeout(Duration::from_secs(5)).map_err(db)?;
    Ok(conn)
}

fn store_orders(conn: &Connection) -> Result<HashMap<String, StoreOrder>, ChaosError> {
    let db = |source| ChaosError::Db {
        what: "the store's orders",
        source,
    };
    let mut stmt = conn
        .prepare("SELECT id, status, payment_status FROM orders")
        .map_err(db)?;
    let rows = stmt
        .query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                StoreOrder {
                    status: r.get(1)?,
                    payment_status: r.get(2)?,
                },
            ))
        })
        .map_err(db)?;
    rows.collect::<Result<_, _>>().map_err(db)
}

/// How many acknowledged orders (and paid ones) the store has not
/// finished with.
fn pending(ledger: &Ledger, orders: &HashMap<String, StoreOrder>) -> usize {
    let unconfirmed = ledger
        .orders
        .values()
        .filter(|a| {
            orders
                .get(&a.id.to_string())
                .is_none_or(|o| !DONE.contains(&o.status.as_str()))
        })
        .count();
    let unpaid = ledger
        .payments
        .values()
        .filter(|id| orders.get(&id.to_string()).is_none_or(|o| o.payment_status != "paid"))
        .count();
    unconfirmed + unpaid
}

/// Wait until the store has confirmed every acknowledged order and
/// applied every acknowledged callback, or `deadline`. How long it took,
/// or `None` if it did not happen by then (the checks then say what is
/// missing).
pub async fn settle(source: &Source<'_>, ledger: &Ledger, deadline: Instant) -> Result<Option<Duration>, ChaosError> {
    let start = Instant::now();
    loop {
        if pending(ledger, &source.orders().await?) == 0 {
            return Ok(Some(start.elapsed()));
        }
        if Instant::now() >= deadline {
            return Ok(None);
        }
        tokio::time::sleep(SETTLE_POLL).await;
    }
}

/// The server the API check reads from.
pub struct Api<'a> {
    pub client: &'a reqwest::Client,
    pub base: &'a str,
    pub staff_key: &'a str,
}

#[derive(Debug, Deserialize)]
pub(super) struct OrderView {
    status: String,
    payment_status: String,
}

/// `GET /v1/orders/{id}`: the view, or `None` for a 404.
async fn api_order(api: &Api<'_>, id: Uuid) -> Result<Option<OrderView>, ChaosError> {
    let url = format!("{}/v1/orders/{id}", api.base);
    let resp = api
        .client
        .get(&url)
        .bearer_auth(api.staff_key)
        .send()
        .await
        .map_err(ChaosError::Http)?;
    match resp.status() {
        reqwest::StatusCode::NOT_FOUND => Ok(None),
        reqwest::StatusCode::OK => resp.json().await.map(Some).map_err(ChaosError::Http),
        other => Err(ChaosError::Api(format!("GET {url} answered {other}"))),
    }
}

/// What the files and the API hold, read once the run has settled.
#[derive(Debug, Default)]
pub(super) struct Found {
    /// Idempotency claim → the keys of the log records carrying it.
    pub claims: HashMap<String, Vec<String>>,
    /// Order records in the log without a claim.
    pub unclaimed_orders: Vec<String>,
    /// The store's orders, by id.
    pub orders: HashMap<String, StoreOrder>,
    /// `status` live events per order id.
    pub status_events: HashMap<String, i64>,
    /// Event id → (order id, outcome) from `payment_events`.
    pub payment_events: HashMap<String, (String, String)>,
    /// `GET /v1/orders/{id}` for every acknowledged order (`None`: 404).
    pub views: HashMap<Uuid, Option<OrderView>>,
}

/// Run every check. `key_prefix` is what each of the run's idempotency
/// keys starts with.
pub async fn check(
    source: &Source<'_>,
    ledger: &Ledger,
    key_prefix: &str,
    api: &Api<'_>,
) -> Result<Checks, ChaosError> {
    let mut found = source.read().await?;
    found.views = api_views(api, ledger).await?;
    Ok(judge(&found, ledger, key_prefix))
}

fn read_files(log_db: &Path, store_db: &Path) -> Result<Found, ChaosError> {
    let mut found = Found::default();
    let log = open(log_db, "the event log")?;
    let db = |source| ChaosError::Db {
        what: "the event log's records",
        source,
    };
    let mut stmt = log.prepare("SELECT idem_key, key FROM records").map_err(db)?;
    let mut rows = stmt.query([]).map_err(db)?;
    while let Some(r) = rows.next().map_err(db)? {
        let (claim, key): (Option<String>, String) = (r.get(0).map_err(db)?, r.get(1).map_err(db)?);
        match claim {
            Some(claim) => found.claims.entry(claim).or_default().push(key),
            // Every order of the run was sent with a key; a payment
            // record's key has a `/`.
            None if !key.contains('/') => found.unclaimed_orders.push(key),
            None => {}
        }
    }

    let store = open(store_db, "the store")?;
    found.orders = store_orders(&store)?;
    let db = |source| ChaosError::Db {
        what: "the store's live events",
        source,
    };
    let mut stmt = store
        .prepare("SELECT order_id, count(*) FROM events WHERE kind = 'status' GROUP BY order_id")
        .map_err(db)?;
    let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).map_err(db)?;
    found.status_events = rows.collect::<Result<_, _>>().map_err(db)?;
    let db = |source| ChaosError::Db {
        what: "the store's payment events",
        source,
    };
    let mut stmt = store
        .prepare("SELECT event_id, order_id, outcome FROM payment_events")
        .map_err(db)?;
    let rows = stmt
        .query_map([], |r| Ok((r.get(0)?, (r.get(1)?, r.get(2)?))))
        .map_err(db)?;
    found.payment_events = rows.collect::<Result<_, _>>().map_err(db)?;
    Ok(found)
}

/// Run `sql` with the text parameters `binds` and map each row with `f`.
/// The SQL names only the run's own schema (`rh_chaos_<hex>`), never
/// input.
async fn pg_rows<C, T>(
    pool: &PgPool,
    sql: String,
    binds: &[&str],
    what: &'static str,
    f: impl Fn(&PgRow) -> Result<T, sqlx::Error>,
) -> Result<C, ChaosError>
where
    C: FromIterator<T>,
{
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
    for b in binds {
        query = query.bind(*b);
    }
    let rows = query.fetch_all(pool).await.map_err(pg(what))?;
    rows.iter().map(f).collect::<Result<C, _>>().map_err(pg(what))
}

async fn read_postgres(pool: &PgPool, schema: &str, topic: &str) -> Result<Found, ChaosError> {
    let mut found = Found::default();
    // The claims of every topic share the table.
    let sql = "SELECT key, record_key FROM log_idempotency WHERE topic = $1".to_owned();
    let claims: Vec<(String, String)> = pg_rows(pool, sql, &[topic], "the log's idempotency claims", |r| {
        Ok((r.try_get(0)?, r.try_get(1)?))
    })
    .await?;
    for (claim, key) in claims {
        found.claims.entry(claim).or_default().push(key);
    }
    found.orders = Source::Postgres { pool, schema, topic }.orders().await?;
    let sql =
        format!("SELECT order_id::text, count(*) FROM \"{schema}\".events WHERE kind = 'status' GROUP BY order_id");
    found.status_events = pg_rows(pool, sql, &[], "the store's live events", |r| {
        Ok((r.try_get(0)?, r.try_get(1)?))
    })
    .await?;
    let sql = format!("SELECT event_id, order_id::text, outcome FROM \"{schema}\".payment_events");
    found.payment_events = pg_rows(pool, sql, &[], "the store's payment events", |r| {
        Ok((r.try_get(0)?, (r.try_get(1)?, r.try_get(2)?)))
    })
    .await?;
    Ok(found)
}

/// Hold what was found to what the ledger says was acknowledged. Pure,
/// so each rule is tested with the fault it is there to catch.
pub(super) fn judge(found: &Found, ledger: &Ledger, key_prefix: &str) -> Checks {
    let Found {
        claims,
        unclaimed_orders,
        orders,
        status_events,
        payment_events,
        views,
    } = found;
    let mut checks = Checks {
        orders_checked: ledger.orders.len(),
        payments_checked: ledger.payments.len(),
        ..Checks::default()
    };

    // One key, one order.
    let mut keys: Vec<(&String, &Vec<String>)> = claims
        .iter()
        .filter(|(claim, records)| claim.starts_with(key_prefix) && records.len() > 1)
        .collect();
    keys.sort();
    for (key, records) in keys {
        checks.orders_duplicated += records.len() - 1;
        checks.problem(format!(
            "key {key} has {} orders in the log: {records:?}",
            records.len()
        ));
    }
    for id in unclaimed_orders {
        checks.orders_duplicated += 1;
        checks.problem(format!("order {id} is in the log without an idempotency key"));
    }

    // Every acknowledged order: in the log under its key, in the store,
    // confirmed, applied once, and so through the API.
    let mut acked: Vec<(&String, &super::traffic::Acked)> = ledger.orders.iter().collect();
    acked.sort_by_key(|(key, _)| *key);
    for (key, order) in acked {
        let id = order.id.to_string();
        let in_log = claims.get(key).is_some_and(|r| r.contains(&id));
        let view = views.get(&order.id).and_then(Option::as_ref);
        let lost = if !in_log {
            Some(format!(
                "order {id} (key {key}) was acknowledged but the log has {:?} under its key",
                claims.get(key)
            ))
        } else if view.is_none() {
            Some(format!(
                "order {id} (key {key}) was acknowledged but GET /v1/orders/{id} answers 404"
            ))
        } else {
            None
        };
        if let Some(why) = lost {
            checks.orders_lost += 1;
            checks.problem(why);
            continue;
        }
        let in_store = orders.get(&id).map_or("missing", |o| o.status.as_str());
        let seen = view.map_or("", |v| v.status.as_str());
        if !DONE.contains(&in_store) || !DONE.contains(&seen) {
            checks.orders_unconfirmed += 1;
            checks.problem(format!(
                "order {id} is {in_store} in the store and {seen} through the API"
            ));
            continue;
        }
        let events = status_events.get(&id).copied().unwrap_or(0);
        if events > 1 {
            checks.orders_duplicated += 1;
            checks.problem(format!("order {id} has {events} status events: applied {events} times"));
        } else if events == 0 {
            checks.orders_unconfirmed += 1;
            checks.problem(format!("order {id} has no status event"));
        }
    }

    // Every store order answers a key: acknowledged, or never answered.
    let acked_ids: HashSet<String> = ledger.orders.values().map(|a| a.id.to_string()).collect();
    let unanswered: HashSet<&str> = ledger.orders_unanswered.iter().map(String::as_str).collect();
    let order_key: HashMap<&str, &str> = claims
        .iter()
        .flat_map(|(claim, records)| records.iter().map(move |r| (r.as_str(), claim.as_str())))
        .collect();
    let mut extra: Vec<&String> = orders.keys().filter(|id| !acked_ids.contains(*id)).collect();
    extra.sort();
    for id in extra {
        match order_key.get(id.as_str()) {
            Some(key) if unanswered.contains(key) => checks.orders_durable_unanswered += 1,
            // Counted above, with the key or the record.
            Some(key) if claims.get(*key).is_some_and(|r| r.len() > 1) => {}
            None if unclaimed_orders.contains(id) => {}
            key => {
                checks.orders_duplicated += 1;
                checks.problem(format!(
                    "order {id} (key {key:?}) is in the store but was never acknowledged"
                ));
            }
        }
    }

    // Callbacks: appended once, recorded, applied, visible.
    let mut appended_twice: Vec<(&String, usize)> = claims
        .iter()
        .filter(|(claim, records)| claim.starts_with("payment:") && records.len() > 1)
        .map(|(claim, records)| (claim, records.len()))
        .collect();
    appended_twice.sort();
    for (claim, n) in appended_twice {
        checks.payments_duplicated += n - 1;
        checks.problem(format!("callback {claim} was appended to the log {n} times"));
    }
    let mut paid: Vec<(&String, &Uuid)> = ledger.payments.iter().collect();
    paid.sort();
    for (event, order) in paid {
        let id = order.to_string();
        if !claims.contains_key(&format!("payment:{event}")) {
            checks.payments_lost += 1;
            checks.problem(format!("callback {event} was acknowledged but is not in the log"));
            continue;
        }
        let unapplied = match payment_events.get(event) {
            None => Some(format!("callback {event} was acknowledged but never applied")),
            Some((to, _)) if *to != id => Some(format!("callback {event} was applied to {to}, not {id}")),
            Some((_, outcome)) if outcome != "applied" => {
                Some(format!("callback {event} was recorded as {outcome}, not applied"))
            }
            Some(_) if orders.get(&id).is_none_or(|o| o.payment_status != "paid") => Some(format!(
                "callback {event} was applied but order {id} is {} in the store",
                orders.get(&id).map_or("missing", |o| o.payment_status.as_str())
            )),
            Some(_)
                if views
                    .get(order)
                    .and_then(Option::as_ref)
                    .is_none_or(|v| v.payment_status != "paid") =>
            {
                Some(format!(
                    "callback {event} was applied but GET /v1/orders/{id} does not say paid"
                ))
            }
            Some(_) => None,
        };
        if let Some(why) = unapplied {
            checks.payments_unapplied += 1;
            checks.problem(why);
        }
    }
    checks
}

/// Every acknowledged order through the API, a few at a time.
async fn api_views(api: &Api<'_>, ledger: &Ledger) -> Result<HashMap<Uuid, Option<OrderView>>, ChaosError> {
    let ids: Vec<Uuid> = ledger.orders.values().map(|a| a.id).collect();
    let mut views = HashMap::with_capacity(ids.len());
    let mut stream = futures::stream::iter(ids)
        .map(|id| async move { api_order(api, id).await.map(|v| (id, v)) })
        .buffer_unordered(API_CONCURRENCY);
    while let Some(r) = stream.next().await {
        let (id, view) = r?;
        views.insert(id, view);
    }
    Ok(views)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chaos::traffic::Acked;

    const PREFIX: &str = "chaos-t-";

    fn id(n: u128) -> Uuid {
        Uuid::from_u128(n)
    }

    fn acked(n: u128) -> Acked {
        Acked {
            id: id(n),
            amount: 420,
            currency: "USD".into(),
        }
    }

    fn key(n: u32) -> String {
        format!("{PREFIX}{n}")
    }

    /// An order as a settled run leaves it: its claim on one record, in
    /// the store confirmed with one status event, and so through the API.
    fn settled(found: &mut Found, ledger: &mut Ledger, k: u32, n: u128) {
        ledger.orders.insert(key(k), acked(n));
        found.claims.insert(key(k), vec![id(n).to_string()]);
        found.orders.insert(
            id(n).to_string(),
            StoreOrder {
                status: "confirmed".into(),
                payment_status: "unpaid".into(),
            },
        );
        found.status_events.insert(id(n).to_string(), 1);
        found.views.insert(
            id(n),
            Some(OrderView {
                status: "confirmed".into(),
                payment_status: "unpaid".into(),
            }),
        );
    }

    /// A callback for order `n` acknowledged and applied once.
    fn paid(found: &mut Found, ledger: &mut Ledger, event: &str, n: u128) {
        ledger.payments.insert(event.into(), id(n));
        found
            .claims
            .insert(format!("payment:{event}"), vec![format!("{}/payment/{event}", id(n))]);
        found
            .payment_events
            .insert(event.into(), (id(n).to_string(), "applied".into()));
        found.orders.get_mut(&id(n).to_string()).unwrap().payment_status = "paid".into();
        found.views.get_mut(&id(n)).unwrap().as_mut().unwrap().payment_status = "paid".into();
    }

    fn clean() -> (Found, Ledger) {
        let (mut found, mut ledger) = (Found::default(), Ledger::default());
        for n in 0..3 {
            settled(&mut found, &mut ledger, n, u128::from(n) + 1);
        }
        paid(&mut found, &mut ledger, "evt_0", 1);
        // A key never answered whose order is durable: allowed.
        ledger.orders_unanswered.push(key(9));
        found.claims.insert(key(9), vec![id(99).to_string()]);
        found.orders.insert(
            id(99).to_string(),
            StoreOrder {
                status: "confirmed".into(),
                payment_status: "unpaid".into(),
            },
        );
        (found, ledger)
    }

    #[test]
    fn a_clean_run_passes() {
        let (found, ledger) = clean();
        let checks = judge(&found, &ledger, PREFIX);
        assert!(checks.passed(), "{checks:?}");
        assert_eq!((checks.orders_checked, checks.payments_checked), (3, 1));
        assert_eq!(checks.orders_durable_unanswered, 1);
        assert!(checks.problems.is_empty());
    }

    #[test]
    fn every_planted_fault_is_counted_once() {
        let (mut found, mut ledger) = clean();
        // Key 0 produced a second order, which the store applied too.
        found.claims.get_mut(&key(0)).unwrap().push(id(50).to_string());
        found.orders.insert(
            id(50).to_string(),
            StoreOrder {
                status: "confirmed".into(),
                payment_status: "unpaid".into(),
            },
        );
        // Key 1's order is not in the log under its key: lost.
        found.claims.remove(&key(1));
        // Key 2's order was applied twice.
        found.status_events.insert(id(3).to_string(), 2);
        // Key 3's order is durable but the store never applied it.
        ledger.orders.insert(key(3), acked(4));
        found.claims.insert(key(3), vec![id(4).to_string()]);
        found.views.insert(
            id(4),
            Some(OrderView {
                status: "placed".into(),
                payment_status: "unpaid".into(),
            }),
        );
        // An order in the store that no key sent, and one in the log
        // without a claim.
        found.orders.insert(
            id(60).to_string(),
            StoreOrder {
                status: "confirmed".into(),
                payment_status: "unpaid".into(),
            },
        );
        found.unclaimed_orders.push(id(70).to_string());
        // A callback not in the log, one appended twice, one never applied.
        ledger.payments.insert("evt_lost".into(), id(1));
        found
            .claims
            .get_mut("payment:evt_0")
            .unwrap()
            .push(format!("{}/payment/evt_0", id(1)));
        ledger.payments.insert("evt_unapplied".into(), id(1));
        found.claims.insert(
            "payment:evt_unapplied".into(),
            vec![format!("{}/payment/evt_unapplied", id(1))],
        );

        let checks = judge(&found, &ledger, PREFIX);
        assert!(!checks.passed());
        assert_eq!(checks.orders_lost, 1, "{checks:#?}");
        assert_eq!(checks.orders_duplicated, 4, "{checks:#?}");
        assert_eq!(checks.orders_unconfirmed, 1, "{checks:#?}");
        assert_eq!(checks.orders_durable_unanswered, 1, "{checks:#?}");
        assert_eq!(checks.payments_lost, 1, "{checks:#?}");
        assert_eq!(checks.payments_duplicated, 1, "{checks:#?}");
        assert_eq!(checks.payments_unapplied, 1, "{checks:#?}");
        assert_eq!(checks.problems.len(), 9, "{checks:#?}");
    }

    #[test]
    fn an_order_the_api_cannot_find_is_lost_and_one_unpaid_there_is_unapplied() {
        let (mut found, ledger) = clean();
        found.views.insert(id(2), None);
        found.views.get_mut(&id(1)).unwrap().as_mut().unwrap().payment_status = "unpaid".into();
        let checks = judge(&found, &ledger, PREFIX);
        assert_eq!((checks.orders_lost, checks.payments_unapplied), (1, 1), "{checks:#?}");
    }
}
