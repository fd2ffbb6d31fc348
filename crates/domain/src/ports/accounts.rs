//! `AccountStore`: loyalty accounts mirrored from upstream, and the cursors
//! the syncs resume from. The cursors live here rather than with the sync
//! runs (`OpsStore`) because `upsert_accounts` moves the `accounts` cursor
//! in the same transaction as the rows it writes.

use async_trait::async_trait;

use super::{PortResult, StoreBackend};
use crate::ops::LoyaltyAccount;

/// Loyalty accounts and sync cursors.
#[async_trait]
pub trait AccountStore: StoreBackend {
    /// Bulk upsert in one statement per call (callers chunk): a row is only
    /// overwritten by a newer `version`. When `cursor` is given, the
    /// `accounts` sync cursor is set to it in the same transaction.
    async fn upsert_accounts(&self, accounts: &[LoyaltyAccount], cursor: Option<&str>) -> PortResult<u64>;

    async fn loyalty_account(&self, id: &str) -> PortResult<Option<LoyaltyAccount>>;

    async fn count_accounts(&self) -> PortResult<u64>;

    /// The cursor a sync of `kind` left last (`None` before the first).
    async fn sync_cursor(&self, kind: &str) -> PortResult<Option<String>>;

    async fn set_sync_cursor(&self, kind: &str, cursor: Option<&str>) -> PortResult<()>;
}
