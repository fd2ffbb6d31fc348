//! The member side of `domain::fleet`: every serving process registers in
//! the store's instance registry, beats, and carries out the operator
//! broadcasts (`rushhour sync`, `warmup`, `cache clear`) on its own caches
//! and upstream client, then acks them, so the CLI can say who it reached.
//!
//! [`Member::run_once`] is one step (poll, carry out, ack, beat when due),
//! driven by a loop in [`spawn_member`] and by tests directly.

use std::sync::Arc;
use std::time::Duration;

use domain::fleet::{BEAT_EVERY, Command, POLL_EVERY};
use domain::ports::{Clock, Fleet, Instance, PortResult};
use domain::sync::NoProgress;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::catalog::Tasks;

/// One process's membership.
pub struct Member {
    fleet: Arc<dyn Fleet>,
    tasks: Arc<Tasks>,
    clock: Arc<dyn Clock>,
    row: Instance,
    /// When the row was last written (epoch ms on `clock`).
    beaten_at: i64,
}

impl Member {
    /// Register as `id` with `role`, listening on `addr` (or ""), having
    /// seen every broadcast made before now: a process that starts later
    /// loads fresh menus anyway, and must not redo yesterday's warm-up.
    pub async fn join(tasks: Arc<Tasks>, id: String, role: &str, addr: String) -> PortResult<Self> {
        let fleet: Arc<dyn Fleet> = tasks.app.store.clone();
        let clock = tasks.app.clock.clone();
        let now = clock.now_ms();
        let row = Instance {
            id,
            role: role.to_owned(),
            addr,
            started_at: now,
            seen_at: now,
            acked: fleet.last_broadcast().await?,
        };
        fleet.beat(&row).await?;
        Ok(Self {
            fleet,
            tasks,
            clock,
            row,
            beaten_at: now,
        })
    }

    /// One step: carry out the broadcasts made since the last one acked, in
    /// order, ack them, and beat if [`BEAT_EVERY`] has passed. Returns how
    /// many broadcasts it carried out. A command that fails is logged and
    /// the broadcast still acked (the CLI must not wait for a retry that
    /// the next broadcast or the caches' own expiry will do).
    pub async fn run_once(&mut self) -> PortResult<usize> {
        let news = self.fleet.broadcasts_after(self.row.acked).await?;
        for b in &news {
            for command in Command::decode(&b.commands) {
                if let Err(e) = self.carry_out(command).await {
                    tracing::warn!(command = command.as_str(), seq = b.seq, error = %e, "operator command failed");
                }
            }
            tracing::info!(commands = %b.commands, seq = b.seq, "carried out an operator broadcast");
            self.row.acked = b.seq;
        }
        let now = self.clock.now_ms();
        if !news.is_empty() || now - self.beaten_at >= BEAT_EVERY.as_millis() as i64 {
            self.row.seen_at = now;
            self.fleet.beat(&self.row).await?;
            self.beaten_at = now;
        }
        Ok(news.len())
    }

    async fn carry_out(&self, command: Command) -> PortResult<()> {
        match command {
            Command::ClearMenus => self.tasks.app.menus.clear().await,
            Command::WarmUp => self.tasks.warm_up(&NoProgress).await.map(drop),
            Command::ClearAuth => {
                self.tasks.upstream.clear_auth();
                Ok(())
            }
            Command::AccountsSynced => Ok(()),
        }
    }

    /// Leave the registry (a clean shutdown).
    pub async fn leave(&self) -> PortResult<()> {
        self.fleet.leave(&self.row.id).await
    }
}

/// Join the fleet and step the member every [`POLL_EVERY`] until
/// `shutdown`, then leave. A store that fails is retried at the next step;
/// one that cannot be joined at start is retried every few seconds.
pub fn spawn_member(
    tasks: Arc<Tasks>,
    id: String,
    role: &'static str,
    addr: String,
    tracker: &TaskTracker,
    shutdown: CancellationToken,
) {
    tracker.spawn(async move {
        let clock = tasks.app.clock.clone();
        let mut member = loop {
            match Member::join(tasks.clone(), id.clone(), role, addr.clone()).await {
                Ok(m) => break m,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot join the instance registry; operator commands will not reach this process yet");
                    tokio::select! {
                        _ = clock.sleep(Duration::from_secs(5)) => {}
                        _ = shutdown.cancelled() => return,
                    }
                }
            }
        };
        loop {
            tokio::select! {
                _ = clock.sleep(POLL_EVERY) => {}
                _ = shutdown.cancelled() => break,
            }
            if let Err(e) = member.run_once().await {
                tracing::warn!(error = %e, "instance registry step failed");
            }
        }
        if let Err(e) = member.leave().await {
            tracing::warn!(error = %e, "could not leave the instance registry");
        }
    });
}
