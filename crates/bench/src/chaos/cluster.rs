//! The processes a chaos run kills, in either of the product's two modes.
//!
//! - **Embedded:** one `serve` on a fresh data directory; every kill is
//!   of it, and it comes back on the same files.
//! - **Scale:** `--apis` `api` processes and `--workers` `worker`
//!   processes of the same binary over the PostgreSQL, Kafka (and
//!   optionally Redis) the caller names, in a schema, topics, consumer
//!   group and cache prefix of the run's own (`rh_chaos_<run>`), migrated
//!   by `rushhour migrate` first and dropped at the end unless `--keep`.
//!   Kills alternate between an api and a worker (api1, worker1, api2,
//!   worker2, …), as the issue asks: in turn, never both at once.
//!
//! What "back" means differs by role, and so does the restart:
//! - a `serve` or an `api` is started again at once on its port (an
//!   orchestrator's restart), and is back at its first 202 to an order
//!   sent after the kill;
//! - a `worker` is started again after [`WORKER_RESTART_AFTER`], and is
//!   back once every order acknowledged before the kill is confirmed in
//!   the store: the orders of the partitions it held wait for the group
//!   to hand them on. The delay is the consumer session timeout the run
//!   configures ([`SESSION_TIMEOUT_MS`]) and two seconds more: a
//!   replacement that joined before the broker evicted the dead member
//!   would, on the test broker tansu 0.6, leave the dead member's
//!   partitions orphaned (tansu hands the survivors their previous
//!   assignment back on eviction, and only a join reassigns; see
//!   `docs/adr/0005-kafka-log.md`). Real Kafka reassigns them at the
//!   eviction already; the delay costs it nothing.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use rand::Rng;
use rand::rngs::SmallRng;
use serde::Serialize;
use sqlx::PgPool;
use tokio::time::Instant;
use uuid::Uuid;

use super::ChaosError;
use super::traffic::Acked;
use super::verify::{self, Source};
use crate::suite::server::{Server, Shape, clean_command};

/// `log.session_timeout_ms` for the run's workers: how long the broker
/// waits before it evicts a killed worker from the group.
const SESSION_TIMEOUT_MS: u64 = 6000;
/// How long after its kill a worker is started again (see the module
/// docs for why not at once).
pub const WORKER_RESTART_AFTER: Duration = Duration::from_millis(SESSION_TIMEOUT_MS + 2000);
/// `rushhour migrate` (schemas, the claim table, the demo menu) may take
/// this long.
const MIGRATE_TIMEOUT: Duration = Duration::from_secs(120);
/// Orders placed before the load, per worker started, to prove the group
/// consumes every partition (64 random order ids leave one of 8
/// partitions without an order with odds of about 1 in 700).
const WARMUP_ORDERS: usize = 64;
/// How long the warm-up orders may take to be confirmed.
const WARMUP_TIMEOUT: Duration = Duration::from_secs(60);
/// Between two polls of the store for confirmed orders.
const POLL: Duration = Duration::from_millis(100);

/// The run's mode.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// One `serve` on SQLite files.
    Embedded,
    /// `api` and `worker` processes over PostgreSQL and Kafka.
    Scale,
}

/// Where scale mode's engines are (all flags ignored in embedded mode).
#[derive(clap::Args, Debug, Clone)]
pub struct ScaleArgs {
    /// Scale mode: the PostgreSQL the store and the idempotency claims
    /// live in (the run makes a schema of its own there).
    #[arg(long, value_name = "URL")]
    pub postgres: Option<String>,
    /// Scale mode: the Kafka brokers of the event log (host:port, or
    /// kafka://host:port); the run makes topics of its own.
    #[arg(long, value_name = "BROKERS")]
    pub kafka: Option<String>,
    /// Scale mode: the Redis of the menu cache and live events (default:
    /// each process's own memory).
    #[arg(long, value_name = "URL")]
    pub redis: Option<String>,
    /// Scale mode: how many `api` processes take the orders.
    #[arg(long, default_value_t = 2)]
    pub apis: usize,
    /// Scale mode: how many `worker` processes apply them.
    #[arg(long, default_value_t = 2)]
    pub workers: usize,
    /// Scale mode: keep the run's schema and claims in PostgreSQL and its
    /// topics in Kafka afterwards (to look at them) instead of dropping them.
    #[arg(long)]
    pub keep: bool,
}

