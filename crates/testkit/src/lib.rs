//! Shared test support: the contract suite of each port, run unchanged
//! against every backend of that port (embedded and scale backends alike),
//! plus fixtures, the one manual clock (`clock::ManualClock`), an
//! in-process SMTP sink (`mail::SmtpSink`), an in-process webhook
//! receiver (`receiver::Receiver`), a TLS-terminating proxy with a
//! throwaway CA (`tls::TlsProxy`), a relay a test can cut to stage a
//! backend outage (`outage::Outage`) and the service-gating helper.
//!
//! A suite is a set of `async fn`s taking a factory that builds a fresh,
//! empty backend; an adapter crate's `tests/it` calls each one with its
//! backend. That way a new backend proves itself by passing the very same
//! test bodies, as ripgrep runs each test with both regex engines.

pub mod cache;
pub mod clock;
pub mod eventlog;
pub mod fixtures;
pub mod mail;
pub mod outage;
pub mod pg;
pub mod queue;
pub mod ratelimit;
pub mod receiver;
pub mod sessions;
pub mod store;
pub mod tls;

/// For tests that need an external service (PostgreSQL, Redis, Kafka):
/// returns the URL from `var` if set. When it is not set the test should
/// return early; this prints a loud notice, and panics instead when
/// `RUSHHOUR_REQUIRE_SERVICES=1` so CI can never skip silently.
#[allow(clippy::disallowed_methods)] // the one sanctioned env read in tests
pub fn service_url(var: &str, test: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(v) if !v.is_empty() => Some(v),
        _ => {
            if std::env::var("RUSHHOUR_REQUIRE_SERVICES").as_deref() == Ok("1") {
                panic!("{test}: {var} is not set but RUSHHOUR_REQUIRE_SERVICES=1");
            }
            eprintln!("\n!!! SKIPPED {test}: set {var} to run it against a real service !!!\n");
            None
        }
    }
}
