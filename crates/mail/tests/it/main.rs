//! The mail adapters against the real things they write to: an outbox
//! directory on disk, and a real SMTP conversation with the in-process
//! `testkit::mail::SmtpSink` on a local port. `contract` runs the shared
//! `Mailer` suite on both.

mod contract;
mod outbox;
mod smtp;

use domain::menu::Station;
use domain::order::{OrderLine, Timestamps};
use domain::{Order, OrderId, OrderStatus, StoreId};

pub const FROM: &str = "Rushhour Receipts <receipts@rushhour.test>";

/// A picked-up order of two large oat lattes and a croissant: $14.60.
pub fn picked_up_order() -> Order {
    let line = |n: u32, name: &str, size: &str, mods: &[&str], qty: u32, unit: i64| OrderLine {
        line: n,
        sku: name.to_lowercase(),
        name: name.into(),
        station: Station::Barista,
        size: size.into(),
        modifiers: mods.iter().map(|m| (*m).to_owned()).collect(),
        qty,
        unit_price: unit,
        line_total: unit * i64::from(qty),
        ticket: None,
    };
    let lines = vec![
        line(1, "Latte", "large", &["oat-milk"], 2, 570),
        line(2, "Croissant", "regular", &[], 1, 320),
    ];
    Order {
        id: OrderId::new(),
        store: StoreId::parse("demo-downtown").unwrap(),
        customer: Some("ada".into()),
        status: OrderStatus::PickedUp,
        reject_reason: None,
        payment_status: "paid".into(),
        currency: "USD".into(),
        total: lines.iter().map(|l| l.line_total).sum(),
        lines,
        at: Timestamps {
            placed_at: 1_719_820_800_000,
            picked_up_at: Some(1_719_821_250_000),
            ..Timestamps::default()
        },
        name: None,
        pickup_code: None,
        cancel_reason: None,
    }
}
