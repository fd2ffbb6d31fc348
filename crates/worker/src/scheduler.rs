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
//! of at most a second, re-reading the clock after each, so a wall clock
//! that jumps is noticed promptly. [`Scheduler::run_once`] is one step of
//! the loop (evaluate every schedule at the clock's `now`), so tests move a
//! manual clock and step, rather than wait for a timer.

use chrono::{DateTime, Utc};
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};
use domain::Clock;
use domain::jobs::{JobQueue, NewJob, ScheduleBook, ScheduleInfo};
use domain::ports::PortError;
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

/// What one step fired for one schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fired {
    pub schedule: String,
    /// The tick (epoch ms) that fired; the job's `run_at`.
    pub slot: i64,
    /// Whether this instance enqueued the job (false: another instance had
    /// already fired this slot).
    pub won: bool,
}

/// One schedule and what it has handled so far.
struct Entry {
    schedule: Schedule,
    cron: Cron,
    /// The slot handled last (by any process); `None` until read from the
    /// queue.
    last: Option<i64>,
}

impl Entry {
    /// Fire the latest slot due at `now`, if it was not handled yet.
    async fn step(&mut self, queue: &dyn JobQueue, now: i64) -> Result<Option<Fired>, PortError> {
        let name = self.schedule.name.as_str();
        let last = match self.last {
            Some(l) => l,
            None => {
                let last_fired = queue.last_fired(name).await?;
                tracing::info!(schedule = name, cron = %self.schedule.cron, ?last_fired, "schedule started");
                // Never fired: ticks before now are not ours to catch up on.
                *self.last.insert(last_fired.unwrap_or(now))
            }
        };
        let Some(slot) = latest_at_or_before(&self.cron, now).filter(|s| *s > last) else {
            return Ok(None);
        };
        // Only the most recent due slot fires; any older missed ones between
        // `last` and it are skipped on purpose.
        let skipped = next_after(&self.cron, last).is_some_and(|first| first < slot);
        let job = NewJob {
            run_at: slot,
            ..self.schedule.job.clone()
        };
        let won = queue.fire(name, slot, &job, now).await?;
        let result = if won { "won" } else { "lost" };
        metrics::counter!(names::SCHEDULE_FIRES, "schedule" => self.schedule.name.clone(), "result" => result)
            .increment(1);
        tracing::info!(schedule = name, slot, won, skipped_missed_ticks = skipped, kind = %job.kind, "schedule fired");
        self.last = Some(slot);
        Ok(Some(Fired {
            schedule: self.schedule.name.clone(),
            slot,
            won,
        }))
    }

    /// The next tick to wait for, after `now` and after the last handled.
    fn next_due(&self, now: i64) -> Option<i64> {
        next_after(&self.cron, now.max(self.last.unwrap_or(now)))
    }
}

/// The schedules of one process over a queue and a clock. [`run_once`]
/// is one step (what the spawned loops do at each wake-up), so tests drive
/// ticks with a manual clock instead of waiting for them.
///
/// [`run_once`]: Scheduler::run_once
pub struct Scheduler {
    queue: Arc<dyn JobQueue>,
    clock: Arc<dyn Clock>,
    entries: Vec<Entry>,
}

impl Scheduler {
    /// A schedule whose cron does not parse is logged and skipped (use
    /// [`parse_schedule`] to refuse it at startup instead).
    pub fn new(queue: Arc<dyn JobQueue>, clock: Arc<dyn Clock>, schedules: Vec<Schedule>) -> Self {
        let entries = schedules
            .into_iter()
            .filter_map(|schedule| match parse_cron(&schedule.name, &schedule.cron) {
                Ok(cron) => Some(Entry {
                    schedule,
                    cron,
                    last: None,
                }),
                Err(e) => {
                    tracing::error!(error = %e, "schedule skipped");
                    None
                }
            })
            .collect();
        Self { queue, clock, entries }
    }

