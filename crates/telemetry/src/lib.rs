//! Observability setup shared by every rushhour process: the tracing
//! subscriber (human or JSON logs, OpenTelemetry spans over OTLP) and the
//! Prometheus recorder.
//!
//! Every metric name rushhour emits is defined in [`names`], so dashboards
//! and alert rules have one place to look and a typo cannot mint a new
//! series silently.

pub mod figures;
mod logs;
pub mod queries;
pub mod traces;

pub use figures::figures;
pub use traces::{TraceGuard, TraceInitError, TraceSettings};

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::sync::OnceLock;
use tracing_subscriber::EnvFilter;

pub mod names {
    //! Metric names. Histograms are in seconds, per Prometheus convention.

    /// HTTP request latency, labels `path` (route template), `method`, `status`.
    pub const HTTP_REQUEST_DURATION: &str = "http_request_duration_seconds";
    /// Requests refused by load shedding, label `path`.
    pub const HTTP_SHED: &str = "http_requests_shed_total";
    /// TCP connections the HTTP server holds open now (gauge).
    pub const HTTP_CONNECTIONS_OPEN: &str = "http_connections_open";
    /// Connections closed at accept because `http.max_connections` were
    /// already open.
    pub const HTTP_CONNECTIONS_REFUSED: &str = "http_connections_refused_total";
    /// Connections closed because a request's headers did not arrive within
    /// `http.header_read_timeout_ms` (slow or idle clients).
    pub const HTTP_HEADER_TIMEOUTS: &str = "http_header_read_timeouts_total";
    /// Requests answered 408 `body_timeout` because their body did not
    /// arrive within `http.body_read_timeout_ms`, label `path`.
    pub const HTTP_BODY_TIMEOUTS: &str = "http_body_read_timeouts_total";
    /// Server-Sent Event streams open now (gauge).
    pub const STREAMS_OPEN: &str = "http_streams_open";
    /// Streams refused by a cap, label `reason` (`per_client`, `total`).
    pub const STREAMS_REFUSED: &str = "http_streams_refused_total";
    /// Time for one append to become durable in the event log (as a caller sees it).
    pub const LOG_APPEND_DURATION: &str = "log_append_duration_seconds";
    /// Records per group-commit transaction of the embedded log.
    pub const LOG_GROUP_COMMIT_SIZE: &str = "log_group_commit_size";
    /// Duration of one group-commit transaction (including fsync).
    pub const LOG_COMMIT_DURATION: &str = "log_commit_duration_seconds";
    /// Records per processor micro-batch, label `partition`.
    pub const BATCH_SIZE: &str = "processor_batch_size";
    /// Time to apply one micro-batch to the store, label `partition`.
    pub const BATCH_APPLY_DURATION: &str = "processor_batch_apply_seconds";
    /// Records in the log not yet applied, label `partition`.
    pub const PROCESSOR_LAG: &str = "processor_lag_records";
    /// Orders applied by processors, label `outcome` (`confirmed`, `rejected`, `duplicate`).
    pub const ORDERS_APPLIED: &str = "orders_applied_total";
    /// Records moved to the dead-letter table.
    pub const DEAD_LETTERS: &str = "processor_dead_letters_total";
    /// Failed batch applies that will be retried, label `partition`.
    pub const BATCH_RETRIES: &str = "processor_batch_retries_total";
    /// Processor tasks that died (panicked, or ended without being asked)
    /// and were restarted after a backoff, label `partition`.
    pub const PROCESSOR_RESTARTS: &str = "processor_restarts_total";
    /// Menu cache lookups, label `result` (`hit`, `miss`).
    pub const CACHE_REQUESTS: &str = "cache_requests_total";
    /// Menu cache L2 (Redis) lookups after an L1 miss, label `result` (`hit`, `miss`).
    pub const CACHE_L2_REQUESTS: &str = "cache_l2_requests_total";
    /// Redis errors and timeouts the cache and feed absorbed, labels
    /// `backend` (`redis`) and `op` (`get`, `set`, `invalidate`, `clear`,
    /// `publish`, `decode`).
    pub const CACHE_BACKEND_ERRORS: &str = "cache_backend_errors_total";
    /// Menu cache invalidations.
    pub const CACHE_INVALIDATIONS: &str = "cache_invalidations_total";
    /// Entries that left an in-process cache, labels `cache` (`menu`) and
    /// `cause` (`expired`, `size`, `explicit`, `replaced`).
    pub const CACHE_EVICTIONS: &str = "cache_evictions_total";
    /// Orders accepted at intake (durable), label `outcome` (`accepted`, `replayed`).
    pub const ORDERS_INTAKE: &str = "orders_intake_total";
    /// Build info gauge (always 1), labels `version`.
    pub const BUILD_INFO: &str = "rushhour_build_info";
    /// Payment webhooks answered, label `outcome`: `accepted`, `replayed`
    /// (a provider's retry), or the problem code of a refusal
    /// (`invalid_signature`, `stale_signature`, `validation_failed`, …).
    pub const WEBHOOKS_RECEIVED: &str = "payment_webhooks_total";
    /// Payment events applied by processors, label `outcome`: `applied`,
    /// `duplicate` (event id seen before), `unknown_order`, `mismatched`
    /// (amount or currency differ from the order's total).
    pub const PAYMENTS_APPLIED: &str = "payments_applied_total";
    /// Background jobs finished by the runner, labels `kind` and `outcome`
    /// (`done`, `retry`, `dead`).
    pub const JOBS_PROCESSED: &str = "jobs_processed_total";
    /// Time a job's handler ran, label `kind`.
    pub const JOB_DURATION: &str = "job_duration_seconds";
    /// Jobs this process is running now, label `queue`.
    pub const JOBS_IN_FLIGHT: &str = "jobs_in_flight";
    /// Jobs this process has claimed ahead of free slots and not started
    /// yet (the runner's prefetch buffer), label `queue`.
    pub const JOBS_BUFFERED: &str = "jobs_buffered";
    /// Jobs in the queue by state, labels `queue` and `state` (`queued`,
    /// `scheduled`, `running`, `done`, `dead`), polled from the queue.
    pub const JOBS: &str = "jobs";
    /// Jobs whose lease this process lost while running them.
    pub const JOB_LEASES_LOST: &str = "job_leases_lost_total";
    /// Cron ticks handled by this process's scheduler, labels `schedule` and
    /// `result` (`won`: this process enqueued the job; `lost`: another did).
    pub const SCHEDULE_FIRES: &str = "schedule_fires_total";
    /// Calls to an upstream (catalog API, loyalty service), labels
    /// `endpoint` (`token`, `catalog`, `loyalty_changes`) and `status` (the
    /// HTTP status, or `timeout`, `transport`).
    pub const UPSTREAM_REQUESTS: &str = "upstream_requests_total";
    /// Duration of one upstream call attempt, label `endpoint`.
    pub const UPSTREAM_REQUEST_DURATION: &str = "upstream_request_duration_seconds";
    /// 1 while the upstream circuit breaker is open (calls fail fast), else 0.
    pub const UPSTREAM_CIRCUIT_OPEN: &str = "upstream_circuit_open";
    /// Upstream sync runs, labels `kind` (`menu`, `accounts`) and `outcome`
    /// (`ok`, `not_modified`, `failed`).
    pub const SYNC_RUNS: &str = "sync_runs_total";
    /// Records the last sync run fetched from upstream, label `kind`.
    pub const SYNC_LAST_FETCHED: &str = "sync_last_fetched";
    /// Records the last sync run found changed and wrote, label `kind`.
    pub const SYNC_LAST_CHANGED: &str = "sync_last_changed";
    /// Duration of a sync run, label `kind`.
    pub const SYNC_DURATION: &str = "sync_duration_seconds";
    /// Menu cache warm-ups run.
    pub const CACHE_WARMUPS: &str = "cache_warmups_total";
    /// Ready orders expired because nobody picked them up.
    pub const ORDERS_EXPIRED: &str = "orders_expired_total";
    /// Receipt e-mails handed to the mailer.
    pub const RECEIPTS_SENT: &str = "receipts_sent_total";
    /// Staff logins by `outcome` (`ok`, `invalid`, `locked`).
    pub const LOGINS: &str = "auth_logins_total";
    /// Accounts or client addresses locked out after repeated failed
    /// logins, by `scope` (`user`, `address`).
    pub const LOCKOUTS: &str = "auth_lockouts_total";
    /// Requests refused for their credential, by `reason`
    /// (`unauthenticated`, `forbidden`, `csrf`, `order_token`).
    pub const AUTH_REFUSED: &str = "auth_refused_total";
    /// Requests refused by a rate limit, by `class`.
    pub const RATE_LIMITED: &str = "http_rate_limited_total";
    /// Rate-limit decisions made in process because the shared (Redis)
    /// limiter failed or was bypassed after a failure.
    pub const RATE_LIMIT_FALLBACKS: &str = "rate_limit_fallbacks_total";
    /// 1 while every readiness check passes, else 0; refreshed at each
    /// scrape of `/metrics` (which runs the checks).
    pub const READY: &str = "rushhour_ready";
    /// One readiness check, label `check` (`log`, `store`, `cache`, `jobs`,
    /// `processors`): 1 = ok, 0 = timeout, unavailable or error.
    pub const CHECK_UP: &str = "rushhour_check_up";
    /// Time from an order's 202 (its append) to its confirmation by a
    /// processor, in seconds.
    pub const ORDER_CONFIRM_LATENCY: &str = "order_confirm_latency_seconds";
    /// Dead letters an operator dealt with, label `action` (`replay`,
    /// `discard`), through the admin API.
    pub const DEAD_LETTERS_HANDLED: &str = "dead_letters_handled_total";
    /// Outbound webhook delivery attempts by `outcome` (`delivered`,
    /// `retry`, `dead`).
    pub const WEBHOOK_DELIVERIES: &str = "webhook_deliveries_total";
    /// One outbound webhook attempt, request to answer (or timeout).
    pub const WEBHOOK_DELIVERY_DURATION: &str = "webhook_delivery_duration_seconds";
    /// Webhook deliveries not yet delivered nor dead, every subscriber.
    pub const WEBHOOK_PENDING: &str = "webhook_deliveries_pending";
    /// Database statements run while answering one request (issue 12's
    /// N+1 guard), label `path` (route template).
    pub const DB_QUERIES_PER_REQUEST: &str = "db_queries_per_request";
    /// Database statements run by one background job, label `kind`.
    pub const DB_QUERIES_PER_JOB: &str = "db_queries_per_job";
    /// Time of one database statement, labels `backend` (`sqlite`,
    /// `postgres`) and `kind` (`select`, `insert`, `update`, `delete`,
    /// `transaction`, `pragma`, `other`).
    pub const DB_QUERY_DURATION: &str = "db_query_duration_seconds";
    /// Statements slower than `observability.slow_query_ms`, labels
    /// `backend` and `kind`.
    pub const DB_SLOW_QUERIES: &str = "db_slow_queries_total";
    /// Requests slower than `observability.slow_request_ms`, label `path`.
    pub const HTTP_SLOW_REQUESTS: &str = "http_slow_requests_total";
    /// Connections of a database pool lent out now (gauge), label `pool`
    /// (the embedded reader pools: `store`, `job queue`, `session store`,
    /// `event log`; the PostgreSQL pools: `store`, `store replica`, `job
    /// queue`, `idempotency claims`).
    pub const DB_POOL_IN_USE: &str = "db_pool_connections_in_use";
    /// Idle connections of a database pool (gauge), label `pool`.
    pub const DB_POOL_IDLE: &str = "db_pool_connections_idle";
    /// Connections a database pool may hold (gauge), label `pool`.
    pub const DB_POOL_MAX: &str = "db_pool_connections_max";
    /// Callers waiting for a connection of a database pool (gauge), label `pool`.
    pub const DB_POOL_WAITING: &str = "db_pool_waiting";
    /// Time a caller waited for a connection, label `pool` (on PostgreSQL a
    /// transaction's includes its `BEGIN` round trip).
    pub const DB_POOL_ACQUIRE: &str = "db_pool_acquire_seconds";
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Pretty,
    Json,
}

