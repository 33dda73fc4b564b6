//! Storing one score batch: idempotent per (desk, batch_id), atomic, one
//! round trip.
//!
//! Guarantees:
//! 1. One SQL statement inserts the batch row (`ON CONFLICT DO NOTHING` on
//!    (desk, batch_key)) and, only if that row is new, all its scores
//!    (`unnest` of arrays, not one INSERT per score) and its incidents
//!    (upserted by (desk, incident id)). A statement is atomic: a batch is
//!    stored whole or not at all, and a replay stores nothing.
//! 2. The caller acknowledges only after this returns, i.e. after the
//!    commit (`synchronous_commit` as the server has it; on by default).
//! 3. Two requests with the same batch race on the unique index: the second
//!    waits for the first to commit, then finds it a duplicate.
//! 4. A replay whose body differs from the stored one (same key, other
//!    content) is a [`StoreError::Conflict`], not silently dropped.
//!
//! Clock skew: the hub's receive time is kept beside the box's timestamps
//! (`batches.received_at`, `skew_ms` = hub - box). The box's clock comes
//! from `X-Invigil-Sent-At` (exact), else from its live state on the device
//! WebSocket, else from its newest score. Scores are placed by hub time
//! (`offset_ms` added, see the `score_rows` view) when the skew exceeds
//! [`PLACE_OVER_MS`]; from the newest score (which may be late because of a
//! backlog, not a wrong clock) only when the box is ahead of the hub.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use proto::{Batch, Incident};

use super::desks::Desk;

/// A skew smaller than this is transit time, not a wrong clock: the box's
/// timestamps are kept as they are.
pub const PLACE_OVER_MS: i64 = 2000;

/// Where the box's clock reading came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SkewSource {
    Header,
    Live,
    Scores,
    None,
}

impl SkewSource {
    pub fn as_str(self) -> &'static str {
        match self {
            SkewSource::Header => "header",
            SkewSource::Live => "live",
            SkewSource::Scores => "scores",
            SkewSource::None => "none",
        }
    }
}

/// What the hub knows about the request besides the batch.
#[derive(Clone, Debug)]
pub struct Received {
    /// The hub's clock when the batch arrived.
    pub at: DateTime<Utc>,
    /// `X-Invigil-Sent-At`: the box's clock at send.
    pub sent_at: Option<DateTime<Utc>>,
    /// hub - box from the box's live state, if it is connected.
    pub live_skew_ms: Option<i64>,
    /// SHA-256 of the JSON body (after gunzip).
    pub body_sha256: Vec<u8>,
}

/// The outcome of a stored (or replayed) batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stored {
    pub duplicate: bool,
    pub skew_ms: i64,
    pub skew_source: &'static str,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("batch {0:?} was stored before with a different body; a batch id may not be reused")]
    Conflict(String),
    #[error("database: {0}")]
    Db(#[from] tokio_postgres::Error),
}

/// The skew (hub - box, ms), its source, and the offset that places the scores.
pub fn skew(batch: &Batch, rx: &Received) -> (i64, SkewSource, i64) {
    let at = rx.at.timestamp_millis();
    let (skew, source) = if let Some(s) = rx.sent_at {
        (at - s.timestamp_millis(), SkewSource::Header)
    } else if let Some(s) = rx.live_skew_ms {
        (s, SkewSource::Live)
    } else if let Some(newest) = batch.scores.iter().map(|s| s.ts.millis()).max() {
        (at - newest, SkewSource::Scores)
    } else {
        (0, SkewSource::None)
    };
    let offset = match source {
        SkewSource::Header | SkewSource::Live if skew.abs() > PLACE_OVER_MS => skew,
        SkewSource::Scores if skew < -PLACE_OVER_MS => skew,
        _ => 0,
    };
    (skew, source, offset)
}

