//! The chaos run as CI tests (issue 14): `rushhour bench chaos`, the real
//! binary, under steady load (orders with idempotency keys, payment
//! callbacks, some delivered twice, everything retried as real clients
//! do), then nothing acknowledged may be lost, doubled or left
//! unconfirmed.
//!
//! - Embedded (no service needed): it `kill -9`s its own `serve` child
//!   every ~2 s for 18 s, restarting it on the same files each time.
//! - Scale (PostgreSQL, Kafka and Redis needed): two `api`s and two `worker`s,
//!   an api and a worker killed in turn every ~8 s for 45 s; clients retry
//!   on the other api, killed workers are replaced.
//!
//! The command does the checking (`crates/bench/src/chaos/verify.rs`);
//! these tests hold it to its report and its exit status.

use serde_json::Value;
use std::process::Stdio;
use std::time::Duration;
use tokio::process::Command;

const DURATION_SECS: u64 = 18;
const RATE: u64 = 200;
/// The command is bounded by itself (duration, settle, a recovery
/// deadline per kill); this only catches a hang.
const TIMEOUT: Duration = Duration::from_secs(180);

/// `rushhour bench chaos ARGS --json`, bounded by `timeout`: its report,
/// pretty-printed for messages, and its stderr. Panics unless it exited 0
/// with `passed` and every loss count 0.
async fn chaos(args: &[&str], timeout: Duration) -> (Value, String, String) {
    let child = Command::new(env!("CARGO_BIN_EXE_rushhour"))
        .args(["bench", "chaos", "--json"])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start rushhour bench chaos");
    let pid = child.id().expect("running").to_string();
    let out = match tokio::time::timeout(timeout, child.wait_with_output()).await {
        Ok(out) => out.expect("rushhour bench chaos ran"),
        Err(_) => {
            // SIGINT, not SIGKILL: the command then stops its server
            // child, which a SIGKILL would orphan.
            let _ = Command::new("kill").args(["-INT", &pid]).status().await;
            panic!("rushhour bench chaos did not finish within {timeout:?}");
        }
    };
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let report: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("no JSON report ({e}); exit {}; stderr:\n{stderr}", out.status));
    let pretty = serde_json::to_string_pretty(&report).unwrap();
    assert!(
        out.status.success(),
        "the chaos run failed:\n{pretty}\nstderr:\n{stderr}"
    );
    assert_eq!(report["passed"], true, "{pretty}");

    let checks = &report["checks"];
    for field in [
        "orders_lost",
        "orders_duplicated",
        "orders_unconfirmed",
        "payments_lost",
        "payments_duplicated",
        "payments_unapplied",
    ] {
        assert_eq!(checks[field], 0, "{field}:\n{pretty}");
    }
    (report, pretty, stderr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_every_two_seconds_loses_and_doubles_nothing() {
    let duration = format!("{DURATION_SECS}s");
    let rate = RATE.to_string();
    let (report, pretty, _) = chaos(
        &[
            "--duration",
            &duration,
            "--kill-every",
            "2s",
            "--rate",
            &rate,
            "--connections",
            "8",
            "--settle",
            "30s",
        ],
        TIMEOUT,
    )
    .await;
    let checks = &report["checks"];
    let kills = report["kills"].as_u64().unwrap();
    assert!(kills >= 4, "only {kills} kills in {DURATION_SECS} s:\n{pretty}");
    assert_eq!(
        report["recoveries"].as_array().unwrap().len() as u64,
        kills,
        "a recovery per kill"
    );
    assert!(report["to_202_ms"]["p99"].is_u64(), "{pretty}");

    // Every order the schedule offered got its final answer (a 202; no
    // refusal), and every answer was checked.
    let orders = &report["orders"];
    let acknowledged = orders["acknowledged"].as_u64().unwrap();
    assert_eq!(
        acknowledged + orders["unanswered"].as_u64().unwrap(),
        DURATION_SECS * RATE,
        "{pretty}"
    );
    assert_eq!(orders["refused"], serde_json::json!({}), "{pretty}");
    assert_eq!(checks["orders_checked"].as_u64().unwrap(), acknowledged);

    let payments = &report["payments"];
    let paid = payments["acknowledged"].as_u64().unwrap();
    assert!(paid > 0, "{pretty}");
    assert_eq!(checks["payments_checked"].as_u64().unwrap(), paid);
    assert!(payments["redeliveries_acknowledged"].as_u64().unwrap() > 0, "{pretty}");
    assert_eq!(payments["refused"], serde_json::json!({}), "{pretty}");
}

const SCALE_DURATION_SECS: u64 = 55;
const SCALE_RATE: u64 = 100;

/// Scale mode: two apis and two workers over PostgreSQL, Kafka and Redis,
/// an api and a worker `kill -9`ed in turn; every
/// acknowledged order exists once in PostgreSQL and is confirmed, every
/// acknowledged payment is applied once, and each killed process comes
/// back (a restarted api answers 202s, a replaced worker catches up).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_mode_survives_apis_and_workers_killed_in_turn() {
    let name = "scale_mode_survives_apis_and_workers_killed_in_turn";
    let (Some(kafka), Some(pg), Some(redis)) = (
        testkit::service_url("RUSHHOUR_TEST_KAFKA_BROKERS", name),
        testkit::service_url("RUSHHOUR_TEST_POSTGRES_URL", name),
        testkit::service_url("RUSHHOUR_TEST_REDIS_URL", name),
    ) else {
        return;
    };
    let _serial = crate::scale::SERIAL.lock().await;
    let duration = format!("{SCALE_DURATION_SECS}s");
    let rate = SCALE_RATE.to_string();
    let args = [
        "--mode",
        "scale",
        "--postgres",
        &pg,
        "--kafka",
        &kafka,
        "--redis",
        &redis,
        "--duration",
        &duration,
        "--kill-every",
        "8s",
        "--rate",
        &rate,
        "--connections",
        "8",
        "--settle",
        "60s",
    ];
    // Setup (migrations, four processes, the warm-up) and a worker's
    // catching up come on top of the duration; still bounded.
    let (report, pretty, stderr) = chaos(&args, Duration::from_secs(300)).await;
    eprintln!("{stderr}");

    assert_eq!(report["mode"], "scale", "{pretty}");
    let by_role = &report["kills_by_role"];
    assert!(
        by_role["api"].as_u64().unwrap_or(0) >= 2 && by_role["worker"].as_u64().unwrap_or(0) >= 2,
        "two kills of each kind, in turn:\n{pretty}"
    );
    for (i, r) in report["recoveries"].as_array().unwrap().iter().enumerate() {
        let expected = if i % 2 == 0 { "api" } else { "worker" };
        assert_eq!(r["role"], expected, "kill {i} of the wrong kind:\n{pretty}");
        assert!(r["to_ready_ms"].is_u64(), "kill {i} never ready again:\n{pretty}");
        let back = if expected == "api" {
            "to_202_ms"
        } else {
            "to_caught_up_ms"
        };
        assert!(r[back].is_u64(), "kill {i} never back ({back}):\n{pretty}");
    }
    assert!(report["to_caught_up_ms"]["p99"].is_u64(), "{pretty}");

    let orders = &report["orders"];
    let acknowledged = orders["acknowledged"].as_u64().unwrap();
    assert_eq!(
        acknowledged + orders["unanswered"].as_u64().unwrap(),
        SCALE_DURATION_SECS * SCALE_RATE + orders["warm_up"].as_u64().unwrap(),
        "every scheduled order answered or counted unanswered:\n{pretty}"
    );
    assert_eq!(orders["refused"], serde_json::json!({}), "{pretty}");
    assert_eq!(report["checks"]["orders_checked"].as_u64().unwrap(), acknowledged);
    let payments = &report["payments"];
    assert!(payments["acknowledged"].as_u64().unwrap() > 0, "{pretty}");
    assert_eq!(payments["refused"], serde_json::json!({}), "{pretty}");
}
