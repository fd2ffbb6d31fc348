//! `GET /v1/admin/profile/cpu` and `rushhour profile`: a real flamegraph
//! of the running app (sampled while a thread burns CPU, so there are
//! frames to draw), admins only, one profile at a time.
//!
//! `GET /v1/admin/profile/heap` and `rushhour profile --heap` against the
//! real binary (the only process that allocates through jemalloc): a
//! flamegraph of live allocations naming our frames, pprof protobuf on
//! request, a window or since start, one at a time, admins only. This test
//! binary itself allocates with the system allocator: the in-process app
//! answers 503 `profiling_unavailable`.

use crate::crash::{free_port, ready};
use crate::support::*;
use reqwest::StatusCode;
use rushhour::profile_cli::{HeapFormat, ProfileArgs};
use serde_json::{Value, json};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::process::{Child, Command};

/// A thread that keeps one core busy until dropped.
struct Burner(Arc<AtomicBool>);

impl Burner {
    fn start() -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        std::thread::spawn(move || {
            let mut x: u64 = 1;
            while !flag.load(Ordering::Relaxed) {
                for i in 0..10_000u64 {
                    x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(i));
                }
            }
        });
        Burner(stop)
    }
}

impl Drop for Burner {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

fn assert_flamegraph(svg: &str) {
    assert!(
        svg.starts_with("<?xml") || svg.starts_with("<svg"),
        "{}",
        &svg[..svg.len().min(200)]
    );
    assert!(svg.contains("<svg"), "an SVG document");
    assert!(svg.matches("<title>").count() >= 2, "frames with their sample counts");
    assert!(svg.contains("samples"), "frames name their samples");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cpu_profile_is_a_flamegraph_for_admins_only_one_at_a_time() {
    let app = spawn_app().await;
    let _burn = Burner::start();

    // The CLI against the running app.
    let dir = tempfile::TempDir::new().unwrap();
    let output = dir.path().join("cpu.svg");
    let taken = rushhour::profile_cli::run(&ProfileArgs {
        url: app.base.clone(),
        key: Some(STAFF_KEY.into()),
        heap: false,
        seconds: Some(1),
        format: HeapFormat::Svg,
        output: Some(output.clone()),
    })
    .await
    .expect("rushhour profile");
    assert_eq!(taken.file, output);
    assert_eq!(
        taken.to_string(),
        format!(
            "CPU profile of 1 s written to {} ({} bytes)",
            output.display(),
            taken.bytes
        )
    );
    let svg = std::fs::read_to_string(&output).unwrap();
    assert_eq!(svg.len(), taken.bytes);
    assert_flamegraph(&svg);

    // Bad lengths, no credential, a barista: refused.
    for bad in ["0", "61", "x"] {
        let r = app.staff_get(&format!("/v1/admin/profile/cpu?seconds={bad}")).await;
        problem(r, 400, "invalid_query").await;
    }
    let r = app.get("/v1/admin/profile/cpu?seconds=1").await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let added = app
        .client
        .post(app.url("/v1/admin/users"))
        .bearer_auth(STAFF_KEY)
        .json(&json!({"username": "pat", "role": "barista", "password": "a long enough passphrase"}))
        .send()
        .await
        .unwrap();
    assert!(added.status().is_success(), "{}", added.text().await.unwrap());
    let login: Value = app
        .client
        .post(app.url("/v1/sessions"))
        .json(&json!({"username": "pat", "password": "a long enough passphrase"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let barista = login["token"].as_str().unwrap().to_owned();
    let r = app
        .client
        .get(app.url("/v1/admin/profile/cpu?seconds=1"))
        .bearer_auth(&barista)
        .send()
        .await
        .unwrap();
    problem(r, 403, "forbidden").await;

    // Two at once: one draws the profile, the other is told it runs.
    let ask = || {
        let req = app
            .client
            .get(app.url("/v1/admin/profile/cpu?seconds=2"))
            .bearer_auth(STAFF_KEY);
        async move {
            let r = req.send().await.unwrap();
            let status = r.status();
            (status, r.text().await.unwrap())
        }
    };
    let (a, b) = tokio::join!(ask(), ask());
    let mut statuses = [a.0.as_u16(), b.0.as_u16()];
    statuses.sort();
    assert_eq!(statuses, [200, 409], "{} / {}", a.1.len(), b.1);
    let (ok, busy) = if a.0 == StatusCode::OK { (a, b) } else { (b, a) };
    assert_flamegraph(&ok.1);
    let busy: Value = serde_json::from_str(&busy.1).unwrap();
    assert_eq!(busy["code"], "profile_running");
}

#[tokio::test]
async fn this_test_process_has_no_heap_profiler() {
    let app = spawn_app().await;
    let r = app.staff_get("/v1/admin/profile/heap?seconds=1").await;
    let p = problem(r, 503, "profiling_unavailable").await;
    assert!(p["detail"].as_str().unwrap().contains("jemalloc"), "{p}");
}

const HEAP_KEY: &str = "heap-profile-test";

/// `rushhour serve` on `port` with `env` on top. `_RJEM_MALLOC_CONF` (read
/// by jemalloc at start, after the conf baked in at build time) samples
/// every 4 KiB instead of 512 KiB, so even a short window of a small test
/// holds samples.
fn serve(dir: &std::path::Path, port: u16, env: &[(&str, &str)]) -> Child {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rushhour"));
    cmd.args(["serve", "--addr", &format!("127.0.0.1:{port}"), "--data-dir"])
        .arg(dir)
        .env("RUSHHOUR__TELEMETRY__LOG_FILTER", "warn")
        .env("RUSHHOUR__AUTH__STAFF_KEY", HEAP_KEY)
        .env("_RJEM_MALLOC_CONF", "lg_prof_sample:12")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.spawn().expect("start rushhour")
}

/// A heap flamegraph: an SVG document whose frames carry byte counts.
fn assert_heap_flamegraph(svg: &str) {
    assert!(
        svg.starts_with("<?xml") || svg.starts_with("<svg"),
        "{}",
        &svg[..svg.len().min(200)]
    );
    assert!(svg.contains("<svg"), "an SVG document");
    assert!(svg.contains("rushhour heap"), "our title");
}

fn heap_args(base: &str, seconds: Option<u64>, format: HeapFormat, output: &std::path::Path) -> ProfileArgs {
    ProfileArgs {
        url: base.to_owned(),
        key: Some(HEAP_KEY.into()),
        heap: true,
        seconds,
        format,
        output: Some(output.to_owned()),
    }
}

/// Place orders until `stop`, so a window has allocations to record.
fn keep_ordering(client: reqwest::Client, base: String, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<usize> {
    tokio::spawn(async move {
        let mut placed = 0;
        while !stop.load(Ordering::Relaxed) {
            let r = client
                .post(format!("{base}/v1/orders"))
                .header("Idempotency-Key", uuid::Uuid::now_v7().to_string())
                .json(&latte_order())
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), StatusCode::ACCEPTED);
            placed += 1;
        }
        placed
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_heap_profile_of_the_real_binary_over_a_window_or_since_start() {
    let dir = tempfile::TempDir::new().unwrap();
    let out = tempfile::TempDir::new().unwrap();
    let client = http_client(Duration::from_secs(60));

    // Off until asked (the default): each ask records a window.
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut server = serve(&dir.path().join("window"), port, &[]);
    ready(&client, &base).await;
    let stop = Arc::new(AtomicBool::new(false));
    let orders = keep_ordering(client.clone(), base.clone(), stop.clone());
    let svg_file = out.path().join("heap.svg");
    let taken = rushhour::profile_cli::run(&heap_args(&base, Some(1), HeapFormat::Svg, &svg_file))
        .await
        .expect("rushhour profile --heap");
    assert_eq!(taken.covers, "1s");
    assert_eq!(
        taken.to_string(),
        format!(
            "heap profile (allocated in the last 1 s and still live) written to {} ({} bytes)",
            svg_file.display(),
            taken.bytes
        )
    );
    let svg = std::fs::read_to_string(&svg_file).unwrap();
    assert_eq!(svg.len(), taken.bytes);
    assert_heap_flamegraph(&svg);
    let pb_file = out.path().join("heap.pb.gz");
    let taken = rushhour::profile_cli::run(&heap_args(&base, Some(1), HeapFormat::Pprof, &pb_file))
        .await
        .expect("rushhour profile --heap --format pprof");
    let pb = std::fs::read(&pb_file).unwrap();
    assert_eq!(pb.len(), taken.bytes);
    assert_eq!(&pb[..2], &[0x1f, 0x8b], "gzipped protobuf");
    stop.store(true, Ordering::Relaxed);
    assert!(orders.await.unwrap() > 0, "orders were placed during the windows");

    // Two at once: one records, the other is told one runs.
    let ask = || {
        let req = client
            .get(format!("{base}/v1/admin/profile/heap?seconds=2"))
            .bearer_auth(HEAP_KEY);
        async move {
            let r = req.send().await.unwrap();
            let status = r.status();
            let window = r.headers().get("x-heap-window").map(|v| v.to_str().unwrap().to_owned());
            (status, window, r.text().await.unwrap())
        }
    };
    let (a, b) = tokio::join!(ask(), ask());
    let mut statuses = [a.0.as_u16(), b.0.as_u16()];
    statuses.sort();
    assert_eq!(statuses, [200, 409], "{} / {}", a.2.len(), b.2);
    let (ok, busy) = if a.0 == StatusCode::OK { (a, b) } else { (b, a) };
    assert_eq!(ok.1.as_deref(), Some("2s"));
    assert_heap_flamegraph(&ok.2);
    let busy: Value = serde_json::from_str(&busy.2).unwrap();
    assert_eq!(busy["code"], "profile_running");

    // Without a credential: refused, nothing recorded.
    let r = client
        .get(format!("{base}/v1/admin/profile/heap?seconds=1"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let wrong = ProfileArgs {
        key: Some("not-the-key".into()),
        ..heap_args(&base, Some(1), HeapFormat::Svg, &svg_file)
    };
    let err = rushhour::profile_cli::run(&wrong).await.unwrap_err();
    assert!(err.to_string().contains("401"), "{err:#}");
    server.kill().await.unwrap();

    // On from start: the profile answers at once with everything live
    // since start, which names our own frames.
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut server = serve(
        &dir.path().join("since-start"),
        port,
        &[("RUSHHOUR__PROFILING__HEAP", "true")],
    );
    ready(&client, &base).await;
    let taken = rushhour::profile_cli::run(&heap_args(&base, None, HeapFormat::Svg, &svg_file))
        .await
        .expect("rushhour profile --heap");
    assert_eq!(taken.covers, "since-start");
    assert!(
        taken
            .to_string()
            .starts_with("heap profile (live allocations since start)"),
        "{taken}"
    );
    let svg = std::fs::read_to_string(&svg_file).unwrap();
    assert_heap_flamegraph(&svg);
    assert!(svg.matches("<title>").count() >= 2, "frames with their bytes");
    assert!(svg.contains("bytes"), "frames name their bytes");
    assert!(svg.contains("rushhour::"), "our own frames are named");
    server.kill().await.unwrap();
}