    /// Evaluate every schedule at the clock's `now`: each fires its latest
    /// due slot not handled yet (the first step reads the schedules'
    /// history from the queue). Every schedule is tried even if one fails;
    /// the first failure is returned, and a later step tries again.
    pub async fn run_once(&mut self) -> Result<Vec<Fired>, PortError> {
        let now = self.clock.now_ms();
        let mut fired = Vec::new();
        let mut first_error = None;
        for entry in &mut self.entries {
            match entry.step(&*self.queue, now).await {
                Ok(f) => fired.extend(f),
                Err(e) => {
                    tracing::warn!(schedule = %entry.schedule.name, error = %e, "cannot fire the schedule; retrying");
                    first_error.get_or_insert(e);
                }
            }
        }
        first_error.map_or(Ok(fired), Err)
    }

    /// The earliest tick any schedule waits for, after the clock's `now`.
    pub fn next_tick(&self) -> Option<i64> {
        let now = self.clock.now_ms();
        self.entries.iter().filter_map(|e| e.next_due(now)).min()
    }

    /// Step, then sleep on the clock until the next tick, until `shutdown`.
    async fn run(mut self, shutdown: CancellationToken) {
        while !shutdown.is_cancelled() {
            if self.run_once().await.is_err() {
                if pause(&*self.clock, MAX_SLEEP, &shutdown).await {
                    return;
                }
                continue;
            }
            let Some(next) = self.next_tick() else {
                tracing::warn!(schedules = self.entries.len(), "no schedule has further ticks");
                return;
            };
            loop {
                let now = self.clock.now_ms();
                if now >= next {
                    break;
                }
                let step = Duration::from_millis((next - now) as u64).min(MAX_SLEEP);
                if pause(&*self.clock, step, &shutdown).await {
                    return;
                }
            }
        }
    }
}

/// Run every schedule on `tracker` until `shutdown`, each in its own task
/// (so a schedule whose fire keeps failing does not hold the others back).
/// A schedule whose cron does not parse is logged and skipped (use
/// [`parse_schedule`] to refuse it at startup instead).
pub fn spawn_scheduler(
    queue: Arc<dyn JobQueue>,
    clock: Arc<dyn Clock>,
    schedules: Vec<Schedule>,
    tracker: &TaskTracker,
    shutdown: CancellationToken,
) {
    for schedule in schedules {
        let scheduler = Scheduler::new(queue.clone(), clock.clone(), vec![schedule]);
        if !scheduler.entries.is_empty() {
            tracker.spawn(scheduler.run(shutdown.clone()));
        }
    }
}

/// The schedules of a deployment as the operator routes see them
/// (`domain::jobs::ScheduleBook`): built from the same configuration as the
/// scheduler's, so an `api`-only process lists and runs exactly what its
/// workers fire.
#[derive(Debug, Clone, Default)]
pub struct ScheduleList(pub Vec<Schedule>);

impl ScheduleBook for ScheduleList {
    fn schedules(&self, now: i64) -> Vec<ScheduleInfo> {
        self.0
            .iter()
            .map(|s| ScheduleInfo {
                name: s.name.clone(),
                cron: s.cron.clone(),
                job: s.job.clone(),
                next_at: s.next_after(now).ok().flatten(),
            })
            .collect()
    }
}

/// Sleep `d` on `clock`; true if cancelled.
async fn pause(clock: &dyn Clock, d: Duration, shutdown: &CancellationToken) -> bool {
    tokio::select! {
        _ = clock.sleep(d) => false,
        _ = shutdown.cancelled() => true,
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
    fn the_schedule_list_tells_each_next_tick() {
        let job = NewJob::new("noop", "default", serde_json::json!({}), 0);
        let list = ScheduleList(vec![parse_schedule("every_5", "*/5 * * * *", job.clone()).unwrap()]);
        let got = list.schedules(ms("2025-03-01T10:07:12Z"));
        assert_eq!(got.len(), 1);
        assert_eq!((got[0].name.as_str(), got[0].cron.as_str()), ("every_5", "*/5 * * * *"));
        assert_eq!(got[0].next_at, Some(ms("2025-03-01T10:10:00Z")));
        assert_eq!(got[0].job, job);
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
