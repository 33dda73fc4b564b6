//! The durable spool: every score, incident and clip record, in SQLite.
//!
//! # Guarantees
//! 1. **Committed means durable.** Records are grouped and committed in one
//!    transaction every `commit_interval_ms` (default 1 s), in WAL mode with
//!    `synchronous=NORMAL`: at most one fsync per interval. A power cut loses
//!    at most the records of the last uncommitted interval; it never
//!    corrupts the file (SQLite's WAL recovery).
//! 2. **Order.** Scores keep the order they were pushed in (`id`).
//! 3. **Bounded memory.** Records wait for the next commit in a queue of at
//!    most [`MAX_PENDING`]; past that the oldest scores are dropped and
//!    counted (never incidents), so a stalled disk cannot grow memory.
//! 4. **A failing disk never stops analysis.** A failed commit keeps its
//!    records for the next attempt (up to the bound) and is reported in
//!    [`WriterStats`]; the analysis loop never waits for the disk.
//! 5. **Versioned schema.** `PRAGMA user_version` holds the schema version;
//!    each upgrade runs in one transaction; a newer database is refused.
//!
//! Non-goal: surviving the loss of the SD card itself.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, params};

use crate::analysis::Analysis;

/// The schema version this build writes.
pub const SCHEMA_VERSION: i64 = 1;
/// Records waiting for a commit, at most (10 minutes of scores at 30 FPS).
pub const MAX_PENDING: usize = 18_000;

/// Each entry upgrades from version `i` to `i + 1`, in one transaction.
const UPGRADES: [&str; SCHEMA_VERSION as usize] = [
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
];

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
}

