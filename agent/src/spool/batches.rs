//! Upstream batches (used by [`crate::sync`]): formed from the undelivered
//! rows, stored with their exact body before the first send (guarantee 6),
//! finished after the answer, re-queued by hand after a dead-letter.

use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension, TransactionBehavior, params};

use super::clips::UploadedClip;
use super::states::{BatchState, ClipState, Delivery, parse_reasons, parse_ts, ts_text};
use super::{Spool, SpoolError, sq};
use crate::domain::{Incident, Score};

/// A batch as stored: sent and re-sent with these exact bytes.
#[derive(Clone, Debug, PartialEq)]
pub struct Batch {
    /// Row id.
    pub id: i64,
    /// The `batch_id` of the body and the `Idempotency-Key`.
    pub batch_id: String,
    pub created: DateTime<Utc>,
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
    pub scores: Vec<(i64, Score)>,
    /// Incidents with their uploaded clips.
    pub incidents: Vec<(Incident, Vec<UploadedClip>)>,
}

fn score_of(r: &rusqlite::Row<'_>) -> rusqlite::Result<(i64, Score)> {
    Ok((
        r.get(0)?,
        Score {
            session_id: r.get(1)?,
            student_id: r.get(2)?,
            frame: r.get::<_, i64>(3)? as u64,
            ts: parse_ts(&r.get::<_, String>(4)?)?,
            focus_score: r.get(5)?,
            num_faces: r.get::<_, i64>(6)? as u32,
            yaw_deg: r.get::<_, Option<f64>>(7)?.map(|v| v as f32),
            pitch_deg: r.get::<_, Option<f64>>(8)?.map(|v| v as f32),
            reasons: parse_reasons(&r.get::<_, String>(9)?),
        },
    ))
}

fn incident_of(r: &rusqlite::Row<'_>) -> rusqlite::Result<Incident> {
    Ok(Incident {
        id: r.get(0)?,
        session_id: r.get(1)?,
        student_id: r.get(2)?,
        started: parse_ts(&r.get::<_, String>(3)?)?,
        ended: r.get::<_, Option<String>>(4)?.map(|t| parse_ts(&t)).transpose()?,
        min_score: r.get(5)?,
        reasons: parse_reasons(&r.get::<_, String>(6)?),
        clip_path: r.get(7)?,
    })
}

