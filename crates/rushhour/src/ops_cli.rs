//! The operator commands of seed 000's rake tasks: `sync menu|accounts|all
//! [--background]`, `warmup`, `cache clear [--auth]`, and `dev upstream`
//! (the catalog/loyalty simulator). In the foreground they run the very
//! procedures the background jobs run, with a progress bar; with
//! `--background` they only enqueue the job (once: a sync already queued or
//! running is not queued twice).
//!
//! **Reaching the running server.** The CLI is a short-lived process of its
//! own: what it does to its own caches helps nobody. So after doing the
//! work here (the sync writes the store, which every instance reads), each
//! command broadcasts what the running instances must do — drop their
//! cached menus, warm them, drop their upstream token — through the
//! instance registry in the store (`domain::fleet`, port `Fleet`), waits
//! until every live instance has acked it (at most [`REACH_WAIT`]), and
//! says which instances it reached, or "no running instance reached".
//! Decision and rejected alternatives (the admin API with a credential,
//! Redis pub/sub): `domain::fleet`. It works with no setup on one box
//! (`serve` and the CLI share the SQLite store) and in scale mode (every
//! `api` and `worker` process shares the PostgreSQL store).

use anyhow::Context;
use domain::fleet::Command;
use domain::jobs::{SYNC_ACCOUNTS, SYNC_MENU};
use domain::sync::SyncProgress;
use indicatif::{ProgressBar, ProgressStyle};
use std::net::SocketAddr;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::wiring::Built;

#[derive(clap::Args, Debug)]
pub struct SyncArgs {
    #[arg(value_enum)]
    pub what: SyncWhat,
    /// Enqueue the sync job for a worker instead of running it here.
    #[arg(long)]
    pub background: bool,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncWhat {
    Menu,
    Accounts,
    All,
}

#[derive(clap::Args, Debug)]
pub struct CacheArgs {
    #[command(subcommand)]
    pub cmd: CacheCmd,
}

#[derive(clap::Subcommand, Debug)]
pub enum CacheCmd {
    /// Drop every cached menu, here and in every running instance.
    Clear {
        /// Also drop the cached upstream OAuth2 token (every process
        /// fetches a new one before its next sync).
        #[arg(long)]
        auth: bool,
    },
}

#[derive(clap::Args, Debug)]
pub struct DevArgs {
    #[command(subcommand)]
    pub cmd: DevCmd,
}

#[derive(clap::Subcommand, Debug)]
pub enum DevCmd {
    /// Serve a simulator of the upstream catalog API and loyalty service
    /// (OAuth2 tokens, paging, ETags, 150k accounts, injectable faults).
    Upstream(UpstreamSimArgs),
}

#[derive(clap::Args, Debug)]
pub struct UpstreamSimArgs {
    /// Listen here (upstream.base_url points at it by default).
    #[arg(long, default_value = "127.0.0.1:8090")]
    pub listen: SocketAddr,
    #[arg(long, default_value_t = 150_000)]
    pub accounts: usize,
    #[arg(long, default_value_t = 200)]
    pub items: usize,
}

/// How long a command waits for the running instances to ack its
/// broadcast (they poll every 200 ms; a warm-up takes them a moment).
pub const REACH_WAIT: Duration = Duration::from_secs(10);

/// Broadcast `commands` to the running instances and print who was reached.
async fn reach(built: &Built, commands: &[Command]) -> anyhow::Result<()> {
    let reach = domain::fleet::broadcast(&*built.app.store, &*built.app.clock, commands, REACH_WAIT)
        .await
        .context("reach the running instances")?;
    println!("{}", reach.summary());
    Ok(())
}

/// A progress bar as a `SyncProgress`; hidden when stderr is no terminal.
struct Bar(ProgressBar);

impl Bar {
    fn new(what: &str) -> Self {
        let bar = ProgressBar::new(0);
        bar.set_style(
            ProgressStyle::with_template("{prefix:>9} [{bar:40}] {pos}/{len} ({per_sec}, {eta})")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        bar.set_prefix(what.to_owned());
        Self(bar)
    }
}

impl SyncProgress for Bar {
    fn set_total(&self, n: u64) {
        self.0.set_length(n);
    }

