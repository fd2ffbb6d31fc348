//! The `UserStore` and `AuditLog` contract: staff users unique by name
//! whatever its ASCII case, their API keys found by prefix, revoked once
//! and touched forward only, and the audit trail appended with increasing
//! ids, listed newest first with filters and paging, and purged by age.
//! Both ports live in the store's database, so one case list covers them;
//! cases take the narrow port they test.
//!
//! Contract details a backend might otherwise get subtly different:
//! usernames are unique ignoring ASCII case, also for a caller that did not
//! lower-case (the database enforces it, not a check before the insert);
//! `user_by_name` matches ignoring ASCII case too; `list_users` is by
//! username (byte-wise); `update_user` keeps the stored username and
//! `created_at`; a key's `user_id` must name a stored user (`Conflict`
//! otherwise); keys list newest first by `created_at`; `touch_api_key`
//! never moves `last_used_at` back and records nothing for an unknown
//! prefix; an audit entry's `id` is the log's (what the caller put there is
//! ignored) and is never handed out again, even after a purge removed the
//! newest entries; `detail` comes back exactly as written; `purge_audit`
//! removes entries strictly older than its cutoff.

use domain::identity::{ApiKey, AuditEntry, Role, User};
use domain::ports::{AuditLog, AuditQuery, PortError, UserStore};
use uuid::Uuid;

use super::*;

/// What a user or API key case takes.
pub type Users = Arc<dyn UserStore>;

/// What an audit case takes.
pub type Audit = Arc<dyn AuditLog>;

/// Calls `$callback! { identity: case, case, ... }` with every `UserStore`
/// and `AuditLog` case.
#[macro_export]
macro_rules! identity_cases {
    ($callback:ident) => {
        $callback! {
            identity:
            fresh_store_has_no_users_keys_or_audit,
            users_are_found_by_name_and_by_id,
            a_taken_username_is_a_conflict_whatever_its_case,
            users_are_listed_by_username,
            update_user_overwrites_role_disabled_and_hash,
            api_keys_are_found_by_prefix_and_listed_newest_first,
            a_key_is_revoked_once,
            touching_a_key_records_its_last_use,
            audit_entries_list_newest_first_with_filters_and_pages,
            purge_audit_removes_entries_before_the_cutoff,
        }
    };
}

/// The names of every identity case, in the order `run_all` runs them.
pub const CASES: &[&str] = identity_cases!(case_names);

/// A user as the use-case would create it (lower-cased name, a PHC hash).
fn user(username: &str, role: Role, at: i64) -> User {
    User {
        id: Uuid::now_v7(),
        username: username.into(),
        role,
        disabled: false,
        password_hash: format!("$argon2id$v=19$m=19456,t=2,p=1${username}-salt$hash"),
        created_at: at,
        updated_at: at,
    }
}

fn api_key(prefix: &str, user_id: Option<Uuid>, role: Role, at: i64) -> ApiKey {
    ApiKey {
        id: Uuid::now_v7(),
        prefix: prefix.into(),
        hash: domain::identity::token_hash(&format!("{prefix}_secret")),
        name: format!("till {prefix}"),
        user_id,
        role,
        store: None,
        created_at: at,
        last_used_at: None,
        revoked_at: None,
    }
}

fn entry(at: i64, actor: &str, action: &str, target: &str) -> AuditEntry {
    AuditEntry {
        id: 0,
        at,
        actor: actor.into(),
        role: Some(Role::Manager),
        action: action.into(),
        target: target.into(),
        detail: "{}".into(),
        source: "10.0.0.7".into(),
    }
}

fn query(before: Option<i64>, actor: Option<&str>, action: Option<&str>, limit: u32) -> AuditQuery {
    AuditQuery {
        before,
        actor: actor.map(str::to_owned),
        action: action.map(str::to_owned),
        limit,
    }
}

