//! `rushhour bench chaos`: `kill -9` under steady load, then proof that
//! nothing acknowledged was lost or applied twice (issue 14).
//!
//! The processes (`cluster.rs`, started by `suite::server`, the suite's
//! own process starter) are one embedded `serve` on a fresh data
//! directory, or in scale mode `api`s and `worker`s over the PostgreSQL
//! and Kafka the caller names. They take orders at a steady rate and
//! payment callbacks for some of them, retried by the clients with the
//! same `Idempotency-Key` (and the same callback) until answered, on the
//! next api when there are several (`traffic.rs`). Every few seconds, at a
//! time drawn around `--kill-every`, a process gets SIGKILL and is started
//! again (embedded: the `serve`, on the same port and files; scale: an
//! api and a worker in turn); the load never stops. After `--duration`
//! the kills stop, the answers still owed are collected, the store is
//! given `--settle` to apply everything, and every acknowledgement is
//! checked against the log's idempotency claims, the store and the API
//! (`verify.rs`). The report gives the figures (orders and callbacks
//! acknowledged, kills, the time from each kill to `/health/ready`, to
//! the first 202 from a restarted `serve` or api, and to a restarted
//! worker's catching up) and the check counts; lost, duplicated or
//! unconfirmed anything fails the run.
//!
//! Why a command and not only a test: the same run, for minutes, is how a
//! release is soaked, and anyone with the binary can repeat a published
//! figure. The CI tests run it short, in both modes
//! (`crates/rushhour/tests/it/chaos.rs`).

mod cluster;
mod traffic;
mod verify;

use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use tokio::task::JoinSet;
use tokio::time::Instant;

use self::cluster::{Cluster, WORKER_RESTART_AFTER, random_hex};
pub use self::cluster::{Mode, Role, ScaleArgs};
use self::traffic::{Kill, LoadShape, Traffic};
pub use self::verify::Checks;
use super::client::Target;
use super::config::{DEFAULT_STORE, parse_duration, parse_key_value};
use super::order::{BODY_POOL, OrderMenu};
use super::suite::server::ServerError;
use super::suite::thousands;

/// How long a killed process may take to be back (a 202 from a restarted
/// `serve` or api; a restarted worker caught up) before the run is
/// abandoned: a process that does not come back is the finding.
const RECOVERY_TIMEOUT: Duration = Duration::from_secs(60);
/// Each gap between kills is drawn uniformly within ± this share of
/// `--kill-every`, so kills land at every phase of a group commit and a
/// processor batch rather than in step with them.
const JITTER: f64 = 0.25;

