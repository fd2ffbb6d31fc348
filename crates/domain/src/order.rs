//! Orders: intake validation and pricing against a menu snapshot, and the
//! guarded lifecycle of an order and its tickets.
//!
//! Every state change is planned here as a pure function (`plan`) and then
//! persisted by a `Store` adapter inside one transaction, so the rules live
//! in one place whatever the backend, and property tests can hammer them
//! without a database.

use serde::{Deserialize, Serialize};
use std::fmt;

use crate::ids::{OrderId, StoreId};
use crate::menu::{MenuSnapshot, Station};
use crate::money::Total;

pub const MAX_LINES: usize = 50;
pub const MAX_QTY: i64 = 20;
pub const MAX_MODIFIERS: usize = 10;
/// The longest customer reference, in characters.
pub const MAX_CUSTOMER: usize = 128;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderStatus {
    Placed,
    Confirmed,
    Rejected,
    InProgress,
    Ready,
    PickedUp,
    Cancelled,
    Expired,
}

impl OrderStatus {
    pub const ALL: [OrderStatus; 8] = [
        OrderStatus::Placed,
        OrderStatus::Confirmed,
        OrderStatus::Rejected,
        OrderStatus::InProgress,
        OrderStatus::Ready,
        OrderStatus::PickedUp,
        OrderStatus::Cancelled,
        OrderStatus::Expired,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            OrderStatus::Placed => "placed",
            OrderStatus::Confirmed => "confirmed",
            OrderStatus::Rejected => "rejected",
            OrderStatus::InProgress => "in_progress",
            OrderStatus::Ready => "ready",
            OrderStatus::PickedUp => "picked_up",
            OrderStatus::Cancelled => "cancelled",
            OrderStatus::Expired => "expired",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|st| st.as_str() == s)
    }

    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            OrderStatus::Rejected | OrderStatus::PickedUp | OrderStatus::Cancelled | OrderStatus::Expired
        )
    }
}

impl fmt::Display for OrderStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TicketStatus {
    Queued,
    Started,
    Done,
}

impl TicketStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            TicketStatus::Queued => "queued",
            TicketStatus::Started => "started",
            TicketStatus::Done => "done",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "queued" => Some(TicketStatus::Queued),
            "started" => Some(TicketStatus::Started),
            "done" => Some(TicketStatus::Done),
            _ => None,
        }
    }
}

/// One priced line of an order; its ticket status is `None` until the order
/// is confirmed (and stays `None` for a rejected order).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderLine {
    /// 1-based position in the order; also the ticket's id within the order.
    pub line: u32,
    pub sku: String,
    pub name: String,
    pub station: Station,
    pub size: String,
    pub modifiers: Vec<String>,
    pub qty: u32,
    pub unit_price: i64,
    pub line_total: i64,
    pub ticket: Option<TicketStatus>,
}

/// Timestamps per transition, epoch milliseconds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timestamps {
    pub placed_at: i64,
    pub confirmed_at: Option<i64>,
    pub rejected_at: Option<i64>,
    pub started_at: Option<i64>,
    pub ready_at: Option<i64>,
    pub picked_up_at: Option<i64>,
    pub cancelled_at: Option<i64>,
    pub expired_at: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Order {
    pub id: OrderId,
    pub store: StoreId,
    pub customer: Option<String>,
    pub status: OrderStatus,
    pub reject_reason: Option<String>,
    pub payment_status: String,
    pub currency: String,
    pub total: i64,
    pub lines: Vec<OrderLine>,
    pub at: Timestamps,
    /// The first name given for the pickup board, if any.
    pub name: Option<String>,
    /// The store's per-day pickup code (`pickup::PickupCode`), assigned at
    /// confirmation; `None` before, and for ever on a rejected order.
    pub pickup_code: Option<String>,
    /// Why staff or the customer cancelled it, if they said.
    pub cancel_reason: Option<String>,
}

/// A state change requested by staff, a customer or the scheduler.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Cancel,
    StartLine(u32),
    FinishLine(u32),
    PickUp,
    Expire,
    /// Take back the line's last step (`started` → `queued`, `done` →
    /// `started`), the order's status following: what the board's "undo"
    /// and "recall" do.
    Undo(u32),
}

