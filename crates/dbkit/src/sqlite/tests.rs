//! Tests of the SQLite plumbing: the migration runner, the writer and the
//! readers, and the configuration form of `Synchronous`.

use super::*;

const STEPS: &[&str] = &[
    "CREATE TABLE a (id INTEGER PRIMARY KEY, v TEXT NOT NULL);",
    "ALTER TABLE a ADD COLUMN w INTEGER NOT NULL DEFAULT 0;",
];

const PROFILE: Profile = Profile::new("test db", "test", STEPS).with_foreign_keys();

#[test]
fn migrations_run_in_order_once_and_count_in_user_version() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sub/t.db");
    let conn = open_writer(&path, &PROFILE, Synchronous::Normal).unwrap();
    assert_eq!(schema_version(&conn).unwrap(), 2);
    conn.execute("INSERT INTO a (v, w) VALUES ('x', 1)", []).unwrap();
    drop(conn);
    // Reopening applies nothing again (an `ALTER TABLE` twice would fail).
    let conn = open_writer(&path, &PROFILE, Synchronous::Full).unwrap();
    assert_eq!(schema_version(&conn).unwrap(), 2);
    let n: i64 = conn.query_row("SELECT count(*) FROM a", [], |r| r.get(0)).unwrap();
    assert_eq!(n, 1);
}

#[test]
fn a_newer_schema_is_refused_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.db");
    drop(open_writer(&path, &PROFILE, Synchronous::Normal).unwrap());
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute_batch("PRAGMA user_version = 99")
        .unwrap();
    match open_writer(&path, &PROFILE, Synchronous::Normal) {
        Err(PortError::Invalid(msg)) => assert!(msg.contains("test db schema version 99"), "{msg}"),
        other => panic!("expected Invalid, got {other:?}"),
    }
    let conn = rusqlite::Connection::open(&path).unwrap();
    assert_eq!(schema_version(&conn).unwrap(), 99);
}

#[test]
fn a_failing_migration_leaves_the_previous_version() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.db");
    const BROKEN: &[&str] = &[STEPS[0], "ALTER TABLE missing ADD COLUMN x INTEGER;"];
    let broken = Profile::new("test db", "test", BROKEN);
    match open_writer(&path, &broken, Synchronous::Normal) {
        Err(PortError::Invalid(msg)) => assert!(msg.contains("missing"), "{msg}"),
        other => panic!("expected Invalid, got {other:?}"),
    }
    let conn = rusqlite::Connection::open(&path).unwrap();
    assert_eq!(schema_version(&conn).unwrap(), 1);
}

#[tokio::test]
async fn the_writer_survives_a_panicking_job_and_readers_see_its_writes() {
    let dir = tempfile::tempdir().unwrap();
    let (writer, readers) = open(&dir.path().join("t.db"), &PROFILE, Synchronous::Normal, 2).unwrap();
    let panicked = writer
        .run(|_c: &mut rusqlite::Connection| -> () { panic!("boom") })
        .await;
    assert!(matches!(panicked, Err(PortError::Unavailable(_))), "{panicked:?}");
    let inserted = writer
        .run(|c| c.execute("INSERT INTO a (v) VALUES ('after')", []))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(inserted, 1);
    assert!(writer.is_running());
    let v: String = readers
        .run(|c| c.query_row("SELECT v FROM a", [], |r| r.get(0)))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(v, "after");
    // Readers are `query_only`: a write through one is refused.
    let refused = readers
        .run(|c| c.execute("INSERT INTO a (v) VALUES ('no')", []))
        .await
        .unwrap();
    assert!(refused.is_err());
    drop(writer);
}

#[test]
fn synchronous_reads_and_writes_its_config_form() {
    assert_eq!(serde_json::to_string(&Synchronous::Full).unwrap(), "\"full\"");
    assert_eq!(
        serde_json::from_str::<Synchronous>("\"normal\"").unwrap(),
        Synchronous::Normal
    );
    assert!(serde_json::from_str::<Synchronous>("\"off\"").is_err());
    assert_eq!(Synchronous::default(), Synchronous::Full);
}