/// What a killed process was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Serve,
    Api,
    Worker,
}

impl Role {
    /// As the report names it (`kills_by_role`, the JSON `role`).
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Serve => "serve",
            Role::Api => "api",
            Role::Worker => "worker",
        }
    }
}

/// One process of the cluster: its role and its slot among its kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Victim {
    pub role: Role,
    pub slot: usize,
}

impl Victim {
    /// Its index among the front processes (the traffic's targets), if it
    /// takes orders.
    pub fn target(self) -> Option<usize> {
        (self.role != Role::Worker).then_some(self.slot)
    }

    /// `serve`, `api2`, `worker1`.
    pub fn name(self) -> String {
        match self.role {
            Role::Serve => Role::Serve.as_str().to_owned(),
            role => format!("{}{}", role.as_str(), self.slot + 1),
        }
    }
}

/// The `n`-th kill's victim among `apis` front processes and `workers`
/// (`None`: embedded, the one `serve`).
fn victim(n: usize, apis: usize, workers: Option<usize>) -> Victim {
    match (workers, n % 2) {
        (None, _) => Victim {
            role: Role::Serve,
            slot: 0,
        },
        (Some(_), 0) => Victim {
            role: Role::Api,
            slot: (n / 2) % apis,
        },
        (Some(workers), _) => Victim {
            role: Role::Worker,
            slot: (n / 2) % workers,
        },
    }
}

/// A scale run's own place in the shared engines.
struct ScaleRun {
    pool: PgPool,
    schema: String,
    topic: String,
    brokers: String,
    keep: bool,
}

/// The running processes.
pub struct Cluster {
    exe: PathBuf,
    env: Vec<(String, String)>,
    /// The processes that take orders: the one `serve`, or the `api`s.
    front: Vec<Server>,
    workers: Vec<Server>,
    scale: Option<ScaleRun>,
    /// Workers to start (scale mode), one at a time by [`Cluster::start_worker`].
    workers_wanted: usize,
}

/// `bytes` random bytes in hex: the run's secrets and keys.
pub fn random_hex(rng: &mut SmallRng, bytes: usize) -> String {
    (0..bytes).map(|_| format!("{:02x}", rng.random::<u8>())).collect()
}

impl Cluster {
    /// One embedded `serve`, ready.
    pub async fn embedded(exe: &Path, env: Vec<(String, String)>) -> Result<Self, ChaosError> {
        let serve = Server::start(exe, &Shape::serve(), &env)
            .await
            .map_err(ChaosError::Start)?;
        Ok(Self {
            exe: exe.to_owned(),
            env,
            front: vec![serve],
            workers: Vec::new(),
            scale: None,
            workers_wanted: 0,
        })
    }

