//! The crash test: the real binary under concurrent intake is killed with
//! SIGKILL, restarted on the same data dir, and every order that was
//! answered 202 must exist exactly once and reach `confirmed`.

use reqwest::{Client, StatusCode};
use serde_json::Value;
use std::collections::HashSet;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::process::{Child, Command};

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start(data_dir: &std::path::Path, port: u16) -> Child {
    Command::new(env!("CARGO_BIN_EXE_rushhour"))
        .args(["serve", "--addr", &format!("127.0.0.1:{port}"), "--data-dir"])
        .arg(data_dir)
        .env("RUSHHOUR__TELEMETRY__LOG_FILTER", "warn")
        .env("RUSHHOUR__AUTH__STAFF_KEY", "crash-test")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("start rushhour")
}

/// Poll the readiness probe of a process we just started (a start-up wait,
/// bounded; not a wait for work).
pub async fn ready(client: &Client, base: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(r) = client.get(format!("{base}/health/ready")).send().await
            && r.status() == StatusCode::OK
        {
            return;
        }
        assert!(Instant::now() < deadline, "rushhour did not become ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_loses_no_acknowledged_order() {
    let dir = tempfile::TempDir::new().unwrap();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let client = crate::support::http_client(Duration::from_secs(10));

    let mut child = start(dir.path(), port);
    ready(&client, &base).await;

    // 16 clients place orders as fast as they can; ids answered 202 are kept.
    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let body = serde_json::json!({"store": "demo-downtown", "lines": [
        {"sku": "latte", "size": "medium", "qty": 1}, {"sku": "croissant", "qty": 1}
    ]});
    let mut clients = Vec::new();
    for c in 0..16 {
        let (client, base, body, acked) = (client.clone(), base.clone(), body.clone(), acked.clone());
        clients.push(tokio::spawn(async move {
            for i in 0.. {
                let res = client
                    .post(format!("{base}/v1/orders"))
                    .header("Idempotency-Key", format!("crash-{c}-{i}"))
                    .json(&body)
                    .send()
                    .await;
                match res {
                    Ok(r) if r.status() == StatusCode::ACCEPTED => {
                        // Count an order only once its full 202 body arrived.
                        if let Ok(v) = r.json::<Value>().await {
                            acked.lock().unwrap().push(v["id"].as_str().unwrap().to_owned());
                        }
                    }
                    Ok(_) => {}
                    Err(_) => return, // the server is gone
                }
            }
        }));
    }
    // Kill in the middle of the stream of intakes.
    let deadline = Instant::now() + Duration::from_secs(60);
    while acked.lock().unwrap().len() < 300 {
        assert!(Instant::now() < deadline, "intake too slow to reach 300 orders");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    child.start_kill().unwrap(); // SIGKILL
    child.wait().await.unwrap();
    for c in clients {
        c.await.unwrap();
    }
    let acked: Vec<String> = acked.lock().unwrap().clone();
    let unique: HashSet<&String> = acked.iter().collect();
    assert_eq!(unique.len(), acked.len(), "no id was acknowledged twice");

    // Restart on the same files; the processors catch up from the log.
    let _child = start(dir.path(), port);
    ready(&client, &base).await;
    for id in &acked {
        let r = client
            .get(format!("{base}/v1/orders/{id}"))
            .bearer_auth("crash-test")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "acknowledged order {id} was lost");
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    let confirmed = loop {
        let mut ids = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut url = format!("{base}/v1/orders?status=confirmed&limit=100");
            if let Some(c) = &cursor {
                url.push_str(&format!("&cursor={c}"));
            }
            let page: Value = client
                .get(url)
                .bearer_auth("crash-test")
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            ids.extend(
                page["items"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|i| i["id"].as_str().unwrap().to_owned()),
            );
            match page["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_owned()),
                None => break,
            }
        }
        let have: HashSet<&String> = ids.iter().collect();
        if unique.iter().all(|id| have.contains(id)) {
            break ids;
        }
        assert!(
            Instant::now() < deadline,
            "acknowledged orders did not all reach confirmed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let distinct: HashSet<&String> = confirmed.iter().collect();
    assert_eq!(distinct.len(), confirmed.len(), "an order was applied twice");
}
