//! `GET /v1/admin/profile/cpu` and `rushhour profile`: a real flamegraph
//! of the running app (sampled while a thread burns CPU, so there are
//! frames to draw), admins only, one profile at a time.

use crate::support::*;
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

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
    let (file, bytes) = rushhour::profile_cli::run(&rushhour::profile_cli::ProfileArgs {
        url: app.base.clone(),
        key: Some(STAFF_KEY.into()),
        seconds: 1,
        output: output.clone(),
    })
    .await
    .expect("rushhour profile");
    assert_eq!(file, output);
    let svg = std::fs::read_to_string(&output).unwrap();
    assert_eq!(svg.len(), bytes);
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
