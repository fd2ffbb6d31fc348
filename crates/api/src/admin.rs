//! Operator routes for background jobs (`/v1/admin/...`): queue counts,
//! listing and inspecting jobs, retrying a dead job and discarding one.
//!
//! They exist so that an operator can see and unstick the job queue from
//! anywhere the API is reachable, without shell access to the host that
//! `rushhour jobs` needs. Every route requires the staff key, answers JSON,
//! and fails with problem+json; the queue is optional in `ApiConfig` (a
//! process built without one answers 503 `jobs_unavailable`).
//!
//! Handlers stay thin, as elsewhere: the rules (what may be retried or
//! discarded) live in the `JobQueue` port; these only tell its `false`
//! answers apart (no such job, or a job in the wrong state) by reading the
//! job back, so the client gets a precise 404 or 409.

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use domain::jobs::{JobFilter, JobId, JobInfo, JobQueue, JobState, QueueCounts};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use utoipa::{IntoParams, ToSchema};

use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, ErrorCode, PROBLEM_JSON, Problem, Resource, problem_type};
use crate::extract::{Path, Query};
use crate::orders::rfc3339;

pub const DEFAULT_JOB_PAGE: u32 = 50;
pub const MAX_JOB_PAGE: u32 = 100;

// ------------------------------------------------------------------ DTOs

/// Job counts of one queue. `scheduled` is the part of `queued` not yet due.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QueueCountsDto {
    #[schema(example = "mail")]
    pub queue: String,
    pub queued: u64,
    pub scheduled: u64,
    pub running: u64,
    pub done: u64,
    pub dead: u64,
}

impl From<QueueCounts> for QueueCountsDto {
    fn from(c: QueueCounts) -> Self {
        QueueCountsDto {
            queue: c.queue,
            queued: c.queued,
            scheduled: c.scheduled,
            running: c.running,
            done: c.done,
            dead: c.dead,
        }
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QueueList {
    /// Every queue that has jobs, and the standard ones.
    pub queues: Vec<QueueCountsDto>,
}

/// Mirrors `domain::jobs::JobState`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum JobStateDto {
    Queued,
    Running,
    Done,
    Dead,
}

impl From<JobState> for JobStateDto {
    fn from(s: JobState) -> Self {
        match s {
            JobState::Queued => JobStateDto::Queued,
            JobState::Running => JobStateDto::Running,
            JobState::Done => JobStateDto::Done,
            JobState::Dead => JobStateDto::Dead,
        }
    }
}

/// Everything known about a job. Times are RFC 3339 in UTC.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JobView {
    #[schema(example = 42)]
    pub id: JobId,
    #[schema(example = "mail.receipt")]
    pub kind: String,
    #[schema(example = "mail")]
    pub queue: String,
    pub state: JobStateDto,
    #[schema(value_type = Object)]
    pub payload: serde_json::Value,
    /// Higher runs first.
    pub priority: i16,
    /// Attempts so far.
    pub attempts: u32,
    pub max_attempts: u32,
    /// Not before this time.
    pub run_at: String,
    pub unique_key: Option<String>,
    pub last_error: Option<String>,
    /// The worker holding the lease, while running.
    pub worker: Option<String>,
    pub lease_until: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    pub finished_at: Option<String>,
}

impl From<JobInfo> for JobView {
    fn from(j: JobInfo) -> Self {
        JobView {
            id: j.id,
            kind: j.kind,
            queue: j.queue,
            state: j.state.into(),
            payload: j.payload,
            priority: j.priority,
            attempts: j.attempts,
            max_attempts: j.max_attempts,
            run_at: rfc3339(j.run_at),
            unique_key: j.unique_key,
            last_error: j.last_error,
            worker: j.worker,
            lease_until: j.lease_until.map(rfc3339),
            created_at: rfc3339(j.created_at),
            updated_at: rfc3339(j.updated_at),
            finished_at: j.finished_at.map(rfc3339),
        }
    }
}

/// One page of jobs, newest first.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JobPage {
    pub jobs: Vec<JobView>,
    /// Pass as `before` for the next (older) page; `null` on the last page.
    pub next_cursor: Option<JobId>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct JobListQuery {
    /// Only this queue's jobs (`default`, `mail`, `sync`, `maintenance`, …).
    pub queue: Option<String>,
    /// Only jobs in this state: `queued`, `running`, `done` or `dead`.
    #[param(schema_with = crate::schemas::job_state_filter)]
    pub state: Option<String>,
    /// Only jobs of this kind, e.g. `mail.receipt`.
    pub kind: Option<String>,
    /// `next_cursor` of the previous page: only jobs with a smaller id.
    #[param(schema_with = crate::schemas::job_cursor)]
    pub before: Option<String>,
    /// 1 to 100, default 50.
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u32>,
}

