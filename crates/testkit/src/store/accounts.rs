//! The `AccountStore` contract: loyalty accounts upserted newest-version
//! wins, and sync cursors kept per kind. Cases take the narrow port.

use domain::ops::LoyaltyAccount;
use domain::ports::AccountStore;

use crate::fixtures::loyalty_account;

use super::*;

/// What an account case takes.
pub type Accounts = Arc<dyn AccountStore>;

/// Calls `$callback! { accounts: case, case, ... }` with every `AccountStore` case.
#[macro_export]
macro_rules! account_store_cases {
    ($callback:ident) => {
        $callback! {
            accounts:
            fresh_store_has_no_accounts_or_cursors,
            accounts_upsert_keeps_the_newest_version,
            sync_cursors_are_kept_per_kind,
        }
    };
}

/// The names of every `AccountStore` case, in the order `run_all` runs them.
pub const CASES: &[&str] = account_store_cases!(case_names);

/// A new store has no accounts and no cursors, and is healthy.
pub async fn fresh_store_has_no_accounts_or_cursors(store: Accounts) {
    store.health().await.expect("a fresh store is healthy");
    assert_eq!(store.count_accounts().await.unwrap(), 0);
    assert_eq!(store.loyalty_account("acct-000001").await.unwrap(), None);
    assert_eq!(store.sync_cursor("accounts").await.unwrap(), None);
}

/// Accounts: one call writes many, a row is only overwritten by a newer
/// version (also between copies in one call), and the `accounts` cursor
/// moves with the rows when given, and only then.
pub async fn accounts_upsert_keeps_the_newest_version(store: Accounts) {
    let v1: Vec<LoyaltyAccount> = (1..=3).map(|n| loyalty_account(n, 100)).collect();
    assert_eq!(store.upsert_accounts(&v1, Some("cursor-1")).await.unwrap(), 3);
    assert_eq!(store.count_accounts().await.unwrap(), 3);
    for a in &v1 {
        assert_eq!(store.loyalty_account(&a.id).await.unwrap(), Some(a.clone()));
    }
    assert_eq!(
        store.sync_cursor("accounts").await.unwrap().as_deref(),
        Some("cursor-1")
    );

    let newer = LoyaltyAccount {
        points: 9_999,
        tier: "platinum".into(),
        email: None,
        version: 200,
        ..v1[0].clone()
    };
    let same_version = LoyaltyAccount {
        points: 1,
        ..v1[1].clone()
    };
    let older = LoyaltyAccount {
        name: "Stale".into(),
        version: 50,
        ..v1[2].clone()
    };
    let fourth = loyalty_account(4, 100);
    let written = store
        .upsert_accounts(&[newer.clone(), same_version, older, fourth.clone()], Some("cursor-2"))
        .await
        .unwrap();
    assert_eq!(written, 2, "the newer version and the new account");
    assert_eq!(store.loyalty_account(&newer.id).await.unwrap(), Some(newer));
    assert_eq!(store.loyalty_account(&v1[1].id).await.unwrap(), Some(v1[1].clone()));
    assert_eq!(store.loyalty_account(&v1[2].id).await.unwrap(), Some(v1[2].clone()));
    assert_eq!(store.loyalty_account(&fourth.id).await.unwrap(), Some(fourth));
    assert_eq!(store.count_accounts().await.unwrap(), 4);
    assert_eq!(
        store.sync_cursor("accounts").await.unwrap().as_deref(),
        Some("cursor-2")
    );

    // Without a cursor the cursor stays; with only a cursor, only it moves.
    assert_eq!(store.upsert_accounts(&[loyalty_account(5, 1)], None).await.unwrap(), 1);
    assert_eq!(
        store.sync_cursor("accounts").await.unwrap().as_deref(),
        Some("cursor-2")
    );
    assert_eq!(store.upsert_accounts(&[], Some("cursor-3")).await.unwrap(), 0);
    assert_eq!(
        store.sync_cursor("accounts").await.unwrap().as_deref(),
        Some("cursor-3")
    );
    assert_eq!(store.count_accounts().await.unwrap(), 5);

    // One account three times in a call: the newest copy wins.
    let copies = [
        loyalty_account(6, 3),
        LoyaltyAccount {
            points: 7,
            ..loyalty_account(6, 5)
        },
        LoyaltyAccount {
            points: 1,
            ..loyalty_account(6, 4)
        },
    ];
    assert_eq!(store.upsert_accounts(&copies, None).await.unwrap(), 1);
    assert_eq!(
        store.loyalty_account(&copies[1].id).await.unwrap(),
        Some(copies[1].clone())
    );

    // A sync-sized page in one call, then the same page again.
    let page: Vec<LoyaltyAccount> = (1_000..6_000).map(|n| loyalty_account(n, 10)).collect();
    assert_eq!(store.upsert_accounts(&page, Some("cursor-4")).await.unwrap(), 5_000);
    assert_eq!(store.count_accounts().await.unwrap(), 5_006);
    for a in [&page[0], &page[2_500], &page[4_999]] {
        assert_eq!(store.loyalty_account(&a.id).await.unwrap().as_ref(), Some(a));
    }
    assert_eq!(store.upsert_accounts(&page, Some("cursor-5")).await.unwrap(), 0);
    assert_eq!(
        store.sync_cursor("accounts").await.unwrap().as_deref(),
        Some("cursor-5")
    );
    assert_eq!(store.loyalty_account("acct-nobody").await.unwrap(), None);
}

/// Each sync kind keeps its own cursor; `None` clears it.
pub async fn sync_cursors_are_kept_per_kind(store: Accounts) {
    assert_eq!(store.sync_cursor("menu").await.unwrap(), None);
    store.set_sync_cursor("menu", Some("\"etag-1\"")).await.unwrap();
    assert_eq!(store.sync_cursor("menu").await.unwrap().as_deref(), Some("\"etag-1\""));
    assert_eq!(store.sync_cursor("accounts").await.unwrap(), None);
    store.set_sync_cursor("accounts", Some("c-1")).await.unwrap();
    store.set_sync_cursor("menu", Some("\"etag-2\"")).await.unwrap();
    assert_eq!(store.sync_cursor("menu").await.unwrap().as_deref(), Some("\"etag-2\""));
    store.set_sync_cursor("menu", None).await.unwrap();
    assert_eq!(store.sync_cursor("menu").await.unwrap(), None);
    assert_eq!(store.sync_cursor("accounts").await.unwrap().as_deref(), Some("c-1"));
}
