//! What the narrow store ports share, and the aggregate the wiring holds.
//!
//! Every narrow store port (`OrderStore`, `MenuStore`, `AccountStore`,
//! `OpsStore`, `UserStore`, `AuditLog`, `ReportStore`, `Fleet`, `PointsLedger`) is a view of one backend, so
//! `health()` lives once, on their common supertrait `StoreBackend`, rather
//! than on each of them: a call on `dyn Store` resolves to that one method
//! (six `health`s would be ambiguous there), and `/health/ready` asks each backend once, however
//! many ports it serves. A holder of one narrow port still has `health()`.
//!
//! `Store` is the convenience aggregate for wiring: one backend implements
//! every narrow port, `Rushhour` and the binary hold it as one
//! `Arc<dyn Store>`, and code that needs one capability upcasts to the
//! narrow port (`Arc<dyn Store>` → `Arc<dyn OrderStore>`). `Store` itself
//! never gains methods; a new capability gets its own port (see `ports`).

use async_trait::async_trait;

use super::{
    AccountStore, AuditLog, Fleet, MenuStore, OpsStore, OrderStore, PointsLedger, PortResult, ReportStore, UserStore,
    WebhookStore,
};

/// The backend behind the narrow store ports.
#[async_trait]
pub trait StoreBackend: Send + Sync {
    /// Whether the backend answers (`/health/ready`).
    async fn health(&self) -> PortResult<()>;
}

/// Durable state, every capability at once: what the wiring builds from one
/// backend. Implemented for every type that implements all the narrow
/// ports; add no methods here.
pub trait Store:
    OrderStore
    + MenuStore
    + AccountStore
    + OpsStore
    + UserStore
    + AuditLog
    + ReportStore
    + Fleet
    + PointsLedger
    + WebhookStore
{
}

impl<
    T: OrderStore
        + MenuStore
        + AccountStore
        + OpsStore
        + UserStore
        + AuditLog
        + ReportStore
        + Fleet
        + PointsLedger
        + WebhookStore
        + ?Sized,
> Store for T
{
}