fn is_conflict<T: std::fmt::Debug>(r: Result<T, PortError>) -> bool {
    matches!(r, Err(PortError::Conflict(_)))
}

/// A new store has no users, keys or audit entries, and is healthy.
pub async fn fresh_store_has_no_users_keys_or_audit(store: Stores) {
    store.health().await.expect("a fresh store is healthy");
    assert_eq!(store.list_users().await.unwrap(), vec![]);
    assert_eq!(store.user_by_name("admin").await.unwrap(), None);
    assert_eq!(store.list_api_keys().await.unwrap(), vec![]);
    assert_eq!(store.api_key_by_prefix("rhk_00000000").await.unwrap(), None);
    assert_eq!(store.list_audit(&query(None, None, None, 500)).await.unwrap(), vec![]);
    assert_eq!(store.purge_audit(i64::MAX).await.unwrap(), 0);
}

/// A created user reads back whole, by name and by id; a lookup ignores
/// ASCII case; unknown names and ids are `None`.
pub async fn users_are_found_by_name_and_by_id(store: Users) {
    let alice = user("alice", Role::Manager, 1_000);
    let bob = User {
        disabled: true,
        ..user("bob", Role::Barista, 2_000)
    };
    store.create_user(&alice).await.unwrap();
    store.create_user(&bob).await.unwrap();
    assert_eq!(store.user_by_name("alice").await.unwrap(), Some(alice.clone()));
    assert_eq!(store.user(alice.id).await.unwrap(), Some(alice.clone()));
    assert_eq!(store.user_by_name("bob").await.unwrap(), Some(bob.clone()));
    assert_eq!(store.user(bob.id).await.unwrap(), Some(bob));
    assert_eq!(store.user_by_name("ALICE").await.unwrap(), Some(alice));
    assert_eq!(store.user_by_name("carol").await.unwrap(), None);
    assert_eq!(store.user_by_name("").await.unwrap(), None);
    assert_eq!(store.user(Uuid::now_v7()).await.unwrap(), None);
}

/// A second user with a taken name is refused, whether the caller
/// lower-cased it or not; so is a second user with a taken id. Nothing of
/// the refused users is stored.
pub async fn a_taken_username_is_a_conflict_whatever_its_case(store: Users) {
    let alice = user("alice", Role::Admin, 1_000);
    store.create_user(&alice).await.unwrap();
    let again = user(&"ALICE".to_lowercase(), Role::Barista, 2_000);
    assert!(
        is_conflict(store.create_user(&again).await),
        "the same lower-cased name"
    );
    let shouting = user("Alice", Role::Barista, 2_000);
    assert!(
        is_conflict(store.create_user(&shouting).await),
        "the store enforces uniqueness ignoring case, even for input not lower-cased"
    );
    let same_id = User {
        id: alice.id,
        ..user("alicia", Role::Barista, 2_000)
    };
    assert!(is_conflict(store.create_user(&same_id).await), "a taken id");
    assert_eq!(store.list_users().await.unwrap(), vec![alice.clone()]);
    assert_eq!(store.user(again.id).await.unwrap(), None);
    assert_eq!(store.user_by_name("alicia").await.unwrap(), None);

    // A name that only contains the taken one is not taken.
    store.create_user(&user("alice2", Role::Barista, 3_000)).await.unwrap();
    assert_eq!(store.list_users().await.unwrap().len(), 2);
}

/// `list_users` returns every user by username, whatever the order they
/// were created in.
pub async fn users_are_listed_by_username(store: Users) {
    let carol = user("carol", Role::Barista, 1_000);
    let alice = user("alice", Role::Admin, 2_000);
    let bob = user("bob", Role::Manager, 3_000);
    for u in [&carol, &alice, &bob] {
        store.create_user(u).await.unwrap();
    }
    assert_eq!(store.list_users().await.unwrap(), vec![alice, bob, carol]);
}

