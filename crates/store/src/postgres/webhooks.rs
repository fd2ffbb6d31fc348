//! `WebhookStore` on `PgStore`: subscribers, the outbox the triggers of
//! `migrations/postgres/0006_webhooks.sql` fill in the order changes' own
//! transactions, and the delivery log. Everything goes to the primary: the
//! dispatcher and the delivery jobs must see what they just wrote.
//!
//! `dispatch` holds a transaction-scoped advisory lock, so across every
//! worker process one dispatcher fans out at a time (another finds the lock
//! taken and does nothing this round) and an order's deliveries are created
//! in event order. It deletes exactly the outbox rows it read, by id: a row
//! with a smaller id that commits while it runs is taken next round, never
//! lost.

use async_trait::async_trait;
use dbkit::observe::observed;
use domain::ports::{PortResult, WebhookStore};
use domain::webhooks::{
    self, Attempt, Delivery, DeliveryState, NewSubscriber, OutboxEvent, Subscriber, SubscriberId, SubscriberPatch,
};
use sqlx::postgres::PgRow;
use sqlx::{AssertSqlSafe, Row};

use super::{Error, PgStore};
use crate::decode::u32_of;

/// The advisory lock `dispatch` holds ("rhwh").
const DISPATCH_LOCK: i64 = 0x7268_7768;

const SUB_COLUMNS: &str = "id, url, events, store_id, secret, enabled, created_at";

fn sub_row(r: &PgRow) -> Result<Subscriber, Error> {
    Ok(Subscriber {
        id: r.try_get(0)?,
        url: r.try_get(1)?,
        events: webhooks::decode_types(r.try_get(2)?)?,
        store: r.try_get(3)?,
        secret: r.try_get(4)?,
        enabled: r.try_get(5)?,
        created_at: r.try_get(6)?,
    })
}

const DELIVERY_COLUMNS: &str = "subscriber_id, event_id, kind, order_id, store_id, occurred_at, state, attempts, \
                                next_at, last_status, last_body, last_error, created_at, updated_at";

fn delivery_row(r: &PgRow) -> Result<Delivery, Error> {
    let state: &str = r.try_get(6)?;
    Ok(Delivery {
        subscriber: r.try_get(0)?,
        event_id: r.try_get(1)?,
        kind: webhooks::decode_type(r.try_get(2)?)?,
        order_id: r.try_get(3)?,
        store: r.try_get(4)?,
        occurred_at: r.try_get(5)?,
        state: webhooks::decode_state(state)?,
        attempts: u32_of("delivery attempts", i64::from(r.try_get::<i32, _>(7)?))?,
        next_at: r.try_get(8)?,
        last_status: r
            .try_get::<Option<i32>, _>(9)?
            .map(|s| u16::try_from(s).map_err(|_| Error::Invalid(format!("HTTP status {s}"))))
            .transpose()?,
        last_body: r.try_get(10)?,
        last_error: r.try_get(11)?,
        created_at: r.try_get(12)?,
        updated_at: r.try_get(13)?,
    })
}

fn decode<T>(rows: &[PgRow], row: fn(&PgRow) -> Result<T, Error>) -> PortResult<Vec<T>> {
    Ok(rows.iter().map(row).collect::<Result<_, _>>()?)
}

