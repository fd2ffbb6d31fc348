//! Operator actions beyond single jobs: the periodic schedules (list, run
//! now), the processors' dead letters (list, replay, discard), bulk retry
//! and discard of every job matching a filter, and invalidating one
//! store's cached menu.
//!
//! As in `admin.rs`, handlers are thin: a replay is
//! `domain::dead_letters::replay` (the one `rushhour replay-dlq` runs), the
//! bulk rules live in the `JobQueue` port, and the schedules come from the
//! `ScheduleBook` port the binary builds from the same configuration as its
//! scheduler. Every action leaves an audit entry.

use axum::extract::State;
use axum::http::StatusCode;
use domain::StoreId;
use domain::dead_letters::{self, LetterId};
use domain::jobs::{BulkFilter, BulkState, Enqueued, JobId, NewJob};
use domain::ports::DeadLetter;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::AppState;
use crate::admin::{AdminError, queue};
use crate::admin_figures::preview;
use crate::auth::Caller;
use crate::error::{ApiError, Problem, Resource};
use crate::extract::{Json, Path, Query};
use crate::orders::rfc3339;

// ------------------------------------------------------------- schedules

/// One periodic schedule. Times are RFC 3339 in UTC.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ScheduleView {
    #[schema(example = "menu_sync")]
    pub name: String,
    /// 5-field cron in UTC (6 with leading seconds).
    #[schema(example = "*/30 * * * *")]
    pub cron: String,
    #[schema(example = "sync.menu")]
    pub job_kind: String,
    #[schema(example = "sync")]
    pub queue: String,
    pub next_at: Option<String>,
    /// The newest tick fired (by any instance).
    pub last_run_at: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ScheduleList {
    pub items: Vec<ScheduleView>,
}

/// What "run now" enqueued.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ScheduleRun {
    pub job_id: JobId,
    /// `false` when the schedule's job was already queued or running (its
    /// job is unique): `job_id` is that job.
    pub created: bool,
}