const INSERT: &str = "
WITH b AS (
    INSERT INTO batches (desk_id, batch_key, session_id, student_id, received_at, sent_at, skew_ms, skew_source,
                         offset_ms, n_scores, n_incidents, first_frame, last_frame, first_ts, last_ts, body_sha256, hub)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)
    ON CONFLICT (desk_id, batch_key) DO NOTHING
    RETURNING id
), s AS (
    INSERT INTO scores (batch_id, frame, ts, focus_score, num_faces, yaw_deg, pitch_deg, reasons, other_reasons)
    SELECT b.id, u.frame, u.ts, u.score, u.faces, u.yaw, u.pitch, u.reasons, u.other
    FROM b, unnest($18::bigint[], $19::timestamptz[], $20::smallint[], $21::smallint[], $22::real[], $23::real[],
                   $24::integer[], $25::text[]) AS u(frame, ts, score, faces, yaw, pitch, reasons, other)
), i AS (
    INSERT INTO incidents (desk_id, incident_key, session_id, student_id, started, ended, min_score, reasons,
                           box_clips, offset_ms, first_seen, updated_at)
    SELECT $1, u.key, $3, $4, u.started, u.ended, u.min_score, string_to_array(u.reasons, ','), u.clips::jsonb, $9, $5, $5
    FROM b, unnest($26::text[], $27::timestamptz[], $28::timestamptz[], $29::smallint[], $30::text[], $31::text[])
         AS u(key, started, ended, min_score, reasons, clips)
    ON CONFLICT (desk_id, incident_key) DO UPDATE SET
        ended = COALESCE(EXCLUDED.ended, incidents.ended),
        min_score = LEAST(incidents.min_score, EXCLUDED.min_score),
        reasons = EXCLUDED.reasons,
        box_clips = CASE WHEN EXCLUDED.box_clips = '[]'::jsonb THEN incidents.box_clips ELSE EXCLUDED.box_clips END,
        updated_at = EXCLUDED.updated_at
)
SELECT id FROM b";

/// Opens `n` pooled connections and prepares the ingest statement on each,
/// so the first seconds after a start (when every box reconnects and sends
/// its backlog at once) do not also pay for connecting and planning.
pub async fn warm(db: &super::Db, n: usize) -> Result<(), super::PoolError> {
    let mut held = Vec::with_capacity(n);
    for _ in 0..n {
        let c = db.get().await?;
        c.prepare_cached(INSERT).await.map_err(super::PoolError::Backend)?;
        held.push(c);
    }
    Ok(())
}

/// Stores `batch` for `desk` (already authenticated, `batch.validate()`d,
/// its device_id checked). Returns only after the commit.
pub async fn store(
    c: &deadpool_postgres::Object,
    desk: &Desk,
    batch: &Batch,
    rx: &Received,
    hub: &str,
) -> Result<Stored, StoreError> {
    let (skew_ms, source, offset_ms) = skew(batch, rx);
    let n = batch.scores.len();
    let (mut frame, mut ts, mut score, mut faces) =
        (Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n));
    let (mut yaw, mut pitch, mut reasons, mut other) =
        (Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n));
    for s in &batch.scores {
        frame.push(s.frame as i64);
        ts.push(s.ts.0);
        score.push(s.focus_score as i16);
        faces.push(s.num_faces as i16);
        yaw.push(s.yaw_deg);
        pitch.push(s.pitch_deg);
        reasons.push(s.reasons.iter().filter_map(|r| r.bit()).fold(0u32, |a, b| a | b) as i32);
        let unknown: Vec<&str> = s.reasons.iter().filter(|r| r.bit().is_none()).map(|r| r.as_str()).collect();
        other.push((!unknown.is_empty()).then(|| unknown.join(",")));
    }
    let incidents = merged(&batch.incidents);
    let (mut ikey, mut istart, mut iend, mut imin, mut ireasons, mut iclips) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for inc in &incidents {
        ikey.push(inc.id.clone());
        istart.push(inc.started.0);
        iend.push(inc.ended.map(|t| t.0));
        imin.push(inc.min_score as i16);
        ireasons.push(inc.reasons.iter().map(|r| r.as_str()).collect::<Vec<_>>().join(","));
        let clips: Vec<&proto::Clip> = inc.clip.iter().chain(&inc.clips).collect();
        let mut uniq: Vec<&proto::Clip> = Vec::new();
        for c in clips {
            if !uniq.iter().any(|u| u.key == c.key) {
                uniq.push(c);
            }
        }
        iclips.push(serde_json::to_string(&uniq).expect("clips serialise"));
    }
    let first = batch.scores.iter().min_by_key(|s| s.frame);
    let last = batch.scores.iter().max_by_key(|s| s.frame);
    let st = c.prepare_cached(INSERT).await?;
    let row = c
        .query_opt(
            &st,
            &[
                &desk.id,
                &batch.batch_id,
                &batch.session_id,
                &batch.student_id,
                &rx.at,
                &rx.sent_at,
                &skew_ms,
                &source.as_str(),
                &offset_ms,
                &(n as i32),
                &(incidents.len() as i32),
                &first.map(|s| s.frame as i64),
                &last.map(|s| s.frame as i64),
                &batch.scores.iter().map(|s| s.ts.0).min(),
                &batch.scores.iter().map(|s| s.ts.0).max(),
                &rx.body_sha256,
                &hub,
                &frame,
                &ts,
                &score,
                &faces,
                &yaw,
                &pitch,
                &reasons,
                &other,
                &ikey,
                &istart,
                &iend,
                &imin,
                &ireasons,
                &iclips,
            ],
        )
        .await?;
    if row.is_some() {
        return Ok(Stored { duplicate: false, skew_ms, skew_source: source.as_str() });
    }
    let st = c
        .prepare_cached("SELECT body_sha256, skew_ms, skew_source FROM batches WHERE desk_id = $1 AND batch_key = $2")
        .await?;
    let prev = c.query_one(&st, &[&desk.id, &batch.batch_id]).await?;
    if prev.get::<_, Vec<u8>>(0) != rx.body_sha256 {
        return Err(StoreError::Conflict(batch.batch_id.clone()));
    }
    let src: String = prev.get(2);
    let src = [SkewSource::Header, SkewSource::Live, SkewSource::Scores]
        .into_iter()
        .find(|s| s.as_str() == src)
        .unwrap_or(SkewSource::None);
    Ok(Stored { duplicate: true, skew_ms: prev.get(1), skew_source: src.as_str() })
}