impl Action {
    pub fn name(self) -> &'static str {
        match self {
            Action::Cancel => "cancel",
            Action::StartLine(_) => "start",
            Action::FinishLine(_) => "done",
            Action::PickUp => "pickup",
            Action::Expire => "expire",
            Action::Undo(_) => "undo",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransitionError {
    #[error("order {0} not found")]
    OrderNotFound(OrderId),
    #[error("order has no line {0}")]
    LineNotFound(u32),
    #[error("cannot {action} an order that is {from}")]
    InvalidTransition { action: &'static str, from: String },
    #[error(transparent)]
    Backend(#[from] crate::ports::PortError),
}

/// What an `Action` changes. The store writes exactly this.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub status: Option<OrderStatus>,
    pub ticket: Option<(u32, TicketStatus)>,
    /// The status change goes back (an undo): the time the order entered
    /// the status it leaves is cleared (`unstamp`) instead of the new one
    /// being stamped, which was stamped when it was first entered.
    pub reverts: bool,
}

/// Decide what `action` does to `order`, or why it is not allowed.
pub fn plan(order: &Order, action: Action) -> Result<Plan, TransitionError> {
    use OrderStatus::*;
    let invalid = |from: &str| TransitionError::InvalidTransition {
        action: action.name(),
        from: from.to_owned(),
    };
    let ticket_of = |n: u32| -> Result<TicketStatus, TransitionError> {
        let line = order
            .lines
            .iter()
            .find(|l| l.line == n)
            .ok_or(TransitionError::LineNotFound(n))?;
        line.ticket.ok_or_else(|| invalid(order.status.as_str()))
    };
    match action {
        Action::Cancel => match order.status {
            Placed | Confirmed => Ok(Plan {
                status: Some(Cancelled),
                ticket: None,
                reverts: false,
            }),
            s => Err(invalid(s.as_str())),
        },
        Action::StartLine(n) => {
            if !matches!(order.status, Confirmed | InProgress) {
                return Err(invalid(order.status.as_str()));
            }
            match ticket_of(n)? {
                TicketStatus::Queued => Ok(Plan {
                    status: (order.status == Confirmed).then_some(InProgress),
                    ticket: Some((n, TicketStatus::Started)),
                    reverts: false,
                }),
                t => Err(invalid(&format!("line {n} {}", t.as_str()))),
            }
        }
        Action::FinishLine(n) => {
            if order.status != InProgress {
                return Err(invalid(order.status.as_str()));
            }
            match ticket_of(n)? {
                TicketStatus::Started => {
                    let all_done = order
                        .lines
                        .iter()
                        .all(|l| l.line == n || l.ticket == Some(TicketStatus::Done));
                    Ok(Plan {
                        status: all_done.then_some(Ready),
                        ticket: Some((n, TicketStatus::Done)),
                        reverts: false,
                    })
                }
                t => Err(invalid(&format!("line {n} {}", t.as_str()))),
            }
        }
        Action::PickUp => match order.status {
            Ready => Ok(Plan {
                status: Some(PickedUp),
                ticket: None,
                reverts: false,
            }),
            s => Err(invalid(s.as_str())),
        },
        Action::Expire => match order.status {
            Ready => Ok(Plan {
                status: Some(Expired),
                ticket: None,
                reverts: false,
            }),
            s => Err(invalid(s.as_str())),
        },
        Action::Undo(n) => {
            if !matches!(order.status, Confirmed | InProgress | Ready) {
                return Err(invalid(order.status.as_str()));
            }
            // Every line but `n` as it is: what the order's status becomes
            // depends on them.
            let others = || order.lines.iter().filter(|l| l.line != n);
            match ticket_of(n)? {
                TicketStatus::Started => {
                    // Nothing started or done any more: back to confirmed.
                    let untouched = others().all(|l| l.ticket == Some(TicketStatus::Queued));
                    Ok(Plan {
                        status: (order.status == InProgress && untouched).then_some(Confirmed),
                        ticket: Some((n, TicketStatus::Queued)),
                        reverts: true,
                    })
                }
                TicketStatus::Done => Ok(Plan {
                    status: (order.status == Ready).then_some(InProgress),
                    ticket: Some((n, TicketStatus::Started)),
                    reverts: true,
                }),
                TicketStatus::Queued => Err(invalid(&format!("line {n} queued"))),
            }
        }
    }
}

/// Apply a plan to an in-memory order (the store does the same in SQL; this
/// is what tests and read models use).
pub fn apply(order: &mut Order, plan: &Plan, now: i64) {
    if let Some((n, t)) = plan.ticket
        && let Some(l) = order.lines.iter_mut().find(|l| l.line == n)
    {
        l.ticket = Some(t);
    }
    if let Some(s) = plan.status {
        if plan.reverts {
            unstamp(&mut order.at, order.status);
        } else {
            stamp(&mut order.at, s, now);
        }
        order.status = s;
    }
}

/// The column that records when `status` was entered; `None` for
/// `placed`, whose time is set once at intake and never cleared. The one
/// place that maps statuses to timestamps, for `stamp` and `unstamp`.
fn slot(at: &mut Timestamps, status: OrderStatus) -> Option<&mut Option<i64>> {
    Some(match status {
        OrderStatus::Placed => return None,
        OrderStatus::Confirmed => &mut at.confirmed_at,
        OrderStatus::Rejected => &mut at.rejected_at,
        OrderStatus::InProgress => &mut at.started_at,
        OrderStatus::Ready => &mut at.ready_at,
        OrderStatus::PickedUp => &mut at.picked_up_at,
        OrderStatus::Cancelled => &mut at.cancelled_at,
        OrderStatus::Expired => &mut at.expired_at,
    })
}

/// Record when `status` was entered.
pub fn stamp(at: &mut Timestamps, status: OrderStatus, now: i64) {
    match slot(at, status) {
        Some(slot) => *slot = Some(now),
        None => at.placed_at = now,
    }
}

/// Forget when `status` was entered: `stamp`'s inverse, for an undo that
/// leaves it. `placed_at` is never cleared.
pub fn unstamp(at: &mut Timestamps, status: OrderStatus) {
    if let Some(slot) = slot(at, status) {
        *slot = None;
    }
}

/// An order as the client sent it, before validation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderDraft {
    pub store: String,
    pub customer: Option<String>,
    pub lines: Vec<LineDraft>,
    /// A first name for the pickup board. Left out of the serialized form
    /// when absent, so the idempotency fingerprint of a request without one
    /// is what it was before names existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LineDraft {
    pub sku: String,
    pub size: Option<String>,
    pub modifiers: Vec<String>,
    pub qty: i64,
}

/// One reason a draft was refused, naming the offending field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    pub field: String,
    pub code: &'static str,
    pub message: String,
}

impl FieldError {
    fn new(field: impl Into<String>, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            code,
            message: message.into(),
        }
    }
}

