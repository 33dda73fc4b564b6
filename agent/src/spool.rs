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
//!    fsyncs the WAL they share, and [`crate::sync`] waits for that before it
//!    sends a new batch (see 6).
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
//!    (`delivered = 1`) only after a 2xx, dead-lettered (`delivered = 2`)
//!    after a non-retriable 4xx.
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
//! # Layout
//! `scores` (one row a frame), `incidents` (`rev` counts changes, so an
//! incident changed while its batch was in flight is sent again), `clips`
//! (`uploaded`: 0 pending, 1 uploaded, 2 file lost), `batches` (`state`: 0
//! pending, 1 delivered, 2 dead-lettered, 3 dead-lettered then requeued by
//! `invigil spool requeue-dead`), `counters` (lifetime totals of
//! what was dropped).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OpenFlags, OptionalExtension, TransactionBehavior, params};

use crate::analysis::Analysis;

/// The schema version this build writes.
pub const SCHEMA_VERSION: i64 = 2;
/// Records waiting for a commit, at most (10 minutes of scores at 30 FPS).
pub const MAX_PENDING: usize = 18_000;
/// Page size of a new file.
pub const PAGE_SIZE: i64 = 1024;
/// The WAL is truncated to this size after a checkpoint.
pub const WAL_LIMIT_BYTES: i64 = 4 << 20;
/// Retention runs at most this often, inside a writer commit.
const PRUNE_EVERY: Duration = Duration::from_secs(60);
/// Scores deleted by one retention run, at most.
const PRUNE_CHUNK: i64 = 20_000;
/// Scores dropped per attempt when the file is full, at least.
const SHED_CHUNK: usize = 1_000;
/// Shed-and-retry rounds per commit when the file is full.
const SHED_ROUNDS: usize = 3;

