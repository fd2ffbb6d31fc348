//! The use-cases the HTTP API and the CLI drive: browse menus, place an
//! order, read and list orders, move them through their lifecycle, 86 items.
//!
//! `Rushhour` holds one handle per port and nothing else; it is cheap to
//! share (`Arc`) between request handlers.

use serde::Serialize;
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::events::{LiveEvent, LogEvent, OrderPlacedV1, PlacedLineV1};
use crate::ids::{OrderId, StoreId};
use crate::menu::{MenuSnapshot, StoreInfo};
use crate::money::Money;
use crate::order::{self, Action, FieldError, Order, OrderDraft, OrderStatus, Timestamps, TransitionError};
use crate::ports::{
    AppendOutcome, AppendRequest, BoardSnapshot, Clock, EventLog, EventScope, IdempotencyClaim, LiveFeed, MenuCache,
    OrderFilter, OrderSummary, PickupSnapshot, PortError, Store, TicketsQuery, TicketsSnapshot,
};

/// How far back a fresh board looks for open tickets: a rolling day, so a
/// board opened at any hour shows every order of the shop's day that is
/// still being made or waiting for pickup. Rolling rather than since
/// midnight: a store's day does not end at midnight UTC, and an order left
/// open overnight is stale either way (ready ones are expired by the
/// `expire_orders` job).
pub const OPEN_TICKETS_WINDOW: Duration = Duration::from_secs(24 * 60 * 60);

/// Most open orders a tickets or pickup snapshot holds.
pub const MAX_OPEN_TICKETS: u32 = 1_000;
/// Most recently finished orders a tickets snapshot holds.
pub const MAX_RECENT_TICKETS: u32 = 100;

/// The longest cancel reason kept, in characters.
pub const MAX_CANCEL_REASON: usize = 200;

#[derive(Debug, Clone)]
pub struct RushhourConfig {
    /// How long a lifecycle action on an order that is durable in the log
    /// but not yet applied by a processor waits for it before answering 503.
    pub apply_wait: Duration,
    /// The server key order access tokens are derived with
    /// (`identity::order_token`). The binary sets the configured or
    /// generated one; the default is random per process, so tokens from a
    /// default-configured instance do not survive a restart.
    pub order_token_key: std::sync::Arc<[u8]>,
}

impl Default for RushhourConfig {
    fn default() -> Self {
        // 2 × 74 random bits of two UUIDv7s, hashed: this crate has no
        // random generator of its own, and the binary replaces it anyway.
        use sha2::Digest;
        let mut h = sha2::Sha256::new();
        h.update(uuid::Uuid::now_v7().as_bytes());
        h.update(uuid::Uuid::now_v7().as_bytes());
        Self {
            apply_wait: Duration::from_secs(2),
            order_token_key: h.finalize().to_vec().into(),
        }
    }
}

/// What a use-case looked for and did not find. A closed set, so the HTTP
/// edge can map each to its own stable error code (a `&str` here would let
/// the set of public codes grow at run time).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource {
    Order,
    Store,
    Item,
}

impl Resource {
    pub fn as_str(self) -> &'static str {
        match self {
            Resource::Order => "order",
            Resource::Store => "store",
            Resource::Item => "item",
        }
    }
}

impl std::fmt::Display for Resource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("{0} not found")]
    NotFound(Resource),
    #[error("the request is invalid")]
    Validation(Vec<FieldError>),
    /// The order's lines are valid, but add up to no amount it can carry
    /// (negative, or too large); the string says which, for the client.
    #[error("the order's total is invalid: {0}")]
    InvalidTotal(String),
    #[error("this Idempotency-Key was already used with a different request")]
    IdempotencyKeyReused,
    #[error(transparent)]
    Transition(TransitionError),
    /// The order is durable but its processor has not applied it yet.
    #[error("the order is still being processed; retry shortly")]
    NotReady,
    #[error(transparent)]
    Backend(#[from] PortError),
}

impl From<TransitionError> for AppError {
    fn from(e: TransitionError) -> Self {
        match e {
            TransitionError::OrderNotFound(_) => AppError::NotFound(Resource::Order),
            TransitionError::Backend(p) => AppError::Backend(p),
            other => AppError::Transition(other),
        }
    }
}

/// The body of an intake `202`, stored with the idempotency key and replayed
/// byte for byte on a retry.
#[derive(Debug, Serialize)]
pub struct IntakeReceipt {
    pub id: OrderId,
    pub status: OrderStatus,
    pub total: Money,
    /// The order access token: `X-Order-Token` (or `?token=`) on the
    /// order's routes.
    pub access_token: String,
    pub links: ReceiptLinks,
}

