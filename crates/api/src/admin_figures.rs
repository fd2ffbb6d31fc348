//! Operator routes that show how the process is doing: the live figures
//! (`GET /v1/admin/figures`, what the `/ops` charts and `rushhour monitor`
//! poll every second), the stored five-minute performance snapshots (the
//! history behind them), and the menu cache's hit ratio per store.
//!
//! The live figures are this process's own (`telemetry::figures`, a ring of
//! one-second samples): behind a load balancer each answer comes from one
//! instance, which the answer names (`instance`, `role`). Queue depths,
//! dead letters and sync runs are read from their ports at request time,
//! so they are the deployment's, whichever instance answers.

use axum::extract::State;
use domain::ops::{PerfSnapshot, SyncRun};
use serde::{Deserialize, Serialize};
use telemetry::figures::{PartitionFigures, RING_SECONDS, Sample};
use utoipa::{IntoParams, ToSchema};

use crate::AppState;
use crate::admin::AdminError;
use crate::error::{ApiError, Problem};
use crate::extract::Query;

// ------------------------------------------------------------------ DTOs
//
// The figures DTOs accept unknown fields (unlike most of this API's): they
// are what `rushhour monitor` deserializes, and a monitor must keep reading
// a newer server that added a figure.

/// The figures of the last full second.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct FiguresNow {
    /// Orders accepted (202) per second by this instance.
    pub intake_per_sec: f64,
    /// Orders confirmed per second by this instance's processors.
    pub confirmed_per_sec: f64,
    pub intake_p50_ms: Option<f64>,
    pub intake_p99_ms: Option<f64>,
    /// From the order's placement (just before its 202) to its confirmation.
    pub confirm_p50_ms: Option<f64>,
    pub confirm_p99_ms: Option<f64>,
    pub cache_hit_ratio: Option<f64>,
    /// Records per processor micro-batch.
    pub batch_size_avg: Option<f64>,
    /// Records not yet applied, over this instance's partitions.
    pub lag_total: u64,
    /// Dead letters set aside and not yet replayed or discarded (the
    /// deployment's, from the store).
    pub dead_letters: u64,
    /// Server-Sent Event streams open on this instance.
    pub open_streams: u64,
}

/// Where one partition's processor stands.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PartitionDto {
    pub partition: u32,
    pub lag: u64,
    /// The next offset the processor will read.
    pub next_offset: u64,
    /// The log's end (one past the last record).
    pub end_offset: u64,
}

impl From<PartitionFigures> for PartitionDto {
    fn from(p: PartitionFigures) -> Self {
        PartitionDto {
            partition: p.partition,
            lag: p.lag,
            next_offset: p.next_offset,
            end_offset: p.end_offset,
        }
    }
}

/// One job queue's depth by state: `ready` are due, `scheduled` wait for
/// their time.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct QueueDepth {
    #[schema(example = "default")]
    pub queue: String,
    pub ready: u64,
    pub scheduled: u64,
    pub running: u64,
    pub done: u64,
    pub dead: u64,
}

/// One upstream sync run. Times are epoch ms.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SyncRunDto {
    /// `menu` or `accounts`.
    pub kind: String,
    pub started_at: i64,
    pub finished_at: i64,
    pub fetched: u64,
    pub changed: u64,
    pub errors: u64,
    /// `ok`, `not_modified`, or `failed: …`.
    pub outcome: String,
}

impl From<SyncRun> for SyncRunDto {
    fn from(r: SyncRun) -> Self {
        SyncRunDto {
            kind: r.kind,
            started_at: r.started_at,
            finished_at: r.finished_at,
            fetched: r.fetched,
            changed: r.changed,
            errors: r.errors,
            outcome: r.outcome,
        }
    }
}

/// The ring of one-second samples, column-wise (one array per figure, all
/// as long as `t`), oldest first; `null` where nothing was measured.
#[derive(Debug, Default, Serialize, Deserialize, ToSchema)]
pub struct FigureSeries {
    /// Epoch ms of each sample.
    pub t: Vec<i64>,
    pub intake_per_sec: Vec<f64>,
    pub confirmed_per_sec: Vec<f64>,
    pub intake_p99_ms: Vec<Option<f64>>,
    pub confirm_p99_ms: Vec<Option<f64>>,
    pub lag_total: Vec<u64>,
    pub batch_size_avg: Vec<Option<f64>>,
    pub cache_hit_ratio: Vec<Option<f64>>,
    /// Records this instance's processors set aside since it started.
    pub dead_letters: Vec<u64>,
}

