//! Server-Sent Event streams: one order's progress for its customer, and a
//! store's board of every change for staff.
//!
//! A stream is "subscribe, then replay, then tail". Subscribing to the live
//! feed *before* reading the store means no event can fall between the two:
//! anything committed after the subscription arrives live, anything before
//! it is in the replay, and the overlap is dropped by id (event ids grow
//! monotonically, and every stream only moves forward). When the feed says
//! the subscriber lagged, the stream re-reads the store from the last id it
//! sent instead of guessing what was lost. The store is the source of truth;
//! the feed only says "look now".
//!
//! Streams are exempt from the request timeout and end when the shutdown
//! token is cancelled, so a graceful shutdown does not wait for clients.

use axum::extract::State;
use axum::http::HeaderValue;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use domain::ports::{EventScope, FeedItem};
use domain::{LiveEvent, LiveEventKind, OrderId, Rushhour};
use futures::StreamExt;
use futures::stream::{BoxStream, Stream};
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::AppState;
use crate::error::{ApiError, Problem};
use crate::extract::{LastEventId, Path};
use crate::orders::{OrderStatusDto, TicketStatusDto};
use crate::stores::{StationDto, store_id};

/// Events read from the store per query while replaying.
const PAGE: u32 = 500;

/// The `data:` of every event: a change to an order. Serialized from
/// `domain::LiveEvent`; this type documents it, and a test keeps the two in
/// step.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LiveEventDto {
    /// Also the SSE `id:`; send it back as `Last-Event-ID` to resume.
    pub id: i64,
    /// Also the SSE `event:` name.
    pub kind: LiveEventKindDto,
    pub order_id: Uuid,
    pub store: String,
    /// The order's status after the change.
    pub status: OrderStatusDto,
    /// For `ticket` events: the line that changed.
    #[serde(default)]
    pub line: Option<u32>,
    #[serde(default)]
    pub station: Option<StationDto>,
    #[serde(default)]
    pub ticket: Option<TicketStatusDto>,
    /// Epoch milliseconds of the change.
    pub at: i64,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum LiveEventKindDto {
    Status,
    Ticket,
}

