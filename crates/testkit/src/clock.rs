//! The one manual clock of the test tree: time that moves only when a test
//! says so. Every test that needs to control `Clock` (the job runner's
//! leases and retries, the scheduler's ticks, the upstream breaker's
//! cooldown) uses this one, so there is a single definition of "advance".
//!
//! `sleep(d)` really waits until the clock has been advanced `d` past the
//! moment it was called (not a few real milliseconds, which is what the
//! earlier per-crate copies did): a loop that sleeps on this clock parks
//! until the test moves time, so a test can never pass because a real timer
//! happened to fire. Tests that want a step to run at once call the loop's
//! `run_once` instead of waiting for its timer.

use domain::Clock;
use futures::future::BoxFuture;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::watch;

/// A `Clock` whose time is set by the test.
#[derive(Debug)]
pub struct ManualClock {
    now: watch::Sender<i64>,
    sleeps: AtomicUsize,
}

impl ManualClock {
    /// A clock standing at `now_ms` (milliseconds since the Unix epoch).
    pub fn new(now_ms: i64) -> Arc<Self> {
        Arc::new(Self {
            now: watch::Sender::new(now_ms),
            sleeps: AtomicUsize::new(0),
        })
    }

    /// A clock standing at the system's time now (for tests whose data is
    /// stamped with real dates but which still move time by hand).
    pub fn at_system_now() -> Arc<Self> {
        Self::new(domain::ports::system_now_ms())
    }

    /// Move time forward by `d`, waking every sleeper whose deadline passed.
    pub fn advance(&self, d: Duration) {
        let step = i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        self.now.send_modify(|t| *t = t.saturating_add(step));
    }

    /// How many times `sleep` was called: a loop that slept has reached its
    /// waiting point.
    pub fn sleeps(&self) -> usize {
        self.sleeps.load(Ordering::SeqCst)
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        *self.now.borrow()
    }

    fn sleep(&self, d: Duration) -> BoxFuture<'static, ()> {
        self.sleeps.fetch_add(1, Ordering::SeqCst);
        let mut rx = self.now.subscribe();
        let deadline = self
            .now_ms()
            .saturating_add(i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        Box::pin(async move {
            // The sender lives as long as the clock; if the clock is gone,
            // nothing can advance time any more, so park forever rather
            // than pretend the deadline passed.
            let clock_gone = rx.wait_for(|t| *t >= deadline).await.is_err();
            if clock_gone {
                std::future::pending::<()>().await;
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn sleepers_wake_only_when_time_reaches_their_deadline() {
        let clock = ManualClock::new(1_000);
        let sleeper = tokio::spawn(clock.sleep(Duration::from_secs(5)));
        clock.advance(Duration::from_secs(4));
        tokio::task::yield_now().await;
        assert!(!sleeper.is_finished());
        assert_eq!(clock.now_ms(), 5_000);
        clock.advance(Duration::from_secs(1));
        tokio::time::timeout(Duration::from_secs(5), sleeper)
            .await
            .expect("woken by the advance")
            .unwrap();
        assert_eq!(clock.sleeps(), 1);
        // A zero sleep is already due.
        clock.sleep(Duration::ZERO).await;
    }
}
