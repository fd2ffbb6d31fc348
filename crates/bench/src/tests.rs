//! End-to-end tests of the load generator against a small in-process mock
//! of the API, and of the command line as clap parses it.
//!
//! The mock is strict where the real server is (valid orders priced against
//! the demo menu, one use per idempotency key, ids that exist), so a run
//! with zero errors proves the generator sends what the API expects. It is
//! a mock rather than the real app so these tests exercise the generator
//! alone and stay independent of the wiring.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use clap::{CommandFactory, Parser};
use domain::menu::{MenuSnapshot, demo_menu};
use domain::order::{OrderDraft, price};

use super::config::DEFAULT_STORE;
use super::load::scheduled_count;
use super::*;

#[derive(Default)]
struct Mock {
    keys: Mutex<HashSet<String>>,
    orders: Mutex<HashSet<String>>,
}

struct MockState {
    menu: MenuSnapshot,
    seen: Mock,
}

async fn place(State(s): State<Arc<MockState>>, headers: HeaderMap, body: axum::body::Bytes) -> impl IntoResponse {
    if headers.get("content-type").and_then(|v| v.to_str().ok()) != Some("application/json") {
        return (StatusCode::UNSUPPORTED_MEDIA_TYPE, String::new());
    }
    let Some(key) = headers.get("idempotency-key").and_then(|v| v.to_str().ok()) else {
        return (StatusCode::BAD_REQUEST, "missing key".into());
    };
    if !s.seen.keys.lock().unwrap().insert(key.to_owned()) {
        return (StatusCode::UNPROCESSABLE_ENTITY, "key reused".into());
    }
    let Ok(draft) = serde_json::from_slice::<OrderDraft>(&body) else {
        return (StatusCode::UNPROCESSABLE_ENTITY, "bad json".into());
    };
    if draft.store != DEFAULT_STORE || price(&draft, &s.menu).is_err() {
        return (StatusCode::UNPROCESSABLE_ENTITY, "invalid order".into());
    }
    let id = uuid::Uuid::now_v7().to_string();
    s.seen.orders.lock().unwrap().insert(id.clone());
    (
        StatusCode::ACCEPTED,
        serde_json::json!({"id": id, "status": "placed",
                           "links": {"self": format!("/v1/orders/{id}?token=t-{id}")}})
        .to_string(),
    )
}

/// Like the real server: an order is read with its access token.
async fn status(
    State(s): State<Arc<MockState>>,
    Path(id): Path<String>,
    axum::extract::RawQuery(query): axum::extract::RawQuery,
) -> StatusCode {
    if query.as_deref() != Some(&format!("token=t-{id}")) {
        StatusCode::UNAUTHORIZED
    } else if s.seen.orders.lock().unwrap().contains(&id) {
        StatusCode::OK
    } else {
        StatusCode::NOT_FOUND
    }
}