/// `update_user` overwrites role, disabled, hash and `updated_at` (the
/// name and creation time stay as stored); an unknown id is `NotFound`.
pub async fn update_user_overwrites_role_disabled_and_hash(store: Users) {
    let alice = user("alice", Role::Barista, 1_000);
    let bob = user("bob", Role::Barista, 1_000);
    store.create_user(&alice).await.unwrap();
    store.create_user(&bob).await.unwrap();
    let changed = User {
        username: "mallory".into(),
        role: Role::Admin,
        disabled: true,
        password_hash: "$argon2id$v=19$m=19456,t=2,p=1$new-salt$new-hash".into(),
        created_at: 0,
        updated_at: 5_000,
        ..alice.clone()
    };
    store.update_user(&changed).await.unwrap();
    let expected = User {
        username: alice.username.clone(),
        created_at: alice.created_at,
        ..changed.clone()
    };
    assert_eq!(store.user(alice.id).await.unwrap(), Some(expected.clone()));
    assert_eq!(store.user_by_name("alice").await.unwrap(), Some(expected.clone()));
    assert_eq!(store.user_by_name("mallory").await.unwrap(), None);
    assert_eq!(store.user(bob.id).await.unwrap(), Some(bob.clone()), "others untouched");

    // And back: enabling again works the same way.
    let enabled = User {
        disabled: false,
        updated_at: 6_000,
        ..expected
    };
    store.update_user(&enabled).await.unwrap();
    assert_eq!(store.user(alice.id).await.unwrap(), Some(enabled));

    let ghost = user("ghost", Role::Admin, 1_000);
    assert_eq!(store.update_user(&ghost).await, Err(PortError::NotFound));
    assert_eq!(store.user(ghost.id).await.unwrap(), None, "an update creates no user");
}

/// Keys read back whole by prefix; a taken prefix and a key for an unknown
/// user are refused; `list_api_keys` is newest first.
pub async fn api_keys_are_found_by_prefix_and_listed_newest_first(store: Users) {
    let alice = user("alice", Role::Manager, 1_000);
    store.create_user(&alice).await.unwrap();
    let till = ApiKey {
        store: Some("demo-downtown".into()),
        ..api_key("rhk_aaaa1111", Some(alice.id), Role::Barista, 1_000)
    };
    let legacy = api_key("rhk_bbbb2222", None, Role::Admin, 3_000);
    let kiosk = api_key("rhk_cccc3333", Some(alice.id), Role::Manager, 2_000);
    for k in [&till, &legacy, &kiosk] {
        store.create_api_key(k).await.unwrap();
    }
    assert_eq!(
        store.api_key_by_prefix("rhk_aaaa1111").await.unwrap(),
        Some(till.clone())
    );
    assert_eq!(
        store.api_key_by_prefix("rhk_bbbb2222").await.unwrap(),
        Some(legacy.clone())
    );
    assert_eq!(store.api_key_by_prefix("rhk_dddd4444").await.unwrap(), None);
    assert_eq!(store.api_key_by_prefix("rhk_aaaa").await.unwrap(), None, "exact prefix");

    let taken = api_key("rhk_aaaa1111", None, Role::Admin, 4_000);
    assert!(is_conflict(store.create_api_key(&taken).await), "a taken prefix");
    let orphan = api_key("rhk_eeee5555", Some(Uuid::now_v7()), Role::Admin, 4_000);
    assert!(is_conflict(store.create_api_key(&orphan).await), "an unknown user");
    assert_eq!(store.api_key_by_prefix("rhk_eeee5555").await.unwrap(), None);

    assert_eq!(store.list_api_keys().await.unwrap(), vec![legacy, kiosk, till]);
}

