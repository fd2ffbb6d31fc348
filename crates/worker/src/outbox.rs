//! The relay of the pickup outbox (`domain::outbox`): a loop that moves the
//! jobs committed pickups owe (their receipts and points reports) from the store's live events
//! to the job queue. [`Relay::run_once`] is one pass, for tests and the
//! loop alike.

use std::sync::Arc;
use std::time::Duration;

use domain::Rushhour;
use domain::jobs::JobQueue;
use domain::loyalty::PointsRule;
use domain::ports::PortResult;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How often the relay looks for new pickups: a receipt waits at most this
/// long (plus the job's own queueing) after the pickup committed.
pub const RELAY_EVERY: Duration = Duration::from_millis(250);
/// Events read per store per pass.
pub const RELAY_BATCH: u32 = 500;

pub struct Relay {
    app: Arc<Rushhour>,
    jobs: Arc<dyn JobQueue>,
    rule: PointsRule,
}

impl Relay {
    pub fn new(app: Arc<Rushhour>, jobs: Arc<dyn JobQueue>, rule: PointsRule) -> Self {
        Self { app, jobs, rule }
    }

    /// One pass over every store; how many jobs it enqueued.
    pub async fn run_once(&self) -> PortResult<usize> {
        domain::outbox::relay(&*self.app.store, &*self.jobs, &*self.app.clock, self.rule, RELAY_BATCH).await
    }
}

/// Run the relay every [`RELAY_EVERY`] until `shutdown`. A failed pass is
/// logged and tried again next time: the cursor did not move, so nothing is
/// skipped.
pub fn spawn_relay(relay: Relay, tracker: &TaskTracker, shutdown: CancellationToken) {
    tracker.spawn(async move {
        let clock = relay.app.clock.clone();
        loop {
            match relay.run_once().await {
                Ok(0) => {}
                Ok(n) => tracing::debug!(jobs = n, "outbox relayed"),
                Err(e) => tracing::warn!(error = %e, "outbox relay pass failed; retrying"),
            }
            tokio::select! {
                _ = clock.sleep(RELAY_EVERY) => {}
                _ = shutdown.cancelled() => return,
            }
        }
    });
}