/// Follow one order: its status and ticket changes.
#[utoipa::path(
    get,
    path = "/v1/orders/{id}/events",
    tag = "orders",
    params(
        ("id" = Uuid, Path, description = "Order id"),
        ("Last-Event-ID" = Option<i64>, Header, description = "Resume after this event id"),
    ),
    responses(
        (status = 200, description = "Server-Sent Events: `event: status|ticket`, `id:` the event id, `data:` a LiveEventDto as JSON",
            body = LiveEventDto, content_type = "text/event-stream"),
        (status = 400, description = "invalid_path, invalid_last_event_id", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "order_not_found", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn order_events(
    State(state): State<AppState>,
    Path(id): Path<OrderId>,
    LastEventId(after): LastEventId,
) -> Result<Response, ApiError> {
    // 404 rather than an empty stream that would never say anything.
    state.app.order(id).await?;
    stream(&state, EventScope::Order(id), after).await
}

/// Staff: every change to a store's orders, for the barista and kitchen boards.
#[utoipa::path(
    get,
    path = "/v1/stores/{id}/board",
    tag = "staff",
    params(
        ("id" = String, Path, description = "Store slug"),
        ("Last-Event-ID" = Option<i64>, Header, description = "Resume after this event id"),
    ),
    responses(
        (status = 200, description = "Server-Sent Events: `event: status|ticket`, `id:` the event id, `data:` a LiveEventDto as JSON",
            body = LiveEventDto, content_type = "text/event-stream"),
        (status = 400, description = "invalid_path, invalid_last_event_id", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "unauthorized", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "store_not_found", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn store_board(
    State(state): State<AppState>,
    Path(id): Path<String>,
    LastEventId(after): LastEventId,
) -> Result<Response, ApiError> {
    let store = store_id(&id)?;
    // The menu is cached, so this existence check is nearly free.
    state.app.menu(&store).await?;
    stream(&state, EventScope::Store(store), after).await
}

async fn stream(state: &AppState, scope: EventScope, after: i64) -> Result<Response, ApiError> {
    // Subscribe first, then read: see the module comment.
    let feed = state.app.feed.subscribe().await?;
    // The first page is read here rather than in the stream so that a store
    // outage is an honest 503 instead of a stream that ends at once.
    let first = state.app.events_after(&scope, after, PAGE).await?;
    let tail = Tail {
        app: state.app.clone(),
        scope,
        feed,
        more_in_store: first.len() as u32 >= PAGE,
        backlog: first.into(),
        last: after,
        shutdown: state.shutdown.clone(),
    };
    let sse = Sse::new(tail.into_stream()).keep_alive(KeepAlive::new().interval(state.sse_heartbeat));
    let mut resp = sse.into_response();
    // Tell buffering proxies (nginx) to pass events through as they come.
    resp.headers_mut()
        .insert("x-accel-buffering", HeaderValue::from_static("no"));
    Ok(resp)
}

/// The state of one open stream.
struct Tail {
    app: Arc<Rushhour>,
    scope: EventScope,
    feed: BoxStream<'static, FeedItem>,
    /// Read from the store or received live, not yet sent.
    backlog: VecDeque<LiveEvent>,
    /// The last page from the store was full: read again before tailing.
    more_in_store: bool,
    /// Id of the last event sent (or the client's `Last-Event-ID`).
    last: i64,
    shutdown: CancellationToken,
}

impl Tail {
    fn into_stream(self) -> impl Stream<Item = Result<Event, Infallible>> + Send + 'static {
        futures::stream::unfold(self, |mut t| async move {
            let next = t.next().await?;
            Some((Ok(sse_event(&next)), t))
        })
    }

    /// The next event to send, or `None` when the stream should end
    /// (shutdown, feed closed, or the store failing mid-stream: the client
    /// reconnects with `Last-Event-ID` and loses nothing).
    async fn next(&mut self) -> Option<LiveEvent> {
        loop {
            if self.shutdown.is_cancelled() {
                return None;
            }
            if let Some(e) = self.backlog.pop_front() {
                if e.id <= self.last {
                    continue;
                }
                self.last = e.id;
                return Some(e);
            }
            if self.more_in_store {
                let page = tokio::select! {
                    _ = self.shutdown.cancelled() => return None,
                    page = self.app.events_after(&self.scope, self.last, PAGE) => page,
                };
                match page {
                    Ok(page) => {
                        self.more_in_store = page.len() as u32 >= PAGE;
                        self.backlog.extend(page);
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "event replay failed; ending the stream so the client resumes");
                        return None;
                    }
                }
                continue;
            }
            let item = tokio::select! {
                _ = self.shutdown.cancelled() => return None,
                item = self.feed.next() => item,
            };
            match item {
                Some(FeedItem::Event(e)) if in_scope(&self.scope, &e) && e.id > self.last => self.backlog.push_back(e),
                Some(FeedItem::Event(_)) => {}
                Some(FeedItem::Lagged) => self.more_in_store = true,
                None => {
                    tracing::debug!("live feed closed; ending the stream");
                    return None;
                }
            }
        }
    }
}

fn in_scope(scope: &EventScope, e: &LiveEvent) -> bool {
    match scope {
        EventScope::Order(id) => e.order_id == *id,
        EventScope::Store(store) => e.store == *store,
    }
}

fn sse_event(e: &LiveEvent) -> Event {
    let name = match e.kind {
        LiveEventKind::Status => "status",
        LiveEventKind::Ticket => "ticket",
    };
    // A LiveEvent is plain data; serializing it cannot fail.
    let data = serde_json::to_string(e).unwrap_or_default();
    Event::default().id(e.id.to_string()).event(name).data(data)
}

#[cfg(test)]
mod tests {
    use super::*;
    use domain::{OrderStatus, Station, StoreId, TicketStatus};

    fn event(id: i64, order: OrderId, store: &str) -> LiveEvent {
        LiveEvent {
            id,
            kind: LiveEventKind::Ticket,
            order_id: order,
            store: StoreId(store.into()),
            status: OrderStatus::InProgress,
            line: Some(1),
            station: Some(Station::Barista),
            ticket: Some(TicketStatus::Started),
            at: 1,
        }
    }

    #[test]
    fn scopes_filter_by_order_or_store() {
        let (a, b) = (OrderId::new(), OrderId::new());
        let e = event(1, a, "s1");
        assert!(in_scope(&EventScope::Order(a), &e));
        assert!(!in_scope(&EventScope::Order(b), &e));
        assert!(in_scope(&EventScope::Store(StoreId("s1".into())), &e));
        assert!(!in_scope(&EventScope::Store(StoreId("s2".into())), &e));
    }

    #[test]
    fn live_event_dto_matches_what_is_sent() {
        let e = event(9, OrderId::new(), "s1");
        let dto: LiveEventDto = serde_json::from_str(&serde_json::to_string(&e).unwrap()).unwrap();
        assert_eq!(dto.id, 9);
        assert_eq!(dto.line, Some(1));
    }
}
