//! A consecutive-failures circuit breaker for calls to an upstream.
//!
//! After `threshold` failed attempts in a row the circuit opens: for
//! `cooldown` every call fails at once instead of waiting for timeouts and
//! piling retries on a service that is already down. After the cooldown
//! calls go through again (half-open); the first success closes it, the
//! first failure opens it for another cooldown. There is no single-probe
//! limit in the half-open state: the callers are a handful of background
//! sync jobs, not a request fan-out, so the extra complexity buys nothing.
//!
//! Time is the injected `Clock` (wall milliseconds), not `Instant::now`, so
//! a test moves a manual clock past the cooldown instead of sleeping
//! through it.

use domain::Clock;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use telemetry::names;

pub(crate) struct Breaker {
    threshold: u32,
    cooldown: Duration,
    clock: Arc<dyn Clock>,
    state: Mutex<State>,
}

impl std::fmt::Debug for Breaker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Breaker")
            .field("threshold", &self.threshold)
            .field("cooldown", &self.cooldown)
            .field("state", &*self.state())
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Default)]
struct State {
    consecutive: u32,
    /// Epoch ms on the breaker's clock.
    open_until: Option<i64>,
}

impl Breaker {
    pub(crate) fn new(threshold: u32, cooldown: Duration, clock: Arc<dyn Clock>) -> Self {
        Self {
            threshold: threshold.max(1),
            cooldown,
            clock,
            state: Mutex::new(State::default()),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // The state is two plain fields: a panic elsewhere cannot leave
        // them half-written, so a poisoned lock is still good to use.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether a call may go out now.
    pub(crate) fn allows(&self) -> bool {
        match self.state().open_until {
            Some(until) => self.clock.now_ms() >= until,
            None => true,
        }
    }

    pub(crate) fn success(&self) {
        let mut s = self.state();
        let was_open = s.open_until.is_some();
        s.consecutive = 0;
        s.open_until = None;
        if was_open {
            tracing::info!("upstream circuit closed");
            metrics::gauge!(names::UPSTREAM_CIRCUIT_OPEN).set(0.0);
        }
    }

    pub(crate) fn failure(&self) {
        let mut s = self.state();
        s.consecutive = s.consecutive.saturating_add(1);
        if s.consecutive >= self.threshold {
            if s.open_until.is_none() {
                tracing::warn!(
                    failures = s.consecutive,
                    cooldown_ms = self.cooldown.as_millis() as u64,
                    "upstream circuit opened"
                );
            }
            let cooldown = i64::try_from(self.cooldown.as_millis()).unwrap_or(i64::MAX);
            s.open_until = Some(self.clock.now_ms().saturating_add(cooldown));
            metrics::gauge!(names::UPSTREAM_CIRCUIT_OPEN).set(1.0);
        }
    }

    /// Whether the circuit is open right now.
    pub(crate) fn is_open(&self) -> bool {
        !self.allows()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use testkit::clock::ManualClock;

    #[test]
    fn opens_after_threshold_and_closes_on_success_after_cooldown() {
        let clock = ManualClock::new(1_000_000);
        let b = Breaker::new(3, Duration::from_millis(30), clock.clone());
        b.failure();
        b.failure();
        assert!(b.allows(), "two failures are below the threshold");
        b.success();
        b.failure();
        b.failure();
        assert!(b.allows(), "a success resets the count");
        b.failure();
        assert!(b.is_open());
        clock.advance(Duration::from_millis(29));
        assert!(b.is_open(), "still open a millisecond before the cooldown ends");
        clock.advance(Duration::from_millis(1));
        assert!(b.allows(), "half-open after the cooldown");
        b.failure();
        assert!(b.is_open(), "a failure while half-open reopens at once");
        clock.advance(Duration::from_millis(30));
        b.success();
        assert!(b.allows());
        b.failure();
        assert!(b.allows(), "closed again: one failure does not reopen");
    }
}