impl JobListQuery {
    /// The filter to ask for, and the page size. The filter's `limit` is
    /// one more than the page, so the answer says whether another page
    /// exists without a count query.
    pub fn filter(&self) -> Result<(JobFilter, u32), ApiError> {
        let bad = |m: String| ApiError::InvalidQuery(m);
        let limit = self.limit.unwrap_or(DEFAULT_JOB_PAGE);
        if !(1..=MAX_JOB_PAGE).contains(&limit) {
            return Err(bad(format!("limit must be 1 to {MAX_JOB_PAGE}")));
        }
        let non_empty = |s: &Option<String>| s.as_deref().filter(|s| !s.is_empty()).map(str::to_owned);
        let state = match self.state.as_deref() {
            None | Some("") => None,
            Some(s) => Some(
                JobState::parse(s)
                    .ok_or_else(|| bad(format!("unknown state '{s}'; one of queued, running, done, dead")))?,
            ),
        };
        let before = match self.before.as_deref() {
            None | Some("") => None,
            Some(c) => Some(
                c.parse::<JobId>()
                    .ok()
                    .filter(|id| *id > 0)
                    .ok_or_else(|| bad(format!("'{c}' is not a cursor")))?,
            ),
        };
        Ok((
            JobFilter {
                queue: non_empty(&self.queue),
                state,
                kind: non_empty(&self.kind),
                before,
                limit: limit + 1,
            },
            limit,
        ))
    }
}

// ---------------------------------------------------------------- errors

/// The admin routes' failures: the API's own, plus three only they have.
#[derive(Debug)]
pub enum AdminError {
    Api(ApiError),
    /// This process has no job queue.
    JobsUnavailable,
    /// Only a dead job can be retried.
    JobNotDead(JobId),
    /// A running job is leased to a worker and cannot be discarded.
    JobRunning(JobId),
    /// Another profile of the same kind of this process is being taken.
    ProfileRunning,
    /// This process cannot take heap profiles (why).
    ProfilingUnavailable(String),
}

impl From<ApiError> for AdminError {
    fn from(e: ApiError) -> Self {
        AdminError::Api(e)
    }
}

impl From<domain::PortError> for AdminError {
    fn from(e: domain::PortError) -> Self {
        AdminError::Api(e.into())
    }
}

impl IntoResponse for AdminError {
    fn into_response(self) -> Response {
        let (status, code, title, detail) = match self {
            AdminError::Api(e) => return e.into_response(),
            AdminError::JobsUnavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorCode::JobsUnavailable,
                "Jobs unavailable",
                "this process has no job queue configured".to_owned(),
            ),
            AdminError::JobNotDead(id) => (
                StatusCode::CONFLICT,
                ErrorCode::JobNotDead,
                "Job not dead",
                format!("job {id} is not dead; only dead jobs can be retried"),
            ),
            AdminError::JobRunning(id) => (
                StatusCode::CONFLICT,
                ErrorCode::JobRunning,
                "Job running",
                format!("job {id} is running; wait for it to finish or fail"),
            ),
            AdminError::ProfileRunning => (
                StatusCode::CONFLICT,
                ErrorCode::ProfileRunning,
                "Profile running",
                "a profile of this process is already being taken; retry when it is done".to_owned(),
            ),
            AdminError::ProfilingUnavailable(why) => (
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorCode::ProfilingUnavailable,
                "Profiling unavailable",
                why,
            ),
        };
        let problem = Problem {
            kind: problem_type(code),
            title,
            status: status.as_u16(),
            code,
            detail,
            errors: None,
        };
        // Serializing a struct of strings cannot fail; the fallback keeps
        // this path panic-free anyway.
        let body = serde_json::to_vec(&problem).unwrap_or_else(|_| b"{\"code\":\"internal\"}".to_vec());
        let mut resp = (status, body).into_response();
        resp.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        resp
    }
}

pub(crate) fn queue(state: &AppState) -> Result<&Arc<dyn JobQueue>, AdminError> {
    state.jobs.as_ref().ok_or(AdminError::JobsUnavailable)
}

// -------------------------------------------------------------- handlers

/// What `POST /v1/admin/sync/{what}` enqueued.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SyncEnqueued {
    /// One per sync kind asked for.
    pub jobs: Vec<SyncJobRef>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SyncJobRef {
    pub kind: String,
    pub id: JobId,
    /// `false` when the sync was already queued or running (that job's id).
    pub created: bool,
}

