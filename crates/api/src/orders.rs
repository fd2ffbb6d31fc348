//! Order routes: intake (`POST /v1/orders`), reads and listings, and the
//! lifecycle actions (cancel; staff: start, done, pickup), with their DTOs.
//!
//! The DTOs are the HTTP contract, separate from the domain types on
//! purpose: the domain can rename a field without breaking clients, and the
//! OpenAPI schema is derived from what is actually sent. Money goes out as
//! `{amount, currency}` in minor units and times as RFC 3339 strings.

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use domain::order::{LineDraft, OrderDraft, Timestamps};
use domain::ports::{OrderFilter, OrderSummary};
use domain::{Action, IntakeOutcome, Order, OrderId, OrderLine, OrderStatus, StoreId, TicketStatus};
use serde::{Deserialize, Serialize};
use telemetry::names;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, Problem};
use crate::extract::{IdempotencyKey, Json, Path, Query};
use crate::stores::StationDto;

// ------------------------------------------------------------------ DTOs

/// An order as a client places it. Prices are never part of a request: the
/// server prices every line from its menu.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PlaceOrderRequest {
    #[schema(value_type = crate::schemas::StoreSlug)]
    pub store: String,
    /// Loyalty account or free-form customer reference: 1 to 128 characters.
    #[serde(default)]
    #[schema(min_length = 1, max_length = 128)]
    pub customer: Option<String>,
    /// 1 to 50 lines.
    #[schema(min_items = 1, max_items = 50)]
    pub lines: Vec<LineRequest>,
    /// A first name for the pickup board: 1 to 24 characters once trimmed,
    /// none of them a control character.
    #[serde(default)]
    #[schema(schema_with = crate::schemas::first_name)]
    pub name: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LineRequest {
    /// An item of the store's menu (`GET /v1/stores/{id}/menu`); any other
    /// is refused with 422 `validation_failed` (`unknown_sku`, or
    /// `unavailable` while the item is 86'd).
    #[schema(example = "latte")]
    pub sku: String,
    /// One of the item's sizes (`unknown_size` otherwise); required when
    /// the item comes in several.
    #[serde(default)]
    #[schema(example = "large")]
    pub size: Option<String>,
    /// At most 10 of the item's modifiers (`unknown_modifier` otherwise).
    #[serde(default)]
    #[schema(example = json!(["oat-milk"]), max_items = 10)]
    pub modifiers: Vec<String>,
    /// 1 to 20.
    #[schema(example = 2, minimum = 1, maximum = 20)]
    #[serde(deserialize_with = "crate::extract::whole_number")]
    pub qty: i64,
}

impl From<PlaceOrderRequest> for OrderDraft {
    fn from(r: PlaceOrderRequest) -> Self {
        OrderDraft {
            store: r.store,
            customer: r.customer,
            lines: r
                .lines
                .into_iter()
                .map(|l| LineDraft {
                    sku: l.sku,
                    size: l.size,
                    modifiers: l.modifiers,
                    qty: l.qty,
                })
                .collect(),
            name: r.name,
        }
    }
}

/// The 202 body of an accepted order (rendered by the domain and replayed
/// byte for byte on an idempotent retry; this type documents it).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Receipt {
    pub id: Uuid,
    pub status: OrderStatusDto,
    pub total: MoneyDto,
    /// The order access token: send it as `X-Order-Token` (or `?token=`)
    /// to read, follow or cancel this order. Keep it; it is not shown again
    /// (an idempotent retry of the same request answers the same token).
    #[schema(example = "3f9a1c2b4d5e6f708192a3b4c5d6e7f8")]
    pub access_token: String,
    /// Links carrying the token.
    pub links: ReceiptLinks,
}

