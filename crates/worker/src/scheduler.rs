//! The cron scheduler: enqueues periodic jobs (menu sync, retention,
//! snapshots…) at the ticks of 5-field cron expressions, in UTC.
//!
//! Every process runs the scheduler for every schedule; there is no leader
//! to elect or lose. At a tick each instance calls `JobQueue::fire` for the
//! tick's slot, and the queue enqueues the job only for the first caller of
//! that `(schedule, slot)`, so a tick yields one job however many instances
//! are up, and a tick is not lost while at least one of them is.
//!
//! Downtime: if every instance was down across several ticks, only the most
//! recent missed tick fires on restart (a backlog of identical periodic jobs
//! would do the same work several times). A schedule that never fired
//! starts with the next tick rather than one in the past.
//!
//! Time comes from the injected [`Clock`], and the scheduler sleeps in steps
//! of at most a second, re-reading the clock after each, so a manual clock
//! in tests (or a wall clock that jumps) is noticed promptly.

use chrono::{DateTime, Utc};
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};
use domain::Clock;
use domain::jobs::{JobQueue, NewJob};
use std::sync::Arc;
use std::time::Duration;
use telemetry::names;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The longest single sleep; the clock is re-read after each.
const MAX_SLEEP: Duration = Duration::from_secs(1);

/// A periodic job.
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    /// Identifies the schedule across processes and restarts (the queue
    /// dedups fires by name and slot), so renaming one starts it afresh.
    pub name: String,
    /// Standard 5-field cron (minute hour day-of-month month day-of-week),
    /// in UTC, or 6 fields with a leading seconds field for sub-minute
    /// schedules. Names (`MON`, `JAN`) and `@hourly`-style macros are accepted;
    /// when both day fields are restricted either may match (Vixie cron).
    pub cron: String,
    /// The job to enqueue at each tick; its `run_at` is set to the tick.
    pub job: NewJob,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    #[error("a schedule needs a name")]
    EmptyName,
    #[error("schedule `{name}`: invalid cron expression `{cron}`: {reason}")]
    InvalidCron { name: String, cron: String, reason: String },
}

/// Validate a schedule: a non-empty name and a 5-field (or, with seconds,
/// 6-field) cron expression that has ticks.
pub fn parse_schedule(name: impl Into<String>, cron: &str, job: NewJob) -> Result<Schedule, ScheduleError> {
    let name = name.into();
    if name.trim().is_empty() {
        return Err(ScheduleError::EmptyName);
    }
    parse_cron(&name, cron)?;
    Ok(Schedule {
        name,
        cron: cron.trim().to_string(),
        job,
    })
}

impl Schedule {
    /// The first tick strictly after `after_ms` (epoch ms), if any.
    pub fn next_after(&self, after_ms: i64) -> Result<Option<i64>, ScheduleError> {
        Ok(next_after(&parse_cron(&self.name, &self.cron)?, after_ms))
    }
}

fn parse_cron(name: &str, cron: &str) -> Result<Cron, ScheduleError> {
    let invalid = |reason: String| ScheduleError::InvalidCron {
        name: name.to_string(),
        cron: cron.to_string(),
        reason,
    };
    let parsed = CronParser::builder()
        .seconds(Seconds::Optional)
        .year(Year::Disallowed)
        .build()
        .parse(cron)
        .map_err(|e| invalid(e.to_string()))?;
    // Some valid-looking expressions never match (`0 0 30 2 *`).
    if next_after(&parsed, 0).is_none() {
        return Err(invalid("it never matches".into()));
    }
    Ok(parsed)
}

/// Cron works in whole seconds (and ticks on whole minutes); `ms` is
/// floored to its second.
fn at_second(ms: i64) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(ms.div_euclid(1000), 0)
}

/// The first tick strictly after `ms`.
fn next_after(cron: &Cron, ms: i64) -> Option<i64> {
    // Flooring is safe: a tick at the floored second is <= ms, so "strictly
    // after the second" is "strictly after ms".
    let t = cron.find_next_occurrence(&at_second(ms)?, false).ok()?;
    Some(t.timestamp_millis())
}

/// The latest tick at or before `ms`.
fn latest_at_or_before(cron: &Cron, ms: i64) -> Option<i64> {
    let t = cron.find_previous_occurrence(&at_second(ms)?, true).ok()?;
    Some(t.timestamp_millis())
}

/// Run every schedule on `tracker` until `shutdown`. A schedule whose cron
/// does not parse is logged and skipped (use [`parse_schedule`] to refuse
/// it at startup instead).
pub fn spawn_scheduler(
    queue: Arc<dyn JobQueue>,
    clock: Arc<dyn Clock>,
    schedules: Vec<Schedule>,
    tracker: &TaskTracker,
    shutdown: CancellationToken,
) {
    for schedule in schedules {
        match parse_cron(&schedule.name, &schedule.cron) {
            Ok(cron) => {
                tracker.spawn(run_schedule(
                    queue.clone(),
                    clock.clone(),
                    schedule,
                    cron,
                    shutdown.clone(),
                ));
            }
            Err(e) => tracing::error!(error = %e, "schedule skipped"),
        }
    }
}