/// The whole schema of a new file at [`SCHEMA_VERSION`]. An older file
/// upgraded by [`UPGRADES`] must end up equal to it (columns in the same
/// order, the same indexes): `an_upgraded_v1_spool_equals_a_fresh_one`.
pub const SCHEMA: &str = "
    CREATE TABLE scores (
        id INTEGER PRIMARY KEY,
        session_id TEXT,
        student_id TEXT,
        frame INTEGER NOT NULL,
        ts TEXT NOT NULL,
        focus_score INTEGER NOT NULL CHECK (focus_score BETWEEN 0 AND 100),
        num_faces INTEGER NOT NULL,
        yaw_deg REAL,
        pitch_deg REAL,
        reasons TEXT NOT NULL,
        delivered INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX scores_pending ON scores (delivered, id);
    CREATE TABLE incidents (
        id TEXT PRIMARY KEY,
        session_id TEXT,
        student_id TEXT,
        started TEXT NOT NULL,
        ended TEXT,
        min_score INTEGER NOT NULL,
        reasons TEXT NOT NULL,
        clip_path TEXT,
        delivered INTEGER NOT NULL DEFAULT 0,
        rev INTEGER NOT NULL DEFAULT 0,
        batch INTEGER,
        sent_rev INTEGER
    );
    CREATE INDEX incidents_pending ON incidents (delivered);
    CREATE TABLE clips (
        id INTEGER PRIMARY KEY,
        incident_id TEXT NOT NULL,
        path TEXT NOT NULL UNIQUE,
        bytes INTEGER NOT NULL DEFAULT 0,
        uploaded INTEGER NOT NULL DEFAULT 0,
        object_key TEXT,
        object_url TEXT,
        uploaded_at TEXT,
        removed INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX clips_pending ON clips (uploaded, id);
    CREATE TABLE batches (
        id INTEGER PRIMARY KEY,
        batch_id TEXT NOT NULL UNIQUE,
        created TEXT NOT NULL,
        state INTEGER NOT NULL DEFAULT 0,
        first_score INTEGER,
        last_score INTEGER,
        scores INTEGER NOT NULL,
        incidents INTEGER NOT NULL,
        body BLOB,
        status INTEGER,
        error TEXT,
        done TEXT
    );
    CREATE INDEX batches_state ON batches (state, id);
    CREATE TABLE counters (
        name TEXT PRIMARY KEY,
        value INTEGER NOT NULL
    ) WITHOUT ROWID;";

/// Each entry upgrades an existing file from version `i` to `i + 1`, in one
/// transaction. (A new file gets [`SCHEMA`] at once.)
pub const UPGRADES: [&str; SCHEMA_VERSION as usize] = [
    // v0 -> v1
    "CREATE TABLE scores (
        id INTEGER PRIMARY KEY,
        session_id TEXT,
        student_id TEXT,
        frame INTEGER NOT NULL,
        ts TEXT NOT NULL,
        focus_score INTEGER NOT NULL CHECK (focus_score BETWEEN 0 AND 100),
        num_faces INTEGER NOT NULL,
        yaw_deg REAL,
        pitch_deg REAL,
        reasons TEXT NOT NULL,
        delivered INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX scores_pending ON scores (delivered, id);
    CREATE TABLE incidents (
        id TEXT PRIMARY KEY,
        session_id TEXT,
        student_id TEXT,
        started TEXT NOT NULL,
        ended TEXT,
        min_score INTEGER NOT NULL,
        reasons TEXT NOT NULL,
        clip_path TEXT,
        delivered INTEGER NOT NULL DEFAULT 0
    );
    CREATE TABLE clips (
        id INTEGER PRIMARY KEY,
        incident_id TEXT NOT NULL,
        path TEXT NOT NULL UNIQUE,
        bytes INTEGER NOT NULL DEFAULT 0,
        uploaded INTEGER NOT NULL DEFAULT 0
    );",
    // v1 -> v2: sync batches, incident revisions, clip upload state, counters.
    "ALTER TABLE incidents ADD COLUMN rev INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE incidents ADD COLUMN batch INTEGER;
    ALTER TABLE incidents ADD COLUMN sent_rev INTEGER;
    CREATE INDEX incidents_pending ON incidents (delivered);
    ALTER TABLE clips ADD COLUMN object_key TEXT;
    ALTER TABLE clips ADD COLUMN object_url TEXT;
    ALTER TABLE clips ADD COLUMN uploaded_at TEXT;
    ALTER TABLE clips ADD COLUMN removed INTEGER NOT NULL DEFAULT 0;
    CREATE INDEX clips_pending ON clips (uploaded, id);
    CREATE TABLE batches (
        id INTEGER PRIMARY KEY,
        batch_id TEXT NOT NULL UNIQUE,
        created TEXT NOT NULL,
        state INTEGER NOT NULL DEFAULT 0,
        first_score INTEGER,
        last_score INTEGER,
        scores INTEGER NOT NULL,
        incidents INTEGER NOT NULL,
        body BLOB,
        status INTEGER,
        error TEXT,
        done TEXT
    );
    CREATE INDEX batches_state ON batches (state, id);
    CREATE TABLE counters (
        name TEXT PRIMARY KEY,
        value INTEGER NOT NULL
    ) WITHOUT ROWID;",
];

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
}

impl SpoolError {
    fn from_sqlite(path: &Path, e: rusqlite::Error) -> Self {
        use rusqlite::ErrorCode::*;
        let path = path.to_path_buf();
        match e.sqlite_error_code() {
            Some(DiskFull) => SpoolError::Full { path },
            Some(DatabaseCorrupt) | Some(NotADatabase) => SpoolError::Corrupt { path, message: e.to_string() },
            _ => SpoolError::Sqlite { path, source: e },
        }
    }
}

/// One score row.
#[derive(Clone, Debug, PartialEq)]
pub struct ScoreRow {
    pub session_id: Option<String>,
    pub student_id: Option<String>,
    pub frame: u64,
    pub ts: String,
    pub focus_score: u8,
    pub num_faces: usize,
    pub yaw_deg: Option<f32>,
    pub pitch_deg: Option<f32>,
    pub reasons: String,
}

impl ScoreRow {
    pub fn from_analysis(a: &Analysis, student_id: Option<String>) -> Self {
        Self {
            session_id: a.session_id.clone(),
            student_id,
            frame: a.frame,
            ts: a.ts.clone(),
            focus_score: a.focus_score,
            num_faces: a.num_faces,
            yaw_deg: a.yaw_deg,
            pitch_deg: a.pitch_deg,
            reasons: serde_json::to_string(&a.reasons).unwrap_or_else(|_| "[]".into()),
        }
    }
}

/// An incident: opened when the score goes under the threshold, updated
/// while it stays there, closed when it recovers.
#[derive(Clone, Debug, PartialEq)]
pub struct IncidentRow {
    pub id: String,
    pub session_id: Option<String>,
    pub student_id: Option<String>,
    pub started: String,
    pub ended: Option<String>,
    pub min_score: u8,
    pub reasons: String,
    pub clip_path: Option<String>,
}

/// A clip file of an incident, finished and fsynced.
#[derive(Clone, Debug, PartialEq)]
pub struct ClipRow {
    pub incident_id: String,
    pub path: String,
    pub bytes: u64,
}

/// Something to store.
#[derive(Clone, Debug)]
pub enum Record {
    Score(ScoreRow),
    Incident(IncidentRow),
    Clip(ClipRow),
}

/// An open spool file.
pub struct Spool {
    conn: Connection,
    path: PathBuf,
    limits: SpoolLimits,
}

/// Turns a SQLite error into a [`SpoolError`] naming `path`.
fn sq(path: &Path) -> impl Fn(rusqlite::Error) -> SpoolError + '_ {
    move |e| SpoolError::from_sqlite(path, e)
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
        spool.upgrade()?;
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

    /// The underlying connection, for checks and tests.
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
        self.conn.pragma_query_value(None, "user_version", |r| r.get(0)).map_err(sq(&self.path))
    }

    fn upgrade(&mut self) -> Result<(), SpoolError> {
        let found = self.version()?;
        if found > SCHEMA_VERSION {
            return Err(SpoolError::TooNew { path: self.path.clone(), found });
        }
        let path = self.path.clone();
        let e = sq(&path);
        if found == 0 {
            let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(&e)?;
            // Another process may have created it meanwhile.
            let v: i64 = tx.pragma_query_value(None, "user_version", |r| r.get(0)).map_err(&e)?;
            if v == 0 {
                tx.execute_batch(SCHEMA).map_err(&e)?;
                tx.pragma_update(None, "user_version", SCHEMA_VERSION).map_err(&e)?;
            }
            return tx.commit().map_err(&e);
        }
        for v in found..SCHEMA_VERSION {
            let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(&e)?;
            let now: i64 = tx.pragma_query_value(None, "user_version", |r| r.get(0)).map_err(&e)?;
            if now == v {
                tx.execute_batch(UPGRADES[v as usize]).map_err(&e)?;
                tx.pragma_update(None, "user_version", v + 1).map_err(&e)?;
            }
            tx.commit().map_err(&e)?;
        }
        Ok(())
    }

    /// Stores `records` in one transaction.
    pub fn commit(&mut self, records: &[Record]) -> Result<(), SpoolError> {
        self.commit_with(records, None, 0).map(|_| ())
    }

    /// Stores `records` in one transaction; with `prune_before`, also runs
    /// retention for batches done before it; adds `dropped` to the
    /// persistent count of records dropped from the queue. Returns the
    /// number of scores pruned.
    fn commit_with(
        &mut self,
        records: &[Record],
        prune_before: Option<DateTime<Utc>>,
        dropped: u64,
    ) -> Result<u64, SpoolError> {
        let path = self.path.clone();
        let e = sq(&path);
        let tx = self.conn.transaction().map_err(&e)?;
        {
            let mut score = tx
                .prepare_cached(
                    "INSERT INTO scores (session_id, student_id, frame, ts, focus_score, num_faces, yaw_deg, pitch_deg, reasons)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                )
                .map_err(&e)?;
            // A changed incident is sent again (`rev` tells a batch in
            // flight that its copy is stale).
            let mut incident = tx
                .prepare_cached(
                    "INSERT INTO incidents (id, session_id, student_id, started, ended, min_score, reasons, clip_path)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                     ON CONFLICT (id) DO UPDATE SET ended = excluded.ended, min_score = excluded.min_score,
                        reasons = excluded.reasons, clip_path = COALESCE(excluded.clip_path, clip_path), delivered = 0,
                        rev = rev + 1",
                )
                .map_err(&e)?;
            let mut clip = tx
                .prepare_cached(
                    "INSERT INTO clips (incident_id, path, bytes) VALUES (?1, ?2, ?3)
                     ON CONFLICT (path) DO UPDATE SET bytes = excluded.bytes",
                )
                .map_err(&e)?;
            // The incident names its first clip; chained ones are in `clips`.
            let mut clip_of = tx
                .prepare_cached("UPDATE incidents SET clip_path = COALESCE(clip_path, ?2) WHERE id = ?1")
                .map_err(&e)?;
            for r in records {
                match r {
                    Record::Clip(c) => {
                        clip.execute(params![c.incident_id, c.path, c.bytes as i64]).map_err(&e)?;
                        clip_of.execute(params![c.incident_id, c.path]).map_err(&e)?
                    }
                    Record::Score(s) => score
                        .execute(params![
                            s.session_id,
                            s.student_id,
                            s.frame as i64,
                            s.ts,
                            s.focus_score,
                            s.num_faces as i64,
                            s.yaw_deg,
                            s.pitch_deg,
                            s.reasons
                        ])
                        .map_err(&e)?,
                    Record::Incident(i) => incident
                        .execute(params![
                            i.id,
                            i.session_id,
                            i.student_id,
                            i.started,
                            i.ended,
                            i.min_score,
                            i.reasons,
                            i.clip_path
                        ])
                        .map_err(&e)?,
                };
            }
        }
        let pruned = match prune_before {
            Some(t) => prune(&tx, t).map_err(&e)?,
            None => 0,
        };
        if dropped > 0 {
            add_counter(&tx, "queue_dropped", dropped).map_err(&e)?;
        }
        tx.commit().map_err(&e)?;
        Ok(pruned)
    }

    /// Runs retention now: deletes (a bounded number of) scores whose batch
    /// was delivered or dead-lettered before `before`. Returns how many.
    pub fn prune(&mut self, before: DateTime<Utc>) -> Result<u64, SpoolError> {
        let e = sq(&self.path);
        let tx = self.conn.transaction().map_err(&e)?;
        let n = prune(&tx, before).map_err(&e)?;
        tx.commit().map_err(&e)?;
        Ok(n)
    }

    /// Makes room: drops up to `n` scores, delivered ones first, then
    /// dead-lettered ones, then the oldest undelivered; never incidents or
    /// clips, never the newest score. Counted in `counters`.
    pub fn shed(&mut self, n: usize) -> Result<Shed, SpoolError> {
        let e = sq(&self.path);
        let tx = self.conn.transaction().map_err(&e)?;
        let max_id: Option<i64> = tx.query_row("SELECT MAX(id) FROM scores", [], |r| r.get(0)).map_err(&e)?;
        let Some(max_id) = max_id else { return Ok(Shed::default()) };
        let mut out = Shed::default();
        let mut left = n as i64;
        for state in [1, 2, 0] {
            if left <= 0 {
                break;
            }
            let k = tx
                .execute(
                    "DELETE FROM scores WHERE id IN
                        (SELECT id FROM scores WHERE delivered = ?1 AND id < ?2 ORDER BY id LIMIT ?3)",
                    params![state, max_id, left],
                )
                .map_err(&e)? as u64;
            left -= k as i64;
            if state == 0 {
                out.undelivered += k
            } else {
                out.delivered += k
            }
            if state == 2 {
                // Bodies of dead-lettered batches go with their rows.
                tx.execute("UPDATE batches SET body = NULL WHERE state = 2 AND body IS NOT NULL", []).map_err(&e)?;
            }
        }
        add_counter(&tx, "shed_delivered", out.delivered).map_err(&e)?;
        add_counter(&tx, "shed_undelivered", out.undelivered).map_err(&e)?;
        tx.commit().map_err(&e)?;
        Ok(out)
    }

    /// Counts for `invigil spool stats` and health.
    pub fn stats(&self, threshold: u8) -> Result<SpoolStats, SpoolError> {
        let e = sq(&self.path);
        let one = |sql: &str| -> Result<i64, SpoolError> { self.conn.query_row(sql, [], |r| r.get(0)).map_err(&e) };
        let below: i64 = self
            .conn
            .query_row("SELECT COUNT(*) FROM scores WHERE focus_score < ?1", [threshold], |r| r.get(0))
            .map_err(&e)?;
        let oldest_pending = self.oldest_pending()?;
        let bytes = ["", "-wal", "-shm"]
            .iter()
            .filter_map(|s| std::fs::metadata(format!("{}{s}", self.path.display())).ok())
            .map(|m| m.len())
            .sum();
        let v2 = self.version()? >= 2;
        let v2_count = |sql: &str| if v2 { one(sql) } else { Ok(0) };
        Ok(SpoolStats {
            scores: one("SELECT COUNT(*) FROM scores")?,
            scores_pending: one("SELECT COUNT(*) FROM scores WHERE delivered = 0")?,
            scores_synced: one("SELECT COUNT(*) FROM scores WHERE delivered = 1")?,
            scores_dead: one("SELECT COUNT(*) FROM scores WHERE delivered = 2")?,
            scores_below_threshold: below,
            mean_score: self
                .conn
                .query_row("SELECT AVG(focus_score) FROM scores", [], |r| r.get::<_, Option<f64>>(0))
                .map_err(&e)?,
            incidents: one("SELECT COUNT(*) FROM incidents")?,
            incidents_pending: one("SELECT COUNT(*) FROM incidents WHERE delivered = 0")?,
            incidents_dead: one("SELECT COUNT(*) FROM incidents WHERE delivered = 2")?,
            clips: one("SELECT COUNT(*) FROM clips")?,
            clips_pending: one("SELECT COUNT(*) FROM clips WHERE uploaded = 0")?,
            clips_uploaded: one("SELECT COUNT(*) FROM clips WHERE uploaded = 1")?,
            batches_pending: v2_count("SELECT COUNT(*) FROM batches WHERE state = 0")?,
            batches_dead: v2_count("SELECT COUNT(*) FROM batches WHERE state = 2")?,
            shed_delivered: v2_count("SELECT COALESCE(SUM(value), 0) FROM counters WHERE name = 'shed_delivered'")?,
            shed_undelivered: v2_count("SELECT COALESCE(SUM(value), 0) FROM counters WHERE name = 'shed_undelivered'")?,
            queue_dropped: v2_count("SELECT COALESCE(SUM(value), 0) FROM counters WHERE name = 'queue_dropped'")?,
            oldest_pending,
            bytes,
        })
    }

    /// `ts` of the oldest undelivered score, if any.
    pub fn oldest_pending(&self) -> Result<Option<String>, SpoolError> {
        self.conn
            .query_row("SELECT ts FROM scores WHERE delivered = 0 ORDER BY id LIMIT 1", [], |r| r.get(0))
            .optional()
            .map_err(sq(&self.path))
    }

    /// Scores not yet delivered upstream (an index-only count).
    pub fn pending_scores(&self) -> Result<u64, SpoolError> {
        self.conn
            .query_row("SELECT COUNT(*) FROM scores WHERE delivered = 0", [], |r| r.get::<_, i64>(0))
            .map(|n| n as u64)
            .map_err(sq(&self.path))
    }

    /// Writes and rolls back a row: the file and its folder accept writes.
    pub fn write_probe(&self) -> Result<(), SpoolError> {
        let e = |err| SpoolError::from_sqlite(&self.path, err);
        self.conn.execute_batch("BEGIN IMMEDIATE; CREATE TEMP TABLE IF NOT EXISTS probe (x); ROLLBACK;").map_err(e)?;
        self.conn
            .execute_batch("BEGIN IMMEDIATE; INSERT INTO incidents (id, started, min_score, reasons) VALUES ('probe', '', 0, '[]'); ROLLBACK;")
            .map_err(e)
    }

    /// `PRAGMA integrity_check`: `Ok(())` or the first problem found.
    pub fn integrity_check(&self) -> Result<(), SpoolError> {
        let r: String = self
            .conn
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .map_err(|e| SpoolError::from_sqlite(&self.path, e))?;
        if r == "ok" { Ok(()) } else { Err(SpoolError::Corrupt { path: self.path.clone(), message: r }) }
    }

    // ---- Batches (used by `crate::sync`) ----

    /// The oldest batch not yet delivered nor dead-lettered, if any: it is
    /// re-sent as it was.
    pub fn pending_batch(&self) -> Result<Option<Batch>, SpoolError> {
        self.conn
            .query_row(
                "SELECT id, batch_id, created, body, scores, incidents, first_score, last_score
                 FROM batches WHERE state = 0 ORDER BY id LIMIT 1",
                [],
                |r| {
                    Ok(Batch {
                        id: r.get(0)?,
                        batch_id: r.get(1)?,
                        created: r.get(2)?,
                        body: r.get::<_, Option<Vec<u8>>>(3)?.unwrap_or_default(),
                        scores: r.get::<_, i64>(4)? as usize,
                        incidents: r.get::<_, i64>(5)? as usize,
                        first_score: r.get(6)?,
                        last_score: r.get(7)?,
                    })
                },
            )
            .optional()
            .map_err(sq(&self.path))
    }

    /// Forms the next batch and stores it (with its body) before it is sent:
    /// the undelivered scores after the last batch, in order, at most
    /// `max_scores`, all of one (session, student); the undelivered
    /// incidents of that pair, at most `max_incidents`, with their uploaded
    /// clips. `batch_id` makes the id from the row id; `body` makes the
    /// bytes to send. `None` when there is nothing to send.
    pub fn form_batch(
        &mut self,
        max_scores: usize,
        max_incidents: usize,
        now: &str,
        batch_id: impl FnOnce(i64) -> String,
        body: impl FnOnce(&BatchRows, &str) -> Vec<u8>,
    ) -> Result<Option<Batch>, SpoolError> {
        let path = self.path.clone();
        let e = sq(&path);
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(&e)?;
        let after: i64 = tx
            .query_row(
                "SELECT last_score FROM batches WHERE last_score IS NOT NULL ORDER BY id DESC LIMIT 1",
                [],
                |r| r.get(0),
            )
            .optional()
            .map_err(&e)?
            .unwrap_or(0);
        let mut rows = BatchRows::default();
        {
            let mut stmt = tx
                .prepare_cached(
                    "SELECT id, session_id, student_id, frame, ts, focus_score, num_faces, yaw_deg, pitch_deg, reasons
                     FROM scores WHERE id > ?1 AND delivered = 0 ORDER BY id LIMIT ?2",
                )
                .map_err(&e)?;
            let mut q = stmt.query(params![after, max_scores as i64]).map_err(&e)?;
            let mut pair: Option<(Option<String>, Option<String>)> = None;
            while let Some(r) = q.next().map_err(&e)? {
                let id: i64 = r.get(0).map_err(&e)?;
                let s = ScoreRow {
                    session_id: r.get(1).map_err(&e)?,
                    student_id: r.get(2).map_err(&e)?,
                    frame: r.get::<_, i64>(3).map_err(&e)? as u64,
                    ts: r.get(4).map_err(&e)?,
                    focus_score: r.get(5).map_err(&e)?,
                    num_faces: r.get::<_, i64>(6).map_err(&e)? as usize,
                    yaw_deg: r.get::<_, Option<f64>>(7).map_err(&e)?.map(|v| v as f32),
                    pitch_deg: r.get::<_, Option<f64>>(8).map_err(&e)?.map(|v| v as f32),
                    reasons: r.get(9).map_err(&e)?,
                };
                let p = (s.session_id.clone(), s.student_id.clone());
                match &pair {
                    None => pair = Some(p),
                    Some(first) if *first != p => break,
                    Some(_) => {}
                }
                rows.scores.push((id, s));
            }
            if let Some((se, st)) = pair {
                rows.session_id = se;
                rows.student_id = st;
            } else {
                // No scores: the pair of the oldest undelivered incident.
                let first: Option<(Option<String>, Option<String>)> = tx
                    .query_row(
                        "SELECT session_id, student_id FROM incidents WHERE delivered = 0 ORDER BY started, id LIMIT 1",
                        [],
                        |r| Ok((r.get(0)?, r.get(1)?)),
                    )
                    .optional()
                    .map_err(&e)?;
                match first {
                    Some((se, st)) => {
                        rows.session_id = se;
                        rows.student_id = st;
                    }
                    None => return Ok(None),
                }
            }
            let mut stmt = tx
                .prepare_cached(
                    "SELECT id, session_id, student_id, started, ended, min_score, reasons, clip_path
                     FROM incidents WHERE delivered = 0 AND session_id IS ?1 AND student_id IS ?2
                     ORDER BY started, id LIMIT ?3",
                )
                .map_err(&e)?;
            let incidents: Vec<IncidentRow> = stmt
                .query_map(params![rows.session_id, rows.student_id, max_incidents as i64], |r| {
                    Ok(IncidentRow {
                        id: r.get(0)?,
                        session_id: r.get(1)?,
                        student_id: r.get(2)?,
                        started: r.get(3)?,
                        ended: r.get(4)?,
                        min_score: r.get(5)?,
                        reasons: r.get(6)?,
                        clip_path: r.get(7)?,
                    })
                })
                .map_err(&e)?
                .collect::<Result<_, _>>()
                .map_err(&e)?;
            let mut clips = tx
                .prepare_cached(
                    "SELECT object_key, object_url, bytes FROM clips
                     WHERE incident_id = ?1 AND uploaded = 1 ORDER BY id",
                )
                .map_err(&e)?;
            for i in incidents {
                let c: Vec<UploadedClip> = clips
                    .query_map([&i.id], |r| {
                        Ok(UploadedClip {
                            key: r.get::<_, Option<String>>(0)?.unwrap_or_default(),
                            url: r.get::<_, Option<String>>(1)?.unwrap_or_default(),
                            bytes: r.get::<_, i64>(2)? as u64,
                        })
                    })
                    .map_err(&e)?
                    .collect::<Result<_, _>>()
                    .map_err(&e)?;
                rows.incidents.push((i, c));
            }
        }
        if rows.scores.is_empty() && rows.incidents.is_empty() {
            return Ok(None);
        }
        let first_score = rows.scores.first().map(|s| s.0);
        let last_score = rows.scores.last().map(|s| s.0);
        tx.execute(
            "INSERT INTO batches (batch_id, created, first_score, last_score, scores, incidents)
             VALUES ('', ?1, ?2, ?3, ?4, ?5)",
            params![now, first_score, last_score, rows.scores.len() as i64, rows.incidents.len() as i64],
        )
        .map_err(&e)?;
        let id = tx.last_insert_rowid();
        let batch_id = batch_id(id);
        let body = body(&rows, &batch_id);
        tx.execute("UPDATE batches SET batch_id = ?2, body = ?3 WHERE id = ?1", params![id, batch_id, body])
            .map_err(&e)?;
        for (i, _) in &rows.incidents {
            tx.execute("UPDATE incidents SET batch = ?2, sent_rev = rev WHERE id = ?1", params![i.id, id])
                .map_err(&e)?;
        }
        tx.commit().map_err(&e)?;
        Ok(Some(Batch {
            id,
            batch_id,
            created: now.to_string(),
            body,
            scores: rows.scores.len(),
            incidents: rows.incidents.len(),
            first_score,
            last_score,
        }))
    }

    /// Puts dead-lettered scores and incidents back in line, once whatever
    /// refused them (a wrong token, an endpoint that changed) is fixed. The
    /// scores are copied to new rows (after every other score, since the
    /// next batch starts after the last one formed) and the old rows
    /// deleted; incidents become pending again; their batches are marked
    /// requeued (`state = 3`). Safe while the agent runs (one
    /// transaction). Returns (scores, incidents).
    pub fn requeue_dead(&mut self) -> Result<(u64, u64), SpoolError> {
        let path = self.path.clone();
        let e = sq(&path);
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(&e)?;
        let last: i64 = tx.query_row("SELECT COALESCE(MAX(id), 0) FROM scores", [], |r| r.get(0)).map_err(&e)?;
        let scores = tx
            .execute(
                "INSERT INTO scores (session_id, student_id, frame, ts, focus_score, num_faces, yaw_deg, pitch_deg, reasons)
                 SELECT session_id, student_id, frame, ts, focus_score, num_faces, yaw_deg, pitch_deg, reasons
                 FROM scores WHERE delivered = 2 AND id <= ?1 ORDER BY id",
                [last],
            )
            .map_err(&e)?;
        tx.execute("DELETE FROM scores WHERE delivered = 2 AND id <= ?1", [last]).map_err(&e)?;
        let incidents = tx.execute("UPDATE incidents SET delivered = 0 WHERE delivered = 2", []).map_err(&e)?;
        tx.execute("UPDATE batches SET state = 3, body = NULL WHERE state = 2", []).map_err(&e)?;
        tx.commit().map_err(&e)?;
        Ok((scores as u64, incidents as u64))
    }

    /// Marks a batch delivered (after a 2xx) or dead-lettered, with its
    /// scores and the incidents whose copy in it is current. Idempotent.
    pub fn finish_batch(&mut self, batch: &Batch, outcome: BatchOutcome, now: &str) -> Result<(), SpoolError> {
        let path = self.path.clone();
        let e = sq(&path);
        let (state, status, error) = match &outcome {
            BatchOutcome::Delivered => (1, None, None),
            BatchOutcome::DeadLettered { status, error } => (2, Some(*status), Some(error.as_str())),
        };
        let tx = self.conn.transaction().map_err(&e)?;
        let changed = tx
            .execute(
                "UPDATE batches SET state = ?2, status = ?3, error = ?4, done = ?5,
                    body = CASE WHEN ?2 = 1 THEN NULL ELSE body END
                 WHERE id = ?1 AND state = 0",
                params![batch.id, state, status, error, now],
            )
            .map_err(&e)?;
        if changed > 0 {
            if let (Some(a), Some(b)) = (batch.first_score, batch.last_score) {
                tx.execute(
                    "UPDATE scores SET delivered = ?3 WHERE id BETWEEN ?1 AND ?2 AND delivered = 0",
                    params![a, b, state],
                )
                .map_err(&e)?;
            }
            tx.execute(
                "UPDATE incidents SET delivered = ?2 WHERE batch = ?1 AND rev = sent_rev AND delivered = 0",
                params![batch.id, state],
            )
            .map_err(&e)?;
        }
        tx.commit().map_err(&e)
    }

    /// Forces what this connection committed to disk: one small write with
    /// `synchronous=FULL`. For a batch formed while no writer commits.
    pub fn make_durable(&mut self, batch: &Batch) -> Result<(), SpoolError> {
        let e = sq(&self.path);
        self.set_fsync_each_commit(true)?;
        let r = self.conn.execute("UPDATE batches SET created = created WHERE id = ?1", [batch.id]).map_err(&e);
        self.set_fsync_each_commit(false)?;
        r.map(|_| ())
    }

    // ---- Clips (used by `crate::upload`) ----

    /// The oldest clip not yet uploaded, with its incident's session.
    pub fn next_clip(&self) -> Result<Option<PendingClip>, SpoolError> {
        self.conn
            .query_row(
                "SELECT c.id, c.incident_id, c.path, c.bytes, i.session_id, i.student_id
                 FROM clips c LEFT JOIN incidents i ON i.id = c.incident_id
                 WHERE c.uploaded = 0 ORDER BY c.id LIMIT 1",
                [],
                |r| {
                    Ok(PendingClip {
                        id: r.get(0)?,
                        incident_id: r.get(1)?,
                        path: PathBuf::from(r.get::<_, String>(2)?),
                        bytes: r.get::<_, i64>(3)? as u64,
                        session_id: r.get(4)?,
                        student_id: r.get(5)?,
                    })
                },
            )
            .optional()
            .map_err(sq(&self.path))
    }

    /// Records a finished upload; the incident is sent again with the clip.
    pub fn clip_uploaded(&mut self, clip: &PendingClip, key: &str, url: &str, now: &str) -> Result<(), SpoolError> {
        let e = sq(&self.path);
        let tx = self.conn.transaction().map_err(&e)?;
        tx.execute(
            "UPDATE clips SET uploaded = 1, object_key = ?2, object_url = ?3, uploaded_at = ?4 WHERE id = ?1",
            params![clip.id, key, url, now],
        )
        .map_err(&e)?;
        tx.execute("UPDATE incidents SET delivered = 0, rev = rev + 1 WHERE id = ?1", [&clip.incident_id])
            .map_err(&e)?;
        tx.commit().map_err(&e)
    }

    /// Records that a clip's file is gone before it could be uploaded.
    pub fn clip_lost(&mut self, clip: &PendingClip) -> Result<(), SpoolError> {
        self.conn
            .execute("UPDATE clips SET uploaded = 2, removed = 1 WHERE id = ?1", [clip.id])
            .map(|_| ())
            .map_err(sq(&self.path))
    }

    /// Clip files not yet deleted, oldest first.
    pub fn clips_on_disk(&self) -> Result<Vec<ClipOnDisk>, SpoolError> {
        let e = sq(&self.path);
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT id, path, bytes, CASE WHEN uploaded = 1 THEN COALESCE(uploaded_at, '') END
                 FROM clips WHERE removed = 0 ORDER BY id",
            )
            .map_err(&e)?;
        stmt.query_map([], |r| {
            Ok(ClipOnDisk {
                id: r.get(0)?,
                path: PathBuf::from(r.get::<_, String>(1)?),
                bytes: r.get::<_, i64>(2)? as u64,
                uploaded_at: r.get(3)?,
            })
        })
        .map_err(&e)?
        .collect::<Result<_, _>>()
        .map_err(&e)
    }

    /// Records that an uploaded clip's local file was deleted (quota).
    pub fn clip_removed(&mut self, id: i64) -> Result<(), SpoolError> {
        self.conn.execute("UPDATE clips SET removed = 1 WHERE id = ?1", [id]).map(|_| ()).map_err(sq(&self.path))
    }
}