/// The links of a 202: the order and its event stream for programs, the
/// order page for people (a till or kiosk prints it as a QR code).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReceiptLinks {
    #[serde(rename = "self")]
    #[schema(example = "/v1/orders/0190f0d2-5b1c-7cc3-a1b2-000000000001?token=3f9a1c2b")]
    pub this: String,
    #[schema(example = "/v1/orders/0190f0d2-5b1c-7cc3-a1b2-000000000001/events?token=3f9a1c2b")]
    pub events: String,
    /// The customer's order page. Absent only on the replay of an answer
    /// recorded before order pages existed.
    #[serde(default)]
    #[schema(example = "/orders/0190f0d2-5b1c-7cc3-a1b2-000000000001?token=3f9a1c2b")]
    pub page: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MoneyDto {
    /// Minor units (cents).
    #[schema(example = 1140)]
    pub amount: i64,
    #[schema(example = "USD")]
    pub currency: String,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OrderLinks {
    #[serde(rename = "self")]
    #[schema(example = "/v1/orders/0190f0d2-5b1c-7cc3-a1b2-000000000001")]
    pub this: String,
    #[schema(example = "/v1/orders/0190f0d2-5b1c-7cc3-a1b2-000000000001/events")]
    pub events: String,
}

impl OrderLinks {
    fn of(id: OrderId) -> Self {
        OrderLinks {
            this: format!("/v1/orders/{id}"),
            events: format!("/v1/orders/{id}/events"),
        }
    }
}

/// Mirrors `domain::OrderStatus`; the exhaustive `From` below makes a new
/// domain status a compile error here rather than an undocumented value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OrderStatusDto {
    Placed,
    Confirmed,
    Rejected,
    InProgress,
    Ready,
    PickedUp,
    Cancelled,
    Expired,
}

