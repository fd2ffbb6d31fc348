//! `ReportStore` on SQLite: prep samples, a day's figures and best
//! sellers, each one or two aggregate statements (window functions for the
//! percentiles, SQLite ≥ 3.25), so a busy day costs no row per order in Rust.

use async_trait::async_trait;
use domain::ids::StoreId;
use domain::ports::{DayRows, HourRow, PopularItem, PortResult, PrepSample, ReportStore};
use rusqlite::{TransactionBehavior, params};

use super::{Error, SqliteStore};
use crate::decode::{station, u64_of};

/// Time to ready per elapsed hour (and, as hour -1, over the whole span):
/// mean and nearest-rank 90th percentile, rank `ceil(0.9 n)` =
/// `(9n + 9) / 10` in integer arithmetic.
pub(crate) const READY_TIMES: &str = "WITH d AS (SELECT (placed_at - ?1) / 3600000 AS h, ready_at - placed_at AS ms \
     FROM orders WHERE store_id = ?3 AND placed_at >= ?1 AND placed_at < ?2 AND ready_at IS NOT NULL), \
     a AS (SELECT h, ms FROM d UNION ALL SELECT -1, ms FROM d), \
     r AS (SELECT h, ms, ROW_NUMBER() OVER (PARTITION BY h ORDER BY ms) AS rn, COUNT(*) OVER (PARTITION BY h) AS n FROM a) \
     SELECT h, AVG(ms), MAX(CASE WHEN rn = (9 * n + 9) / 10 THEN ms END) FROM r GROUP BY h ORDER BY h";

#[async_trait]
impl ReportStore for SqliteStore {
    async fn prep_samples(&self, store: &StoreId, since: i64, per_station: u32) -> PortResult<Vec<PrepSample>> {
        let store = store.0.clone();
        self.read(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT station, ms FROM (SELECT l.station AS station, l.done_at - o.confirmed_at AS ms, \
                 ROW_NUMBER() OVER (PARTITION BY l.station ORDER BY l.done_at DESC) AS rn \
                 FROM order_lines l JOIN orders o ON o.id = l.order_id \
                 WHERE l.done_at >= ?2 AND o.store_id = ?1 AND o.confirmed_at IS NOT NULL) WHERE rn <= ?3",
            )?;
            let mut rows = stmt.query(params![store, since, per_station])?;
            let mut out = Vec::new();
            while let Some(r) = rows.next()? {
                out.push(PrepSample {
                    station: station(&r.get::<_, String>(0)?)?,
                    ms: r.get(1)?,
                });
            }
            Ok(out)
        })
        .await
    }

    async fn day_rows(&self, store: &StoreId, start: i64, end: i64) -> PortResult<DayRows> {
        let store = store.0.clone();
        self.read(move |c| {
            let tx = c.unchecked_transaction()?;
            let mut out = DayRows::default();
            {
                let mut stmt = tx.prepare_cached(
                    "SELECT (placed_at - ?1) / 3600000 AS h, COUNT(*), \
                     SUM(CASE WHEN ready_at IS NOT NULL THEN 1 ELSE 0 END), \
                     SUM(CASE WHEN status = 'picked_up' THEN 1 ELSE 0 END), \
                     SUM(CASE WHEN status = 'cancelled' THEN 1 ELSE 0 END), \
                     SUM(CASE WHEN status = 'rejected' THEN 1 ELSE 0 END) \
                     FROM orders WHERE store_id = ?3 AND placed_at >= ?1 AND placed_at < ?2 GROUP BY h ORDER BY h",
                )?;
                let mut rows = stmt.query(params![start, end, store])?;
                while let Some(r) = rows.next()? {
                    out.hours.push(HourRow {
                        hour: u32::try_from(r.get::<_, i64>(0)?).map_err(|_| Error::Invalid("negative hour".into()))?,
                        orders: u64_of("orders", r.get(1)?)?,
                        ready: u64_of("ready", r.get(2)?)?,
                        picked_up: u64_of("picked up", r.get(3)?)?,
                        cancelled: u64_of("cancelled", r.get(4)?)?,
                        rejected: u64_of("rejected", r.get(5)?)?,
                        avg_ready_ms: None,
                        p90_ready_ms: None,
                    });
                }
            }
            let mut stmt = tx.prepare_cached(READY_TIMES)?;
            let mut rows = stmt.query(params![start, end, store])?;
            while let Some(r) = rows.next()? {
                let h: i64 = r.get(0)?;
                let avg: Option<f64> = r.get(1)?;
                let p90: Option<f64> = r.get::<_, Option<i64>>(2)?.map(|v| v as f64);
                if h < 0 {
                    (out.avg_ready_ms, out.p90_ready_ms) = (avg, p90);
                } else if let Some(row) = out.hours.iter_mut().find(|x| i64::from(x.hour) == h) {
                    (row.avg_ready_ms, row.p90_ready_ms) = (avg, p90);
                }
            }
            Ok(out)
        })
        .await
    }

    async fn top_items(&self, store: &StoreId, since: i64, limit: u32) -> PortResult<Vec<PopularItem>> {
        let store = store.0.clone();
        self.read(move |c| {
            // `orders_by_store_placed` bounds the orders; their lines by key.
            let mut stmt = c.prepare_cached(
                "SELECT l.sku, MAX(l.name), SUM(l.qty) AS n FROM orders o JOIN order_lines l ON l.order_id = o.id \
                 WHERE o.store_id = ?1 AND o.placed_at >= ?2 AND o.status NOT IN ('rejected', 'cancelled') \
                 GROUP BY l.sku ORDER BY n DESC, l.sku LIMIT ?3",
            )?;
            let mut rows = stmt.query(params![store, since, limit])?;
            let mut out = Vec::new();
            while let Some(r) = rows.next()? {
                out.push(PopularItem {
                    sku: r.get(0)?,
                    name: r.get(1)?,
                    count: u64_of("quantity sold", r.get(2)?)?,
                });
            }
            Ok(out)
        })
        .await
    }

    async fn save_popular(&self, store: &StoreId, items: &[PopularItem], computed_at: i64) -> PortResult<()> {
        let (store, items) = (store.0.clone(), items.to_vec());
        self.write(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            tx.execute("DELETE FROM popular_items WHERE store_id = ?1", params![store])?;
            {
                let mut stmt = tx.prepare_cached(
                    "INSERT INTO popular_items (store_id, rank, sku, name, count, computed_at) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )?;
                for (rank, i) in items.iter().enumerate() {
                    let count = crate::decode::i64_of("quantity sold", i.count)?;
                    stmt.execute(params![store, rank as i64, i.sku, i.name, count, computed_at])?;
                }
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn popular(&self, store: &StoreId) -> PortResult<(Vec<PopularItem>, Option<i64>)> {
        let store = store.0.clone();
        self.read(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT sku, name, count, computed_at FROM popular_items WHERE store_id = ?1 ORDER BY rank",
            )?;
            let mut rows = stmt.query(params![store])?;
            let (mut out, mut at) = (Vec::new(), None);
            while let Some(r) = rows.next()? {
                out.push(PopularItem {
                    sku: r.get(0)?,
                    name: r.get(1)?,
                    count: u64_of("quantity sold", r.get(2)?)?,
                });
                at = Some(r.get(3)?);
            }
            Ok((out, at))
        })
        .await
    }
}
