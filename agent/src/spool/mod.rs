//! The durable spool: every score, incident and clip record, in SQLite,
//! and the state of their delivery upstream (batches) and upload (clips).
//!
//! # Guarantees
//! 1. **Committed means durable.** The writer thread groups records and
//!    commits them in one transaction every `commit_interval_ms` (default
//!    1 s), in WAL mode with `synchronous=FULL` on its connection: one fsync
//!    of the WAL per commit, so at most one a second. A power cut loses at
//!    most the records of the last uncommitted interval; it never corrupts
//!    the file (SQLite's WAL recovery). The sync and upload threads write
//!    their small state changes on their own connections with
//!    `synchronous=NORMAL` (no fsync of their own): the writer's next commit
//!    fsyncs the WAL they share, and [`crate::sync`] waits for that (without
//!    blocking its thread: [`WriterStats::durable_after`]) before it sends a
//!    new batch (see 6).
//! 2. **Order.** Scores keep the order they were pushed in (`id`).
//! 3. **Bounded memory.** Records wait for the next commit in a queue of at
//!    most [`MAX_PENDING`]; past that the oldest scores are dropped and
//!    counted (never incidents), so a stalled disk cannot grow memory.
//! 4. **A failing disk never stops analysis.** A failed commit keeps its
//!    records for the next attempt (up to the bound) and is reported in
//!    [`WriterStats`]; the analysis loop never waits for the disk.
//! 5. **Versioned schema.** `PRAGMA user_version` holds the schema version;
//!    a new file gets [`SCHEMA`], an older one is upgraded one transaction
//!    per step ([`UPGRADES`]); a newer one is refused. An upgraded v1 file
//!    equals a fresh one (tested).
//! 6. **A batch is sent only once it is durable, and re-sent unchanged.** A
//!    batch (`batches` row: its `batch_id`, the range of score ids and the
//!    exact body, gzip'd) is written before its first send; after a crash or a
//!    power cut it is re-sent with the same `batch_id` (the
//!    `Idempotency-Key`) and the same bytes. Its rows are marked delivered
//!    ([`Delivery::Delivered`]) only after a 2xx, dead-lettered
//!    ([`Delivery::DeadLettered`]) after a non-retriable 4xx.
//! 7. **Size cap.** The database file is capped at `spool.max_disk_mb`
//!    (SQLite `max_page_count`; the WAL, kept under [`WAL_LIMIT_BYTES`] after
//!    checkpoints, comes on top). At the cap the writer drops, oldest first:
//!    delivered scores, then dead-lettered ones, then undelivered scores.
//!    Incidents and clip records are never dropped. What is dropped is
//!    counted in [`WriterStats`] and in the file (`counters`, shown by
//!    `invigil spool stats`). A full disk (SQLITE_FULL) is handled the same
//!    way; when nothing can be dropped the records wait in memory (3) and
//!    the writer recovers on its own when space returns.
//! 8. **Retention.** Scores delivered or dead-lettered more than
//!    [`SpoolLimits::keep_delivered`] (`spool.keep_delivered_h`, default 24 h) ago are deleted, a
//!    bounded number per minute, inside the writer's own commit (no extra
//!    fsync). The newest score row is never deleted, so ids never go back.
//!
//! Non-goals: surviving the loss of the SD card itself; recovering a file
//! damaged by something other than SQLite (it is reported corrupt, not
//! repaired).
//!
//! # Tables
//! `scores` (one row a frame), `incidents` (`rev` counts changes, so an
//! incident changed while its batch was in flight is sent again), `clips`
//! (`uploaded`: a [`ClipState`]), `batches` (`state`: a [`BatchState`]),
//! `counters` (lifetime totals of what was dropped). Rows' delivery is a
//! [`Delivery`]; times are RFC 3339 text, typed on the way out.
//!
//! # Layout
//! - [`schema`]: the schema, its versions and upgrades.
//! - [`states`]: typed state columns and timestamps.
//! - `records`: the write path: commit, shed at the cap, retention.
//! - `batches`: forming, finishing and re-queueing upstream batches (for
//!   [`crate::sync`]).
//! - `clips`: clip files and their upload state (for [`crate::upload`]).
//! - `stats`: counts for `invigil spool stats`, health and metrics.
//! - [`writer`]: the writer thread that groups records into commits.