impl Spool {
    /// The oldest batch not yet delivered nor dead-lettered, if any: it is
    /// re-sent as it was.
    pub fn pending_batch(&self) -> Result<Option<Batch>, SpoolError> {
        self.conn
            .query_row(
                "SELECT id, batch_id, created, body, scores, incidents, first_score, last_score
                 FROM batches WHERE state = ?1 ORDER BY id LIMIT 1",
                [BatchState::Pending],
                |r| {
                    Ok(Batch {
                        id: r.get(0)?,
                        batch_id: r.get(1)?,
                        created: parse_ts(&r.get::<_, String>(2)?)?,
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

    /// True when an incident waits to be sent (a new one, or a change).
    pub fn has_pending_incidents(&self) -> Result<bool, SpoolError> {
        self.conn
            .query_row("SELECT EXISTS (SELECT 1 FROM incidents WHERE delivered = ?1)", [Delivery::Pending], |r| {
                r.get(0)
            })
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
        now: DateTime<Utc>,
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
                     FROM scores WHERE id > ?1 AND delivered = ?3 ORDER BY id LIMIT ?2",
                )
                .map_err(&e)?;
            let mut q = stmt.query(params![after, max_scores as i64, Delivery::Pending]).map_err(&e)?;
            let mut pair: Option<(Option<String>, Option<String>)> = None;
            while let Some(r) = q.next().map_err(&e)? {
                let (id, s) = score_of(r).map_err(&e)?;
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
                        "SELECT session_id, student_id FROM incidents WHERE delivered = ?1 ORDER BY started, id LIMIT 1",
                        [Delivery::Pending],
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
                     FROM incidents WHERE delivered = ?4 AND session_id IS ?1 AND student_id IS ?2
                     ORDER BY started, id LIMIT ?3",
                )
                .map_err(&e)?;
            let incidents: Vec<Incident> = stmt
                .query_map(
                    params![rows.session_id, rows.student_id, max_incidents as i64, Delivery::Pending],
                    incident_of,
                )
                .map_err(&e)?
                .collect::<Result<_, _>>()
                .map_err(&e)?;
            let mut clips = tx
                .prepare_cached(
                    "SELECT object_key, object_url, bytes FROM clips
                     WHERE incident_id = ?1 AND uploaded = ?2 ORDER BY id",
                )
                .map_err(&e)?;
            for i in incidents {
                let c: Vec<UploadedClip> = clips
                    .query_map(params![&i.id, ClipState::Uploaded], |r| {
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
            "INSERT INTO batches (batch_id, created, first_score, last_score, scores, incidents, state)
             VALUES ('', ?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                ts_text(now),
                first_score,
                last_score,
                rows.scores.len() as i64,
                rows.incidents.len() as i64,
                BatchState::Pending
            ],
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
            created: now,
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
    /// [`BatchState::Requeued`]. Safe while the agent runs (one
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
                 FROM scores WHERE delivered = ?2 AND id <= ?1 ORDER BY id",
                params![last, Delivery::DeadLettered],
            )
            .map_err(&e)?;
        tx.execute("DELETE FROM scores WHERE delivered = ?2 AND id <= ?1", params![last, Delivery::DeadLettered])
            .map_err(&e)?;
        let incidents = tx
            .execute(
                "UPDATE incidents SET delivered = ?1 WHERE delivered = ?2",
                params![Delivery::Pending, Delivery::DeadLettered],
            )
            .map_err(&e)?;
        tx.execute(
            "UPDATE batches SET state = ?1, body = NULL WHERE state = ?2",
            params![BatchState::Requeued, BatchState::DeadLettered],
        )
        .map_err(&e)?;
        tx.commit().map_err(&e)?;
        Ok((scores as u64, incidents as u64))
    }

    /// Marks a batch delivered (after a 2xx) or dead-lettered, with its
    /// scores and the incidents whose copy in it is current. Idempotent.
    pub fn finish_batch(&mut self, batch: &Batch, outcome: BatchOutcome, now: DateTime<Utc>) -> Result<(), SpoolError> {
        let path = self.path.clone();
        let e = sq(&path);
        let (state, rows, status, error) = match &outcome {
            BatchOutcome::Delivered => (BatchState::Delivered, Delivery::Delivered, None, None),
            BatchOutcome::DeadLettered { status, error } => {
                (BatchState::DeadLettered, Delivery::DeadLettered, Some(*status), Some(error.as_str()))
            }
        };
        let tx = self.conn.transaction().map_err(&e)?;
        let changed = tx
            .execute(
                "UPDATE batches SET state = ?2, status = ?3, error = ?4, done = ?5,
                    body = CASE WHEN ?2 = ?7 THEN NULL ELSE body END
                 WHERE id = ?1 AND state = ?6",
                params![batch.id, state, status, error, ts_text(now), BatchState::Pending, BatchState::Delivered],
            )
            .map_err(&e)?;
        if changed > 0 {
            if let (Some(a), Some(b)) = (batch.first_score, batch.last_score) {
                tx.execute(
                    "UPDATE scores SET delivered = ?3 WHERE id BETWEEN ?1 AND ?2 AND delivered = ?4",
                    params![a, b, rows, Delivery::Pending],
                )
                .map_err(&e)?;
            }
            tx.execute(
                "UPDATE incidents SET delivered = ?2 WHERE batch = ?1 AND rev = sent_rev AND delivered = ?3",
                params![batch.id, rows, Delivery::Pending],
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
}
