//! `rushhour bench suite`: one command, one machine, the headline ratios.
//!
//! Absolute numbers depend on the machine; ratios measured in one run, with
//! the same client settings against servers on the same box, mostly do
//! not. So the suite starts its own servers (fresh temporary data, free
//! ports, a clean environment), measures each path in turn, and reports
//! every result against its goal (issue 13's table):
//!
//! 1. `GET /health/live`, the HTTP ceiling: the reference;
//! 2. durable intake `POST /v1/orders` on `serve` (202/s) ÷ ceiling, ≥ 0.35;
//! 3. intake alone (`rushhour api`, no processors) ÷ ceiling, ≥ 0.5;
//! 4. intake with fsync ÷ the same server with fsync off, ≥ 0.9 (group
//!    commit should hide the fsync);
//! 5. intake with group commit on ÷ off, ≥ 10;
//! 6. 202 p99 in an open-loop run at half the measured intake rate, ≤ 5 ms;
//! 7. 202 → confirmed p99 over that run's orders, from their own
//!    `placed_at` / `confirmed_at` in the store, ≤ 10 ms;
//! 8. cached menu ÷ ceiling, plain (identity), for comparison;
//! 9. the same with `Accept-Encoding: gzip, br`, as browsers and mobile
//!    HTTP stacks send it, ≥ 0.9;
//! 10. processor drain ÷ raw SQLite insert (`bench drain`), ≥ 0.6;
//! 11. resident memory of an idle server, ≤ 30 MB;
//! 12. the same with 10,000 live-event streams open, ≤ 150 MB.
//!
//! Runs are sequential, never concurrent: on a 2-core box two runs at once
//! would measure each other. Each server shape gets a fresh server, so no
//! run inherits another's backlog.

mod probes;
pub(crate) mod server;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use serde::Serialize;

use self::probes::{Confirmation, rss_bytes};
use self::server::{Server, Shape, clean_command};
use super::config::{DEFAULT_STORE, ExtraHeader, LoadConfig, Mix, Mode, Op, parse_duration, parse_key_value};
use super::load::{LoadReport, RunOptions, run_load};
use super::stats::fmt_us;

/// `bench drain` works through a fixed backlog; this only catches a hang.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(600);
/// How long the orders of the half-rate run may take to be confirmed
/// before the figure is taken over those that were.
const CONFIRM_WAIT: Duration = Duration::from_secs(60);
/// The server's memory is read this long after it became ready, and again
/// after the last stream opened, once its allocator has settled: a fresh
/// data dir's first start hashes the generated admin password (Argon2id,
/// 19 MiB) just before ready, and jemalloc hands those pages back about a
/// second after they are freed (`.cargo/config.toml`). Read at 1 s, an
/// idle server showed 65 MB; at 3 s, 39–41 MB (docs/benchmarks.md).
const SETTLE: Duration = Duration::from_secs(3);

#[derive(clap::Args, Debug, Clone)]
pub struct SuiteArgs {
    /// Closed-loop workers, the same for every HTTP run.
    #[arg(long, default_value_t = 64)]
    pub connections: usize,
    /// Measured time of each HTTP run.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Unmeasured time before each HTTP run (connections, caches, JIT-free
    /// but not page-cache-free).
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub warmup: Duration,
    /// Per-request timeout.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Print one JSON document (results, every run's report, machine info).
    #[arg(long, conflicts_with = "markdown")]
    pub json: bool,
    /// Print a Markdown table for docs/benchmarks.md.
    #[arg(long)]
    pub markdown: bool,
    /// Skip the drain step (`bench drain`).
    #[arg(long)]
    pub no_drain: bool,
    /// Backlog size for the drain step (passed as `bench drain --orders N`).
    #[arg(long)]
    pub drain_orders: Option<usize>,
    /// Live-event streams (the public pickup board's) held open for the
    /// memory row; 0 skips it. Each costs this process and the server one
    /// file descriptor: `ulimit -n` must allow it.
    #[arg(long, default_value_t = 10_000)]
    pub sse_clients: usize,
    /// Executable to start servers from (default: this one).
    #[arg(long)]
    pub server_bin: Option<PathBuf>,
    /// Extra environment for every server, e.g. RUSHHOUR__LOG__MAX_BATCH=256
    /// (repeatable). Inherited RUSHHOUR_* variables are not passed on.
    #[arg(long = "server-env", value_name = "KEY=VALUE", value_parser = parse_key_value)]
    pub server_env: Vec<(String, String)>,
}

/// What browsers and mobile HTTP stacks offer, reduced to the two codings
/// the server has: the menu row that carries the goal is read this way.
pub const REAL_CLIENT_ENCODINGS: &str = "Accept-Encoding: gzip, br";

/// Goals of issue 13; the suite exists to keep them honest.
pub const GOAL_INTAKE: Goal = Goal::AtLeast(0.35);
pub const GOAL_INTAKE_API_ONLY: Goal = Goal::AtLeast(0.5);
pub const GOAL_FSYNC: Goal = Goal::AtLeast(0.9);
pub const GOAL_GROUP_COMMIT: Goal = Goal::AtLeast(10.0);
pub const GOAL_P99_202_MS: Goal = Goal::AtMost(5.0);
pub const GOAL_P99_CONFIRMED_MS: Goal = Goal::AtMost(10.0);
pub const GOAL_MENU: Goal = Goal::AtLeast(0.9);
pub const GOAL_DRAIN: Goal = Goal::AtLeast(0.6);
pub const GOAL_RSS_IDLE_MB: Goal = Goal::AtMost(30.0);
pub const GOAL_RSS_STREAMS_MB: Goal = Goal::AtMost(150.0);

