//! Backups of every database the configuration names, taken while the
//! server runs, and their restore: the pieces `rushhour backup` /
//! `rushhour restore` and the nightly `db.backup` job put together.
//!
//! Embedded: each SQLite file is copied with `VACUUM INTO` (one consistent
//! snapshot per file, never blocking the writer; see
//! [`crate::inspect::sqlite::snapshot_into`]) in the order the caller
//! gives, so the event log can be copied last: every position the store's
//! copy records is then inside the log's copy, and a restored instance
//! resumes exactly there. Scale: `pg_dump -Fc` of the configured schema
//! (found on `PATH`; the message says what to install when it is not).
//! Secrets the embedded mode generated (`*.key`, `*.secret`) are copied
//! too, 0600 in a 0700 folder: without them restored order links and
//! payment callbacks would no longer verify.
//!
//! Every backup folder holds a [`Manifest`] (`manifest.json`): each file's
//! size and SHA-256, schema versions, the rushhour version and whatever
//! the caller adds (the log's end offsets). [`verify`] checks it before a
//! restore touches anything.

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use domain::ports::PortError;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The manifest's file name inside a backup folder.
pub const MANIFEST: &str = "manifest.json";

/// What a backup folder holds.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Manifest {
    /// `backup` format version: a newer one is refused by an older binary.
    pub format: u32,
    pub rushhour_version: String,
    /// UTC, `2026-12-06T15:04:05Z`.
    pub created_at: String,
    pub files: Vec<FileEntry>,
    /// The embedded log's next offset per partition at the copy.
    #[serde(default)]
    pub log_end_offsets: BTreeMap<u32, u64>,
    /// What the backup deliberately leaves out, and why.
    #[serde(default)]
    pub notes: Vec<String>,
}

pub const FORMAT: u32 = 1;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FileEntry {
    /// The file's name inside the backup folder and the data directory.
    pub name: String,
    /// "store", "event log", "job queue", "sessions", "secret", or
    /// "postgres dump".
    pub label: String,
    /// `sqlite`, `pg_dump` or `file`.
    pub kind: String,
    pub bytes: u64,
    pub sha256: String,
    /// `user_version` of a SQLite copy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema_version: Option<i64>,
}

/// One thing to back up.
#[derive(Debug, Clone)]
pub enum Source {
    /// A SQLite database file, copied with `VACUUM INTO` as `name`.
    Sqlite { label: String, path: PathBuf, name: String },
    /// A small file copied as is (a generated secret), kept 0600.
    File { label: String, path: PathBuf, name: String },
    /// A PostgreSQL database's `schema`, dumped with `pg_dump -Fc` as `name`.
    Postgres {
        label: String,
        url: String,
        schema: Option<String>,
        name: String,
        /// Where to look for `pg_dump` (`PATH`).
        search_path: OsString,
    },
}

/// Copy `sources`, in order, into the new folder `dir` (0700), and return
/// the manifest; the caller adds what only it knows and calls
/// [`Manifest::write`]. Blocking: run it on a blocking thread.
pub fn take(dir: &Path, sources: &[Source], version: &str, created_at: &str) -> Result<Manifest, PortError> {
    if dir.exists() {
        return Err(PortError::Conflict(format!("{} already exists", dir.display())));
    }
    create_private_dir(dir)?;
    let mut files = Vec::with_capacity(sources.len());
    for source in sources {
        let entry = match source {
            Source::Sqlite { label, path, name } => {
                let dest = dir.join(name);
                let version = crate::inspect::sqlite::snapshot_into(path, &dest)?;
                entry(&dest, name, label, "sqlite", Some(version))?
            }
            Source::File { label, path, name } => {
                let dest = dir.join(name);
                std::fs::copy(path, &dest).map_err(|e| io("copy", path, e))?;
                make_private(&dest)?;
                entry(&dest, name, label, "file", None)?
            }
            Source::Postgres {
                label,
                url,
                schema,
                name,
                search_path,
            } => {
                let dest = dir.join(name);
                pg_dump(url, schema.as_deref(), &dest, search_path)?;
                entry(&dest, name, label, "pg_dump", None)?
            }
        };
        files.push(entry);
    }
    Ok(Manifest {
        format: FORMAT,
        rushhour_version: version.to_owned(),
        created_at: created_at.to_owned(),
        files,
        log_end_offsets: BTreeMap::new(),
        notes: Vec::new(),
    })
}

impl Manifest {
    /// Write `manifest.json` into `dir` (last: a folder without one is an
    /// unfinished backup, which [`verify`] refuses).
    pub fn write(&self, dir: &Path) -> Result<(), PortError> {
        let json = serde_json::to_vec_pretty(self).map_err(|e| PortError::Invalid(e.to_string()))?;
        let tmp = dir.join(format!("{MANIFEST}.tmp"));
        std::fs::write(&tmp, json).map_err(|e| io("write", &tmp, e))?;
        std::fs::rename(&tmp, dir.join(MANIFEST)).map_err(|e| io("rename", &tmp, e))
    }
}

