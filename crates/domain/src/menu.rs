//! Stores and their menus: categories, items with sizes and modifiers, the
//! station that makes each item, and per-store availability ("86" an item).
//!
//! `MenuSnapshot` is the immutable, pre-indexed and pre-rendered form that
//! caches hold: intake looks items up by sku in O(1) and the menu endpoint
//! returns the already-serialized JSON body with its ETag, so a cached read
//! does no serialization at all. The body's compressed forms (gzip, brotli)
//! are memoised on the snapshot too, made at most once each by the server
//! that first serves them (`MenuSnapshot::encoded`), so they live and die
//! with the snapshot in every cache.

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::OnceLock;

use crate::ids::StoreId;

/// Where a line is made. Drinks go to the barista, food to the kitchen, and
/// a drink-only order never waits on the kitchen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Station {
    Barista,
    Kitchen,
}

impl Station {
    pub fn as_str(self) -> &'static str {
        match self {
            Station::Barista => "barista",
            Station::Kitchen => "kitchen",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "barista" => Some(Station::Barista),
            "kitchen" => Some(Station::Kitchen),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreInfo {
    pub id: StoreId,
    pub name: String,
    pub time_zone: String,
    pub currency: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Category {
    pub code: String,
    pub name: String,
    pub position: i32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Size {
    pub code: String,
    pub name: String,
    /// Price of one item in this size, minor units, `0..=money::MAX_PRICE`.
    pub price: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Modifier {
    pub code: String,
    pub name: String,
    /// Added to the unit price, minor units (may be 0, or negative for a
    /// discount; bounded by `money::MAX_PRICE` either way).
    pub price_delta: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Item {
    pub sku: String,
    pub name: String,
    pub category: String,
    pub station: Station,
    pub sizes: Vec<Size>,
    pub modifiers: Vec<Modifier>,
    /// False when the store has 86'd the item.
    pub available: bool,
}

impl Item {
    pub fn size(&self, code: &str) -> Option<&Size> {
        self.sizes.iter().find(|s| s.code == code)
    }

    pub fn modifier(&self, code: &str) -> Option<&Modifier> {
        self.modifiers.iter().find(|m| m.code == code)
    }

    /// Whether every price of the item is one a menu may hold
    /// (`money::check_price` for sizes, `money::check_delta` for
    /// modifiers); otherwise what is wrong with the first that is not,
    /// naming the item and the size or modifier.
    pub fn check_prices(&self) -> Result<(), String> {
        for s in &self.sizes {
            crate::money::check_price(s.price).map_err(|e| format!("item '{}' size '{}': {e}", self.sku, s.code))?;
        }
        for m in &self.modifiers {
            crate::money::check_delta(m.price_delta)
                .map_err(|e| format!("item '{}' modifier '{}': {e}", self.sku, m.code))?;
        }
        Ok(())
    }
}

/// One store's full menu as the store holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Menu {
    pub store: StoreInfo,
    pub categories: Vec<Category>,
    pub items: Vec<Item>,
}

/// An immutable menu prepared for serving: sku index, rendered JSON, ETag.
#[derive(Debug)]
pub struct MenuSnapshot {
    pub menu: Menu,
    index: HashMap<String, usize>,
    /// The `GET /v1/stores/{id}/menu` body, rendered once.
    pub json: Bytes,
    /// Strong ETag over `json`, quoted as HTTP wants it.
    pub etag: String,
    /// `json` compressed, one slot per [`Coding`], each filled on first use.
    encoded: [OnceLock<Bytes>; Coding::ALL.len()],
}

/// A compressed form of the rendered body that the snapshot can hold.
///
/// Named here, but compressed elsewhere: `crates/api` owns the codecs and
/// their levels, so `domain` links no compression library and a snapshot
/// built for pricing alone (the processors', the tests') never pays for
/// one. Memoising on the snapshot rather than in a cache of the API's own
/// keyed by ETag means the variants need no eviction policy of their own:
/// they are dropped with the snapshot, on invalidation, TTL or eviction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Coding {
    Gzip,
    Brotli,
}

impl Coding {
    pub const ALL: [Coding; 2] = [Coding::Gzip, Coding::Brotli];

    fn slot(self) -> usize {
        match self {
            Coding::Gzip => 0,
            Coding::Brotli => 1,
        }
    }
}

#[derive(Serialize)]
struct MenuView<'a> {
    store: &'a StoreInfo,
    categories: Vec<CategoryView<'a>>,
}

#[derive(Serialize)]
struct CategoryView<'a> {
    code: &'a str,
    name: &'a str,
    items: Vec<&'a Item>,
}

impl MenuSnapshot {
    pub fn new(menu: Menu) -> Self {
        let index = menu
            .items
            .iter()
            .enumerate()
            .map(|(i, it)| (it.sku.clone(), i))
            .collect();
        let mut cats: Vec<&Category> = menu.categories.iter().collect();
        cats.sort_by_key(|c| (c.position, c.code.as_str()));
        let view = MenuView {
            store: &menu.store,
            categories: cats
                .into_iter()
                .map(|c| CategoryView {
                    code: &c.code,
                    name: &c.name,
                    items: menu.items.iter().filter(|i| i.category == c.code).collect(),
                })
                .collect(),
        };
        let json = serde_json::to_vec(&view).expect("menu view serializes");
        let digest = Sha256::digest(&json);
        let etag = format!("\"{}\"", hex::encode(&digest[..12]));
        Self {
            menu,
            index,
            json: Bytes::from(json),
            etag,
            encoded: Default::default(),
        }
    }

    /// `json` in `coding`, if it has been made already. Cheap: the serving
    /// path asks this first and only goes to [`Self::encode`] (which may
    /// block while another thread compresses) on a miss.
    pub fn encoded(&self, coding: Coding) -> Option<&Bytes> {
        self.encoded[coding.slot()].get()
    }

    /// `json` in `coding`, compressing it with `compress` on first use.
    /// Concurrent first callers wait for one compression rather than each
    /// doing their own; callers on an async runtime should call this off
    /// its worker threads.
    pub fn encode(&self, coding: Coding, compress: impl FnOnce(&[u8]) -> Vec<u8>) -> &Bytes {
        self.encoded[coding.slot()].get_or_init(|| Bytes::from(compress(&self.json)))
    }

    pub fn item(&self, sku: &str) -> Option<&Item> {
        self.index.get(sku).map(|&i| &self.menu.items[i])
    }

    pub fn store(&self) -> &StoreInfo {
        &self.menu.store
    }
}

/// The demo store and menu seeded on first start of the embedded mode.
pub fn demo_menu() -> Menu {
    fn sizes(base: i64) -> Vec<Size> {
        vec![
            Size {
                code: "small".into(),
                name: "Small 8oz".into(),
                price: base,
            },
            Size {
                code: "medium".into(),
                name: "Medium 12oz".into(),
                price: base + 50,
            },
            Size {
                code: "large".into(),
                name: "Large 16oz".into(),
                price: base + 90,
            },
        ]
    }
    fn one(price: i64) -> Vec<Size> {
        vec![Size {
            code: "regular".into(),
            name: "Regular".into(),
            price,
        }]
    }
    let milk = vec![
        Modifier {
            code: "oat-milk".into(),
            name: "Oat milk".into(),
            price_delta: 60,
        },
        Modifier {
            code: "almond-milk".into(),
            name: "Almond milk".into(),
            price_delta: 60,
        },
        Modifier {
            code: "extra-shot".into(),
            name: "Extra shot".into(),
            price_delta: 80,
        },
        Modifier {
            code: "vanilla".into(),
            name: "Vanilla syrup".into(),
            price_delta: 50,
        },
        Modifier {
            code: "decaf".into(),
            name: "Decaf".into(),
            price_delta: 0,
        },
    ];
    let food_mods = vec![
        Modifier {
            code: "warmed".into(),
            name: "Warmed".into(),
            price_delta: 0,
        },
        Modifier {
            code: "extra-cheese".into(),
            name: "Extra cheese".into(),
            price_delta: 90,
        },
    ];
    let drink = |sku: &str, name: &str, base: i64| Item {
        sku: sku.into(),
        name: name.into(),
        category: "coffee".into(),
        station: Station::Barista,
        sizes: sizes(base),
        modifiers: milk.clone(),
        available: true,
    };
    let tea = |sku: &str, name: &str, base: i64| Item {
        category: "tea".into(),
        ..drink(sku, name, base)
    };
    let food = |sku: &str, name: &str, cat: &str, price: i64| Item {
        sku: sku.into(),
        name: name.into(),
        category: cat.into(),
        station: Station::Kitchen,
        sizes: one(price),
        modifiers: food_mods.clone(),
        available: true,
    };
    Menu {
        store: StoreInfo {
            id: StoreId("demo-downtown".into()),
            name: "Rushhour Downtown (demo)".into(),
            time_zone: "Europe/London".into(),
            currency: "USD".into(),
        },
        categories: vec![
            Category {
                code: "coffee".into(),
                name: "Coffee".into(),
                position: 1,
            },
            Category {
                code: "tea".into(),
                name: "Tea & more".into(),
                position: 2,
            },
            Category {
                code: "bakery".into(),
                name: "Bakery".into(),
                position: 3,
            },
            Category {
                code: "kitchen".into(),
                name: "Hot food".into(),
                position: 4,
            },
        ],
        items: vec![
            drink("espresso", "Espresso", 250),
            drink("americano", "Americano", 300),
            drink("latte", "Caffè Latte", 420),
            drink("cappuccino", "Cappuccino", 420),
            drink("flat-white", "Flat White", 440),
            drink("mocha", "Mocha", 480),
            drink("cold-brew", "Cold Brew", 450),
            tea("chai-latte", "Chai Latte", 430),
            tea("matcha-latte", "Matcha Latte", 470),
            tea("hot-chocolate", "Hot Chocolate", 390),
            food("croissant", "Butter Croissant", "bakery", 320),
            food("pain-au-chocolat", "Pain au Chocolat", "bakery", 350),
            food("banana-bread", "Banana Bread", "bakery", 380),
            food("breakfast-sandwich", "Egg & Cheese Sandwich", "kitchen", 650),
            food("avocado-toast", "Avocado Toast", "kitchen", 720),
            food("porridge", "Oat Porridge", "kitchen", 480),
        ],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_indexes_and_renders_with_a_stable_etag() {
        let a = MenuSnapshot::new(demo_menu());
        let b = MenuSnapshot::new(demo_menu());
        assert_eq!(a.etag, b.etag);
        assert_eq!(a.item("latte").unwrap().station, Station::Barista);
        assert!(a.item("nope").is_none());
        let v: serde_json::Value = serde_json::from_slice(&a.json).unwrap();
        assert_eq!(v["categories"][0]["code"], "coffee");

        let mut m = demo_menu();
        m.items[0].available = false;
        assert_ne!(MenuSnapshot::new(m).etag, a.etag, "availability changes the ETag");
    }

    #[test]
    fn encodings_are_made_once_per_snapshot_and_coding() {
        let snap = MenuSnapshot::new(demo_menu());
        assert!(snap.encoded(Coding::Brotli).is_none(), "nothing is compressed up front");
        let mut calls = 0;
        let first = snap
            .encode(Coding::Brotli, |json| {
                calls += 1;
                json.iter().rev().copied().collect()
            })
            .clone();
        let again = snap.encode(Coding::Brotli, |_| unreachable!("made once")).clone();
        assert_eq!(calls, 1);
        assert_eq!(again, first);
        assert_eq!(snap.encoded(Coding::Brotli), Some(&first));
        assert!(snap.encoded(Coding::Gzip).is_none(), "one slot per coding");
        assert_eq!(first.len(), snap.json.len());
    }
}