/// A bound on a row's figure.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum Goal {
    AtLeast(f64),
    AtMost(f64),
}

impl Goal {
    pub fn met_by(self, figure: f64) -> bool {
        match self {
            Goal::AtLeast(g) => figure >= g,
            Goal::AtMost(g) => figure <= g,
        }
    }
}

/// What a row's figure is.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Unit {
    /// A ratio of two throughputs.
    Times,
    /// Milliseconds.
    Ms,
    /// Megabytes (10^6 bytes), as the goals are written.
    Mb,
}

impl Unit {
    /// What follows a number in this unit.
    fn suffix(self) -> &'static str {
        match self {
            Unit::Times => "×",
            Unit::Ms => " ms",
            Unit::Mb => " MB",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct SuiteReport {
    pub machine: Machine,
    pub settings: Settings,
    pub results: Vec<Row>,
    pub runs: Runs,
    pub confirmation: Option<Confirmation>,
    pub memory: Option<Memory>,
    /// `bench drain --json` output as printed, or the reason it is absent.
    pub drain: Option<serde_json::Value>,
    pub drain_error: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Settings {
    pub connections: usize,
    pub duration_secs: f64,
    pub warmup_secs: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Runs {
    pub live: LoadReport,
    pub menu: LoadReport,
    /// The menu with `Accept-Encoding: gzip, br` ([`REAL_CLIENT_ENCODINGS`]).
    pub menu_br: LoadReport,
    pub intake: LoadReport,
    /// `rushhour api` alone.
    pub intake_api_only: LoadReport,
    pub intake_no_fsync: LoadReport,
    pub intake_no_group_commit: LoadReport,
    /// Open loop at half of `intake`'s rate (absent when intake measured 0).
    pub intake_half_rate: Option<LoadReport>,
}

/// Resident memory of one `serve` process.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Memory {
    pub idle_bytes: u64,
    pub streams_asked: usize,
    pub streams_open: usize,
    pub with_streams_bytes: Option<u64>,
    /// Why some streams did not open, counted by reason.
    pub stream_failures: Option<String>,
}

/// One line of the results table.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Row {
    pub key: &'static str,
    pub what: String,
    /// Successes per second of the run this row is about.
    pub throughput: Option<f64>,
    pub unit: &'static str,
    pub p99_us: Option<u64>,
    /// What the figure is about, e.g. "÷ live", "202 p99".
    pub figure_of: &'static str,
    /// The number compared with the goal (a ratio for most rows).
    pub figure: Option<f64>,
    pub figure_unit: Unit,
    pub goal: Option<Goal>,
    pub met: Option<bool>,
    /// Anything that makes the number suspect (errors, sheds).
    pub note: Option<String>,
}

impl Row {
    fn new(key: &'static str, what: impl Into<String>, figure_of: &'static str, figure_unit: Unit) -> Self {
        Self {
            key,
            what: what.into(),
            throughput: None,
            unit: "",
            p99_us: None,
            figure_of,
            figure: None,
            figure_unit,
            goal: None,
            met: None,
            note: None,
        }
    }

    /// The row's throughput, p99 and notes from a load run.
    fn run(mut self, r: &LoadReport, unit: &'static str) -> Self {
        self.throughput = Some(r.overall.ok_rps);
        self.unit = unit;
        self.p99_us = r.overall.latency_us.map(|l| l.p99);
        self.note = run_note(r);
        self
    }

    fn figure(mut self, figure: Option<f64>, goal: Option<Goal>) -> Self {
        self.figure = figure;
        self.goal = goal;
        self.met = goal.zip(figure).map(|(g, f)| g.met_by(f));
        self
    }

    fn note(mut self, note: impl Into<String>) -> Self {
        let note = note.into();
        self.note = Some(match self.note.take() {
            Some(before) => format!("{before}; {note}"),
            None => note,
        });
        self
    }
}

fn ratio(a: f64, b: f64) -> Option<f64> {
    (b > 0.0 && a.is_finite()).then(|| a / b)
}

/// Errors and sheds during a run make its throughput a measurement of
/// something else; say so next to the number.
fn run_note(r: &LoadReport) -> Option<String> {
    let o = &r.overall;
    let mut parts = Vec::new();
    if o.errors > 0 {
        let kinds: Vec<String> = o.errors_by_kind.iter().map(|(k, n)| format!("{k}={n}")).collect();
        parts.push(format!("{} errors ({})", o.errors, kinds.join(", ")));
    }
    if o.shed > 0 {
        parts.push(format!("{} shed", o.shed));
    }
    if let Some(missed) = r.missed.filter(|m| *m > 0) {
        parts.push(format!("{missed} sends missed their slot"));
    }
    (!parts.is_empty()).then(|| parts.join("; "))
}

const MB: f64 = 1e6;

/// Turn the measurements into the results table. Pure, so the goal logic
/// is tested without servers.
pub fn build_rows(
    runs: &Runs,
    confirmation: Option<&Confirmation>,
    memory: Option<&Memory>,
    drain: Option<&DrainNumbers>,
) -> Vec<Row> {
    let ok = |r: &LoadReport| r.overall.ok_rps;
    let live = ok(&runs.live);
    // A run's throughput against the ceiling's.
    let vs_live = |key, what: String, r: &LoadReport, unit, goal| {
        Row::new(key, what, "÷ live", Unit::Times)
            .run(r, unit)
            .figure(ratio(ok(r), live), goal)
    };
    let mut rows = vec![
        Row::new("live", "HTTP ceiling: GET /health/live", "reference", Unit::Times).run(&runs.live, "req/s"),
        vs_live(
            "intake",
            "durable intake on serve: POST /v1/orders".into(),
            &runs.intake,
            "202/s",
            Some(GOAL_INTAKE),
        ),
        vs_live(
            "intake_api_only",
            "intake alone: rushhour api, no processors".into(),
            &runs.intake_api_only,
            "202/s",
            Some(GOAL_INTAKE_API_ONLY),
        ),
        Row::new(
            "fsync",
            "intake with fsync off (synchronous=normal)",
            "on ÷ off",
            Unit::Times,
        )
        .run(&runs.intake_no_fsync, "202/s")
        .figure(ratio(ok(&runs.intake), ok(&runs.intake_no_fsync)), Some(GOAL_FSYNC)),
        Row::new("group_commit", "intake with group commit off", "on ÷ off", Unit::Times)
            .run(&runs.intake_no_group_commit, "202/s")
            .figure(
                ratio(ok(&runs.intake), ok(&runs.intake_no_group_commit)),
                Some(GOAL_GROUP_COMMIT),
            ),
    ];
    rows.push(match &runs.intake_half_rate {
        Some(r) => Row::new(
            "p99_202",
            format!(
                "intake at half that rate, open loop ({:.0}/s asked)",
                r.rate.unwrap_or(0.0)
            ),
            "202 p99",
            Unit::Ms,
        )
        .run(r, "202/s")
        .figure(r.overall.latency_us.map(|l| l.p99 as f64 / 1e3), Some(GOAL_P99_202_MS)),
        None => Row::new("p99_202", "intake at half that rate, open loop", "202 p99", Unit::Ms)
            .figure(None, Some(GOAL_P99_202_MS))
            .note("not measured (intake measured 0)"),
    });
    let confirmed = Row::new(
        "p99_confirmed",
        "202 → confirmed over those orders (placed_at → confirmed_at)",
        "p99",
        Unit::Ms,
    );
    rows.push(match confirmation {
        Some(c) => confirmed
            .figure(c.p99_ms.map(|v| v as f64), Some(GOAL_P99_CONFIRMED_MS))
            .note(format!(
                "p50 {} ms, max {} ms; {} of {} orders confirmed",
                c.p50_ms.map_or_else(|| "—".to_owned(), |v| v.to_string()),
                c.max_ms.map_or_else(|| "—".to_owned(), |v| v.to_string()),
                c.confirmed,
                c.placed
            )),
        None => confirmed.figure(None, Some(GOAL_P99_CONFIRMED_MS)).note("not measured"),
    });
    rows.extend([
        // No goal of its own: the uncompressed comparison for the next row.
        vs_live(
            "menu",
            format!("cached menu, plain (identity): GET /v1/stores/{}/menu", runs.menu.store),
            &runs.menu,
            "req/s",
            None,
        ),
        vs_live(
            "menu_br",
            format!("cached menu, {REAL_CLIENT_ENCODINGS}"),
            &runs.menu_br,
            "req/s",
            Some(GOAL_MENU),
        ),
    ]);
    let drain_row = Row::new("drain", "processor drain vs raw SQLite insert", "÷ raw", Unit::Times);
    rows.push(match drain {
        Some(d) => {
            let mut row = drain_row.figure(Some(d.ratio), Some(GOAL_DRAIN));
            row.throughput = Some(d.drain_per_sec);
            row.unit = "orders/s";
            row.note(format!("raw insert {}", fmt_rate(Some(d.raw_per_sec), "orders/s")))
        }
        None => drain_row.figure(None, Some(GOAL_DRAIN)).note("not measured"),
    });
    let idle = Row::new("rss_idle", "server memory (RSS), idle", "RSS", Unit::Mb);
    let streams = |n: Option<usize>| {
        let count = n.map_or_else(|| "many".to_owned(), |n| thousands(n as u64));
        Row::new(
            "rss_streams",
            format!("server memory (RSS) with {count} live-event streams"),
            "RSS",
            Unit::Mb,
        )
    };
    match memory {
        Some(m) => {
            rows.push(idle.figure(Some(m.idle_bytes as f64 / MB), Some(GOAL_RSS_IDLE_MB)));
            let mut row = streams(Some(m.streams_asked))
                .figure(m.with_streams_bytes.map(|b| b as f64 / MB), Some(GOAL_RSS_STREAMS_MB));
            if m.streams_open < m.streams_asked {
                // Fewer streams than asked is not the figure the goal is
                // about: no pass.
                row.met = row.met.map(|_| false);
                row = row.note(format!(
                    "only {} of {} streams opened: {}",
                    m.streams_open,
                    m.streams_asked,
                    m.stream_failures.as_deref().unwrap_or("?")
                ));
            }
            rows.push(row);
        }
        None => {
            rows.push(idle.figure(None, Some(GOAL_RSS_IDLE_MB)).note("not measured"));
            rows.push(
                streams(None)
                    .figure(None, Some(GOAL_RSS_STREAMS_MB))
                    .note("not measured"),
            );
        }
    }
    rows
}

/// The numbers the suite uses from `bench drain --json`.
#[derive(Debug, Clone, PartialEq)]
pub struct DrainNumbers {
    pub drain_per_sec: f64,
    pub raw_per_sec: f64,
    pub ratio: f64,
}

/// Find the JSON object `bench drain --json` printed (the last line that
/// parses as one, so a stray log line before it does no harm).
pub fn parse_drain(stdout: &[u8]) -> anyhow::Result<(serde_json::Value, DrainNumbers)> {
    let text = String::from_utf8_lossy(stdout);
    let value = text
        .lines()
        .rev()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l.trim()).ok())
        .find(|v| v.is_object())
        .or_else(|| {
            serde_json::from_str::<serde_json::Value>(&text)
                .ok()
                .filter(|v| v.is_object())
        })
        .context("bench drain printed no JSON object")?;
    let num = |k: &str| value.get(k).and_then(serde_json::Value::as_f64);
    let drain_per_sec = num("drain_per_sec").context("drain output lacks drain_per_sec")?;
    let raw_per_sec = num("raw_per_sec").context("drain output lacks raw_per_sec")?;
    let ratio = num("ratio")
        .or_else(|| ratio(drain_per_sec, raw_per_sec))
        .context("drain output has no ratio and raw_per_sec is 0")?;
    Ok((
        value,
        DrainNumbers {
            drain_per_sec,
            raw_per_sec,
            ratio,
        },
    ))
}