/// Install the global tracing subscriber. `filter` uses `RUST_LOG` syntax;
/// the `RUST_LOG` variable wins when set. Safe to call more than once (the
/// later calls do nothing), which tests rely on.
pub fn init_tracing(filter: &str, format: LogFormat) {
    // Without trace settings there is no exporter, hence nothing to flush.
    let _ = init(filter, format, None);
}

/// Install the global subscriber: logs to stderr in `format`, and, when
/// `export` is given, spans exported over OTLP. Keep the returned guard
/// until shutdown; dropping it flushes the spans still queued.
///
/// Colour codes are written only when stderr is a terminal: a file or a
/// pipe (journald, a container runtime) gets plain text. The span exporter
/// has a level filter of its own (INFO), so `log_filter = "warn"` quiets
/// the logs without emptying the traces.
pub fn init(filter: &str, format: LogFormat, export: Option<&TraceSettings>) -> Result<TraceGuard, TraceInitError> {
    use std::io::IsTerminal;
    use tracing_subscriber::Layer;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;

    let env = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(filter));
    let ansi = std::io::stderr().is_terminal();
    let logs = match format {
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .event_format(logs::TraceJson::new())
            .with_writer(std::io::stderr)
            .with_filter(env)
            .boxed(),
        LogFormat::Pretty => tracing_subscriber::fmt::layer()
            .compact()
            .with_ansi(ansi)
            .with_writer(std::io::stderr)
            .with_filter(env)
            .boxed(),
    };
    let provider = export.map(traces::provider).transpose()?;
    let spans = provider.as_ref().map(|p| {
        use opentelemetry::trace::TracerProvider as _;
        tracing_opentelemetry::layer()
            .with_tracer(p.tracer("rushhour"))
            .with_filter(tracing_subscriber::filter::LevelFilter::INFO)
    });
    let installed = tracing_subscriber::registry().with(logs).with(spans).try_init().is_ok();
    Ok(match provider {
        // Another subscriber was installed first (tests building several
        // apps in one process): exporting from a layer nobody calls would
        // only mislead, so report tracing as off.
        Some(p) if installed => traces::guard(p),
        _ => TraceGuard::default(),
    })
}