#[derive(clap::Args, Debug, Clone)]
pub struct ChaosArgs {
    /// embedded: one `serve` on SQLite, killed every time. scale: `api`
    /// and `worker` processes over --postgres and --kafka, an api and a
    /// worker killed in turn.
    #[arg(long, value_enum, default_value = "embedded")]
    pub mode: Mode,
    /// How long kills go on under load; then the run settles and checks.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Mean time between two kills (each gap drawn ±25 % around it, and at
    /// least half of it after the killed process was back) [default: 3s
    /// embedded, 10s scale].
    #[arg(long, value_parser = parse_duration)]
    pub kill_every: Option<Duration>,
    /// Orders per second offered, whatever the server does [default: 500
    /// embedded, 200 scale].
    #[arg(long)]
    pub rate: Option<f64>,
    /// Order clients, each with its own keep-alive connection to each
    /// front process (callback senders: a quarter as many, at least two).
    #[arg(long, default_value_t = 16)]
    pub connections: usize,
    /// Share of acknowledged orders that get a payment callback.
    #[arg(long, default_value_t = 0.5)]
    pub pay: f64,
    /// Share of acknowledged callbacks delivered a second time.
    #[arg(long, default_value_t = 0.2)]
    pub redeliver: f64,
    /// After the kills: how long the answers still owed and the store's
    /// applying of everything acknowledged may take.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub settle: Duration,
    /// Per-request timeout (a request that times out is sent again).
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Store whose menu is ordered from.
    #[arg(long, default_value = DEFAULT_STORE)]
    pub store: String,
    #[command(flatten)]
    pub scale: ScaleArgs,
    /// Seed of the kill times, the order mix and the choice of callbacks
    /// (random if absent; the report gives it).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Executable to start the servers from (default: this one).
    #[arg(long)]
    pub server_bin: Option<PathBuf>,
    /// Extra environment for every server process, e.g.
    /// RUSHHOUR__LOG__MAX_BATCH=256 (repeatable). Inherited RUSHHOUR_*
    /// variables are not passed on.
    #[arg(long = "server-env", value_name = "KEY=VALUE", value_parser = parse_key_value)]
    pub server_env: Vec<(String, String)>,
    /// Print the report as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

/// Why a chaos run could not be carried out (as opposed to a run that
/// found something lost, which is a report with `passed: false`).
#[derive(Debug, thiserror::Error)]
pub enum ChaosError {
    #[error("{0}")]
    Args(&'static str),
    #[error("locating this executable")]
    Exe(#[source] std::io::Error),
    #[error("starting the server")]
    Start(#[source] ServerError),
    #[error("starting {name} again after kill {kill}")]
    Restart {
        kill: usize,
        name: String,
        #[source]
        source: ServerError,
    },
    #[error("{what} within {}s of kill {kill}; logs:\n{log}", RECOVERY_TIMEOUT.as_secs())]
    NoRecovery { kill: usize, what: String, log: String },
    #[error("setting up the run: {0}")]
    Setup(String),
    #[error("fetching the menu: {0}")]
    Menu(String),
    #[error("the server's URL: {0}")]
    Target(String),
    #[error("HTTP")]
    Http(#[source] reqwest::Error),
    #[error("{0}")]
    Api(String),
    #[error("reading {what}")]
    Db {
        what: &'static str,
        #[source]
        source: rusqlite::Error,
    },
    #[error("reading {what}")]
    Pg {
        what: &'static str,
        #[source]
        source: sqlx::Error,
    },
    #[error("a load client panicked")]
    Client(#[source] tokio::task::JoinError),
}

/// Everything a run measured and found, serializable for `--json`.
#[derive(Debug, Clone, Serialize)]
pub struct ChaosReport {
    pub mode: Mode,
    pub settings: Settings,
    pub orders: Orders,
    pub payments: Payments,
    pub kills: usize,
    /// Kills per role (`serve`; `api` and `worker`).
    pub kills_by_role: std::collections::BTreeMap<String, usize>,
    /// Per kill, in order.
    pub recoveries: Vec<Recovery>,
    /// Kill to the restarted `serve`'s or api's `/health/ready` (a
    /// worker's is in its recovery, and includes the wait before its
    /// restart).
    pub to_ready_ms: Option<Spread>,
    /// Kill to the first 202 from the restarted `serve` or api.
    pub to_202_ms: Option<Spread>,
    /// Kill of a worker to every order acknowledged before it confirmed.
    pub to_caught_up_ms: Option<Spread>,
    /// From the end of the kills until the store had applied everything
    /// acknowledged; `None` if it had not within `--settle`.
    pub settled_ms: Option<u64>,
    pub checks: Checks,
    pub passed: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Settings {
    pub duration_secs: f64,
    pub kill_every_secs: f64,
    pub rate: f64,
    pub connections: usize,
    pub pay: f64,
    pub redeliver: f64,
    pub seed: u64,
    /// Front processes (1 `serve`, or the `api`s) and workers.
    pub apis: usize,
    pub workers: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct Orders {
    /// Every order answered 202, warm-up included.
    pub acknowledged: usize,
    /// Orders placed before the load (scale mode: proof that the workers
    /// cover every partition), checked like the rest.
    pub warm_up: usize,
    /// 202s replayed from an earlier attempt's commit (the answer to that
    /// attempt was lost to a kill).
    pub replayed: u64,
    pub retries: u64,
    /// Sent and never answered before the run stopped waiting.
    pub unanswered: usize,
    /// Final answers other than 202, by reason.
    pub refused: std::collections::BTreeMap<String, u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Payments {
    pub acknowledged: usize,
    pub redeliveries_acknowledged: u64,
    pub replayed: u64,
    pub retries: u64,
    pub unanswered: usize,
    pub skipped: u64,
    pub refused: std::collections::BTreeMap<String, u64>,
}

/// One kill: of what, when (seconds into the run) and how long the way
/// back took.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Recovery {
    pub role: Role,
    /// `serve`, `api1`, `worker2`, …
    pub process: String,
    pub at_secs: f64,
    pub to_ready_ms: Option<u64>,
    pub to_202_ms: Option<u64>,
    pub to_caught_up_ms: Option<u64>,
}

/// Nearest-rank percentiles of a few figures, in milliseconds.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct Spread {
    pub p50: u64,
    pub p99: u64,
    pub max: u64,
}

impl Spread {
    pub fn of(values: impl IntoIterator<Item = u64>) -> Option<Self> {
        let mut v: Vec<u64> = values.into_iter().collect();
        v.sort_unstable();
        let rank = |p: f64| v[((p * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1];
        (!v.is_empty()).then(|| Spread {
            p50: rank(0.50),
            p99: rank(0.99),
            max: v[v.len() - 1],
        })
    }
}

impl ChaosArgs {
    /// `--kill-every`, or the mode's default.
    fn kill_every(&self) -> Duration {
        self.kill_every.unwrap_or(match self.mode {
            Mode::Embedded => Duration::from_secs(3),
            Mode::Scale => Duration::from_secs(10),
        })
    }

    /// `--rate`, or the mode's default.
    fn rate(&self) -> f64 {
        self.rate.unwrap_or(match self.mode {
            Mode::Embedded => 500.0,
            Mode::Scale => 200.0,
        })
    }

    fn check(&self) -> Result<(), ChaosError> {
        let share = |x: f64| (0.0..=1.0).contains(&x);
        let rate = self.rate();
        match () {
            _ if self.duration.is_zero() => Err(ChaosError::Args("--duration must be longer than 0")),
            _ if self.kill_every().is_zero() => Err(ChaosError::Args("--kill-every must be longer than 0")),
            _ if !(rate.is_finite() && rate > 0.0) => Err(ChaosError::Args(
                "--rate must be a positive number of orders per second",
            )),
            _ if self.connections == 0 => Err(ChaosError::Args("--connections must be at least 1")),
            _ if !share(self.pay) || !share(self.redeliver) => {
                Err(ChaosError::Args("--pay and --redeliver are shares between 0 and 1"))
            }
            _ => Ok(()),
        }
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Run one chaos run to its report.
pub async fn run(args: &ChaosArgs) -> Result<ChaosReport, ChaosError> {
    args.check()?;
    let exe = match &args.server_bin {
        Some(p) => p.clone(),
        None => std::env::current_exe().map_err(ChaosError::Exe)?,
    };
    let seed = args.seed.unwrap_or_else(rand::random);
    let mut rng = SmallRng::seed_from_u64(seed);
    // The staff key reads orders back; the webhook secret signs callbacks.
    // Fresh per run, given to the servers rather than read from their files.
    let staff_key = random_hex(&mut rng, 24);
    let secret = random_hex(&mut rng, 24);
    let run_tag = format!("{:08x}", rng.random::<u32>());
    let mut env = args.server_env.clone();
    env.push(("RUSHHOUR__AUTH__STAFF_KEY".into(), staff_key.clone()));
    env.push(("RUSHHOUR__WEBHOOKS__SECRET".into(), secret.clone()));
    // Ready before the load: the `serve`, or the schema, the apis and
    // then the workers one by one, each proven to cover every partition.
    let mut cluster = match args.mode {
        Mode::Embedded => Cluster::embedded(&exe, env).await?,
        Mode::Scale => Cluster::scale(&exe, env, &args.scale, &run_tag, &mut rng).await?,
    };
    let outcome = run_on(&mut cluster, args, seed, &mut rng, &staff_key, secret, &run_tag).await;
    cluster.stop().await;
    outcome
}

/// The run proper, on a started cluster (stopped by the caller whatever
/// happens here).
async fn run_on(
    cluster: &mut Cluster,
    args: &ChaosArgs,
    seed: u64,
    rng: &mut SmallRng,
    staff_key: &str,
    secret: String,
    run_tag: &str,
) -> Result<ChaosReport, ChaosError> {
    let urls = cluster.urls();
    // reqwest has rustls but no crypto provider of its own (ADR 0008);
    // `Server::start` installed ring.
    let http = reqwest::Client::builder()
        .no_proxy()
        .timeout(args.timeout)
        .build()
        .map_err(ChaosError::Http)?;
    let menu = fetch_menu(&http, &urls[0], &args.store).await?;
    let bodies = menu.body_pool(rng, BODY_POOL);
    let key_prefix = traffic::key_prefix(run_tag);
    let mut warm = Vec::new();
    for round in 0..cluster.workers_to_start() {
        cluster.start_worker().await?;
        warm.extend(cluster.warm_up(&http, &bodies, &key_prefix, round).await?);
    }
    let targets = urls
        .iter()
        .map(|u| Target::parse(u).map_err(|e| ChaosError::Target(format!("{e:#}"))))
        .collect::<Result<Vec<_>, _>>()?;
    let (rate, kill_every) = (args.rate(), args.kill_every());
    eprintln!(
        "chaos: {} ({}; seed {seed}); {} s of {rate} orders/s, kill -9 every ~{} s",
        match args.mode {
            Mode::Embedded => "serve".to_owned(),
            Mode::Scale => format!("{} api(s) and {} worker(s)", urls.len(), args.scale.workers),
        },
        urls.join(", "),
        args.duration.as_secs_f64(),
        kill_every.as_secs_f64()
    );
    let start = Instant::now();
    let traffic = Arc::new(Traffic::new(
        targets,
        bodies,
        run_tag.to_owned(),
        secret,
        LoadShape {
            rate,
            pay: args.pay,
            redeliver: args.redeliver,
            timeout: args.timeout,
        },
        start,
        start + args.duration,
    ));
    let warm_up = warm.len();
    traffic.ledger().orders.extend(warm);
    let mut order_clients = JoinSet::new();
    for _ in 0..args.connections {
        order_clients.spawn(Arc::clone(&traffic).orders(rng.random()));
    }
    let mut callback_clients = JoinSet::new();
    for _ in 0..(args.connections / 4).max(2) {
        callback_clients.spawn(Arc::clone(&traffic).payments(rng.random()));
    }

    kill_loop(cluster, &traffic, kill_every, rng).await?;
    tokio::time::sleep_until(traffic.phase_end()).await;

    // The schedule is over. Orders it held up and callbacks in flight get
    // until the settle deadline to be answered; then the clients give up.
    let kills_ended = Instant::now();
    let deadline = kills_ended + args.settle;
    let give_up = {
        let token = traffic.give_up.clone();
        tokio::spawn(async move {
            tokio::time::sleep_until(deadline).await;
            token.cancel();
        })
    };
    while let Some(joined) = order_clients.join_next().await {
        joined.map_err(ChaosError::Client)?;
    }
    traffic.stop_callbacks.cancel();
    while let Some(joined) = callback_clients.join_next().await {
        joined.map_err(ChaosError::Client)?;
    }
    give_up.abort();
    let ledger = std::mem::take(&mut *traffic.ledger());
    let source = cluster.source();
    let settled = verify::settle(&source, &ledger, deadline).await?;
    let settled_ms = settled.map(|_| millis(kills_ended.elapsed()));
    eprintln!(
        "chaos: checking {} orders and {} callbacks",
        ledger.orders.len(),
        ledger.payments.len()
    );
    let api = verify::Api {
        client: &http,
        base: &urls[0],
        staff_key,
    };
    let checks = verify::check(&source, &ledger, &key_prefix, &api).await?;

    let recoveries: Vec<Recovery> = traffic
        .kills()
        .iter()
        .map(|k| Recovery {
            role: k.victim.role,
            process: k.victim.name(),
            at_secs: (k.killed_at - start).as_secs_f64(),
            to_ready_ms: k.ready_at.map(|t| millis(t - k.killed_at)),
            to_202_ms: k.first_202_at.map(|t| millis(t - k.killed_at)),
            to_caught_up_ms: k.caught_up_at.map(|t| millis(t - k.killed_at)),
        })
        .collect();
    let mut kills_by_role = std::collections::BTreeMap::new();
    for r in &recoveries {
        *kills_by_role.entry(r.role.as_str().to_owned()).or_insert(0) += 1;
    }
    let passed = checks.passed() && settled_ms.is_some();
    Ok(ChaosReport {
        mode: args.mode,
        settings: Settings {
            duration_secs: args.duration.as_secs_f64(),
            kill_every_secs: kill_every.as_secs_f64(),
            rate,
            connections: args.connections,
            pay: args.pay,
            redeliver: args.redeliver,
            seed,
            apis: urls.len(),
            workers: match args.mode {
                Mode::Embedded => 0,
                Mode::Scale => args.scale.workers,
            },
        },
        orders: Orders {
            acknowledged: ledger.orders.len(),
            warm_up,
            replayed: ledger.orders_replayed,
            retries: ledger.order_retries,
            unanswered: ledger.orders_unanswered.len(),
            refused: ledger.orders_refused.clone(),
        },
        payments: Payments {
            acknowledged: ledger.payments.len(),
            redeliveries_acknowledged: ledger.redeliveries,
            replayed: ledger.payments_replayed,
            retries: ledger.payment_retries,
            unanswered: ledger.payments_unanswered.len(),
            skipped: ledger.payments_skipped,
            refused: ledger.payments_refused.clone(),
        },
        kills: recoveries.len(),
        kills_by_role,
        to_ready_ms: Spread::of(
            recoveries
                .iter()
                .filter(|r| r.role != Role::Worker)
                .filter_map(|r| r.to_ready_ms),
        ),
        to_202_ms: Spread::of(recoveries.iter().filter_map(|r| r.to_202_ms)),
        to_caught_up_ms: Spread::of(recoveries.iter().filter_map(|r| r.to_caught_up_ms)),
        recoveries,
        settled_ms,
        checks,
        passed,
    })
}

/// Kill, restart, wait for the way back; until the chaos phase ends.
async fn kill_loop(
    cluster: &mut Cluster,
    traffic: &Traffic,
    kill_every: Duration,
    rng: &mut SmallRng,
) -> Result<(), ChaosError> {
    let phase_end = traffic.phase_end();
    let mut last_kill = traffic.start();
    let mut back_at = last_kill;
    loop {
        let gap = kill_every.mul_f64(rng.random_range(1.0 - JITTER..=1.0 + JITTER));
        let at = (last_kill + gap).max(back_at + kill_every / 2);
        // The last kill leaves the load time to find the process back
        // before the schedule ends.
        if at + kill_every / 2 >= phase_end {
            return Ok(());
        }
        tokio::time::sleep_until(at).await;
        let n = traffic.kills().len() + 1;
        let victim = cluster.victim(n - 1);
        let name = victim.name();
        // A worker is back once what was acknowledged before its kill is
        // applied: the orders not confirmed yet at the kill.
        let owed: Vec<uuid::Uuid> = match victim.role {
            Role::Worker => {
                let acked: Vec<uuid::Uuid> = traffic.ledger().orders.values().map(|a| a.id).collect();
                cluster.unconfirmed(&acked).await?
            }
            Role::Serve | Role::Api => Vec::new(),
        };
        let killed_at = Instant::now();
        cluster.server(victim).kill().await;
        let dead_at = Instant::now();
        traffic.kills().push(Kill {
            victim,
            killed_at,
            dead_at,
            ready_at: None,
            first_202_at: None,
            caught_up_at: None,
        });
        if victim.role == Role::Worker {
            tokio::time::sleep_until(killed_at + WORKER_RESTART_AFTER).await;
        }
        let restart = |source| ChaosError::Restart {
            kill: n,
            name: name.clone(),
            source,
        };
        let server = cluster.server(victim);
        server.respawn().map_err(restart)?;
        let ready = tokio::time::timeout(RECOVERY_TIMEOUT, server.wait_ready()).await;
        match ready {
            Ok(Ok(())) => {
                let now = Instant::now();
                if let Some(k) = traffic.kills().last_mut() {
                    k.ready_at = Some(now);
                }
            }
            Ok(Err(source)) => return Err(restart(source)),
            Err(_) => {}
        }
        let ready = matches!(ready, Ok(Ok(())));
        let deadline = killed_at + RECOVERY_TIMEOUT;
        let owed_n = owed.len();
        let back = match victim.role {
            Role::Serve | Role::Api => first_202(traffic, deadline)
                .await
                .ok_or_else(|| format!("no 202 from the restarted {name} (ready: {ready})")),
            Role::Worker => {
                let caught_up = cluster.confirmed_by(owed, deadline).await?;
                if let (Some(at), Some(k)) = (caught_up, traffic.kills().last_mut()) {
                    k.caught_up_at = Some(at);
                }
                caught_up.ok_or_else(|| {
                    format!("{owed_n} orders owed at the kill of {name} not all confirmed (ready: {ready})")
                })
            }
        };
        let back = match back {
            Ok(at) => at,
            Err(what) => {
                return Err(ChaosError::NoRecovery {
                    kill: n,
                    what,
                    log: cluster.log_tails(),
                });
            }
        };
        let k = traffic.kills().last().cloned().expect("pushed above");
        let ms = |t: Option<Instant>| t.map_or_else(|| "—".to_owned(), |t| millis(t - killed_at).to_string());
        eprintln!(
            "chaos: kill {n} ({name}) at {:.1} s: {}ready after {} ms, {} after {} ms",
            (killed_at - traffic.start()).as_secs_f64(),
            if victim.role == Role::Worker {
                format!("restarted after {} ms, ", WORKER_RESTART_AFTER.as_millis())
            } else {
                String::new()
            },
            ms(k.ready_at),
            if victim.role == Role::Worker {
                format!("the {owed_n} orders it owed confirmed")
            } else {
                "first 202".to_owned()
            },
            millis(back - killed_at),
        );
        last_kill = killed_at;
        back_at = back;
    }
}
/// The first 202 from the process of the last kill, or `None` at
/// `deadline`.
async fn first_202(traffic: &Traffic, deadline: Instant) -> Option<Instant> {
    loop {
        let notified = traffic.recovered.notified();
        if let Some(at) = traffic.kills().last().and_then(|k| k.first_202_at) {
            return Some(at);
        }
        if tokio::time::timeout_at(deadline, notified).await.is_err() {
            return traffic.kills().last().and_then(|k| k.first_202_at);
        }
    }
}

/// The store's menu, for valid orders.
async fn fetch_menu(http: &reqwest::Client, base: &str, store: &str) -> Result<OrderMenu, ChaosError> {
    let url = format!("{base}/v1/stores/{store}/menu");
    let resp = http.get(&url).send().await.map_err(ChaosError::Http)?;
    let status = resp.status();
    let body = resp.bytes().await.map_err(ChaosError::Http)?;
    if status != reqwest::StatusCode::OK {
        return Err(ChaosError::Menu(format!("GET {url} answered {status}")));
    }
    OrderMenu::from_json(store, &body).map_err(|e| ChaosError::Menu(format!("{e:#}")))
}

impl ChaosReport {
    /// The human-readable report.
    pub fn render(&self) -> String {
        let s = &self.settings;
        let shape = match self.mode {
            Mode::Embedded => "embedded: one serve".to_owned(),
            Mode::Scale => format!("scale: {} api(s), {} worker(s)", s.apis, s.workers),
        };
        let mut out = format!(
            "rushhour bench chaos ({shape}): {:.0} s at {} orders/s over {} connections, kill -9 every ~{:.1} s (seed {})\n\n",
            s.duration_secs, s.rate, s.connections, s.kill_every_secs, s.seed
        );
        let o = &self.orders;
        let p = &self.payments;
        let n = |v: usize| thousands(v as u64);
        let _ = writeln!(
            out,
            "orders acknowledged    {:>8}  ({} answered by a replay of an attempt cut off by a kill; {} retries; {} unanswered at the end{})",
            n(o.acknowledged),
            thousands(o.replayed),
            thousands(o.retries),
            o.unanswered,
            refused(&o.refused),
        );
        let _ = writeln!(
            out,
            "payments acknowledged  {:>8}  (+{} redeliveries acknowledged; {} replayed; {} retries; {} unanswered; {} skipped{})",
            n(p.acknowledged),
            thousands(p.redeliveries_acknowledged),
            thousands(p.replayed),
            thousands(p.retries),
            p.unanswered,
            p.skipped,
            refused(&p.refused),
        );
        let by_role: Vec<String> = self.kills_by_role.iter().map(|(r, k)| format!("{k} {r}")).collect();
        let _ = writeln!(
            out,
            "kills                  {:>8}  ({})",
            self.kills,
            by_role.join(", ")
        );
        let spread = |s: &Option<Spread>| {
            s.map_or_else(
                || "—".to_owned(),
                |s| format!("p50 {:>5} ms   p99 {:>5} ms   max {:>5} ms", s.p50, s.p99, s.max),
            )
        };
        let _ = writeln!(out, "kill → /health/ready   {}", spread(&self.to_ready_ms));
        if self.mode == Mode::Scale {
            let _ = writeln!(
                out,
                "  (apis; a worker is restarted {} s after its kill, and is back once caught up)",
                WORKER_RESTART_AFTER.as_secs()
            );
        }
        let _ = writeln!(out, "kill → first 202       {}", spread(&self.to_202_ms));
        if self.mode == Mode::Scale {
            let _ = writeln!(out, "worker kill → caught up {}", spread(&self.to_caught_up_ms));
        }
        let each: Vec<String> = self
            .recoveries
            .iter()
            .map(|r| {
                let ms = |v: Option<u64>| v.map_or_else(|| "—".to_owned(), |v| v.to_string());
                let back = if r.role == Role::Worker {
                    r.to_caught_up_ms
                } else {
                    r.to_202_ms
                };
                let who = if self.mode == Mode::Scale {
                    format!(" {}", r.process)
                } else {
                    String::new()
                };
                format!("{:.1}s{who}:{}/{}", r.at_secs, ms(r.to_ready_ms), ms(back))
            })
            .collect();
        if !each.is_empty() {
            let legend = match self.mode {
                Mode::Embedded => "at: ready/202 ms",
                Mode::Scale => "at, process: ready/202 or caught up, ms",
            };
            let _ = writeln!(out, "  each ({legend})  {}", each.join("  "));
        }
        let _ = writeln!(
            out,
            "settled                {}",
            self.settled_ms.map_or_else(
                || "NOT within --settle".to_owned(),
                |ms| format!("{ms} ms after the kills stopped")
            )
        );
        let c = &self.checks;
        let _ = writeln!(
            out,
            "\nchecked against {} and GET /v1/orders/{{id}}:",
            match self.mode {
                Mode::Embedded => "the log file, the store file",
                Mode::Scale => "the log's claims and the store in PostgreSQL",
            }
        );
        let _ = writeln!(
            out,
            "  orders    {:>8} checked   lost {}   duplicated {}   unconfirmed {}   ({} durable but never answered: allowed)",
            n(c.orders_checked),
            c.orders_lost,
            c.orders_duplicated,
            c.orders_unconfirmed,
            c.orders_durable_unanswered
        );
        let _ = writeln!(
            out,
            "  payments  {:>8} checked   lost {}   duplicated {}   unapplied {}",
            n(c.payments_checked),
            c.payments_lost,
            c.payments_duplicated,
            c.payments_unapplied
        );
        for problem in &c.problems {
            let _ = writeln!(out, "  - {problem}");
        }
        let _ = writeln!(
            out,
            "\n{}",
            if self.passed {
                "PASS: every acknowledged order exists once and is confirmed, every acknowledged payment applied once"
            } else {
                "FAIL"
            }
        );
        out
    }
}

fn refused(map: &std::collections::BTreeMap<String, u64>) -> String {
    if map.is_empty() {
        return String::new();
    }
    let parts: Vec<String> = map.iter().map(|(k, v)| format!("{k}: {v}")).collect();
    format!("; refused: {}", parts.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spreads_are_nearest_rank() {
        assert_eq!(Spread::of([]), None);
        assert_eq!(Spread::of([7]), Some(Spread { p50: 7, p99: 7, max: 7 }));
        let s = Spread::of((1..=100).rev()).unwrap();
        assert_eq!((s.p50, s.p99, s.max), (50, 99, 100));
        let s = Spread::of([30, 10, 20]).unwrap();
        assert_eq!((s.p50, s.p99, s.max), (20, 30, 30));
    }
}
