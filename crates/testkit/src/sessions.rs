//! Contract suite for the `SessionStore` and `LoginAttempts` ports: the
//! behaviour every backend (SQLite embedded, Redis in scale mode) must
//! show, as plain `async fn`s taking a fresh, empty backend serving both
//! ports. One backend serves both in every deployment, so one case list
//! covers both, and a backend's `tests/it` runs it through
//! `sessions_contract_cases!` (one test per case) or `run_all`.
//!
//! Time is passed in (`now`), never read, so a case moves past an expiry by
//! asking with a later `now`. The times start at the system's now rather
//! than a fixed date because the Redis backend also hands expiries to Redis
//! (`PXAT`), which would drop a session stamped in the past at once; every
//! expiry a case sets is hours ahead, so Redis drops nothing while a case
//! runs.
//!
//! Besides the ports' docs, the suite pins what the `sessions` crate
//! decided where they leave room: a repeated hash is a `Conflict`, a touch
//! never revives an expired session nor passes `absolute_expiry`, and
//! ending something that is not there is not an error.

use std::future::Future;
use std::sync::Arc;

use domain::identity::{Attempts, Role, Session, token_hash};
use domain::ports::{LoginAttempts, PortError, SessionStore};
use uuid::Uuid;

/// One backend, both ports.
#[derive(Clone)]
pub struct Backend {
    pub sessions: Arc<dyn SessionStore>,
    pub attempts: Arc<dyn LoginAttempts>,
}

/// Calls `$callback! { case, case, ... }` with every case of the suite.
#[macro_export]
macro_rules! sessions_contract_cases {
    ($callback:ident) => {
        $callback! {
            created_sessions_are_found_by_hash,
            expired_sessions_are_none,
            touch_slides_expiry_within_the_absolute_limit,
            deleted_sessions_are_gone,
            delete_user_sessions_ends_only_that_users,
            purge_drops_only_expired_sessions,
            failures_count_up,
            the_window_forgets_from_the_last_failure,
            clear_forgets_a_key,
        }
    };
}

macro_rules! case_names {
    ($($case:ident),* $(,)?) => { &[$(stringify!($case)),*] };
}

/// The names of every case, in the order `run_all` runs them.
pub const CASES: &[&str] = sessions_contract_cases!(case_names);