/// Revoking stamps the key once: the first call says true, later ones
/// (and calls for unknown prefixes) false, and the first time stays.
pub async fn a_key_is_revoked_once(store: Users) {
    let a = api_key("rhk_aaaa1111", None, Role::Admin, 1_000);
    let b = api_key("rhk_bbbb2222", None, Role::Admin, 2_000);
    store.create_api_key(&a).await.unwrap();
    store.create_api_key(&b).await.unwrap();
    assert!(store.revoke_api_key(&a.prefix, 5_000).await.unwrap());
    assert!(
        !store.revoke_api_key(&a.prefix, 6_000).await.unwrap(),
        "already revoked"
    );
    assert!(
        !store.revoke_api_key("rhk_nope0000", 6_000).await.unwrap(),
        "no such key"
    );
    let revoked = store.api_key_by_prefix(&a.prefix).await.unwrap().unwrap();
    assert_eq!(revoked.revoked_at, Some(5_000));
    assert_eq!(
        revoked,
        ApiKey {
            revoked_at: Some(5_000),
            ..a
        }
    );
    assert_eq!(
        store.api_key_by_prefix(&b.prefix).await.unwrap(),
        Some(b),
        "others untouched"
    );
    assert_eq!(
        store.list_api_keys().await.unwrap().len(),
        2,
        "revoked keys are still listed"
    );
}

/// A touch sets `last_used_at`, later touches move it forward and never
/// back; an unknown prefix records nothing and is no error.
pub async fn touching_a_key_records_its_last_use(store: Users) {
    let a = api_key("rhk_aaaa1111", None, Role::Barista, 1_000);
    let b = api_key("rhk_bbbb2222", None, Role::Barista, 1_000);
    store.create_api_key(&a).await.unwrap();
    store.create_api_key(&b).await.unwrap();
    let last_used = |p: &'static str| {
        let store = store.clone();
        async move { store.api_key_by_prefix(p).await.unwrap().unwrap().last_used_at }
    };
    assert_eq!(last_used("rhk_aaaa1111").await, None);
    store.touch_api_key(&a.prefix, 4_000).await.unwrap();
    assert_eq!(last_used("rhk_aaaa1111").await, Some(4_000));
    store.touch_api_key(&a.prefix, 3_000).await.unwrap();
    assert_eq!(last_used("rhk_aaaa1111").await, Some(4_000), "never moves back");
    store.touch_api_key(&a.prefix, 9_000).await.unwrap();
    assert_eq!(last_used("rhk_aaaa1111").await, Some(9_000));
    assert_eq!(last_used("rhk_bbbb2222").await, None, "others untouched");
    store.touch_api_key("rhk_nope0000", 9_000).await.unwrap();
    assert_eq!(store.api_key_by_prefix("rhk_nope0000").await.unwrap(), None);
    let touched = store.api_key_by_prefix(&a.prefix).await.unwrap().unwrap();
    assert_eq!(
        touched,
        ApiKey {
            last_used_at: Some(9_000),
            ..a
        }
    );
}