/// One entry per incident id (an upsert may touch a row once per
/// statement): later entries win, an end once seen is kept, the lowest
/// score is kept, clips are merged.
fn merged(incidents: &[Incident]) -> Vec<Incident> {
    let mut order: Vec<String> = Vec::new();
    let mut by_id: HashMap<String, Incident> = HashMap::new();
    for inc in incidents {
        match by_id.get_mut(&inc.id) {
            None => {
                order.push(inc.id.clone());
                by_id.insert(inc.id.clone(), inc.clone());
            }
            Some(prev) => {
                let ended = inc.ended.or(prev.ended);
                let min = prev.min_score.min(inc.min_score);
                let mut clips = prev.clips.clone();
                clips.extend(prev.clip.iter().cloned());
                clips.extend(inc.clip.iter().cloned());
                clips.extend(inc.clips.iter().cloned());
                *prev = inc.clone();
                prev.ended = ended;
                prev.min_score = min;
                prev.clips = clips;
            }
        }
    }
    order.into_iter().filter_map(|id| by_id.remove(&id)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::{Reason, Score, Timestamp};

    fn batch(ts_ms: i64) -> Batch {
        Batch {
            session_id: None,
            student_id: None,
            device_id: "d".into(),
            batch_id: "b".into(),
            scores: vec![Score {
                ts: Timestamp::from_millis(ts_ms).unwrap(),
                frame: 1,
                focus_score: 50,
                num_faces: 1,
                yaw_deg: None,
                pitch_deg: None,
                reasons: vec![],
            }],
            incidents: vec![],
        }
    }

    fn rx(at: i64, sent: Option<i64>, live: Option<i64>) -> Received {
        Received {
            at: DateTime::from_timestamp_millis(at).unwrap(),
            sent_at: sent.map(|s| DateTime::from_timestamp_millis(s).unwrap()),
            live_skew_ms: live,
            body_sha256: vec![],
        }
    }

    #[test]
    fn skew_prefers_the_header_then_live_state_then_scores() {
        let day = 86_400_000;
        let now = 1_800_000_000_000;
        assert_eq!(
            skew(&batch(now - day), &rx(now, Some(now - day + 100), Some(5))),
            (day - 100, SkewSource::Header, day - 100)
        );
        assert_eq!(skew(&batch(now - day), &rx(now, None, Some(day))), (day, SkewSource::Live, day));
        // Small skews are transit time: nothing is moved.
        assert_eq!(skew(&batch(now), &rx(now + 300, Some(now), None)), (300, SkewSource::Header, 0));
        // From the scores only a box ahead of the hub is placed: a late
        // score may be a backlog, not a wrong clock.
        assert_eq!(skew(&batch(now + day), &rx(now, None, None)).2, -day);
        assert_eq!(skew(&batch(now - day), &rx(now, None, None)), (day, SkewSource::Scores, 0));
    }

    #[test]
    fn an_incident_twice_in_a_batch_is_merged() {
        let t = |ms| Timestamp::from_millis(ms).unwrap();
        let open = Incident::new("i".into(), t(0), None, 30, vec![Reason::NoFace], vec![]);
        let closed = Incident::new("i".into(), t(0), Some(t(5)), 40, vec![Reason::NoFace], vec![]);
        let m = merged(&[open.clone(), closed, Incident::new("j".into(), t(1), None, 1, vec![], vec![]), open]);
        assert_eq!(m.len(), 2);
        assert_eq!((m[0].ended, m[0].min_score), (Some(t(5)), 30));
    }
}
