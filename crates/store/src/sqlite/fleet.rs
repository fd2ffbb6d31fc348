//! `Fleet` on `SqliteStore`: the running instances and the operator
//! broadcasts (`0005_fleet_and_points.sql`, `domain::fleet`), in the store's own file,
//! which every process on the box opens anyway.
//!
//! The rows are a handful and the writes rare (a heartbeat every five
//! seconds per instance, a broadcast per operator command), so they share
//! the store's writer; members poll with one read of the `broadcasts`
//! primary key, which costs a reader a few microseconds.

use async_trait::async_trait;
use domain::ports::{Broadcast, Fleet, Instance, PortResult};
use rusqlite::{Row, params};

use super::{Error, SqliteStore};

/// Rows older than this (not seen, or issued) are forgotten.
const KEEP_MS: i64 = 86_400_000;

fn instance_row(r: &Row<'_>) -> Result<Instance, rusqlite::Error> {
    Ok(Instance {
        id: r.get(0)?,
        role: r.get(1)?,
        addr: r.get(2)?,
        started_at: r.get(3)?,
        seen_at: r.get(4)?,
        acked: r.get(5)?,
    })
}

#[async_trait]
impl Fleet for SqliteStore {
    async fn beat(&self, i: &Instance) -> PortResult<()> {
        let i = i.clone();
        self.write(move |c| {
            let tx = c.transaction()?;
            tx.prepare_cached(
                "INSERT INTO instances (id, role, addr, started_at, seen_at, acked) VALUES (?1, ?2, ?3, ?4, ?5, ?6) \
                 ON CONFLICT (id) DO UPDATE SET role = excluded.role, addr = excluded.addr, \
                 started_at = excluded.started_at, seen_at = excluded.seen_at, acked = excluded.acked",
            )?
            .execute(params![i.id, i.role, i.addr, i.started_at, i.seen_at, i.acked])?;
            tx.prepare_cached("DELETE FROM instances WHERE seen_at < ?1")?
                .execute([i.seen_at - KEEP_MS])?;
            tx.commit()?;
            Ok::<_, Error>(())
        })
        .await
    }

    async fn leave(&self, id: &str) -> PortResult<()> {
        let id = id.to_owned();
        self.write(move |c| {
            c.prepare_cached("DELETE FROM instances WHERE id = ?1")?.execute([id])?;
            Ok::<_, Error>(())
        })
        .await
    }

    async fn instances(&self, since: i64) -> PortResult<Vec<Instance>> {
        self.read(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT id, role, addr, started_at, seen_at, acked FROM instances WHERE seen_at >= ?1 ORDER BY id",
            )?;
            let rows = stmt.query_map([since], instance_row)?;
            Ok::<_, Error>(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    async fn broadcast(&self, commands: &str, now: i64) -> PortResult<i64> {
        let commands = commands.to_owned();
        self.write(move |c| {
            let tx = c.transaction()?;
            tx.prepare_cached("DELETE FROM broadcasts WHERE issued_at < ?1")?
                .execute([now - KEEP_MS])?;
            let seq: i64 = tx
                .prepare_cached("INSERT INTO broadcasts (commands, issued_at) VALUES (?1, ?2) RETURNING seq")?
                .query_row(params![commands, now], |r| r.get(0))?;
            tx.commit()?;
            Ok::<_, Error>(seq)
        })
        .await
    }

    async fn broadcasts_after(&self, seq: i64) -> PortResult<Vec<Broadcast>> {
        self.read(move |c| {
            let mut stmt =
                c.prepare_cached("SELECT seq, commands, issued_at FROM broadcasts WHERE seq > ?1 ORDER BY seq")?;
            let rows = stmt.query_map([seq], |r| {
                Ok(Broadcast {
                    seq: r.get(0)?,
                    commands: r.get(1)?,
                    issued_at: r.get(2)?,
                })
            })?;
            Ok::<_, Error>(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    async fn last_broadcast(&self) -> PortResult<i64> {
        // MAX: once every broadcast is pruned it answers 0, which is still
        // right (nothing older is left to run); AUTOINCREMENT keeps new
        // seqs above every old one.
        self.read(|c| {
            let seq: Option<i64> = c
                .prepare_cached("SELECT max(seq) FROM broadcasts")?
                .query_row([], |r| r.get(0))?;
            Ok::<_, Error>(seq.unwrap_or(0))
        })
        .await
    }
}
