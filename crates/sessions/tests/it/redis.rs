//! `RedisSessions` against a real Redis (`RUSHHOUR_TEST_REDIS_URL`): the
//! same contract suite as the SQLite backend, plus what only Redis shows —
//! keys that expire by themselves at the session's expiry, the user's set
//! trimmed on login, and errors that say `Unavailable` when Redis is
//! unreachable. Each test uses its own key prefix, so tests run in
//! parallel on one Redis and leave nothing behind that lives longer than
//! its sessions.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use domain::identity::{Role, Session, token_hash};
use domain::ports::{LoginAttempts, PortError, SessionStore};
use sessions::{RedisSessions, RedisSessionsOptions, SessionsConfig};
use testkit::sessions::Backend;

const VAR: &str = "RUSHHOUR_TEST_REDIS_URL";

/// A prefix no other test (or earlier run) uses.
fn prefix(test: &str) -> String {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos();
    format!("rhtest:{test}:{nanos}")
}

fn options(prefix: &str) -> RedisSessionsOptions {
    RedisSessionsOptions {
        key_prefix: prefix.into(),
        timeout: Duration::from_secs(2),
    }
}

fn backend(url: &str, test: &str) -> Backend {
    let db = Arc::new(RedisSessions::connect(url, options(&prefix(test))).unwrap());
    Backend {
        sessions: db.clone(),
        attempts: db,
    }
}

macro_rules! redis_contract {
    ($($case:ident),* $(,)?) => {
        mod contract {
            $(
                #[tokio::test]
                async fn $case() {
                    let test = concat!("sessions_redis_", stringify!($case));
                    let Some(url) = testkit::service_url(super::VAR, test) else {
                        return;
                    };
                    testkit::sessions::$case(super::backend(&url, test)).await;
                }
            )*
        }
    };
}
testkit::sessions_contract_cases!(redis_contract);

fn session(user: uuid::Uuid, at: i64, ttl_ms: i64) -> Session {
    Session {
        token_hash: token_hash(&uuid::Uuid::now_v7().to_string()),
        user_id: user,
        username: "alice".into(),
        role: Role::Barista,
        csrf: "c".into(),
        created_at: at,
        last_seen_at: at,
        expires_at: at + ttl_ms,
        absolute_expiry: at + 2 * ttl_ms,
    }
}

async fn raw(url: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

/// When `key` expires (epoch ms; negative when it has no expiry or does
/// not exist).
async fn expire_time(conn: &mut redis::aio::MultiplexedConnection, key: &str) -> i64 {
    redis::cmd("PEXPIRETIME").arg(key).query_async(conn).await.unwrap()
}

/// What Redis holds: the session key expires at the session's expiry (so
/// nobody has to purge it), the user's set expires with its last session,
/// and a touch moves both. Built through `SessionsConfig`, as wiring does.
#[tokio::test]
async fn keys_expire_with_their_sessions() {
    let Some(url) = testkit::service_url(VAR, "keys_expire_with_their_sessions") else {
        return;
    };
    let p = prefix("keys_expire_with_their_sessions");
    let built = SessionsConfig::Redis {
        url: url.clone(),
        key_prefix: p.clone(),
    }
    .build()
    .await
    .unwrap();
    let now = domain::ports::system_now_ms();
    let user = uuid::Uuid::now_v7();
    let s = session(user, now, 600_000);
    built.sessions.create_session(&s).await.unwrap();
    let mut conn = raw(&url).await;
    let session_key = format!("{p}:session:{}", s.token_hash);
    let user_key = format!("{p}:user-sessions:{user}");
    assert_eq!(expire_time(&mut conn, &session_key).await, s.expires_at);
    assert_eq!(expire_time(&mut conn, &user_key).await, s.expires_at);

    built
        .sessions
        .touch_session(&s.token_hash, now + 1_000, now + 900_000)
        .await
        .unwrap();
    assert_eq!(expire_time(&mut conn, &session_key).await, now + 900_000);
    assert_eq!(expire_time(&mut conn, &user_key).await, now + 900_000);

    built.attempts.record_failure("user:alice", now, 300_000).await.unwrap();
    assert_eq!(
        expire_time(&mut conn, &format!("{p}:login-attempts:user:alice")).await,
        now + 300_000
    );

    built.sessions.delete_user_sessions(user).await.unwrap();
    let left: i64 = redis::cmd("EXISTS")
        .arg(&session_key)
        .arg(&user_key)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(left, 0);
}

/// A login trims the hashes of the user's sessions that have expired, so
/// the set holds the live ones only.
#[tokio::test]
async fn a_login_trims_the_users_expired_sessions() {
    let Some(url) = testkit::service_url(VAR, "a_login_trims_the_users_expired_sessions") else {
        return;
    };
    let p = prefix("a_login_trims_the_users_expired_sessions");
    let db = RedisSessions::connect(&url, options(&p)).unwrap();
    let now = domain::ports::system_now_ms();
    let user = uuid::Uuid::now_v7();
    let old = session(user, now, 60_000);
    db.create_session(&old).await.unwrap();
    // A later login, after the first session's expiry.
    let later = session(user, now + 120_000, 600_000);
    db.create_session(&later).await.unwrap();
    let members: Vec<String> = redis::cmd("ZRANGE")
        .arg(format!("{p}:user-sessions:{user}"))
        .arg(0)
        .arg(-1)
        .query_async(&mut raw(&url).await)
        .await
        .unwrap();
    assert_eq!(members, [later.token_hash]);
}

/// Unreachable Redis: every call is `Unavailable` (retrying may help),
/// bounded by the timeout; a malformed URL is `Invalid` at connect.
#[tokio::test]
async fn an_unreachable_redis_is_unavailable() {
    let db = RedisSessions::connect(
        "redis://127.0.0.1:1",
        RedisSessionsOptions {
            timeout: Duration::from_millis(200),
            ..RedisSessionsOptions::default()
        },
    )
    .unwrap();
    let now = domain::ports::system_now_ms();
    let s = session(uuid::Uuid::now_v7(), now, 60_000);
    assert!(matches!(db.create_session(&s).await, Err(PortError::Unavailable(_))));
    assert!(matches!(
        db.session(&s.token_hash, now).await,
        Err(PortError::Unavailable(_))
    ));
    assert!(matches!(db.health().await, Err(PortError::Unavailable(_))));
    assert!(matches!(
        db.record_failure("k", now, 1_000).await,
        Err(PortError::Unavailable(_))
    ));
    assert!(matches!(
        RedisSessions::connect("not a url", RedisSessionsOptions::default()),
        Err(PortError::Invalid(_))
    ));
}