impl Spool {
    /// Opens (creating if needed) and upgrades the spool at `path`.
    pub fn open(path: &Path) -> Result<Spool, SpoolError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| SpoolError::Folder { path: path.to_path_buf(), source })?;
        }
        let e = |err| SpoolError::from_sqlite(path, err);
        let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE)
            .map_err(e)?;
        conn.busy_timeout(Duration::from_secs(5)).map_err(e)?;
        conn.pragma_update(None, "journal_mode", "WAL").map_err(e)?;
        conn.pragma_update(None, "synchronous", "NORMAL").map_err(e)?;
        let mut spool = Spool { conn, path: path.to_path_buf() };
        spool.upgrade()?;
        Ok(spool)
    }

    /// Opens an existing spool read-only (for `invigil spool stats`).
    pub fn open_read_only(path: &Path) -> Result<Spool, SpoolError> {
        let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)
            .map_err(|e| SpoolError::from_sqlite(path, e))?;
        let spool = Spool { conn, path: path.to_path_buf() };
        let v = spool.version()?;
        if v > SCHEMA_VERSION {
            return Err(SpoolError::TooNew { path: path.to_path_buf(), found: v });
        }
        Ok(spool)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn version(&self) -> Result<i64, SpoolError> {
        self.conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(|e| SpoolError::from_sqlite(&self.path, e))
    }

    fn upgrade(&mut self) -> Result<(), SpoolError> {
        let found = self.version()?;
        if found > SCHEMA_VERSION {
            return Err(SpoolError::TooNew { path: self.path.clone(), found });
        }
        let path = self.path.clone();
        let e = |err| SpoolError::from_sqlite(&path, err);
        for v in found..SCHEMA_VERSION {
            let tx = self.conn.transaction().map_err(e)?;
            tx.execute_batch(UPGRADES[v as usize]).map_err(e)?;
            tx.pragma_update(None, "user_version", v + 1).map_err(e)?;
            tx.commit().map_err(e)?;
        }
        Ok(())
    }

    /// Stores `records` in one transaction.
    pub fn commit(&mut self, records: &[Record]) -> Result<(), SpoolError> {
        let path = self.path.clone();
        let e = |err| SpoolError::from_sqlite(&path, err);
        let tx = self.conn.transaction().map_err(e)?;
        {
            let mut score = tx
                .prepare_cached(
                    "INSERT INTO scores (session_id, student_id, frame, ts, focus_score, num_faces, yaw_deg, pitch_deg, reasons)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                )
                .map_err(e)?;
            let mut incident = tx
                .prepare_cached(
                    "INSERT INTO incidents (id, session_id, student_id, started, ended, min_score, reasons, clip_path)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                     ON CONFLICT (id) DO UPDATE SET ended = excluded.ended, min_score = excluded.min_score,
                        reasons = excluded.reasons, clip_path = COALESCE(excluded.clip_path, clip_path), delivered = 0",
                )
                .map_err(e)?;
            let mut clip = tx
                .prepare_cached(
                    "INSERT INTO clips (incident_id, path, bytes) VALUES (?1, ?2, ?3)
                     ON CONFLICT (path) DO UPDATE SET bytes = excluded.bytes",
                )
                .map_err(e)?;
            // The incident names its first clip; chained ones are in `clips`.
            let mut clip_of = tx
                .prepare_cached("UPDATE incidents SET clip_path = COALESCE(clip_path, ?2) WHERE id = ?1")
                .map_err(e)?;
            for r in records {
                match r {
                    Record::Clip(c) => {
                        clip.execute(params![c.incident_id, c.path, c.bytes as i64]).map_err(e)?;
                        clip_of.execute(params![c.incident_id, c.path]).map_err(e)?
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
                        .map_err(e)?,
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
                        .map_err(e)?,
                };
            }
        }
        tx.commit().map_err(e)
    }

    /// Counts for `invigil spool stats` and health.
    pub fn stats(&self, threshold: u8) -> Result<SpoolStats, SpoolError> {
        let e = |err| SpoolError::from_sqlite(&self.path, err);
        let one = |sql: &str| -> Result<i64, SpoolError> { self.conn.query_row(sql, [], |r| r.get(0)).map_err(e) };
        let below: i64 = self
            .conn
            .query_row("SELECT COUNT(*) FROM scores WHERE focus_score < ?1", [threshold], |r| r.get(0))
            .map_err(e)?;
        let oldest_pending: Option<String> = self
            .conn
            .query_row("SELECT ts FROM scores WHERE delivered = 0 ORDER BY id LIMIT 1", [], |r| r.get(0))
            .map(Some)
            .or_else(|err| if matches!(err, rusqlite::Error::QueryReturnedNoRows) { Ok(None) } else { Err(e(err)) })?;
        let bytes = ["", "-wal", "-shm"]
            .iter()
            .filter_map(|s| std::fs::metadata(format!("{}{s}", self.path.display())).ok())
            .map(|m| m.len())
            .sum();
        Ok(SpoolStats {
            scores: one("SELECT COUNT(*) FROM scores")?,
            scores_pending: one("SELECT COUNT(*) FROM scores WHERE delivered = 0")?,
            scores_synced: one("SELECT COUNT(*) FROM scores WHERE delivered = 1")?,
            scores_dead: one("SELECT COUNT(*) FROM scores WHERE delivered = 2")?,
            scores_below_threshold: below,
            mean_score: self
                .conn
                .query_row("SELECT AVG(focus_score) FROM scores", [], |r| r.get::<_, Option<f64>>(0))
                .map_err(e)?,
            incidents: one("SELECT COUNT(*) FROM incidents")?,
            incidents_pending: one("SELECT COUNT(*) FROM incidents WHERE delivered = 0")?,
            clips: one("SELECT COUNT(*) FROM clips")?,
            clips_pending: one("SELECT COUNT(*) FROM clips WHERE uploaded = 0")?,
            oldest_pending,
            bytes,
        })
    }

    /// `PRAGMA integrity_check`: `Ok(())` or the first problem found.
    pub fn integrity_check(&self) -> Result<(), SpoolError> {
        let r: String = self
            .conn
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .map_err(|e| SpoolError::from_sqlite(&self.path, e))?;
        if r == "ok" { Ok(()) } else { Err(SpoolError::Corrupt { path: self.path.clone(), message: r }) }
    }
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
    pub clips: i64,
    pub clips_pending: i64,
    pub oldest_pending: Option<String>,
    pub bytes: u64,
}

/// Counters of the writer thread.
#[derive(Debug, Default)]
pub struct WriterStats {
    pub committed: AtomicU64,
    pub commits: AtomicU64,
    pub failed_commits: AtomicU64,
    pub dropped: AtomicU64,
    /// Set while the last commit failed.
    pub failing: AtomicBool,
}

struct Queue {
    records: Vec<Record>,
    closed: bool,
}

/// Hands records to a writer thread that commits them every interval.
/// Cloneable; [`SpoolWriter::push`] never blocks on the disk.
#[derive(Clone)]
pub struct SpoolWriter {
    queue: Arc<(Mutex<Queue>, Condvar)>,
    pub stats: Arc<WriterStats>,
}

impl SpoolWriter {
    /// Starts the writer thread on an open spool.
    pub fn start(mut spool: Spool, interval: Duration) -> (SpoolWriter, std::thread::JoinHandle<()>) {
        let queue = Arc::new((Mutex::new(Queue { records: Vec::new(), closed: false }), Condvar::new()));
        let stats = Arc::new(WriterStats::default());
        let writer = SpoolWriter { queue: queue.clone(), stats: stats.clone() };
        let handle = std::thread::Builder::new()
            .name("spool-writer".into())
            .spawn(move || {
                loop {
                    let (batch, closed) = {
                        let (lock, cv) = &*queue;
                        let mut q = lock.lock().unwrap();
                        if !q.closed {
                            q = cv.wait_timeout(q, interval).unwrap().0;
                        }
                        (std::mem::take(&mut q.records), q.closed)
                    };
                    if !batch.is_empty() {
                        match spool.commit(&batch) {
                            Ok(()) => {
                                stats.committed.fetch_add(batch.len() as u64, Ordering::Relaxed);
                                stats.commits.fetch_add(1, Ordering::Relaxed);
                                stats.failing.store(false, Ordering::Relaxed);
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

    /// Commits what is queued and stops the writer thread (join its handle).
    pub fn close(&self) {
        let (lock, cv) = &*self.queue;
        lock.lock().unwrap().closed = true;
        cv.notify_all();
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