/// Sleep `d` on `clock`; true if cancelled.
async fn pause(clock: &dyn Clock, d: Duration, shutdown: &CancellationToken) -> bool {
    tokio::select! {
        _ = clock.sleep(d) => false,
        _ = shutdown.cancelled() => true,
    }
}

async fn run_schedule(
    queue: Arc<dyn JobQueue>,
    clock: Arc<dyn Clock>,
    schedule: Schedule,
    cron: Cron,
    shutdown: CancellationToken,
) {
    let name = schedule.name.as_str();
    let last_fired = loop {
        match queue.last_fired(name).await {
            Ok(l) => break l,
            Err(e) => {
                tracing::warn!(schedule = name, error = %e, "cannot read the schedule's last tick; retrying");
                if pause(&*clock, MAX_SLEEP, &shutdown).await {
                    return;
                }
            }
        }
    };
    // The slot handled last (by any process). Never fired: ticks before now
    // are not ours to catch up on.
    let mut last = last_fired.unwrap_or_else(|| clock.now_ms());
    tracing::info!(schedule = name, cron = %schedule.cron, ?last_fired, "schedule started");
    let won_counter = metrics::counter!(names::SCHEDULE_FIRES, "schedule" => schedule.name.clone(), "result" => "won");
    let lost_counter =
        metrics::counter!(names::SCHEDULE_FIRES, "schedule" => schedule.name.clone(), "result" => "lost");
    while !shutdown.is_cancelled() {
        let now = clock.now_ms();
        if let Some(slot) = latest_at_or_before(&cron, now).filter(|s| *s > last) {
            // Only the most recent due slot fires; any older missed ones
            // between `last` and it are skipped on purpose.
            let skipped = next_after(&cron, last).is_some_and(|first| first < slot);
            let job = NewJob {
                run_at: slot,
                ..schedule.job.clone()
            };
            match queue.fire(name, slot, &job, now).await {
                Ok(won) => {
                    if won { &won_counter } else { &lost_counter }.increment(1);
                    tracing::info!(schedule = name, slot, won, skipped_missed_ticks = skipped, kind = %job.kind, "schedule fired");
                    last = slot;
                }
                Err(e) => {
                    tracing::warn!(schedule = name, slot, error = %e, "cannot fire the schedule; retrying");
                    if pause(&*clock, MAX_SLEEP, &shutdown).await {
                        return;
                    }
                    continue;
                }
            }
        }
        let Some(next) = next_after(&cron, now.max(last)) else {
            tracing::warn!(schedule = name, "the schedule has no further ticks");
            return;
        };
        loop {
            let now = clock.now_ms();
            if now >= next {
                break;
            }
            let step = Duration::from_millis((next - now) as u64).min(MAX_SLEEP);
            if pause(&*clock, step, &shutdown).await {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(rfc3339: &str) -> i64 {
        DateTime::parse_from_rfc3339(rfc3339).unwrap().timestamp_millis()
    }

    #[test]
    fn ticks_are_whole_minutes_in_utc() {
        let c = parse_cron("t", "*/15 * * * *").unwrap();
        let t = ms("2025-03-01T10:07:12.345Z");
        assert_eq!(next_after(&c, t), Some(ms("2025-03-01T10:15:00Z")));
        assert_eq!(latest_at_or_before(&c, t), Some(ms("2025-03-01T10:00:00Z")));
        // On a tick: "at or before" includes it, "after" does not.
        let tick = ms("2025-03-01T10:15:00Z");
        assert_eq!(latest_at_or_before(&c, tick), Some(tick));
        assert_eq!(next_after(&c, tick), Some(ms("2025-03-01T10:30:00Z")));
        assert_eq!(latest_at_or_before(&c, tick + 999), Some(tick));
    }

    #[test]
    fn day_fields_and_names() {
        let c = parse_cron("t", "30 4 * * MON").unwrap();
        // 2025-03-01 is a Saturday.
        assert_eq!(
            next_after(&c, ms("2025-03-01T00:00:00Z")),
            Some(ms("2025-03-03T04:30:00Z"))
        );
        let daily = parse_cron("t", "@daily").unwrap();
        assert_eq!(
            next_after(&daily, ms("2025-03-01T00:00:00Z")),
            Some(ms("2025-03-02T00:00:00Z"))
        );
    }

    #[test]
    fn a_leading_seconds_field_ticks_every_second() {
        let c = parse_cron("t", "* * * * * *").unwrap();
        assert_eq!(next_after(&c, 1_000), Some(2_000));
        let c = parse_cron("t", "*/10 * * * * *").unwrap();
        assert_eq!(next_after(&c, 1_500), Some(10_000));
    }

    #[test]
    fn bad_expressions_are_refused() {
        for bad in [
            "",
            "* * * *",
            "61 * * * * *",
            "0 0 * * * * 2030",
            "61 * * * *",
            "* 24 * * *",
            "nonsense",
            "0 0 30 2 *",
        ] {
            assert!(
                matches!(parse_cron("t", bad), Err(ScheduleError::InvalidCron { .. })),
                "{bad:?} should be refused"
            );
        }
    }
}
