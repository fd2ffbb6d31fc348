//! `rushhour bench suite`: one command, one machine, the headline ratios.
//!
//! Absolute numbers depend on the machine; ratios measured in one run, with
//! the same client settings against servers on the same box, mostly do
//! not. So the suite starts its own servers (fresh temporary data, free
//! ports, a clean environment), measures each path in turn, and reports
//! every result as a ratio to a reference with a goal:
//!
//! 1. `GET /health/live`, the HTTP ceiling: the reference;
//! 2. durable intake `POST /v1/orders` (202/s) ÷ ceiling, goal ≥ 0.5;
//! 3. cached menu reads ÷ ceiling, plain (identity: what a client without
//!    `Accept-Encoding` gets, and what every client got before menus were
//!    compressed), for comparison;
//! 4. the same with `Accept-Encoding: gzip, br`, as browsers and mobile
//!    HTTP stacks send it (brotli), goal ≥ 0.9;
//! 5. intake with group commit on ÷ off (a second server), goal ≥ 10;
//! 6. processor drain ÷ raw SQLite insert (`bench drain`), goal ≥ 0.3.
//!
//! Runs are sequential, never concurrent: on a 2-core box two runs at once
//! would measure each other.

use std::ffi::OsString;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use serde::Serialize;
use tokio::process::{Child, Command};
use tokio::time::Instant;

use super::config::{DEFAULT_STORE, ExtraHeader, LoadConfig, Mix, Mode, Op, parse_duration};
use super::load::{LoadReport, RunOptions, run_load};
use super::stats::fmt_us;

/// How long a freshly started server may take to answer `/health/ready`
/// (migrations and the demo seed run first).
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// `bench drain` works through a fixed backlog; this only catches a hang.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(600);

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
    /// Skip step 6 (`bench drain`).
    #[arg(long)]
    pub no_drain: bool,
    /// Backlog size for step 6 (passed as `bench drain --orders N`).
    #[arg(long)]
    pub drain_orders: Option<usize>,
    /// Executable to start servers from (default: this one).
    #[arg(long)]
    pub server_bin: Option<PathBuf>,
    /// Extra environment for both servers, e.g. RUSHHOUR__LOG__MAX_BATCH=256
    /// (repeatable). Inherited RUSHHOUR_* variables are not passed on.
    #[arg(long = "server-env", value_name = "KEY=VALUE", value_parser = parse_env)]
    pub server_env: Vec<(String, String)>,
}

fn parse_env(s: &str) -> anyhow::Result<(String, String)> {
    let (k, v) = s.split_once('=').context("expected KEY=VALUE")?;
    if k.is_empty() {
        bail!("expected KEY=VALUE");
    }
    Ok((k.to_owned(), v.to_owned()))
}

/// What browsers and mobile HTTP stacks offer, reduced to the two codings
/// the server has: the menu row that carries the goal is read this way.
pub const REAL_CLIENT_ENCODINGS: &str = "Accept-Encoding: gzip, br";

/// Goals from the product spec; the suite exists to keep them honest.
pub const GOAL_INTAKE: f64 = 0.5;
pub const GOAL_MENU: f64 = 0.9;
pub const GOAL_GROUP_COMMIT: f64 = 10.0;
pub const GOAL_DRAIN: f64 = 0.3;

#[derive(Debug, Clone, Serialize)]
pub struct SuiteReport {
    pub machine: Machine,
    pub settings: Settings,
    pub results: Vec<Row>,
    pub runs: Runs,
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
    pub intake_no_group_commit: LoadReport,
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
    /// What the goal is about, e.g. "÷ live".
    pub ratio_of: &'static str,
    pub ratio: Option<f64>,
    pub goal: Option<f64>,
    pub met: Option<bool>,
    /// Anything that makes the number suspect (errors, sheds).
    pub note: Option<String>,
}

fn ratio(a: f64, b: f64) -> Option<f64> {
    (b > 0.0 && a.is_finite()).then(|| a / b)
}

fn check(ratio: Option<f64>, goal: f64) -> Option<bool> {
    ratio.map(|r| r >= goal)
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
    (!parts.is_empty()).then(|| parts.join("; "))
}

