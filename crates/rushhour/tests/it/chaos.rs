//! The chaos run as a CI test (issue 14): `rushhour bench chaos`, the real
//! binary, `kill -9`s its own `serve` child every ~2 s for 18 s under
//! steady load (orders with idempotency keys, payment callbacks, some
//! delivered twice, everything retried as real clients do), restarting it
//! on the same files each time; then nothing acknowledged may be lost,
//! doubled or left unconfirmed. The command does the checking
//! (`crates/bench/src/chaos/verify.rs`); this test holds it to its report
//! and its exit status. Embedded mode: no service needed.

use serde_json::Value;
use std::process::Stdio;
use std::time::Duration;
use tokio::process::Command;

const DURATION_SECS: u64 = 18;
const RATE: u64 = 200;
/// The command is bounded by itself (duration, settle, a recovery
/// deadline per kill); this only catches a hang.
const TIMEOUT: Duration = Duration::from_secs(180);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_every_two_seconds_loses_and_doubles_nothing() {
    let duration = format!("{DURATION_SECS}s");
    let rate = RATE.to_string();
    let child = Command::new(env!("CARGO_BIN_EXE_rushhour"))
        .args(["bench", "chaos", "--duration", &duration, "--kill-every", "2s"])
        .args(["--rate", &rate, "--connections", "8", "--settle", "30s", "--json"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start rushhour bench chaos");
    let pid = child.id().expect("running").to_string();
    let out = match tokio::time::timeout(TIMEOUT, child.wait_with_output()).await {
        Ok(out) => out.expect("rushhour bench chaos ran"),
        Err(_) => {
            // SIGINT, not SIGKILL: the command then stops its server
            // child, which a SIGKILL would orphan.
            let _ = Command::new("kill").args(["-INT", &pid]).status().await;
            panic!("rushhour bench chaos did not finish within {TIMEOUT:?}");
        }
    };
    let stderr = String::from_utf8_lossy(&out.stderr);
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