    /// Scale mode: the run's schema and topics migrated, and the `api`s
    /// ready; the workers are started by [`Cluster::start_worker`].
    pub async fn scale(
        exe: &Path,
        mut env: Vec<(String, String)>,
        args: &ScaleArgs,
        run: &str,
        rng: &mut SmallRng,
    ) -> Result<Self, ChaosError> {
        let (Some(postgres), Some(kafka)) = (&args.postgres, &args.kafka) else {
            return Err(ChaosError::Args("--mode scale needs --postgres and --kafka"));
        };
        if args.apis == 0 || args.workers == 0 {
            return Err(ChaosError::Args("--apis and --workers must be at least 1"));
        }
        let brokers = kafka.trim_start_matches("kafka://").to_owned();
        let schema = format!("rh_chaos_{run}");
        let topic = format!("rh-chaos-{run}");
        let cache = args.redis.clone().unwrap_or_else(|| "memory://".to_owned());
        let settings = [
            ("RUSHHOUR__STORE__URL", postgres.clone()),
            ("RUSHHOUR__STORE__SCHEMA", schema.clone()),
            ("RUSHHOUR__LOG__URL", format!("kafka://{brokers}")),
            ("RUSHHOUR__LOG__TOPIC", topic.clone()),
            ("RUSHHOUR__LOG__DLQ_TOPIC", format!("{topic}.dlq")),
            ("RUSHHOUR__LOG__SESSION_TIMEOUT_MS", SESSION_TIMEOUT_MS.to_string()),
            ("RUSHHOUR__PROCESSOR__GROUP", topic.clone()),
            ("RUSHHOUR__CACHE__URL", cache),
            ("RUSHHOUR__CACHE__KEY_PREFIX", format!("rhchaos:{run}")),
            // Every instance shares them: scale mode refuses to start without.
            ("RUSHHOUR__AUTH__SESSION_KEY", random_hex(rng, 32)),
            ("RUSHHOUR__AUTH__BOOTSTRAP_ADMIN_PASSWORD", random_hex(rng, 16)),
        ];
        // The caller's `--server-env` last, so it can change any of them.
        let mut all: Vec<(String, String)> = settings.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
        all.append(&mut env);
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(4)
            .connect(postgres)
            .await
            .map_err(|source| ChaosError::Pg {
                what: "connecting to --postgres",
                source,
            })?;
        eprintln!(
            "chaos: scale run in schema {schema}, topics {topic} and {topic}.dlq{}",
            if args.keep { " (kept afterwards)" } else { "" }
        );
        let mut cluster = Self {
            exe: exe.to_owned(),
            env: all,
            front: Vec::new(),
            workers: Vec::new(),
            scale: Some(ScaleRun {
                pool,
                schema,
                topic,
                brokers,
                keep: args.keep,
            }),
            workers_wanted: args.workers,
        };
        // From here on, a failure still drops what the run made.
        if let Err(e) = cluster.migrate_and_start_apis(args.apis).await {
            cluster.stop().await;
            return Err(e);
        }
        Ok(cluster)
    }

