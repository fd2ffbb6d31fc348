//! Request budgets per client address and per credential (§7): the two
//! backends of `domain::ports::RateLimiter`, both GCRA (the generic cell
//! rate algorithm: one stored time per key, no timers, no counters to
//! reset).
//!
//! - [`MemoryLimiter`] (embedded mode) decides in process with the
//!   `governor` crate.
//! - [`RedisLimiter`] (scale mode) decides in one Lua script on Redis so
//!   every API instance shares one budget per key, and falls back to a
//!   `MemoryLimiter` of its own when Redis is down or slow: the limiter
//!   never fails a request and never holds one up for long.
//!
//! Both pass the `testkit::ratelimit` contract suite, so a decision means
//! the same whichever backend made it: `limit` is the burst, `remaining`
//! what is left after this request, `reset_after` the time until the
//! burst is whole again (rounded up to one request's interval in process),
//! `retry_after` when refused the time until one more request would pass.
//! Those are the fields of the IETF `RateLimit` and `RateLimit-Policy`
//! headers the API renders.

mod config;
mod memory;
mod redis_limiter;

pub use config::RateLimitConfig;
pub use memory::{CLEANUP_EVERY, MemoryLimiter};
pub use redis_limiter::{RedisLimiter, RedisLimiterOptions};
