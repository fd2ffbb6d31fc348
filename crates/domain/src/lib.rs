//! The rushhour domain: money, menus, orders and their lifecycle, the wire
//! types written to the event log, the port traits every adapter implements,
//! and the use-cases that drive them.
//!
//! This crate does no IO of its own and knows no runtime, database or HTTP
//! library: everything outside the process is reached through a port trait
//! (`EventLog`, `Store`, `MenuCache`, `LiveFeed`, `JobQueue`, `Mailer`,
//! `Clock`). `Store` is the aggregate of the narrow store ports
//! (`OrderStore`, `MenuStore`, `AccountStore`, `OpsStore`, `UserStore`,
//! `AuditLog`), which code that needs one capability takes instead. That
//! keeps the rules testable without a server and lets the embedded and
//! scale backends be swapped by configuration alone.

pub mod app;
pub mod dead_letters;
pub mod events;
pub mod fleet;
pub mod housekeeping;
pub mod identity;
pub mod ids;
pub mod jobs;
pub mod loyalty;
pub mod menu;
pub mod money;
pub mod ops;
pub mod order;
pub mod outbox;
pub mod pickup;
pub mod ports;
pub mod receipt;
pub mod reports;
pub mod sync;
pub mod webhooks;

pub use app::{AppError, IntakeOutcome, MAX_CANCEL_REASON, Resource, Rushhour, RushhourConfig};
pub use events::{LiveEvent, LiveEventKind, OrderPlacedV1, PlacedLineV1};
pub use ids::{OrderId, StoreId};
pub use jobs::{Job, JobId, JobQueue, JobState, NewJob};
pub use menu::{Coding, Menu, MenuSnapshot, Station};
pub use money::Money;
pub use order::{Action, Order, OrderLine, OrderStatus, TicketStatus, TransitionError};
pub use ports::{
    AccountStore, AuditLog, Clock, EventLog, LiveFeed, Mailer, MenuCache, MenuStore, OpsStore, OrderStore, PortError,
    Store, UserStore,
};
