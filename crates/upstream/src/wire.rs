//! The JSON the upstreams speak, shared by the client and the simulator so
//! the two cannot drift apart.
//!
//! These are wire types, deliberately separate from the domain's `Item` and
//! `LoyaltyAccount`: the upstream owns this format and may add fields (we
//! ignore unknown ones), while the domain types change with rushhour.

use domain::menu::{Category, Item, Modifier, Size, Station};
use domain::ops::LoyaltyAccount;
use serde::{Deserialize, Serialize};

/// Paths of the upstream endpoints, relative to the base URL.
pub mod paths {
    pub const TOKEN: &str = "/oauth/token";
    pub const CATALOG_ITEMS: &str = "/catalog/v1/items";
    pub const ACCOUNT_CHANGES: &str = "/loyalty/v1/accounts/changes";
    /// `POST`, `{id}` an account id: points an order earned.
    pub const ACCOUNT_POINTS: &str = "/loyalty/v1/accounts/{id}/points";
}

/// `POST /loyalty/v1/accounts/{id}/points`: the points an order earned.
/// The service applies one report per `order_id`; a repeat answers the
/// same without adding again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PointsReport {
    pub order_id: String,
    pub points: i64,
}

/// The answer to a points report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PointsAnswer {
    /// False when this order's points had already been applied.
    pub applied: bool,
    /// The account's points from reports so far.
    pub reported_points: i64,
}

/// `POST /oauth/token` answer (RFC 6749 §5.1).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TokenResponse {
    pub access_token: String,
    pub token_type: String,
    /// Seconds the token stays valid.
    pub expires_in: u64,
}

/// One page of `GET /catalog/v1/items?page=&per_page=`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CatalogPage {
    /// Every category; sent with page 1 only.
    #[serde(default)]
    pub categories: Vec<CatalogCategory>,
    pub items: Vec<CatalogItem>,
    pub page: u32,
    pub per_page: u32,
    pub total_items: u64,
    /// `null` on the last page.
    pub next_page: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CatalogCategory {
    pub code: String,
    pub name: String,
    pub position: i32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CatalogItem {
    pub sku: String,
    pub name: String,
    pub category: String,
    /// `barista` or `kitchen`.
    pub station: String,
    pub sizes: Vec<CatalogSize>,
    #[serde(default)]
    pub modifiers: Vec<CatalogModifier>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CatalogSize {
    pub code: String,
    pub name: String,
    /// Minor units.
    pub price: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CatalogModifier {
    pub code: String,
    pub name: String,
    /// Minor units.
    pub price_delta: i64,
}

/// `GET /loyalty/v1/accounts/changes?since=&limit=` answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChangesPage {
    pub accounts: Vec<WireAccount>,
    pub next_cursor: String,
    pub has_more: bool,
    /// Changes after `since` in all (this page included).
    #[serde(default)]
    pub total: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireAccount {
    pub id: String,
    pub email: Option<String>,
    pub name: String,
    pub tier: String,
    pub points: i64,
    pub version: i64,
}

impl From<&Category> for CatalogCategory {
    fn from(c: &Category) -> Self {
        Self {
            code: c.code.clone(),
            name: c.name.clone(),
            position: c.position,
        }
    }
}

impl From<CatalogCategory> for Category {
    fn from(c: CatalogCategory) -> Self {
        Self {
            code: c.code,
            name: c.name,
            position: c.position,
        }
    }
}

impl From<&Item> for CatalogItem {
    fn from(i: &Item) -> Self {
        Self {
            sku: i.sku.clone(),
            name: i.name.clone(),
            category: i.category.clone(),
            station: i.station.as_str().to_owned(),
            sizes: i
                .sizes
                .iter()
                .map(|s| CatalogSize {
                    code: s.code.clone(),
                    name: s.name.clone(),
                    price: s.price,
                })
                .collect(),
            modifiers: i
                .modifiers
                .iter()
                .map(|m| CatalogModifier {
                    code: m.code.clone(),
                    name: m.name.clone(),
                    price_delta: m.price_delta,
                })
                .collect(),
        }
    }
}

impl CatalogItem {
    /// The domain item (available: availability is each store's own), or
    /// why the upstream's item cannot be one.
    pub fn into_item(self) -> Result<Item, String> {
        let station = Station::parse(&self.station)
            .ok_or_else(|| format!("item {:?} has unknown station {:?}", self.sku, self.station))?;
        if self.sizes.is_empty() {
            return Err(format!("item {:?} has no sizes", self.sku));
        }
        Ok(Item {
            sku: self.sku,
            name: self.name,
            category: self.category,
            station,
            sizes: self
                .sizes
                .into_iter()
                .map(|s| Size {
                    code: s.code,
                    name: s.name,
                    price: s.price,
                })
                .collect(),
            modifiers: self
                .modifiers
                .into_iter()
                .map(|m| Modifier {
                    code: m.code,
                    name: m.name,
                    price_delta: m.price_delta,
                })
                .collect(),
            available: true,
        })
    }
}

impl From<WireAccount> for LoyaltyAccount {
    fn from(a: WireAccount) -> Self {
        Self {
            id: a.id,
            email: a.email,
            name: a.name,
            tier: a.tier,
            points: a.points,
            version: a.version,
        }
    }
}