/// Retention: scores of batches done before `before`, a bounded number.
fn prune(tx: &rusqlite::Transaction, before: DateTime<Utc>) -> rusqlite::Result<u64> {
    let cutoff = crate::analysis::ts_of(before);
    let cut: Option<i64> =
        tx.query_row("SELECT MAX(last_score) FROM batches WHERE state != 0 AND done < ?1", [&cutoff], |r| r.get(0))?;
    let max_id: Option<i64> = tx.query_row("SELECT MAX(id) FROM scores", [], |r| r.get(0))?;
    let (Some(cut), Some(max_id)) = (cut, max_id) else { return Ok(0) };
    let n = tx.execute(
        "DELETE FROM scores WHERE id IN
            (SELECT id FROM scores WHERE id <= ?1 AND id < ?2 AND delivered != 0 ORDER BY id LIMIT ?3)",
        params![cut, max_id, PRUNE_CHUNK],
    )?;
    // Keep the newest batch: the next one starts after its last score.
    tx.execute("DELETE FROM batches WHERE state != 0 AND done < ?1 AND id < (SELECT MAX(id) FROM batches)", [&cutoff])?;
    Ok(n as u64)
}

fn add_counter(tx: &rusqlite::Transaction, name: &str, n: u64) -> rusqlite::Result<()> {
    if n > 0 {
        tx.execute(
            "INSERT INTO counters (name, value) VALUES (?1, ?2)
             ON CONFLICT (name) DO UPDATE SET value = value + excluded.value",
            params![name, n as i64],
        )?;
    }
    Ok(())
}

