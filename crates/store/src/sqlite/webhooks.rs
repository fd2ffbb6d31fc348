//! `WebhookStore` on `SqliteStore`: subscribers, the outbox the triggers
//! of `0006_webhooks.sql` fill in the order changes' own transactions, and
//! the delivery log, in the store's file.
//!
//! `dispatch` runs on the one writer thread, so two dispatchers can never
//! interleave: an order's deliveries are created in event order.

use async_trait::async_trait;
use domain::ports::{PortResult, WebhookStore};
use domain::webhooks::{
    self, Attempt, Delivery, DeliveryState, NewSubscriber, OutboxEvent, Subscriber, SubscriberId, SubscriberPatch,
};
use rusqlite::{Connection, Row, params};

use super::{Error, SqliteStore, all};

const SUB_COLUMNS: &str = "id, url, events, store_id, secret, enabled, created_at";

fn sub_row(r: &Row<'_>) -> Result<Subscriber, Error> {
    Ok(Subscriber {
        id: r.get(0)?,
        url: r.get(1)?,
        events: webhooks::decode_types(&r.get::<_, String>(2)?)?,
        store: r.get(3)?,
        secret: r.get(4)?,
        enabled: r.get(5)?,
        created_at: r.get(6)?,
    })
}

const DELIVERY_COLUMNS: &str = "subscriber_id, event_id, kind, order_id, store_id, occurred_at, state, attempts, \
                                next_at, last_status, last_body, last_error, created_at, updated_at";

fn delivery_row(r: &Row<'_>) -> Result<Delivery, Error> {
    let state: String = r.get(6)?;
    Ok(Delivery {
        subscriber: r.get(0)?,
        event_id: r.get(1)?,
        kind: webhooks::decode_type(&r.get::<_, String>(2)?)?,
        order_id: r.get(3)?,
        store: r.get(4)?,
        occurred_at: r.get(5)?,
        state: webhooks::decode_state(&state)?,
        attempts: r.get(7)?,
        next_at: r.get(8)?,
        last_status: r.get(9)?,
        last_body: r.get(10)?,
        last_error: r.get(11)?,
        created_at: r.get(12)?,
        updated_at: r.get(13)?,
    })
}

fn subscriber(c: &Connection, id: SubscriberId) -> Result<Option<Subscriber>, Error> {
    Ok(all(
        c,
        &format!("SELECT {SUB_COLUMNS} FROM webhook_subscribers WHERE id = ?1"),
        params![id],
        sub_row,
    )?
    .into_iter()
    .next())
}

#[async_trait]
impl WebhookStore for SqliteStore {
    async fn create_subscriber(&self, new: &NewSubscriber) -> PortResult<Subscriber> {
        let n = new.clone();
        self.write(move |c| {
            let id: i64 = c
                .prepare_cached(
                    "INSERT INTO webhook_subscribers (url, events, store_id, secret, enabled, created_at) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6) RETURNING id",
                )?
                .query_row(
                    params![
                        n.url,
                        webhooks::encode_types(&n.events),
                        n.store,
                        n.secret,
                        n.enabled,
                        n.created_at
                    ],
                    |r| r.get(0),
                )?;
            subscriber(c, id)?.ok_or(Error::NotFound)
        })
        .await
    }

    async fn subscribers(&self) -> PortResult<Vec<Subscriber>> {
        self.read(|c| {
            all(
                c,
                &format!("SELECT {SUB_COLUMNS} FROM webhook_subscribers ORDER BY id"),
                [],
                sub_row,
            )
        })
        .await
    }

    async fn subscriber(&self, id: SubscriberId) -> PortResult<Option<Subscriber>> {
        self.read(move |c| subscriber(c, id)).await
    }

    async fn update_subscriber(&self, id: SubscriberId, patch: &SubscriberPatch) -> PortResult<Subscriber> {
        let patch = patch.clone();
        self.write(move |c| {
            if let Some(enabled) = patch.enabled {
                c.prepare_cached("UPDATE webhook_subscribers SET enabled = ?1 WHERE id = ?2")?
                    .execute(params![enabled, id])?;
            }
            subscriber(c, id)?.ok_or(Error::NotFound)
        })
        .await
    }