impl FigureSeries {
    fn of(samples: &[Sample]) -> Self {
        let col = |f: fn(&Sample) -> f64| samples.iter().map(f).collect();
        let opt = |f: fn(&Sample) -> Option<f64>| samples.iter().map(f).collect();
        FigureSeries {
            t: samples.iter().map(|s| s.at).collect(),
            intake_per_sec: col(|s| s.intake_per_sec),
            confirmed_per_sec: col(|s| s.confirmed_per_sec),
            intake_p99_ms: opt(|s| s.intake_p99_ms),
            confirm_p99_ms: opt(|s| s.confirm_p99_ms),
            lag_total: samples.iter().map(|s| s.lag_total).collect(),
            batch_size_avg: opt(|s| s.batch_size_avg),
            cache_hit_ratio: opt(|s| s.cache_hit_ratio),
            dead_letters: samples.iter().map(|s| s.dead_letters).collect(),
        }
    }
}

/// The live figures of the answering instance.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct FiguresView {
    /// Epoch ms of this answer.
    pub at: i64,
    /// `host-pid` of the answering process (or `jobs.worker_id`).
    pub instance: String,
    /// `serve`, `api` or `worker`.
    pub role: String,
    pub uptime_secs: u64,
    pub now: FiguresNow,
    /// This instance's processors, by partition.
    pub partitions: Vec<PartitionDto>,
    /// Job queues (empty on a process without a queue).
    pub queues: Vec<QueueDepth>,
    /// Newest first, at most 10.
    pub sync_runs: Vec<SyncRunDto>,
    pub series: FigureSeries,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct FiguresQuery {
    /// Seconds of `series` to return, 1 to 300 (default 300).
    #[param(minimum = 1, maximum = 300)]
    pub window: Option<u32>,
}

/// One stored performance snapshot.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SnapshotDto {
    /// Epoch ms.
    pub at: i64,
    pub instance: String,
    /// Named figures (orders per status, queue depths, lag, …).
    #[schema(value_type = Object)]
    pub metrics: serde_json::Value,
}

