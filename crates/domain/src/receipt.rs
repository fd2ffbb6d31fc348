//! The receipt e-mailed when an order is picked up (PRODUCT §5): what was
//! ordered, what it cost, where and when.
//!
//! Rendering is a pure function of the order, so it is unit-tested here;
//! [`send_receipt`], the use-case behind the `mail.receipt` job, fetches
//! the order and the address and hands the rendered message to a `Mailer`.
//! The template lives in `domain` rather than in the `mail` adapter crate
//! so that the use-case needs nothing but ports (a template port was the
//! rejected alternative: one implementation, and it does no IO). The
//! plain-text part is the real receipt (aligned columns, readable in any
//! client); the HTML part is the same content in a table, with every value
//! escaped.

use crate::ids::OrderId;
use crate::order::{Order, OrderStatus};
use crate::ports::{Email, Mailer, PortResult, Store};
use chrono::{DateTime, Utc};
use std::fmt::Write;

/// E-mail the receipt of a picked-up order to its customer: the customer
/// field itself when it is an address, else the e-mail of the loyalty
/// account it names. No address (or an order not picked up), no receipt:
/// `Ok(false)`.
pub async fn send_receipt(store: &dyn Store, mailer: &dyn Mailer, order: OrderId) -> PortResult<bool> {
    let Some(order) = store.get_order(order).await? else {
        return Ok(false);
    };
    if order.status != OrderStatus::PickedUp {
        return Ok(false);
    }
    let to = match order.customer.as_deref() {
        Some(c) if c.contains('@') => Some(c.to_owned()),
        Some(c) => store.loyalty_account(c).await?.and_then(|a| a.email),
        None => None,
    };
    let Some(to) = to else { return Ok(false) };
    let store_name = store
        .list_stores()
        .await?
        .into_iter()
        .find(|s| s.id == order.store)
        .map_or_else(|| order.store.to_string(), |s| s.name);
    mailer.send(&render(&order, &store_name, &to)).await?;
    Ok(true)
}

/// The receipt for `order`, bought at `store_name`, addressed to `to`.
pub fn render(order: &Order, store_name: &str, to: &str) -> Email {
    let rows: Vec<(String, String)> = order
        .lines
        .iter()
        .map(|l| (line_label(l), format_money(l.line_total, &order.currency)))
        .collect();
    let total = format_money(order.total, &order.currency);
    let mut facts = vec![("Order", order.id.to_string()), ("Store", store_name.to_owned())];
    facts.push(("Placed", format_time(order.at.placed_at)));
    if let Some(at) = order.at.picked_up_at {
        facts.push(("Picked up", format_time(at)));
    }

    Email {
        to: to.to_owned(),
        subject: format!("Your receipt from {store_name} (order {})", short_id(order)),
        text: text(store_name, &facts, &rows, &total),
        html: Some(html(store_name, &facts, &rows, &total)),
    }
}

fn text(store_name: &str, facts: &[(&str, String)], rows: &[(String, String)], total: &str) -> String {
    let mut out = format!("Thank you for your order at {store_name}!\n\n");
    let key_width = facts.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    for (k, v) in facts {
        // Writing to a String cannot fail.
        let _ = writeln!(out, "{k:<key_width$}  {v}");
    }
    out.push('\n');
    let label_width = rows.iter().map(|(l, _)| width(l)).max().unwrap_or(0).max("Total".len());
    let amount_width = rows
        .iter()
        .map(|(_, a)| width(a))
        .chain([width(total)])
        .max()
        .unwrap_or(0);
    for (label, amount) in rows {
        let _ = writeln!(
            out,
            "{}  {}",
            pad_right(label, label_width),
            pad_left(amount, amount_width)
        );
    }
    let _ = writeln!(out, "{}", "-".repeat(label_width + 2 + amount_width));
    let _ = writeln!(
        out,
        "{}  {}",
        pad_right("Total", label_width),
        pad_left(total, amount_width)
    );
    out
}

fn html(store_name: &str, facts: &[(&str, String)], rows: &[(String, String)], total: &str) -> String {
    let mut out = String::from("<!DOCTYPE html>\n<html><body style=\"font-family: sans-serif\">\n");
    let _ = writeln!(out, "<p>Thank you for your order at {}!</p>", escape(store_name));
    out.push_str("<table>\n");
    for (k, v) in facts {
        let _ = writeln!(
            out,
            "<tr><th align=\"left\">{}</th><td>{}</td></tr>",
            escape(k),
            escape(v)
        );
    }
    out.push_str("</table>\n<table>\n");
    for (label, amount) in rows {
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td align=\"right\">{}</td></tr>",
            escape(label),
            escape(amount)
        );
    }
    let _ = writeln!(
        out,
        "<tr><th align=\"left\">Total</th><th align=\"right\">{}</th></tr>",
        escape(total)
    );
    out.push_str("</table>\n</body></html>\n");
    out
}

/// `2 × Latte (large, oat-milk)`.
fn line_label(l: &crate::order::OrderLine) -> String {
    let mut details = vec![l.size.as_str()];
    details.extend(l.modifiers.iter().map(String::as_str));
    format!("{} × {} ({})", l.qty, l.name, details.join(", "))
}

/// The last 8 hex digits of the id: the leading ones of a UUIDv7 are its
/// timestamp, shared by every order of the same minute.
fn short_id(order: &Order) -> String {
    let s = order.id.0.simple().to_string();
    s[s.len().saturating_sub(8)..].to_owned()
}