#[derive(Debug, Serialize)]
pub struct ReceiptLinks {
    #[serde(rename = "self")]
    pub this: String,
    pub events: String,
    /// The customer's order page (HTML), for a till or kiosk to print as
    /// a QR code.
    pub page: String,
}

#[derive(Debug)]
pub enum IntakeOutcome {
    /// Durable now; `body` is an `IntakeReceipt`.
    Accepted { id: OrderId, body: Vec<u8> },
    /// The same key and request were seen before: answer as then.
    Replayed { status: u16, body: Vec<u8> },
}

pub struct Rushhour {
    pub log: Arc<dyn EventLog>,
    pub store: Arc<dyn Store>,
    pub menus: Arc<dyn MenuCache>,
    pub feed: Arc<dyn LiveFeed>,
    pub clock: Arc<dyn Clock>,
    pub config: RushhourConfig,
}

impl Rushhour {
    pub async fn stores(&self) -> Result<Vec<StoreInfo>, AppError> {
        Ok(self.store.list_stores().await?)
    }

    /// The store's menu snapshot, from cache; loaded once on a miss.
    pub async fn menu(&self, store: &StoreId) -> Result<Arc<MenuSnapshot>, AppError> {
        // Borrows rather than clones: on a hit (nearly every call) the
        // loader is dropped unused.
        let load = Box::pin(async move {
            match self.store.load_menu(store).await? {
                Some(m) => Ok(Arc::new(MenuSnapshot::new(m))),
                None => Err(PortError::NotFound),
            }
        });
        match self.menus.get_or_load(store, load).await {
            Ok(m) => Ok(m),
            Err(PortError::NotFound) => Err(AppError::NotFound(Resource::Store)),
            Err(e) => Err(e.into()),
        }
    }

    /// Validate and price `draft`, then make it durable in the log. Returns
    /// only after the append is durable; the processors do the rest.
    pub async fn place_order(
        &self,
        draft: OrderDraft,
        idempotency_key: Option<String>,
    ) -> Result<IntakeOutcome, AppError> {
        let fingerprint = idempotency_key.as_ref().map(|_| fingerprint(&draft));
        let (req, id, body) = match self.prepare(&draft).await {
            Ok(prepared) => prepared,
            // A retry of an accepted order must be replayed even if the
            // menu has changed since; only then is the refusal final. The
            // happy path skips this read: the append claims the key
            // atomically and reports a duplicate itself.
            Err(e @ (AppError::Validation(_) | AppError::InvalidTotal(_) | AppError::NotFound(_))) => {
                if let (Some(key), Some(fp)) = (&idempotency_key, &fingerprint)
                    && let Some(rec) = self.log.idempotency(key).await?
                {
                    return replay(rec, fp);
                }
                return Err(e);
            }
            Err(e) => return Err(e),
        };
        let mine = fingerprint.clone().unwrap_or_default();
        let req = AppendRequest {
            idempotency: idempotency_key
                .zip(fingerprint)
                .map(|(key, fingerprint)| IdempotencyClaim {
                    key,
                    fingerprint,
                    status: 202,
                    response: body.clone(),
                }),
            ..req
        };
        match self.log.append(req).await? {
            AppendOutcome::Appended(_) => Ok(IntakeOutcome::Accepted { id, body }),
            // The key was claimed before (a retry), or by a concurrent request.
            AppendOutcome::Duplicate(rec) => replay(rec, &mine),
        }
    }