/// Run every case, each on a fresh backend from `make`.
pub async fn run_all<F, Fut>(make: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Backend>,
{
    macro_rules! run {
        ($($case:ident),* $(,)?) => {$(
            $case(make().await).await;
        )*};
    }
    sessions_contract_cases!(run);
}

const MINUTE: i64 = 60_000;
const HOUR: i64 = 60 * MINUTE;

/// Every case's "now": the system's time, whole seconds.
fn base() -> i64 {
    domain::ports::system_now_ms() / 1000 * 1000
}

/// A session of `user` created at `at`: idle expiry in an hour, absolute in
/// four.
fn session(user: Uuid, at: i64) -> Session {
    Session {
        token_hash: token_hash(&Uuid::now_v7().to_string()),
        user_id: user,
        username: format!("user-{}", &user.simple().to_string()[..8]),
        role: Role::Manager,
        csrf: Uuid::now_v7().simple().to_string(),
        created_at: at,
        last_seen_at: at,
        expires_at: at + HOUR,
        absolute_expiry: at + 4 * HOUR,
    }
}

async fn created(b: &Backend, s: &Session) {
    b.sessions.create_session(s).await.expect("create_session");
}

async fn get(b: &Backend, hash: &str, now: i64) -> Option<Session> {
    b.sessions.session(hash, now).await.expect("session")
}

/// What was created comes back whole; an unknown hash is `None`; a second
/// session under the same hash is refused.
pub async fn created_sessions_are_found_by_hash(b: Backend) {
    b.sessions.health().await.expect("healthy");
    let t = base();
    let s = session(Uuid::now_v7(), t);
    created(&b, &s).await;
    assert_eq!(get(&b, &s.token_hash, t).await, Some(s.clone()));
    assert_eq!(get(&b, &token_hash("nobody"), t).await, None);
    let again = Session {
        username: "someone-else".into(),
        ..s.clone()
    };
    assert!(
        matches!(b.sessions.create_session(&again).await, Err(PortError::Conflict(_))),
        "a repeated hash is a conflict"
    );
    assert_eq!(get(&b, &s.token_hash, t).await, Some(s), "the first session stands");
}

/// A session is live while `now < expires_at`.
pub async fn expired_sessions_are_none(b: Backend) {
    let t = base();
    let s = session(Uuid::now_v7(), t);
    created(&b, &s).await;
    assert!(get(&b, &s.token_hash, s.expires_at - 1).await.is_some());
    assert_eq!(get(&b, &s.token_hash, s.expires_at).await, None);
    assert_eq!(get(&b, &s.token_hash, s.expires_at + HOUR).await, None);
}

/// A touch moves `last_seen_at` and the expiry, never past the absolute
/// expiry, and does not revive an expired session or create an unknown one.
pub async fn touch_slides_expiry_within_the_absolute_limit(b: Backend) {
    let t = base();
    let s = session(Uuid::now_v7(), t);
    created(&b, &s).await;

    let seen = t + 50 * MINUTE;
    b.sessions
        .touch_session(&s.token_hash, seen, seen + HOUR)
        .await
        .expect("touch");
    let later = t + 90 * MINUTE;
    let got = get(&b, &s.token_hash, later)
        .await
        .expect("alive past its first expiry");
    assert_eq!((got.last_seen_at, got.expires_at), (seen, seen + HOUR));
    assert_eq!((got.created_at, got.absolute_expiry), (s.created_at, s.absolute_expiry));

    b.sessions
        .touch_session(&s.token_hash, later, later + 10 * HOUR)
        .await
        .expect("touch");
    let got = get(&b, &s.token_hash, later).await.expect("alive");
    assert_eq!(got.expires_at, s.absolute_expiry, "capped at the absolute expiry");
    assert_eq!(get(&b, &s.token_hash, s.absolute_expiry).await, None);

    let stale = session(Uuid::now_v7(), t);
    created(&b, &stale).await;
    let after = stale.expires_at + MINUTE;
    b.sessions
        .touch_session(&stale.token_hash, after, after + HOUR)
        .await
        .expect("touching an expired session is no error");
    assert_eq!(get(&b, &stale.token_hash, after).await, None, "not revived");

    let unknown = token_hash("never-created");
    b.sessions
        .touch_session(&unknown, t, t + HOUR)
        .await
        .expect("touching an unknown session is no error");
    assert_eq!(get(&b, &unknown, t).await, None, "not created");
}

/// Deleting ends a session at once; deleting it again is no error.
pub async fn deleted_sessions_are_gone(b: Backend) {
    let t = base();
    let user = Uuid::now_v7();
    let (gone, kept) = (session(user, t), session(user, t));
    created(&b, &gone).await;
    created(&b, &kept).await;
    b.sessions.delete_session(&gone.token_hash).await.expect("delete");
    assert_eq!(get(&b, &gone.token_hash, t).await, None);
    assert_eq!(get(&b, &kept.token_hash, t).await, Some(kept.clone()));
    b.sessions.delete_session(&gone.token_hash).await.expect("delete again");
    b.sessions
        .delete_session(&token_hash("never-created"))
        .await
        .expect("delete unknown");
    assert_eq!(
        b.sessions.delete_user_sessions(user).await.unwrap(),
        1,
        "only the kept one was left"
    );
}

/// Ending a user's sessions ends all of theirs and nobody else's.
pub async fn delete_user_sessions_ends_only_that_users(b: Backend) {
    let t = base();
    let (alice, bob) = (Uuid::now_v7(), Uuid::now_v7());
    let alices = [session(alice, t), session(alice, t + MINUTE)];
    let bobs = session(bob, t);
    for s in alices.iter().chain([&bobs]) {
        created(&b, s).await;
    }
    assert_eq!(b.sessions.delete_user_sessions(alice).await.unwrap(), 2);
    for s in &alices {
        assert_eq!(get(&b, &s.token_hash, t + MINUTE).await, None);
    }
    assert_eq!(get(&b, &bobs.token_hash, t).await, Some(bobs));
    assert_eq!(b.sessions.delete_user_sessions(alice).await.unwrap(), 0);
    assert_eq!(b.sessions.delete_user_sessions(Uuid::now_v7()).await.unwrap(), 0);

    // A user whose sessions were ended can log in again.
    let fresh = session(alice, t + 2 * MINUTE);
    created(&b, &fresh).await;
    assert_eq!(get(&b, &fresh.token_hash, t + 2 * MINUTE).await, Some(fresh));
}

/// Purge drops what has expired at `now`, counts it, and keeps the rest.
pub async fn purge_drops_only_expired_sessions(b: Backend) {
    let t = base();
    let user = Uuid::now_v7();
    let old = session(user, t);
    let live = Session {
        expires_at: t + 3 * HOUR,
        ..session(user, t)
    };
    created(&b, &old).await;
    created(&b, &live).await;
    let now = t + 2 * HOUR;
    assert_eq!(b.sessions.purge_sessions(now).await.unwrap(), 1);
    assert_eq!(get(&b, &live.token_hash, now).await, Some(live.clone()));
    assert_eq!(b.sessions.purge_sessions(now).await.unwrap(), 0);
    assert_eq!(
        b.sessions.delete_user_sessions(user).await.unwrap(),
        1,
        "the purged one is gone for good"
    );
}

async fn record(b: &Backend, key: &str, now: i64, window: i64) -> Attempts {
    b.attempts
        .record_failure(key, now, window)
        .await
        .expect("record_failure")
}

async fn attempts(b: &Backend, key: &str, now: i64) -> Attempts {
    b.attempts.attempts(key, now).await.expect("attempts")
}

/// Each failure counts one more under its key, and only its key.
pub async fn failures_count_up(b: Backend) {
    let t = base();
    let (user, addr) = ("user:alice", "ip:203.0.113.7");
    assert_eq!(attempts(&b, user, t).await, Attempts::default());
    assert_eq!(
        record(&b, user, t, 15 * MINUTE).await,
        Attempts { count: 1, last_at: t }
    );
    assert_eq!(
        record(&b, user, t + 1_000, 15 * MINUTE).await,
        Attempts {
            count: 2,
            last_at: t + 1_000
        }
    );
    assert_eq!(record(&b, addr, t + 2_000, 15 * MINUTE).await.count, 1);
    assert_eq!(
        attempts(&b, user, t + 3_000).await,
        Attempts {
            count: 2,
            last_at: t + 1_000
        }
    );
    assert_eq!(attempts(&b, addr, t + 3_000).await.count, 1);
    assert_eq!(attempts(&b, "user:bob", t + 3_000).await, Attempts::default());
}

/// A counter forgets itself `window` after its last failure (not its
/// first), and a failure after that starts it again at one.
pub async fn the_window_forgets_from_the_last_failure(b: Backend) {
    let t = base();
    let window = MINUTE;
    let key = "user:carol";
    record(&b, key, t, window).await;
    record(&b, key, t + 50_000, window).await;
    assert_eq!(
        attempts(&b, key, t + 100_000).await.count,
        2,
        "still counted: the window runs from the last failure"
    );
    assert_eq!(attempts(&b, key, t + 50_000 + window).await, Attempts::default());
    let restart = t + 50_000 + window;
    assert_eq!(
        record(&b, key, restart, window).await,
        Attempts {
            count: 1,
            last_at: restart
        }
    );
}

/// A successful login clears its counter; clearing an unknown key is no
/// error.
pub async fn clear_forgets_a_key(b: Backend) {
    let t = base();
    record(&b, "user:dave", t, HOUR).await;
    record(&b, "user:dave", t + 1, HOUR).await;
    record(&b, "user:erin", t, HOUR).await;
    b.attempts.clear_attempts("user:dave").await.expect("clear");
    assert_eq!(attempts(&b, "user:dave", t + 2).await, Attempts::default());
    assert_eq!(attempts(&b, "user:erin", t + 2).await.count, 1);
    b.attempts.clear_attempts("user:nobody").await.expect("clear unknown");
    assert_eq!(record(&b, "user:dave", t + 3, HOUR).await.count, 1);
}
