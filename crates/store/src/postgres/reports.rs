//! `ReportStore` on PostgreSQL: the same aggregate statements as SQLite's
//! (`sqlite/reports.rs`), window functions for the percentiles, so both
//! backends compute the nearest-rank p90 alike; the reads that tolerate lag
//! go to the replica when there is one.

use async_trait::async_trait;
use dbkit::observe::observed;
use domain::ids::StoreId;
use domain::ports::{DayRows, HourRow, PopularItem, PortError, PortResult, PrepSample, ReportStore};

use super::{Error, PgStore};
use crate::decode::{station, u64_of};

#[async_trait]
impl ReportStore for PgStore {
    async fn prep_samples(&self, store: &StoreId, since: i64, per_station: u32) -> PortResult<Vec<PrepSample>> {
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT station, ms FROM (SELECT l.station AS station, l.done_at - o.confirmed_at AS ms, \
             ROW_NUMBER() OVER (PARTITION BY l.station ORDER BY l.done_at DESC) AS rn \
             FROM order_lines l JOIN orders o ON o.id = l.order_id \
             WHERE l.done_at >= $2 AND o.store_id = $1 AND o.confirmed_at IS NOT NULL) AS s WHERE rn <= $3",
        )
        .bind(&store.0)
        .bind(since)
        .bind(i64::from(per_station))
        .fetch_all(observed(self.reader()))
        .await
        .map_err(Error::from)?;
        Ok(rows
            .into_iter()
            .map(|(s, ms)| {
                Ok(PrepSample {
                    station: station(&s)?,
                    ms,
                })
            })
            .collect::<Result<_, Error>>()?)
    }

    async fn day_rows(&self, store: &StoreId, start: i64, end: i64) -> PortResult<DayRows> {
        type Counts = (i64, i64, i64, i64, i64, i64);
        let counts: Vec<Counts> = sqlx::query_as(
            "SELECT (placed_at - $1) / 3600000 AS h, COUNT(*), \
             COUNT(*) FILTER (WHERE ready_at IS NOT NULL), COUNT(*) FILTER (WHERE status = 'picked_up'), \
             COUNT(*) FILTER (WHERE status = 'cancelled'), COUNT(*) FILTER (WHERE status = 'rejected') \
             FROM orders WHERE store_id = $3 AND placed_at >= $1 AND placed_at < $2 GROUP BY h ORDER BY h",
        )
        .bind(start)
        .bind(end)
        .bind(&store.0)
        .fetch_all(observed(self.reader()))
        .await
        .map_err(Error::from)?;
        let mut out = DayRows::default();
        for (h, orders, ready, picked_up, cancelled, rejected) in counts {
            out.hours.push(HourRow {
                hour: u32::try_from(h).map_err(|_| PortError::Invalid(format!("hour {h}")))?,
                orders: u64_of("orders", orders).map_err(Error::from)?,
                ready: u64_of("ready", ready).map_err(Error::from)?,
                picked_up: u64_of("picked up", picked_up).map_err(Error::from)?,
                cancelled: u64_of("cancelled", cancelled).map_err(Error::from)?,
                rejected: u64_of("rejected", rejected).map_err(Error::from)?,
                avg_ready_ms: None,
                p90_ready_ms: None,
            });
        }
        let times: Vec<(i64, Option<f64>, Option<i64>)> = sqlx::query_as(
            "WITH d AS (SELECT (placed_at - $1) / 3600000 AS h, ready_at - placed_at AS ms \
             FROM orders WHERE store_id = $3 AND placed_at >= $1 AND placed_at < $2 AND ready_at IS NOT NULL), \
             a AS (SELECT h, ms FROM d UNION ALL SELECT -1, ms FROM d), \
             r AS (SELECT h, ms, ROW_NUMBER() OVER (PARTITION BY h ORDER BY ms) AS rn, \
                   COUNT(*) OVER (PARTITION BY h) AS n FROM a) \
             SELECT h, AVG(ms)::float8, MAX(CASE WHEN rn = (9 * n + 9) / 10 THEN ms END) FROM r GROUP BY h ORDER BY h",
        )
        .bind(start)
        .bind(end)
        .bind(&store.0)
        .fetch_all(observed(self.reader()))
        .await
        .map_err(Error::from)?;
        for (h, avg, p90) in times {
            let p90 = p90.map(|v| v as f64);
            if h < 0 {
                (out.avg_ready_ms, out.p90_ready_ms) = (avg, p90);
            } else if let Some(row) = out.hours.iter_mut().find(|x| i64::from(x.hour) == h) {
                (row.avg_ready_ms, row.p90_ready_ms) = (avg, p90);
            }
        }
        Ok(out)
    }

    async fn top_items(&self, store: &StoreId, since: i64, limit: u32) -> PortResult<Vec<PopularItem>> {
        let rows: Vec<(String, String, i64)> = sqlx::query_as(
            "SELECT l.sku, MAX(l.name), SUM(l.qty)::bigint AS n FROM orders o JOIN order_lines l ON l.order_id = o.id \
             WHERE o.store_id = $1 AND o.placed_at >= $2 AND o.status NOT IN ('rejected', 'cancelled') \
             GROUP BY l.sku ORDER BY n DESC, l.sku LIMIT $3",
        )
        .bind(&store.0)
        .bind(since)
        .bind(i64::from(limit))
        .fetch_all(observed(self.reader()))
        .await
        .map_err(Error::from)?;
        rows.into_iter()
            .map(|(sku, name, n)| {
                Ok(PopularItem {
                    sku,
                    name,
                    count: u64_of("quantity sold", n).map_err(Error::from)?,
                })
            })
            .collect::<Result<_, Error>>()
            .map_err(Into::into)
    }

    async fn save_popular(&self, store: &StoreId, items: &[PopularItem], computed_at: i64) -> PortResult<()> {
        let skus: Vec<&str> = items.iter().map(|i| i.sku.as_str()).collect();
        let names: Vec<&str> = items.iter().map(|i| i.name.as_str()).collect();
        let counts = items
            .iter()
            .map(|i| crate::decode::i64_of("quantity sold", i.count))
            .collect::<Result<Vec<_>, _>>()
            .map_err(Error::from)?;
        let mut tx = self.primary.begin().await.map_err(Error::from)?;
        sqlx::query("DELETE FROM popular_items WHERE store_id = $1")
            .bind(&store.0)
            .execute(observed(&mut *tx))
            .await
            .map_err(Error::from)?;
        sqlx::query(
            "INSERT INTO popular_items (store_id, rank, sku, name, count, computed_at) \
             SELECT $1, u.n - 1, u.sku, u.name, u.count, $5 \
             FROM UNNEST($2::text[], $3::text[], $4::bigint[]) WITH ORDINALITY AS u(sku, name, count, n)",
        )
        .bind(&store.0)
        .bind(&skus)
        .bind(&names)
        .bind(&counts)
        .bind(computed_at)
        .execute(observed(&mut *tx))
        .await
        .map_err(Error::from)?;
        tx.commit().await.map_err(Error::from)?;
        Ok(())
    }

    async fn popular(&self, store: &StoreId) -> PortResult<(Vec<PopularItem>, Option<i64>)> {
        let rows: Vec<(String, String, i64, i64)> =
            sqlx::query_as("SELECT sku, name, count, computed_at FROM popular_items WHERE store_id = $1 ORDER BY rank")
                .bind(&store.0)
                .fetch_all(observed(self.reader()))
                .await
                .map_err(Error::from)?;
        let at = rows.first().map(|r| r.3);
        let items = rows
            .into_iter()
            .map(|(sku, name, n, _)| {
                Ok(PopularItem {
                    sku,
                    name,
                    count: u64_of("quantity sold", n).map_err(Error::from)?,
                })
            })
            .collect::<Result<_, Error>>()?;
        Ok((items, at))
    }
}