/// The steps, in the order they run (for the progress lines).
const STEPS: usize = 11;

pub async fn run(args: &SuiteArgs) -> anyhow::Result<()> {
    if args.connections == 0 {
        bail!("--connections must be at least 1");
    }
    let exe = match &args.server_bin {
        Some(p) => p.clone(),
        None => std::env::current_exe().context("locating this executable")?,
    };
    let opts = RunOptions {
        progress: !args.json && std::io::IsTerminal::is_terminal(&std::io::stderr()),
        // The caller owns Ctrl-C: it drops this future, which kills the servers.
        stop_on_ctrl_c: false,
    };
    let br: ExtraHeader = REAL_CLIENT_ENCODINGS.parse()?;
    let cfg = |url: &str, op: Op| LoadConfig {
        url: url.to_owned(),
        store: DEFAULT_STORE.to_owned(),
        mode: Mode::Closed,
        connections: args.connections,
        rate: None,
        duration: args.duration,
        warmup: args.warmup,
        mix: Mix::single(op),
        timeout: args.timeout,
        headers: Vec::new(),
    };
    let step = |n: usize, what: &str| eprintln!("[{n}/{STEPS}] {what}");
    let env = &args.server_env;
    // One closed-loop intake run on a fresh server of the given shape.
    let intake_on = |shape: Shape, n: usize, label: &'static str| {
        let exe = exe.clone();
        async move {
            let s = Server::start(&exe, &shape, env)
                .await
                .with_context(|| format!("starting the server ({label})"))?;
            step(n, &format!("POST /v1/orders ({label}) on {}", s.url));
            let r = run_load(&cfg(&s.url, Op::Orders), opts).await;
            s.stop().await;
            r
        }
    };

    // Live and menu first, while server A's processors are idle; intake
    // last on A, because it leaves a backlog the processors keep applying.
    // Every other shape gets its own fresh server once A is gone, so A's
    // catching up steals CPU from nothing measured.
    let a = Server::start(&exe, &Shape::serve(), env)
        .await
        .context("starting the server (serve)")?;
    step(1, &format!("GET /health/live on {}", a.url));
    let live = run_load(&cfg(&a.url, Op::Live), opts).await?;
    step(2, "GET menu (cached, plain)");
    let menu = run_load(&cfg(&a.url, Op::Menu), opts).await?;
    step(3, &format!("GET menu (cached, {REAL_CLIENT_ENCODINGS})"));
    let menu_br = run_load(
        &LoadConfig {
            headers: vec![br.clone()],
            ..cfg(&a.url, Op::Menu)
        },
        opts,
    )
    .await?;
    step(4, "POST /v1/orders (serve)");
    let intake = run_load(&cfg(&a.url, Op::Orders), opts).await?;
    a.stop().await;

    let intake_api_only = intake_on(Shape::api_only(), 5, "rushhour api alone").await?;
    let intake_no_fsync = intake_on(Shape::no_fsync(), 6, "fsync off").await?;
    let intake_no_group_commit = intake_on(Shape::no_group_commit(), 7, "group commit off").await?;
    let (intake_half_rate, confirmation) = half_rate(&exe, env, &cfg, intake.overall.ok_rps, opts).await?;
    let memory = if args.sse_clients == 0 {
        None
    } else {
        Some(memory(&exe, env, args.sse_clients).await?)
    };

    let (drain, drain_numbers, drain_error) = if args.no_drain {
        (None, None, Some("skipped (--no-drain)".to_owned()))
    } else {
        step(STEPS, "bench drain (processor drain vs raw SQLite insert)");
        match run_drain(&exe, args.drain_orders).await {
            Ok((value, numbers)) => (Some(value), Some(numbers), None),
            // A missing drain should not throw away the measured steps.
            Err(e) => {
                eprintln!("bench drain failed: {e:#}");
                (None, None, Some(format!("{e:#}")))
            }
        }
    };

    let runs = Runs {
        live,
        menu,
        menu_br,
        intake,
        intake_api_only,
        intake_no_fsync,
        intake_no_group_commit,
        intake_half_rate,
    };
    let mut results = build_rows(&runs, confirmation.as_ref(), memory.as_ref(), drain_numbers.as_ref());
    if let (Some(err), Some(row)) = (&drain_error, results.iter_mut().find(|r| r.key == "drain")) {
        row.note = Some(err.clone());
    }
    let report = SuiteReport {
        machine: Machine::detect(),
        settings: Settings {
            connections: args.connections,
            duration_secs: args.duration.as_secs_f64(),
            warmup_secs: args.warmup.as_secs_f64(),
        },
        results,
        runs,
        confirmation,
        memory,
        drain,
        drain_error,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else if args.markdown {
        print!("{}", render_markdown(&report));
    } else {
        print!("{}", render_text(&report));
    }
    Ok(())
}