/// Every configured schedule with its next tick and its last run.
#[utoipa::path(
    get,
    path = "/v1/admin/schedules",
    tag = "admin",
    responses(
        (status = 200, description = "The schedules", body = ScheduleList),
        (status = 429, description = "rate_limited", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "unavailable", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn schedules(State(state): State<AppState>) -> Result<axum::Json<ScheduleList>, AdminError> {
    let now = state.app.clock.now_ms();
    let book = state
        .ops
        .schedules
        .as_ref()
        .map(|b| b.schedules(now))
        .unwrap_or_default();
    // One statement for every schedule's last run, whatever their number.
    let fired = match &state.jobs {
        Some(q) => q.last_fired_all().await?,
        None => Default::default(),
    };
    let mut items = Vec::with_capacity(book.len());
    for s in book {
        let last = fired.get(&s.name).copied();
        items.push(ScheduleView {
            name: s.name,
            cron: s.cron,
            job_kind: s.job.kind,
            queue: s.job.queue,
            next_at: s.next_at.map(rfc3339),
            last_run_at: last.map(rfc3339),
        });
    }
    Ok(axum::Json(ScheduleList { items }))
}

/// Enqueue a schedule's job now, outside its ticks (the next tick still
/// fires as usual; the job is unique, so it is not doubled while queued).
#[utoipa::path(
    post,
    path = "/v1/admin/schedules/{name}/run",
    tag = "admin",
    params(("name" = String, Path, description = "Schedule name, e.g. menu_sync")),
    responses(
        (status = 202, description = "Enqueued (or already queued)", body = ScheduleRun),
        (status = 404, description = "schedule_not_found", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "rate_limited", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "jobs_unavailable, unavailable", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn run_schedule(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<(StatusCode, axum::Json<ScheduleRun>), AdminError> {
    let now = state.app.clock.now_ms();
    let schedule = state
        .ops
        .schedules
        .as_ref()
        .and_then(|b| b.schedules(now).into_iter().find(|s| s.name == name))
        .ok_or(ApiError::NotFound(Resource::Schedule))?;
    let job = NewJob {
        run_at: now,
        ..schedule.job
    };
    let done = queue(&state)?.enqueue(&[job], now).await?;
    let first = done
        .first()
        .copied()
        .ok_or_else(|| ApiError::Internal("the queue answered no job".into()))?;
    state
        .identity
        .record(&caller.actor(), "schedule_run", &name, "{}")
        .await;
    Ok((
        StatusCode::ACCEPTED,
        axum::Json(ScheduleRun {
            job_id: first.id(),
            created: matches!(first, Enqueued::Created(_)),
        }),
    ))
}

// ---------------------------------------------------------- dead letters

/// A record a processor could not apply and set aside.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeadLetterView {
    /// The consumer group that set it aside.
    pub group: String,
    pub partition: u32,
    pub offset: u64,
    /// The record's key (the order id).
    pub key: String,
    pub error: String,
    pub attempts: u32,
    /// When it was set aside, RFC 3339.
    pub at: String,
    /// The record as UTF-8 (invalid bytes replaced), at most 4 KiB.
    pub payload: String,
}

impl From<DeadLetter> for DeadLetterView {
    fn from(l: DeadLetter) -> Self {
        DeadLetterView {
            payload: preview(&l.payload),
            group: l.group,
            partition: l.partition,
            offset: l.offset,
            key: l.key,
            error: l.error,
            attempts: l.attempts,
            at: rfc3339(l.at),
        }
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeadLetterList {
    /// Newest first.
    pub items: Vec<DeadLetterView>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeadLetterQuery {
    /// 1 to 1000, default 100.
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
}

/// Where a replayed record landed in the log.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Replayed {
    pub key: String,
    pub partition: Option<u32>,
    pub offset: Option<u64>,
}

pub const DEFAULT_LETTERS: u32 = 100;
pub const MAX_LETTERS: u32 = 1000;

/// The dead letters, newest first.
#[utoipa::path(
    get,
    path = "/v1/admin/dead-letters",
    tag = "admin",
    params(DeadLetterQuery),
    responses(
        (status = 200, description = "Dead letters", body = DeadLetterList),
        (status = 400, description = "invalid_query", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "rate_limited", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "unavailable", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn dead_letters(
    State(state): State<AppState>,
    Query(q): Query<DeadLetterQuery>,
) -> Result<axum::Json<DeadLetterList>, AdminError> {
    let limit = q.limit.unwrap_or(DEFAULT_LETTERS);
    if !(1..=MAX_LETTERS).contains(&limit) {
        return Err(ApiError::InvalidQuery(format!("limit must be 1 to {MAX_LETTERS}")).into());
    }
    let letters = state.app.store.dead_letters(limit).await?;
    Ok(axum::Json(DeadLetterList {
        items: letters.into_iter().map(DeadLetterView::from).collect(),
    }))
}

fn letter_id((group, partition, offset): (String, u32, u64)) -> LetterId {
    LetterId {
        group,
        partition,
        offset,
    }
}

/// Re-drive a dead letter into the log (as `rushhour replay-dlq` does): its
/// record is appended again under its key, then the letter is forgotten.
#[utoipa::path(
    post,
    path = "/v1/admin/dead-letters/{group}/{partition}/{offset}/replay",
    tag = "admin",
    params(
        ("group" = String, Path, description = "Consumer group"),
        ("partition" = u32, Path, description = "Partition of the record"),
        ("offset" = u64, Path, description = "Offset of the record"),
    ),
    responses(
        (status = 200, description = "Re-driven", body = Replayed),
        (status = 400, description = "invalid_path", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "dead_letter_not_found", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "rate_limited", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "unavailable", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn replay_dead_letter(
    State(state): State<AppState>,
    caller: Caller,
    Path(at): Path<(String, u32, u64)>,
) -> Result<axum::Json<Replayed>, AdminError> {
    let id = letter_id(at);
    let letter = dead_letters::find(&*state.app.store, &id)
        .await?
        .ok_or(ApiError::NotFound(Resource::DeadLetter))?;
    let to = dead_letters::replay(&*state.app.log, &*state.app.store, &letter).await?;
    metrics::counter!(telemetry::names::DEAD_LETTERS_HANDLED, "action" => "replay").increment(1);
    let target = format!("{}/{}/{}", id.group, id.partition, id.offset);
    state
        .identity
        .record(&caller.actor(), "dead_letter_replay", &target, "{}")
        .await;
    Ok(axum::Json(Replayed {
        key: letter.key,
        partition: to.map(|p| p.partition),
        offset: to.map(|p| p.offset),
    }))
}

/// Forget a dead letter without re-driving it.
#[utoipa::path(
    delete,
    path = "/v1/admin/dead-letters/{group}/{partition}/{offset}",
    tag = "admin",
    params(
        ("group" = String, Path, description = "Consumer group"),
        ("partition" = u32, Path, description = "Partition of the record"),
        ("offset" = u64, Path, description = "Offset of the record"),
    ),
    responses(
        (status = 204, description = "Discarded"),
        (status = 400, description = "invalid_path", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "dead_letter_not_found", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "rate_limited", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "unavailable", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn discard_dead_letter(
    State(state): State<AppState>,
    caller: Caller,
    Path(at): Path<(String, u32, u64)>,
) -> Result<StatusCode, AdminError> {
    let id = letter_id(at);
    if !state
        .app
        .store
        .remove_dead_letter(&id.group, id.partition, id.offset)
        .await?
    {
        return Err(ApiError::NotFound(Resource::DeadLetter).into());
    }
    metrics::counter!(telemetry::names::DEAD_LETTERS_HANDLED, "action" => "discard").increment(1);
    let target = format!("{}/{}/{}", id.group, id.partition, id.offset);
    state
        .identity
        .record(&caller.actor(), "dead_letter_discard", &target, "{}")
        .await;
    Ok(StatusCode::NO_CONTENT)
}

// ------------------------------------------------------------ bulk jobs

/// Which jobs a bulk action applies to: all of the given fields must match.
#[derive(Debug, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BulkRequest {
    pub queue: Option<String>,
    /// `dead`, `scheduled` (queued, not yet due) or `ready` (queued, due).
    /// A retry without a state retries dead jobs; a discard without one
    /// discards every queued and dead job.
    #[schema(schema_with = crate::schemas::bulk_state)]
    pub state: Option<String>,
    pub kind: Option<String>,
}

impl BulkRequest {
    fn filter(self) -> Result<BulkFilter, ApiError> {
        let non_empty = |s: Option<String>| s.filter(|s| !s.is_empty());
        let state =
            match non_empty(self.state) {
                None => None,
                Some(s) => Some(BulkState::parse(&s).ok_or_else(|| {
                    ApiError::InvalidBody(format!("unknown state '{s}'; one of dead, scheduled, ready"))
                })?),
            };
        Ok(BulkFilter {
            queue: non_empty(self.queue),
            state,
            kind: non_empty(self.kind),
        })
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BulkDone {
    /// How many jobs changed.
    pub affected: u64,
}

/// Retry every job matching the filter: dead ones are queued again with
/// their attempts reset, scheduled ones are made due now.
#[utoipa::path(
    post,
    path = "/v1/admin/jobs/retry",
    tag = "admin",
    request_body = BulkRequest,
    responses(
        (status = 200, description = "Retried", body = BulkDone),
        (status = 429, description = "rate_limited", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "jobs_unavailable, unavailable", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn bulk_retry(
    State(state): State<AppState>,
    caller: Caller,
    Json(req): Json<BulkRequest>,
) -> Result<axum::Json<BulkDone>, AdminError> {
    bulk(&state, &caller, req, true).await
}

/// Discard every queued or dead job matching the filter (never a running
/// or done one).
#[utoipa::path(
    post,
    path = "/v1/admin/jobs/discard",
    tag = "admin",
    request_body = BulkRequest,
    responses(
        (status = 200, description = "Discarded", body = BulkDone),
        (status = 429, description = "rate_limited", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "jobs_unavailable, unavailable", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn bulk_discard(
    State(state): State<AppState>,
    caller: Caller,
    Json(req): Json<BulkRequest>,
) -> Result<axum::Json<BulkDone>, AdminError> {
    bulk(&state, &caller, req, false).await
}

async fn bulk(
    state: &AppState,
    caller: &Caller,
    req: BulkRequest,
    retry: bool,
) -> Result<axum::Json<BulkDone>, AdminError> {
    let queue = queue(state)?;
    let filter = req.filter()?;
    let now = state.app.clock.now_ms();
    let affected = if retry {
        queue.retry_matching(&filter, now).await?
    } else {
        queue.discard_matching(&filter, now).await?
    };
    let detail = serde_json::json!({
        "queue": filter.queue,
        "state": filter.state,
        "kind": filter.kind,
        "affected": affected,
    })
    .to_string();
    let action = if retry { "jobs_retry" } else { "jobs_discard" };
    state.identity.record(&caller.actor(), action, "jobs", &detail).await;
    Ok(axum::Json(BulkDone { affected }))
}

// ----------------------------------------------------------------- cache

/// Drop one store's cached menu (every instance, in scale mode); the next
/// read loads it from the store. Its hit counters start again.
#[utoipa::path(
    post,
    path = "/v1/admin/cache/stores/{id}/invalidate",
    tag = "admin",
    params(("id" = String, Path, description = "Store id")),
    responses(
        (status = 204, description = "Invalidated"),
        (status = 404, description = "store_not_found", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "rate_limited", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "unavailable", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn invalidate_store(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, AdminError> {
    let stores = state.app.store.list_stores().await?;
    let Some(store) = stores.into_iter().find(|s| s.id.as_str() == id).map(|s| s.id) else {
        return Err(ApiError::NotFound(Resource::Store).into());
    };
    invalidate(&state, &store).await?;
    state
        .identity
        .record(&caller.actor(), "cache_invalidate", store.as_str(), "{}")
        .await;
    Ok(StatusCode::NO_CONTENT)
}

async fn invalidate(state: &AppState, store: &StoreId) -> Result<(), AdminError> {
    state.app.menus.invalidate(store).await.map_err(ApiError::from)?;
    telemetry::figures().reset_cache_store(store.as_str());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bulk_requests_are_validated() {
        let f = BulkRequest {
            queue: Some("mail".into()),
            state: Some("scheduled".into()),
            kind: Some(String::new()),
        }
        .filter()
        .unwrap();
        assert_eq!(f.queue.as_deref(), Some("mail"));
        assert_eq!((f.state, f.kind), (Some(BulkState::Scheduled), None));
        assert_eq!(BulkRequest::default().filter().unwrap(), BulkFilter::default());
        let bad = BulkRequest {
            state: Some("running".into()),
            ..Default::default()
        };
        assert!(matches!(bad.filter(), Err(ApiError::InvalidBody(_))));
    }
}
