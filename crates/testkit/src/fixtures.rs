//! Fixtures: placed orders built from the demo menu, as intake would build
//! them, and the payment callbacks and loyalty accounts the background
//! machinery feeds the store.

use domain::events::{OrderPlacedV1, PaymentStatus, PaymentV1, PlacedLineV1};
use domain::ids::OrderId;
use domain::menu::{MenuSnapshot, demo_menu};
use domain::ops::LoyaltyAccount;
use domain::order::{LineDraft, OrderDraft, price};

/// A priced order for the demo store with `n` lines cycling through drinks
/// and food, as `OrderPlacedV1`.
pub fn placed_order(n: usize, placed_at: i64) -> OrderPlacedV1 {
    let menu = MenuSnapshot::new(demo_menu());
    let skus = ["latte", "croissant", "flat-white", "avocado-toast", "espresso"];
    let draft = OrderDraft {
        store: menu.store().id.0.clone(),
        customer: Some("loyalty-42".into()),
        lines: (0..n)
            .map(|i| {
                let sku = skus[i % skus.len()];
                let item = menu.item(sku).expect("demo sku");
                LineDraft {
                    sku: sku.into(),
                    size: Some(item.sizes[0].code.clone()),
                    modifiers: item.modifiers.first().map(|m| vec![m.code.clone()]).unwrap_or_default(),
                    qty: (i % 3 + 1) as i64,
                }
            })
            .collect(),
        name: None,
    };
    let (lines, total) = price(&draft, &menu).expect("fixture prices");
    OrderPlacedV1 {
        order_id: OrderId::new(),
        store: menu.store().id.clone(),
        customer: draft.customer,
        currency: menu.store().currency.clone(),
        total,
        lines: lines.iter().map(PlacedLineV1::from).collect(),
        placed_at,
        name: None,
    }
}

/// A payment callback for `order` paying (or failing, refunding...) exactly
/// its total in its currency.
pub fn payment(order: &OrderPlacedV1, event_id: &str, status: PaymentStatus, received_at: i64) -> PaymentV1 {
    PaymentV1 {
        event_id: event_id.into(),
        order_id: order.order_id,
        status,
        amount: order.total,
        currency: order.currency.clone(),
        provider_ts: received_at / 1_000,
        received_at,
    }
}

/// Loyalty account number `n` at `version`, as the loyalty service would
/// send it (every seventh without an e-mail).
pub fn loyalty_account(n: usize, version: i64) -> LoyaltyAccount {
    LoyaltyAccount {
        id: format!("acct-{n:06}"),
        email: (!n.is_multiple_of(7)).then(|| format!("Member.{n}@Example.com")),
        name: format!("Member {n}"),
        tier: ["green", "gold", "platinum"][n % 3].into(),
        points: (n as i64 * 37) % 5_000,
        version,
    }
}
