//! `rushhour optimize-db`, `rushhour backup` and `rushhour restore`: which
//! databases the configuration names, in which order, and how the results
//! are printed. The inspection, the copies and the checksums are
//! `dbkit::inspect` and `dbkit::backup`'s; this module only wires them to
//! the configuration.
//!
//! Order matters for a backup: sessions, the store and the jobs are copied
//! before the event log, so every consumer position in the store's copy is
//! inside the log's copy (the processors of a restored instance resume from
//! there; the other order could leave the store ahead of its log).

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use dbkit::backup::{self, Manifest, Source};
use dbkit::inspect::{Report, human_bytes};

use crate::config::Config;
use crate::instance::InstanceLock;

#[derive(clap::Args, Debug)]
pub struct OptimizeArgs {
    /// Also VACUUM (SQLite: blocks writers while it runs; PostgreSQL: VACUUM (ANALYZE)).
    #[arg(long)]
    pub vacuum: bool,
    /// Print the reports as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(clap::Args, Debug)]
pub struct BackupArgs {
    /// Folder the timestamped backup goes into (default: backup.dir, else <data_dir>/backups).
    #[arg(long)]
    pub dir: Option<PathBuf>,
}

#[derive(clap::Args, Debug)]
pub struct RestoreArgs {
    /// A backup folder (the one holding manifest.json).
    pub backup: PathBuf,
    /// Restore into this data directory instead of the configured one.
    #[arg(long)]
    pub into: Option<PathBuf>,
    /// Overwrite existing database files (and, in scale mode, the PostgreSQL schema).
    #[arg(long)]
    pub force: bool,
}

/// One database the configuration names.
#[derive(Debug, Clone)]
pub enum Target {
    Sqlite {
        label: &'static str,
        path: PathBuf,
    },
    Postgres {
        label: &'static str,
        url: String,
        schema: Option<String>,
    },
}

/// Every database of the configuration, the event log last, and notes on
/// what is not a database of ours (Kafka, Redis). A job queue in the
/// store's PostgreSQL schema is the store's entry.
pub fn targets(cfg: &Config) -> anyhow::Result<(Vec<Target>, Vec<String>)> {
    let mut targets = Vec::new();
    let mut notes = Vec::new();
    match cfg.sessions_config()? {
        sessions::SessionsConfig::Sqlite { path } => targets.push(Target::Sqlite {
            label: "sessions",
            path,
        }),
        sessions::SessionsConfig::Redis { .. } => {
            notes.push("sessions live in Redis: not backed up (staff log in again)".to_owned())
        }
    }
    let pg = |label, url: String, schema: Option<String>, targets: &mut Vec<Target>| {
        let seen = targets
            .iter()
            .any(|t| matches!(t, Target::Postgres { url: u, schema: s, .. } if *u == url && *s == schema));
        if !seen {
            targets.push(Target::Postgres { label, url, schema });
        }
    };
    match cfg.store_config()? {
        store::StoreConfig::Sqlite { path, .. } => targets.push(Target::Sqlite { label: "store", path }),
        store::StoreConfig::Postgres { url, options } => pg("store", url, options.schema, &mut targets),
    }
    match cfg.queue_config()? {
        queue::QueueConfig::Sqlite { path, .. } => targets.push(Target::Sqlite {
            label: "job queue",
            path,
        }),
        queue::QueueConfig::Postgres { url, options } => pg("job queue", url, options.schema, &mut targets),
    }
    match cfg.log_config()? {
        eventlog::LogConfig::Sqlite { path, .. } => targets.push(Target::Sqlite {
            label: "event log",
            path,
        }),
        _ => notes.push(
            "the event log is on Kafka: not backed up (the store holds the processors' positions; \
             keep Kafka's own replication and retention for the records)"
                .to_owned(),
        ),
    }
    Ok((targets, notes))
}

/// `rushhour optimize-db`.
pub async fn optimize(cfg: &Config, args: &OptimizeArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let (targets, _) = targets(cfg)?;
    let mut reports = Vec::new();
    let mut skipped = Vec::new();
    for target in targets {
        match target {
            Target::Sqlite { label, path } => {
                if !path.exists() {
                    skipped.push(format!("{label}: {} does not exist yet", path.display()));
                    continue;
                }
                let vacuum = args.vacuum;
                let report = tokio::task::spawn_blocking(move || dbkit::inspect::sqlite::inspect(&path, label, vacuum))
                    .await
                    .context("inspection thread")?
                    .with_context(|| format!("inspect the {label}"))?;
                reports.push(report);
            }
            Target::Postgres { label, url, schema } => {
                let report = dbkit::inspect::postgres::inspect_url(&url, schema.as_deref(), label, args.vacuum)
                    .await
                    .with_context(|| {
                        format!("inspect the {label} (PostgreSQL, {})", crate::config::redact_url(&url))
                    })?;
                reports.push(report);
            }
        }
    }
    if args.json {
        let json = serde_json::json!({ "databases": reports, "skipped": skipped });
        writeln!(out, "{}", serde_json::to_string_pretty(&json)?)?;
    } else {
        for r in &reports {
            print_report(r, out)?;
        }
        for s in &skipped {
            writeln!(out, "skipped: {s}")?;
        }
    }
    Ok(())
}

fn print_report(r: &Report, out: &mut dyn Write) -> anyhow::Result<()> {
    writeln!(out, "== {} ({}, {})", r.label, r.engine, r.location)?;
    writeln!(
        out,
        "   ran: {}",
        if r.actions.is_empty() {
            "nothing".to_owned()
        } else {
            r.actions.join("; ")
        }
    )?;
    if let Some(integrity) = &r.integrity {
        writeln!(out, "   integrity_check: {}", integrity.join("; "))?;
    }
    match r.pages {
        Some(p) => writeln!(
            out,
            "   size {} ({} pages of {} B), {} free pages: VACUUM would reclaim at least {}",
            human_bytes(r.size_bytes),
            p.page_count,
            p.page_size,
            p.free_pages,
            human_bytes(r.reclaimable_bytes)
        )?,
        None => writeln!(
            out,
            "   size {}, dead tuples ~{} (estimate: dead share of each table's size)",
            human_bytes(r.size_bytes),
            human_bytes(r.reclaimable_bytes)
        )?,
    }
    if let Some(v) = r.vacuum {
        writeln!(
            out,
            "   vacuum: {} -> {}",
            human_bytes(v.before_bytes),
            human_bytes(v.after_bytes)
        )?;
    }
    writeln!(out, "   tables:")?;
    for t in &r.tables {
        let mut line = format!("     {:<28} rows {}", t.name, opt(t.rows));
        if let Some(seq) = t.seq_scans {
            line.push_str(&format!(
                ", seq scans {seq} ({} rows read), index scans {}, dead {}",
                opt(t.seq_rows_read),
                opt(t.index_scans),
                opt(t.dead_rows)
            ));
        }
        writeln!(out, "{line}")?;
    }
    writeln!(out, "   indexes (planner's view from {}):", r.planner_source)?;
    for i in &r.indexes {
        let mut line = format!(
            "     {:<36} on {}({}){}",
            i.name,
            i.table,
            i.columns.join(", "),
            if i.unique { " unique" } else { "" }
        );
        if let Some(rows) = i.rows {
            line.push_str(&format!(", rows {rows}"));
        }
        if let Some(k) = i.rows_per_key {
            line.push_str(&format!(", ~{k} rows per key"));
        }
        if let Some(s) = i.scans {
            line.push_str(&format!(", {s} scans"));
        }
        if let Some(b) = i.size_bytes {
            line.push_str(&format!(", {}", human_bytes(b)));
        }
        writeln!(out, "{line}")?;
    }
    if r.hints.is_empty() {
        writeln!(out, "   hints: none")?;
    } else {
        writeln!(out, "   hints:")?;
        for h in &r.hints {
            writeln!(out, "     - {h}")?;
        }
    }
    writeln!(out)?;
    Ok(())
}

fn opt(v: Option<u64>) -> String {
    v.map_or_else(|| "?".to_owned(), |n| n.to_string())
}

/// Secrets the embedded mode generates into the data directory: a restored
/// instance needs the same ones (order links, payment callbacks, staff key).
const SECRET_FILES: [&str; 3] = ["session.key", "webhook.secret", "staff.key"];

/// Take a backup into a new timestamped folder under `root`; returns the
/// folder and its manifest.
pub async fn take_backup(cfg: &Config, root: &Path) -> anyhow::Result<(PathBuf, Manifest)> {
    let (targets, notes) = targets(cfg)?;
    let now = jiff::Timestamp::now();
    let dir = root.join(now.strftime("%Y-%m-%dT%H-%M-%SZ").to_string());
    let created_at = now.strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
    let mut sources = Vec::new();
    for secret in SECRET_FILES {
        let path = cfg.data_dir.join(secret);
        if path.is_file() {
            sources.push(Source::File {
                label: "secret".to_owned(),
                path,
                name: secret.to_owned(),
            });
        }
    }
    let mut log_copy = None;
    for target in targets {
        match target {
            Target::Sqlite { label, path } => {
                let name = path
                    .file_name()
                    .context("a database path without a file name")?
                    .to_string_lossy()
                    .into_owned();
                if !path.exists() {
                    continue;
                }
                if label == "event log" {
                    log_copy = Some(dir.join(&name));
                }
                sources.push(Source::Sqlite {
                    label: label.to_owned(),
                    path,
                    name,
                });
            }
            Target::Postgres { label, url, schema } => sources.push(Source::Postgres {
                label: label.to_owned(),
                name: format!("{}.pgdump", schema.as_deref().unwrap_or("public")),
                url,
                schema,
                search_path: crate::config::tool_search_path(),
            }),
        }
    }
    if sources.iter().all(|s| matches!(s, Source::File { .. })) {
        bail!(
            "nothing to back up: no database of {} exists yet",
            cfg.data_dir.display()
        );
    }
    let version = env!("CARGO_PKG_VERSION");
    let (dir, manifest) = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
        let mut manifest = backup::take(&dir, &sources, version, &created_at)?;
        if let Some(log) = log_copy {
            manifest.log_end_offsets = eventlog::sqlite::end_offsets(&log)?;
        }
        manifest.notes = notes;
        manifest.write(&dir)?;
        Ok((dir, manifest))
    })
    .await
    .context("backup thread")??;
    Ok((dir, manifest))
}

