//! Integration tests of the sessions crate: the `SessionStore` and
//! `LoginAttempts` contract suite (`testkit::sessions`) against
//! `SqliteSessions`, one test per case so failures are named, plus what the
//! suite cannot see (the file, its schema version, unreadable rows, the
//! config's `build`). `redis` runs the same suite against `RedisSessions`
//! when a server is configured.

mod redis;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use domain::identity::{Role, Session};
use domain::ports::PortError;
use sessions::{SessionsConfig, SqliteSessions};
use tempfile::TempDir;
use testkit::sessions::Backend;

/// A fresh backend in its own directory, alive as long as the guard.
fn fresh() -> (TempDir, Backend) {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Arc::new(SqliteSessions::open(&dir.path().join("sessions.db")).expect("open"));
    (
        dir,
        Backend {
            sessions: db.clone(),
            attempts: db,
        },
    )
}

macro_rules! sqlite_contract {
    ($($case:ident),* $(,)?) => {
        mod contract {
            $(
                #[tokio::test]
                async fn $case() {
                    let (_dir, b) = super::fresh();
                    testkit::sessions::$case(b).await;
                }
            )*
        }
    };
}
testkit::sessions_contract_cases!(sqlite_contract);

#[tokio::test]
async fn run_all_runs_every_case_on_a_fresh_backend() {
    let dirs = std::sync::Mutex::new(Vec::new());
    let made = AtomicUsize::new(0);
    testkit::sessions::run_all(|| {
        made.fetch_add(1, Ordering::SeqCst);
        let (dir, b) = fresh();
        dirs.lock().unwrap().push(dir);
        async move { b }
    })
    .await;
    assert_eq!(made.load(Ordering::SeqCst), testkit::sessions::CASES.len());
}

fn session(at: i64) -> Session {
    Session {
        token_hash: domain::identity::token_hash("t"),
        user_id: uuid::Uuid::now_v7(),
        username: "alice".into(),
        role: Role::Admin,
        csrf: "c".into(),
        created_at: at,
        last_seen_at: at,
        expires_at: at + 60_000,
        absolute_expiry: at + 120_000,
    }
}

/// `build` opens (creating folders and migrating) one file serving both
/// ports; what one port wrote survives a reopen.
#[tokio::test]
async fn build_opens_one_migrated_file_for_both_ports() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("data/sessions.db");
    let config = SessionsConfig::Sqlite { path: path.clone() };
    let s = session(1_000);
    {
        let built = config.build().await.unwrap();
        built.sessions.create_session(&s).await.unwrap();
        built
            .attempts
            .record_failure("user:alice", 1_000, 60_000)
            .await
            .unwrap();
        built.sessions.health().await.unwrap();
    }
    let conn = rusqlite::Connection::open(&path).unwrap();
    let mode: String = conn.query_row("PRAGMA journal_mode", [], |r| r.get(0)).unwrap();
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
    assert_eq!((mode.as_str(), version), ("wal", 1));
    drop(conn);

    let built = config.build().await.unwrap();
    assert_eq!(built.sessions.session(&s.token_hash, 2_000).await.unwrap(), Some(s));
    assert_eq!(built.attempts.attempts("user:alice", 2_000).await.unwrap().count, 1);
}

/// Purge also drops login-attempt counters past their window (the port has
/// no purge of its own for them), without counting them as sessions.
#[tokio::test]
async fn purge_also_drops_forgotten_attempt_counters() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sessions.db");
    let db = SqliteSessions::open(&path).unwrap();
    use domain::ports::{LoginAttempts, SessionStore};
    db.record_failure("old", 1_000, 1_000).await.unwrap();
    db.record_failure("live", 1_000, 60_000).await.unwrap();
    assert_eq!(db.purge_sessions(5_000).await.unwrap(), 0);
    let rows: Vec<String> = rusqlite::Connection::open(&path)
        .unwrap()
        .prepare("SELECT key FROM login_attempts")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(rows, ["live"]);
}

/// Rows the domain cannot represent come back as `Invalid`, never a panic.
#[tokio::test]
async fn unreadable_rows_are_invalid_not_a_panic() {
    use domain::ports::SessionStore;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sessions.db");
    let db = SqliteSessions::open(&path).unwrap();
    let s = session(1_000);
    db.create_session(&s).await.unwrap();
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute("UPDATE sessions SET role = 'owner'", []).unwrap();
    assert!(matches!(
        db.session(&s.token_hash, 1_000).await,
        Err(PortError::Invalid(_))
    ));
    conn.execute("UPDATE sessions SET role = 'admin', user_id = 'nope'", [])
        .unwrap();
    assert!(matches!(
        db.session(&s.token_hash, 1_000).await,
        Err(PortError::Invalid(_))
    ));
}

#[test]
fn a_schema_from_a_newer_binary_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sessions.db");
    drop(SqliteSessions::open(&path).unwrap());
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute_batch("PRAGMA user_version = 99")
        .unwrap();
    match SqliteSessions::open(&path) {
        Err(PortError::Invalid(msg)) => assert!(msg.contains("99"), "{msg}"),
        other => panic!("expected Invalid, got {other:?}"),
    }
}
