//! `GET /v1/admin/loyalty/accounts/{id}`: a loyalty account as rushhour
//! holds it — the points the loyalty service last synced plus the awards
//! picked-up orders made since (`domain::loyalty`), each with whether the
//! service has acknowledged it. Admin only: an account is a customer's
//! personal record, and the customer-facing view of points is the order's
//! own `points` (its token opens it).

use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;

use crate::AppState;
use crate::error::{ApiError, Resource};
use crate::extract::Path;
use crate::orders::rfc3339;

/// Awards listed per account, newest first.
const AWARDS_SHOWN: u32 = 50;

/// A loyalty account and its recent awards.
#[derive(Debug, Serialize, ToSchema)]
pub struct LoyaltyAccountView {
    #[schema(example = "acct-000042")]
    pub id: String,
    pub name: String,
    pub tier: String,
    /// The account's points: the service's figure at the last sync plus
    /// the awards made here since.
    pub points: i64,
    /// The newest awards (at most 50).
    pub awards: Vec<PointsAwardView>,
}

/// The points one picked-up order earned.
#[derive(Debug, Serialize, ToSchema)]
pub struct PointsAwardView {
    pub order_id: uuid::Uuid,
    pub points: i64,
    /// RFC 3339, UTC.
    pub awarded_at: String,
    /// When the loyalty service acknowledged it; `null` until then.
    pub reported_at: Option<String>,
}

/// A loyalty account with the points orders earned it.
#[utoipa::path(
    get,
    path = "/v1/admin/loyalty/accounts/{id}",
    tag = "admin",
    params(("id" = String, Path, description = "Loyalty account id")),
    responses(
        (status = 200, description = "The account", body = LoyaltyAccountView),
        (status = 401, description = "unauthorized", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 403, description = "forbidden", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 404, description = "account_not_found", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 429, description = "rate_limited", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 503, description = "unavailable", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
pub async fn account(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<axum::Json<LoyaltyAccountView>, ApiError> {
    let store = &*state.app.store;
    let account = store
        .loyalty_account(&id)
        .await?
        .ok_or(ApiError::NotFound(Resource::Account))?;
    let awards = store.account_awards(&id, AWARDS_SHOWN).await?;
    Ok(axum::Json(LoyaltyAccountView {
        id: account.id,
        name: account.name,
        tier: account.tier,
        points: account.points,
        awards: awards
            .into_iter()
            .map(|a| PointsAwardView {
                order_id: a.order_id.0,
                points: a.points,
                awarded_at: rfc3339(a.awarded_at),
                reported_at: a.reported_at.map(rfc3339),
            })
            .collect(),
    }))
}
