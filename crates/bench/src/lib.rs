//! `rushhour bench`: the built-in HTTP load generator (closed and open
//! loop, weighted mixes, presets from quiet to rush, HDR percentiles),
//! `bench suite`, the one-run benchmark behind the numbers in
//! `docs/benchmarks.md`, `bench chaos` (`kill -9` under load, then every
//! acknowledgement checked), and the in-process benchmarks (`drain`,
//! `jobs`, `produce`) with the raw baselines they are compared with.
//!
//! The binary's `rushhour bench …` delegates here ([`BenchArgs`], [`run`]),
//! so anyone with the binary can reproduce a published number and the
//! suite starts servers from the very executable it measures. The code
//! lives in its own crate rather than in the binary or the store library,
//! so neither carries a load generator nor benchmark-only SQL.
//!
//! Map: `config` (flags, presets, mixes; pure), `order` (valid random orders
//! from the served menu), `client` (one hyper HTTP/1 connection per
//! worker), `load` (the engine), `stats` (recording and the report),
//! `suite` (servers, runs, ratios against the goals), `chaos` (kills under
//! load, the ledger of answers, the checks), `drain` (processor
//! drain vs `baseline`/`baseline_pg`), `jobs` (job-runner drain),
//! `produce` (raw Kafka producer).

pub mod baseline;
pub mod baseline_pg;
pub mod chaos;
mod client;
mod config;
pub mod drain;
mod jobs;
mod load;
mod order;
#[cfg(feature = "kafka")]
pub mod produce;
mod stats;
mod suite;

use std::time::Duration;

pub use config::{ExtraHeader, LoadConfig, Mix, Mode, Op, Preset};
pub use load::{LoadReport, RunOptions, run_load};
pub use suite::SuiteArgs;

pub use config::parse_duration;
use config::{DEFAULT_STORE, Overrides, resolve};

#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub cmd: Option<BenchCmd>,
    #[command(flatten)]
    pub load: LoadArgs,
}

#[derive(clap::Subcommand, Debug)]
pub enum BenchCmd {
    /// One run that measures the headline ratios (HTTP ceiling, durable
    /// intake, cached menu plain and compressed, group commit on/off,
    /// processor drain) against their goals, on servers it starts itself.
    Suite(SuiteArgs),
    /// `kill -9` a server every few seconds under steady load (orders and
    /// payment callbacks, retried as real clients do): the embedded
    /// `serve`, or in scale mode an `api` and a `worker` in turn. Then
    /// check that every acknowledged order exists once and is confirmed
    /// and every acknowledged payment was applied once; fails if not.
    Chaos(chaos::ChaosArgs),
    /// In-process processor drain vs raw SQLite insert.
    Drain(drain::DrainArgs),
    /// Job runner drain: no-op jobs burned down per second on the SQLite or
    /// PostgreSQL queue (scripts/bench-jobs.sh compares it with Sidekiq).
    Jobs(jobs::JobsBenchArgs),
    /// A raw Kafka producer (acks=all, idempotent): the ceiling scale-mode
    /// intake is compared with (scripts/bench-scale.sh runs both).
    #[cfg(feature = "kafka")]
    Produce(produce::ProduceArgs),
}

/// Load-generate against a running server. Flags left out come from
/// `--preset` (or the defaults: closed loop, 64 connections, 10 s, the
/// everyday mix).
#[derive(clap::Args, Debug)]
pub struct LoadArgs {
    /// Base URL of the server under test.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// Named load shape: quiet and steady are open-loop, busy and rush closed-loop.
    #[arg(long, value_enum)]
    pub preset: Option<Preset>,
    /// closed: N workers back-to-back (capacity). open: a fixed request rate (latency at a load).
    #[arg(long, value_enum)]
    pub mode: Option<Mode>,
    /// Closed loop: workers, each with its own keep-alive connection.
    /// Open loop: most requests in flight.
    #[arg(long)]
    pub connections: Option<usize>,
    /// Open loop: requests per second (implies --mode open). Latency is
    /// measured from each request's scheduled send time.
    #[arg(long)]
    pub rate: Option<f64>,
    /// Measured time, e.g. 10s, 2m.
    #[arg(long, value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// Unmeasured time first (connections, caches) [default: 2s].
    #[arg(long, value_parser = parse_duration)]
    pub warmup: Option<Duration>,
    /// Weights per operation, e.g. orders=20,status=30,menu=50 (also: live).
    #[arg(long, conflicts_with = "scenario")]
    pub mix: Option<Mix>,
    /// A single operation instead of a mix.
    #[arg(long, value_enum)]
    pub scenario: Option<Op>,
    /// Store whose menu is read and ordered from.
    #[arg(long, default_value = DEFAULT_STORE)]
    pub store: String,
    /// Per-request timeout.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// A header for every measured request, e.g. 'Accept-Encoding: gzip, br'
    /// to be served the compressed menu as browsers are (repeatable).
    #[arg(long = "header", short = 'H', value_name = "NAME: VALUE")]
    pub headers: Vec<ExtraHeader>,
    /// Print the report as JSON on stdout (and no progress bar).
    #[arg(long)]
    pub json: bool,
}

pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    match args.cmd {
        Some(BenchCmd::Drain(drain)) => drain::run(&drain).await,
        Some(BenchCmd::Jobs(j)) => jobs::run(&j).await,
        #[cfg(feature = "kafka")]
        Some(BenchCmd::Produce(p)) => produce::run(&p).await,
        Some(BenchCmd::Suite(suite)) => {
            // Dropping the suite's future drops its server children, and
            // they are `kill_on_drop`: Ctrl-C leaves no orphan servers.
            tokio::select! {
                r = suite::run(&suite) => r,
                _ = tokio::signal::ctrl_c() => anyhow::bail!("interrupted; servers stopped"),
            }
        }
        Some(BenchCmd::Chaos(c)) => run_chaos(&c).await,
        None => run_load_command(&args.load).await,
    }
}

async fn run_chaos(args: &chaos::ChaosArgs) -> anyhow::Result<()> {
    // Dropping the run drops its server children, which are
    // `kill_on_drop`; a scale run's schema and topics are then left behind
    // (their names were printed at the start).
    let report = tokio::select! {
        r = chaos::run(args) => r?,
        _ = tokio::signal::ctrl_c() => anyhow::bail!("interrupted; servers stopped"),
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.render());
    }
    let c = &report.checks;
    if !report.passed {
        anyhow::bail!(
            "chaos run failed: orders lost {}, duplicated {}, unconfirmed {}; payments lost {}, duplicated {}, unapplied {}{}",
            c.orders_lost,
            c.orders_duplicated,
            c.orders_unconfirmed,
            c.payments_lost,
            c.payments_duplicated,
            c.payments_unapplied,
            if report.settled_ms.is_none() {
                "; the store had not applied everything within --settle"
            } else {
                ""
            }
        );
    }
    Ok(())
}

async fn run_load_command(args: &LoadArgs) -> anyhow::Result<()> {
    let overrides = Overrides {
        preset: args.preset,
        mode: args.mode,
        connections: args.connections,
        rate: args.rate,
        duration: args.duration,
        warmup: args.warmup,
        mix: args.mix.clone(),
        scenario: args.scenario,
        headers: args.headers.clone(),
    };
    let cfg = resolve(&args.url, &args.store, args.timeout, &overrides)?;
    let opts = RunOptions {
        progress: !args.json && std::io::IsTerminal::is_terminal(&std::io::stderr()),
        stop_on_ctrl_c: true,
    };
    let report = run_load(&cfg, opts).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.render());
    }
    Ok(())
}

#[cfg(test)]
mod tests;