    async fn delete_subscriber(&self, id: SubscriberId) -> PortResult<bool> {
        self.write(move |c| {
            let tx = c.transaction()?;
            tx.prepare_cached("DELETE FROM webhook_deliveries WHERE subscriber_id = ?1")?
                .execute(params![id])?;
            tx.prepare_cached("DELETE FROM webhook_outbox WHERE subscriber_id = ?1")?
                .execute(params![id])?;
            let n = tx
                .prepare_cached("DELETE FROM webhook_subscribers WHERE id = ?1")?
                .execute(params![id])?;
            tx.commit()?;
            Ok(n > 0)
        })
        .await
    }

    async fn add_ping(&self, id: SubscriberId, now: i64) -> PortResult<i64> {
        self.write(move |c| {
            subscriber(c, id)?.ok_or(Error::NotFound)?;
            Ok(c.prepare_cached(
                "INSERT INTO webhook_outbox (kind, order_id, store_id, at, subscriber_id) \
                 VALUES ('ping', '', '', ?1, ?2) RETURNING id",
            )?
            .query_row(params![now, id], |r| r.get(0))?)
        })
        .await
    }

    async fn dispatch(&self, limit: u32, now: i64) -> PortResult<usize> {
        self.write(move |c| {
            let tx = c.transaction()?;
            let events = all(
                &tx,
                "SELECT id, kind, order_id, store_id, at, subscriber_id FROM webhook_outbox ORDER BY id LIMIT ?1",
                params![limit],
                |r| {
                    Ok(OutboxEvent {
                        id: r.get(0)?,
                        kind: webhooks::decode_type(&r.get::<_, String>(1)?)?,
                        order_id: r.get(2)?,
                        store: r.get(3)?,
                        at: r.get(4)?,
                        target: r.get(5)?,
                    })
                },
            )?;
            let Some(last) = events.last().map(|e| e.id) else {
                return Ok(0);
            };
            let subs = all(
                &tx,
                &format!("SELECT {SUB_COLUMNS} FROM webhook_subscribers WHERE enabled = 1"),
                [],
                sub_row,
            )?;
            {
                let mut insert = tx.prepare_cached(
                    "INSERT INTO webhook_deliveries (subscriber_id, event_id, kind, order_id, store_id, occurred_at, \
                     state, attempts, next_at, created_at, updated_at) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'pending', 0, ?7, ?7, ?7) \
                     ON CONFLICT (subscriber_id, event_id) DO NOTHING",
                )?;
                for e in &events {
                    for s in subs.iter().filter(|s| webhooks::wants(s, e)) {
                        insert.execute(params![s.id, e.id, e.kind.as_str(), e.order_id, e.store, e.at, now])?;
                    }
                }
            }
            tx.prepare_cached("DELETE FROM webhook_outbox WHERE id <= ?1")?
                .execute(params![last])?;
            tx.commit()?;
            Ok(events.len())
        })
        .await
    }

    async fn due_subscribers(&self, now: i64) -> PortResult<Vec<SubscriberId>> {
        self.read(move |c| {
            all(
                c,
                "SELECT DISTINCT d.subscriber_id FROM webhook_deliveries d \
             WHERE d.state = 'pending' AND d.next_at <= ?1 \
             AND NOT EXISTS (SELECT 1 FROM webhook_deliveries e WHERE e.subscriber_id = d.subscriber_id \
             AND e.order_id = d.order_id AND e.state = 'pending' AND e.event_id < d.event_id) \
             ORDER BY d.subscriber_id",
                params![now],
                |r| Ok(r.get(0)?),
            )
        })
        .await
    }