/// Why `price` refused a draft.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PricingError {
    /// Fields that are wrong, each named with why.
    Fields(Vec<FieldError>),
    /// Every field is right, but what the lines add up to is no amount an
    /// order can carry (a unit price or total below zero, or beyond
    /// `money::MAX_TOTAL`): said in full, for the client.
    Total(String),
}

impl PricingError {
    /// The field errors (none for a refused total).
    pub fn fields(&self) -> &[FieldError] {
        match self {
            PricingError::Fields(f) => f,
            PricingError::Total(_) => &[],
        }
    }
}

/// Validate `draft` against `menu` and price every line server-side. Prices
/// in the request are never looked at (the request type has none). Prices
/// come from the menu, and so from upstream: every sum is checked
/// (`money::Total`), so whatever a menu holds, pricing refuses rather than
/// wraps or panics.
pub fn price(draft: &OrderDraft, menu: &MenuSnapshot) -> Result<(Vec<OrderLine>, i64), PricingError> {
    let mut errors = Vec::new();
    if draft.lines.is_empty() {
        errors.push(FieldError::new("lines", "required", "an order needs at least one line"));
    }
    if draft.lines.len() > MAX_LINES {
        errors.push(FieldError::new(
            "lines",
            "too_many_lines",
            format!("at most {MAX_LINES} lines per order"),
        ));
        return Err(PricingError::Fields(errors));
    }
    if let Some(c) = &draft.customer
        && !(1..=MAX_CUSTOMER).contains(&c.chars().count())
    {
        errors.push(FieldError::new(
            "customer",
            "invalid",
            format!("customer must be 1 to {MAX_CUSTOMER} characters"),
        ));
    }
    if let Some(n) = &draft.name
        && let Err(why) = crate::pickup::clean_name(n)
    {
        errors.push(FieldError::new("name", "invalid", why));
    }
    let mut lines = Vec::with_capacity(draft.lines.len());
    let mut total = Ok(Total::default());
    // The first amount that cannot be charged, said for the client.
    let mut bad_total: Option<String> = None;
    for (i, d) in draft.lines.iter().enumerate() {
        let f = |name: &str| format!("lines[{i}].{name}");
        if !(1..=MAX_QTY).contains(&d.qty) {
            errors.push(FieldError::new(
                f("qty"),
                "out_of_range",
                format!("qty must be 1 to {MAX_QTY}"),
            ));
        }
        let Some(item) = menu.item(&d.sku) else {
            errors.push(FieldError::new(
                f("sku"),
                "unknown_sku",
                format!("no item '{}' on this menu", d.sku),
            ));
            continue;
        };
        if !item.available {
            errors.push(FieldError::new(
                f("sku"),
                "unavailable",
                format!("'{}' is not available right now", d.sku),
            ));
        }
        let size = match &d.size {
            Some(code) => item.size(code),
            None if item.sizes.len() == 1 => item.sizes.first(),
            None => None,
        };
        let Some(size) = size else {
            let (code, msg) = match &d.size {
                Some(s) => ("unknown_size", format!("'{}' has no size '{s}'", d.sku)),
                None => ("required", format!("'{}' comes in several sizes; choose one", d.sku)),
            };
            errors.push(FieldError::new(f("size"), code, msg));
            continue;
        };
        if d.modifiers.len() > MAX_MODIFIERS {
            errors.push(FieldError::new(
                f("modifiers"),
                "too_many_modifiers",
                format!("at most {MAX_MODIFIERS} modifiers per line"),
            ));
            continue;
        }
        let mut unit = Ok(Total::of(size.price));
        let mut ok = true;
        for (j, code) in d.modifiers.iter().enumerate() {
            match item.modifier(code) {
                Some(m) => unit = unit.and_then(|u| u.plus(m.price_delta)),
                None => {
                    ok = false;
                    errors.push(FieldError::new(
                        format!("lines[{i}].modifiers[{j}]"),
                        "unknown_modifier",
                        format!("'{}' has no modifier '{code}'", d.sku),
                    ));
                }
            }
        }
        if !ok || !(1..=MAX_QTY).contains(&d.qty) {
            continue;
        }
        let qty = d.qty as u32;
        let amounts = unit
            .and_then(Total::amount)
            .map_err(|e| ("unit price", e))
            .and_then(|unit_price| {
                let line_total = Total::of(unit_price)
                    .times(d.qty)
                    .and_then(Total::amount)
                    .map_err(|e| ("line total", e))?;
                Ok((unit_price, line_total))
            });
        let (unit, line_total) = match amounts {
            Ok(a) => a,
            Err((what, e)) => {
                bad_total.get_or_insert_with(|| format!("the {what} of lines[{i}] ('{}') {e}", d.sku));
                continue;
            }
        };
        total = total.and_then(|t| t.plus(line_total));
        lines.push(OrderLine {
            line: (i + 1) as u32,
            sku: item.sku.clone(),
            name: item.name.clone(),
            station: item.station,
            size: size.code.clone(),
            modifiers: d.modifiers.clone(),
            qty,
            unit_price: unit,
            line_total,
            ticket: None,
        });
    }
    if !errors.is_empty() {
        return Err(PricingError::Fields(errors));
    }
    if let Some(why) = bad_total {
        return Err(PricingError::Total(why));
    }
    total
        .and_then(Total::amount)
        .map(|total| (lines, total))
        .map_err(|e| PricingError::Total(format!("the order's total {e}")))
}