/// What `POST /v1/admin/sync/{what}` syncs (documents the path; the
/// handler matches the strings and answers 404 `sync_not_found` otherwise).
#[derive(utoipa::ToSchema)]
#[schema(rename_all = "snake_case")]
#[allow(dead_code)]
pub enum SyncWhat {
    Menu,
    Accounts,
    All,
}

/// Run the upstream sync in the background: `menu`, `accounts` or `all`.
/// Answers 202 with the job ids (an already queued or running sync is not
/// queued twice).
#[utoipa::path(
    post,
    path = "/v1/admin/sync/{what}",
    tag = "admin",
    params(("what" = inline(SyncWhat), Path, description = "menu, accounts or all")),
    responses(
        (status = 202, description = "Enqueued (or already queued)", body = SyncEnqueued),
        (status = 404, description = "sync_not_found", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "jobs_unavailable, unavailable", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn sync(
    State(state): State<AppState>,
    caller: Caller,
    Path(what): Path<String>,
) -> Result<(StatusCode, axum::Json<SyncEnqueued>), AdminError> {
    use domain::jobs::{SYNC_ACCOUNTS, SYNC_MENU, sync_job};
    let kinds: &[&str] = match what.as_str() {
        "menu" => &[SYNC_MENU],
        "accounts" => &[SYNC_ACCOUNTS],
        "all" => &[SYNC_MENU, SYNC_ACCOUNTS],
        _ => return Err(ApiError::NotFound(Resource::Sync).into()),
    };
    let now = state.app.clock.now_ms();
    let jobs: Vec<_> = kinds.iter().map(|k| sync_job(k, now)).collect();
    let done = queue(&state)?.enqueue(&jobs, now).await?;
    state.identity.record(&caller.actor(), "sync", &what, "{}").await;
    let jobs = kinds
        .iter()
        .zip(done)
        .map(|(kind, e)| SyncJobRef {
            kind: (*kind).to_owned(),
            id: e.id(),
            created: matches!(e, domain::jobs::Enqueued::Created(_)),
        })
        .collect();
    Ok((StatusCode::ACCEPTED, axum::Json(SyncEnqueued { jobs })))
}

/// Drop every cached menu (every instance, in scale mode); the next read
/// loads from the store.
#[utoipa::path(
    post,
    path = "/v1/admin/cache/clear",
    tag = "admin",
    responses(
        (status = 204, description = "Cleared"),
        (status = 503, description = "unavailable", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn clear_cache(State(state): State<AppState>, caller: Caller) -> Result<StatusCode, AdminError> {
    state.app.menus.clear().await.map_err(ApiError::from)?;
    state
        .identity
        .record(&caller.actor(), "cache_clear", "menus", "{}")
        .await;
    Ok(StatusCode::NO_CONTENT)
}

/// Job counts per queue and state.
#[utoipa::path(
    get,
    path = "/v1/admin/queues",
    tag = "admin",
    responses(
        (status = 200, description = "Counts per queue", body = QueueList),
        (status = 503, description = "jobs_unavailable, unavailable", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn queues(State(state): State<AppState>) -> Result<axum::Json<QueueList>, AdminError> {
    let counts = queue(&state)?.counts(state.app.clock.now_ms()).await?;
    Ok(axum::Json(QueueList {
        queues: counts.into_iter().map(QueueCountsDto::from).collect(),
    }))
}

/// List jobs, newest first, with keyset pagination.
#[utoipa::path(
    get,
    path = "/v1/admin/jobs",
    tag = "admin",
    params(JobListQuery),
    responses(
        (status = 200, description = "One page", body = JobPage),
        (status = 400, description = "invalid_query", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "jobs_unavailable, unavailable", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn list_jobs(
    State(state): State<AppState>,
    Query(q): Query<JobListQuery>,
) -> Result<axum::Json<JobPage>, AdminError> {
    let queue = queue(&state)?;
    let (filter, page) = q.filter()?;
    let mut jobs = queue.list(&filter).await?;
    let more = jobs.len() > page as usize;
    jobs.truncate(page as usize);
    let next_cursor = if more { jobs.last().map(|j| j.id) } else { None };
    Ok(axum::Json(JobPage {
        jobs: jobs.into_iter().map(JobView::from).collect(),
        next_cursor,
    }))
}

/// One job.
#[utoipa::path(
    get,
    path = "/v1/admin/jobs/{id}",
    tag = "admin",
    params(("id" = i64, Path, description = "Job id")),
    responses(
        (status = 200, description = "The job", body = JobView),
        (status = 400, description = "invalid_path", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "job_not_found", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "jobs_unavailable, unavailable", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn get_job(State(state): State<AppState>, Path(id): Path<JobId>) -> Result<axum::Json<JobView>, AdminError> {
    let job = queue(&state)?.get(id).await?.ok_or(ApiError::NotFound(Resource::Job))?;
    Ok(axum::Json(job.into()))
}

/// Queue a dead job again, due now, with its attempts reset.
#[utoipa::path(
    post,
    path = "/v1/admin/jobs/{id}/retry",
    tag = "admin",
    params(("id" = i64, Path, description = "Job id")),
    responses(
        (status = 200, description = "The job, queued again", body = JobView),
        (status = 400, description = "invalid_path", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "job_not_found", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "job_not_dead", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "jobs_unavailable, unavailable", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn retry_job(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<JobId>,
) -> Result<axum::Json<JobView>, AdminError> {
    let queue = queue(&state)?;
    if !queue.retry(id, state.app.clock.now_ms()).await? {
        // Not retried: tell "no such job" from "not dead".
        return Err(match queue.get(id).await? {
            None => ApiError::NotFound(Resource::Job).into(),
            Some(_) => AdminError::JobNotDead(id),
        });
    }
    state
        .identity
        .record(&caller.actor(), "job_retry", &id.to_string(), "{}")
        .await;
    // A worker may claim it at once; whatever it is now is the answer.
    let job = queue.get(id).await?.ok_or(ApiError::NotFound(Resource::Job))?;
    Ok(axum::Json(job.into()))
}

/// Delete a queued or dead job. A running one is leased to a worker and is
/// refused; a done one is left to the nightly prune.
#[utoipa::path(
    delete,
    path = "/v1/admin/jobs/{id}",
    tag = "admin",
    params(("id" = i64, Path, description = "Job id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "invalid_path", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "job_not_found", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "job_running, invalid_transition (a done job)", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "jobs_unavailable, unavailable", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn discard_job(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<JobId>,
) -> Result<StatusCode, AdminError> {
    let queue = queue(&state)?;
    if queue.discard(id).await? {
        state
            .identity
            .record(&caller.actor(), "job_discard", &id.to_string(), "{}")
            .await;
        return Ok(StatusCode::NO_CONTENT);
    }
    Err(match queue.get(id).await? {
        Some(j) if j.state == JobState::Running => AdminError::JobRunning(id),
        // Neither gone nor running: a done job, which the port keeps for
        // the nightly prune. A conflict, not a pretended 404.
        Some(j) => AdminError::Api(ApiError::InvalidTransition(format!(
            "job {id} is {} and cannot be discarded",
            j.state.as_str()
        ))),
        None => ApiError::NotFound(Resource::Job).into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(limit: Option<u32>, state: Option<&str>, before: Option<&str>) -> JobListQuery {
        JobListQuery {
            queue: Some(String::new()),
            state: state.map(str::to_owned),
            kind: Some("mail.receipt".into()),
            before: before.map(str::to_owned),
            limit,
        }
    }

    #[test]
    fn list_queries_are_validated() {
        let (f, page) = q(None, None, None).filter().unwrap();
        assert_eq!((page, f.limit), (DEFAULT_JOB_PAGE, DEFAULT_JOB_PAGE + 1));
        assert_eq!(f.queue, None, "an empty queue means any queue");
        assert_eq!(f.kind.as_deref(), Some("mail.receipt"));
        let (f, _) = q(Some(100), Some("dead"), Some("17")).filter().unwrap();
        assert_eq!((f.state, f.before), (Some(JobState::Dead), Some(17)));
        for bad in [
            q(Some(0), None, None),
            q(Some(101), None, None),
            q(None, Some("zombie"), None),
            q(None, None, Some("abc")),
            q(None, None, Some("-3")),
        ] {
            assert!(matches!(bad.filter(), Err(ApiError::InvalidQuery(_))), "{bad:?}");
        }
    }

    #[tokio::test]
    async fn admin_problems_have_stable_codes() {
        for (e, status, code) in [
            (AdminError::JobsUnavailable, 503, "jobs_unavailable"),
            (AdminError::JobNotDead(1), 409, "job_not_dead"),
            (AdminError::JobRunning(1), 409, "job_running"),
        ] {
            let resp = e.into_response();
            assert_eq!(resp.status().as_u16(), status);
            assert_eq!(resp.headers()[header::CONTENT_TYPE], PROBLEM_JSON);
            let body = axum::body::to_bytes(resp.into_body(), usize::MAX).await.unwrap();
            let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(v["code"], code);
            assert_eq!(v["status"], status);
            assert_eq!(v["type"], format!("urn:rushhour:problem:{code}"));
        }
        assert_eq!(ApiError::NotFound(Resource::Job).code(), "job_not_found");
    }
}