    async fn due_deliveries(&self, subscriber: SubscriberId, now: i64, limit: u32) -> PortResult<Vec<Delivery>> {
        self.read(move |c| {
            all(
                c,
                &format!(
                    "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries d \
                     WHERE d.subscriber_id = ?1 AND d.state = 'pending' AND d.next_at <= ?2 \
                     AND NOT EXISTS (SELECT 1 FROM webhook_deliveries e WHERE e.subscriber_id = d.subscriber_id \
                     AND e.order_id = d.order_id AND e.state = 'pending' AND e.event_id < d.event_id) \
                     ORDER BY d.event_id LIMIT ?3"
                ),
                params![subscriber, now, limit],
                delivery_row,
            )
        })
        .await
    }

    async fn record_attempts(&self, attempts: &[Attempt]) -> PortResult<()> {
        let attempts = attempts.to_vec();
        self.write(move |c| {
            let tx = c.transaction()?;
            {
                let mut stmt = tx.prepare_cached(
                    "UPDATE webhook_deliveries SET attempts = attempts + 1, state = ?1, next_at = ?2, \
                     last_status = ?3, last_body = ?4, last_error = ?5, updated_at = ?6 \
                     WHERE subscriber_id = ?7 AND event_id = ?8 AND state = 'pending'",
                )?;
                for a in &attempts {
                    stmt.execute(params![
                        a.state.as_str(),
                        a.next_at,
                        a.status,
                        a.body,
                        a.error,
                        a.at,
                        a.subscriber,
                        a.event_id
                    ])?;
                }
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn deliveries(
        &self,
        subscriber: SubscriberId,
        state: Option<DeliveryState>,
        before: Option<i64>,
        limit: u32,
    ) -> PortResult<Vec<Delivery>> {
        self.read(move |c| {
            all(
                c,
                &format!(
                    "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE subscriber_id = ?1 \
                     AND (?2 IS NULL OR state = ?2) AND (?3 IS NULL OR event_id < ?3) \
                     ORDER BY event_id DESC LIMIT ?4"
                ),
                params![subscriber, state.map(|s| s.as_str()), before, limit],
                delivery_row,
            )
        })
        .await
    }

    async fn retry_deliveries(&self, subscriber: SubscriberId, event: Option<i64>, now: i64) -> PortResult<u64> {
        self.write(move |c| {
            let n = c
                .prepare_cached(
                    "UPDATE webhook_deliveries SET state = 'pending', attempts = 0, next_at = ?1, updated_at = ?1 \
                     WHERE subscriber_id = ?2 AND state = 'dead' AND (?3 IS NULL OR event_id = ?3)",
                )?
                .execute(params![now, subscriber, event])?;
            Ok(n as u64)
        })
        .await
    }

    async fn prune_deliveries(&self, delivered_before: i64, dead_before: i64, limit: u32) -> PortResult<u64> {
        self.write(move |c| {
            // The table is `WITHOUT ROWID`: rows are picked by primary key.
            let n = c
                .prepare_cached(
                    "DELETE FROM webhook_deliveries WHERE (subscriber_id, event_id) IN (\
                     SELECT subscriber_id, event_id FROM webhook_deliveries \
                     WHERE (state = 'delivered' AND updated_at < ?1) OR (state = 'dead' AND updated_at < ?2) \
                     LIMIT ?3)",
                )?
                .execute(params![delivered_before, dead_before, limit])?;
            Ok(n as u64)
        })
        .await
    }

    async fn pending_deliveries(&self) -> PortResult<u64> {
        self.read(|c| {
            Ok(
                c.prepare_cached("SELECT count(*) FROM webhook_deliveries WHERE state = 'pending'")?
                    .query_row([], |r| r.get::<_, i64>(0))? as u64,
            )
        })
        .await
    }

    async fn outbox_len(&self) -> PortResult<u64> {
        self.read(|c| {
            Ok(c.prepare_cached("SELECT count(*) FROM webhook_outbox")?
                .query_row([], |r| r.get::<_, i64>(0))? as u64)
        })
        .await
    }
}
