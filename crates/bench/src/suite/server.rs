//! The servers the suite measures: children of this process, each on a
//! free port with a fresh temporary data directory and a clean
//! environment, started in one of the shapes the suite compares (`serve`
//! with group commit on or off, fsync on or off; `api` alone).

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::process::{Child, Command};
use tokio::time::Instant;

/// How long a freshly started server may take to answer `/health/ready`
/// (migrations and the demo seed run first).
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// What to start: the subcommand and the settings that make this shape.
#[derive(Debug, Clone)]
pub struct Shape {
    /// `serve` (everything in one process) or `api` (intake alone).
    pub command: &'static str,
    pub env: Vec<(&'static str, &'static str)>,
}

impl Shape {
    /// `rushhour serve` as shipped.
    pub fn serve() -> Self {
        Self {
            command: "serve",
            env: Vec::new(),
        }
    }

    /// `serve` with one transaction (and fsync) per order.
    pub fn no_group_commit() -> Self {
        Self::serve().with("RUSHHOUR__LOG__GROUP_COMMIT", "false")
    }

    /// `serve` without an fsync per commit: `synchronous = normal` on the
    /// log and the store (WAL: synced at checkpoints only). The comparison
    /// that shows what durability costs once group commit shares it.
    pub fn no_fsync() -> Self {
        Self::serve()
            .with("RUSHHOUR__LOG__SYNCHRONOUS", "normal")
            .with("RUSHHOUR__STORE__SYNCHRONOUS", "normal")
    }

    /// `rushhour api`: intake, reads and streams, no processors.
    pub fn api_only() -> Self {
        Self {
            command: "api",
            env: Vec::new(),
        }
    }

    /// Room for `streams` live-event streams from one address (the suite's
    /// own), beyond the shipped per-client cap.
    pub fn with_streams(self, streams: &'static str) -> Self {
        self.with("RUSHHOUR__HTTP__MAX_CONNECTIONS", streams)
            .with("RUSHHOUR__HTTP__MAX_STREAMS", streams)
            .with("RUSHHOUR__HTTP__MAX_STREAMS_PER_CLIENT", streams)
    }

    fn with(mut self, key: &'static str, value: &'static str) -> Self {
        self.env.push((key, value));
        self
    }
}

/// A server child. Field order matters: the child is dropped (and, through
/// `kill_on_drop`, killed) before its data directory is removed.
pub struct Server {
    child: Child,
    pub url: String,
    /// `host:port`.
    pub addr: String,
    data: PathBuf,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Server {
    pub async fn start(exe: &Path, shape: &Shape, extra_env: &[(String, String)]) -> anyhow::Result<Self> {
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
        cmd.arg(shape.command)
            .arg("--addr")
            .arg(&addr)
            .arg("--data-dir")
            .arg(&data)
            .env("RUSHHOUR__TELEMETRY__LOG_FILTER", "warn")
            .envs(shape.env.iter().copied())
            .envs(extra_env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file);
        let child = cmd.spawn().with_context(|| format!("spawning {}", exe.display()))?;
        let mut server = Server {
            child,
            url: format!("http://{addr}"),
            addr,
            data,
            log,
            _dir: dir,
        };
        server.wait_ready().await?;
        Ok(server)
    }

    /// The child's pid (for its RSS).
    pub fn pid(&self) -> anyhow::Result<u32> {
        self.child.id().context("the server has exited")
    }

    /// The embedded store's database file.
    pub fn store_db(&self) -> PathBuf {
        self.data.join("rushhour.db")
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
    pub async fn stop(mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
    }
}

/// A command for a child of ours: killed if we drop it (error, Ctrl-C),
/// and without inherited `RUSHHOUR_*` variables, so that a developer's
/// shell (a Postgres URL, `RUSHHOUR_CONFIG`) cannot silently change what
/// the suite measures; `--server-env` is the explicit way to do that.
pub fn clean_command(exe: &Path) -> Command {
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
