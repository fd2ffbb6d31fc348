//! Column values to domain values and back, shared by both backends: the
//! enums stored as text, integers that change signedness, JSON columns. Each
//! backend's own error type converts from [`DecodeError`], so a bad value
//! reads the same whichever database it came from.

use domain::Station;
use domain::events::LiveEventKind;
use domain::identity::Role;
use domain::order::{OrderStatus, TicketStatus};
use uuid::Uuid;

#[derive(Debug)]
pub(crate) enum DecodeError {
    /// A stored value that does not decode into a domain value.
    Invalid(String),
    /// A domain value the column type cannot hold.
    OutOfRange(String),
}

/// For the few places that convert straight to the port's error.
impl From<DecodeError> for domain::PortError {
    fn from(e: DecodeError) -> Self {
        match e {
            DecodeError::Invalid(m) => domain::PortError::Invalid(m),
            DecodeError::OutOfRange(m) => domain::PortError::Conflict(m),
        }
    }
}

pub(crate) fn invalid(column: &str, value: impl std::fmt::Display) -> DecodeError {
    DecodeError::Invalid(format!("unreadable {column}: {value}"))
}

pub(crate) fn status(s: &str) -> Result<OrderStatus, DecodeError> {
    OrderStatus::parse(s).ok_or_else(|| invalid("order status", s))
}

pub(crate) fn station(s: &str) -> Result<Station, DecodeError> {
    Station::parse(s).ok_or_else(|| invalid("station", s))
}

pub(crate) fn ticket(s: Option<String>) -> Result<Option<TicketStatus>, DecodeError> {
    s.map(|t| TicketStatus::parse(&t).ok_or_else(|| invalid("ticket status", t)))
        .transpose()
}

pub(crate) fn kind(s: &str) -> Result<LiveEventKind, DecodeError> {
    LiveEventKind::parse(s).ok_or_else(|| invalid("event kind", s))
}

pub(crate) fn role(s: &str) -> Result<Role, DecodeError> {
    Role::parse(s).ok_or_else(|| invalid("role", s))
}

/// SQLite keeps ids as hyphenated text; PostgreSQL as `uuid`.
pub(crate) fn uuid(column: &str, s: &str) -> Result<Uuid, DecodeError> {
    Uuid::parse_str(s).map_err(|_| invalid(column, s))
}

pub(crate) fn u32_of(column: &str, v: i64) -> Result<u32, DecodeError> {
    u32::try_from(v).map_err(|_| invalid(column, v))
}

pub(crate) fn u64_of(column: &str, v: i64) -> Result<u64, DecodeError> {
    u64::try_from(v).map_err(|_| invalid(column, v))
}

/// Both databases' integers are signed; an offset beyond `i64::MAX` cannot
/// be stored.
pub(crate) fn i64_of(what: &str, v: u64) -> Result<i64, DecodeError> {
    i64::try_from(v).map_err(|_| DecodeError::OutOfRange(format!("{what} {v} does not fit in a signed 64-bit integer")))
}

/// JSON columns (sizes, modifiers) are read as text and parsed here, so a
/// malformed value is reported like every other unreadable column.
pub(crate) fn json<T: serde::de::DeserializeOwned>(column: &str, s: &str) -> Result<T, DecodeError> {
    serde_json::from_str(s).map_err(|e| invalid(column, e))
}

pub(crate) fn to_json<T: serde::Serialize>(column: &str, v: &T) -> Result<String, DecodeError> {
    serde_json::to_string(v).map_err(|e| DecodeError::Invalid(format!("cannot encode {column}: {e}")))
}
