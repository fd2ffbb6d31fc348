//! `MenuStore`: the durable stores and their menus (the catalog sync writes
//! through it too). Split from the 27-method `Store` so that menu code does
//! not depend on orders, accounts or operations.

use async_trait::async_trait;

use super::{PortResult, StoreBackend};
use crate::ids::StoreId;
use crate::menu::{Category, Item, Menu, StoreInfo};

/// Stores and their menus.
#[async_trait]
pub trait MenuStore: StoreBackend {
    async fn list_stores(&self) -> PortResult<Vec<StoreInfo>>;

    /// The store's menu with current availability, or `None` for an unknown store.
    async fn load_menu(&self, store: &StoreId) -> PortResult<Option<Menu>>;

    /// Create or replace a store and its whole menu.
    async fn upsert_menu(&self, menu: &Menu) -> PortResult<()>;

    /// 86 an item or bring it back. `false` if the store has no such sku.
    async fn set_availability(&self, store: &StoreId, sku: &str, available: bool) -> PortResult<bool>;

    /// Write a sync's diff into `store`'s menu in one transaction: set the
    /// categories (upsert by code), upsert `items` by sku (a new item is
    /// available; an existing item keeps its availability), and delete the
    /// items in `removed`. The menu cache is the caller's to invalidate.
    async fn apply_menu_diff(
        &self,
        store: &StoreId,
        categories: &[Category],
        items: &[Item],
        removed: &[String],
    ) -> PortResult<()>;
}
