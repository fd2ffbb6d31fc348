//! `rushhour jobs`: the operator's view of the background job queue from a
//! shell — counts per queue (`stats`), `list`, `show`, and the two repairs,
//! `retry` (a dead job) and `discard`.
//!
//! It talks to the `JobQueue` port directly rather than to the HTTP admin
//! routes, so it works with the API down (the usual moment to need it) and
//! needs no staff key, only the configuration's queue URL. Output is an
//! aligned table for people and, with `--json`, the domain types as JSON
//! for scripts. `run` takes the writer and the time as arguments so tests
//! can check exactly what an operator would see.

use anyhow::{Context, bail};
use domain::jobs::{JobFilter, JobId, JobInfo, JobQueue, JobState};
use std::io::Write;

#[derive(clap::Args, Debug)]
pub struct JobsArgs {
    #[command(subcommand)]
    pub command: JobsCommand,
}

#[derive(clap::Subcommand, Debug)]
pub enum JobsCommand {
    /// List jobs, newest first.
    List {
        /// Only this queue's jobs (default, mail, sync, maintenance).
        #[arg(long)]
        queue: Option<String>,
        /// Only jobs in this state: queued, running, done or dead.
        #[arg(long, value_parser = parse_state)]
        state: Option<JobState>,
        /// Only jobs of this kind, e.g. mail.receipt.
        #[arg(long)]
        kind: Option<String>,
        /// How many jobs to show (1 to 1000).
        #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=1000))]
        limit: u32,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Everything known about one job, payload included.
    Show {
        id: JobId,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Queue a dead job again, due now, with its attempts reset.
    Retry { id: JobId },
    /// Delete a queued or dead job.
    Discard { id: JobId },
    /// Job counts per queue and state.
    Stats {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

fn parse_state(s: &str) -> Result<JobState, String> {
    JobState::parse(s).ok_or_else(|| format!("'{s}' is not a job state; one of queued, running, done, dead"))
}

/// Longest last error shown in `list` (the whole error is in `show`).
const ERROR_WIDTH: usize = 60;

/// Run one `jobs` subcommand against `queue`, writing to `out`. A job that
/// does not exist, or is in the wrong state for `retry`/`discard`, is an
/// error (so the process exits non-zero).
pub async fn run(queue: &dyn JobQueue, args: &JobsArgs, now_ms: i64, out: &mut dyn Write) -> anyhow::Result<()> {
    match &args.command {
        JobsCommand::Stats { json } => {
            let counts = queue.counts(now_ms).await.context("read the queue counts")?;
            if *json {
                writeln!(out, "{}", serde_json::to_string_pretty(&counts)?)?;
                return Ok(());
            }
            let rows = counts
                .iter()
                .map(|c| {
                    vec![
                        c.queue.clone(),
                        c.queued.to_string(),
                        c.scheduled.to_string(),
                        c.running.to_string(),
                        c.done.to_string(),
                        c.dead.to_string(),
                    ]
                })
                .collect();
            table(
                out,
                &["QUEUE", "QUEUED", "SCHEDULED", "RUNNING", "DONE", "DEAD"],
                &[false, true, true, true, true, true],
                rows,
            )?;
        }
        JobsCommand::List {
            queue: q,
            state,
            kind,
            limit,
            json,
        } => {
            let filter = JobFilter {
                queue: q.clone(),
                state: *state,
                kind: kind.clone(),
                before: None,
                limit: *limit,
            };
            let jobs = queue.list(&filter).await.context("list jobs")?;
            if *json {
                writeln!(out, "{}", serde_json::to_string_pretty(&jobs)?)?;
                return Ok(());
            }
            if jobs.is_empty() {
                writeln!(out, "no jobs")?;
                return Ok(());
            }
            let rows = jobs.iter().map(job_row).collect();
            table(
                out,
                &["ID", "QUEUE", "KIND", "STATE", "ATTEMPTS", "RUN AT", "LAST ERROR"],
                &[true, false, false, false, true, false, false],
                rows,
            )?;
        }
        JobsCommand::Show { id, json } => {
            let job = get(queue, *id).await?;
            if *json {
                writeln!(out, "{}", serde_json::to_string_pretty(&job)?)?;
            } else {
                show(out, &job)?;
            }
        }
        JobsCommand::Retry { id } => {
            if !queue.retry(*id, now_ms).await.context("retry the job")? {
                let job = get(queue, *id).await?;
                bail!("job {id} is {}; only dead jobs can be retried", job.state.as_str());
            }
            writeln!(out, "job {id} queued again")?;
        }
        JobsCommand::Discard { id } => {
            if !queue.discard(*id).await.context("discard the job")? {
                let job = get(queue, *id).await?;
                match job.state {
                    JobState::Running => bail!("job {id} is running; wait for it to finish or fail"),
                    s => bail!("job {id} is {}; only queued and dead jobs can be discarded", s.as_str()),
                }
            }
            writeln!(out, "job {id} discarded")?;
        }
    }
    Ok(())
}

async fn get(queue: &dyn JobQueue, id: JobId) -> anyhow::Result<JobInfo> {
    queue
        .get(id)
        .await
        .context("read the job")?
        .with_context(|| format!("no job {id}"))
}

fn job_row(j: &JobInfo) -> Vec<String> {
    vec![
        j.id.to_string(),
        j.queue.clone(),
        j.kind.clone(),
        j.state.as_str().to_owned(),
        format!("{}/{}", j.attempts, j.max_attempts),
        rfc3339(j.run_at),
        j.last_error
            .as_deref()
            .map(|e| truncate(e, ERROR_WIDTH))
            .unwrap_or_default(),
    ]
}

fn show(out: &mut dyn Write, j: &JobInfo) -> anyhow::Result<()> {
    let opt_time = |t: Option<i64>| t.map(rfc3339).unwrap_or_else(|| "-".into());
    let fields: Vec<(&str, String)> = vec![
        ("id", j.id.to_string()),
        ("kind", j.kind.clone()),
        ("queue", j.queue.clone()),
        ("state", j.state.as_str().to_owned()),
        ("priority", j.priority.to_string()),
        ("attempts", format!("{}/{}", j.attempts, j.max_attempts)),
        ("run at", rfc3339(j.run_at)),
        ("unique key", j.unique_key.clone().unwrap_or_else(|| "-".into())),
        ("worker", j.worker.clone().unwrap_or_else(|| "-".into())),
        ("lease until", opt_time(j.lease_until)),
        ("created at", rfc3339(j.created_at)),
        ("updated at", rfc3339(j.updated_at)),
        ("finished at", opt_time(j.finished_at)),
        ("last error", j.last_error.clone().unwrap_or_else(|| "-".into())),
    ];
    let width = fields.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    for (k, v) in fields {
        writeln!(out, "{k:<width$}  {v}")?;
    }
    writeln!(out, "payload")?;
    for line in serde_json::to_string_pretty(&j.payload)?.lines() {
        writeln!(out, "  {line}")?;
    }
    Ok(())
}

/// Columns padded to their widest cell (counted in characters), two spaces
/// apart; `right` marks the numeric columns aligned right. The last
/// column is not padded, so lines carry no trailing spaces.
fn table(out: &mut dyn Write, headers: &[&str], right: &[bool], rows: Vec<Vec<String>>) -> std::io::Result<()> {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let header_row: Vec<String> = headers.iter().map(|h| (*h).to_owned()).collect();
    for row in std::iter::once(&header_row).chain(&rows) {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            let pad = widths[i].saturating_sub(cell.chars().count());
            if i > 0 {
                line.push_str("  ");
            }
            if right.get(i).copied().unwrap_or(false) {
                line.push_str(&" ".repeat(pad));
                line.push_str(cell);
            } else {
                line.push_str(cell);
                if i + 1 < row.len() {
                    line.push_str(&" ".repeat(pad));
                }
            }
        }
        writeln!(out, "{}", line.trim_end())?;
    }
    Ok(())
}

/// One line of at most `max` characters: newlines folded to spaces, and an
/// ellipsis where it was cut.
fn truncate(s: &str, max: usize) -> String {
    let flat: String = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() <= max {
        return flat;
    }
    let mut cut: String = flat.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// Epoch milliseconds as `YYYY-MM-DDTHH:MM:SSZ` (UTC, whole seconds; the
/// millisecond is truncated, never rounded up into the next second).
pub fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp(ms.div_euclid(1000), 0).map_or_else(
        || ms.to_string(),
        |t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use domain::jobs::NewJob;
    use serde_json::json;
    use std::time::Duration;

    /// The subcommand as the binary parses it.
    #[derive(Parser, Debug)]
    struct Cli {
        #[command(flatten)]
        jobs: JobsArgs,
    }

    /// 2024-07-01T08:00:00Z.
    const T0: i64 = 1_719_820_800_000;

    struct Fixture {
        queue: queue::SqliteQueue,
        _dir: tempfile::TempDir,
    }

    fn fixture() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let queue = queue::SqliteQueue::open(&dir.path().join("jobs.db"), queue::SqliteQueueOptions::default())
            .expect("open the queue");
        Fixture { queue, _dir: dir }
    }

    async fn jobs(queue: &dyn JobQueue, argv: &[&str]) -> anyhow::Result<String> {
        let cli = Cli::try_parse_from(std::iter::once("jobs").chain(argv.iter().copied()))?;
        let mut out = Vec::new();
        run(queue, &cli.jobs, T0 + 1_000, &mut out).await?;
        Ok(String::from_utf8(out).unwrap())
    }

    /// A receipt job that failed its only attempt with a long, two-line error.
    async fn dead_receipt(queue: &dyn JobQueue) -> JobId {
        let id = queue
            .enqueue(
                &[NewJob::new("mail.receipt", "mail", json!({"order": "o-1"}), T0).attempts(1)],
                T0,
            )
            .await
            .unwrap()[0]
            .id();
        let claimed = queue
            .claim("mail", "w1", 10, Duration::from_secs(30), T0)
            .await
            .unwrap();
        assert_eq!(claimed.len(), 1);
        let error = format!("smtp: connection refused\n{}", "x".repeat(100));
        queue.fail(id, "w1", &error, None, T0).await.unwrap();
        id
    }

    #[tokio::test]
    async fn stats_show_an_aligned_table_or_json() {
        let f = fixture();
        dead_receipt(&f.queue).await;
        f.queue
            .enqueue(
                &[NewJob::new("sync.menu", "sync", json!({}), T0).at(T0 + 3_600_000)],
                T0,
            )
            .await
            .unwrap();

        let text = jobs(&f.queue, &["stats"]).await.unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0], "QUEUE        QUEUED  SCHEDULED  RUNNING  DONE  DEAD",
            "{text}"
        );
        assert!(
            lines.contains(&"mail              0          0        0     0     1"),
            "{text}"
        );
        assert!(
            lines.contains(&"sync              1          1        0     0     0"),
            "{text}"
        );
        for q in domain::jobs::QUEUES {
            assert!(lines.iter().any(|l| l.starts_with(q)), "{q} missing: {text}");
        }

        let v: serde_json::Value = serde_json::from_str(&jobs(&f.queue, &["stats", "--json"]).await.unwrap()).unwrap();
        let mail = v.as_array().unwrap().iter().find(|c| c["queue"] == "mail").unwrap();
        assert_eq!(mail["dead"], 1);
    }

    #[tokio::test]
    async fn list_filters_and_truncates_errors() {
        let f = fixture();
        let dead = dead_receipt(&f.queue).await;
        let queued = f
            .queue
            .enqueue(&[NewJob::new("sync.menu", "sync", json!({}), T0)], T0)
            .await
            .unwrap()[0]
            .id();

        let text = jobs(&f.queue, &["list"]).await.unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert!(
            lines[0].starts_with("ID  QUEUE  KIND          STATE   ATTEMPTS  RUN AT"),
            "{text}"
        );
        assert!(
            lines[1].starts_with(&format!("{queued:>2}  sync   sync.menu     queued       0/5")),
            "{text}"
        );
        assert!(
            lines[2].starts_with(&format!("{dead:>2}  mail   mail.receipt  dead         1/1")),
            "{text}"
        );
        assert!(
            lines[2].contains("2024-07-01T08:00:00Z  smtp: connection refused xxx"),
            "{text}"
        );
        assert!(lines[2].ends_with('…'), "{text}");
        let error_column = lines[2].split("08:00:00Z  ").nth(1).unwrap();
        assert_eq!(error_column.chars().count(), ERROR_WIDTH, "{text}");

        let text = jobs(&f.queue, &["list", "--state", "dead"]).await.unwrap();
        assert_eq!(text.lines().count(), 2, "{text}");
        assert!(text.contains("mail.receipt"));
        assert_eq!(
            jobs(&f.queue, &["list", "--queue", "maintenance"]).await.unwrap(),
            "no jobs\n"
        );
        let text = jobs(&f.queue, &["list", "--kind", "sync.menu", "--json"])
            .await
            .unwrap();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v.as_array().unwrap().len(), 1);
        assert_eq!(v[0]["id"], queued);
        assert_eq!(v[0]["state"], "queued");
        assert_eq!(
            jobs(&f.queue, &["list", "--limit", "1"]).await.unwrap().lines().count(),
            2
        );

        let err = jobs(&f.queue, &["list", "--state", "zombie"]).await.unwrap_err();
        assert!(err.to_string().contains("not a job state"), "{err}");
        assert!(jobs(&f.queue, &["list", "--limit", "0"]).await.is_err());
    }