/// The backups folder: `--dir`, else `backup.dir`, else `<data_dir>/backups`.
pub fn backup_root(cfg: &Config, dir: Option<&Path>) -> PathBuf {
    match dir {
        Some(d) => d.to_owned(),
        None if !cfg.backup.dir.is_empty() => PathBuf::from(&cfg.backup.dir),
        None => cfg.data_dir.join("backups"),
    }
}

/// `rushhour backup`.
pub async fn run_backup(cfg: &Config, args: &BackupArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let root = backup_root(cfg, args.dir.as_deref());
    let (dir, manifest) = take_backup(cfg, &root).await?;
    writeln!(out, "backup written to {}", dir.display())?;
    for f in &manifest.files {
        writeln!(
            out,
            "  {:<16} {:<12} {:>10}  sha256 {}",
            f.name,
            f.label,
            human_bytes(f.bytes),
            &f.sha256[..16]
        )?;
    }
    if !manifest.log_end_offsets.is_empty() {
        let records: u64 = manifest.log_end_offsets.values().sum();
        writeln!(
            out,
            "  event log: {records} records over {} partitions",
            manifest.log_end_offsets.len()
        )?;
    }
    for n in &manifest.notes {
        writeln!(out, "  note: {n}")?;
    }
    Ok(())
}

