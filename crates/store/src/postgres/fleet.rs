//! `Fleet` on `PgStore`: the running instances and the operator broadcasts
//! (`migrations/postgres/0005_fleet_and_points.sql`, `domain::fleet`).
//!
//! Everything goes to the primary, never a replica: a member that polled a
//! lagging standby would ack a broadcast late, and the CLI would report it
//! as not reached.

use async_trait::async_trait;
use domain::ports::{Broadcast, Fleet, Instance, PortResult};
use sqlx::Row;
use sqlx::postgres::PgRow;

use super::{Error, PgStore};

/// Rows older than this (not seen, or issued) are forgotten.
const KEEP_MS: i64 = 86_400_000;

fn instance_row(r: &PgRow) -> Result<Instance, Error> {
    Ok(Instance {
        id: r.try_get(0)?,
        role: r.try_get(1)?,
        addr: r.try_get(2)?,
        started_at: r.try_get(3)?,
        seen_at: r.try_get(4)?,
        acked: r.try_get(5)?,
    })
}

#[async_trait]
impl Fleet for PgStore {
    async fn beat(&self, i: &Instance) -> PortResult<()> {
        let mut tx = self.primary.begin().await.map_err(Error::from)?;
        sqlx::query(
            "INSERT INTO instances (id, role, addr, started_at, seen_at, acked) VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (id) DO UPDATE SET role = excluded.role, addr = excluded.addr, \
             started_at = excluded.started_at, seen_at = excluded.seen_at, acked = excluded.acked",
        )
        .bind(&i.id)
        .bind(&i.role)
        .bind(&i.addr)
        .bind(i.started_at)
        .bind(i.seen_at)
        .bind(i.acked)
        .execute(&mut *tx)
        .await
        .map_err(Error::from)?;
        sqlx::query("DELETE FROM instances WHERE seen_at < $1")
            .bind(i.seen_at - KEEP_MS)
            .execute(&mut *tx)
            .await
            .map_err(Error::from)?;
        tx.commit().await.map_err(Error::from)?;
        Ok(())
    }

    async fn leave(&self, id: &str) -> PortResult<()> {
        sqlx::query("DELETE FROM instances WHERE id = $1")
            .bind(id)
            .execute(&self.primary)
            .await
            .map_err(Error::from)?;
        Ok(())
    }

    async fn instances(&self, since: i64) -> PortResult<Vec<Instance>> {
        let rows = sqlx::query(
            "SELECT id, role, addr, started_at, seen_at, acked FROM instances WHERE seen_at >= $1 ORDER BY id",
        )
        .bind(since)
        .fetch_all(&self.primary)
        .await
        .map_err(Error::from)?;
        Ok(rows.iter().map(instance_row).collect::<Result<_, _>>()?)
    }

    async fn broadcast(&self, commands: &str, now: i64) -> PortResult<i64> {
        let mut tx = self.primary.begin().await.map_err(Error::from)?;
        sqlx::query("DELETE FROM broadcasts WHERE issued_at < $1")
            .bind(now - KEEP_MS)
            .execute(&mut *tx)
            .await
            .map_err(Error::from)?;
        let seq: i64 = sqlx::query_scalar("INSERT INTO broadcasts (commands, issued_at) VALUES ($1, $2) RETURNING seq")
            .bind(commands)
            .bind(now)
            .fetch_one(&mut *tx)
            .await
            .map_err(Error::from)?;
        tx.commit().await.map_err(Error::from)?;
        Ok(seq)
    }

    async fn broadcasts_after(&self, seq: i64) -> PortResult<Vec<Broadcast>> {
        let rows = sqlx::query("SELECT seq, commands, issued_at FROM broadcasts WHERE seq > $1 ORDER BY seq")
            .bind(seq)
            .fetch_all(&self.primary)
            .await
            .map_err(Error::from)?;
        let decode = |r: &PgRow| -> Result<Broadcast, Error> {
            Ok(Broadcast {
                seq: r.try_get(0)?,
                commands: r.try_get(1)?,
                issued_at: r.try_get(2)?,
            })
        };
        Ok(rows.iter().map(decode).collect::<Result<_, _>>()?)
    }

    async fn last_broadcast(&self) -> PortResult<i64> {
        // MAX, not the identity's sequence: once every broadcast is pruned
        // it answers 0, which is still right (nothing older is left to run).
        let seq: Option<i64> = sqlx::query_scalar("SELECT max(seq) FROM broadcasts")
            .fetch_one(&self.primary)
            .await
            .map_err(Error::from)?;
        Ok(seq.unwrap_or(0))
    }
}