/// Read `dir`'s manifest and check every file it lists against its size
/// and checksum. A missing manifest, a missing file or a mismatch is
/// `Invalid`, naming the file.
pub fn verify(dir: &Path) -> Result<Manifest, PortError> {
    let path = dir.join(MANIFEST);
    let text = std::fs::read(&path).map_err(|e| {
        PortError::Invalid(format!(
            "{} is not a finished backup ({}: {e})",
            dir.display(),
            path.display()
        ))
    })?;
    let manifest: Manifest =
        serde_json::from_slice(&text).map_err(|e| PortError::Invalid(format!("{}: {e}", path.display())))?;
    if manifest.format > FORMAT {
        return Err(PortError::Invalid(format!(
            "{} is backup format {}; this binary knows up to {FORMAT}",
            path.display(),
            manifest.format
        )));
    }
    for f in &manifest.files {
        if f.name.contains('/') || f.name.contains("..") {
            return Err(PortError::Invalid(format!(
                "manifest names a path outside the backup: {}",
                f.name
            )));
        }
        let file = dir.join(&f.name);
        let (bytes, sha) = digest(&file).map_err(|e| PortError::Invalid(format!("{}: {e}", file.display())))?;
        if bytes != f.bytes || sha != f.sha256 {
            return Err(PortError::Invalid(format!(
                "{} does not match the manifest (size {bytes} vs {}, sha256 {sha} vs {}): the backup is damaged",
                file.display(),
                f.bytes,
                f.sha256
            )));
        }
    }
    Ok(manifest)
}

/// Copy a verified backup's non-PostgreSQL files into `target`: each goes
/// to a temporary name first and is renamed over the old file, whose
/// `-wal` and `-shm` companions are removed (a stale WAL would be replayed
/// over the restored file). The caller has checked that no instance runs
/// on `target` and that overwriting is allowed.
pub fn restore_files(backup: &Path, manifest: &Manifest, target: &Path) -> Result<Vec<PathBuf>, PortError> {
    create_private_dir(target)?;
    let mut restored = Vec::new();
    for f in manifest.files.iter().filter(|f| f.kind != "pg_dump") {
        let dest = target.join(&f.name);
        let tmp = target.join(format!("{}.restoring", f.name));
        std::fs::copy(backup.join(&f.name), &tmp).map_err(|e| io("copy", &tmp, e))?;
        if f.kind == "file" {
            make_private(&tmp)?;
        }
        for companion in ["-wal", "-shm", "-journal"] {
            let side = target.join(format!("{}{companion}", f.name));
            match std::fs::remove_file(&side) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io("remove", &side, e)),
            }
        }
        std::fs::rename(&tmp, &dest).map_err(|e| io("rename", &tmp, e))?;
        restored.push(dest);
    }
    Ok(restored)
}

/// The backup folders under `root` (named by their UTC timestamp, so
/// their names sort by age), oldest first.
pub fn list(root: &Path) -> Result<Vec<PathBuf>, PortError> {
    let entries = match std::fs::read_dir(root) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io("read", root, e)),
    };
    let mut dirs: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_dir() && p.join(MANIFEST).exists())
        .collect();
    dirs.sort();
    Ok(dirs)
}

/// Delete all but the newest `keep` finished backups under `root`;
/// returns the folders removed. Unfinished folders are left for a person.
pub fn prune(root: &Path, keep: usize) -> Result<Vec<PathBuf>, PortError> {
    let dirs = list(root)?;
    let excess = dirs.len().saturating_sub(keep.max(1));
    let mut removed = Vec::new();
    for dir in dirs.into_iter().take(excess) {
        std::fs::remove_dir_all(&dir).map_err(|e| io("remove", &dir, e))?;
        removed.push(dir);
    }
    Ok(removed)
}

/// `pg_dump -Fc` of `url` (one schema when given) into `dest`, with the
/// `pg_dump` on `search_path` (a `PATH`-style list, read by the binary's
/// configuration: nothing else reads the environment).
pub fn pg_dump(url: &str, schema: Option<&str>, dest: &Path, search_path: &OsStr) -> Result<(), PortError> {
    let mut cmd = Command::new(pg_tool("pg_dump", search_path)?);
    cmd.arg("-Fc").arg("--no-owner").arg("-f").arg(dest);
    if let Some(s) = schema {
        // The configuration checked it; a flag built from it must still
        // never carry anything but an identifier.
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return Err(PortError::Invalid(format!(
                "schema name {s:?} is not a plain identifier"
            )));
        }
        cmd.arg(format!("--schema={s}"));
    }
    cmd.arg(format!("--dbname={url}"));
    run(cmd, "pg_dump")
}

/// `pg_restore --clean --if-exists` of the dump `file` into `url`.
pub fn pg_restore(url: &str, file: &Path, search_path: &OsStr) -> Result<(), PortError> {
    let mut cmd = Command::new(pg_tool("pg_restore", search_path)?);
    cmd.args(["--clean", "--if-exists", "--no-owner", "--single-transaction"])
        .arg(format!("--dbname={url}"))
        .arg(file);
    run(cmd, "pg_restore")
}

