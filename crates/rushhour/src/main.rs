//! `rushhour`: the coffee-ordering backend's one binary. Parses the command
//! line, loads configuration and dispatches to a subcommand.

use anyhow::Context;
use clap::{Parser, Subcommand};
use rushhour::config::{Config, HttpOverride, Overrides};
use rushhour::wiring::{self, Roles};
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use tokio_util::sync::CancellationToken;

/// jemalloc, with its heap profiler compiled in and off until asked
/// (`GET /v1/admin/profile/heap`, ADR 0011; settings baked in by
/// `.cargo/config.toml`). Without the `jemalloc` feature: the system
/// allocator (the comparison build of scripts/bench-allocator.sh).
#[cfg(feature = "jemalloc")]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Parser, Debug)]
#[command(
    name = "rushhour",
    version,
    about = "Coffee-ordering backend built for the morning rush"
)]
struct Cli {
    /// Extra configuration file (TOML) merged over the defaults.
    #[arg(long, global = true, env = "RUSHHOUR_CONFIG")]
    config: Option<PathBuf>,
    /// Address the HTTP API listens on (overrides http.addr).
    #[arg(long, global = true)]
    addr: Option<SocketAddr>,
    /// Directory for the embedded mode's files (overrides data_dir).
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run everything in one process: API, order processors (the default mode).
    Serve,
    /// Run only the HTTP API (intake, reads, live events).
    Api,
    /// Run the order processors and job workers (serving /health/* and /metrics on http.addr).
    Worker,
    /// Run only the periodic-job scheduler (each tick fires once across all instances).
    Scheduler,
    /// Create or upgrade the schemas (and seed the demo menu when enabled), then exit.
    Migrate,
    /// Print the effective configuration with secrets redacted.
    Config,
    /// Re-drive dead letters: append them to the event log again, oldest first.
    ReplayDlq(rushhour::replay::ReplayArgs),
    /// Background jobs: queue counts, list, show, retry or discard jobs.
    Jobs(rushhour::jobs_cli::JobsArgs),
    /// Sync the menu and/or loyalty accounts from upstream now (or --background).
    Sync(rushhour::ops_cli::SyncArgs),
    /// Load every store's menu into the caches.
    Warmup,
    /// Cache operations: `cache clear [--auth]`.
    Cache(rushhour::ops_cli::CacheArgs),
    /// Development helpers: `dev upstream` serves the upstream simulator.
    Dev(rushhour::ops_cli::DevArgs),
    /// Staff accounts and API keys: list, add, disable, enable, set-password, set-role, keys, issue-key, revoke-key.
    Users(rushhour::users_cli::UsersArgs),
    /// Outbound webhook subscribers: list, add, remove, disable, enable, test, deliveries.
    Webhooks(rushhour::webhooks_cli::WebhooksArgs),
    /// Watch a running instance live in the terminal (over its HTTP API, with an admin key).
    Monitor(rushhour::monitor::MonitorArgs),
    /// Load-generate against a running server, or run the benchmark suite.
    Bench(Box<bench::BenchArgs>),
    /// Refresh planner statistics, check integrity, report indexes and free space of every database (--vacuum to compact).
    OptimizeDb(rushhour::db_cli::OptimizeArgs),
    /// Copy every database (and the generated secrets) into a timestamped folder, safely while serve runs.
    Backup(rushhour::db_cli::BackupArgs),
    /// Save a CPU flamegraph (SVG) or, with --heap, a heap profile of a running instance, over its HTTP API with an admin key.
    Profile(rushhour::profile_cli::ProfileArgs),
    /// Verify a backup and restore it into the data directory (refused while an instance runs there).
    Restore(rushhour::db_cli::RestoreArgs),
}