async fn spawn_mock() -> String {
    let state = Arc::new(MockState {
        menu: MenuSnapshot::new(demo_menu()),
        seen: Mock::default(),
    });
    let app = Router::new()
        .route("/health/live", get(|| async { "ok" }))
        .route(
            "/v1/stores/demo-downtown/menu",
            get(|State(s): State<Arc<MockState>>| async move { s.menu.json.clone() }),
        )
        .route("/v1/orders", post(place))
        .route("/v1/orders/{id}", get(status))
        .with_state(state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

fn quiet() -> RunOptions {
    RunOptions {
        progress: false,
        stop_on_ctrl_c: false,
    }
}

fn config(url: &str, mode: Mode, rate: Option<f64>) -> LoadConfig {
    LoadConfig {
        url: url.to_owned(),
        store: DEFAULT_STORE.to_owned(),
        mode,
        connections: 4,
        rate,
        duration: Duration::from_millis(500),
        warmup: Duration::from_millis(100),
        mix: "orders=1,status=1,menu=1,live=1".parse().unwrap(),
        timeout: Duration::from_secs(10),
        headers: Vec::new(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_loop_sends_only_requests_the_api_accepts() {
    let url = spawn_mock().await;
    let report = run_load(&config(&url, Mode::Closed, None), quiet()).await.unwrap();
    assert_eq!(report.overall.errors, 0, "{}", report.render());
    assert_eq!(report.overall.shed, 0);
    assert_eq!(report.overall.ok, report.overall.count);
    assert_eq!(report.ops.len(), 4);
    assert_eq!(report.missed, None, "closed loops have no schedule to miss");
    let summed: u64 = report.ops.iter().map(|o| o.count).sum();
    assert_eq!(summed, report.overall.count);
    assert!(report.render().contains("overall"));
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["mode"], "closed");
    assert_eq!(json["mix"], "orders=1,status=1,menu=1,live=1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_loop_never_sends_more_than_the_schedule() {
    let url = spawn_mock().await;
    let cfg = config(&url, Mode::Open, Some(200.0));
    let report = run_load(&cfg, quiet()).await.unwrap();
    assert_eq!(report.overall.errors, 0, "{}", report.render());
    // Warm-up slots are sent but not counted, so the measured count is at
    // most the slots due inside the measured window.
    let total = scheduled_count(cfg.warmup + cfg.duration, 200.0);
    let warm = scheduled_count(cfg.warmup, 200.0);
    assert!(
        report.overall.count <= total - warm,
        "{} > {}",
        report.overall.count,
        total - warm
    );
    assert!(report.missed.is_some());
}

#[tokio::test]
async fn an_unreachable_server_is_an_error_before_the_clock_starts() {
    // Port 9 (discard) on localhost is closed in any sane test environment.
    let cfg = config("http://127.0.0.1:9", Mode::Closed, None);
    let err = run_load(&cfg, quiet()).await.unwrap_err();
    assert!(format!("{err:#}").contains("menu"), "{err:#}");
}

#[derive(Parser, Debug)]
struct Cli {
    #[command(subcommand)]
    cmd: Top,
}

#[derive(clap::Subcommand, Debug)]
enum Top {
    Bench(BenchArgs),
}

fn parse(args: &[&str]) -> Result<BenchArgs, clap::Error> {
    let argv = ["rushhour", "bench"].iter().chain(args);
    Cli::try_parse_from(argv).map(|cli| match cli.cmd {
        Top::Bench(b) => b,
    })
}

#[test]
fn command_line_is_well_formed() {
    Cli::command().debug_assert();
}

#[test]
fn load_flags_parse() {
    let b = parse(&["--preset", "rush", "--mix", "orders=3,menu=1", "--duration", "30s"]).unwrap();
    assert!(b.cmd.is_none());
    assert_eq!(b.load.preset, Some(Preset::Rush));
    assert_eq!(b.load.mix.unwrap().weight(Op::Orders), 3);
    assert_eq!(b.load.duration, Some(Duration::from_secs(30)));
    assert_eq!(b.load.url, "http://127.0.0.1:8080");

    let b = parse(&["--rate", "250", "--scenario", "live", "--json"]).unwrap();
    assert_eq!(b.load.rate, Some(250.0));
    assert_eq!(b.load.scenario, Some(Op::Live));
    assert!(b.load.json);

    assert!(parse(&["--mix", "menu=1", "--scenario", "live"]).is_err());
    assert!(parse(&["--mix", "coffee=1"]).is_err());
    assert!(parse(&["--preset", "lunch"]).is_err());
}

#[test]
fn suite_and_drain_flags_parse() {
    let b = parse(&[
        "suite",
        "--json",
        "--duration",
        "3s",
        "--server-env",
        "RUSHHOUR__LOG__MAX_BATCH=64",
    ])
    .unwrap();
    let Some(BenchCmd::Suite(s)) = b.cmd else {
        panic!("expected suite")
    };
    assert!(s.json);
    assert_eq!(s.duration, Duration::from_secs(3));
    assert_eq!(s.connections, 64);
    assert_eq!(s.server_env, [("RUSHHOUR__LOG__MAX_BATCH".to_owned(), "64".to_owned())]);
    assert!(parse(&["suite", "--json", "--markdown"]).is_err());
    assert!(matches!(
        parse(&["drain", "--json"]).unwrap().cmd,
        Some(BenchCmd::Drain(_))
    ));
}