impl From<OrderStatus> for OrderStatusDto {
    fn from(s: OrderStatus) -> Self {
        match s {
            OrderStatus::Placed => Self::Placed,
            OrderStatus::Confirmed => Self::Confirmed,
            OrderStatus::Rejected => Self::Rejected,
            OrderStatus::InProgress => Self::InProgress,
            OrderStatus::Ready => Self::Ready,
            OrderStatus::PickedUp => Self::PickedUp,
            OrderStatus::Cancelled => Self::Cancelled,
            OrderStatus::Expired => Self::Expired,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TicketStatusDto {
    Queued,
    Started,
    Done,
}

impl From<TicketStatus> for TicketStatusDto {
    fn from(t: TicketStatus) -> Self {
        match t {
            TicketStatus::Queued => Self::Queued,
            TicketStatus::Started => Self::Started,
            TicketStatus::Done => Self::Done,
        }
    }
}

/// An order with its lines and the time of every transition so far.
#[derive(Debug, Serialize, ToSchema)]
pub struct OrderView {
    pub id: Uuid,
    #[schema(example = "demo-downtown")]
    pub store: String,
    pub status: OrderStatusDto,
    pub customer: Option<String>,
    pub reject_reason: Option<String>,
    #[schema(example = "unpaid")]
    pub payment_status: String,
    pub total: MoneyDto,
    pub lines: Vec<LineView>,
    /// RFC 3339, UTC.
    #[schema(example = "2026-01-02T08:15:00.123Z")]
    pub placed_at: String,
    pub confirmed_at: Option<String>,
    pub rejected_at: Option<String>,
    /// When the first line was started.
    pub started_at: Option<String>,
    pub ready_at: Option<String>,
    pub picked_up_at: Option<String>,
    pub cancelled_at: Option<String>,
    pub expired_at: Option<String>,
    /// The first name given for the pickup board.
    pub name: Option<String>,
    /// The store's short per-day code, called out at pickup; `null` until
    /// the order is confirmed, and on rejected orders.
    #[schema(example = "A-042")]
    pub pickup_code: Option<String>,
    /// Why the order was cancelled, if a reason was given.
    pub cancel_reason: Option<String>,
    /// When it should be ready, for orders confirmed or in progress (from
    /// the store's recent prep times per station; `null` otherwise, and in
    /// the answers of staff actions and listings).
    pub estimate: Option<EstimateView>,
    /// Loyalty points the order earned once picked up, when its customer
    /// is a loyalty account (`[loyalty]`); `null` otherwise, and in the
    /// answers of staff actions and listings.
    #[schema(example = 4)]
    pub points: Option<i64>,
    pub links: OrderLinks,
}

/// A ready-time estimate: confirmation (or now) plus the median recent prep
/// time of the slowest station the order still has work for, or that
/// station's default when it has fewer than 5 samples in the last 2 hours.
#[derive(Debug, Serialize, ToSchema)]
pub struct EstimateView {
    /// RFC 3339, UTC.
    pub ready_at: String,
    /// Whole seconds until `ready_at`; 0 once it has passed.
    pub seconds_left: i64,
    /// Samples behind the deciding station's prep time.
    pub samples: u32,
    /// `median` of the samples, or the station's `default`.
    #[schema(example = "median")]
    pub basis: String,
}

impl From<domain::reports::Estimate> for EstimateView {
    fn from(e: domain::reports::Estimate) -> Self {
        EstimateView {
            ready_at: rfc3339(e.ready_at),
            seconds_left: e.seconds_left,
            samples: e.samples,
            basis: e.basis.as_str().to_owned(),
        }
    }
}

/// One priced line; it is also the ticket its station works on.
#[derive(Debug, Serialize, ToSchema)]
pub struct LineView {
    /// 1-based; the `{line}` of the staff routes.
    pub line: u32,
    pub sku: String,
    pub name: String,
    pub station: StationDto,
    pub size: String,
    pub modifiers: Vec<String>,
    pub qty: u32,
    /// Minor units of the order's currency.
    pub unit_price: i64,
    /// `unit_price * qty`, minor units.
    pub line_total: i64,
    /// `null` until the order is confirmed.
    pub ticket: Option<TicketStatusDto>,
}

impl From<Order> for OrderView {
    fn from(o: Order) -> Self {
        let Timestamps {
            placed_at,
            confirmed_at,
            rejected_at,
            started_at,
            ready_at,
            picked_up_at,
            cancelled_at,
            expired_at,
        } = o.at;
        let at = |t: Option<i64>| t.map(rfc3339);
        OrderView {
            id: o.id.0,
            store: o.store.0,
            status: o.status.into(),
            customer: o.customer,
            reject_reason: o.reject_reason,
            payment_status: o.payment_status,
            total: MoneyDto {
                amount: o.total,
                currency: o.currency,
            },
            lines: o.lines.into_iter().map(LineView::from).collect(),
            placed_at: rfc3339(placed_at),
            confirmed_at: at(confirmed_at),
            rejected_at: at(rejected_at),
            started_at: at(started_at),
            ready_at: at(ready_at),
            picked_up_at: at(picked_up_at),
            cancelled_at: at(cancelled_at),
            expired_at: at(expired_at),
            name: o.name,
            pickup_code: o.pickup_code,
            cancel_reason: o.cancel_reason,
            estimate: None,
            points: None,
            links: OrderLinks::of(o.id),
        }
    }
}

impl From<OrderLine> for LineView {
    fn from(l: OrderLine) -> Self {
        LineView {
            line: l.line,
            sku: l.sku,
            name: l.name,
            station: l.station.into(),
            size: l.size,
            modifiers: l.modifiers,
            qty: l.qty,
            unit_price: l.unit_price,
            line_total: l.line_total,
            ticket: l.ticket.map(Into::into),
        }
    }
}

/// An order without its lines, for listings.
#[derive(Debug, Serialize, ToSchema)]
pub struct OrderSummaryView {
    pub id: Uuid,
    pub store: String,
    pub status: OrderStatusDto,
    pub customer: Option<String>,
    pub total: MoneyDto,
    pub placed_at: String,
    pub name: Option<String>,
    #[schema(example = "A-042")]
    pub pickup_code: Option<String>,
    pub links: OrderLinks,
}

impl From<OrderSummary> for OrderSummaryView {
    fn from(s: OrderSummary) -> Self {
        OrderSummaryView {
            id: s.id.0,
            store: s.store.0,
            status: s.status.into(),
            customer: s.customer,
            total: MoneyDto {
                amount: s.total,
                currency: s.currency,
            },
            placed_at: rfc3339(s.placed_at),
            name: s.name,
            pickup_code: s.pickup_code,
            links: OrderLinks::of(s.id),
        }
    }
}

/// One page of orders, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct OrderPage {
    pub items: Vec<OrderSummaryView>,
    /// Pass as `cursor` for the next (older) page; `null` on the last page.
    pub next_cursor: Option<Uuid>,
}

pub const DEFAULT_PAGE: u32 = 20;
pub const MAX_PAGE: u32 = 100;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only this store's orders (empty: all stores).
    #[param(pattern = r"^[a-z0-9-]{0,64}$", example = "demo-downtown")]
    pub store: Option<String>,
    /// Only orders in this status (empty: any).
    #[param(schema_with = crate::schemas::status_filter)]
    pub status: Option<String>,
    /// `next_cursor` of the previous page.
    #[param(schema_with = crate::schemas::order_cursor)]
    pub cursor: Option<String>,
    /// 1 to 100, default 20.
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u32>,
    /// Only the order(s) with this pickup code (`A-042`, the letter in
    /// either case; codes repeat per day and store, so combine with `store`
    /// and `since`).
    #[param(pattern = r"^([A-Za-z]-(00[1-9]|0[1-9][0-9]|[1-9][0-9]{2}))?$")]
    pub code: Option<String>,
    /// Only orders placed at or after this time: RFC 3339 or epoch ms.
    #[param(schema_with = crate::schemas::instant_filter)]
    pub since: Option<String>,
}

impl ListQuery {
    /// The store filter to ask for. `limit` is one more than the page so
    /// the answer says whether another page exists without a count query.
    pub fn filter(&self) -> Result<(OrderFilter, u32), ApiError> {
        let bad = |m: String| ApiError::InvalidQuery(m);
        let limit = self.limit.unwrap_or(DEFAULT_PAGE);
        if !(1..=MAX_PAGE).contains(&limit) {
            return Err(bad(format!("limit must be 1 to {MAX_PAGE}")));
        }
        let store = match self.store.as_deref() {
            None | Some("") => None,
            Some(s) => Some(StoreId::parse(s).ok_or_else(|| bad(format!("'{s}' is not a store id")))?),
        };
        let status = match self.status.as_deref() {
            None | Some("") => None,
            Some(s) => Some(OrderStatus::parse(s).ok_or_else(|| {
                let all: Vec<&str> = OrderStatus::ALL.iter().map(|s| s.as_str()).collect();
                bad(format!("unknown status '{s}'; one of {}", all.join(", ")))
            })?),
        };
        let before = match self.cursor.as_deref() {
            None | Some("") => None,
            Some(c) => Some(OrderId::parse(c).ok_or_else(|| bad(format!("'{c}' is not a cursor")))?),
        };
        let pickup_code = match self.code.as_deref() {
            None | Some("") => None,
            Some(c) => Some(
                domain::pickup::PickupCode::parse(c)
                    .ok_or_else(|| bad(format!("'{c}' is not a pickup code (like A-042)")))?
                    .into_string(),
            ),
        };
        let placed_since = match self.since.as_deref() {
            None | Some("") => None,
            Some(s) => Some(parse_instant(s).ok_or_else(|| bad(format!("'{s}' is neither RFC 3339 nor epoch ms")))?),
        };
        Ok((
            OrderFilter {
                store,
                status,
                before,
                limit: limit + 1,
                pickup_code,
                placed_since,
            },
            limit,
        ))
    }
}

// -------------------------------------------------------------- handlers

/// Place an order. Answers only once the order is durable.
#[utoipa::path(
    post,
    path = "/v1/orders",
    tag = "orders",
    request_body(content = PlaceOrderRequest, content_type = "application/json"),
    params(("Idempotency-Key" = Option<crate::schemas::IdempotencyKeyValue>, Header, nullable = false,
        description = "1–255 visible ASCII characters; a retry with the same key and body gets the original answer")),
    responses(
        (status = 202, description = "Durable; processing continues in the background", body = Receipt,
            headers(("Location" = String, description = "/v1/orders/{id}")),
            links(
                ("GetOrder" = (operation_id = "get_order", parameters(("id" = "$response.body#/id")),
                    description = "The order, as it moves on")),
                ("FollowOrder" = (operation_id = "order_events", parameters(("id" = "$response.body#/id")),
                    description = "Its live events")),
                ("CancelOrder" = (operation_id = "cancel_order", parameters(("id" = "$response.body#/id")),
                    description = "Cancel it while it is placed or confirmed")),
                ("PickUpOrder" = (operation_id = "pick_up", parameters(("id" = "$response.body#/id")),
                    description = "Hand it over once ready")),
            )),
        (status = "2XX", description = "Replay of an earlier answer to the same Idempotency-Key", body = Receipt,
            headers(("Idempotent-Replayed" = String, description = "`true`"))),
        (status = 400, description = "malformed_json, invalid_idempotency_key", body = Problem, content_type = "application/problem+json"),
        (status = 408, description = "body_timeout: the body did not arrive within the deadline; the connection closes",
            body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "invalid_body, validation_failed, invalid_total, idempotency_key_reused", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "overloaded, unavailable, timeout (Retry-After)", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn place_order(
    State(state): State<AppState>,
    IdempotencyKey(key): IdempotencyKey,
    Json(req): Json<PlaceOrderRequest>,
) -> Result<Response, ApiError> {
    let outcome = state.app.place_order(req.into(), key).await?;
    Ok(match outcome {
        IntakeOutcome::Accepted { id, body } => {
            metrics::counter!(names::ORDERS_INTAKE, "outcome" => "accepted").increment(1);
            let mut resp = json_response(StatusCode::ACCEPTED, body);
            set_location(&mut resp, id.0);
            resp
        }
        IntakeOutcome::Replayed { status, body } => {
            metrics::counter!(names::ORDERS_INTAKE, "outcome" => "replayed").increment(1);
            let status = StatusCode::from_u16(status).unwrap_or_else(|_| {
                tracing::warn!(status, "stored idempotent status is not an HTTP status; answering 202");
                StatusCode::ACCEPTED
            });
            let id = receipt_id(&body);
            let mut resp = json_response(status, body);
            if let Some(id) = id {
                set_location(&mut resp, id);
            }
            resp.headers_mut()
                .insert("idempotent-replayed", HeaderValue::from_static("true"));
            resp
        }
    })
}

fn json_response(status: StatusCode, body: Vec<u8>) -> Response {
    let mut resp = Response::new(Body::from(body));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

fn set_location(resp: &mut Response, id: Uuid) {
    if let Ok(v) = HeaderValue::from_str(&format!("/v1/orders/{id}")) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
}

/// The order id inside a stored receipt, for the replay's `Location`.
fn receipt_id(body: &[u8]) -> Option<Uuid> {
    #[derive(Deserialize)]
    struct IdOnly {
        id: Uuid,
    }
    serde_json::from_slice::<IdOnly>(body).ok().map(|r| r.id)
}

/// Read one order. Read-your-writes: an order just answered 202 is visible.
#[utoipa::path(
    get,
    path = "/v1/orders/{id}",
    tag = "orders",
    params(("id" = Uuid, Path, description = "Order id")),
    responses(
        (status = 200, description = "The order", body = OrderView),
        (status = 400, description = "invalid_path", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "order_not_found", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn get_order(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<OrderId>,
) -> Result<axum::Json<OrderView>, ApiError> {
    let order = state.app.order(id).await?;
    in_scope(&caller, order.store.as_str())?;
    let estimate = if matches!(order.status, OrderStatus::Confirmed | OrderStatus::InProgress) {
        let now = state.app.clock.now_ms();
        let reports: &dyn domain::ports::ReportStore = &*state.app.store;
        let prep = domain::reports::prep_times(reports, &state.prep, &order.store, now).await?;
        domain::reports::estimate(&order, &prep, now)
    } else {
        None
    };
    let points = if order.status == OrderStatus::PickedUp {
        let ledger: &dyn domain::ports::PointsLedger = &*state.app.store;
        ledger.order_award(id).await?.map(|a| a.points)
    } else {
        None
    };
    let mut view = OrderView::from(order);
    view.estimate = estimate.map(Into::into);
    view.points = points;
    Ok(axum::Json(view))
}

/// A store-scoped API key may only touch its store's orders. Checked after
/// the order is loaded, since the store is the order's.
fn in_scope(caller: &Caller, store: &str) -> Result<(), ApiError> {
    match &caller.principal {
        Some(p) if !p.may_act_on_store(store) => Err(ApiError::Forbidden),
        _ => Ok(()),
    }
}

/// List orders, newest first, with keyset pagination.
#[utoipa::path(
    get,
    path = "/v1/orders",
    tag = "orders",
    params(ListQuery),
    responses(
        (status = 200, description = "One page", body = OrderPage),
        (status = 400, description = "invalid_query", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn list_orders(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<ListQuery>,
) -> Result<axum::Json<OrderPage>, ApiError> {
    let (mut filter, limit) = q.filter()?;
    // A store-scoped key lists its store only, asked or not.
    if let Some(scope) = caller.principal.as_ref().and_then(|p| p.store.as_deref()) {
        match &filter.store {
            Some(s) if s.as_str() != scope => return Err(ApiError::Forbidden),
            _ => filter.store = StoreId::parse(scope),
        }
    }
    let mut rows = state.app.list_orders(&filter).await?;
    let next_cursor = if rows.len() > limit as usize {
        rows.truncate(limit as usize);
        rows.last().map(|r| r.id.0)
    } else {
        None
    };
    Ok(axum::Json(OrderPage {
        items: rows.into_iter().map(Into::into).collect(),
        next_cursor,
    }))
}

async fn act(
    state: &AppState,
    caller: &Caller,
    id: OrderId,
    action: Action,
) -> Result<axum::Json<OrderView>, ApiError> {
    // Only a store-scoped key pays for the extra read.
    if caller.principal.as_ref().is_some_and(|p| p.store.is_some()) {
        in_scope(caller, state.app.order(id).await?.store.as_str())?;
    }
    crate::traces::link_to_order(state, id).await;
    Ok(axum::Json(state.app.act(id, action).await?.into()))
}

/// The optional body of a cancel.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CancelRequest {
    /// Why (at most 200 characters once trimmed), kept with the order.
    #[serde(default)]
    #[schema(schema_with = crate::schemas::cancel_reason)]
    pub reason: Option<String>,
}

/// Cancel an order that is still `placed` or `confirmed`, optionally
/// saying why (a JSON body `{"reason": "..."}`; no body is no reason).
#[utoipa::path(
    post,
    path = "/v1/orders/{id}/cancel",
    tag = "orders",
    params(("id" = Uuid, Path, description = "Order id")),
    request_body(content = Option<CancelRequest>, content_type = "application/json"),
    responses(
        (status = 200, description = "The cancelled order", body = OrderView),
        (status = 404, description = "order_not_found", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "invalid_body, validation_failed (reason too long)", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "invalid_transition", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "not_ready: not yet applied by a processor (Retry-After)", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn cancel_order(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<OrderId>,
    body: axum::body::Bytes,
) -> Result<axum::Json<OrderView>, ApiError> {
    // The body is optional: a bare POST (what clients sent before reasons
    // existed) cancels without one.
    // `null` is no reason too: the document's body is an optional object.
    let req: CancelRequest = if body.iter().all(u8::is_ascii_whitespace) {
        CancelRequest::default()
    } else {
        serde_json::from_slice::<Option<crate::extract::Object<CancelRequest>>>(&body)
            .map_err(|e| match e.classify() {
                serde_json::error::Category::Data => ApiError::InvalidBody(e.to_string()),
                _ => ApiError::MalformedJson(e.to_string()),
            })?
            .map(|crate::extract::Object(r)| r)
            .unwrap_or_default()
    };
    if caller.principal.as_ref().is_some_and(|p| p.store.is_some()) {
        in_scope(&caller, state.app.order(id).await?.store.as_str())?;
    }
    crate::traces::link_to_order(&state, id).await;
    let order: OrderView = state.app.cancel(id, req.reason.as_deref()).await?.into();
    // A customer cancelling their own order is not a staff action.
    if caller.principal.is_some() {
        state
            .identity
            .record(
                &caller.actor(),
                "cancel",
                &id.to_string(),
                &serde_json::json!({ "reason": order.cancel_reason }).to_string(),
            )
            .await;
    }
    Ok(axum::Json(order))
}

/// Staff: start working on a line (its ticket goes `queued` → `started`).
#[utoipa::path(
    post,
    path = "/v1/orders/{id}/lines/{line}/start",
    tag = "staff",
    params(("id" = Uuid, Path, description = "Order id"), ("line" = u32, Path, description = "1-based line number")),
    responses(
        (status = 200, description = "The order", body = OrderView),
        (status = 404, description = "order_not_found, line_not_found", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "invalid_transition", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn start_line(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, line)): Path<(OrderId, u32)>,
) -> Result<axum::Json<OrderView>, ApiError> {
    act(&state, &caller, id, Action::StartLine(line)).await
}

/// Staff: finish a line (`started` → `done`); the last one makes the order `ready`.
#[utoipa::path(
    post,
    path = "/v1/orders/{id}/lines/{line}/done",
    tag = "staff",
    params(("id" = Uuid, Path, description = "Order id"), ("line" = u32, Path, description = "1-based line number")),
    responses(
        (status = 200, description = "The order", body = OrderView),
        (status = 404, description = "order_not_found, line_not_found", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "invalid_transition", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn finish_line(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, line)): Path<(OrderId, u32)>,
) -> Result<axum::Json<OrderView>, ApiError> {
    act(&state, &caller, id, Action::FinishLine(line)).await
}

/// Staff: take back a line's last step (`started` → `queued`, `done` →
/// `started`); the order's status follows (`in_progress` → `confirmed` when
/// nothing is started any more, `ready` → `in_progress`). The board's undo
/// and recall. Refused (409) once the order is picked up, expired or
/// cancelled.
#[utoipa::path(
    post,
    path = "/v1/orders/{id}/lines/{line}/undo",
    tag = "staff",
    params(("id" = Uuid, Path, description = "Order id"), ("line" = u32, Path, description = "1-based line number")),
    responses(
        (status = 200, description = "The order", body = OrderView),
        (status = 404, description = "order_not_found, line_not_found", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "invalid_transition", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "not_ready: not yet applied by a processor (Retry-After)", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn undo_line(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, line)): Path<(OrderId, u32)>,
) -> Result<axum::Json<OrderView>, ApiError> {
    act(&state, &caller, id, Action::Undo(line)).await
}

/// Staff: hand a `ready` order over.
#[utoipa::path(
    post,
    path = "/v1/orders/{id}/pickup",
    tag = "staff",
    params(("id" = Uuid, Path, description = "Order id")),
    responses(
        (status = 200, description = "The picked-up order", body = OrderView),
        (status = 404, description = "order_not_found", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "invalid_transition", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn pick_up(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<OrderId>,
) -> Result<axum::Json<OrderView>, ApiError> {
    // The receipt is owed by the pickup's own live event, written in the
    // same store transaction, and relayed to the job queue by a worker
    // (`domain::outbox`): nothing to enqueue here, so a crash after the
    // commit cannot lose it.
    act(&state, &caller, id, Action::PickUp).await
}

// ------------------------------------------------------------------ time

/// An instant given as RFC 3339 (any offset) or as epoch milliseconds.
pub fn parse_instant(s: &str) -> Option<i64> {
    if let Ok(ms) = s.parse::<i64>() {
        return Some(ms);
    }
    s.parse::<jiff::Timestamp>().ok().map(|t| t.as_millisecond())
}

/// Epoch milliseconds as RFC 3339 in UTC with millisecond precision, e.g.
/// `2026-01-02T08:15:00.123Z`. Stored times are never before 1970 (they
/// come from the system clock); a corrupt negative one renders as the epoch,
/// and one after the year 9999 (a log record from a foreign producer, found
/// by the `log_record` fuzz target) as its last millisecond, rather than
/// panicking inside the formatter, which has four-digit years only.
pub fn rfc3339(ms: i64) -> String {
    const LAST: i64 = 253_402_300_799_999; // 9999-12-31T23:59:59.999Z
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms.clamp(0, LAST) as u64);
    humantime::format_rfc3339_millis(at).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use domain::Money;
    use domain::app::IntakeReceipt;

    #[test]
    fn timestamps_render_as_rfc3339_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
        assert_eq!(rfc3339(1_709_164_800_000), "2024-02-29T00:00:00.000Z");
        assert_eq!(rfc3339(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(rfc3339(4_107_542_399_999), "2100-02-28T23:59:59.999Z");
        assert_eq!(rfc3339(-1), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(253_402_300_799_999), "9999-12-31T23:59:59.999Z");
        // Beyond the formatter's four-digit years: the last it can say, not a panic.
        assert_eq!(rfc3339(253_402_300_800_000), "9999-12-31T23:59:59.999Z");
        assert_eq!(rfc3339(i64::MAX), "9999-12-31T23:59:59.999Z");
    }

    #[test]
    fn list_queries_are_validated() {
        let q = |store: Option<&str>, status: Option<&str>, cursor: Option<&str>, limit: Option<u32>| ListQuery {
            store: store.map(Into::into),
            status: status.map(Into::into),
            cursor: cursor.map(Into::into),
            limit,
            code: None,
            since: None,
        };
        let (f, limit) = q(None, None, None, None).filter().unwrap();
        assert_eq!((f.limit, limit), (DEFAULT_PAGE + 1, DEFAULT_PAGE));
        let id = OrderId::new();
        let (f, _) = q(
            Some("demo-downtown"),
            Some("in_progress"),
            Some(&id.to_string()),
            Some(100),
        )
        .filter()
        .unwrap();
        assert_eq!(f.status, Some(OrderStatus::InProgress));
        assert_eq!(f.before, Some(id));
        assert_eq!(f.limit, 101);
        for bad in [
            q(None, None, None, Some(0)),
            q(None, None, None, Some(101)),
            q(None, Some("brewing"), None, None),
            q(Some("Not A Store"), None, None, None),
            q(None, None, Some("nope"), None),
        ] {
            assert_eq!(bad.filter().unwrap_err().code(), "invalid_query");
        }
    }

    #[test]
    fn instants_are_rfc3339_or_epoch_ms() {
        assert_eq!(parse_instant("1577836800000"), Some(1_577_836_800_000));
        assert_eq!(parse_instant("2020-01-01T00:00:00Z"), Some(1_577_836_800_000));
        assert_eq!(parse_instant("2020-01-01T01:00:00+01:00"), Some(1_577_836_800_000));
        assert_eq!(parse_instant("yesterday"), None);
    }

    #[test]
    fn receipt_dto_matches_what_the_domain_renders() {
        let id = OrderId::new();
        let body = serde_json::to_vec(&IntakeReceipt {
            id,
            status: OrderStatus::Placed,
            total: Money::new(1140, "USD"),
            access_token: "00ff".into(),
            links: domain::app::ReceiptLinks {
                this: format!("/v1/orders/{id}?token=00ff"),
                events: format!("/v1/orders/{id}/events?token=00ff"),
                page: format!("/orders/{id}?token=00ff"),
            },
        })
        .unwrap();
        let r: Receipt = serde_json::from_slice(&body).expect("the documented schema matches");
        assert_eq!(r.links.page, Some(format!("/orders/{id}?token=00ff")));
        assert_eq!(r.status, OrderStatusDto::Placed);
        assert_eq!(receipt_id(&body), Some(id.0));
        assert_eq!(receipt_id(b"not json"), None);
    }

    #[test]
    fn order_requests_refuse_unknown_fields_and_default_modifiers() {
        let r: PlaceOrderRequest = serde_json::from_str(r#"{"store":"s","lines":[{"sku":"latte","qty":1}]}"#).unwrap();
        let d = OrderDraft::from(r);
        assert_eq!(d.lines[0].modifiers, Vec::<String>::new());
        assert_eq!(d.lines[0].size, None);
        assert!(serde_json::from_str::<PlaceOrderRequest>(r#"{"store":"s","lines":[],"price":1}"#).is_err());
        assert!(
            serde_json::from_str::<PlaceOrderRequest>(r#"{"store":"s","lines":[{"sku":"x","qty":1,"unit_price":1}]}"#)
                .is_err()
        );
    }
}
