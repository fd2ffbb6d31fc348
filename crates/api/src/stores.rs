//! Store routes: the store list, the menu (the hottest read in a rush), and
//! staff "86-ing" of items.
//!
//! The menu handler does no serialization: `domain::MenuSnapshot` holds the
//! body rendered once per cache fill together with its ETag, so a hit is a
//! cache lookup, a reference-count bump on the bytes and a few headers. The
//! gzip and brotli forms are made once per snapshot too (`crate::encoding`)
//! and picked by `Accept-Encoding`, never compressed per request. It is
//! benchmarked against `/health/live`, plain and with
//! `Accept-Encoding: gzip, br`; keep it that way.

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
use crate::encoding::{self, AcceptEncoding};
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
    let key = domain::ids::StoreId(STORE_LIST.into());
    let stores = state
        .stores
        .get_or_load(&key, state.app.clock.now_ms(), || async {
            state.app.store.list_stores().await
        })
        .await?;
    let items = stores.iter().cloned().map(StoreDto::from).collect();
    Ok(axum::Json(StoreList { items }))
}

/// The one key of the store list's `TtlCache` (no store id is empty).
const STORE_LIST: &str = "";

/// A store's menu, with prices and availability. Cacheable: send the ETag
/// back in `If-None-Match` to get a body-less 304 while it is unchanged.
/// Compressed with brotli or gzip when `Accept-Encoding` allows (made once
/// per menu version, not per request); each encoding has its own ETag
/// (`"…-br"`, `"…-gz"`), and any of them answers 304 while the menu is
/// unchanged.
#[utoipa::path(
    get,
    path = "/v1/stores/{id}/menu",
    tag = "stores",
    params(
        ("id" = crate::schemas::StoreSlug, Path, description = "Store slug", example = "demo-downtown"),
        ("If-None-Match" = Option<String>, Header, description = "ETag(s) the client holds, of any encoding"),
        ("Accept-Encoding" = Option<String>, Header,
            description = "`br` and `gzip` are offered (brotli first at equal q); none, or identity, without the header",
            example = "gzip, br"),
    ),
    responses(
        (status = 200, description = "The menu", body = MenuDto,
            headers(
                ("ETag" = String, description = "Strong, per encoding: `\"<hash>\"`, `\"<hash>-br\"`, `\"<hash>-gz\"`"),
                ("Cache-Control" = String),
                ("Content-Encoding" = Option<String>, description = "`br` or `gzip`; absent for identity"),
                ("Vary" = String, description = "`Accept-Encoding`"),
            )),
        (status = 304, description = "Unchanged",
            headers(("ETag" = String), ("Cache-Control" = String), ("Vary" = String, description = "`Accept-Encoding`"))),
        (status = 400, description = "invalid_path", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "store_not_found", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn menu(
    State(state): State<AppState>,
    Path(id): Path<String>,
    if_none_match: IfNoneMatch,
    AcceptEncoding(coding): AcceptEncoding,
) -> Result<Response, ApiError> {
    let store = store_id(&id)?;
    let snapshot = state.app.menu(&store).await?;
    let etag = HeaderValue::from_str(&encoding::etag(&snapshot.etag, coding))
        .map_err(|_| ApiError::Internal("menu ETag is not a header value".into()))?;
    // Every encoding of a snapshot is the same menu once decoded, so a
    // client holding any of them is up to date (one whose cached identity
    // copy predates compression, or whose Accept-Encoding changed); the
    // 304 carries the ETag of the representation a 200 would have sent.
    let unchanged = !if_none_match.is_empty() && encoding::all_etags(&snapshot.etag).any(|t| if_none_match.matches(&t));
    let mut resp = if unchanged {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        let body = match coding {
            None => snapshot.json.clone(),
            Some(c) => match snapshot.encoded(c) {
                Some(b) => b.clone(),
                None => encode(snapshot.clone(), c).await?,
            },
        };
        let mut r = Response::new(Body::from(body));
        let h = r.headers_mut();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if let Some(c) = coding {
            h.insert(header::CONTENT_ENCODING, HeaderValue::from_static(encoding::token(c)));
        }
        r
    };
    let headers = resp.headers_mut();
    headers.insert(header::ETAG, etag);
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(MENU_CACHE_CONTROL));
    headers.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    Ok(resp)
}

/// The first request for a coding of a new snapshot compresses it, on the
/// blocking pool: brotli at its densest takes milliseconds on a large
/// menu, which a runtime worker should spend answering other requests.
/// Concurrent first requests wait for that one compression
/// (`MenuSnapshot::encode`); every later one finds it made.
async fn encode(
    snapshot: std::sync::Arc<domain::MenuSnapshot>,
    coding: domain::Coding,
) -> Result<axum::body::Bytes, ApiError> {
    tokio::task::spawn_blocking(move || snapshot.encode(coding, |json| encoding::compress(coding, json)).clone())
        .await
        .map_err(|e| ApiError::Internal(format!("compressing the menu: {e}")))
}

/// Staff: 86 an item, or bring it back. Every instance's cached menu is
/// dropped, so the change shows within a second.
#[utoipa::path(
    put,
    path = "/v1/stores/{id}/items/{sku}/availability",
    tag = "staff",
    params(
        ("id" = crate::schemas::StoreSlug, Path, description = "Store slug"),
        ("sku" = String, Path, description = "Item sku"),
    ),
    request_body(content = AvailabilityRequest, content_type = "application/json"),
    responses(
        (status = 204, description = "Done"),
        (status = 404, description = "item_not_found", body = Problem, content_type = "application/problem+json"),
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
    /// `barista` or `kitchen`; both when absent (or empty).
    #[param(schema_with = crate::schemas::station_filter)]
    pub station: Option<String>,
    /// How far back `recent` looks, in seconds: 1 to 3600, default 900.
    #[param(minimum = 1, maximum = 3600)]
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
    params(("id" = crate::schemas::StoreSlug, Path, description = "Store slug"), TicketsParams),
    responses(
        (status = 200, description = "The snapshot", body = TicketsView),
        (status = 400, description = "invalid_path, invalid_query", body = Problem, content_type = "application/problem+json"),
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

/// `GET /v1/stores/{id}/figures` parameters.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct FiguresParams {
    /// `YYYY-MM-DD` in the store's time zone; today there by default.
    #[param(schema_with = crate::schemas::date_filter)]
    pub date: Option<String>,
}

/// One local hour of the day (of placing).
#[derive(Debug, Serialize, ToSchema)]
pub struct HourFiguresView {
    /// 0 to 23, the store's local time.
    pub hour: u8,
    pub orders: u64,
    pub avg_ready_secs: Option<f64>,
    pub p90_ready_secs: Option<f64>,
}

/// A store's day in figures: counts of the orders placed that local day,
/// and their time to ready (ready_at − placed_at): mean and nearest-rank
/// 90th percentile, over the day and per hour.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = StoreDayFigures)]
pub struct FiguresView {
    pub store: String,
    #[schema(example = "2026-03-01")]
    pub date: String,
    pub orders: u64,
    pub ready: u64,
    pub picked_up: u64,
    pub cancelled: u64,
    pub rejected: u64,
    pub avg_ready_secs: Option<f64>,
    pub p90_ready_secs: Option<f64>,
    /// Only hours with orders.
    pub per_hour: Vec<HourFiguresView>,
}

/// Manager: the store's day in figures.
#[utoipa::path(
    get,
    path = "/v1/stores/{id}/figures",
    tag = "staff",
    params(("id" = crate::schemas::StoreSlug, Path, description = "Store slug"), FiguresParams),
    responses(
        (status = 200, description = "The figures", body = FiguresView),
        (status = 400, description = "invalid_path, invalid_query", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "store_not_found", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn figures(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<FiguresParams>,
) -> Result<axum::Json<FiguresView>, ApiError> {
    let store = store_id(&id)?;
    let bad_date = || ApiError::InvalidQuery("date must be YYYY-MM-DD".into());
    let date = match q.date.as_deref() {
        None | Some("") => None,
        Some(d) if d.len() == 10 => Some(d),
        Some(_) => return Err(bad_date()),
    };
    let menu = state.app.menu(&store).await?;
    let reports: &dyn domain::ports::ReportStore = &*state.app.store;
    let now = state.app.clock.now_ms();
    let f = domain::reports::day_figures(reports, &store, &menu.store().time_zone, date, now)
        .await?
        .ok_or_else(bad_date)?;
    Ok(axum::Json(FiguresView {
        store: f.store.0,
        date: f.date,
        orders: f.orders,
        ready: f.ready,
        picked_up: f.picked_up,
        cancelled: f.cancelled,
        rejected: f.rejected,
        avg_ready_secs: f.avg_ready_secs,
        p90_ready_secs: f.p90_ready_secs,
        per_hour: f
            .per_hour
            .into_iter()
            .map(|h| HourFiguresView {
                hour: h.hour,
                orders: h.orders,
                avg_ready_secs: h.avg_ready_secs,
                p90_ready_secs: h.p90_ready_secs,
            })
            .collect(),
    }))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PopularItemView {
    #[schema(example = "latte")]
    pub sku: String,
    pub name: String,
    /// Quantity sold in the last 24 hours.
    pub count: u64,
}

/// The store's best sellers.
#[derive(Debug, Serialize, ToSchema)]
pub struct PopularView {
    /// Most sold first, at most 8.
    pub items: Vec<PopularItemView>,
    /// When the `popular.refresh` job computed them; `null` if it has not yet.
    pub computed_at: Option<String>,
}

/// The store's top sellers of the last 24 hours by quantity, as the
/// `popular.refresh` job (every 5 minutes) last computed them.
#[utoipa::path(
    get,
    path = "/v1/stores/{id}/popular",
    tag = "stores",
    params(("id" = crate::schemas::StoreSlug, Path, description = "Store slug")),
    responses(
        (status = 200, description = "The best sellers", body = PopularView),
        (status = 400, description = "invalid_path", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "store_not_found", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn popular(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<axum::Json<PopularView>, ApiError> {
    let store = store_id(&id)?;
    state.app.menu(&store).await?;
    let now = state.app.clock.now_ms();
    let (app, key) = (state.app.clone(), store.clone());
    let kept = state
        .popular
        .get_or_load(&store, now, || async move {
            let (items, computed_at) = app.store.popular(&key).await?;
            Ok(domain::reports::Popular { items, computed_at })
        })
        .await?;
    Ok(axum::Json(PopularView {
        items: kept
            .items
            .iter()
            .map(|i| PopularItemView {
                sku: i.sku.clone(),
                name: i.name.clone(),
                count: i.count,
            })
            .collect(),
        computed_at: kept.computed_at.map(crate::orders::rfc3339),
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