#[async_trait]
impl WebhookStore for PgStore {
    async fn create_subscriber(&self, n: &NewSubscriber) -> PortResult<Subscriber> {
        let row = sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO webhook_subscribers (url, events, store_id, secret, enabled, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING {SUB_COLUMNS}"
        )))
        .bind(&n.url)
        .bind(webhooks::encode_types(&n.events))
        .bind(&n.store)
        .bind(&n.secret)
        .bind(n.enabled)
        .bind(n.created_at)
        .fetch_one(&self.primary)
        .await
        .map_err(Error::from)?;
        Ok(sub_row(&row)?)
    }

    async fn subscribers(&self) -> PortResult<Vec<Subscriber>> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {SUB_COLUMNS} FROM webhook_subscribers ORDER BY id"
        )))
        .fetch_all(&self.primary)
        .await
        .map_err(Error::from)?;
        decode(&rows, sub_row)
    }

    async fn subscriber(&self, id: SubscriberId) -> PortResult<Option<Subscriber>> {
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT {SUB_COLUMNS} FROM webhook_subscribers WHERE id = $1"
        )))
        .bind(id)
        .fetch_optional(&self.primary)
        .await
        .map_err(Error::from)?;
        Ok(row.as_ref().map(sub_row).transpose()?)
    }

    async fn update_subscriber(&self, id: SubscriberId, patch: &SubscriberPatch) -> PortResult<Subscriber> {
        let row = sqlx::query(AssertSqlSafe(format!(
            "UPDATE webhook_subscribers SET enabled = coalesce($2, enabled) WHERE id = $1 RETURNING {SUB_COLUMNS}"
        )))
        .bind(id)
        .bind(patch.enabled)
        .fetch_optional(&self.primary)
        .await
        .map_err(Error::from)?;
        Ok(row.as_ref().map(sub_row).transpose()?.ok_or(Error::NotFound)?)
    }

    async fn delete_subscriber(&self, id: SubscriberId) -> PortResult<bool> {
        let mut tx = self.primary.begin().await.map_err(Error::from)?;
        for sql in [
            "DELETE FROM webhook_deliveries WHERE subscriber_id = $1",
            "DELETE FROM webhook_outbox WHERE subscriber_id = $1",
        ] {
            sqlx::query(sql).bind(id).execute(&mut *tx).await.map_err(Error::from)?;
        }
        let n = sqlx::query("DELETE FROM webhook_subscribers WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(Error::from)?
            .rows_affected();
        tx.commit().await.map_err(Error::from)?;
        Ok(n > 0)
    }

    async fn add_ping(&self, id: SubscriberId, now: i64) -> PortResult<i64> {
        let row: Option<(i64,)> = sqlx::query_as(
            "INSERT INTO webhook_outbox (kind, order_id, store_id, at, subscriber_id) \
             SELECT 'ping', '', '', $1, id FROM webhook_subscribers WHERE id = $2 RETURNING id",
        )
        .bind(now)
        .bind(id)
        .fetch_optional(&self.primary)
        .await
        .map_err(Error::from)?;
        Ok(row.ok_or(Error::NotFound)?.0)
    }

    async fn dispatch(&self, limit: u32, now: i64) -> PortResult<usize> {
        let mut tx = self.primary.begin().await.map_err(Error::from)?;
        let (locked,): (bool,) = sqlx::query_as("SELECT pg_try_advisory_xact_lock($1)")
            .bind(DISPATCH_LOCK)
            .fetch_one(&mut *tx)
            .await
            .map_err(Error::from)?;
        if !locked {
            return Ok(0);
        }
        let rows = sqlx::query(
            "SELECT id, kind, order_id, store_id, at, subscriber_id FROM webhook_outbox ORDER BY id LIMIT $1",
        )
        .bind(i64::from(limit))
        .fetch_all(&mut *tx)
        .await
        .map_err(Error::from)?;
        let events = decode(&rows, |r| {
            Ok(OutboxEvent {
                id: r.try_get(0)?,
                kind: webhooks::decode_type(r.try_get(1)?)?,
                order_id: r.try_get(2)?,
                store: r.try_get(3)?,
                at: r.try_get(4)?,
                target: r.try_get(5)?,
            })
        })?;
        if events.is_empty() {
            return Ok(0);
        }
        let subs = sqlx::query(AssertSqlSafe(format!(
            "SELECT {SUB_COLUMNS} FROM webhook_subscribers WHERE enabled"
        )))
        .fetch_all(&mut *tx)
        .await
        .map_err(Error::from)?;
        let subs = decode(&subs, sub_row)?;
        // Column arrays for one UNNEST insert.
        let (mut sub, mut ev, mut kinds, mut orders, mut stores, mut ats) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for e in &events {
            for s in subs.iter().filter(|s| webhooks::wants(s, e)) {
                sub.push(s.id);
                ev.push(e.id);
                kinds.push(e.kind.as_str());
                orders.push(e.order_id.as_str());
                stores.push(e.store.as_str());
                ats.push(e.at);
            }
        }
        if !sub.is_empty() {
            sqlx::query(
                "INSERT INTO webhook_deliveries (subscriber_id, event_id, kind, order_id, store_id, occurred_at, \
                 state, attempts, next_at, created_at, updated_at) \
                 SELECT s, e, k, o, st, a, 'pending', 0, $7, $7, $7 \
                 FROM UNNEST($1::bigint[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::bigint[]) \
                 AS t(s, e, k, o, st, a) \
                 ON CONFLICT (subscriber_id, event_id) DO NOTHING",
            )
            .bind(&sub)
            .bind(&ev)
            .bind(&kinds)
            .bind(&orders)
            .bind(&stores)
            .bind(&ats)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(Error::from)?;
        }
        let ids: Vec<i64> = events.iter().map(|e| e.id).collect();
        sqlx::query("DELETE FROM webhook_outbox WHERE id = ANY($1)")
            .bind(&ids)
            .execute(&mut *tx)
            .await
            .map_err(Error::from)?;
        tx.commit().await.map_err(Error::from)?;
        Ok(events.len())
    }

    async fn due_subscribers(&self, now: i64) -> PortResult<Vec<SubscriberId>> {
        let rows: Vec<(i64,)> = sqlx::query_as(
            "SELECT DISTINCT d.subscriber_id FROM webhook_deliveries d \
             WHERE d.state = 'pending' AND d.next_at <= $1 \
             AND NOT EXISTS (SELECT 1 FROM webhook_deliveries e WHERE e.subscriber_id = d.subscriber_id \
             AND e.order_id = d.order_id AND e.state = 'pending' AND e.event_id < d.event_id) \
             ORDER BY d.subscriber_id",
        )
        .bind(now)
        .fetch_all(&self.primary)
        .await
        .map_err(Error::from)?;
        Ok(rows.into_iter().map(|(id,)| id).collect())
    }

    async fn due_deliveries(&self, subscriber: SubscriberId, now: i64, limit: u32) -> PortResult<Vec<Delivery>> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries d \
             WHERE d.subscriber_id = $1 AND d.state = 'pending' AND d.next_at <= $2 \
             AND NOT EXISTS (SELECT 1 FROM webhook_deliveries e WHERE e.subscriber_id = d.subscriber_id \
             AND e.order_id = d.order_id AND e.state = 'pending' AND e.event_id < d.event_id) \
             ORDER BY d.event_id LIMIT $3"
        )))
        .bind(subscriber)
        .bind(now)
        .bind(i64::from(limit))
        .fetch_all(&self.primary)
        .await
        .map_err(Error::from)?;
        decode(&rows, delivery_row)
    }

    async fn record_attempts(&self, attempts: &[Attempt]) -> PortResult<()> {
        if attempts.is_empty() {
            return Ok(());
        }
        let col = |f: fn(&Attempt) -> i64| attempts.iter().map(f).collect::<Vec<i64>>();
        let states: Vec<&str> = attempts.iter().map(|a| a.state.as_str()).collect();
        let statuses: Vec<Option<i32>> = attempts.iter().map(|a| a.status.map(i32::from)).collect();
        let bodies: Vec<Option<&str>> = attempts.iter().map(|a| a.body.as_deref()).collect();
        let errors: Vec<Option<&str>> = attempts.iter().map(|a| a.error.as_deref()).collect();
        sqlx::query(
            "UPDATE webhook_deliveries d SET attempts = d.attempts + 1, state = t.state, next_at = t.next_at, \
             last_status = t.status, last_body = t.body, last_error = t.error, updated_at = t.at \
             FROM UNNEST($1::bigint[], $2::bigint[], $3::text[], $4::bigint[], $5::int[], $6::text[], $7::text[], \
             $8::bigint[]) AS t(sub, ev, state, next_at, status, body, error, at) \
             WHERE d.subscriber_id = t.sub AND d.event_id = t.ev AND d.state = 'pending'",
        )
        .bind(col(|a| a.subscriber))
        .bind(col(|a| a.event_id))
        .bind(&states)
        .bind(col(|a| a.next_at))
        .bind(&statuses)
        .bind(&bodies)
        .bind(&errors)
        .bind(col(|a| a.at))
        .execute(&self.primary)
        .await
        .map_err(Error::from)?;
        Ok(())
    }

    async fn deliveries(
        &self,
        subscriber: SubscriberId,
        state: Option<DeliveryState>,
        before: Option<i64>,
        limit: u32,
    ) -> PortResult<Vec<Delivery>> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE subscriber_id = $1 \
             AND ($2::text IS NULL OR state = $2) AND ($3::bigint IS NULL OR event_id < $3) \
             ORDER BY event_id DESC LIMIT $4"
        )))
        .bind(subscriber)
        .bind(state.map(|s| s.as_str()))
        .bind(before)
        .bind(i64::from(limit))
        .fetch_all(&self.primary)
        .await
        .map_err(Error::from)?;
        decode(&rows, delivery_row)
    }

    async fn retry_deliveries(&self, subscriber: SubscriberId, event: Option<i64>, now: i64) -> PortResult<u64> {
        let done = sqlx::query(
            "UPDATE webhook_deliveries SET state = 'pending', attempts = 0, next_at = $1, updated_at = $1 \
             WHERE subscriber_id = $2 AND state = 'dead' AND ($3::bigint IS NULL OR event_id = $3)",
        )
        .bind(now)
        .bind(subscriber)
        .bind(event)
        .execute(observed(&self.primary))
        .await
        .map_err(Error::from)?;
        Ok(done.rows_affected())
    }

    async fn prune_deliveries(&self, delivered_before: i64, dead_before: i64, limit: u32) -> PortResult<u64> {
        let done = sqlx::query(
            "DELETE FROM webhook_deliveries WHERE (subscriber_id, event_id) IN (\
             SELECT subscriber_id, event_id FROM webhook_deliveries \
             WHERE (state = 'delivered' AND updated_at < $1) OR (state = 'dead' AND updated_at < $2) \
             LIMIT $3)",
        )
        .bind(delivered_before)
        .bind(dead_before)
        .bind(i64::from(limit))
        .execute(observed(&self.primary))
        .await
        .map_err(Error::from)?;
        Ok(done.rows_affected())
    }

    async fn pending_deliveries(&self) -> PortResult<u64> {
        let (n,): (i64,) = sqlx::query_as("SELECT count(*) FROM webhook_deliveries WHERE state = 'pending'")
            .fetch_one(&self.primary)
            .await
            .map_err(Error::from)?;
        Ok(n.max(0) as u64)
    }

    async fn outbox_len(&self) -> PortResult<u64> {
        let (n,): (i64,) = sqlx::query_as("SELECT count(*) FROM webhook_outbox")
            .fetch_one(&self.primary)
            .await
            .map_err(Error::from)?;
        Ok(n.max(0) as u64)
    }
}
