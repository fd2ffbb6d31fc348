//! Server-Sent Event streams: one order's progress for its customer, and a
//! store's board of every change for staff.
//!
//! A stream is "subscribe, then replay, then tail". Subscribing to the live
//! feed *before* reading the store means no event can fall between the two:
//! anything committed after the subscription arrives live, anything before
//! it is in the replay, and the overlap is dropped by id (event ids grow
//! monotonically, and every stream only moves forward). A live event is
//! never sent as it comes: it makes the stream read the store from the last
//! id it sent (publishers race, so the feed's order is not the commit
//! order; see `Tail::next`), and a lagged subscriber does the same. The
//! store is the source of truth; the feed only says "look now".
//!
//! A board opened without `Last-Event-ID` does not replay the store's
//! history: it starts from now, preceded by the events of today's open
//! tickets (`Rushhour::open_board`) so the board can draw them, and then an
//! event carrying only the snapshot's cursor as its `id:`. EventSource
//! records that id without dispatching anything, so a reconnect resumes
//! after the snapshot rather than from its oldest open ticket.
//!
//! Streams are exempt from the request timeout and end when the shutdown
//! token is cancelled, so a graceful shutdown does not wait for clients.
//! Each holds a slot under the caps (`protect::StreamLimits`: per client
//! address and in total) until the client goes away.

use axum::extract::State;
use axum::http::HeaderValue;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use domain::ports::{EventScope, FeedItem};
use domain::{LiveEvent, LiveEventKind, OrderId, Rushhour, StoreId};
use futures::stream::{BoxStream, Stream};
use futures::{FutureExt, StreamExt};
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, Problem};
use crate::extract::{LastEventId, Path, Query};
use crate::orders::{OrderStatusDto, TicketStatusDto};
use crate::protect::StreamSlot;
use crate::stores::{StationDto, store_id};

/// Events read from the store per query while replaying.
const PAGE: u32 = 500;