/// `2025-03-14 08:05 UTC`.
fn format_time(epoch_ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(epoch_ms)
        .map_or_else(|| epoch_ms.to_string(), |t| t.format("%Y-%m-%d %H:%M UTC").to_string())
}

/// An amount in minor units as people read it: `$11.40`, `€3.20`, `¥500`,
/// `12.500 KWD`. The number of decimals is the currency's ISO 4217 minor
/// unit (2 unless listed below); a currency without a well-known symbol is
/// written with its code after the number.
pub fn format_money(amount: i64, currency: &str) -> String {
    let code = currency.trim().to_ascii_uppercase();
    let decimals: u32 = match code.as_str() {
        "BIF" | "CLP" | "DJF" | "GNF" | "ISK" | "JPY" | "KMF" | "KRW" | "PYG" | "RWF" | "UGX" | "UYI" | "VND"
        | "VUV" | "XAF" | "XOF" | "XPF" => 0,
        "BHD" | "IQD" | "JOD" | "KWD" | "LYD" | "OMR" | "TND" => 3,
        _ => 2,
    };
    let sign = if amount < 0 { "-" } else { "" };
    let abs = amount.unsigned_abs();
    let scale = 10u64.pow(decimals);
    let number = if decimals == 0 {
        abs.to_string()
    } else {
        format!("{}.{:0width$}", abs / scale, abs % scale, width = decimals as usize)
    };
    let symbol = match code.as_str() {
        "USD" => Some("$"),
        "EUR" => Some("€"),
        "GBP" => Some("£"),
        "JPY" => Some("¥"),
        _ => None,
    };
    match symbol {
        Some(s) => format!("{sign}{s}{number}"),
        None => format!("{sign}{number} {code}"),
    }
}

fn width(s: &str) -> usize {
    s.chars().count()
}

fn pad_right(s: &str, w: usize) -> String {
    format!("{s}{}", " ".repeat(w.saturating_sub(width(s))))
}

fn pad_left(s: &str, w: usize) -> String {
    format!("{}{s}", " ".repeat(w.saturating_sub(width(s))))
}

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::StoreId;
    use crate::menu::Station;
    use crate::order::{OrderLine, Timestamps};

    fn line(n: u32, name: &str, size: &str, mods: &[&str], qty: u32, unit: i64) -> OrderLine {
        OrderLine {
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
        }
    }

    fn order() -> Order {
        let lines = vec![
            line(1, "Latte", "large", &["oat-milk"], 2, 570),
            line(2, "Croissant", "regular", &[], 1, 320),
        ];
        Order {
            id: OrderId::parse("0190f0d2-5b1c-7cc3-a1b2-00000000abcd").unwrap(),
            store: StoreId::parse("demo-downtown").unwrap(),
            customer: Some("ada".into()),
            status: OrderStatus::PickedUp,
            reject_reason: None,
            payment_status: "paid".into(),
            currency: "USD".into(),
            total: lines.iter().map(|l| l.line_total).sum(),
            lines,
            at: Timestamps {
                // 2024-07-01 08:00:00 UTC and 08:07:30 UTC.
                placed_at: 1_719_820_800_000,
                picked_up_at: Some(1_719_821_250_000),
                ..Timestamps::default()
            },
            name: None,
            pickup_code: None,
            cancel_reason: None,
        }
    }

    #[test]
    fn the_text_receipt_lists_lines_total_and_times() {
        let email = render(&order(), "Demo Downtown", "ada@example.com");
        assert_eq!(email.to, "ada@example.com");
        assert_eq!(email.subject, "Your receipt from Demo Downtown (order 0000abcd)");
        let expected = "\
Thank you for your order at Demo Downtown!

Order      0190f0d2-5b1c-7cc3-a1b2-00000000abcd
Store      Demo Downtown
Placed     2024-07-01 08:00 UTC
Picked up  2024-07-01 08:07 UTC

2 × Latte (large, oat-milk)  $11.40
1 × Croissant (regular)       $3.20
-----------------------------------
Total                        $14.60
";
        assert_eq!(email.text, expected);
    }

    #[test]
    fn the_html_receipt_has_the_same_content_escaped() {
        let mut o = order();
        o.lines[1].name = "Pain <au> chocolat & co".into();
        let html = render(&o, "Tom's", "ada@example.com").html.unwrap();
        assert!(html.contains("Pain &lt;au&gt; chocolat &amp; co"), "{html}");
        assert!(html.contains("Tom&#39;s"), "{html}");
        assert!(!html.contains("<au>"));
        assert!(html.contains("$14.60"));
        assert!(html.contains("2024-07-01 08:07 UTC"));
    }

    #[test]
    fn an_order_not_yet_picked_up_has_no_pickup_line() {
        let mut o = order();
        o.at.picked_up_at = None;
        let email = render(&o, "Demo Downtown", "ada@example.com");
        assert!(!email.text.contains("Picked up"));
        assert!(email.text.contains("Placed  2024-07-01 08:00 UTC"), "{}", email.text);
    }

    #[test]
    fn money_uses_the_currency_minor_unit() {
        assert_eq!(format_money(1140, "USD"), "$11.40");
        assert_eq!(format_money(5, "eur"), "€0.05");
        assert_eq!(format_money(-250, "GBP"), "-£2.50");
        assert_eq!(format_money(500, "JPY"), "¥500");
        assert_eq!(format_money(12_500, "KWD"), "12.500 KWD");
        assert_eq!(format_money(1999, "CHF"), "19.99 CHF");
        assert_eq!(format_money(0, "USD"), "$0.00");
    }
}
