//! `/v1/admin/webhooks`: the outbound webhooks' subscribers, their test
//! button, their delivery logs and the retry of a dead delivery (admin
//! only, every change audited). The
//! delivering itself is the worker's (`domain::webhooks`); this is the
//! operator's window onto it.
//!
//! A subscriber's secret is generated here, answered once in the 201 of its
//! creation (`Cache-Control: no-store`) and never shown again: a receiver
//! that lost it gets a new subscriber.

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use domain::order::FieldError;
use domain::ports::WebhookStore;
use domain::webhooks::{self, Delivery, DeliveryState, EventType, NewSubscriber, Subscriber, SubscriberPatch};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, Problem, Resource};
use crate::extract::{Json, Path, Query};
use crate::orders::rfc3339;

const DEFAULT_PAGE: u32 = 50;
const MAX_PAGE: u32 = 500;

// ------------------------------------------------------------------ DTOs

/// A subscriber to add.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewWebhookRequest {
    /// Where deliveries are POSTed: `https://…` (or `http://…`).
    #[schema(schema_with = crate::schemas::subscriber_url)]
    pub url: String,
    /// Any of `confirmed`, `ready`, `picked_up`, `cancelled`, `expired`, `paid`.
    #[schema(schema_with = crate::schemas::subscriber_events)]
    pub events: Vec<String>,
    /// Only this store's orders (422 `unknown_store` if there is no such
    /// store); every store when absent or empty.
    pub store: Option<String>,
    /// Default true.
    pub enabled: Option<bool>,
}

/// A change to a subscriber.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookPatch {
    pub enabled: Option<bool>,
}

/// A subscriber (its secret is never shown after creation).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct WebhookDto {
    pub id: i64,
    pub url: String,
    pub events: Vec<String>,
    pub store: Option<String>,
    pub enabled: bool,
    /// RFC 3339.
    pub created_at: String,
}

impl From<Subscriber> for WebhookDto {
    fn from(s: Subscriber) -> Self {
        Self {
            id: s.id,
            url: s.url,
            events: s.events.iter().map(|e| e.as_str().to_owned()).collect(),
            store: s.store,
            enabled: s.enabled,
            created_at: rfc3339(s.created_at),
        }
    }
}

/// The 201 of a creation: the subscriber and its signing secret, shown
/// this once.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CreatedWebhookDto {
    #[serde(flatten)]
    pub webhook: WebhookDto,
    /// Verifies `Rushhour-Signature` on the receiver's side.
    #[schema(example = "whsec_3f0c…")]
    pub secret: String,
}

/// A test ping queued for delivery.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PingDto {
    #[schema(example = "evt_42")]
    pub event_id: String,
}

/// One event for one subscriber, as the delivery log shows it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct DeliveryDto {
    #[schema(example = "evt_42")]
    pub event_id: String,
    /// `confirmed`, `ready`, `picked_up`, `cancelled`, `expired`, `paid` or `ping`.
    #[serde(rename = "type")]
    pub kind: String,
    pub order_id: Option<String>,
    pub store: Option<String>,
    /// `pending`, `delivered` or `dead`.
    pub state: String,
    pub attempts: u32,
    /// RFC 3339; when the next attempt is due (pending only).
    pub next_at: Option<String>,
    /// The receiver's last HTTP status.
    pub last_status: Option<u16>,
    /// The start of the receiver's last answer (at most 512 bytes).
    pub last_body: Option<String>,
    /// Why the last attempt failed (transport error or status).
    pub last_error: Option<String>,
    pub occurred_at: String,
    pub created_at: String,
    pub updated_at: String,
}

impl From<Delivery> for DeliveryDto {
    fn from(d: Delivery) -> Self {
        let some = |s: String| (!s.is_empty()).then_some(s);
        Self {
            event_id: webhooks::event_id(d.event_id),
            kind: d.kind.as_str().to_owned(),
            order_id: some(d.order_id),
            store: some(d.store),
            state: d.state.as_str().to_owned(),
            attempts: d.attempts,
            next_at: (d.state == DeliveryState::Pending).then(|| rfc3339(d.next_at)),
            last_status: d.last_status,
            last_body: d.last_body,
            last_error: d.last_error,
            occurred_at: rfc3339(d.occurred_at),
            created_at: rfc3339(d.created_at),
            updated_at: rfc3339(d.updated_at),
        }
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeliveryQuery {
    /// Only `pending`, `delivered` or `dead` deliveries.
    #[param(schema_with = crate::schemas::delivery_state_filter)]
    pub state: Option<String>,
    /// Only events older than this one (`evt_<n>` or `<n>`): the next page.
    #[param(schema_with = crate::schemas::event_cursor)]
    pub before: Option<String>,
    /// 1 to 500, default 50.
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
}

// --------------------------------------------------------------- handlers

fn store(state: &AppState) -> &dyn WebhookStore {
    &*state.app.store
}

/// A new subscriber's secret: 256 random bits, hex.
pub fn new_secret() -> String {
    format!("whsec_{}", identity::random_hex(32))
}

/// Every subscriber, oldest first.
#[utoipa::path(
    get,
    path = "/v1/admin/webhooks",
    tag = "admin",
    responses((status = 200, description = "Subscribers", body = Vec<WebhookDto>))
)]
pub async fn list(State(state): State<AppState>) -> Result<axum::Json<Vec<WebhookDto>>, ApiError> {
    let subs = store(&state).subscribers().await?;
    Ok(axum::Json(subs.into_iter().map(Into::into).collect()))
}

