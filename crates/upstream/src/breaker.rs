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
//! A caller may ask for a **probe** while the circuit is open
//! ([`Breaker::grant_probe`]): the next call goes through as if the
//! cooldown had ended. Every sync job attempt asks for one, because an
//! attempt is either asked by an operator (`jobs retry`, "run now"), a
//! scheduled tick, or an automatic retry that the runner already delayed
//! past the cooldown ([`Breaker::open_for`]); none of them is the pile-up
//! of calls the breaker exists to stop, and an operator who retries right
//! after the upstream came back must not be told "circuit open" for 30 s.
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
    /// One call may go through while open (`grant_probe`).
    probe: bool,
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

    /// Whether a call may go out now (a granted probe is used up by it).
    pub(crate) fn allows(&self) -> bool {
        let mut s = self.state();
        let open_until = s.open_until;
        match open_until {
            Some(until) if self.clock.now_ms() < until => std::mem::take(&mut s.probe),
            _ => true,
        }
    }

    /// Let the next call through even while the circuit is open (a
    /// half-open probe): its success closes the circuit, its failure opens
    /// it for another cooldown.
    pub(crate) fn grant_probe(&self) {
        let mut s = self.state();
        if s.open_until.is_some() {
            s.probe = true;
        }
    }

    /// How long the circuit stays open from now (`None` when closed or
    /// half-open).
    pub(crate) fn open_for(&self) -> Option<Duration> {
        let until = self.state().open_until?;
        let left = until.saturating_sub(self.clock.now_ms());
        (left > 0).then(|| Duration::from_millis(left as u64))
    }

    pub(crate) fn success(&self) {
        let mut s = self.state();
        let was_open = s.open_until.is_some();
        s.consecutive = 0;
        s.open_until = None;
        s.probe = false;
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

    /// Whether the circuit is open right now (fails calls fast).
    pub(crate) fn is_open(&self) -> bool {
        self.open_for().is_some()
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

    #[test]
    fn a_probe_lets_one_call_through_an_open_circuit() {
        let clock = ManualClock::new(1_000_000);
        let b = Breaker::new(1, Duration::from_secs(30), clock.clone());
        b.grant_probe();
        b.failure();
        assert!(!b.allows(), "a probe granted while closed is not kept for later");
        assert_eq!(b.open_for(), Some(Duration::from_secs(30)));
        clock.advance(Duration::from_secs(10));
        assert_eq!(b.open_for(), Some(Duration::from_secs(20)), "the cooldown left");
        b.grant_probe();
        assert!(b.allows(), "the probe goes through the open circuit");
        assert!(!b.allows(), "one call only");
        b.failure();
        assert_eq!(
            b.open_for(),
            Some(Duration::from_secs(30)),
            "a failed probe reopens for a full cooldown"
        );
        b.grant_probe();
        assert!(b.allows());
        b.success();
        assert!(
            b.allows() && b.open_for().is_none(),
            "a successful probe closes the circuit"
        );
    }
}