/// What [`Spool::shed`] dropped.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Shed {
    /// Delivered or dead-lettered scores.
    pub delivered: u64,
    /// Undelivered scores.
    pub undelivered: u64,
}

/// A batch as stored: sent and re-sent with these exact bytes.
#[derive(Clone, Debug, PartialEq)]
pub struct Batch {
    /// Row id.
    pub id: i64,
    /// The `batch_id` of the body and the `Idempotency-Key`.
    pub batch_id: String,
    pub created: String,
    /// The body as made by the sync (gzip'd JSON).
    pub body: Vec<u8>,
    pub scores: usize,
    pub incidents: usize,
    /// Range of score ids it covers (inclusive).
    pub first_score: Option<i64>,
    pub last_score: Option<i64>,
}

/// How a batch ended.
#[derive(Clone, Debug, PartialEq)]
pub enum BatchOutcome {
    Delivered,
    DeadLettered { status: u16, error: String },
}

/// The rows chosen for a new batch, handed to the body builder.
#[derive(Clone, Debug, Default)]
pub struct BatchRows {
    pub session_id: Option<String>,
    pub student_id: Option<String>,
    /// (row id, score), in order.
    pub scores: Vec<(i64, ScoreRow)>,
    /// Incidents with their uploaded clips.
    pub incidents: Vec<(IncidentRow, Vec<UploadedClip>)>,
}