/// Add a subscriber. Its signing secret is in this answer only.
#[utoipa::path(
    post,
    path = "/v1/admin/webhooks",
    tag = "admin",
    request_body = NewWebhookRequest,
    responses(
        (status = 201, description = "Added", body = CreatedWebhookDto),
        (status = 422, description = "invalid_body, validation_failed", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    Json(req): Json<NewWebhookRequest>,
) -> Result<Response, ApiError> {
    let mut errors = Vec::new();
    let mut events = Vec::new();
    for e in &req.events {
        match EventType::parse(e).filter(|t| *t != EventType::Ping) {
            Some(t) if !events.contains(&t) => events.push(t),
            Some(_) => {}
            None => errors.push(FieldError {
                field: "events".into(),
                code: "unknown_event",
                message: format!("unknown event type {e:?}"),
            }),
        }
    }
    if let Err(e) = webhooks::validate(&req.url, &events) {
        let field = match e {
            webhooks::SubscriberError::Url => "url",
            webhooks::SubscriberError::Events => "events",
        };
        if errors.is_empty() || field == "url" {
            errors.push(FieldError {
                field: field.into(),
                code: "invalid",
                message: e.to_string(),
            });
        }
    }
    let store_filter = req.store.filter(|s| !s.is_empty());
    if let Some(s) = &store_filter
        && state.app.store.load_menu(&domain::StoreId(s.clone())).await?.is_none()
    {
        errors.push(FieldError {
            field: "store".into(),
            code: "unknown_store",
            message: format!("no store {s:?}"),
        });
    }
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    let secret = new_secret();
    let sub = store(&state)
        .create_subscriber(&NewSubscriber {
            url: req.url,
            events,
            store: store_filter,
            secret: secret.clone(),
            enabled: req.enabled.unwrap_or(true),
            created_at: state.app.clock.now_ms(),
        })
        .await?;
    let detail = serde_json::json!({ "url": sub.url, "events": webhooks::encode_types(&sub.events) }).to_string();
    state
        .identity
        .record(&caller.actor(), "webhook_add", &sub.id.to_string(), &detail)
        .await;
    let body = CreatedWebhookDto {
        webhook: sub.into(),
        secret,
    };
    let mut resp = (StatusCode::CREATED, axum::Json(body)).into_response();
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(resp)
}

/// Enable or disable a subscriber. A disabled one gets no new events and
/// its pending deliveries wait.
#[utoipa::path(
    patch,
    path = "/v1/admin/webhooks/{id}",
    tag = "admin",
    params(("id" = i64, Path, description = "Subscriber id")),
    request_body = WebhookPatch,
    responses(
        (status = 200, description = "Changed", body = WebhookDto),
        (status = 404, description = "webhook_not_found", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn update(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<i64>,
    Json(req): Json<WebhookPatch>,
) -> Result<axum::Json<WebhookDto>, ApiError> {
    let sub = store(&state)
        .update_subscriber(id, &SubscriberPatch { enabled: req.enabled })
        .await
        .map_err(not_found)?;
    let detail = serde_json::json!({ "enabled": sub.enabled }).to_string();
    state
        .identity
        .record(&caller.actor(), "webhook_update", &id.to_string(), &detail)
        .await;
    Ok(axum::Json(sub.into()))
}

/// Remove a subscriber and its delivery log.
#[utoipa::path(
    delete,
    path = "/v1/admin/webhooks/{id}",
    tag = "admin",
    params(("id" = i64, Path, description = "Subscriber id")),
    responses(
        (status = 204, description = "Removed"),
        (status = 404, description = "webhook_not_found", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn remove(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<i64>,
) -> Result<StatusCode, ApiError> {
    if !store(&state).delete_subscriber(id).await? {
        return Err(ApiError::NotFound(Resource::Webhook));
    }
    state
        .identity
        .record(&caller.actor(), "webhook_remove", &id.to_string(), "{}")
        .await;
    Ok(StatusCode::NO_CONTENT)
}

/// Queue a `ping` event for this subscriber alone; its delivery shows in
/// the log like any other.
#[utoipa::path(
    post,
    path = "/v1/admin/webhooks/{id}/test",
    tag = "admin",
    params(("id" = i64, Path, description = "Subscriber id")),
    responses(
        (status = 202, description = "Queued", body = PingDto),
        (status = 404, description = "webhook_not_found", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn test(State(state): State<AppState>, caller: Caller, Path(id): Path<i64>) -> Result<Response, ApiError> {
    let event = store(&state)
        .add_ping(id, state.app.clock.now_ms())
        .await
        .map_err(not_found)?;
    state
        .identity
        .record(&caller.actor(), "webhook_test", &id.to_string(), "{}")
        .await;
    let body = PingDto {
        event_id: webhooks::event_id(event),
    };
    Ok((StatusCode::ACCEPTED, axum::Json(body)).into_response())
}

/// The subscriber's delivery log, newest event first.
#[utoipa::path(
    get,
    path = "/v1/admin/webhooks/{id}/deliveries",
    tag = "admin",
    params(("id" = i64, Path, description = "Subscriber id"), DeliveryQuery),
    responses(
        (status = 200, description = "Deliveries", body = Vec<DeliveryDto>),
        (status = 400, description = "invalid_query", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "webhook_not_found", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn deliveries(
    State(state): State<AppState>,
    Path(id): Path<i64>,
    Query(q): Query<DeliveryQuery>,
) -> Result<axum::Json<Vec<DeliveryDto>>, ApiError> {
    let bad = ApiError::InvalidQuery;
    let limit = q.limit.unwrap_or(DEFAULT_PAGE);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(bad(format!("limit must be 1 to {MAX_PAGE}")));
    }
    let state_filter = match q.state.as_deref() {
        None | Some("") => None,
        Some(s) => Some(
            DeliveryState::parse(s)
                .ok_or_else(|| bad(format!("unknown state '{s}'; one of pending, delivered, dead")))?,
        ),
    };
    let before = match q.before.as_deref() {
        None | Some("") => None,
        Some(c) => Some(webhooks::parse_event_id(c).ok_or_else(|| bad(format!("'{c}' is not an event id")))?),
    };
    let store = store(&state);
    if store.subscriber(id).await?.is_none() {
        return Err(ApiError::NotFound(Resource::Webhook));
    }
    let rows = store.deliveries(id, state_filter, before, limit).await?;
    Ok(axum::Json(rows.into_iter().map(Into::into).collect()))
}

/// `subscriber`'s delivery of `event`. The delivery log pages by
/// `event_id < before`, so the row itself is the first one before
/// `event + 1`.
async fn delivery_of(store: &dyn WebhookStore, subscriber: i64, event: i64) -> Result<Option<Delivery>, ApiError> {
    // Saturating: `evt_9223372036854775807` is a well-formed id that no
    // delivery has, not an overflow.
    let rows = store
        .deliveries(subscriber, None, Some(event.saturating_add(1)), 1)
        .await?;
    Ok(rows.into_iter().find(|d| d.event_id == event))
}

/// Put a dead delivery back to pending, due now, its attempts counted from
/// zero. A running worker's dispatcher queues the subscriber's delivery job
/// within `webhooks.outbound.dispatch_interval_ms`, as for any delivery
/// that falls due. Order per order still holds: it goes once no older
/// delivery of its order is pending, and the order's later pending
/// deliveries wait behind it.
#[utoipa::path(
    post,
    path = "/v1/admin/webhooks/{id}/deliveries/{delivery}/retry",
    tag = "admin",
    params(
        ("id" = i64, Path, description = "Subscriber id"),
        ("delivery" = crate::schemas::EventIdValue, Path, description = "The delivery's event id, `evt_<n>` (or `<n>`)"),
    ),
    responses(
        (status = 202, description = "Pending again", body = DeliveryDto),
        (status = 400, description = "invalid_path", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "webhook_not_found, delivery_not_found", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "delivery_not_dead", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn retry(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, delivery)): Path<(i64, String)>,
) -> Result<Response, ApiError> {
    let event = webhooks::parse_event_id(&delivery)
        .ok_or_else(|| ApiError::InvalidPath(format!("'{delivery}' is not an event id (evt_<n>)")))?;
    let store = store(&state);
    if store.subscriber(id).await?.is_none() {
        return Err(ApiError::NotFound(Resource::Webhook));
    }
    if store
        .retry_deliveries(id, Some(event), state.app.clock.now_ms())
        .await?
        == 0
    {
        // Not retried: tell "no such delivery" from "not dead".
        return Err(match delivery_of(store, id, event).await? {
            None => ApiError::NotFound(Resource::Delivery),
            Some(_) => ApiError::DeliveryNotDead(event),
        });
    }
    state
        .identity
        .record(
            &caller.actor(),
            "webhook_retry",
            &id.to_string(),
            &serde_json::json!({ "event_id": webhooks::event_id(event) }).to_string(),
        )
        .await;
    // A worker may have attempted it already; whatever it is now is the answer.
    let row = delivery_of(store, id, event)
        .await?
        .ok_or(ApiError::NotFound(Resource::Delivery))?;
    Ok((StatusCode::ACCEPTED, axum::Json(DeliveryDto::from(row))).into_response())
}

fn not_found(e: domain::PortError) -> ApiError {
    match e {
        domain::PortError::NotFound => ApiError::NotFound(Resource::Webhook),
        other => other.into(),
    }
}
