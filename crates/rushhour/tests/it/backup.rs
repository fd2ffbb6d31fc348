//! Backups for real: `rushhour backup` (the real binary) copies a running
//! embedded instance while orders keep arriving, `rushhour restore` puts
//! the copy into a fresh directory, and a server started there has every
//! order acknowledged before the backup began. A restore onto the files
//! of a running instance is refused.

use reqwest::StatusCode;
use serde_json::Value;
use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::process::{Child, Command};

use crate::crash::{free_port, ready};

const KEY: &str = "backup-test";

fn rushhour(args: &[&str], data_dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rushhour"));
    cmd.args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .env("RUSHHOUR__TELEMETRY__LOG_FILTER", "warn")
        .env("RUSHHOUR__AUTH__STAFF_KEY", KEY)
        .kill_on_drop(true);
    cmd
}

fn serve(data_dir: &Path, port: u16) -> Child {
    rushhour(&["serve", "--addr", &format!("127.0.0.1:{port}")], data_dir)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start rushhour serve")
}

async fn run(args: &[&str], data_dir: &Path) -> (bool, String) {
    let out = rushhour(args, data_dir).output().await.expect("run rushhour");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_under_load_restores_every_acknowledged_order() {
    let live = tempfile::TempDir::new().unwrap();
    let backups = tempfile::TempDir::new().unwrap();
    let fresh = tempfile::TempDir::new().unwrap();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let client = crate::support::http_client(Duration::from_secs(10));
    let mut server = serve(live.path(), port);
    ready(&client, &base).await;

    // Eight clients place orders until told to stop; ids answered 202 are kept.
    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let body = serde_json::json!({"store": "demo-downtown", "lines": [{"sku": "latte", "size": "medium", "qty": 1}]});
    let mut clients = Vec::new();
    for c in 0..8 {
        let (client, base, body, acked, stop) =
            (client.clone(), base.clone(), body.clone(), acked.clone(), stop.clone());
        clients.push(tokio::spawn(async move {
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let res = client
                    .post(format!("{base}/v1/orders"))
                    .header("Idempotency-Key", format!("backup-{c}-{i}"))
                    .json(&body)
                    .send()
                    .await;
                if let Ok(r) = res
                    && r.status() == StatusCode::ACCEPTED
                    && let Ok(v) = r.json::<Value>().await
                {
                    acked.lock().unwrap().push(v["id"].as_str().unwrap().to_owned());
                }
            }
        }));
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while acked.lock().unwrap().len() < 200 {
        assert!(Instant::now() < deadline, "intake too slow to reach 200 orders");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Everything acknowledged so far must survive; the backup runs while
    // the clients go on placing orders.
    let before: Vec<String> = acked.lock().unwrap().clone();
    let dir_arg = backups.path().to_str().unwrap().to_owned();
    let (ok, out) = run(&["backup", "--dir", &dir_arg], live.path()).await;
    assert!(ok, "backup failed: {out}");
    let after_backup = acked.lock().unwrap().len();
    assert!(after_backup > before.len(), "orders kept arriving during the backup");

    // The backup folder: a manifest with checksums, schema versions and the log's end.
    let folders = dbkit::backup::list(backups.path()).unwrap();
    assert_eq!(folders.len(), 1, "one timestamped backup folder");
    let folder = &folders[0];
    let manifest = dbkit::backup::verify(folder).unwrap();
    let names: Vec<&str> = manifest.files.iter().map(|f| f.name.as_str()).collect();
    for db in [
        "rushhour.db",
        "log.db",
        "jobs.db",
        "sessions.db",
        "session.key",
        "webhook.secret",
    ] {
        assert!(names.contains(&db), "{db} is in the backup: {names:?}");
    }
    assert_eq!(names.last(), Some(&"log.db"), "the log is copied last");
    let store = manifest.files.iter().find(|f| f.name == "rushhour.db").unwrap();
    assert!(store.schema_version.unwrap() >= 1);
    assert_eq!(store.sha256.len(), 64);
    let records: u64 = manifest.log_end_offsets.values().sum();
    assert!(
        records >= before.len() as u64,
        "the log's copy holds at least the acknowledged orders"
    );

    // Restoring onto the running instance's files is refused.
    let folder_arg = folder.to_str().unwrap().to_owned();
    let (ok, out) = run(&["restore", &folder_arg, "--force"], live.path()).await;
    assert!(!ok, "restore onto a running instance must fail");
    assert!(out.contains("is running"), "says why: {out}");

    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.await.unwrap();
    }
    server.start_kill().unwrap();
    server.wait().await.unwrap();

    // Restore into a fresh directory and start a server on it.
    let (ok, out) = run(&["restore", &folder_arg], fresh.path()).await;
    assert!(ok, "restore failed: {out}");
    let (ok, out) = run(&["restore", &folder_arg], fresh.path()).await;
    assert!(
        !ok && out.contains("--force"),
        "a second restore over the files needs --force: {out}"
    );
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let _restored = serve(fresh.path(), port);
    ready(&client, &base).await;
    for id in &before {
        let r = client
            .get(format!("{base}/v1/orders/{id}"))
            .bearer_auth(KEY)
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.status(),
            StatusCode::OK,
            "acknowledged order {id} is in the restored instance"
        );
    }
}

#[tokio::test]
async fn a_damaged_backup_is_refused_before_anything_is_touched() {
    let live = tempfile::TempDir::new().unwrap();
    let backups = tempfile::TempDir::new().unwrap();
    let target = tempfile::TempDir::new().unwrap();
    let (ok, out) = run(&["migrate"], live.path()).await;
    assert!(ok, "migrate: {out}");
    let dir_arg = backups.path().to_str().unwrap().to_owned();
    let (ok, out) = run(&["backup", "--dir", &dir_arg], live.path()).await;
    assert!(ok, "backup: {out}");
    let folder = dbkit::backup::list(backups.path()).unwrap().remove(0);
    let store = folder.join("rushhour.db");
    let mut bytes = std::fs::read(&store).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&store, bytes).unwrap();
    let (ok, out) = run(&["restore", folder.to_str().unwrap()], target.path()).await;
    assert!(!ok, "a damaged backup must not restore");
    assert!(out.contains("does not match the manifest"), "{out}");
    assert!(!target.path().join("rushhour.db").exists(), "nothing was restored");
}
