//! The servers the suite and the chaos runs measure: children of this
//! process, each on a free port with a fresh temporary data directory and
//! a clean environment, started in one of the shapes the suite compares
//! (`serve` with group commit on or off, fsync on or off; `api` alone;
//! `worker` for scale-mode chaos runs).
//! `bench chaos` also kills one with SIGKILL and starts it again on the
//! same port and data directory ([`Server::kill`], [`Server::respawn`]).

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use tokio::process::{Child, Command};
use tokio::time::Instant;

/// How long a freshly started server may take to answer `/health/ready`
/// (migrations and the demo seed run first).
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// Between two readiness polls. Short, because `bench chaos` reports the
/// time from a kill to ready, and a poll interval is that figure's error.
const READY_POLL: Duration = Duration::from_millis(10);

/// Why a server could not be started, or did not become ready.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("{what}")]
    Io {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("spawning {}", exe.display())]
    Spawn {
        exe: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("building the readiness client")]
    Client(#[source] reqwest::Error),
    #[error("the server exited ({status}) before it was ready; its log:\n{log}")]
    Exited { status: ExitStatus, log: String },
    #[error("{url} not ready after {}s; server log:\n{log}", READY_TIMEOUT.as_secs())]
    NotReady { url: String, log: String },
    #[error("the server has exited")]
    Gone,
}

fn io(what: &'static str) -> impl FnOnce(std::io::Error) -> ServerError {
    move |source| ServerError::Io { what, source }
}

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

    /// `rushhour worker`: the processors and job runners (scale mode).
    pub fn worker() -> Self {
        Self {
            command: "worker",
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
    exe: PathBuf,
    shape: Shape,
    extra_env: Vec<(String, String)>,
    data: PathBuf,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Server {
    pub async fn start(exe: &Path, shape: &Shape, extra_env: &[(String, String)]) -> Result<Self, ServerError> {
        let dir = tempfile::Builder::new()
            .prefix("rushhour-bench-")
            .tempdir()
            .map_err(io("creating a temporary data directory"))?;
        let data = dir.path().join("data");
        std::fs::create_dir_all(&data).map_err(io("creating the data directory"))?;
        let log = dir.path().join("server.log");
        let addr = format!("127.0.0.1:{}", free_port()?);
        let child = spawn(exe, shape, extra_env, &addr, &data, &log)?;
        let mut server = Server {
            child,
            url: format!("http://{addr}"),
            addr,
            exe: exe.to_owned(),
            shape: shape.clone(),
            extra_env: extra_env.to_vec(),
            data,
            log,
            _dir: dir,
        };
        server.wait_ready().await?;
        Ok(server)
    }

    /// The child's pid (for its RSS).
    pub fn pid(&self) -> Result<u32, ServerError> {
        self.child.id().ok_or(ServerError::Gone)
    }

    /// The embedded store's database file.
    pub fn store_db(&self) -> PathBuf {
        self.data.join("rushhour.db")
    }

    /// The embedded event log's database file.
    pub fn log_db(&self) -> PathBuf {
        self.data.join("log.db")
    }

    /// Poll `/health/ready` until it answers 200, the child dies, or
    /// `READY_TIMEOUT` passes.
    pub async fn wait_ready(&mut self) -> Result<(), ServerError> {
        // reqwest has rustls but no crypto provider of its own (ADR 0008):
        // the process default must be ring before a client is built.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(2))
            .build()
            .map_err(ServerError::Client)?;
        let url = format!("{}/health/ready", self.url);
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().map_err(io("waiting for the server"))? {
                return Err(ServerError::Exited {
                    status,
                    log: self.log_tail(),
                });
            }
            if let Ok(resp) = client.get(&url).send().await
                && resp.status() == reqwest::StatusCode::OK
            {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(ServerError::NotReady {
                    url,
                    log: self.log_tail(),
                });
            }
            tokio::time::sleep(READY_POLL).await;
        }
    }

    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// SIGKILL and reap, keeping the data directory: what `kill -9` does
    /// to a server, for `bench chaos`. The process is gone when this
    /// returns (its lock on the data directory with it).
    pub async fn kill(&mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
    }

    /// Start the same server again, on the same address and data
    /// directory, without waiting for it ([`Server::wait_ready`] does).
    /// Its output is appended to the same log.
    pub fn respawn(&mut self) -> Result<(), ServerError> {
        self.child = spawn(
            &self.exe,
            &self.shape,
            &self.extra_env,
            &self.addr,
            &self.data,
            &self.log,
        )?;
        Ok(())
    }

    /// SIGKILL and reap. A graceful stop would only spend time draining a
    /// backlog into a data directory that is deleted right after.
    pub async fn stop(mut self) {
        self.kill().await;
    }
}

/// `exe <shape> --addr <addr> --data-dir <data>`, its output appended to
/// `log`.
fn spawn(
    exe: &Path,
    shape: &Shape,
    extra_env: &[(String, String)],
    addr: &str,
    data: &Path,
    log: &Path,
) -> Result<Child, ServerError> {
    let log_file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(io("opening the server log"))?;
    let mut cmd = clean_command(exe);
    cmd.arg(shape.command)
        .arg("--addr")
        .arg(addr)
        .arg("--data-dir")
        .arg(data)
        .env("RUSHHOUR__TELEMETRY__LOG_FILTER", "warn")
        .envs(shape.env.iter().copied())
        .envs(extra_env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(log_file.try_clone().map_err(io("opening the server log"))?)
        .stderr(log_file);
    cmd.spawn().map_err(|source| ServerError::Spawn {
        exe: exe.to_owned(),
        source,
    })
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
fn free_port() -> Result<u16, ServerError> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(io("finding a free port"))?;
    Ok(l.local_addr().map_err(io("finding a free port"))?.port())
}