/// Steps 8–9: an open-loop run at half the closed-loop intake rate on a
/// fresh `serve`, its 202 latency, then the 202 → confirmed spread of the
/// orders it placed, read from the server's store once they are applied.
async fn half_rate(
    exe: &Path,
    env: &[(String, String)],
    cfg: &impl Fn(&str, Op) -> LoadConfig,
    intake_rate: f64,
    opts: RunOptions,
) -> anyhow::Result<(Option<LoadReport>, Option<Confirmation>)> {
    let rate = (intake_rate / 2.0).floor();
    if rate < 1.0 {
        return Ok((None, None));
    }
    let s = Server::start(exe, &Shape::serve(), env)
        .await
        .context("starting the server (half rate)")?;
    eprintln!("[8/{STEPS}] POST /v1/orders, open loop at {rate:.0}/s on {}", s.url);
    let base = cfg(&s.url, Op::Orders);
    let load = LoadConfig {
        mode: Mode::Open,
        rate: Some(rate),
        ..base
    };
    // Orders placed in the measured window only (not the warm-up's).
    let since = domain::ports::system_now_ms() + i64::try_from(load.warmup.as_millis()).unwrap_or(0);
    let report = run_load(&load, opts).await?;
    eprintln!("[9/{STEPS}] 202 → confirmed, from the store");
    let confirmation = probes::confirmation(&s.store_db(), since, CONFIRM_WAIT).await;
    s.stop().await;
    Ok((Some(report), Some(confirmation?)))
}

