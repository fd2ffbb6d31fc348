//! `rushhour monitor` against a real server: the binary is run with
//! `--once` and `--json` against an app serving on a loopback port after a
//! few orders, and against an address nobody listens on. The live view's
//! drawing is tested with ratatui's `TestBackend` in `monitor::view`.

use serde_json::Value;
use std::time::{Duration, Instant};
use tokio::process::Command;

use crate::support::{STAFF_KEY, latte_order, spawn_app};

/// Run `rushhour monitor <args>` with `key` in `RUSHHOUR_MONITOR_KEY`.
async fn monitor(args: &[&str], key: Option<&str>) -> std::process::Output {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rushhour"));
    cmd.arg("monitor")
        .args(args)
        .current_dir(dir.path())
        .env("RUSHHOUR__TELEMETRY__LOG_FILTER", "warn")
        .env_remove("RUSHHOUR_MONITOR_KEY")
        .kill_on_drop(true);
    if let Some(k) = key {
        cmd.env("RUSHHOUR_MONITOR_KEY", k);
    }
    tokio::time::timeout(Duration::from_secs(30), cmd.output())
        .await
        .expect("the monitor exits")
        .expect("run the monitor")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[tokio::test]
async fn once_and_json_read_a_running_server() {
    let app = spawn_app().await;
    let mut ids = Vec::new();
    for _ in 0..5 {
        ids.push(app.place(&latte_order()).await);
    }
    for id in &ids {
        app.settled(id).await;
    }

    // The server samples its figures every second: poll until a sample
    // holds these orders.
    let deadline = Instant::now() + Duration::from_secs(15);
    let figures = loop {
        let out = monitor(&[&app.base, "--json"], Some(STAFF_KEY)).await;
        assert!(out.status.success(), "{}", text(&out.stderr));
        let v: Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
        let took = |col: &str| {
            v["series"][col]
                .as_array()
                .unwrap()
                .iter()
                .any(|x| x.as_f64().is_some_and(|x| x > 0.0))
        };
        if took("intake_per_sec") && took("confirmed_per_sec") {
            break v;
        }
        assert!(Instant::now() < deadline, "no sample took the orders: {v}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(figures["role"], "serve");
    assert!(figures["now"]["open_streams"].is_u64());
    assert!(!figures["queues"].as_array().unwrap().is_empty());
    assert!(!figures["partitions"].as_array().unwrap().is_empty(), "{figures}");

    // The credential may come from --key as well; it is never printed.
    let out = monitor(&[&app.base, "--once", "--key", STAFF_KEY], None).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let snapshot = text(&out.stdout);
    for want in [
        "rushhour monitor",
        "in ",
        "/s  out ",
        "processors",
        "job queues",
        "default",
        "sync runs",
    ] {
        assert!(snapshot.contains(want), "{want:?} missing from\n{snapshot}");
    }
    assert!(!snapshot.contains(STAFF_KEY) && !text(&out.stderr).contains(STAFF_KEY));

    // No credential: a clear refusal and a failing exit.
    let out = monitor(&[&app.base, "--once"], None).await;
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("401"), "{}", text(&out.stderr));
    app.stop().await.unwrap();
}

#[tokio::test]
async fn a_server_that_does_not_answer_fails_clearly() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}");
    for mode in ["--once", "--json"] {
        let out = monitor(&[&url, mode], Some(STAFF_KEY)).await;
        assert!(!out.status.success(), "{mode}");
        let err = text(&out.stderr);
        assert!(err.contains(&url) && err.contains("cannot connect"), "{mode}: {err}");
        assert!(
            out.stdout.is_empty(),
            "{mode}: nothing on stdout for scripts to misread"
        );
    }
}
