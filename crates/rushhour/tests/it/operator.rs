//! Operator commands reach the running server (issue 12): `rushhour sync`,
//! `warmup` and `cache clear`, run as the real binary next to a real
//! `rushhour serve` on the same data dir, change what the server serves at
//! once and say which instances they reached; with no server running they
//! still do their work and say that nobody was reached.

use domain::ports::Fleet;
use serde_json::Value;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::process::Command;

use crate::crash::{free_port, ready};

const SIM_SECRET: &str = "operator-test-secret";

/// Every schedule off: nothing but the operator changes the menu.
fn no_schedules(cmd: &mut Command) {
    for (name, _) in worker::catalog::SCHEDULES {
        cmd.env(format!("RUSHHOUR__SCHEDULER__SCHEDULES__{}", name.to_uppercase()), "");
    }
}

fn rushhour(args: &[&str], data_dir: &Path, upstream: &str) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rushhour"));
    cmd.args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .env("RUSHHOUR__TELEMETRY__LOG_FILTER", "warn")
        .env("RUSHHOUR__AUTH__STAFF_KEY", crate::support::STAFF_KEY)
        .env("RUSHHOUR__UPSTREAM__BASE_URL", upstream)
        .env("RUSHHOUR__UPSTREAM__CLIENT_SECRET", SIM_SECRET)
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    no_schedules(&mut cmd);
    cmd
}

/// Run a CLI command to completion; its stdout.
async fn run(args: &[&str], data_dir: &Path, upstream: &str) -> String {
    let out = rushhour(args, data_dir, upstream)
        .stdout(Stdio::piped())
        .output()
        .await
        .expect("run rushhour");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "rushhour {args:?} failed: {stdout}");
    stdout
}

async fn menu_skus(client: &reqwest::Client, base: &str) -> Vec<String> {
    let menu: Value = client
        .get(format!("{base}/v1/stores/{}/menu", crate::support::STORE))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    menu["categories"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|c| c["items"].as_array().unwrap())
        .filter_map(|i| i["sku"].as_str().map(str::to_owned))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_warmup_and_cache_clear_reach_the_running_server_at_once() {
    let (_, sim) = upstream::Simulator::start(upstream::SimOptions {
        accounts: 500,
        client_secret: SIM_SECRET.into(),
        ..Default::default()
    })
    .await
    .expect("start the upstream simulator");
    let upstream = sim.base_url().to_owned();

    // No server yet: the work is done here, and nobody is reached.
    let alone = tempfile::TempDir::new().unwrap();
    let out = run(&["cache", "clear"], alone.path(), &upstream).await;
    assert!(out.contains("menu caches cleared"), "{out}");
    assert!(out.contains("no running instance reached"), "{out}");

    let dir = tempfile::TempDir::new().unwrap();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let _serve = rushhour(
        &["serve", "--addr", &format!("127.0.0.1:{port}")],
        dir.path(),
        &upstream,
    )
    .stdout(Stdio::null())
    .spawn()
    .expect("start rushhour serve");
    let client = crate::support::http_client(Duration::from_secs(10));
    ready(&client, &base).await;
    // The server registers itself as it starts (a start-up wait, bounded).
    let store = store::SqliteStore::open(&dir.path().join("rushhour.db"), Default::default()).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while store.instances(0).await.unwrap().is_empty() {
        assert!(Instant::now() < deadline, "serve never joined the instance registry");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let addr = format!("127.0.0.1:{port}");

    // The server has the demo menu in its cache.
    let before = menu_skus(&client, &base).await;
    assert!(before.len() < sim.catalog_len(), "the demo menu: {before:?}");

    let out = run(&["sync", "menu"], dir.path(), &upstream).await;
    assert!(out.contains("menu: ok"), "{out}");
    assert!(
        out.contains("reached 1 running instance(s)") && out.contains(&addr),
        "{out}"
    );
    let after = menu_skus(&client, &base).await;
    assert!(
        after.len() >= sim.catalog_len(),
        "the served menu has the upstream catalog at once ({} of {} items)",
        after.len(),
        sim.catalog_len()
    );

    // A price changed upstream, synced, is served at once too; `warmup`
    // and `cache clear --auth` name the server they reached.
    let sku = after.iter().find(|s| !before.contains(s)).unwrap().clone();
    assert!(sim.set_price(&sku, 4_321));
    let out = run(&["sync", "all"], dir.path(), &upstream).await;
    assert!(out.contains("reached 1 running instance(s)"), "{out}");
    let menu: Value = client
        .get(format!("{base}/v1/stores/{}/menu", crate::support::STORE))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let text = menu.to_string();
    assert!(text.contains("4321"), "the new price of {sku} is served");

    for args in [&["warmup"][..], &["cache", "clear", "--auth"][..]] {
        let out = run(args, dir.path(), &upstream).await;
        assert!(
            out.contains("reached 1 running instance(s)") && out.contains(&addr),
            "{args:?}: {out}"
        );
    }
}