/// Most events a fresh board's snapshot of open tickets sends. A store with
/// more open tickets than that is still served whole: the snapshot is cut
/// there and the stream goes on from its last event as a resumed one would
/// (finished orders' events included).
const SNAPSHOT: u32 = 5_000;

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
    /// The order's pickup code (`A-042`), once confirmed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pickup_code: Option<String>,
    /// The order's first name for the pickup board, if given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
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
        ("Last-Event-ID" = Option<crate::schemas::LastEventIdValue>, Header, nullable = false, description = "Resume after this event id"),
    ),
    responses(
        (status = 200, description = "Server-Sent Events: `event: status|ticket`, `id:` the event id, `data:` a LiveEventDto as JSON",
            body = crate::schemas::LiveEventStream, content_type = "text/event-stream"),
        (status = 400, description = "invalid_path, invalid_last_event_id", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "order_not_found", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "too_many_streams: this client address has `http.max_streams_per_client` streams open (Retry-After)",
            body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "streams_at_capacity: the server has `http.max_streams` streams open; unavailable (Retry-After)",
            body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn order_events(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<OrderId>,
    LastEventId(after): LastEventId,
) -> Result<Response, ApiError> {
    let slot = state.streams.acquire(caller.source)?;
    // 404 rather than an empty stream that would never say anything.
    state.app.order(id).await?;
    // One order's history is short: without `Last-Event-ID` it is all sent.
    let start = Start::After(after.unwrap_or(0));
    stream(&state, EventScope::Order(id), start, Render::Live, slot).await
}

/// Staff: every change to a store's orders, for the barista and kitchen boards.
#[utoipa::path(
    get,
    path = "/v1/stores/{id}/board",
    tag = "staff",
    params(
        ("id" = crate::schemas::StoreSlug, Path, description = "Store slug"),
        AfterQuery,
        ("Last-Event-ID" = Option<crate::schemas::LastEventIdValue>, Header, nullable = false, description = "Resume after this event id (wins over `after`). Without \
            either the board starts from now: first the events of today's open orders (placed in the last 24 hours, not finished), then an event \
            with only an `id:` (the position the stream resumes from), then live changes"),
    ),
    responses(
        (status = 200, description = "Server-Sent Events: `event: status|ticket`, `id:` the event id, `data:` a LiveEventDto as JSON",
            body = crate::schemas::LiveEventStream, content_type = "text/event-stream"),
        (status = 400, description = "invalid_path, invalid_last_event_id", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "store_not_found", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "too_many_streams: this client address has `http.max_streams_per_client` streams open (Retry-After)",
            body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "streams_at_capacity: the server has `http.max_streams` streams open; unavailable (Retry-After)",
            body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn store_board(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    LastEventId(after): LastEventId,
    Query(q): Query<AfterQuery>,
) -> Result<Response, ApiError> {
    let (store, slot) = open_store_stream(&state, &caller, &id).await?;
    // The header wins: it is what a reconnecting EventSource sends, and it
    // is newer than the `after` its page was opened with.
    let start = match after.or(q.after()?) {
        Some(after) => Start::After(after),
        None => Start::OpenTickets,
    };
    stream(&state, EventScope::Store(store), start, Render::Live, slot).await
}

/// `?after=`: resume after this event id when no `Last-Event-ID` is sent
/// (an `EventSource` opened right after a snapshot cannot set the header).
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AfterQuery {
    /// An event id, e.g. a snapshot's `cursor`.
    #[param(minimum = 0)]
    pub after: Option<i64>,
}

impl AfterQuery {
    /// The event id to resume after; event ids are never negative.
    fn after(&self) -> Result<Option<i64>, ApiError> {
        match self.after {
            Some(n) if n < 0 => Err(ApiError::InvalidQuery("after must be an event id (0 or more)".into())),
            after => Ok(after),
        }
    }
}

/// One order on the public pickup board: its code, first name and where it
/// is. Nothing else about an order leaves through the public routes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PickupEntry {
    pub order_id: Uuid,
    #[schema(example = "A-042")]
    pub code: String,
    #[schema(example = "Ada")]
    pub name: Option<String>,
    pub state: PickupState,
    /// Epoch milliseconds when it entered this state (for a snapshot's
    /// preparing orders: when confirmed).
    pub at: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PickupState {
    /// Confirmed or being made.
    Preparing,
    /// Waiting at the counter.
    Ready,
    /// Picked up, expired or cancelled: off the board.
    Gone,
}

impl PickupState {
    /// Where an order in `status` stands on the board; `None` for orders
    /// that never reach it (placed, rejected).
    pub fn of(status: domain::OrderStatus) -> Option<Self> {
        use domain::OrderStatus::*;
        match status {
            Confirmed | InProgress => Some(Self::Preparing),
            Ready => Some(Self::Ready),
            PickedUp | Expired | Cancelled => Some(Self::Gone),
            Placed | Rejected => None,
        }
    }
}

impl PickupEntry {
    /// The board's entry for a status event; `None` for ticket events and
    /// for orders without a code.
    pub fn of_event(e: &LiveEvent) -> Option<Self> {
        if e.kind != LiveEventKind::Status {
            return None;
        }
        Some(PickupEntry {
            order_id: e.order_id.0,
            code: e.pickup_code.clone()?,
            name: e.name.clone(),
            state: PickupState::of(e.status)?,
            at: e.at,
        })
    }
}

/// The public pickup board as of now.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PickupBoard {
    /// Open `/pickup/events?after=<cursor>` to follow from here, losing nothing.
    pub cursor: i64,
    /// Oldest first.
    pub orders: Vec<PickupEntry>,
}

/// The public pickup board: the codes (and first names) of the store's
/// orders being made and ready. Public: it carries nothing else.
#[utoipa::path(
    get,
    path = "/v1/stores/{id}/pickup",
    tag = "stores",
    params(("id" = crate::schemas::StoreSlug, Path, description = "Store slug")),
    responses(
        (status = 200, description = "The board", body = PickupBoard),
        (status = 400, description = "invalid_path", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "store_not_found", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn pickup_board(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<axum::Json<PickupBoard>, ApiError> {
    let store = store_id(&id)?;
    state.app.menu(&store).await?;
    let snap = state.app.pickup_board(&store).await?;
    let orders = snap
        .orders
        .into_iter()
        .filter_map(|o| {
            let state = PickupState::of(o.status)?;
            let at = match state {
                PickupState::Ready => o.at.ready_at,
                _ => o.at.confirmed_at,
            };
            Some(PickupEntry {
                order_id: o.id.0,
                code: o.pickup_code?,
                name: o.name,
                state,
                at: at.unwrap_or(o.at.placed_at),
            })
        })
        .collect();
    Ok(axum::Json(PickupBoard {
        cursor: snap.cursor,
        orders,
    }))
}

/// The public pickup board, live: one `pickup` event per change of an
/// order's place on the board.
#[utoipa::path(
    get,
    path = "/v1/stores/{id}/pickup/events",
    tag = "stores",
    params(
        ("id" = crate::schemas::StoreSlug, Path, description = "Store slug"),
        AfterQuery,
        ("Last-Event-ID" = Option<crate::schemas::LastEventIdValue>, Header, nullable = false, description = "Resume after this event id (wins over `after`); \
            without either the stream starts from now"),
    ),
    responses(
        (status = 200, description = "Server-Sent Events: `event: pickup`, `id:` the event id, `data:` a PickupEntry as JSON",
            body = crate::schemas::PickupEventStream, content_type = "text/event-stream"),
        (status = 400, description = "invalid_path, invalid_query, invalid_last_event_id", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "store_not_found", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "too_many_streams: this client address has `http.max_streams_per_client` streams open (Retry-After)",
            body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "streams_at_capacity: the server has `http.max_streams` streams open; unavailable (Retry-After)",
            body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn pickup_events(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    LastEventId(after): LastEventId,
    Query(q): Query<AfterQuery>,
) -> Result<Response, ApiError> {
    let (store, slot) = open_store_stream(&state, &caller, &id).await?;
    let after = match after.or(q.after()?) {
        Some(after) => after,
        // From now: the store's newest event, without replaying any.
        None => state.app.open_board(&store, 0).await?.cursor,
    };
    stream(
        &state,
        EventScope::Store(store),
        Start::After(after),
        Render::Pickup,
        slot,
    )
    .await
}

/// What every store stream does before it starts: parse the store, take a
/// place under the stream caps, and 404 an unknown store (the menu is
/// cached, so this existence check is nearly free).
async fn open_store_stream(state: &AppState, caller: &Caller, id: &str) -> Result<(StoreId, StreamSlot), ApiError> {
    let store = store_id(id)?;
    let slot = state.streams.acquire(caller.source)?;
    state.app.menu(&store).await?;
    Ok((store, slot))
}

/// Where a stream starts.
enum Start {
    /// After this event id (`Last-Event-ID`): everything since, losslessly.
    After(i64),
    /// A store's open tickets, then from now (a board without `Last-Event-ID`).
    OpenTickets,
}

/// What a stream sends for each event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Render {
    /// The event as it is (`LiveEventDto`).
    Live,
    /// A `PickupEntry` for status events of coded orders; the rest is not sent.
    Pickup,
}

async fn stream(
    state: &AppState,
    scope: EventScope,
    start: Start,
    render: Render,
    slot: StreamSlot,
) -> Result<Response, ApiError> {
    // Subscribe first, then read: see the module comment.
    let feed = state.app.feed.subscribe().await?;
    // The first page is read here rather than in the stream so that a store
    // outage is an honest 503 instead of a stream that ends at once.
    let (first, last, more_in_store, mark) = match (start, &scope) {
        (Start::OpenTickets, EventScope::Store(store)) => {
            let snap = state.app.open_board(store, SNAPSHOT).await?;
            if snap.events.len() as u32 >= SNAPSHOT {
                // Cut short: go on from its last event instead of the
                // cursor, so no open ticket is left out.
                (snap.events, 0, true, None)
            } else {
                (snap.events, 0, false, Some(snap.cursor))
            }
        }
        (start, _) => {
            let after = match start {
                Start::After(after) => after,
                // Only a store has open tickets; an order starts at its
                // beginning.
                Start::OpenTickets => 0,
            };
            let first = state.app.events_after(&scope, after, PAGE).await?;
            let more = first.len() as u32 >= PAGE;
            (first, after, more, None)
        }
    };
    let tail = Tail {
        app: state.app.clone(),
        scope,
        feed,
        more_in_store,
        backlog: first.into(),
        last,
        mark,
        render,
        shutdown: state.shutdown.clone(),
        _slot: slot,
    };
    // A named `heartbeat` event rather than the default comment: a browser
    // never sees comments, and the board must tell a quiet stream from a
    // dead one ("no event for two heartbeats" is STALE). It has no `id:`,
    // so it does not move the client's Last-Event-ID.
    let sse = Sse::new(tail.into_stream()).keep_alive(
        KeepAlive::new()
            .interval(state.sse_heartbeat)
            .event(Event::default().event("heartbeat").data("")),
    );
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
    /// A snapshot's cursor, sent as an id-only event once the backlog is
    /// out; the tail goes on after it.
    mark: Option<i64>,
    render: Render,
    shutdown: CancellationToken,
    /// This stream's place under the caps, given back when it is dropped.
    _slot: StreamSlot,
}

/// What a stream sends next.
enum Out {
    Event(LiveEvent),
    /// Only an `id:`: where a reconnecting client resumes.
    Mark(i64),
}

impl Tail {
    fn into_stream(self) -> impl Stream<Item = Result<Event, Infallible>> + Send + 'static {
        futures::stream::unfold(self, |mut t| async move {
            loop {
                let event = match t.next().await? {
                    Out::Event(e) => match t.render {
                        Render::Live => sse_event(&e),
                        // Events that are not the board's are skipped
                        // unsent: a resume re-reads and skips them again.
                        Render::Pickup => match PickupEntry::of_event(&e) {
                            Some(entry) => pickup_event(e.id, &entry),
                            None => continue,
                        },
                    },
                    Out::Mark(id) => Event::default().id(id.to_string()),
                };
                return Some((Ok(event), t));
            }
        })
    }

    /// The next thing to send, or `None` when the stream should end
    /// (shutdown, feed closed, or the store failing mid-stream: the client
    /// reconnects with `Last-Event-ID` and loses nothing).
    async fn next(&mut self) -> Option<Out> {
        loop {
            if self.shutdown.is_cancelled() {
                return None;
            }
            if let Some(e) = self.backlog.pop_front() {
                if e.id <= self.last {
                    continue;
                }
                self.last = e.id;
                return Some(Out::Event(e));
            }
            if let Some(mark) = self.mark.take()
                && mark > self.last
            {
                self.last = mark;
                return Some(Out::Mark(mark));
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
                // A live event is only a hint to read the store. Events are
                // published after their commit by several tasks at once (a
                // processor per partition, staff actions), so one can
                // arrive before an older one that is committed but not yet
                // published; sending it at once would move `last` past
                // the older one, which would then be dropped as already
                // sent. The store returns every committed event after
                // `last` in id order (ids follow commit order per store:
                // SQLite's single writer, PostgreSQL's per-store advisory
                // lock). Hints already queued are taken in the same read.
                Some(FeedItem::Event(e)) if in_scope(&self.scope, &e) && e.id > self.last => {
                    self.more_in_store = true;
                    loop {
                        match self.feed.next().now_or_never() {
                            Some(Some(_)) => continue,
                            // Closed: read what the store has, then end.
                            Some(None) => self.feed = futures::stream::empty().boxed(),
                            None => {}
                        }
                        break;
                    }
                }
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

fn pickup_event(id: i64, entry: &PickupEntry) -> Event {
    let data = serde_json::to_string(entry).unwrap_or_default();
    Event::default().id(id.to_string()).event("pickup").data(data)
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
            pickup_code: None,
            name: None,
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
