//! What crosses process boundaries: the versioned records written to the
//! event log, and the live events streamed to customers and staff boards.
//!
//! Log payloads are wire types, never serialized entities: a future binary
//! must read a log written today, so `OrderPlacedV1` only ever gains
//! optional fields, and a breaking change becomes `OrderPlacedV2` with its
//! own `type` tag.

use serde::{Deserialize, Serialize};

use crate::ids::{OrderId, StoreId};
use crate::menu::Station;
use crate::order::{OrderLine, OrderStatus, TicketStatus};

/// A record of the order log, keyed by order id: so a payment callback
/// lands in its order's partition after the order itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum LogEvent {
    #[serde(rename = "order_placed.v1")]
    OrderPlacedV1(OrderPlacedV1),
    /// A payment provider's callback, appended by `POST /v1/webhooks/payments`.
    #[serde(rename = "payment.v1")]
    PaymentV1(PaymentV1),
}

impl LogEvent {
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("log events serialize")
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(bytes)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderPlacedV1 {
    pub order_id: OrderId,
    pub store: StoreId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer: Option<String>,
    pub currency: String,
    pub total: i64,
    pub lines: Vec<PlacedLineV1>,
    /// Epoch milliseconds at intake.
    pub placed_at: i64,
    /// The first name for the pickup board (trimmed, 1 to 24 characters).
    /// Optional, so records written before names existed still decode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// What a payment provider told us about an order's payment. Applied once
/// per `event_id`, however often the provider sends it. Providers deliver
/// callbacks out of order (retries, parallel senders), so the order's
/// payment status is that of its newest event by `provider_ts`, not of the
/// last to arrive: a `failed` from before a `paid` that arrives after it is
/// recorded with the others and changes nothing (ties within the provider's
/// one-second resolution go the way a payment's life does: failed, then
/// paid, then refunded).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentV1 {
    /// The provider's event id: the idempotency key of the callback.
    pub event_id: String,
    pub order_id: OrderId,
    pub status: PaymentStatus,
    /// Minor units, as the provider reported them.
    pub amount: i64,
    pub currency: String,
    /// When the provider created the event (its `created`, epoch seconds):
    /// what orders an order's events.
    pub provider_ts: i64,
    /// When we accepted it (epoch ms).
    pub received_at: i64,
}

/// An order's payment status. Orders start `unpaid`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PaymentStatus {
    Unpaid,
    Paid,
    Failed,
    Refunded,
}

impl PaymentStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            PaymentStatus::Unpaid => "unpaid",
            PaymentStatus::Paid => "paid",
            PaymentStatus::Failed => "failed",
            PaymentStatus::Refunded => "refunded",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "unpaid" => Some(PaymentStatus::Unpaid),
            "paid" => Some(PaymentStatus::Paid),
            "failed" => Some(PaymentStatus::Failed),
            "refunded" => Some(PaymentStatus::Refunded),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlacedLineV1 {
    pub line: u32,
    pub sku: String,
    pub name: String,
    pub station: Station,
    pub size: String,
    #[serde(default)]
    pub modifiers: Vec<String>,
    pub qty: u32,
    pub unit_price: i64,
    pub line_total: i64,
}

impl From<&OrderLine> for PlacedLineV1 {
    fn from(l: &OrderLine) -> Self {
        Self {
            line: l.line,
            sku: l.sku.clone(),
            name: l.name.clone(),
            station: l.station,
            size: l.size.clone(),
            modifiers: l.modifiers.clone(),
            qty: l.qty,
            unit_price: l.unit_price,
            line_total: l.line_total,
        }
    }
}

impl PlacedLineV1 {
    pub fn to_line(&self, ticket: Option<TicketStatus>) -> OrderLine {
        OrderLine {
            line: self.line,
            sku: self.sku.clone(),
            name: self.name.clone(),
            station: self.station,
            size: self.size.clone(),
            modifiers: self.modifiers.clone(),
            qty: self.qty,
            unit_price: self.unit_price,
            line_total: self.line_total,
            ticket,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LiveEventKind {
    /// The order's status changed.
    Status,
    /// One ticket (line) changed.
    Ticket,
}

impl LiveEventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            LiveEventKind::Status => "status",
            LiveEventKind::Ticket => "ticket",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "status" => Some(LiveEventKind::Status),
            "ticket" => Some(LiveEventKind::Ticket),
            _ => None,
        }
    }
}

/// A change to an order, as streamed over SSE. `id` is assigned by the store
/// when the change commits and grows monotonically, so it doubles as the
/// SSE event id for `Last-Event-ID` resume.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LiveEvent {
    pub id: i64,
    pub kind: LiveEventKind,
    pub order_id: OrderId,
    pub store: StoreId,
    pub status: OrderStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub station: Option<Station>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ticket: Option<TicketStatus>,
    pub at: i64,
    /// The order's pickup code when the event was read or written (`None`
    /// until confirmed, and on rejected orders).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pickup_code: Option<String>,
    /// The order's first name for the pickup board, if given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_records_written_today_stay_readable() {
        let raw = br#"{"type":"order_placed.v1","order_id":"0190f0d2-5b1c-7cc3-a1b2-000000000001",
            "store":"demo-downtown","currency":"USD","total":420,"placed_at":1,
            "lines":[{"line":1,"sku":"latte","name":"Latte","station":"barista","size":"small",
            "qty":1,"unit_price":420,"line_total":420}]}"#;
        let LogEvent::OrderPlacedV1(p) = LogEvent::decode(raw).unwrap() else {
            panic!("an order_placed.v1 record")
        };
        assert_eq!(p.lines[0].modifiers, Vec::<String>::new());
        assert_eq!(
            LogEvent::decode(&LogEvent::OrderPlacedV1(p.clone()).encode()).unwrap(),
            LogEvent::OrderPlacedV1(p)
        );
    }
}