/// A clip whose file is (meant to be) on the box.
#[derive(Clone, Debug, PartialEq)]
pub struct ClipOnDisk {
    pub id: i64,
    pub path: PathBuf,
    pub bytes: u64,
    /// When it was uploaded (RFC 3339); None while pending.
    pub uploaded_at: Option<String>,
}

/// A clip already in object storage.
#[derive(Clone, Debug, PartialEq)]
pub struct UploadedClip {
    pub key: String,
    pub url: String,
    pub bytes: u64,
}

/// A clip waiting for upload.
#[derive(Clone, Debug, PartialEq)]
pub struct PendingClip {
    pub id: i64,
    pub incident_id: String,
    pub path: PathBuf,
    pub bytes: u64,
    pub session_id: Option<String>,
    pub student_id: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct SpoolStats {
    pub scores: i64,
    pub scores_pending: i64,
    pub scores_synced: i64,
    pub scores_dead: i64,
    pub scores_below_threshold: i64,
    pub mean_score: Option<f64>,
    pub incidents: i64,
    pub incidents_pending: i64,
    pub incidents_dead: i64,
    pub clips: i64,
    pub clips_pending: i64,
    pub clips_uploaded: i64,
    pub batches_pending: i64,
    pub batches_dead: i64,
    /// Lifetime totals of scores dropped at the size cap.
    pub shed_delivered: i64,
    pub shed_undelivered: i64,
    /// Lifetime total of records dropped from a full in-memory queue.
    pub queue_dropped: i64,
    pub oldest_pending: Option<String>,
    pub bytes: u64,
}

/// Counters of the writer thread.
#[derive(Debug, Default)]
pub struct WriterStats {
    pub committed: AtomicU64,
    pub commits: AtomicU64,
    pub failed_commits: AtomicU64,
    /// Records dropped from the in-memory queue (its bound, [`MAX_PENDING`]).
    pub dropped: AtomicU64,
    /// Set while the last commit failed.
    pub failing: AtomicBool,
    /// Set while the file is at its cap or the disk is full.
    pub full: AtomicBool,
    /// Scores dropped from the file at its cap: delivered or dead-lettered.
    pub shed_delivered: AtomicU64,
    /// Scores dropped from the file at its cap: undelivered.
    pub shed_undelivered: AtomicU64,
    /// Scores deleted by retention.
    pub pruned: AtomicU64,
    /// Commit attempts begun (a sequence number).
    pub began: AtomicU64,
    /// The `began` number of the last successful commit: everything any
    /// connection committed before that attempt began is on disk.
    pub durable: AtomicU64,
    /// Set when the writer thread has stopped.
    pub closed: AtomicBool,
}

impl WriterStats {
    /// Waits until a commit that began after now has succeeded, at most
    /// `limit`. False on timeout or if the writer has stopped.
    pub fn wait_durable(&self, limit: Duration) -> bool {
        let mark = self.began.load(Ordering::SeqCst);
        let end = Instant::now() + limit;
        while Instant::now() < end {
            if self.durable.load(Ordering::SeqCst) > mark {
                return true;
            }
            if self.closed.load(Ordering::SeqCst) {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        false
    }
}

struct Queue {
    records: Vec<Record>,
    closed: bool,
    /// A new size cap to apply before the next commit.
    max_bytes: Option<u64>,
}

/// Hands records to a writer thread that commits them every interval.
/// Cloneable; [`SpoolWriter::push`] never blocks on the disk.
#[derive(Clone)]
pub struct SpoolWriter {
    queue: Arc<(Mutex<Queue>, Condvar)>,
    pub stats: Arc<WriterStats>,
}

impl SpoolWriter {
    /// Starts the writer thread on an open spool. Its connection fsyncs at
    /// each commit (`synchronous=FULL`); the spool's limits apply.
    pub fn start(mut spool: Spool, interval: Duration) -> (SpoolWriter, std::thread::JoinHandle<()>) {
        if let Err(e) = spool.set_fsync_each_commit(true) {
            tracing::error!(error = %e, "spool: cannot set synchronous=FULL; commits may not survive a power cut");
        }
        let queue =
            Arc::new((Mutex::new(Queue { records: Vec::new(), closed: false, max_bytes: None }), Condvar::new()));
        let stats = Arc::new(WriterStats::default());
        let writer = SpoolWriter { queue: queue.clone(), stats: stats.clone() };
        let handle = std::thread::Builder::new()
            .name("spool-writer".into())
            .spawn(move || {
                let mut last_prune: Option<Instant> = None;
                let mut dropped_saved = 0;
                loop {
                    let (batch, closed, max_bytes) = {
                        let (lock, cv) = &*queue;
                        let mut q = lock.lock().unwrap();
                        if !q.closed {
                            q = cv.wait_timeout(q, interval).unwrap().0;
                        }
                        (std::mem::take(&mut q.records), q.closed, q.max_bytes.take())
                    };
                    if let Some(b) = max_bytes {
                        let limits = SpoolLimits { max_bytes: b, ..spool.limits().clone() };
                        if let Err(e) = spool.set_limits(limits) {
                            tracing::error!(error = %e, "spool: cannot change its size cap");
                        }
                    }
                    if !batch.is_empty() {
                        let prune_due = last_prune.is_none_or(|t| t.elapsed() >= PRUNE_EVERY);
                        let dropped = stats.dropped.load(Ordering::Relaxed);
                        match commit_or_shed(&mut spool, &batch, &stats, prune_due, dropped - dropped_saved) {
                            Ok(pruned) => {
                                dropped_saved = dropped;
                                if prune_due {
                                    last_prune = Some(Instant::now());
                                    stats.pruned.fetch_add(pruned, Ordering::Relaxed);
                                }
                                stats.committed.fetch_add(batch.len() as u64, Ordering::Relaxed);
                                stats.commits.fetch_add(1, Ordering::Relaxed);
                                if stats.failing.swap(false, Ordering::Relaxed) {
                                    tracing::info!("spool commits work again");
                                }
                            }
                            Err(e) => {
                                stats.failed_commits.fetch_add(1, Ordering::Relaxed);
                                if !stats.failing.swap(true, Ordering::Relaxed) {
                                    tracing::error!(error = %e, "spool commit failed; keeping records for the next attempt");
                                }
                                if !closed {
                                    // Put them back in front, in order, within the bound.
                                    let (lock, _) = &*queue;
                                    let mut q = lock.lock().unwrap();
                                    let newer = std::mem::replace(&mut q.records, batch);
                                    q.records.extend(newer);
                                    shed(&mut q.records, &stats);
                                }
                            }
                        }
                    }
                    if closed {
                        break;
                    }
                }
                stats.closed.store(true, Ordering::SeqCst);
            })
            .expect("spawn spool writer");
        (writer, handle)
    }

    /// Queues a record for the next commit.
    pub fn push(&self, r: Record) {
        let (lock, _) = &*self.queue;
        let mut q = lock.lock().unwrap();
        q.records.push(r);
        shed(&mut q.records, &self.stats);
    }

    /// Changes the size cap of the file before the next commit.
    pub fn set_max_bytes(&self, max_bytes: u64) {
        let (lock, _) = &*self.queue;
        lock.lock().unwrap().max_bytes = Some(max_bytes);
    }

    /// Commits what is queued and stops the writer thread (join its handle).
    pub fn close(&self) {
        let (lock, cv) = &*self.queue;
        lock.lock().unwrap().closed = true;
        cv.notify_all();
    }
}

/// One commit; when the file is full, drops per the policy (module docs, 7)
/// and tries again, a bounded number of times.
fn commit_or_shed(
    spool: &mut Spool,
    batch: &[Record],
    stats: &WriterStats,
    prune_due: bool,
    dropped: u64,
) -> Result<u64, SpoolError> {
    let keep = spool.limits().keep_delivered;
    let mut rounds = 0;
    loop {
        let prune_before = prune_due.then(|| Utc::now() - chrono::Duration::from_std(keep).unwrap_or_default());
        stats.began.fetch_add(1, Ordering::SeqCst);
        let seq = stats.began.load(Ordering::SeqCst);
        match spool.commit_with(batch, prune_before, dropped) {
            Ok(pruned) => {
                stats.durable.fetch_max(seq, Ordering::SeqCst);
                if rounds == 0 && stats.full.swap(false, Ordering::Relaxed) {
                    tracing::info!(spool = %spool.path().display(), "spool has room again");
                }
                return Ok(pruned);
            }
            Err(e @ SpoolError::Full { .. }) => {
                if rounds >= SHED_ROUNDS {
                    return Err(e);
                }
                rounds += 1;
                let shed = match spool.shed(SHED_CHUNK.max(batch.len() * 2)) {
                    Ok(s) => s,
                    // Not even a delete fits (the disk itself is full): the
                    // records wait in memory.
                    Err(_) => return Err(e),
                };
                stats.shed_delivered.fetch_add(shed.delivered, Ordering::Relaxed);
                stats.shed_undelivered.fetch_add(shed.undelivered, Ordering::Relaxed);
                if !stats.full.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        spool = %spool.path().display(), max_bytes = spool.limits().max_bytes,
                        delivered = shed.delivered, undelivered = shed.undelivered,
                        "spool full: dropping the oldest delivered scores, then the oldest undelivered ones (never incidents or clips)"
                    );
                }
                if shed.delivered + shed.undelivered == 0 {
                    return Err(e);
                }
            }
            Err(e) => return Err(e),
        }
    }
}

/// Drops the oldest scores (never incidents) beyond [`MAX_PENDING`].
fn shed(records: &mut Vec<Record>, stats: &WriterStats) {
    let mut excess = records.len().saturating_sub(MAX_PENDING);
    if excess == 0 {
        return;
    }
    records.retain(|r| {
        if excess > 0 && matches!(r, Record::Score(_)) {
            excess -= 1;
            stats.dropped.fetch_add(1, Ordering::Relaxed);
            false
        } else {
            true
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(frame: u64, score: u8) -> Record {
        Record::Score(ScoreRow {
            session_id: Some("s1".into()),
            student_id: Some("x".into()),
            frame,
            ts: "2026-11-24T09:00:00.000Z".into(),
            focus_score: score,
            num_faces: 1,
            yaw_deg: Some(1.0),
            pitch_deg: None,
            reasons: "[]".into(),
        })
    }

    #[test]
    fn rows_committed_by_the_writer_are_in_the_file_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/spool.sqlite");
        let (w, h) = SpoolWriter::start(Spool::open(&path).unwrap(), Duration::from_millis(50));
        for f in 0..100 {
            w.push(row(f, (f % 101) as u8));
        }
        w.close();
        h.join().unwrap();
        let s = Spool::open(&path).unwrap();
        let st = s.stats(50).unwrap();
        assert_eq!(st.scores, 100);
        assert_eq!(st.scores_pending, 100);
        assert_eq!(st.scores_below_threshold, 50);
        let frames: Vec<i64> = s
            .conn
            .prepare("SELECT frame FROM scores ORDER BY id")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .map(|r| r.unwrap())
            .collect();
        assert_eq!(frames, (0..100).collect::<Vec<_>>());
        s.integrity_check().unwrap();
    }

    #[test]
    fn a_newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("spool.sqlite");
        drop(Spool::open(&path).unwrap());
        Connection::open(&path).unwrap().pragma_update(None, "user_version", SCHEMA_VERSION + 1).unwrap();
        let e = Spool::open(&path).err().unwrap().to_string();
        assert!(e.contains("newer") && e.contains("spool.sqlite"), "{e}");
    }

    #[test]
    fn reopening_keeps_rows_and_version() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("spool.sqlite");
        Spool::open(&path).unwrap().commit(&[row(1, 90), row(2, 10)]).unwrap();
        let s = Spool::open(&path).unwrap();
        assert_eq!(s.version().unwrap(), SCHEMA_VERSION);
        assert_eq!(s.stats(50).unwrap().scores, 2);
    }

    #[test]
    fn a_file_that_is_not_sqlite_is_reported_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("spool.sqlite");
        std::fs::write(&path, vec![0x42u8; 8192]).unwrap();
        let e = Spool::open(&path).err().unwrap();
        assert!(matches!(e, SpoolError::Corrupt { .. }), "{e}");
    }