fn main() -> anyhow::Result<()> {
    // One TLS stack for every backend: rustls with ring (ADR 0008). reqwest
    // is built without a crypto provider of its own and takes the process
    // default; set it before anything builds a client.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = Cli::parse();
    let overrides = Overrides {
        data_dir: cli.data_dir.clone(),
        http: cli.addr.map(|addr| HttpOverride { addr }),
    };
    let cfg = Config::load(cli.config.as_deref(), &overrides)?;
    let format = if cfg.telemetry.log_format == "json" {
        telemetry::LogFormat::Json
    } else {
        telemetry::LogFormat::Pretty
    };
    // Traces are exported by the long-running processes only, named for
    // their role; a CLI command's few spans would be noise.
    let role = match cli.command {
        Command::Serve => Some("serve"),
        Command::Api => Some("api"),
        Command::Worker => Some("worker"),
        Command::Scheduler => Some("scheduler"),
        _ => None,
    };
    let traces = role.and_then(|r| cfg.telemetry.traces(r));
    let traces =
        telemetry::init(&cfg.telemetry.log_filter, format, traces.as_ref()).context("telemetry.otlp_endpoint")?;
    #[cfg(feature = "jemalloc")]
    profiling::declare_jemalloc_global();
    // Heap profiling from start: before the runtime and the first request,
    // so the profile covers everything the process holds.
    if cfg.profiling.heap && matches!(role, Some("serve" | "api")) {
        match profiling::keep_on_from_start() {
            Ok(()) => tracing::info!("heap profiling on from start ([profiling] heap = true)"),
            Err(why) => tracing::warn!(%why, "[profiling] heap = true, but heap profiling is unavailable"),
        }
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("start the tokio runtime")?;
    let result = rt.block_on(async move {
        match cli.command {
            Command::Serve => serve(&cfg, Roles::ALL).await,
            Command::Api => {
                serve(
                    &cfg,
                    Roles {
                        api: true,
                        processors: false,
                        jobs: false,
                        scheduler: false,
                    },
                )
                .await
            }
            Command::Worker => {
                serve(
                    &cfg,
                    Roles {
                        api: false,
                        processors: true,
                        jobs: true,
                        scheduler: false,
                    },
                )
                .await
            }
            Command::Scheduler => {
                serve(
                    &cfg,
                    Roles {
                        api: false,
                        processors: false,
                        jobs: false,
                        scheduler: true,
                    },
                )
                .await
            }
            Command::Jobs(args) => {
                let jobs = wiring::open_jobs(&cfg).await?;
                let now = domain::ports::system_now_ms();
                rushhour::jobs_cli::run(&*jobs, &args, now, &mut std::io::stdout()).await
            }
            Command::Sync(args) => {
                let built = wiring::build(&cfg).await?;
                rushhour::ops_cli::sync(&cfg, &built, &args).await
            }
            Command::Warmup => {
                let built = wiring::build(&cfg).await?;
                rushhour::ops_cli::warmup(&cfg, &built).await
            }
            Command::Cache(args) => {
                let built = wiring::build(&cfg).await?;
                rushhour::ops_cli::cache(&cfg, &built, &args).await
            }
            Command::Dev(args) => rushhour::ops_cli::dev(&cfg, &args).await,
            Command::Migrate => {
                wiring::build(&cfg).await?;
                println!(
                    "migrations applied (store: {}, log: {})",
                    cfg.redacted_store_url(),
                    cfg.redacted_log_url()
                );
                Ok(())
            }
            Command::Config => {
                print!("{}", cfg.redacted_toml()?);
                Ok(())
            }
            Command::ReplayDlq(args) => {
                let built = wiring::build(&cfg).await?;
                let done = rushhour::replay::replay(&built.app, &args).await?;
                if args.dry_run {
                    println!("{} dead letters would be re-driven", done.listed);
                } else {
                    println!("re-drove {} of {} dead letters", done.replayed, done.listed);
                }
                Ok(())
            }
            Command::Users(args) => {
                let built = wiring::build(&cfg).await?;
                let os_user = rushhour::config::os_user();
                let stdin = std::io::stdin();
                rushhour::users_cli::run(
                    &built.identity,
                    &args,
                    &os_user,
                    &mut stdin.lock(),
                    &mut std::io::stdout(),
                )
                .await
            }
            Command::Webhooks(args) => {
                let built = wiring::build(&cfg).await?;
                let os_user = rushhour::config::os_user();
                let now = domain::ports::system_now_ms();
                rushhour::webhooks_cli::run(&*built.app.store, &args, &os_user, now, &mut std::io::stdout()).await
            }
            Command::Bench(args) => bench::run(*args).await,
            Command::Monitor(args) => rushhour::monitor::run(&args).await,
            Command::OptimizeDb(args) => rushhour::db_cli::optimize(&cfg, &args, &mut std::io::stdout()).await,
            Command::Backup(args) => rushhour::db_cli::run_backup(&cfg, &args, &mut std::io::stdout()).await,
            Command::Profile(args) => {
                let taken = rushhour::profile_cli::run(&args).await?;
                println!("{taken}");
                Ok(())
            }
            Command::Restore(args) => rushhour::db_cli::restore(&cfg, &args, &mut std::io::stdout()).await,
        }
    });
    // The spans of the last requests and batches leave before the process
    // does (the exporter has a thread and an HTTP client of its own).
    traces.shutdown();
    result
}

async fn serve(cfg: &Config, roles: Roles) -> anyhow::Result<()> {
    cfg.check_scale_secrets()?;
    // Embedded: one process owns the data directory's files, and `restore`
    // must be able to tell (released by the kernel when the process ends).
    let _instance = if cfg.is_scale_mode() {
        None
    } else {
        Some(rushhour::instance::InstanceLock::acquire(&cfg.data_dir)?)
    };
    let built = wiring::build(cfg).await?;
    if roles.api
        && let Some(password) = wiring::bootstrap_admin(cfg, &built).await?
    {
        let path = cfg.data_dir.join("admin.password");
        // The terminal only: stdout of a service is its log.
        if std::io::stdout().is_terminal() {
            println!("Created the admin account 'admin' with password: {password}");
            println!(
                "(also in {}; change it with `rushhour users set-password admin`)",
                path.display()
            );
        } else {
            tracing::info!(file = %path.display(), "created the admin account 'admin'; its password is in the file");
        }
    }
    if built.generated_webhook_secret {
        println!(
            "Generated a payment-webhook secret (stored in {})",
            cfg.data_dir.join("webhook.secret").display()
        );
    }
    // Every role listens: `api`/`serve` for the API, `worker` for the
    // probes and /metrics only.
    let listener = tokio::net::TcpListener::bind(cfg.http.addr)
        .await
        .with_context(|| format!("listen on {}", cfg.http.addr))?;
    tracing::info!(
        addr = %cfg.http.addr,
        api = roles.api,
        processors = roles.processors,
        jobs = roles.jobs,
        scheduler = roles.scheduler,
        "rushhour is listening"
    );
    let listener = Some(listener);
    let shutdown = CancellationToken::new();
    tokio::spawn(signal_on_stop(shutdown.clone()));
    wiring::run(cfg, &built, listener, roles, shutdown).await
}

/// Cancel on Ctrl-C or SIGTERM.
async fn signal_on_stop(shutdown: CancellationToken) {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot listen for SIGTERM");
            let _ = tokio::signal::ctrl_c().await;
            shutdown.cancel();
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        _ = term.recv() => {},
    }
    shutdown.cancel();
}