mod batches;
mod clips;
mod records;
pub mod schema;
pub mod states;
mod stats;
#[cfg(test)]
mod tests;
pub mod writer;

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

pub use batches::{Batch, BatchOutcome, BatchRows};
pub use clips::{ClipOnDisk, PendingClip, UploadedClip};
pub use records::{Record, Shed};
pub use schema::SCHEMA_VERSION;
pub use states::{BatchState, ClipState, Delivery};
pub use stats::SpoolStats;
pub use writer::{MAX_PENDING, SpoolWriter, WriterStats, WriterThread};

/// Page size of a new file.
pub const PAGE_SIZE: i64 = 1024;
/// The WAL is truncated to this size after a checkpoint.
pub const WAL_LIMIT_BYTES: i64 = 4 << 20;

/// Size cap and retention of a spool file.
#[derive(Clone, Debug, PartialEq)]
pub struct SpoolLimits {
    /// Cap of the database file (`spool.max_disk_mb`). Default 512 MiB.
    pub max_bytes: u64,
    /// Delivered and dead-lettered scores are deleted this long after their
    /// batch was done. Default 24 h.
    pub keep_delivered: Duration,
}

impl Default for SpoolLimits {
    fn default() -> Self {
        Self { max_bytes: 512 << 20, keep_delivered: Duration::from_secs(24 * 3600) }
    }
}

/// Spool errors. `Full` and `Corrupt` are told apart so the caller can shed
/// load for one and stop trusting the file for the other.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("spool {path}: cannot create its folder: {source}")]
    Folder { path: PathBuf, source: std::io::Error },
    #[error("spool {path}: schema version {found} is newer than this build's {SCHEMA_VERSION}; refusing to touch it")]
    TooNew { path: PathBuf, found: i64 },
    #[error("spool {path}: disk full")]
    Full { path: PathBuf },
    #[error("spool {path}: corrupt: {message}")]
    Corrupt { path: PathBuf, message: String },
    #[error("spool {path}: {source}")]
    Sqlite { path: PathBuf, source: rusqlite::Error },
    #[error("spool {path}: cannot start its writer thread: {source}")]
    Thread { path: PathBuf, source: std::io::Error },
}

impl SpoolError {
    pub(crate) fn from_sqlite(path: &Path, e: rusqlite::Error) -> Self {
        use rusqlite::ErrorCode::*;
        let path = path.to_path_buf();
        match e.sqlite_error_code() {
            Some(DiskFull) => SpoolError::Full { path },
            Some(DatabaseCorrupt) | Some(NotADatabase) => SpoolError::Corrupt { path, message: e.to_string() },
            _ => SpoolError::Sqlite { path, source: e },
        }
    }
}

/// Turns a SQLite error into a [`SpoolError`] naming `path`.
pub(crate) fn sq(path: &Path) -> impl Fn(rusqlite::Error) -> SpoolError + '_ {
    move |e| SpoolError::from_sqlite(path, e)
}

/// An open spool file: one connection. The writer thread, the sync loop
/// and the upload loop each open their own.
pub struct Spool {
    conn: Connection,
    path: PathBuf,
    limits: SpoolLimits,
}

