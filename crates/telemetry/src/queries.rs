//! The query scope of issue 12's N+1 guard: a counter of database
//! statements opened per unit of work (the API per request, the job runner
//! per job) and made current for the task with [`within`].
//!
//! Why here and not in `dbkit`, which counts into it: `api` and `worker`
//! open scopes and depend on `domain` and `telemetry` only (ARCHITECTURE's
//! dependency rule); `dbkit::observe` finds the current scope with
//! [`current`] and carries it to the threads that run the statements.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

/// The statements of one unit of work (a request, a job).
#[derive(Debug, Default)]
pub struct Scope {
    queries: AtomicU32,
}

impl Scope {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Statements counted so far.
    pub fn queries(&self) -> u32 {
        self.queries.load(Ordering::Relaxed)
    }

    /// Count one statement.
    pub fn count(&self) {
        self.queries.fetch_add(1, Ordering::Relaxed);
    }
}

tokio::task_local! {
    static CURRENT: Arc<Scope>;
}

/// Run `f` with `scope` current: every statement it causes is counted there.
pub async fn within<F: Future>(scope: Arc<Scope>, f: F) -> F::Output {
    CURRENT.scope(scope, f).await
}

/// The task's current scope, if any.
pub fn current() -> Option<Arc<Scope>> {
    CURRENT.try_with(Arc::clone).ok()
}