static PROMETHEUS: OnceLock<PrometheusHandle> = OnceLock::new();

/// Install the process-wide Prometheus recorder (once) and return the handle
/// `/metrics` renders from. Histogram buckets are tuned for a service whose
/// requests take well under a millisecond to a few seconds.
pub fn prometheus() -> PrometheusHandle {
    PROMETHEUS
        .get_or_init(|| {
            let latency = [
                0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ];
            let sizes = [1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0];
            let statement = [
                0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.1,
                0.5, 1.0,
            ];
            let counts = [0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 8.0, 12.0, 20.0, 50.0, 100.0];
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &latency)
                .and_then(|b| b.set_buckets_for_metric(Matcher::Suffix("_size".into()), &sizes))
                // One embedded statement takes microseconds: finer than
                // the request buckets (a full matcher wins over a suffix).
                .and_then(|b| b.set_buckets_for_metric(Matcher::Full(names::DB_QUERY_DURATION.into()), &statement))
                .and_then(|b| b.set_buckets_for_metric(Matcher::Full(names::DB_QUERIES_PER_REQUEST.into()), &counts))
                .and_then(|b| b.set_buckets_for_metric(Matcher::Full(names::DB_QUERIES_PER_JOB.into()), &counts))
                .expect("static bucket lists are non-empty");
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            // Another recorder may already be installed (tests that build
            // several apps in one process); the handle still renders ours.
            let _ = metrics::set_global_recorder(recorder);
            metrics::gauge!(names::BUILD_INFO, "version" => env!("CARGO_PKG_VERSION")).set(1.0);
            handle
        })
        .clone()
}