/// Step 10: a fresh `serve`'s RSS once ready, then with `n` pickup-board
/// streams open (public, one per counter screen; the per-stream cost is
/// the connection's and the subscription's, which every stream pays).
async fn memory(exe: &Path, env: &[(String, String)], n: usize) -> anyhow::Result<Memory> {
    let s = Server::start(exe, &Shape::serve().with_streams(STREAMS_CAP), env)
        .await
        .context("starting the server (memory)")?;
    tokio::time::sleep(SETTLE).await;
    let idle_bytes = rss_bytes(s.pid()?)?;
    eprintln!(
        "[10/{STEPS}] RSS idle {:.1} MB; opening {} live-event streams",
        idle_bytes as f64 / MB,
        thousands(n as u64)
    );
    let path = format!("/v1/stores/{DEFAULT_STORE}/pickup/events");
    let streams = probes::open_streams(&s.addr, &path, n).await;
    tokio::time::sleep(SETTLE).await;
    let with_streams_bytes = rss_bytes(s.pid()?).ok();
    let memory = Memory {
        idle_bytes,
        streams_asked: n,
        streams_open: streams.open.len(),
        with_streams_bytes,
        stream_failures: (!streams.failed.is_empty()).then(|| probes::summarize_failures(&streams.failed)),
    };
    drop(streams);
    s.stop().await;
    Ok(memory)
}

/// The stream caps for the memory step: all from one address.
const STREAMS_CAP: &str = "20000";

/// The drain runs in its own process: it is CPU- and disk-bound and must
/// not share a runtime (or a page cache warmed by this process) with
/// anything.
async fn run_drain(exe: &Path, orders: Option<usize>) -> anyhow::Result<(serde_json::Value, DrainNumbers)> {
    let mut cmd = clean_command(exe);
    cmd.args(["bench", "drain", "--json"]);
    if let Some(n) = orders {
        cmd.arg("--orders").arg(n.to_string());
    }
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let out = tokio::time::timeout(DRAIN_TIMEOUT, cmd.output())
        .await
        .with_context(|| format!("bench drain did not finish in {}s", DRAIN_TIMEOUT.as_secs()))?
        .context("running bench drain")?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(20).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        bail!("bench drain exited with {}:\n{}", out.status, tail.join("\n"));
    }
    parse_drain(&out.stdout)
}

fn fmt_rate(v: Option<f64>, unit: &str) -> String {
    v.map_or_else(|| "—".to_owned(), |v| format!("{} {unit}", thousands(v.round() as u64)))
}

pub(crate) fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The figure in its unit. Ratios are rounded down and bounds from above
/// rounded up, so that a printed figure never appears to meet a goal that
/// it misses (0.8996 would round to "0.90" next to a failed ≥ 0.9).
fn fmt_figure(row: &Row) -> String {
    let Some(f) = row.figure else {
        return "—".to_owned();
    };
    match row.figure_unit {
        Unit::Times => fmt_ratio(Some(f)),
        unit => format!("{:.1}{}", (f * 10.0).ceil() / 10.0, unit.suffix()),
    }
}

fn fmt_ratio(r: Option<f64>) -> String {
    r.map_or_else(|| "—".to_owned(), |r| format!("{:.2}×", (r * 100.0).floor() / 100.0))
}

