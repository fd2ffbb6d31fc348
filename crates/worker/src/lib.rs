//! The background side of rushhour: order processors that drain the event
//! log into the store, the background-job runner and the cron scheduler
//! (both over the `JobQueue` port), the catalog of job kinds and their
//! schedules (`catalog`), the outbound webhooks' dispatcher (`webhooks`),
//! the instance registry's member (`fleet`), the pickup outbox's relay
//! (`outbox`), and the runtime pieces they need (a tokio clock).
//!
//! Like `api`, this crate is a driver: it talks to ports through
//! `domain::Rushhour` and never names an adapter.

pub mod catalog;
pub mod clock;
pub mod fleet;
pub mod jobs;
pub mod outbox;
pub mod processor;
pub mod scheduler;
pub mod webhooks;

pub use clock::TokioClock;
pub use fleet::{Member, spawn_member};
pub use jobs::{
    JobError, JobHandler, JobKind, Registry, Runner, RunnerConfig, RunnerHandle, RunnerStats, backoff,
    default_prefetch, handler_fn, spawn_queue_gauges, spawn_runner,
};
pub use outbox::{Relay, spawn_relay};
pub use processor::{PartitionWorker, ProcessorConfig, ProcessorStatus, spawn_processors};
pub use scheduler::{Fired, Schedule, ScheduleError, ScheduleList, Scheduler, parse_schedule, spawn_scheduler};
pub use webhooks::{DispatchRound, WebhookDispatcher, spawn_webhook_dispatcher};
