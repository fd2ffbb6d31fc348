//! `PointsLedger` on `SqliteStore`: one award per order
//! (`loyalty_awards`, `0005_fleet_and_points.sql`), inserted with the
//! account's new points in one writer transaction.

use async_trait::async_trait;
use domain::ids::OrderId;
use domain::ports::{PointsAward, PointsLedger, PortResult};
use rusqlite::{Row, params};

use super::rows::order_id;
use super::{Error, SqliteStore};

const COLUMNS: &str = "order_id, account_id, points, awarded_at, reported_at";

fn award_row(r: &Row<'_>) -> Result<PointsAward, Error> {
    Ok(PointsAward {
        order_id: order_id(&r.get::<_, String>(0)?)?,
        account_id: r.get(1)?,
        points: r.get(2)?,
        awarded_at: r.get(3)?,
        reported_at: r.get(4)?,
    })
}

#[async_trait]
impl PointsLedger for SqliteStore {
    async fn award_points(&self, a: &PointsAward) -> PortResult<bool> {
        let a = a.clone();
        self.write(move |c| {
            let tx = c.transaction()?;
            let inserted = tx
                .prepare_cached(&format!(
                    "INSERT INTO loyalty_awards ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (order_id) DO NOTHING"
                ))?
                .execute(params![
                    a.order_id.to_string(),
                    a.account_id,
                    a.points,
                    a.awarded_at,
                    a.reported_at
                ])?
                > 0;
            if inserted {
                tx.prepare_cached("UPDATE loyalty_accounts SET points = points + ?1 WHERE id = ?2")?
                    .execute(params![a.points, a.account_id])?;
            }
            tx.commit()?;
            Ok::<_, Error>(inserted)
        })
        .await
    }

    async fn order_award(&self, order: OrderId) -> PortResult<Option<PointsAward>> {
        self.read(move |c| {
            let mut stmt = c.prepare_cached(&format!("SELECT {COLUMNS} FROM loyalty_awards WHERE order_id = ?1"))?;
            let mut rows = stmt.query([order.to_string()])?;
            match rows.next()? {
                Some(r) => Ok(Some(award_row(r)?)),
                None => Ok(None),
            }
        })
        .await
    }

    async fn account_awards(&self, account: &str, limit: u32) -> PortResult<Vec<PointsAward>> {
        let account = account.to_owned();
        self.read(move |c| {
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {COLUMNS} FROM loyalty_awards WHERE account_id = ?1 ORDER BY awarded_at DESC, order_id DESC LIMIT ?2"
            ))?;
            let mut rows = stmt.query(params![account, limit])?;
            let mut out = Vec::new();
            while let Some(r) = rows.next()? {
                out.push(award_row(r)?);
            }
            Ok(out)
        })
        .await
    }

    async fn mark_reported(&self, order: OrderId, at: i64) -> PortResult<()> {
        self.write(move |c| {
            c.prepare_cached("UPDATE loyalty_awards SET reported_at = ?2 WHERE order_id = ?1 AND reported_at IS NULL")?
                .execute(params![order.to_string(), at])?;
            Ok::<_, Error>(())
        })
        .await
    }
}
