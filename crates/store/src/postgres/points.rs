//! `PointsLedger` on `PgStore`: one award per order (`loyalty_awards`,
//! `migrations/postgres/0005_fleet_and_points.sql`), inserted with the
//! account's new points in one transaction; read from the primary, so a
//! relay never takes a lagging replica's "no award yet" for an answer.

use async_trait::async_trait;
use domain::ids::OrderId;
use domain::ports::{PointsAward, PointsLedger, PortResult};
use sqlx::Row;
use sqlx::postgres::PgRow;

use super::{Error, PgStore};

const COLUMNS: &str = "order_id, account_id, points, awarded_at, reported_at";

fn award_row(r: &PgRow) -> Result<PointsAward, Error> {
    Ok(PointsAward {
        order_id: OrderId(r.try_get(0)?),
        account_id: r.try_get(1)?,
        points: r.try_get(2)?,
        awarded_at: r.try_get(3)?,
        reported_at: r.try_get(4)?,
    })
}

#[async_trait]
impl PointsLedger for PgStore {
    async fn award_points(&self, a: &PointsAward) -> PortResult<bool> {
        let mut tx = self.primary.begin().await.map_err(Error::from)?;
        let inserted = sqlx::query(
            "INSERT INTO loyalty_awards (order_id, account_id, points, awarded_at, reported_at) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (order_id) DO NOTHING",
        )
        .bind(a.order_id.0)
        .bind(&a.account_id)
        .bind(a.points)
        .bind(a.awarded_at)
        .bind(a.reported_at)
        .execute(&mut *tx)
        .await
        .map_err(Error::from)?
        .rows_affected()
            > 0;
        if inserted {
            sqlx::query("UPDATE loyalty_accounts SET points = points + $1 WHERE id = $2")
                .bind(a.points)
                .bind(&a.account_id)
                .execute(&mut *tx)
                .await
                .map_err(Error::from)?;
        }
        tx.commit().await.map_err(Error::from)?;
        Ok(inserted)
    }

    async fn order_award(&self, order: OrderId) -> PortResult<Option<PointsAward>> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM loyalty_awards WHERE order_id = $1"
        )))
        .bind(order.0)
        .fetch_optional(&self.primary)
        .await
        .map_err(Error::from)?;
        Ok(row.as_ref().map(award_row).transpose()?)
    }

    async fn account_awards(&self, account: &str, limit: u32) -> PortResult<Vec<PointsAward>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM loyalty_awards WHERE account_id = $1 \
             ORDER BY awarded_at DESC, order_id DESC LIMIT $2"
        )))
        .bind(account)
        .bind(i64::from(limit))
        .fetch_all(&self.primary)
        .await
        .map_err(Error::from)?;
        Ok(rows.iter().map(award_row).collect::<Result<_, _>>()?)
    }

    async fn mark_reported(&self, order: OrderId, at: i64) -> PortResult<()> {
        sqlx::query("UPDATE loyalty_awards SET reported_at = $2 WHERE order_id = $1 AND reported_at IS NULL")
            .bind(order.0)
            .bind(at)
            .execute(&self.primary)
            .await
            .map_err(Error::from)?;
        Ok(())
    }
}