    #[tokio::test]
    async fn show_retry_and_discard_a_dead_job() {
        let f = fixture();
        let id = dead_receipt(&f.queue).await;
        let ids = id.to_string();

        let text = jobs(&f.queue, &["show", &ids]).await.unwrap();
        assert!(text.contains("state        dead\n"), "{text}");
        assert!(text.contains("attempts     1/1\n"), "{text}");
        assert!(text.contains("run at       2024-07-01T08:00:00Z\n"), "{text}");
        assert!(
            text.contains(&format!("last error   smtp: connection refused\n{}", "x".repeat(100))),
            "{text}"
        );
        assert!(text.contains("payload\n  {\n    \"order\": \"o-1\"\n  }\n"), "{text}");
        let v: serde_json::Value =
            serde_json::from_str(&jobs(&f.queue, &["show", &ids, "--json"]).await.unwrap()).unwrap();
        assert_eq!(v["id"], id);
        assert_eq!(v["payload"]["order"], "o-1");

        assert_eq!(
            jobs(&f.queue, &["retry", &ids]).await.unwrap(),
            format!("job {id} queued again\n")
        );
        let job = f.queue.get(id).await.unwrap().unwrap();
        assert_eq!((job.state, job.attempts, job.run_at), (JobState::Queued, 0, T0 + 1_000));
        let err = jobs(&f.queue, &["retry", &ids]).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("job {id} is queued; only dead jobs can be retried")
        );

        f.queue
            .claim("mail", "w2", 10, Duration::from_secs(30), T0 + 1_000)
            .await
            .unwrap();
        let err = jobs(&f.queue, &["discard", &ids]).await.unwrap_err();
        assert!(err.to_string().contains("is running"), "{err}");
        f.queue.fail(id, "w2", "again", None, T0 + 1_000).await.unwrap();

        assert_eq!(
            jobs(&f.queue, &["discard", &ids]).await.unwrap(),
            format!("job {id} discarded\n")
        );
        assert!(f.queue.get(id).await.unwrap().is_none());
        for cmd in ["show", "retry", "discard"] {
            let err = jobs(&f.queue, &[cmd, &ids]).await.unwrap_err();
            assert_eq!(err.to_string(), format!("no job {id}"), "{cmd}");
        }
    }

    #[test]
    fn times_render_as_rfc3339_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(T0 + 999), "2024-07-01T08:00:00Z");
        assert_eq!(rfc3339(1_709_164_800_000), "2024-02-29T00:00:00Z");
        assert_eq!(rfc3339(-1_000), "1969-12-31T23:59:59Z");
    }
}