/// `rushhour restore`.
pub async fn restore(cfg: &Config, args: &RestoreArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let backup_dir = args.backup.clone();
    let manifest = tokio::task::spawn_blocking(move || backup::verify(&backup_dir))
        .await
        .context("verify thread")?
        .context("verify the backup")?;
    writeln!(
        out,
        "backup of {} verified ({} files)",
        manifest.created_at,
        manifest.files.len()
    )?;
    let target = args.into.clone().unwrap_or_else(|| cfg.data_dir.clone());
    // Held until the restore is done: no server can start on half-copied files.
    let _lock = InstanceLock::acquire(&target).context("restore refused")?;
    let files: Vec<_> = manifest.files.iter().filter(|f| f.kind != "pg_dump").collect();
    let existing: Vec<String> = files
        .iter()
        .filter(|f| target.join(&f.name).exists())
        .map(|f| f.name.clone())
        .collect();
    if !existing.is_empty() && !args.force {
        bail!(
            "{} already holds {}: restore refused (pass --force to overwrite them)",
            target.display(),
            existing.join(", ")
        );
    }
    let dumps: Vec<_> = manifest.files.iter().filter(|f| f.kind == "pg_dump").collect();
    if !dumps.is_empty() && !args.force {
        bail!("restoring a PostgreSQL dump replaces the configured schema's objects: pass --force to do it");
    }
    let (backup_dir, m, into) = (args.backup.clone(), manifest.clone(), target.clone());
    let restored = tokio::task::spawn_blocking(move || backup::restore_files(&backup_dir, &m, &into))
        .await
        .context("restore thread")??;
    for path in &restored {
        writeln!(out, "  restored {}", path.display())?;
    }
    if !dumps.is_empty() {
        let url = match cfg.store_config()? {
            store::StoreConfig::Postgres { url, .. } => url,
            _ => bail!("the backup holds a PostgreSQL dump but store.url is not postgres://"),
        };
        for dump in dumps {
            let file = args.backup.join(&dump.name);
            let (to, path) = (url.clone(), crate::config::tool_search_path());
            tokio::task::spawn_blocking(move || backup::pg_restore(&to, &file, &path))
                .await
                .context("pg_restore thread")??;
            writeln!(
                out,
                "  pg_restore of {} into {}",
                dump.name,
                crate::config::redact_url(&url)
            )?;
        }
    }
    writeln!(out, "restored into {}; start the server on it", target.display())?;
    Ok(())
}

/// The nightly `db.backup` job's port: [`take_backup`] into the configured
/// folder, then `backup.keep` of them kept.
#[derive(Debug)]
pub struct ScheduledBackups {
    pub cfg: Config,
}

#[async_trait::async_trait]
impl domain::ports::Backups for ScheduledBackups {
    async fn backup_and_prune(&self) -> domain::ports::PortResult<domain::ports::BackupTaken> {
        use domain::ports::PortError;
        let root = backup_root(&self.cfg, None);
        let (dir, manifest) = take_backup(&self.cfg, &root)
            .await
            .map_err(|e| PortError::Unavailable(format!("{e:#}")))?;
        let keep = self.cfg.backup.keep;
        let pruned = tokio::task::spawn_blocking(move || backup::prune(&root, keep))
            .await
            .map_err(|e| PortError::Unavailable(e.to_string()))??;
        Ok(domain::ports::BackupTaken {
            dir: dir.display().to_string(),
            files: manifest.files.len(),
            pruned: pruned.len(),
        })
    }
}