fn fmt_goal(row: &Row) -> String {
    let Some(goal) = row.goal else {
        return "—".to_owned();
    };
    let (sign, g) = match goal {
        Goal::AtLeast(g) => ("≥", g),
        Goal::AtMost(g) => ("≤", g),
    };
    format!("{sign} {g}{} ({})", row.figure_unit.suffix(), row.figure_of)
}

fn fmt_met(m: Option<bool>) -> &'static str {
    match m {
        Some(true) => "yes",
        Some(false) => "NO",
        None => "—",
    }
}

fn settings_line(r: &SuiteReport) -> String {
    format!(
        "closed loop, {} connections, {} s measured after {} s warm-up per run",
        r.settings.connections,
        fmt_secs(r.settings.duration_secs),
        fmt_secs(r.settings.warmup_secs)
    )
}

/// `10`, `0.5`: whole seconds without a fraction, others with one digit.
fn fmt_secs(s: f64) -> String {
    if s.fract() == 0.0 {
        format!("{s:.0}")
    } else {
        format!("{s:.1}")
    }
}

pub fn render_text(r: &SuiteReport) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\nrushhour bench suite — {}\n{}\n",
        r.machine.summary(),
        settings_line(r)
    );
    let _ = writeln!(
        out,
        "{:<2} {:<62} {:>16} {:>9} {:>9} {:>22} {:>4}",
        "#", "measurement", "measured", "p99", "figure", "goal", "met"
    );
    for (i, row) in r.results.iter().enumerate() {
        let _ = writeln!(
            out,
            "{:<2} {:<62} {:>16} {:>9} {:>9} {:>22} {:>4}",
            i + 1,
            row.what,
            fmt_rate(row.throughput, row.unit),
            row.p99_us.map_or_else(|| "—".to_owned(), fmt_us),
            fmt_figure(row),
            fmt_goal(row),
            fmt_met(row.met),
        );
    }
    for (i, row) in r.results.iter().enumerate() {
        if let Some(note) = &row.note {
            let _ = writeln!(out, "   {}: {note}", i + 1);
        }
    }
    out
}

pub fn render_markdown(r: &SuiteReport) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "| # | Measurement | Measured | p99 | Figure | Goal | Met |");
    let _ = writeln!(out, "|---|---|---:|---:|---:|---|---|");
    for (i, row) in r.results.iter().enumerate() {
        let what = match &row.note {
            Some(note) => format!("{} <br><sub>{note}</sub>", row.what),
            None => row.what.clone(),
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} |",
            i + 1,
            what.replace('|', "\\|"),
            fmt_rate(row.throughput, row.unit),
            row.p99_us.map_or_else(|| "—".to_owned(), fmt_us),
            fmt_figure(row),
            fmt_goal(row),
            fmt_met(row.met),
        );
    }
    let _ = writeln!(
        out,
        "\n{}; {}; `rushhour bench suite`, rushhour {}.",
        r.machine.summary(),
        settings_line(r),
        r.machine.rushhour_version
    );
    out
}

/// Where the numbers came from; a ratio without its machine is half a fact.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub nproc: usize,
    pub cpu_model: Option<String>,
    pub kernel: Option<String>,
    pub os: &'static str,
    pub arch: &'static str,
    /// UTC, RFC 3339.
    pub date: String,
    pub rushhour_version: &'static str,
}

impl Machine {
    fn detect() -> Self {
        let read = |p: &str| std::fs::read_to_string(p).ok();
        Self {
            nproc: std::thread::available_parallelism().map_or(1, |n| n.get()),
            cpu_model: read("/proc/cpuinfo").and_then(|s| cpu_model(&s)),
            kernel: read("/proc/sys/kernel/osrelease").map(|s| s.trim().to_owned()),
            os: std::env::consts::OS,
            arch: std::env::consts::ARCH,
            date: rfc3339_utc(SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())),
            rushhour_version: env!("CARGO_PKG_VERSION"),
        }
    }

    fn summary(&self) -> String {
        format!(
            "{} × {}, {} {}, {}",
            self.nproc,
            self.cpu_model.as_deref().unwrap_or("unknown CPU"),
            self.os,
            self.kernel.as_deref().unwrap_or("?"),
            self.date
        )
    }
}

/// The CPU model from `/proc/cpuinfo`: `model name` on x86, one of the
/// other spellings on ARM and friends.
pub fn cpu_model(cpuinfo: &str) -> Option<String> {
    ["model name", "Processor", "cpu model", "Hardware", "cpu"]
        .iter()
        .find_map(|key| {
            cpuinfo.lines().find_map(|line| {
                let (k, v) = line.split_once(':')?;
                (k.trim() == *key && !v.trim().is_empty()).then(|| v.trim().to_owned())
            })
        })
}