    /// The schema of a file as SQLite describes it: every table's columns
    /// (name, type, not null, default, primary key) and every index's
    /// columns, by name. Whitespace in `sqlite_master.sql` is ignored.
    fn describe(conn: &Connection) -> Vec<String> {
        let mut out = vec![];
        let objects: Vec<(String, String)> = conn
            .prepare("SELECT type, name FROM sqlite_master WHERE name NOT LIKE 'sqlite_%' ORDER BY type, name")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .map(|r| r.unwrap())
            .collect();
        for (kind, name) in objects {
            out.push(format!("{kind} {name}"));
            let q = if kind == "table" {
                format!(
                    "SELECT name || ' ' || type || ' ' || \"notnull\" || ' ' || IFNULL(dflt_value, '-') || ' ' || pk FROM pragma_table_info('{name}')"
                )
            } else {
                format!("SELECT IFNULL(name, '-') || ' ' || \"desc\" || ' ' || key FROM pragma_index_xinfo('{name}')")
            };
            let cols: Vec<String> =
                conn.prepare(&q).unwrap().query_map([], |r| r.get(0)).unwrap().map(|r| r.unwrap()).collect();
            out.extend(cols.into_iter().map(|c| format!("  {c}")));
        }
        out
    }

    #[test]
    fn an_upgraded_v1_spool_equals_a_fresh_one() {
        let dir = tempfile::tempdir().unwrap();
        // A v1 file as the v1 build wrote it, with rows.
        let old = dir.path().join("v1.sqlite");
        {
            let c = Connection::open(&old).unwrap();
            c.pragma_update(None, "journal_mode", "WAL").unwrap();
            c.execute_batch(UPGRADES[0]).unwrap();
            c.pragma_update(None, "user_version", 1).unwrap();
            c.execute_batch(
                "INSERT INTO scores (frame, ts, focus_score, num_faces, reasons) VALUES (1, 't', 90, 1, '[]');
                 INSERT INTO incidents (id, started, min_score, reasons) VALUES ('i1', 't', 10, '[]');
                 INSERT INTO clips (incident_id, path) VALUES ('i1', '/c/i1.mp4');",
            )
            .unwrap();
        }
        let upgraded = Spool::open(&old).unwrap();
        assert_eq!(upgraded.version().unwrap(), SCHEMA_VERSION);
        let fresh = Spool::open(&dir.path().join("fresh.sqlite")).unwrap();
        assert_eq!(describe(upgraded.connection()), describe(fresh.connection()));
        let st = upgraded.stats(50).unwrap();
        assert_eq!((st.scores, st.incidents, st.clips, st.clips_pending), (1, 1, 1, 1));
        upgraded.integrity_check().unwrap();
    }

