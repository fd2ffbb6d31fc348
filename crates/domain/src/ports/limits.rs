//! `RateLimiter`: request budgets per client address and per credential,
//! by route class (§7). In process for the embedded mode; shared through
//! Redis in scale mode so every API instance draws on one budget.

use async_trait::async_trait;
use std::time::Duration;

use super::PortResult;

/// A budget: at most `burst` requests at once, refilled at `burst` per
/// `period` (GCRA: one request every `period / burst`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Quota {
    pub burst: u32,
    pub period: Duration,
}

/// The answer for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateDecision {
    pub allowed: bool,
    /// The quota's burst (`RateLimit` header `limit`).
    pub limit: u32,
    /// Requests left right now after this one.
    pub remaining: u32,
    /// Until the budget is full again.
    pub reset_after: Duration,
    /// When refused: until one more request would be allowed.
    pub retry_after: Duration,
}

#[async_trait]
pub trait RateLimiter: Send + Sync {
    /// Count one request under `key` against `quota`. Never fails: a
    /// shared backend that is down falls back to a per-instance budget, so
    /// clients see no errors from the limiter itself.
    async fn check(&self, key: &str, quota: Quota) -> RateDecision;

    /// Whether the shared backend answers (`/health/ready` reports it; a
    /// limiter that fell back is degraded, not down).
    async fn health(&self) -> PortResult<()>;
}