/// Seconds since the epoch as `YYYY-MM-DDTHH:MM:SSZ`.
pub fn rfc3339_utc(secs: u64) -> String {
    i64::try_from(secs)
        .ok()
        .and_then(|s| chrono::DateTime::from_timestamp(s, 0))
        .map_or_else(
            || secs.to_string(),
            |t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::{Latency, OpReport};
    use std::collections::BTreeMap;

    fn report(op: Op, ok_rps: f64, errors: u64) -> LoadReport {
        report_with(op, ok_rps, errors, Vec::new())
    }

    fn report_with(op: Op, ok_rps: f64, errors: u64, headers: Vec<ExtraHeader>) -> LoadReport {
        let r = OpReport {
            op: op.name().into(),
            count: 100,
            ok: 100 - errors,
            shed: 0,
            errors,
            errors_by_kind: if errors > 0 {
                BTreeMap::from([("status_500".to_owned(), errors)])
            } else {
                BTreeMap::new()
            },
            rps: ok_rps,
            ok_rps,
            latency_us: Some(Latency {
                p50: 100,
                p90: 200,
                p99: 1_500,
                p999: 3_000,
                max: 4_000,
                mean: 120.0,
            }),
        };
        LoadReport {
            url: "http://127.0.0.1:1".into(),
            store: DEFAULT_STORE.into(),
            mode: Mode::Closed,
            connections: 64,
            rate: None,
            mix: Mix::single(op),
            headers,
            duration_secs: 10.0,
            warmup_secs: 2.0,
            window_secs: 10.0,
            interrupted: false,
            missed: None,
            ops: vec![r.clone()],
            overall: OpReport {
                op: "overall".into(),
                ..r
            },
        }
    }

    fn runs(live: f64, intake: f64, menu: f64, no_gc: f64) -> Runs {
        let mut half = report(Op::Orders, intake / 2.0, 0);
        half.mode = Mode::Open;
        half.rate = Some(intake / 2.0);
        Runs {
            live: report(Op::Live, live, 0),
            // Compression lifts the menu a little above the plain read.
            menu: report(Op::Menu, menu * 0.9, 0),
            menu_br: report_with(Op::Menu, menu, 0, vec![REAL_CLIENT_ENCODINGS.parse().unwrap()]),
            intake: report(Op::Orders, intake, 0),
            intake_api_only: report(Op::Orders, intake * 1.5, 0),
            intake_no_fsync: report(Op::Orders, intake * 1.05, 0),
            intake_no_group_commit: report(Op::Orders, no_gc, 3),
            intake_half_rate: Some(half),
        }
    }

    fn confirmation() -> Confirmation {
        probes::summarize_waits(1_000, &(1..=1_000).map(|i| i / 50).collect::<Vec<i64>>())
    }

    fn memory(idle_mb: u64, streams_mb: u64, open: usize) -> Memory {
        Memory {
            idle_bytes: idle_mb * 1_000_000,
            streams_asked: 10_000,
            streams_open: open,
            with_streams_bytes: Some(streams_mb * 1_000_000),
            stream_failures: (open < 10_000).then(|| "status 503 × 3".to_owned()),
        }
    }

    #[test]
    fn figures_are_checked_against_the_goals() {
        let drain = DrainNumbers {
            drain_per_sec: 20_000.0,
            raw_per_sec: 100_000.0,
            ratio: 0.2,
        };
        let rows = build_rows(
            &runs(40_000.0, 24_000.0, 38_000.0, 1_000.0),
            Some(&confirmation()),
            Some(&memory(25, 140, 10_000)),
            Some(&drain),
        );
        let by = |k: &str| rows.iter().find(|r| r.key == k).unwrap();
        let keys: Vec<&str> = rows.iter().map(|r| r.key).collect();
        assert_eq!(
            keys,
            [
                "live",
                "intake",
                "intake_api_only",
                "fsync",
                "group_commit",
                "p99_202",
                "p99_confirmed",
                "menu",
                "menu_br",
                "drain",
                "rss_idle",
                "rss_streams"
            ]
        );
        assert_eq!(by("live").figure, None, "the ceiling is the reference");
        assert_eq!((by("intake").figure, by("intake").met), (Some(0.6), Some(true)));
        assert_eq!(by("intake_api_only").figure, Some(0.9));
        assert_eq!(by("intake_api_only").met, Some(true));
        let fsync = by("fsync").figure.unwrap();
        assert!((fsync - 1.0 / 1.05).abs() < 1e-9 && by("fsync").met == Some(true));
        assert_eq!(by("menu_br").figure, Some(0.95));
        assert_eq!(by("menu_br").met, Some(true));
        assert!(by("menu_br").what.contains("gzip, br"), "{}", by("menu_br").what);
        assert_eq!(
            by("menu").figure,
            Some(38_000.0 * 0.9 / 40_000.0),
            "plain, shown beside it"
        );
        assert_eq!(
            (by("menu").goal, by("menu").met),
            (None, None),
            "the goal is on the br row"
        );
        assert_eq!(by("group_commit").figure, Some(24.0));
        assert_eq!(by("group_commit").met, Some(true));
        assert!(by("group_commit").note.as_deref().unwrap().contains("status_500=3"));
        assert_eq!(by("drain").met, Some(false), "0.2 < 0.6");
        assert_eq!(by("intake").p99_us, Some(1_500));
        // Latency rows: 1.5 ms ≤ 5 ms; waits 0..=20 ms, p99 = 19 ms > 10 ms.
        assert_eq!((by("p99_202").figure, by("p99_202").met), (Some(1.5), Some(true)));
        assert!(by("p99_202").what.contains("12000/s"), "{}", by("p99_202").what);
        assert_eq!(by("p99_confirmed").figure, Some(19.0));
        assert_eq!(by("p99_confirmed").met, Some(false));
        assert!(by("p99_confirmed").note.as_deref().unwrap().contains("1000 of 1000"));
        assert_eq!((by("rss_idle").figure, by("rss_idle").met), (Some(25.0), Some(true)));
        assert_eq!(by("rss_streams").met, Some(true));
        assert!(by("rss_streams").what.contains("10,000"));
    }

    #[test]
    fn goals_can_fail_and_missing_numbers_are_not_a_pass() {
        let mut r = runs(40_000.0, 10_000.0, 30_000.0, 0.0);
        r.intake_half_rate = None;
        let rows = build_rows(&r, None, Some(&memory(31, 100, 9_000)), None);
        let by = |k: &str| rows.iter().find(|r| r.key == k).unwrap();
        assert_eq!(by("intake").met, Some(false));
        assert_eq!(by("menu_br").met, Some(false), "0.75 < 0.9");
        assert_eq!(by("group_commit").figure, None, "off measured 0: no ratio");
        assert_eq!(by("group_commit").met, None);
        assert_eq!(by("drain").met, None);
        assert_eq!((by("p99_202").met, by("p99_confirmed").met), (None, None));
        assert_eq!(by("rss_idle").met, Some(false), "31 MB > 30 MB");
        assert_eq!(
            by("rss_streams").met,
            Some(false),
            "under the bound, but with fewer streams than asked"
        );
        assert!(
            by("rss_streams")
                .note
                .as_deref()
                .unwrap()
                .contains("only 9000 of 10000")
        );
        let none = build_rows(&r, None, None, None);
        let by = |k: &str| none.iter().find(|r| r.key == k).unwrap();
        assert_eq!((by("rss_idle").met, by("rss_streams").met), (None, None));
    }

    #[test]
    fn tables_show_every_row() {
        let runs = || runs(40_000.0, 24_000.0, 38_000.0, 1_000.0);
        let rows = build_rows(&runs(), Some(&confirmation()), Some(&memory(25, 140, 10_000)), None);
        let r = SuiteReport {
            machine: Machine {
                nproc: 2,
                cpu_model: Some("Test CPU".into()),
                kernel: Some("6.1".into()),
                os: "linux",
                arch: "x86_64",
                date: "2025-01-01T00:00:00Z".into(),
                rushhour_version: "0.1.0",
            },
            settings: Settings {
                connections: 64,
                duration_secs: 10.0,
                warmup_secs: 2.0,
            },
            results: rows,
            runs: runs(),
            confirmation: Some(confirmation()),
            memory: Some(memory(25, 140, 10_000)),
            drain: None,
            drain_error: None,
        };
        let md = render_markdown(&r);
        assert_eq!(
            md.lines().filter(|l| l.starts_with("| ")).count(),
            13,
            "header + 12 rows:\n{md}"
        );
        assert!(md.contains("40,000 req/s"));
        assert!(md.contains("0.60×"));
        assert!(md.contains("≤ 5 ms (202 p99)"), "{md}");
        assert!(md.contains("19.0 ms"));
        assert!(md.contains("140.0 MB"));
        assert!(md.contains("2 × Test CPU"));
        let text = render_text(&r);
        assert!(text.contains("24.00×"));
        assert!(text.contains("yes"));
        assert!(text.contains("NO"));
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["machine"]["nproc"], 2);
        assert_eq!(json["results"][1]["met"], true);
        assert_eq!(json["results"][5]["goal"]["at_most"], 5.0);
        assert_eq!(json["runs"]["live"]["overall"]["ok_rps"], 40_000.0);
        assert_eq!(json["memory"]["streams_open"], 10_000);
    }

    #[test]
    fn figures_round_against_the_goal() {
        let row = |figure: f64, unit: Unit| Row::new("x", "x", "x", unit).figure(Some(figure), None);
        assert_eq!(fmt_figure(&row(0.8996, Unit::Times)), "0.89×");
        assert_eq!(fmt_figure(&row(5.01, Unit::Ms)), "5.1 ms");
        assert_eq!(fmt_figure(&row(30.04, Unit::Mb)), "30.1 MB");
    }

    #[test]
    fn drain_output_is_found_among_log_lines() {
        let out = b"2025 WARN something\n{\"orders\":20000,\"drain_per_sec\":15000.0,\"raw_per_sec\":50000.0,\"ratio\":0.3}\n";
        let (v, n) = parse_drain(out).unwrap();
        assert_eq!(v["orders"], 20_000);
        assert_eq!(n.ratio, 0.3);
        let pretty = b"{\n  \"drain_per_sec\": 10,\n  \"raw_per_sec\": 40\n}\n";
        let (_, n) = parse_drain(pretty).unwrap();
        assert_eq!(n.ratio, 0.25, "computed when absent");
        assert!(parse_drain(b"no json here").is_err());
    }

    #[test]
    fn machine_facts_parse() {
        let x86 = "processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) CPU @ 2.20GHz\n";
        assert_eq!(cpu_model(x86).as_deref(), Some("Intel(R) Xeon(R) CPU @ 2.20GHz"));
        assert_eq!(cpu_model("processor : 0\nBogoMIPS : 50\n"), None);
        assert_eq!(rfc3339_utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339_utc(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339_utc(1_735_689_599), "2024-12-31T23:59:59Z");
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(thousands(999), "999");
        assert_eq!(fmt_secs(10.0), "10");
        assert_eq!(fmt_secs(0.5), "0.5");
        assert_eq!(fmt_ratio(Some(0.8996)), "0.89×");
        assert_eq!(fmt_ratio(Some(24.0)), "24.00×");
    }

    #[test]
    fn server_env_flags_parse() {
        assert_eq!(parse_key_value("A=b=c").unwrap(), ("A".to_owned(), "b=c".to_owned()));
        assert!(parse_key_value("novalue").is_err());
        assert!(parse_key_value("=x").is_err());
    }
}