impl Spool {
    /// Opens (creating if needed) and upgrades the spool at `path`, with the
    /// default [`SpoolLimits`].
    pub fn open(path: &Path) -> Result<Spool, SpoolError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| SpoolError::Folder { path: path.to_path_buf(), source })?;
        }
        let e = sq(path);
        let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE)
            .map_err(&e)?;
        conn.busy_timeout(Duration::from_secs(5)).map_err(&e)?;
        // Small pages: a commit rewrites whole pages (WAL frames), so 1 KiB
        // pages write about a quarter of what 4 KiB ones do for the same 30
        // rows (docs/PERFORMANCE.md). Only takes effect on a new file.
        conn.pragma_update(None, "page_size", PAGE_SIZE).map_err(&e)?;
        conn.pragma_update(None, "journal_mode", "WAL").map_err(&e)?;
        conn.pragma_update(None, "synchronous", "NORMAL").map_err(&e)?;
        conn.pragma_update(None, "journal_size_limit", WAL_LIMIT_BYTES).map_err(&e)?;
        let mut spool = Spool { conn, path: path.to_path_buf(), limits: SpoolLimits::default() };
        let found = spool.version()?;
        if found > SCHEMA_VERSION {
            return Err(SpoolError::TooNew { path: path.to_path_buf(), found });
        }
        schema::upgrade(&mut spool.conn, found).map_err(&e)?;
        spool.set_limits(SpoolLimits::default())?;
        Ok(spool)
    }

    /// Opens an existing spool read-only (for `invigil spool stats`).
    pub fn open_read_only(path: &Path) -> Result<Spool, SpoolError> {
        let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY).map_err(sq(path))?;
        let spool = Spool { conn, path: path.to_path_buf(), limits: SpoolLimits::default() };
        let v = spool.version()?;
        if v > SCHEMA_VERSION {
            return Err(SpoolError::TooNew { path: path.to_path_buf(), found: v });
        }
        Ok(spool)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The underlying connection, for tests that inspect the file. The
    /// agent's own modules use the typed methods.
    #[doc(hidden)]
    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    pub fn limits(&self) -> &SpoolLimits {
        &self.limits
    }

    /// Sets the size cap (`max_page_count`) and retention. A cap under the
    /// current size holds the file at its current size.
    pub fn set_limits(&mut self, limits: SpoolLimits) -> Result<(), SpoolError> {
        let e = sq(&self.path);
        let page: i64 = self.conn.pragma_query_value(None, "page_size", |r| r.get(0)).map_err(&e)?;
        let pages = (limits.max_bytes as i64 / page.max(512)).max(8);
        self.conn.pragma_update(None, "max_page_count", pages).map_err(&e)?;
        self.limits = limits;
        Ok(())
    }

    /// Chooses `synchronous=FULL` (fsync at each commit) or `NORMAL`.
    pub fn set_fsync_each_commit(&self, full: bool) -> Result<(), SpoolError> {
        self.conn.pragma_update(None, "synchronous", if full { "FULL" } else { "NORMAL" }).map_err(sq(&self.path))
    }

    pub fn version(&self) -> Result<i64, SpoolError> {
        schema::version(&self.conn).map_err(sq(&self.path))
    }

    /// Writes and rolls back a row: the file and its folder accept writes.
    pub fn write_probe(&self) -> Result<(), SpoolError> {
        let e = sq(&self.path);
        self.conn.execute_batch("BEGIN IMMEDIATE; CREATE TEMP TABLE IF NOT EXISTS probe (x); ROLLBACK;").map_err(&e)?;
        self.conn
            .execute_batch("BEGIN IMMEDIATE; INSERT INTO incidents (id, started, min_score, reasons) VALUES ('probe', '', 0, '[]'); ROLLBACK;")
            .map_err(&e)
    }

    /// `PRAGMA integrity_check`: `Ok(())` or the first problem found.
    pub fn integrity_check(&self) -> Result<(), SpoolError> {
        let r: String = self.conn.query_row("PRAGMA integrity_check", [], |r| r.get(0)).map_err(sq(&self.path))?;
        if r == "ok" { Ok(()) } else { Err(SpoolError::Corrupt { path: self.path.clone(), message: r }) }
    }
}