    #[test]
    fn every_upgrade_step_is_listed() {
        assert_eq!(UPGRADES.len() as i64, SCHEMA_VERSION);
    }

    #[test]
    fn a_changed_incident_is_sent_again_even_if_its_batch_was_in_flight() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::open(&dir.path().join("spool.sqlite")).unwrap();
        let inc = |ended: Option<&str>| {
            Record::Incident(IncidentRow {
                id: "i1".into(),
                session_id: Some("s1".into()),
                student_id: Some("x".into()),
                started: "2026-11-24T09:00:00.000Z".into(),
                ended: ended.map(str::to_string),
                min_score: 10,
                reasons: "[]".into(),
                clip_path: None,
            })
        };
        s.commit(&[row(1, 90), inc(None)]).unwrap();
        let b = s.form_batch(100, 10, "now", |id| format!("b{id}"), |_, _| b"{}".to_vec()).unwrap().unwrap();
        assert_eq!((b.scores, b.incidents), (1, 1));
        // Closed while the batch is in flight.
        s.commit(&[inc(Some("2026-11-24T09:00:05.000Z"))]).unwrap();
        s.finish_batch(&b, BatchOutcome::Delivered, "now").unwrap();
        let st = s.stats(50).unwrap();
        assert_eq!((st.scores_synced, st.incidents_pending), (1, 1));
        let b2 = s.form_batch(100, 10, "now", |id| format!("b{id}"), |_, _| b"{}".to_vec()).unwrap().unwrap();
        assert_eq!((b2.scores, b2.incidents), (0, 1));
        s.finish_batch(&b2, BatchOutcome::Delivered, "now").unwrap();
        assert_eq!(s.stats(50).unwrap().incidents_pending, 0);
        assert!(s.form_batch(100, 10, "now", |id| format!("b{id}"), |_, _| vec![]).unwrap().is_none());
    }

    #[test]
    fn retention_deletes_only_old_delivered_scores_and_never_the_newest() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::open(&dir.path().join("spool.sqlite")).unwrap();
        s.commit(&(0..10).map(|f| row(f, 90)).collect::<Vec<_>>()).unwrap();
        let b = s.form_batch(5, 10, "t0", |id| format!("b{id}"), |_, _| vec![]).unwrap().unwrap();
        s.finish_batch(&b, BatchOutcome::Delivered, "2026-11-24T09:00:00.000Z").unwrap();
        let t = |s: &str| s.parse::<DateTime<Utc>>().unwrap();
        assert_eq!(s.prune(t("2026-11-24T08:00:00Z")).unwrap(), 0, "not old enough");
        assert_eq!(s.prune(t("2026-11-25T09:00:00Z")).unwrap(), 5);
        let st = s.stats(50).unwrap();
        assert_eq!((st.scores, st.scores_pending), (5, 5));
        // The next batch still starts after the pruned ones.
        let b2 = s.form_batch(100, 10, "t1", |id| format!("b{id}"), |_, _| vec![]).unwrap().unwrap();
        assert_eq!((b2.first_score, b2.last_score), (Some(6), Some(10)));
    }

    #[test]
    fn a_batch_holds_one_session_only() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::open(&dir.path().join("spool.sqlite")).unwrap();
        let mut other = row(3, 50);
        if let Record::Score(r) = &mut other {
            r.session_id = Some("s2".into());
        }
        s.commit(&[row(1, 90), row(2, 90), other, row(4, 90)]).unwrap();
        let mut sizes = vec![];
        while let Some(b) = s
            .form_batch(100, 10, "t", |id| format!("b{id}"), |r, _| r.session_id.clone().unwrap().into_bytes())
            .unwrap()
        {
            sizes.push((b.scores, String::from_utf8(b.body.clone()).unwrap()));
            s.finish_batch(&b, BatchOutcome::Delivered, "t").unwrap();
        }
        assert_eq!(sizes, vec![(2, "s1".into()), (1, "s2".into()), (1, "s1".into())]);
    }

    #[test]
    fn the_queue_sheds_oldest_scores_but_keeps_incidents() {
        let stats = WriterStats::default();
        let mut v = vec![Record::Incident(IncidentRow {
            id: "i1".into(),
            session_id: None,
            student_id: None,
            started: "t".into(),
            ended: None,
            min_score: 10,
            reasons: "[]".into(),
            clip_path: None,
        })];
        v.extend((0..MAX_PENDING as u64 + 5).map(|f| row(f, 80)));
        shed(&mut v, &stats);
        assert_eq!(v.len(), MAX_PENDING);
        assert!(matches!(v[0], Record::Incident(_)));
        assert!(matches!(&v[1], Record::Score(s) if s.frame == 6));
        assert_eq!(stats.dropped.load(Ordering::Relaxed), 6);
    }
}
