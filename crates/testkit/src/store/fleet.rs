//! The `Fleet` contract: instances register, beat and leave; only those
//! seen since the asked time are listed; broadcasts get increasing seqs and
//! are read back after a seq, oldest first; day-old rows are forgotten.

use domain::ports::Instance;

use super::*;

/// Calls `$callback! { fleet: case, ... }` with every `Fleet` case.
#[macro_export]
macro_rules! fleet_cases {
    ($callback:ident) => {
        $callback! {
            fleet:
            instances_beat_ack_and_leave,
            broadcasts_are_ordered_and_old_ones_forgotten,
        }
    };
}

/// The names of every `Fleet` case.
pub const CASES: &[&str] = fleet_cases!(case_names);

fn instance(id: &str, seen_at: i64, acked: i64) -> Instance {
    Instance {
        id: id.into(),
        role: "serve".into(),
        addr: "127.0.0.1:8080".into(),
        started_at: 1_000,
        seen_at,
        acked,
    }
}

/// A beat registers or refreshes (acked included); listing filters by
/// `seen_at`; leave removes; a row a day old goes with the next beat.
pub async fn instances_beat_ack_and_leave(store: Stores) {
    assert_eq!(store.instances(0).await.unwrap(), vec![]);
    store.beat(&instance("b", 10_000, 0)).await.unwrap();
    store.beat(&instance("a", 10_000, 0)).await.unwrap();
    store.beat(&instance("a", 20_000, 3)).await.unwrap();
    assert_eq!(
        store.instances(0).await.unwrap(),
        vec![instance("a", 20_000, 3), instance("b", 10_000, 0)],
        "by id, the refreshed row updated in place"
    );
    assert_eq!(store.instances(15_000).await.unwrap(), vec![instance("a", 20_000, 3)]);
    store.leave("a").await.unwrap();
    store.leave("nobody").await.unwrap();
    assert_eq!(store.instances(0).await.unwrap(), vec![instance("b", 10_000, 0)]);
    let day = 86_400_000;
    store.beat(&instance("c", 10_001 + day, 0)).await.unwrap();
    assert_eq!(
        store.instances(0).await.unwrap(),
        vec![instance("c", 10_001 + day, 0)],
        "b was not seen for more than a day"
    );
}

/// Seqs increase; `broadcasts_after` answers the newer ones oldest first;
/// `last_broadcast` the newest (0 for none); a broadcast a day old goes
/// with the next one, and new seqs stay above it.
pub async fn broadcasts_are_ordered_and_old_ones_forgotten(store: Stores) {
    assert_eq!(store.last_broadcast().await.unwrap(), 0);
    assert_eq!(store.broadcasts_after(0).await.unwrap(), vec![]);
    let first = store.broadcast("clear_menus", 1_000).await.unwrap();
    let second = store.broadcast("clear_menus,warm_up", 2_000).await.unwrap();
    assert!(second > first && first > 0, "{first} {second}");
    assert_eq!(store.last_broadcast().await.unwrap(), second);
    let after = store.broadcasts_after(0).await.unwrap();
    let seen: Vec<(i64, &str, i64)> = after
        .iter()
        .map(|b| (b.seq, b.commands.as_str(), b.issued_at))
        .collect();
    assert_eq!(
        seen,
        vec![(first, "clear_menus", 1_000), (second, "clear_menus,warm_up", 2_000)]
    );
    let after_first = store.broadcasts_after(first).await.unwrap();
    assert_eq!(after_first.len(), 1);
    assert_eq!(after_first[0].seq, second);
    assert_eq!(store.broadcasts_after(second).await.unwrap(), vec![]);
    let third = store.broadcast("clear_auth", 1_500 + 86_400_000).await.unwrap();
    assert!(third > second);
    let left: Vec<i64> = store.broadcasts_after(0).await.unwrap().iter().map(|b| b.seq).collect();
    assert_eq!(left, vec![second, third], "the day-old first one is gone");
}
