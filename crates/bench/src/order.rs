//! Random but valid order bodies, built from the menu the server under test
//! actually serves.
//!
//! The menu is fetched once at the start of a run rather than hard-coded, so
//! the generator keeps working when the seeded menu changes and never sends
//! an unknown sku (a 422 would measure validation, not intake). Bodies are
//! rendered into a pool up front: on the hot path a request only clones a
//! `Bytes` handle instead of serializing JSON.

use anyhow::{Context, bail};
use bytes::Bytes;
use rand::Rng;
use rand::seq::{IndexedRandom, index};
use serde::{Deserialize, Serialize};

/// How many distinct bodies a run cycles through. Enough variety that the
/// server does not see one repeated order, small enough to render instantly.
pub const BODY_POOL: usize = 256;
const MAX_LINES: usize = 3;
const MAX_MODIFIERS: usize = 2;
const MAX_QTY: u32 = 2;

#[derive(Deserialize)]
struct MenuDoc {
    categories: Vec<CategoryDoc>,
}

#[derive(Deserialize)]
struct CategoryDoc {
    #[serde(default)]
    items: Vec<ItemDoc>,
}

#[derive(Deserialize)]
struct ItemDoc {
    sku: String,
    #[serde(default)]
    sizes: Vec<CodeDoc>,
    #[serde(default)]
    modifiers: Vec<CodeDoc>,
    #[serde(default = "yes")]
    available: bool,
}

#[derive(Deserialize)]
struct CodeDoc {
    code: String,
}

fn yes() -> bool {
    true
}

/// The orderable part of a menu: available items that have at least one size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderMenu {
    pub store: String,
    pub items: Vec<OrderItem>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderItem {
    pub sku: String,
    pub sizes: Vec<String>,
    pub modifiers: Vec<String>,
}

#[derive(Serialize)]
struct OrderBody<'a> {
    store: &'a str,
    lines: Vec<LineBody<'a>>,
}

#[derive(Serialize)]
struct LineBody<'a> {
    sku: &'a str,
    size: &'a str,
    modifiers: Vec<&'a str>,
    qty: u32,
}

impl OrderMenu {
    /// Parse a `GET /v1/stores/{store}/menu` body. Items the store has 86'd
    /// are dropped: ordering them is a 422 by design.
    pub fn from_json(store: &str, json: &[u8]) -> anyhow::Result<Self> {
        let doc: MenuDoc = serde_json::from_slice(json).context("menu body is not the expected JSON")?;
        let items: Vec<OrderItem> = doc
            .categories
            .into_iter()
            .flat_map(|c| c.items)
            .filter(|i| i.available && !i.sizes.is_empty())
            .map(|i| OrderItem {
                sku: i.sku,
                sizes: i.sizes.into_iter().map(|s| s.code).collect(),
                modifiers: i.modifiers.into_iter().map(|m| m.code).collect(),
            })
            .collect();
        if items.is_empty() {
            bail!("the menu of '{store}' has no available item to order");
        }
        Ok(Self {
            store: store.to_owned(),
            items,
        })
    }

    /// One random valid order: 1–3 lines, each an available item in one of
    /// its sizes with up to two distinct modifiers and a quantity of 1–2.
    pub fn random_body<R: Rng + ?Sized>(&self, rng: &mut R) -> Vec<u8> {
        let lines = (0..rng.random_range(1..=MAX_LINES))
            .map(|_| {
                let item = self.items.choose(rng).expect("menu has items");
                let n_mods = rng.random_range(0..=MAX_MODIFIERS.min(item.modifiers.len()));
                LineBody {
                    sku: &item.sku,
                    size: item.sizes.choose(rng).expect("item has sizes"),
                    // Sampled without replacement: a repeated modifier is not
                    // what a till sends and may be refused some day.
                    modifiers: index::sample(rng, item.modifiers.len(), n_mods)
                        .into_iter()
                        .map(|i| item.modifiers[i].as_str())
                        .collect(),
                    qty: rng.random_range(1..=MAX_QTY),
                }
            })
            .collect();
        serde_json::to_vec(&OrderBody {
            store: &self.store,
            lines,
        })
        .expect("order body serializes")
    }

    /// `n` pre-rendered bodies for the hot path.
    pub fn body_pool<R: Rng + ?Sized>(&self, rng: &mut R, n: usize) -> Vec<Bytes> {
        (0..n).map(|_| Bytes::from(self.random_body(rng))).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::SmallRng;
    use serde_json::{Value, json};

    fn menu_json() -> Value {
        json!({
            "store": {"id": "demo-downtown"},
            "categories": [
                {"code": "coffee", "name": "Coffee", "items": [
                    {"sku": "latte", "name": "Latte", "station": "barista",
                     "sizes": [{"code": "small", "price": 420}, {"code": "medium", "price": 470}],
                     "modifiers": [{"code": "oat-milk", "price_delta": 60}, {"code": "vanilla", "price_delta": 50},
                                   {"code": "decaf", "price_delta": 0}],
                     "available": true},
                    {"sku": "mocha", "sizes": [{"code": "small", "price": 480}], "modifiers": [], "available": false}
                ]},
                {"code": "bakery", "items": [
                    {"sku": "croissant", "sizes": [{"code": "regular", "price": 320}],
                     "modifiers": [{"code": "warmed", "price_delta": 0}], "available": true}
                ]},
                {"code": "empty"}
            ]
        })
    }

    #[test]
    fn parses_only_orderable_items() {
        let menu = OrderMenu::from_json("demo-downtown", menu_json().to_string().as_bytes()).unwrap();
        let skus: Vec<&str> = menu.items.iter().map(|i| i.sku.as_str()).collect();
        assert_eq!(skus, ["latte", "croissant"], "86'd mocha is never ordered");
        assert_eq!(menu.items[0].sizes, ["small", "medium"]);
        assert!(OrderMenu::from_json("s", br#"{"categories":[]}"#).is_err());
        assert!(OrderMenu::from_json("s", b"<html>").is_err());
    }

    #[test]
    fn random_orders_only_use_what_the_menu_offers() {
        let doc = menu_json();
        let menu = OrderMenu::from_json("demo-downtown", doc.to_string().as_bytes()).unwrap();
        let mut rng = SmallRng::seed_from_u64(7);
        for body in menu.body_pool(&mut rng, 500) {
            let order: Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(order["store"], "demo-downtown");
            let lines = order["lines"].as_array().unwrap();
            assert!((1..=MAX_LINES).contains(&lines.len()));
            for line in lines {
                let item = menu
                    .items
                    .iter()
                    .find(|i| i.sku == line["sku"])
                    .expect("known, available sku");
                assert!(item.sizes.iter().any(|s| *s == line["size"]));
                let mods: Vec<&str> = line["modifiers"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|m| m.as_str().unwrap())
                    .collect();
                assert!(mods.len() <= MAX_MODIFIERS);
                assert!(mods.iter().all(|m| item.modifiers.iter().any(|x| x == m)));
                let mut unique = mods.clone();
                unique.sort_unstable();
                unique.dedup();
                assert_eq!(unique.len(), mods.len(), "no repeated modifier");
                let qty = line["qty"].as_u64().unwrap();
                assert!((1..=u64::from(MAX_QTY)).contains(&qty));
            }
        }
    }
}