/// Decide a placed order at processing time: every line's item must still
/// exist and be available (it may have been 86'd since intake). Prices are
/// kept as quoted at intake, so the total a customer saw never changes.
pub fn decide(placed: &crate::events::OrderPlacedV1, menu: Option<&MenuSnapshot>) -> crate::ports::Decision {
    use crate::ports::Decision;
    let Some(menu) = menu else {
        return Decision::Reject(format!("store '{}' no longer exists", placed.store));
    };
    for l in &placed.lines {
        match menu.item(&l.sku) {
            None => return Decision::Reject(format!("'{}' is no longer on the menu", l.sku)),
            Some(item) if !item.available => return Decision::Reject(format!("'{}' is sold out", l.name)),
            Some(_) => {}
        }
    }
    Decision::Confirm
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::menu::{MenuSnapshot, demo_menu};
    use proptest::prelude::*;

    fn draft(lines: Vec<LineDraft>) -> OrderDraft {
        OrderDraft {
            store: "demo-downtown".into(),
            customer: None,
            lines,
            name: None,
        }
    }

    fn line(sku: &str, size: Option<&str>, mods: &[&str], qty: i64) -> LineDraft {
        LineDraft {
            sku: sku.into(),
            size: size.map(Into::into),
            modifiers: mods.iter().map(|m| (*m).into()).collect(),
            qty,
        }
    }

    #[test]
    fn prices_come_from_the_menu() {
        let menu = MenuSnapshot::new(demo_menu());
        let (lines, total) = price(
            &draft(vec![
                line("latte", Some("large"), &["oat-milk"], 2),
                line("croissant", None, &[], 1),
            ]),
            &menu,
        )
        .unwrap();
        // latte 420 + large 90 + oat 60 = 570, x2 = 1140; croissant 320
        assert_eq!(lines[0].unit_price, 570);
        assert_eq!(lines[0].line_total, 1140);
        assert_eq!(lines[1].station, Station::Kitchen);
        assert_eq!(total, 1460);
    }

    #[test]
    fn bad_lines_name_their_field() {
        let menu = MenuSnapshot::new(demo_menu());
        let errs = price(
            &draft(vec![
                line("nope", None, &[], 1),
                line("latte", Some("huge"), &[], 1),
                line("latte", Some("small"), &["gold-flakes"], 1),
                line("latte", Some("small"), &[], 21),
                line("latte", None, &[], 1),
            ]),
            &menu,
        )
        .unwrap_err();
        let fields: Vec<_> = errs.fields().iter().map(|e| (e.field.as_str(), e.code)).collect();
        assert_eq!(
            fields,
            vec![
                ("lines[0].sku", "unknown_sku"),
                ("lines[1].size", "unknown_size"),
                ("lines[2].modifiers[0]", "unknown_modifier"),
                ("lines[3].qty", "out_of_range"),
                ("lines[4].size", "required"),
            ]
        );
        let too_many = draft((0..51).map(|_| line("espresso", Some("small"), &[], 1)).collect());
        assert_eq!(price(&too_many, &menu).unwrap_err().fields()[0].code, "too_many_lines");
        assert_eq!(price(&draft(vec![]), &menu).unwrap_err().fields()[0].code, "required");
    }

    /// A menu of one item, `x`, in one size at `price` with a modifier
    /// `m{i}` per delta: what a bad upstream record could make of a menu.
    fn menu_pricing(price: i64, deltas: &[i64]) -> MenuSnapshot {
        let mut m = demo_menu();
        let mut item = m.items[0].clone();
        item.sku = "x".into();
        item.sizes.truncate(1);
        item.sizes[0].price = price;
        item.modifiers = deltas
            .iter()
            .enumerate()
            .map(|(i, d)| crate::menu::Modifier {
                code: format!("m{i}"),
                name: format!("m{i}"),
                price_delta: *d,
            })
            .collect();
        m.items = vec![item];
        MenuSnapshot::new(m)
    }

    fn total_error(r: Result<(Vec<OrderLine>, i64), PricingError>) -> String {
        match r {
            Err(PricingError::Total(why)) => why,
            other => panic!("a refused total, not {other:?}"),
        }
    }

    #[test]
    fn totals_that_would_go_negative_or_overflow_are_refused() {
        // A discount bigger than the price.
        let menu = menu_pricing(100, &[-150]);
        let why = total_error(price(&draft(vec![line("x", None, &["m0"], 1)]), &menu));
        assert_eq!(why, "the unit price of lines[0] ('x') would be negative");
        // Prices that wrap an i64 when multiplied or added up.
        let menu = menu_pricing(i64::MAX / 2, &[i64::MAX]);
        let why = total_error(price(&draft(vec![line("x", None, &["m0"], 1)]), &menu));
        assert!(why.contains("unit price") && why.contains("exceed"), "{why}");
        let menu = menu_pricing(crate::money::MAX_TOTAL / 3, &[]);
        let why = total_error(price(&draft(vec![line("x", None, &[], 4)]), &menu));
        assert!(why.starts_with("the line total of lines[0]"), "{why}");
        let lines = (0..4).map(|_| line("x", None, &[], 1)).collect();
        let why = total_error(price(&draft(lines), &menu));
        assert!(why.starts_with("the order's total would exceed"), "{why}");
        // Field errors come first: they are what the client can fix.
        let errs = price(&draft(vec![line("x", None, &[], 4), line("nope", None, &[], 1)]), &menu).unwrap_err();
        assert_eq!(errs.fields()[0].code, "unknown_sku");
        // A discount that leaves a non-negative price is fine.
        let menu = menu_pricing(100, &[-100]);
        assert_eq!(price(&draft(vec![line("x", None, &["m0"], 2)]), &menu).unwrap().1, 0);
    }

    fn order_with(stations: &[Station]) -> Order {
        Order {
            id: OrderId::new(),
            store: StoreId("s".into()),
            customer: None,
            status: OrderStatus::Confirmed,
            reject_reason: None,
            payment_status: "unpaid".into(),
            currency: "USD".into(),
            total: 0,
            lines: stations
                .iter()
                .enumerate()
                .map(|(i, s)| OrderLine {
                    line: i as u32 + 1,
                    sku: "x".into(),
                    name: "x".into(),
                    station: *s,
                    size: "small".into(),
                    modifiers: vec![],
                    qty: 1,
                    unit_price: 1,
                    line_total: 1,
                    ticket: Some(TicketStatus::Queued),
                })
                .collect(),
            at: Timestamps::default(),
            name: None,
            pickup_code: None,
            cancel_reason: None,
        }
    }

    #[test]
    fn happy_path_reaches_picked_up() {
        let mut o = order_with(&[Station::Barista, Station::Barista]);
        for a in [
            Action::StartLine(1),
            Action::StartLine(2),
            Action::FinishLine(2),
            Action::FinishLine(1),
            Action::PickUp,
        ] {
            let p = plan(&o, a).unwrap();
            apply(&mut o, &p, 1);
        }
        assert_eq!(o.status, OrderStatus::PickedUp);
    }

    #[test]
    fn illegal_transitions_are_refused() {
        let o = order_with(&[Station::Barista]);
        assert!(matches!(
            plan(&o, Action::PickUp),
            Err(TransitionError::InvalidTransition { .. })
        ));
        assert!(matches!(
            plan(&o, Action::FinishLine(1)),
            Err(TransitionError::InvalidTransition { .. })
        ));
        assert_eq!(plan(&o, Action::StartLine(9)), Err(TransitionError::LineNotFound(9)));
        let mut c = o.clone();
        apply(&mut c, &plan(&o, Action::Cancel).unwrap(), 1);
        assert!(plan(&c, Action::Cancel).is_err());
        assert!(plan(&c, Action::StartLine(1)).is_err());
    }

    fn action() -> impl Strategy<Value = Action> {
        prop_oneof![
            Just(Action::Cancel),
            (1u32..5).prop_map(Action::StartLine),
            (1u32..5).prop_map(Action::FinishLine),
            Just(Action::PickUp),
            Just(Action::Expire),
            (1u32..5).prop_map(Action::Undo),
        ]
    }

    proptest! {
        /// Whatever a menu holds (any `i64` price and deltas, as a corrupt
        /// upstream record could) and whatever a client orders, pricing
        /// never panics, and what it accepts is exact and chargeable: each
        /// line is its unit price times its quantity, the total their sum,
        /// all of them within `0..=MAX_TOTAL`.
        #[test]
        fn pricing_never_panics_and_never_yields_a_negative_or_overflowing_total(
            size_price in prop_oneof![any::<i64>(), -1_000i64..1_000_000],
            deltas in proptest::collection::vec(prop_oneof![any::<i64>(), -1_000i64..1_000], 0..4),
            picks in proptest::collection::vec((proptest::collection::vec(0usize..4, 0..4), 1i64..=MAX_QTY), 1..=MAX_LINES),
        ) {
            let menu = menu_pricing(size_price, &deltas);
            let lines = picks
                .iter()
                .map(|(mods, qty)| {
                    let codes: Vec<String> = mods.iter().filter(|m| **m < deltas.len()).map(|m| format!("m{m}")).collect();
                    let codes: Vec<&str> = codes.iter().map(String::as_str).collect();
                    line("x", None, &codes, *qty)
                })
                .collect();
            match price(&draft(lines), &menu) {
                Ok((lines, total)) => {
                    prop_assert!((0..=crate::money::MAX_TOTAL).contains(&total));
                    let mut sum: i128 = 0;
                    for l in &lines {
                        prop_assert!(l.unit_price >= 0 && l.line_total >= 0);
                        prop_assert_eq!(i128::from(l.unit_price) * i128::from(l.qty), i128::from(l.line_total));
                        sum += i128::from(l.line_total);
                    }
                    prop_assert_eq!(sum, i128::from(total));
                }
                Err(PricingError::Total(why)) => prop_assert!(!why.is_empty()),
                Err(PricingError::Fields(f)) => prop_assert!(false, "every field is valid: {f:?}"),
            }
        }

        /// Whatever staff click, in whatever order, the order never reaches
        /// a state that contradicts its tickets, and terminal states stick.
        #[test]
        fn lifecycle_invariants_hold(n in 1usize..5, actions in proptest::collection::vec(action(), 0..40)) {
            let mut o = order_with(&vec![Station::Barista; n]);
            for a in actions {
                let before = o.clone();
                match plan(&o, a) {
                    Ok(p) => {
                        prop_assert!(!before.status.is_terminal(), "{a:?} moved a terminal order");
                        apply(&mut o, &p, 1);
                    }
                    Err(_) => prop_assert_eq!(&o, &before),
                }
                let done = o.lines.iter().all(|l| l.ticket == Some(TicketStatus::Done));
                let untouched = o.lines.iter().all(|l| l.ticket == Some(TicketStatus::Queued));
                match o.status {
                    OrderStatus::Ready | OrderStatus::PickedUp | OrderStatus::Expired => prop_assert!(done),
                    OrderStatus::Confirmed => prop_assert!(untouched),
                    OrderStatus::InProgress => prop_assert!(!done && !untouched),
                    OrderStatus::Cancelled => prop_assert!(untouched),
                    _ => {}
                }
                // The timestamps agree with the status, undos included:
                // started iff something was started, ready iff all done.
                let started = !matches!(o.status, OrderStatus::Confirmed | OrderStatus::Cancelled);
                prop_assert_eq!(o.at.started_at.is_some(), started);
                let finished = matches!(o.status, OrderStatus::Ready | OrderStatus::PickedUp | OrderStatus::Expired);
                prop_assert_eq!(o.at.ready_at.is_some(), finished);
            }
        }

        /// An undo right after a start or a finish gives back exactly the
        /// order before it, timestamps included, whatever came before.
        #[test]
        fn undo_takes_back_a_step_exactly(n in 1usize..5, actions in proptest::collection::vec(action(), 0..40), line in 1u32..5, finish in any::<bool>()) {
            let mut o = order_with(&vec![Station::Barista; n]);
            for (i, a) in actions.into_iter().enumerate() {
                if let Ok(p) = plan(&o, a) {
                    apply(&mut o, &p, 10 + i as i64);
                }
            }
            let step = if finish { Action::FinishLine(line) } else { Action::StartLine(line) };
            if let Ok(p) = plan(&o, step) {
                let before = o.clone();
                apply(&mut o, &p, 1_000);
                let undo = plan(&o, Action::Undo(line)).expect("a step just taken can be undone");
                apply(&mut o, &undo, 2_000);
                prop_assert_eq!(o, before);
            }
        }
    }

    #[test]
    fn undo_goes_back_one_step_and_stops_at_the_counter() {
        let mut o = order_with(&[Station::Barista, Station::Kitchen]);
        let step = |o: &mut Order, a| {
            let p = plan(o, a).unwrap();
            apply(o, &p, 7);
        };
        assert!(matches!(
            plan(&o, Action::Undo(1)),
            Err(TransitionError::InvalidTransition { .. })
        ));
        step(&mut o, Action::StartLine(1));
        step(&mut o, Action::StartLine(2));
        step(&mut o, Action::FinishLine(1));
        step(&mut o, Action::FinishLine(2));
        assert_eq!(o.status, OrderStatus::Ready);
        // Recall: ready → in progress, the line back to started.
        step(&mut o, Action::Undo(2));
        assert_eq!(
            (o.status, o.lines[1].ticket, o.at.ready_at),
            (OrderStatus::InProgress, Some(TicketStatus::Started), None)
        );
        step(&mut o, Action::Undo(2));
        // Line 1 is still done: the order stays in progress.
        assert_eq!(
            (o.status, o.lines[1].ticket),
            (OrderStatus::InProgress, Some(TicketStatus::Queued))
        );
        step(&mut o, Action::Undo(1));
        step(&mut o, Action::Undo(1));
        assert_eq!((o.status, o.at.started_at), (OrderStatus::Confirmed, None));
        assert_eq!(plan(&o, Action::Undo(9)), Err(TransitionError::LineNotFound(9)));
        // Once picked up, nothing is taken back.
        for a in [
            Action::StartLine(1),
            Action::StartLine(2),
            Action::FinishLine(1),
            Action::FinishLine(2),
            Action::PickUp,
        ] {
            step(&mut o, a);
        }
        assert!(matches!(
            plan(&o, Action::Undo(1)),
            Err(TransitionError::InvalidTransition { .. })
        ));
    }

    #[test]
    fn names_are_validated_at_pricing() {
        let menu = MenuSnapshot::new(demo_menu());
        let mut d = draft(vec![line("croissant", None, &[], 1)]);
        d.name = Some("  ".into());
        assert_eq!(price(&d, &menu).unwrap_err().fields()[0].field, "name");
        d.name = Some(" Ada ".into());
        assert!(price(&d, &menu).is_ok());
    }

    #[test]
    fn decide_rejects_what_was_86d_since_intake() {
        use crate::ports::Decision;
        let menu = MenuSnapshot::new(demo_menu());
        let (lines, total) = price(&draft(vec![line("croissant", None, &[], 1)]), &menu).unwrap();
        let placed = crate::events::OrderPlacedV1 {
            order_id: OrderId::new(),
            store: StoreId("demo-downtown".into()),
            customer: None,
            currency: "USD".into(),
            total,
            lines: lines.iter().map(crate::events::PlacedLineV1::from).collect(),
            placed_at: 0,
            name: None,
        };
        assert_eq!(decide(&placed, Some(&menu)), Decision::Confirm);
        let mut m = demo_menu();
        m.items.iter_mut().find(|i| i.sku == "croissant").unwrap().available = false;
        assert!(matches!(decide(&placed, Some(&MenuSnapshot::new(m))), Decision::Reject(r) if r.contains("sold out")));
        assert!(matches!(decide(&placed, None), Decision::Reject(_)));
    }
}
