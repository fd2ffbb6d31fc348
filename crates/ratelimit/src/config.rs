//! `RateLimitConfig`: which `RateLimiter` a process runs, and `build()`.
//! The binary turns its configuration into one of these at load, so
//! choosing a backend is a match here rather than in the wiring.

use std::sync::Arc;

use domain::ports::{PortError, RateLimiter};

use crate::{MemoryLimiter, RedisLimiter, RedisLimiterOptions};

/// The limiter to set up.
#[derive(Debug, Clone)]
pub enum RateLimitConfig {
    /// Budgets per process (embedded mode: there is one process).
    Memory,
    /// Budgets shared by every instance through Redis, with a per-process
    /// fallback while Redis is unreachable.
    Redis { url: String, key_prefix: String },
}

impl RateLimitConfig {
    /// Set up the limiter. Fails only on a malformed Redis URL. With Redis,
    /// it pings once (bounded) so the first requests find the connection
    /// made; a Redis that is down does not stop the start.
    pub async fn build(&self) -> Result<Arc<dyn RateLimiter>, PortError> {
        match self {
            RateLimitConfig::Memory => Ok(Arc::new(MemoryLimiter::new())),
            RateLimitConfig::Redis { url, key_prefix } => {
                let limiter = RedisLimiter::connect(
                    url,
                    RedisLimiterOptions {
                        key_prefix: key_prefix.clone(),
                        ..RedisLimiterOptions::default()
                    },
                )?;
                if let Err(e) = limiter.health().await {
                    tracing::warn!(error = %e, "rate limiter: redis not reachable at start; limiting per instance until it is");
                }
                Ok(Arc::new(limiter))
            }
        }
    }
}
