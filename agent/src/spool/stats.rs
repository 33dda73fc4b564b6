//! Counts for `invigil spool stats`, `/healthz` and `/metrics`.

use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension, ToSql};

use super::states::{BatchState, ClipState, Delivery, parse_ts};
use super::{Spool, SpoolError, sq};

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
    pub oldest_pending: Option<DateTime<Utc>>,
    pub bytes: u64,
}

impl Spool {
    fn count(&self, sql: &str, args: &[&dyn ToSql]) -> Result<i64, SpoolError> {
        self.conn.query_row(sql, args, |r| r.get(0)).map_err(sq(&self.path))
    }

    /// Counts for `invigil spool stats` and health.
    pub fn stats(&self, threshold: u8) -> Result<SpoolStats, SpoolError> {
        let e = sq(&self.path);
        let bytes = ["", "-wal", "-shm"]
            .iter()
            .filter_map(|s| std::fs::metadata(format!("{}{s}", self.path.display())).ok())
            .map(|m| m.len())
            .sum();
        // Files of schema v1 (read-only `spool stats` does not upgrade) have
        // no batches or counters.
        let v2 = self.version()? >= 2;
        let v2_count = |sql: &str, arg: &dyn ToSql| if v2 { self.count(sql, &[arg]) } else { Ok(0) };
        let counter = |name: &str| v2_count("SELECT COALESCE(SUM(value), 0) FROM counters WHERE name = ?1", &name);
        let scores_in = |d: Delivery| self.count("SELECT COUNT(*) FROM scores WHERE delivered = ?1", &[&d]);
        let incidents_in = |d: Delivery| self.count("SELECT COUNT(*) FROM incidents WHERE delivered = ?1", &[&d]);
        let clips_in = |c: ClipState| self.count("SELECT COUNT(*) FROM clips WHERE uploaded = ?1", &[&c]);
        let batches_in = |b: BatchState| v2_count("SELECT COUNT(*) FROM batches WHERE state = ?1", &b);
        Ok(SpoolStats {
            scores: self.count("SELECT COUNT(*) FROM scores", &[])?,
            scores_pending: scores_in(Delivery::Pending)?,
            scores_synced: scores_in(Delivery::Delivered)?,
            scores_dead: scores_in(Delivery::DeadLettered)?,
            scores_below_threshold: self.count("SELECT COUNT(*) FROM scores WHERE focus_score < ?1", &[&threshold])?,
            mean_score: self
                .conn
                .query_row("SELECT AVG(focus_score) FROM scores", [], |r| r.get::<_, Option<f64>>(0))
                .map_err(&e)?,
            incidents: self.count("SELECT COUNT(*) FROM incidents", &[])?,
            incidents_pending: incidents_in(Delivery::Pending)?,
            incidents_dead: incidents_in(Delivery::DeadLettered)?,
            clips: self.count("SELECT COUNT(*) FROM clips", &[])?,
            clips_pending: clips_in(ClipState::Pending)?,
            clips_uploaded: clips_in(ClipState::Uploaded)?,
            batches_pending: batches_in(BatchState::Pending)?,
            batches_dead: batches_in(BatchState::DeadLettered)?,
            shed_delivered: counter("shed_delivered")?,
            shed_undelivered: counter("shed_undelivered")?,
            queue_dropped: counter("queue_dropped")?,
            oldest_pending: self.oldest_pending()?,
            bytes,
        })
    }

    /// Time of the oldest undelivered score, if any (a damaged time reads as
    /// none: this is a figure for health, not data to deliver).
    pub fn oldest_pending(&self) -> Result<Option<DateTime<Utc>>, SpoolError> {
        let e = sq(&self.path);
        let ts: Option<String> = self
            .conn
            .query_row("SELECT ts FROM scores WHERE delivered = ?1 ORDER BY id LIMIT 1", [Delivery::Pending], |r| {
                r.get(0)
            })
            .optional()
            .map_err(&e)?;
        Ok(ts.and_then(|t| parse_ts(&t).ok()))
    }

    /// Scores not yet delivered upstream (an index-only count).
    pub fn pending_scores(&self) -> Result<u64, SpoolError> {
        self.count("SELECT COUNT(*) FROM scores WHERE delivered = ?1", &[&Delivery::Pending]).map(|n| n as u64)
    }
}