/// Turn the runs into the results table. Pure, so the goal logic is tested
/// without servers.
pub fn build_rows(runs: &Runs, drain: Option<&DrainNumbers>) -> Vec<Row> {
    let ok = |r: &LoadReport| r.overall.ok_rps;
    let p99 = |r: &LoadReport| r.overall.latency_us.map(|l| l.p99);
    let live = ok(&runs.live);
    let intake = ratio(ok(&runs.intake), live);
    let menu = ratio(ok(&runs.menu), live);
    let menu_br = ratio(ok(&runs.menu_br), live);
    let gc = ratio(ok(&runs.intake), ok(&runs.intake_no_group_commit));
    let mut rows = vec![
        Row {
            key: "live",
            what: "HTTP ceiling: GET /health/live".into(),
            throughput: Some(live),
            unit: "req/s",
            p99_us: p99(&runs.live),
            ratio_of: "reference",
            ratio: None,
            goal: None,
            met: None,
            note: run_note(&runs.live),
        },
        Row {
            key: "intake",
            what: "durable intake: POST /v1/orders (202/s)".into(),
            throughput: Some(ok(&runs.intake)),
            unit: "202/s",
            p99_us: p99(&runs.intake),
            ratio_of: "÷ live",
            ratio: intake,
            goal: Some(GOAL_INTAKE),
            met: check(intake, GOAL_INTAKE),
            note: run_note(&runs.intake),
        },
        // No goal of its own: it is the uncompressed comparison for the
        // next row, which real clients hit.
        Row {
            key: "menu",
            what: format!("cached menu, plain (identity): GET /v1/stores/{}/menu", runs.menu.store),
            throughput: Some(ok(&runs.menu)),
            unit: "req/s",
            p99_us: p99(&runs.menu),
            ratio_of: "÷ live",
            ratio: menu,
            goal: None,
            met: None,
            note: run_note(&runs.menu),
        },
        Row {
            key: "menu_br",
            what: format!("cached menu (br), {REAL_CLIENT_ENCODINGS}"),
            throughput: Some(ok(&runs.menu_br)),
            unit: "req/s",
            p99_us: p99(&runs.menu_br),
            ratio_of: "÷ live",
            ratio: menu_br,
            goal: Some(GOAL_MENU),
            met: check(menu_br, GOAL_MENU),
            note: run_note(&runs.menu_br),
        },
        Row {
            key: "group_commit",
            what: "intake with group commit off (202/s)".into(),
            throughput: Some(ok(&runs.intake_no_group_commit)),
            unit: "202/s",
            p99_us: p99(&runs.intake_no_group_commit),
            ratio_of: "on ÷ off",
            ratio: gc,
            goal: Some(GOAL_GROUP_COMMIT),
            met: check(gc, GOAL_GROUP_COMMIT),
            note: run_note(&runs.intake_no_group_commit),
        },
    ];
    rows.push(match drain {
        Some(d) => Row {
            key: "drain",
            what: "processor drain vs raw SQLite insert (orders/s)".into(),
            throughput: Some(d.drain_per_sec),
            unit: "orders/s",
            p99_us: None,
            ratio_of: "÷ raw",
            ratio: Some(d.ratio),
            goal: Some(GOAL_DRAIN),
            met: check(Some(d.ratio), GOAL_DRAIN),
            note: Some(format!("raw insert {}", fmt_rate(Some(d.raw_per_sec), "orders/s"))),
        },
        None => Row {
            key: "drain",
            what: "processor drain vs raw SQLite insert (orders/s)".into(),
            throughput: None,
            unit: "orders/s",
            p99_us: None,
            ratio_of: "÷ raw",
            ratio: None,
            goal: Some(GOAL_DRAIN),
            met: None,
            note: Some("not measured".into()),
        },
    });
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
    let step = |n: u32, what: &str| eprintln!("[{n}/6] {what}");

    // Live and menu first, while server A's processors are idle; intake
    // last on A, because it leaves a backlog the processors keep applying.
    // The group-commit-off server is only started after A is gone, so A's
    // catching up does not steal CPU from it.
    let a = Server::start(&exe, true, &args.server_env)
        .await
        .context("starting the server (group commit on)")?;
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
    step(4, "POST /v1/orders (group commit on)");
    let intake = run_load(&cfg(&a.url, Op::Orders), opts).await?;
    a.stop().await;

    let b = Server::start(&exe, false, &args.server_env)
        .await
        .context("starting the second server (group commit off)")?;
    step(5, &format!("POST /v1/orders (group commit off) on {}", b.url));
    let intake_no_group_commit = run_load(&cfg(&b.url, Op::Orders), opts).await?;
    b.stop().await;

    let (drain, drain_numbers, drain_error) = if args.no_drain {
        (None, None, Some("skipped (--no-drain)".to_owned()))
    } else {
        step(6, "bench drain (processor drain vs raw SQLite insert)");
        match run_drain(&exe, args.drain_orders).await {
            Ok((value, numbers)) => (Some(value), Some(numbers), None),
            // A missing step 5 should not throw away four measured steps.
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
        intake_no_group_commit,
    };
    let mut results = build_rows(&runs, drain_numbers.as_ref());
    if let (Some(err), Some(row)) = (&drain_error, results.last_mut()) {
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

fn fmt_rate(v: Option<f64>, unit: &str) -> String {
    v.map_or_else(|| "—".to_owned(), |v| format!("{} {unit}", thousands(v.round() as u64)))
}

fn thousands(n: u64) -> String {
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

/// Rounded down, so that a printed ratio never appears to meet a goal that
/// it misses (0.8996 would round to "0.90" next to a failed ≥ 0.9).
fn fmt_ratio(r: Option<f64>) -> String {
    r.map_or_else(|| "—".to_owned(), |r| format!("{:.2}×", (r * 100.0).floor() / 100.0))
}

fn fmt_goal(row: &Row) -> String {
    row.goal
        .map_or_else(|| "—".to_owned(), |g| format!("≥ {g}× ({})", row.ratio_of))
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
        "{:<2} {:<50} {:>16} {:>9} {:>8} {:>20} {:>4}",
        "#", "measurement", "measured", "p99", "ratio", "goal", "met"
    );
    for (i, row) in r.results.iter().enumerate() {
        let _ = writeln!(
            out,
            "{:<2} {:<50} {:>16} {:>9} {:>8} {:>20} {:>4}",
            i + 1,
            row.what,
            fmt_rate(row.throughput, row.unit),
            row.p99_us.map_or_else(|| "—".to_owned(), fmt_us),
            fmt_ratio(row.ratio),
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
    let _ = writeln!(out, "| # | Measurement | Measured | p99 | Ratio | Goal | Met |");
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
            fmt_ratio(row.ratio),
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

/// A server child on a free port with its own temporary data directory.
/// Field order matters: the child is dropped (and, through `kill_on_drop`,
/// killed) before its data directory is removed.
struct Server {
    child: Child,
    url: String,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Server {
    async fn start(exe: &Path, group_commit: bool, extra_env: &[(String, String)]) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("rushhour-bench-")
            .tempdir()
            .context("creating a temporary data directory")?;
        let data = dir.path().join("data");
        std::fs::create_dir_all(&data)?;
        let log = dir.path().join("server.log");
        let log_file = std::fs::File::create(&log)?;
        let addr = format!("127.0.0.1:{}", free_port()?);
        let mut cmd = clean_command(exe);
        cmd.arg("serve")
            .arg("--addr")
            .arg(&addr)
            .arg("--data-dir")
            .arg(&data)
            .env(
                "RUSHHOUR__LOG__GROUP_COMMIT",
                if group_commit { "true" } else { "false" },
            )
            .env("RUSHHOUR__TELEMETRY__LOG_FILTER", "warn")
            .envs(extra_env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file);
        let child = cmd.spawn().with_context(|| format!("spawning {}", exe.display()))?;
        let mut server = Server {
            child,
            url: format!("http://{addr}"),
            log,
            _dir: dir,
        };
        server.wait_ready().await?;
        Ok(server)
    }

    /// Poll `/health/ready` until it answers 200, the child dies, or
    /// `READY_TIMEOUT` passes.
    async fn wait_ready(&mut self) -> anyhow::Result<()> {
        // reqwest has rustls but no crypto provider of its own (ADR 0008):
        // the process default must be ring before a client is built.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(2))
            .build()?;
        let url = format!("{}/health/ready", self.url);
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "the server exited ({status}) before it was ready; its log:\n{}",
                    self.log_tail()
                );
            }
            if let Ok(resp) = client.get(&url).send().await
                && resp.status() == reqwest::StatusCode::OK
            {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!(
                    "{url} not ready after {}s; server log:\n{}",
                    READY_TIMEOUT.as_secs(),
                    self.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// SIGKILL and reap. A graceful stop would only spend time draining a
    /// backlog into a data directory that is deleted right after.
    async fn stop(mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
    }
}

/// A command for a child of ours: killed if we drop it (error, Ctrl-C),
/// and without inherited `RUSHHOUR_*` variables, so that a developer's
/// shell (a Postgres URL, `RUSHHOUR_CONFIG`) cannot silently change what
/// the suite measures; `--server-env` is the explicit way to do that.
fn clean_command(exe: &Path) -> Command {
    let mut cmd = Command::new(exe);
    cmd.kill_on_drop(true);
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("RUSHHOUR_") {
            cmd.env_remove::<OsString>(key);
        }
    }
    cmd
}

/// Ask the OS for a free port. The listener is closed before the server
/// binds it, a small race that only another process grabbing that very
/// port could lose; if it does, the server fails to start and says so.
fn free_port() -> anyhow::Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(l.local_addr()?.port())
}

/// Step 5 runs in its own process: it is CPU- and disk-bound and must not
/// share a runtime (or a page cache warmed by this process) with anything.
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
        Runs {
            live: report(Op::Live, live, 0),
            // Compression lifts the menu a little above the plain read.
            menu: report(Op::Menu, menu * 0.9, 0),
            menu_br: report_with(Op::Menu, menu, 0, vec![REAL_CLIENT_ENCODINGS.parse().unwrap()]),
            intake: report(Op::Orders, intake, 0),
            intake_no_group_commit: report(Op::Orders, no_gc, 3),
        }
    }

    #[test]
    fn ratios_are_checked_against_the_goals() {
        let drain = DrainNumbers {
            drain_per_sec: 20_000.0,
            raw_per_sec: 100_000.0,
            ratio: 0.2,
        };
        let rows = build_rows(&runs(40_000.0, 24_000.0, 38_000.0, 1_000.0), Some(&drain));
        let by = |k: &str| rows.iter().find(|r| r.key == k).unwrap();
        assert_eq!(by("live").ratio, None, "the ceiling is the reference");
        assert_eq!(by("intake").ratio, Some(0.6));
        assert_eq!(by("intake").met, Some(true));
        assert_eq!(by("menu_br").ratio, Some(0.95));
        assert_eq!(by("menu_br").met, Some(true));
        assert!(by("menu_br").what.contains("gzip, br"), "{}", by("menu_br").what);
        assert_eq!(
            by("menu").ratio,
            Some(38_000.0 * 0.9 / 40_000.0),
            "plain, shown beside it"
        );
        assert_eq!(
            (by("menu").goal, by("menu").met),
            (None, None),
            "the goal is on the br row"
        );
        let keys: Vec<&str> = rows.iter().map(|r| r.key).collect();
        assert_eq!(keys, ["live", "intake", "menu", "menu_br", "group_commit", "drain"]);
        assert_eq!(by("group_commit").ratio, Some(24.0));
        assert_eq!(by("group_commit").met, Some(true));
        assert!(by("group_commit").note.as_deref().unwrap().contains("status_500=3"));
        assert_eq!(by("drain").met, Some(false), "0.2 < 0.3");
        assert_eq!(by("intake").p99_us, Some(1_500));
    }

    #[test]
    fn goals_can_fail_and_missing_numbers_are_not_a_pass() {
        let rows = build_rows(&runs(40_000.0, 10_000.0, 30_000.0, 0.0), None);
        let by = |k: &str| rows.iter().find(|r| r.key == k).unwrap();
        assert_eq!(by("intake").met, Some(false));
        assert_eq!(by("menu_br").met, Some(false), "0.75 < 0.9");
        assert_eq!(by("group_commit").ratio, None, "off measured 0: no ratio");
        assert_eq!(by("group_commit").met, None);
        assert_eq!(by("drain").met, None);
    }

    #[test]
    fn tables_show_every_row() {
        let rows = build_rows(&runs(40_000.0, 24_000.0, 38_000.0, 1_000.0), None);
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
            runs: runs(40_000.0, 24_000.0, 38_000.0, 1_000.0),
            drain: None,
            drain_error: None,
        };
        let md = render_markdown(&r);
        assert_eq!(
            md.lines().filter(|l| l.starts_with("| ")).count(),
            7,
            "header + 6 rows:\n{md}"
        );
        assert!(md.contains("40,000 req/s"));
        assert!(md.contains("0.60×"));
        assert!(md.contains("2 × Test CPU"));
        let text = render_text(&r);
        assert!(text.contains("24.00×"));
        assert!(text.contains("yes"));
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["machine"]["nproc"], 2);
        assert_eq!(json["results"][1]["met"], true);
        assert_eq!(json["runs"]["live"]["overall"]["ok_rps"], 40_000.0);
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
        assert_eq!(parse_env("A=b=c").unwrap(), ("A".to_owned(), "b=c".to_owned()));
        assert!(parse_env("novalue").is_err());
        assert!(parse_env("=x").is_err());
    }
}
