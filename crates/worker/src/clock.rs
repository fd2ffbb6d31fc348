//! The production `Clock`: system wall time and tokio timers. It lives with
//! the runtime rather than in `domain`, which knows no runtime.

use domain::Clock;
use futures::future::BoxFuture;
use std::time::Duration;

#[derive(Debug, Default, Clone, Copy)]
pub struct TokioClock;

impl Clock for TokioClock {
    fn now_ms(&self) -> i64 {
        domain::ports::system_now_ms()
    }

    fn sleep(&self, d: Duration) -> BoxFuture<'static, ()> {
        Box::pin(tokio::time::sleep(d))
    }
}
