//! Store routes: the store list, the menu (the hottest read in a rush), and
//! staff "86-ing" of items.
//!
//! The menu handler does no serialization: `domain::MenuSnapshot` holds the
//! body rendered once per cache fill together with its ETag, so a hit is a
//! cache lookup, a reference-count bump on the bytes and three headers. It
//! is benchmarked against `/health/live`; keep it that way.

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use domain::menu::StoreInfo;
use domain::{Station, StoreId};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, Problem};
use crate::extract::{IfNoneMatch, Json, Path, Query};
use crate::orders::OrderView;

/// Thirty seconds: short enough that an 86'd item disappears from clients
/// quickly, long enough to absorb a rush of identical reads at the edge.
const MENU_CACHE_CONTROL: &str = "public, max-age=30";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum StationDto {
    Barista,
    Kitchen,
}

impl From<Station> for StationDto {
    fn from(s: Station) -> Self {
        match s {
            Station::Barista => Self::Barista,
            Station::Kitchen => Self::Kitchen,
        }
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StoreDto {
    #[schema(example = "demo-downtown")]
    pub id: String,
    pub name: String,
    #[schema(example = "Europe/London")]
    pub time_zone: String,
    #[schema(example = "USD")]
    pub currency: String,
}

impl From<StoreInfo> for StoreDto {
    fn from(s: StoreInfo) -> Self {
        StoreDto {
            id: s.id.0,
            name: s.name,
            time_zone: s.time_zone,
            currency: s.currency,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct StoreList {
    pub items: Vec<StoreDto>,
}

/// The menu body. Rendered by `domain::MenuSnapshot`, not by these types;
/// they document it, and a test keeps the two in step.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MenuDto {
    pub store: StoreDto,
    /// Ordered for display.
    pub categories: Vec<MenuCategoryDto>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MenuCategoryDto {
    #[schema(example = "coffee")]
    pub code: String,
    pub name: String,
    pub items: Vec<MenuItemDto>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MenuItemDto {
    #[schema(example = "latte")]
    pub sku: String,
    pub name: String,
    pub category: String,
    pub station: StationDto,
    pub sizes: Vec<SizeDto>,
    pub modifiers: Vec<ModifierDto>,
    /// `false` while the store has 86'd the item.
    pub available: bool,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SizeDto {
    #[schema(example = "large")]
    pub code: String,
    pub name: String,
    /// Minor units.
    pub price: i64,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ModifierDto {
    #[schema(example = "oat-milk")]
    pub code: String,
    pub name: String,
    /// Added to the unit price, minor units.
    pub price_delta: i64,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AvailabilityRequest {
    pub available: bool,
}

/// A store slug from the path; a malformed one can name no store.
pub fn store_id(raw: &str) -> Result<StoreId, ApiError> {
    StoreId::parse(raw).ok_or_else(|| ApiError::InvalidPath(format!("'{raw}' is not a store id ([a-z0-9-], 1 to 64)")))
}

/// List the stores.
#[utoipa::path(
    get,
    path = "/v1/stores",
    tag = "stores",
    responses((status = 200, description = "Every store", body = StoreList))
)]
pub async fn list_stores(State(state): State<AppState>) -> Result<axum::Json<StoreList>, ApiError> {
    let items = state.app.stores().await?.into_iter().map(StoreDto::from).collect();
    Ok(axum::Json(StoreList { items }))
}

/// A store's menu, with prices and availability. Cacheable: send the ETag
/// back in `If-None-Match` to get a body-less 304 while it is unchanged.
#[utoipa::path(
    get,
    path = "/v1/stores/{id}/menu",
    tag = "stores",
    params(
        ("id" = String, Path, description = "Store slug", example = "demo-downtown"),
        ("If-None-Match" = Option<String>, Header, description = "ETag(s) the client holds"),
    ),
    responses(
        (status = 200, description = "The menu", body = MenuDto,
            headers(("ETag" = String), ("Cache-Control" = String))),
        (status = 304, description = "Unchanged", headers(("ETag" = String))),
        (status = 400, description = "invalid_path", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "store_not_found", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn menu(
    State(state): State<AppState>,
    Path(id): Path<String>,
    if_none_match: IfNoneMatch,
) -> Result<Response, ApiError> {
    let store = store_id(&id)?;
    let snapshot = state.app.menu(&store).await?;
    let etag = HeaderValue::from_str(&snapshot.etag)
        .map_err(|_| ApiError::Internal("menu ETag is not a header value".into()))?;
    let mut resp = if if_none_match.matches(&snapshot.etag) {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        let mut r = Response::new(Body::from(snapshot.json.clone()));
        r.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        r
    };
    let headers = resp.headers_mut();
    headers.insert(header::ETAG, etag);
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(MENU_CACHE_CONTROL));
    Ok(resp)
}

/// Staff: 86 an item, or bring it back. Every instance's cached menu is
/// dropped, so the change shows within a second.
#[utoipa::path(
    put,
    path = "/v1/stores/{id}/items/{sku}/availability",
    tag = "staff",
    params(
        ("id" = String, Path, description = "Store slug"),
        ("sku" = String, Path, description = "Item sku"),
    ),
    request_body(content = AvailabilityRequest, content_type = "application/json"),
    responses(
        (status = 204, description = "Done"),
        (status = 401, description = "unauthorized", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "item_not_found", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "invalid_body", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn set_availability(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, sku)): Path<(String, String)>,
    Json(req): Json<AvailabilityRequest>,
) -> Result<StatusCode, ApiError> {
    let store = store_id(&id)?;
    state.app.set_availability(&store, &sku, req.available).await?;
    let detail = serde_json::json!({ "store": id, "available": req.available }).to_string();
    state
        .identity
        .record(&caller.actor(), "availability", &sku, &detail)
        .await;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /v1/stores/{id}/tickets` parameters.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TicketsParams {
    /// `barista` or `kitchen`; both when absent.
    pub station: Option<String>,
    /// How far back `recent` looks, in seconds: 1 to 3600, default 900.
    pub recent_secs: Option<u64>,
}

pub const DEFAULT_RECENT_SECS: u64 = 900;
pub const MAX_RECENT_SECS: u64 = 3_600;

impl TicketsParams {
    fn parse(&self) -> Result<(Option<Station>, std::time::Duration), ApiError> {
        let station = match self.station.as_deref() {
            None | Some("") => None,
            Some(s) => Some(
                Station::parse(s)
                    .ok_or_else(|| ApiError::InvalidQuery(format!("unknown station '{s}'; one of barista, kitchen")))?,
            ),
        };
        let secs = self.recent_secs.unwrap_or(DEFAULT_RECENT_SECS);
        if !(1..=MAX_RECENT_SECS).contains(&secs) {
            return Err(ApiError::InvalidQuery(format!(
                "recent_secs must be 1 to {MAX_RECENT_SECS}"
            )));
        }
        Ok((station, std::time::Duration::from_secs(secs)))
    }
}

/// A station board's snapshot.
#[derive(Debug, Serialize, ToSchema)]
pub struct TicketsView {
    /// The store's newest event id, read before the orders: open
    /// `/v1/stores/{id}/board?after=<cursor>` to follow from here without
    /// missing a change.
    pub cursor: i64,
    /// Orders placed in the last 24 hours, confirmed or in progress, with a
    /// line of the station not done; oldest first, at most 1000.
    pub open: Vec<OrderView>,
    /// Orders whose lines of the station were all done within
    /// `recent_secs`, most recently finished first, at most 100 (recall).
    pub recent: Vec<OrderView>,
}

/// Staff: what a barista or kitchen board draws first, and where its
/// stream resumes.
#[utoipa::path(
    get,
    path = "/v1/stores/{id}/tickets",
    tag = "staff",
    params(("id" = String, Path, description = "Store slug"), TicketsParams),
    responses(
        (status = 200, description = "The snapshot", body = TicketsView),
        (status = 400, description = "invalid_path, invalid_query", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "unauthorized", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "forbidden", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "store_not_found", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn tickets(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<TicketsParams>,
) -> Result<axum::Json<TicketsView>, ApiError> {
    let store = store_id(&id)?;
    let (station, recent) = q.parse()?;
    state.app.menu(&store).await?;
    let snap = state.app.tickets(&store, station, recent).await?;
    Ok(axum::Json(TicketsView {
        cursor: snap.cursor,
        open: snap.open.into_iter().map(OrderView::from).collect(),
        recent: snap.recent.into_iter().map(OrderView::from).collect(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use domain::MenuSnapshot;
    use domain::menu::demo_menu;

    #[test]
    fn menu_dto_matches_what_the_domain_renders() {
        let snap = MenuSnapshot::new(demo_menu());
        let m: MenuDto = serde_json::from_slice(&snap.json).expect("the documented schema matches");
        assert_eq!(m.store.id, "demo-downtown");
        assert!(m.categories.iter().any(|c| c.items.iter().any(|i| i.sku == "latte")));
    }

    #[test]
    fn store_ids_in_paths_are_validated() {
        assert!(store_id("demo-downtown").is_ok());
        assert_eq!(store_id("Demo").unwrap_err().code(), "invalid_path");
    }
}