    async fn migrate_and_start_apis(&mut self, apis: usize) -> Result<(), ChaosError> {
        let dir = tempfile::tempdir()
            .map_err(|e| ChaosError::Setup(format!("a temporary directory for `rushhour migrate`: {e}")))?;
        let mut cmd = clean_command(&self.exe);
        cmd.arg("migrate")
            .arg("--data-dir")
            .arg(dir.path())
            .env("RUSHHOUR__TELEMETRY__LOG_FILTER", "warn")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let out = match tokio::time::timeout(MIGRATE_TIMEOUT, cmd.output()).await {
            Ok(out) => out.map_err(|e| ChaosError::Setup(format!("running `rushhour migrate`: {e}")))?,
            Err(_) => {
                return Err(ChaosError::Setup(format!(
                    "`rushhour migrate` took over {MIGRATE_TIMEOUT:?}"
                )));
            }
        };
        if !out.status.success() {
            return Err(ChaosError::Setup(format!(
                "`rushhour migrate` failed ({}):\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            )));
        }
        for _ in 0..apis {
            let api = Server::start(&self.exe, &Shape::api_only(), &self.env)
                .await
                .map_err(ChaosError::Start)?;
            self.front.push(api);
        }
        Ok(())
    }

    /// Workers still to be started.
    pub fn workers_to_start(&self) -> usize {
        self.workers_wanted - self.workers.len()
    }

    /// Start the next worker and wait until it is ready.
    pub async fn start_worker(&mut self) -> Result<(), ChaosError> {
        let worker = Server::start(&self.exe, &Shape::worker(), &self.env)
            .await
            .map_err(ChaosError::Start)?;
        self.workers.push(worker);
        Ok(())
    }

    /// The front processes' base URLs, the traffic's targets in order.
    pub fn urls(&self) -> Vec<String> {
        self.front.iter().map(|s| s.url.clone()).collect()
    }

    /// Who the `n`-th kill (from 0) is of: always the `serve`; in scale
    /// mode an api and a worker in turn, each kind's slots in rotation.
    pub fn victim(&self, n: usize) -> Victim {
        let workers = self.scale.as_ref().map(|_| self.workers.len());
        victim(n, self.front.len(), workers)
    }

    pub fn server(&mut self, v: Victim) -> &mut Server {
        match v.role {
            Role::Serve | Role::Api => &mut self.front[v.slot],
            Role::Worker => &mut self.workers[v.slot],
        }
    }

    /// Where the checks read the claims and the store.
    pub fn source(&self) -> Source<'_> {
        match &self.scale {
            None => Source::Files {
                log_db: self.front[0].log_db(),
                store_db: self.front[0].store_db(),
            },
            Some(s) => Source::Postgres {
                pool: &s.pool,
                schema: &s.schema,
                topic: &s.topic,
            },
        }
    }

    /// Poll until the store has confirmed every one of `ids`: when that
    /// happened, or `None` at `deadline`. Scale mode only: embedded, the
    /// processors run in the `serve` a kill already restarts.
    pub async fn confirmed_by(&self, mut ids: Vec<Uuid>, deadline: Instant) -> Result<Option<Instant>, ChaosError> {
        loop {
            ids = self.unconfirmed(&ids).await?;
            if ids.is_empty() {
                return Ok(Some(Instant::now()));
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Those of `ids` the store has not confirmed yet (scale mode; none
    /// embedded).
    pub async fn unconfirmed(&self, ids: &[Uuid]) -> Result<Vec<Uuid>, ChaosError> {
        let Some(s) = self.scale.as_ref().filter(|_| !ids.is_empty()) else {
            return Ok(Vec::new());
        };
        let done = verify::confirmed_among(&s.pool, &s.schema, ids).await?;
        Ok(ids.iter().filter(|id| !done.contains(id)).copied().collect())
    }

    /// The last lines of every process's log, named.
    pub fn log_tails(&self) -> String {
        let front = if self.scale.is_some() { Role::Api } else { Role::Serve };
        let named = (self.front.iter().enumerate().map(|(slot, s)| (front, slot, s)))
            .chain(self.workers.iter().enumerate().map(|(slot, s)| (Role::Worker, slot, s)));
        named
            .map(|(role, slot, s)| format!("--- {}:\n{}", Victim { role, slot }.name(), s.log_tail()))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Place [`WARMUP_ORDERS`] orders through the front processes and
    /// wait until the store has confirmed them all: the workers started so
    /// far consume every partition. Scale mode; nothing embedded.
    pub async fn warm_up(
        &self,
        http: &reqwest::Client,
        bodies: &[bytes::Bytes],
        key_prefix: &str,
        round: usize,
    ) -> Result<Vec<(String, Acked)>, ChaosError> {
        if self.scale.is_none() {
            return Ok(Vec::new());
        }
        let started = Instant::now();
        let mut acked = Vec::with_capacity(WARMUP_ORDERS);
        for n in 0..WARMUP_ORDERS {
            let key = format!("{key_prefix}warmup-{round}-{n}");
            let base = &self.front[n % self.front.len()].url;
            let resp = http
                .post(format!("{base}/v1/orders"))
                .header("content-type", "application/json")
                .header("idempotency-key", &key)
                .body(bodies[n % bodies.len()].clone())
                .send()
                .await
                .map_err(ChaosError::Http)?;
            let status = resp.status();
            let body = resp.bytes().await.map_err(ChaosError::Http)?;
            match super::traffic::receipt(&body) {
                Some(a) if status == reqwest::StatusCode::ACCEPTED => acked.push((key, a)),
                _ => {
                    return Err(ChaosError::Setup(format!(
                        "warm-up order {key} answered {status}: {}",
                        String::from_utf8_lossy(&body)
                    )));
                }
            }
        }
        let ids: Vec<Uuid> = acked.iter().map(|(_, a)| a.id).collect();
        if self
            .confirmed_by(ids.clone(), started + WARMUP_TIMEOUT)
            .await?
            .is_none()
        {
            let left = self.unconfirmed(&ids).await?.len();
            return Err(ChaosError::Setup(format!(
                "{left} of {WARMUP_ORDERS} warm-up orders unconfirmed after {WARMUP_TIMEOUT:?} with {} worker(s): \
                 the consumer group does not cover every partition\n{}",
                self.workers.len(),
                self.log_tails()
            )));
        }
        eprintln!(
            "chaos: {} worker(s) confirmed {WARMUP_ORDERS} warm-up orders in {} ms",
            self.workers.len(),
            started.elapsed().as_millis()
        );
        Ok(acked)
    }

    /// Kill every process; in scale mode drop the run's schema, claims and
    /// topics (unless `--keep`). Failures to drop are reported, not fatal:
    /// the run's findings stand.
    pub async fn stop(self) {
        for s in self.front.into_iter().chain(self.workers) {
            s.stop().await;
        }
        let Some(s) = self.scale else { return };
        if s.keep {
            eprintln!(
                "chaos: kept schema {} (claims: topic {}) and topics {} and {}.dlq",
                s.schema, s.topic, s.topic, s.topic
            );
            return;
        }
        let claims = sqlx::query("DELETE FROM log_idempotency WHERE topic = $1")
            .bind(&s.topic)
            .execute(&s.pool)
            .await;
        // The schema name is the run's own (`rh_chaos_<hex>`), not input.
        let schema = sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP SCHEMA IF EXISTS \"{}\" CASCADE",
            s.schema
        )))
        .execute(&s.pool)
        .await;
        for (what, result) in [("the claims", claims), ("the schema", schema)] {
            if let Err(e) = result {
                eprintln!("chaos: could not drop {what} of the run: {e}");
            }
        }
        s.pool.close().await;
        delete_topics(&s.brokers, &[s.topic.clone(), format!("{}.dlq", s.topic)]).await;
    }
}

/// Delete the run's topics; a broker that refuses is reported, not fatal.
#[cfg(feature = "kafka")]
async fn delete_topics(brokers: &str, topics: &[String]) {
    use rdkafka::admin::{AdminClient, AdminOptions};
    use rdkafka::client::DefaultClientContext;
    use rdkafka::config::ClientConfig;
    use rdkafka::types::RDKafkaErrorCode;
    let admin: Result<AdminClient<DefaultClientContext>, _> =
        ClientConfig::new().set("bootstrap.servers", brokers).create();
    let names: Vec<&str> = topics.iter().map(String::as_str).collect();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let results = match admin {
        Ok(admin) => admin.delete_topics(&names, &options).await,
        Err(e) => Err(e),
    };
    match results {
        Ok(each) => {
            // The dead-letter topic exists only if something was dead-lettered.
            let failed = each
                .into_iter()
                .filter_map(Result::err)
                .filter(|(_, code)| *code != RDKafkaErrorCode::UnknownTopicOrPartition);
            for (topic, code) in failed {
                eprintln!("chaos: could not delete the topic {topic}: {code}");
            }
        }
        Err(e) => eprintln!("chaos: could not delete the topics {names:?}: {e}"),
    }
}

#[cfg(not(feature = "kafka"))]
async fn delete_topics(_brokers: &str, topics: &[String]) {
    eprintln!("chaos: built without Kafka; the topics {topics:?} are left on the broker");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(apis: usize, workers: Option<usize>, kills: usize) -> Vec<String> {
        (0..kills).map(|n| victim(n, apis, workers).name()).collect()
    }

    #[test]
    fn embedded_kills_the_serve_every_time() {
        assert_eq!(names(1, None, 3), ["serve", "serve", "serve"]);
        assert_eq!(victim(5, 1, None).target(), Some(0));
    }

    #[test]
    fn scale_kills_an_api_and_a_worker_in_turn_and_every_slot_in_rotation() {
        assert_eq!(
            names(2, Some(2), 8),
            [
                "api1", "worker1", "api2", "worker2", "api1", "worker1", "api2", "worker2"
            ]
        );
        assert_eq!(
            names(3, Some(1), 6),
            ["api1", "worker1", "api2", "worker1", "api3", "worker1"]
        );
        // A worker takes no orders: no target to wait for a 202 from.
        assert_eq!(victim(1, 2, Some(2)).target(), None);
        assert_eq!(victim(2, 2, Some(2)).target(), Some(1));
    }
}
