//! The write path: records committed in one transaction, rows shed at the
//! size cap, retention of delivered scores (guarantees 1, 2, 6, 7 and 8 of
//! the module docs).

use chrono::{DateTime, Utc};
use rusqlite::params;

use super::states::{BatchState, Delivery, reasons_text, ts_text};
use super::{Spool, SpoolError, sq};
use crate::domain::{ClipFile, Incident, Score};

/// Scores deleted by one retention run, at most.
const PRUNE_CHUNK: i64 = 20_000;

/// Something to store.
#[derive(Clone, Debug, PartialEq)]
pub enum Record {
    Score(Score),
    Incident(Incident),
    Clip(ClipFile),
}

/// What [`Spool::shed`] dropped.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Shed {
    /// Delivered or dead-lettered scores.
    pub delivered: u64,
    /// Undelivered scores.
    pub undelivered: u64,
}

impl Spool {
    /// Stores `records` in one transaction.
    pub fn commit(&mut self, records: &[Record]) -> Result<(), SpoolError> {
        self.commit_with(records, None, 0).map(|_| ())
    }

    /// Stores `records` in one transaction; with `prune_before`, also runs
    /// retention for batches done before it; adds `dropped` to the
    /// persistent count of records dropped from the queue. Returns the
    /// number of scores pruned.
    pub(crate) fn commit_with(
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
                        reasons = excluded.reasons, clip_path = COALESCE(excluded.clip_path, clip_path),
                        delivered = ?9, rev = rev + 1",
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
                        let p = c.path.display().to_string();
                        clip.execute(params![c.incident_id, p, c.bytes as i64]).map_err(&e)?;
                        clip_of.execute(params![c.incident_id, p]).map_err(&e)?
                    }
                    Record::Score(s) => score
                        .execute(params![
                            s.session_id,
                            s.student_id,
                            s.frame as i64,
                            ts_text(s.ts),
                            s.focus_score,
                            s.num_faces as i64,
                            s.yaw_deg,
                            s.pitch_deg,
                            reasons_text(&s.reasons)
                        ])
                        .map_err(&e)?,
                    Record::Incident(i) => incident
                        .execute(params![
                            i.id,
                            i.session_id,
                            i.student_id,
                            ts_text(i.started),
                            i.ended.map(ts_text),
                            i.min_score,
                            reasons_text(&i.reasons),
                            i.clip_path,
                            Delivery::Pending
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
        for state in [Delivery::Delivered, Delivery::DeadLettered, Delivery::Pending] {
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
            if state == Delivery::Pending {
                out.undelivered += k
            } else {
                out.delivered += k
            }
            if state == Delivery::DeadLettered {
                // Bodies of dead-lettered batches go with their rows.
                tx.execute(
                    "UPDATE batches SET body = NULL WHERE state = ?1 AND body IS NOT NULL",
                    [BatchState::DeadLettered],
                )
                .map_err(&e)?;
            }
        }
        add_counter(&tx, "shed_delivered", out.delivered).map_err(&e)?;
        add_counter(&tx, "shed_undelivered", out.undelivered).map_err(&e)?;
        tx.commit().map_err(&e)?;
        Ok(out)
    }
}

/// Retention: scores of batches done before `before`, a bounded number.
fn prune(tx: &rusqlite::Transaction, before: DateTime<Utc>) -> rusqlite::Result<u64> {
    let cutoff = ts_text(before);
    let cut: Option<i64> = tx.query_row(
        "SELECT MAX(last_score) FROM batches WHERE state != ?2 AND done < ?1",
        params![cutoff, BatchState::Pending],
        |r| r.get(0),
    )?;
    let max_id: Option<i64> = tx.query_row("SELECT MAX(id) FROM scores", [], |r| r.get(0))?;
    let (Some(cut), Some(max_id)) = (cut, max_id) else { return Ok(0) };
    let n = tx.execute(
        "DELETE FROM scores WHERE id IN
            (SELECT id FROM scores WHERE id <= ?1 AND id < ?2 AND delivered != ?4 ORDER BY id LIMIT ?3)",
        params![cut, max_id, PRUNE_CHUNK, Delivery::Pending],
    )?;
    // Keep the newest batch: the next one starts after its last score.
    tx.execute(
        "DELETE FROM batches WHERE state != ?2 AND done < ?1 AND id < (SELECT MAX(id) FROM batches)",
        params![cutoff, BatchState::Pending],
    )?;
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