/// Appends get increasing ids (what the caller put in `id` is ignored);
/// `list_audit` is newest first, pages backwards with `before`, filters by
/// actor and action (alone, together, and with `before`), and honours
/// `limit`. Entries read back exactly as written.
pub async fn audit_entries_list_newest_first_with_filters_and_pages(store: Audit) {
    let written = [
        entry(1_000, "alice", "login", "alice"),
        AuditEntry {
            id: 9_999,
            role: None,
            source: String::new(),
            ..entry(1_500, "cli", "user_add", "bob")
        },
        entry(2_000, "alice", "availability", "demo-downtown/latte"),
        AuditEntry {
            detail: r#"{"reason": "customer asked",  "lines":[1, 2]}"#.into(),
            ..entry(2_500, "bob", "cancel", "0190a1b2-0000-7000-8000-000000000001")
        },
        entry(
            3_000,
            "key:rhk_aaaa1111",
            "cancel",
            "0190a1b2-0000-7000-8000-000000000002",
        ),
        entry(3_500, "alice", "cancel", "0190a1b2-0000-7000-8000-000000000003"),
        entry(4_000, "alice", "login", "alice"),
    ];
    let mut stored: Vec<AuditEntry> = Vec::new();
    for e in &written {
        let id = store.append_audit(e).await.unwrap();
        if let Some(last) = stored.last() {
            assert!(id > last.id, "ids increase: {id} after {}", last.id);
        }
        stored.push(AuditEntry { id, ..e.clone() });
    }
    assert_ne!(stored[1].id, 9_999, "the caller's id is ignored");
    let newest_first: Vec<AuditEntry> = stored.iter().rev().cloned().collect();
    let pick = |idx: &[usize]| idx.iter().map(|&i| stored[i].clone()).collect::<Vec<_>>();

    assert_eq!(
        store.list_audit(&query(None, None, None, 500)).await.unwrap(),
        newest_first
    );
    assert_eq!(
        store.list_audit(&query(None, None, None, 3)).await.unwrap(),
        newest_first[..3]
    );

    // Pages of two, each starting below the last id seen, cover all once.
    let mut paged = Vec::new();
    let mut before = None;
    loop {
        let page = store.list_audit(&query(before, None, None, 2)).await.unwrap();
        assert!(page.len() <= 2, "a page holds at most `limit` entries");
        let Some(last) = page.last() else { break };
        before = Some(last.id);
        paged.extend(page);
    }
    assert_eq!(paged, newest_first);

    assert_eq!(
        store.list_audit(&query(None, Some("alice"), None, 500)).await.unwrap(),
        pick(&[6, 5, 2, 0])
    );
    assert_eq!(
        store.list_audit(&query(None, None, Some("cancel"), 500)).await.unwrap(),
        pick(&[5, 4, 3])
    );
    assert_eq!(
        store
            .list_audit(&query(None, Some("alice"), Some("login"), 500))
            .await
            .unwrap(),
        pick(&[6, 0])
    );
    assert_eq!(
        store
            .list_audit(&query(Some(stored[5].id), Some("alice"), None, 1))
            .await
            .unwrap(),
        pick(&[2])
    );
    assert_eq!(
        store
            .list_audit(&query(Some(stored[4].id), None, Some("cancel"), 500))
            .await
            .unwrap(),
        pick(&[3])
    );
    assert_eq!(
        store.list_audit(&query(None, Some("nobody"), None, 500)).await.unwrap(),
        vec![]
    );
    assert_eq!(
        store
            .list_audit(&query(Some(stored[0].id), None, None, 500))
            .await
            .unwrap(),
        vec![],
        "nothing before the first entry"
    );
}

/// `purge_audit` deletes the entries strictly older than its cutoff and
/// says how many; the rest stay. Ids assigned later are still above every
/// id handed out before, even after the newest entries were purged.
pub async fn purge_audit_removes_entries_before_the_cutoff(store: Audit) {
    let mut ids = Vec::new();
    for at in [1_000, 2_000, 2_000, 3_000] {
        ids.push(store.append_audit(&entry(at, "alice", "login", "alice")).await.unwrap());
    }
    assert_eq!(store.purge_audit(1_000).await.unwrap(), 0, "strictly older");
    assert_eq!(store.purge_audit(2_000).await.unwrap(), 1);
    assert_eq!(store.purge_audit(2_000).await.unwrap(), 0, "already gone");
    let left: Vec<i64> = store
        .list_audit(&query(None, None, None, 500))
        .await
        .unwrap()
        .iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(left, vec![ids[3], ids[2], ids[1]]);

    assert_eq!(store.purge_audit(3_001).await.unwrap(), 3);
    assert_eq!(store.list_audit(&query(None, None, None, 500)).await.unwrap(), vec![]);
    let next = store
        .append_audit(&entry(4_000, "alice", "login", "alice"))
        .await
        .unwrap();
    assert!(next > ids[3], "id {next} reused after a purge (last was {})", ids[3]);
}