    fn advance(&self, n: u64) {
        self.0.inc(n);
    }
}

pub async fn sync(cfg: &Config, built: &Built, args: &SyncArgs) -> anyhow::Result<()> {
    let kinds: &[&str] = match args.what {
        SyncWhat::Menu => &[SYNC_MENU],
        SyncWhat::Accounts => &[SYNC_ACCOUNTS],
        SyncWhat::All => &[SYNC_MENU, SYNC_ACCOUNTS],
    };
    if args.background {
        let now = built.app.clock.now_ms();
        let jobs: Vec<_> = kinds.iter().map(|k| domain::jobs::sync_job(k, now)).collect();
        let done = built.jobs.enqueue(&jobs, now).await.context("enqueue the sync")?;
        for (kind, e) in kinds.iter().zip(done) {
            match e {
                domain::jobs::Enqueued::Created(id) => println!("{kind}: enqueued as job {id}"),
                domain::jobs::Enqueued::Duplicate(id) => println!("{kind}: already queued or running as job {id}"),
            }
        }
        return Ok(());
    }
    let t = built.tasks(cfg);
    for kind in kinds {
        let run = if *kind == SYNC_MENU {
            let bar = Bar::new("menu");
            let r = t.sync_menu(&bar).await;
            bar.0.finish_and_clear();
            r
        } else {
            let bar = Bar::new("accounts");
            let r = t.sync_accounts(&bar).await;
            bar.0.finish_and_clear();
            r
        }
        .with_context(|| format!("{kind} failed"))?;
        println!(
            "{kind}: {} — fetched {}, changed {}, {} DB queries, {} upstream errors, {:.2} s",
            run.outcome,
            run.fetched,
            run.changed,
            run.db_queries,
            run.errors,
            (run.finished_at - run.started_at) as f64 / 1000.0
        );
    }
    // The store has the new data; the running instances drop and reload
    // what they cached of it.
    let mut commands = Vec::new();
    if kinds.contains(&SYNC_MENU) {
        commands.extend([Command::ClearMenus, Command::WarmUp]);
    }
    if kinds.contains(&SYNC_ACCOUNTS) {
        commands.push(Command::AccountsSynced);
    }
    reach(built, &commands).await
}

pub async fn warmup(cfg: &Config, built: &Built) -> anyhow::Result<()> {
    let t = built.tasks(cfg);
    let bar = Bar::new("menus");
    let started = std::time::Instant::now();
    let n = t.warm_up(&bar).await.context("warm up the menu caches")?;
    bar.0.finish_and_clear();
    println!("warmed {n} menus in {:.2} s", started.elapsed().as_secs_f64());
    reach(built, &[Command::WarmUp]).await
}

pub async fn cache(cfg: &Config, built: &Built, args: &CacheArgs) -> anyhow::Result<()> {
    let CacheCmd::Clear { auth } = args.cmd;
    built.app.menus.clear().await.context("clear the menu caches")?;
    println!("menu caches cleared");
    let mut commands = vec![Command::ClearMenus];
    if auth {
        // The epoch reaches a process that is not running now, too.
        built
            .tasks(cfg)
            .clear_auth_everywhere()
            .await
            .context("drop the upstream token")?;
        println!("upstream token dropped (every process fetches a new one before its next sync)");
        commands.push(Command::ClearAuth);
    }
    reach(built, &commands).await
}

pub async fn dev(cfg: &Config, args: &DevArgs) -> anyhow::Result<()> {
    let DevCmd::Upstream(a) = &args.cmd;
    let listener = tokio::net::TcpListener::bind(a.listen)
        .await
        .with_context(|| format!("listen on {}", a.listen))?;
    let sim = upstream::sim::SimOptions {
        accounts: a.accounts,
        items: a.items,
        client_id: cfg.upstream.client_id.clone(),
        client_secret: cfg.upstream.client_secret.clone(),
        ..Default::default()
    };
    println!(
        "upstream simulator on http://{} ({} accounts, {} items; faults: POST /_sim/faults)",
        a.listen, a.accounts, a.items
    );
    let shutdown = CancellationToken::new();
    let stop = shutdown.clone();
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        stop.cancel();
    });
    upstream::sim::serve(listener, sim, shutdown)
        .await
        .context("serve the upstream simulator")?;
    tokio::time::sleep(Duration::from_millis(10)).await;
    Ok(())
}