impl From<PerfSnapshot> for SnapshotDto {
    fn from(s: PerfSnapshot) -> Self {
        SnapshotDto {
            at: s.at,
            instance: s.instance,
            metrics: s.metrics,
        }
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SnapshotList {
    /// Newest first.
    pub items: Vec<SnapshotDto>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SnapshotsQuery {
    /// How far back, 1 to 168 hours (default 48).
    #[param(minimum = 1, maximum = 168)]
    pub hours: Option<u32>,
}

/// Menu cache lookups of one store, on this instance since it started.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StoreCacheDto {
    pub store: String,
    pub hits: u64,
    pub misses: u64,
    pub hit_ratio: Option<f64>,
    /// Age of the store's cached menu on this instance, in seconds; absent
    /// while none is cached (never loaded, expired, evicted, invalidated).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub age_secs: Option<u64>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CacheView {
    pub stores: Vec<StoreCacheDto>,
    pub hits: u64,
    pub misses: u64,
}

// ------------------------------------------------------------------ rules

/// Sync runs listed with the figures.
const SYNC_RUNS: u32 = 10;
pub const DEFAULT_SNAPSHOT_HOURS: u32 = 48;
pub const MAX_SNAPSHOT_HOURS: u32 = 168;
/// Snapshots read per hour asked: twelve five-minute snapshots from each
/// of up to 16 instances.
const SNAPSHOTS_PER_HOUR: u32 = 12 * 16;

fn ratio(hits: u64, misses: u64) -> Option<f64> {
    let all = hits + misses;
    (all > 0).then(|| (hits as f64 / all as f64 * 1000.0).round() / 1000.0)
}

// -------------------------------------------------------------- handlers

/// The live figures of the answering instance: the last second's rates and
/// latencies, processors by partition, job queue depths, recent sync runs,
/// and the last `window` seconds of one-second samples.
#[utoipa::path(
    get,
    path = "/v1/admin/figures",
    tag = "admin",
    params(FiguresQuery),
    responses(
        (status = 200, description = "The figures", body = FiguresView),
        (status = 400, description = "invalid_query", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "rate_limited", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "unavailable", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn figures(
    State(state): State<AppState>,
    Query(q): Query<FiguresQuery>,
) -> Result<axum::Json<FiguresView>, AdminError> {
    let window = q.window.unwrap_or(RING_SECONDS as u32);
    if !(1..=RING_SECONDS as u32).contains(&window) {
        return Err(ApiError::InvalidQuery(format!("window must be 1 to {RING_SECONDS} seconds")).into());
    }
    let at = state.app.clock.now_ms();
    let figures = telemetry::figures();
    let samples = figures.series(window as usize);
    let queues = match &state.jobs {
        Some(q) => q
            .counts(at)
            .await?
            .into_iter()
            .map(|c| QueueDepth {
                queue: c.queue,
                ready: c.queued.saturating_sub(c.scheduled),
                scheduled: c.scheduled,
                running: c.running,
                done: c.done,
                dead: c.dead,
            })
            .collect(),
        None => Vec::new(),
    };
    let dead_letters = state
        .app
        .store
        .dead_letters(domain::dead_letters::LOOKUP_LIMIT)
        .await?
        .len() as u64;
    let sync_runs = state.app.store.sync_runs(None, SYNC_RUNS).await?;
    // Partitions are read now rather than from the last sample: the lag is
    // what an operator acts on, and the processors update it every second.
    let partitions = figures.partitions();
    let last = samples.last();
    let now = FiguresNow {
        intake_per_sec: last.map_or(0.0, |s| s.intake_per_sec),
        confirmed_per_sec: last.map_or(0.0, |s| s.confirmed_per_sec),
        intake_p50_ms: last.and_then(|s| s.intake_p50_ms),
        intake_p99_ms: last.and_then(|s| s.intake_p99_ms),
        confirm_p50_ms: last.and_then(|s| s.confirm_p50_ms),
        confirm_p99_ms: last.and_then(|s| s.confirm_p99_ms),
        cache_hit_ratio: last.and_then(|s| s.cache_hit_ratio),
        batch_size_avg: last.and_then(|s| s.batch_size_avg),
        lag_total: partitions.iter().map(|p| p.lag).sum(),
        dead_letters,
        open_streams: state.streams.open_total() as u64,
    };
    Ok(axum::Json(FiguresView {
        at,
        instance: state.ops.instance.clone(),
        role: state.ops.role.to_owned(),
        uptime_secs: figures.uptime_secs(),
        now,
        partitions: partitions.into_iter().map(PartitionDto::from).collect(),
        queues,
        sync_runs: sync_runs.into_iter().map(SyncRunDto::from).collect(),
        series: FigureSeries::of(&samples),
    }))
}

/// The stored five-minute performance snapshots of the last `hours`,
/// newest first: the history behind the live figures.
#[utoipa::path(
    get,
    path = "/v1/admin/snapshots",
    tag = "admin",
    params(SnapshotsQuery),
    responses(
        (status = 200, description = "Snapshots, newest first", body = SnapshotList),
        (status = 400, description = "invalid_query", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "rate_limited", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "unavailable", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn snapshots(
    State(state): State<AppState>,
    Query(q): Query<SnapshotsQuery>,
) -> Result<axum::Json<SnapshotList>, AdminError> {
    let hours = q.hours.unwrap_or(DEFAULT_SNAPSHOT_HOURS);
    if !(1..=MAX_SNAPSHOT_HOURS).contains(&hours) {
        return Err(ApiError::InvalidQuery(format!("hours must be 1 to {MAX_SNAPSHOT_HOURS}")).into());
    }
    let since = state.app.clock.now_ms() - i64::from(hours) * 3_600_000;
    let mut items = state.app.store.snapshots(hours * SNAPSHOTS_PER_HOUR).await?;
    items.retain(|s| s.at >= since);
    Ok(axum::Json(SnapshotList {
        items: items.into_iter().map(SnapshotDto::from).collect(),
    }))
}

/// Menu cache lookups per store on the answering instance, with hit ratios.
#[utoipa::path(
    get,
    path = "/v1/admin/cache",
    tag = "admin",
    responses(
        (status = 200, description = "Per-store cache figures", body = CacheView),
        (status = 429, description = "rate_limited", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn cache(State(_state): State<AppState>) -> axum::Json<CacheView> {
    // The cache stamps loads with the system clock (it has no `Clock`).
    let now = domain::ports::system_now_ms();
    let stores: Vec<StoreCacheDto> = telemetry::figures()
        .cache_stores()
        .into_iter()
        .map(|s| StoreCacheDto {
            hit_ratio: ratio(s.hits, s.misses),
            age_secs: s
                .loaded_at_ms
                .map(|at| u64::try_from(now.saturating_sub(at) / 1000).unwrap_or(0)),
            store: s.store,
            hits: s.hits,
            misses: s.misses,
        })
        .collect();
    let hits = stores.iter().map(|s| s.hits).sum();
    let misses = stores.iter().map(|s| s.misses).sum();
    axum::Json(CacheView { stores, hits, misses })
}

/// When one string is shown to an operator in a list, at most this much.
pub(crate) const PAYLOAD_PREVIEW: usize = 4096;

/// `bytes` as UTF-8 (invalid sequences replaced), cut at a character
/// boundary to at most [`PAYLOAD_PREVIEW`] bytes.
pub(crate) fn preview(bytes: &[u8]) -> String {
    let head = &bytes[..bytes.len().min(PAYLOAD_PREVIEW)];
    let mut s = String::from_utf8_lossy(head).into_owned();
    while s.len() > PAYLOAD_PREVIEW {
        s.pop();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratios_and_previews() {
        assert_eq!(ratio(0, 0), None);
        assert_eq!(ratio(3, 1), Some(0.75));
        assert_eq!(preview(b"{\"a\":1}"), "{\"a\":1}");
        let long = "é".repeat(PAYLOAD_PREVIEW);
        let p = preview(long.as_bytes());
        assert!(p.len() <= PAYLOAD_PREVIEW && p.chars().all(|c| c == 'é' || c == '\u{fffd}'));
        assert_eq!(preview(&[0xff, b'a']), "\u{fffd}a");
    }
}