    /// Validate and price a draft into the log record and the 202 body.
    async fn prepare(&self, draft: &OrderDraft) -> Result<(AppendRequest, OrderId, Vec<u8>), AppError> {
        let store_field = || {
            AppError::Validation(vec![FieldError {
                field: "store".into(),
                code: "unknown_store",
                message: format!("no store '{}'", draft.store),
            }])
        };
        let store = StoreId::parse(&draft.store).ok_or_else(store_field)?;
        let menu = match self.menu(&store).await {
            Err(AppError::NotFound(_)) => return Err(store_field()),
            other => other?,
        };
        let (lines, total) = order::price(draft, &menu).map_err(|e| match e {
            order::PricingError::Fields(errors) => AppError::Validation(errors),
            order::PricingError::Total(why) => AppError::InvalidTotal(why),
        })?;
        let id = OrderId::new();
        let token = crate::identity::order_token(&self.config.order_token_key, id);
        let currency = menu.store().currency.clone();
        let placed = OrderPlacedV1 {
            order_id: id,
            store,
            customer: draft.customer.clone(),
            currency: currency.clone(),
            total,
            lines: lines.iter().map(PlacedLineV1::from).collect(),
            placed_at: self.clock.now_ms(),
            // `price` has checked it; what goes in the log is trimmed.
            name: draft.name.as_deref().map(|n| n.trim().to_owned()),
        };
        let receipt = IntakeReceipt {
            id,
            status: OrderStatus::Placed,
            total: Money::new(total, currency),
            links: ReceiptLinks {
                this: format!("/v1/orders/{id}?token={token}"),
                events: format!("/v1/orders/{id}/events?token={token}"),
                page: format!("/orders/{id}?token={token}"),
            },
            access_token: token,
        };
        let body = serde_json::to_vec(&receipt).expect("receipt serializes");
        let req = AppendRequest {
            key: id.to_string(),
            payload: LogEvent::OrderPlacedV1(placed).encode(),
            idempotency: None,
            trace: None,
        };
        Ok((req, id, body))
    }

    /// Read-your-writes: the store's view, or, for an order the processors
    /// have not applied yet, the view from its log record.
    pub async fn order(&self, id: OrderId) -> Result<Order, AppError> {
        if let Some(o) = self.store.get_order(id).await? {
            return Ok(o);
        }
        match self.log.find(&id.to_string()).await? {
            Some(rec) => match LogEvent::decode(&rec.payload) {
                Ok(LogEvent::OrderPlacedV1(p)) => Ok(placed_view(&p)),
                Ok(other) => {
                    Err(PortError::Invalid(format!("log record for order {id} is not an order: {other:?}")).into())
                }
                Err(e) => Err(PortError::Invalid(format!("log record for {id}: {e}")).into()),
            },
            // The log answers only for what the processors have not
            // committed: one applied between the two reads is in the store.
            None => self
                .store
                .get_order(id)
                .await?
                .ok_or(AppError::NotFound(Resource::Order)),
        }
    }

    pub async fn list_orders(&self, filter: &OrderFilter) -> Result<Vec<OrderSummary>, AppError> {
        Ok(self.store.list_orders(filter).await?)
    }

    /// Apply a lifecycle action and publish the events it produced.
    pub async fn act(&self, id: OrderId, action: Action) -> Result<Order, AppError> {
        self.act_noted(id, action, None).await
    }

    /// Cancel an order, keeping the reason given (at most
    /// [`MAX_CANCEL_REASON`] characters, trimmed; blank is none).
    pub async fn cancel(&self, id: OrderId, reason: Option<&str>) -> Result<Order, AppError> {
        let reason = reason.map(str::trim).filter(|r| !r.is_empty());
        if let Some(r) = reason
            && r.chars().count() > MAX_CANCEL_REASON
        {
            return Err(AppError::Validation(vec![FieldError {
                field: "reason".into(),
                code: "too_long",
                message: format!("a cancel reason is at most {MAX_CANCEL_REASON} characters"),
            }]));
        }
        self.act_noted(id, Action::Cancel, reason).await
    }