/// `name` found on `search_path`, or a message saying what to install.
pub fn pg_tool(name: &str, search_path: &OsStr) -> Result<PathBuf, PortError> {
    std::env::split_paths(search_path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
        .ok_or_else(|| {
            PortError::Unavailable(format!(
                "{name} is not on PATH: install the PostgreSQL client tools (Debian/Ubuntu: \
                 `apt-get install postgresql-client`, of the server's major version or newer)"
            ))
        })
}

fn run(mut cmd: Command, what: &str) -> Result<(), PortError> {
    let out = cmd
        .output()
        .map_err(|e| PortError::Unavailable(format!("cannot run {what}: {e}")))?;
    if out.status.success() {
        Ok(())
    } else {
        // stderr names objects, never the password (libpq does not echo it).
        Err(PortError::Unavailable(format!(
            "{what} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

fn entry(
    path: &Path,
    name: &str,
    label: &str,
    kind: &str,
    schema_version: Option<i64>,
) -> Result<FileEntry, PortError> {
    let (bytes, sha256) = digest(path).map_err(|e| io("read", path, e))?;
    Ok(FileEntry {
        name: name.to_owned(),
        label: label.to_owned(),
        kind: kind.to_owned(),
        bytes,
        sha256,
        schema_version,
    })
}

/// Size and hex SHA-256 of a file.
pub fn digest(path: &Path) -> std::io::Result<(u64, String)> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut bytes = 0u64;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        bytes += n as u64;
        hasher.update(&buf[..n]);
    }
    Ok((bytes, hex::encode(hasher.finalize())))
}

fn create_private_dir(dir: &Path) -> Result<(), PortError> {
    std::fs::create_dir_all(dir).map_err(|e| io("create", dir, e))?;
    set_mode(dir, 0o700)
}

fn make_private(path: &Path) -> Result<(), PortError> {
    set_mode(path, 0o600)
}

fn set_mode(path: &Path, mode: u32) -> Result<(), PortError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(|e| io("chmod", path, e))
}

fn io(what: &str, path: &Path, e: std::io::Error) -> PortError {
    PortError::Unavailable(format!("cannot {what} {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn database(path: &Path) {
        let conn = rusqlite::Connection::open(path).unwrap();
        conn.execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA user_version = 3;
             CREATE TABLE t (x INTEGER); INSERT INTO t VALUES (1), (2);",
        )
        .unwrap();
    }

    #[test]
    fn a_backup_verifies_and_a_changed_byte_is_caught() {
        let data = tempfile::TempDir::new().unwrap();
        let root = tempfile::TempDir::new().unwrap();
        database(&data.path().join("a.db"));
        std::fs::write(data.path().join("s.key"), "secret").unwrap();
        let dir = root.path().join("2026-12-06T03-00-00Z");
        let sources = [
            Source::File {
                label: "secret".into(),
                path: data.path().join("s.key"),
                name: "s.key".into(),
            },
            Source::Sqlite {
                label: "store".into(),
                path: data.path().join("a.db"),
                name: "a.db".into(),
            },
        ];
        let manifest = take(&dir, &sources, "0.1.0", "2026-12-06T03:00:00Z").unwrap();
        manifest.write(&dir).unwrap();
        assert_eq!(
            manifest.files[1].schema_version,
            Some(3),
            "user_version travels with the copy"
        );
        assert_eq!(verify(&dir).unwrap(), manifest);
        assert!(matches!(
            take(&dir, &sources, "0.1.0", "x"),
            Err(PortError::Conflict(_))
        ));

        let target = tempfile::TempDir::new().unwrap();
        std::fs::write(target.path().join("a.db-wal"), "stale").unwrap();
        restore_files(&dir, &manifest, target.path()).unwrap();
        assert!(!target.path().join("a.db-wal").exists(), "a stale WAL is removed");
        let conn = rusqlite::Connection::open(target.path().join("a.db")).unwrap();
        let n: i64 = conn.query_row("SELECT count(*) FROM t", [], |r| r.get(0)).unwrap();
        assert_eq!(n, 2);

        std::fs::write(dir.join("s.key"), "secreT").unwrap();
        let err = verify(&dir).unwrap_err();
        assert!(err.to_string().contains("does not match the manifest"), "{err}");
    }

    #[test]
    fn prune_keeps_the_newest_finished_backups() {
        let root = tempfile::TempDir::new().unwrap();
        for name in ["2026-12-01T03-00-00Z", "2026-12-02T03-00-00Z", "2026-12-03T03-00-00Z"] {
            let dir = root.path().join(name);
            std::fs::create_dir(&dir).unwrap();
            std::fs::write(dir.join(MANIFEST), "{}").unwrap();
        }
        // Unfinished (no manifest): left alone.
        std::fs::create_dir(root.path().join("2026-11-30T03-00-00Z")).unwrap();
        let removed = prune(root.path(), 2).unwrap();
        assert_eq!(removed, [root.path().join("2026-12-01T03-00-00Z")]);
        assert_eq!(list(root.path()).unwrap().len(), 2);
        assert!(root.path().join("2026-11-30T03-00-00Z").exists());
    }
}
