//! The `PointsLedger` contract: an award is recorded once per order and
//! adds its points to the account in the same step; a repeat changes
//! nothing; awards list newest first per account; marking reported is
//! idempotent.

use domain::ops::LoyaltyAccount;
use domain::ports::PointsAward;

use super::*;

/// Calls `$callback! { points: case, ... }` with every `PointsLedger` case.
#[macro_export]
macro_rules! points_cases {
    ($callback:ident) => {
        $callback! {
            points:
            an_award_counts_once_and_adds_to_the_account,
        }
    };
}

/// The names of every `PointsLedger` case.
pub const CASES: &[&str] = points_cases!(case_names);

fn award(order: OrderId, points: i64, at: i64) -> PointsAward {
    PointsAward {
        order_id: order,
        account_id: "acct-1".into(),
        points,
        awarded_at: at,
        reported_at: None,
    }
}

/// A new award adds its points to the account; the same order again (even
/// with other points) is refused and changes nothing; listing is newest
/// first; `mark_reported` keeps the first time.
pub async fn an_award_counts_once_and_adds_to_the_account(store: Stores) {
    let account = LoyaltyAccount {
        id: "acct-1".into(),
        email: Some("ana@example.com".into()),
        name: "Ana".into(),
        tier: "gold".into(),
        points: 100,
        version: 1,
    };
    store.upsert_accounts(&[account], None).await.unwrap();
    let (first, second) = (OrderId::new(), OrderId::new());
    assert_eq!(store.order_award(first).await.unwrap(), None);
    assert!(store.award_points(&award(first, 4, 1_000)).await.unwrap());
    assert!(
        !store.award_points(&award(first, 40, 1_001)).await.unwrap(),
        "once per order"
    );
    assert!(store.award_points(&award(second, 7, 2_000)).await.unwrap());
    let points = store.loyalty_account("acct-1").await.unwrap().unwrap().points;
    assert_eq!(points, 111, "100 + 4 + 7, the repeat not counted");
    assert_eq!(store.order_award(first).await.unwrap(), Some(award(first, 4, 1_000)));
    let listed = store.account_awards("acct-1", 10).await.unwrap();
    assert_eq!(listed, vec![award(second, 7, 2_000), award(first, 4, 1_000)]);
    assert_eq!(store.account_awards("acct-1", 1).await.unwrap().len(), 1);
    assert_eq!(store.account_awards("nobody", 10).await.unwrap(), vec![]);
    store.mark_reported(first, 5_000).await.unwrap();
    store.mark_reported(first, 6_000).await.unwrap();
    let reported = store.order_award(first).await.unwrap().unwrap();
    assert_eq!(reported.reported_at, Some(5_000), "the first acknowledgement is kept");
}
