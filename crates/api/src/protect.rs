//! Protection of the service itself (§7): load shedding on intake, request
//! deadlines, and the last-resort responses (panic, unknown route, wrong
//! method) that keep even those answers in problem+json.
//!
//! Shedding is a non-blocking `try_acquire` on a semaphore placed in front of
//! the intake handler, so an overloaded instance answers 503 at once instead
//! of queueing work it cannot finish; the client retries after
//! `Retry-After`, by which time the rush may have passed or another instance
//! may take it.

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::any::Any;
use std::sync::Arc;
use std::time::Duration;
use telemetry::names;
use tokio::sync::Semaphore;

use crate::error::ApiError;

/// Hold one intake permit while the request runs, or refuse it. Runs before
/// the body is read, so a refused request costs almost nothing.
pub async fn shed_intake(State(permits): State<Arc<Semaphore>>, req: Request, next: Next) -> Response {
    match permits.try_acquire() {
        Ok(_permit) => next.run(req).await,
        Err(_) => {
            metrics::counter!(names::HTTP_SHED, "path" => "/v1/orders").increment(1);
            ApiError::Overloaded.into_response()
        }
    }
}

/// Answer 503 `timeout` when a request outlives its deadline. Dropping the
/// handler's future cancels its backend calls; an intake that was cut off
/// may still have become durable, which is what `Idempotency-Key` retries
/// are for.
pub async fn timeout(State(deadline): State<Duration>, req: Request, next: Next) -> Response {
    match tokio::time::timeout(deadline, next.run(req)).await {
        Ok(resp) => resp,
        Err(_) => ApiError::Timeout.into_response(),
    }
}

/// `CatchPanicLayer` handler: log the panic, answer a generic 500 problem.
pub fn panic_response(err: Box<dyn Any + Send + 'static>) -> Response {
    let msg = err
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| err.downcast_ref::<&str>().copied())
        .unwrap_or("(non-string panic payload)");
    ApiError::Internal(format!("handler panicked: {msg}")).into_response()
}

pub async fn route_not_found() -> ApiError {
    ApiError::RouteNotFound
}

pub async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}