    async fn act_noted(&self, id: OrderId, action: Action, reason: Option<&str>) -> Result<Order, AppError> {
        let deadline = Instant::now() + self.config.apply_wait;
        let mut pause = Duration::from_millis(2);
        // Whether the log has the order is asked once: a record never
        // leaves the log, so the answer cannot change while we wait.
        let mut in_log = false;
        // Whether the store was asked again after the log said "not here":
        // the log answers only for what the processors have not committed,
        // so an order applied between the two reads is in the store.
        let mut rechecked = false;
        loop {
            let now = self.clock.now_ms();
            let done = match (action, reason) {
                (Action::Cancel, Some(r)) => self.store.cancel(id, Some(r), now).await,
                _ => self.store.transition(id, action, now).await,
            };
            match done {
                Ok((order, events)) => {
                    self.publish(&events).await;
                    return Ok(order);
                }
                Err(TransitionError::OrderNotFound(_)) => {
                    // Durable in the log but not applied yet: wait for the
                    // processor rather than lose the action.
                    if !in_log {
                        if self.log.find(&id.to_string()).await?.is_none() {
                            if rechecked {
                                return Err(AppError::NotFound(Resource::Order));
                            }
                            rechecked = true;
                            continue;
                        }
                        in_log = true;
                    }
                    if Instant::now() >= deadline {
                        return Err(AppError::NotReady);
                    }
                    self.clock.sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_millis(50));
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// 86 an item (or bring it back) and drop the cached menu.
    pub async fn set_availability(&self, store: &StoreId, sku: &str, available: bool) -> Result<(), AppError> {
        if !self.store.set_availability(store, sku, available).await? {
            return Err(AppError::NotFound(Resource::Item));
        }
        self.menus.invalidate(store).await?;
        Ok(())
    }

    pub async fn events_after(&self, scope: &EventScope, after: i64, limit: u32) -> Result<Vec<LiveEvent>, AppError> {
        Ok(self.store.events_after(scope, after, limit).await?)
    }

    /// The board of `store` as of now: today's open tickets (orders placed
    /// within [`OPEN_TICKETS_WINDOW`] and not finished), up to `limit`
    /// events, and the cursor a live tail resumes after.
    pub async fn open_board(&self, store: &StoreId, limit: u32) -> Result<BoardSnapshot, AppError> {
        let since = self.clock.now_ms() - OPEN_TICKETS_WINDOW.as_millis() as i64;
        Ok(self.store.open_board(store, since, limit).await?)
    }

    /// A station board's snapshot of `store` as of now: the open tickets of
    /// orders placed within [`OPEN_TICKETS_WINDOW`] (at most
    /// [`MAX_OPEN_TICKETS`]), the orders finished at the station within
    /// `recent` (at most [`MAX_RECENT_TICKETS`]), and the cursor a board
    /// stream resumes after.
    pub async fn tickets(
        &self,
        store: &StoreId,
        station: Option<crate::menu::Station>,
        recent: Duration,
    ) -> Result<TicketsSnapshot, AppError> {
        let now = self.clock.now_ms();
        let query = TicketsQuery {
            store: store.clone(),
            station,
            placed_since: now - OPEN_TICKETS_WINDOW.as_millis() as i64,
            done_since: now - recent.as_millis() as i64,
            open_limit: MAX_OPEN_TICKETS,
            recent_limit: MAX_RECENT_TICKETS,
        };
        Ok(self.store.tickets(&query).await?)
    }

    /// The public pickup board of `store`: orders of the last
    /// [`OPEN_TICKETS_WINDOW`] that have a code and are being made or ready.
    pub async fn pickup_board(&self, store: &StoreId) -> Result<PickupSnapshot, AppError> {
        let since = self.clock.now_ms() - OPEN_TICKETS_WINDOW.as_millis() as i64;
        Ok(self.store.pickup_board(store, since, MAX_OPEN_TICKETS).await?)
    }

    /// Fan events out to live subscribers. Failure is logged, not returned:
    /// the change is committed, and subscribers catch up from the store.
    pub async fn publish(&self, events: &[LiveEvent]) {
        if events.is_empty() {
            return;
        }
        if let Err(e) = self.feed.publish(events).await {
            tracing::warn!(error = %e, "live feed publish failed; subscribers will catch up from the store");
        }
    }
}

fn replay(rec: crate::ports::IdempotencyRecord, fingerprint: &str) -> Result<IntakeOutcome, AppError> {
    if rec.fingerprint == fingerprint {
        Ok(IntakeOutcome::Replayed {
            status: rec.status,
            body: rec.response,
        })
    } else {
        Err(AppError::IdempotencyKeyReused)
    }
}

/// Canonical hash of a request: the parsed draft re-serialized, so
/// whitespace and key order in the client's JSON do not matter.
pub fn fingerprint(draft: &OrderDraft) -> String {
    let canonical = serde_json::to_vec(draft).expect("draft serializes");
    hex::encode(Sha256::digest(&canonical))
}

/// An order as its log record shows it, before a processor applied it
/// (read-your-writes). Public so the log-record fuzz target (`fuzz/`)
/// drives the same view the API renders.
pub fn placed_view(p: &OrderPlacedV1) -> Order {
    Order {
        id: p.order_id,
        store: p.store.clone(),
        customer: p.customer.clone(),
        status: OrderStatus::Placed,
        reject_reason: None,
        payment_status: "unpaid".into(),
        currency: p.currency.clone(),
        total: p.total,
        lines: p.lines.iter().map(|l| l.to_line(None)).collect(),
        at: Timestamps {
            placed_at: p.placed_at,
            ..Timestamps::default()
        },
        name: p.name.clone(),
        pickup_code: None,
        cancel_reason: None,
    }
}
