//! What review reads and writes: an exam's sessions and their incidents
//! with the latest decision on each, a session's scores downsampled for
//! the plot, and a reviewer's decision.

use chrono::{DateTime, Utc};
use tokio_postgres::{GenericClient, Transaction};

use crate::domain::{Decision, ExamState};

/// An exam as the review page heads it.
#[derive(Clone, Debug)]
pub struct ExamHead {
    pub state: ExamState,
    pub name: Option<String>,
    pub room: String,
    pub started_at: Option<DateTime<Utc>>,
    pub stopped_at: Option<DateTime<Utc>>,
    pub retention_days: i32,
    pub purged_at: Option<DateTime<Utc>>,
}

/// A session of an exam.
#[derive(Clone, Debug)]
pub struct SessionRow {
    pub session_id: String,
    pub device_id: String,
    pub student_id: String,
    pub started_at: DateTime<Utc>,
    pub stopped_at: Option<DateTime<Utc>>,
}

/// The latest decision on an incident.
#[derive(Clone, Debug)]
pub struct DecisionRow {
    pub decision: Decision,
    pub note: Option<String>,
    pub by: String,
    pub at: DateTime<Utc>,
}

/// An incident with its clip and latest decision, placed by the hub's clock.
#[derive(Clone, Debug)]
pub struct IncidentRow {
    pub id: i64,
    pub key: String,
    pub session_id: Option<String>,
    pub started: DateTime<Utc>,
    pub ended: Option<DateTime<Utc>>,
    pub min_score: i16,
    pub reasons: Vec<String>,
    /// Bytes of the first clip file, if there is one.
    pub clip_bytes: Option<i64>,
    pub clip_parts: i64,
    pub decision: Option<DecisionRow>,
}

pub async fn exam_head(c: &impl GenericClient, exam: i64) -> Result<Option<ExamHead>, tokio_postgres::Error> {
    Ok(c.query_opt(
        "SELECT e.state, e.name, e.started_at, e.stopped_at, e.retention_days, e.purged_at, r.name AS room
         FROM exams e JOIN rooms r ON r.id = e.room_id WHERE e.id = $1",
        &[&exam],
    )
    .await?
    .map(|r| ExamHead {
        state: r.get("state"),
        name: r.get("name"),
        room: r.get("room"),
        started_at: r.get("started_at"),
        stopped_at: r.get("stopped_at"),
        retention_days: r.get("retention_days"),
        purged_at: r.get("purged_at"),
    }))
}

/// The sessions of an exam (or the one named), by device id.
pub async fn sessions(
    c: &impl GenericClient,
    exam: i64,
    only: Option<&str>,
) -> Result<Vec<SessionRow>, tokio_postgres::Error> {
    let rows = c
        .query(
            "SELECT s.id, d.device_id, st.student_id, s.started_at, s.stopped_at FROM sessions s
             JOIN desks d ON d.id = s.desk_id JOIN students st ON st.id = s.student_id
             WHERE s.exam_id = $1 AND ($2::text IS NULL OR s.id = $2) ORDER BY d.device_id",
            &[&exam, &only],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| SessionRow {
            session_id: r.get("id"),
            device_id: r.get("device_id"),
            student_id: r.get("student_id"),
            started_at: r.get("started_at"),
            stopped_at: r.get("stopped_at"),
        })
        .collect())
}

/// The incidents of these sessions, oldest first, each with its clip and
/// latest decision.
pub async fn incidents(c: &impl GenericClient, sessions: &[String]) -> Result<Vec<IncidentRow>, tokio_postgres::Error> {
    let rows = c
        .query(
            "SELECT i.id, i.incident_key, i.session_id,
                    i.started + i.offset_ms * interval '1 millisecond' AS started,
                    i.ended + i.offset_ms * interval '1 millisecond' AS ended, i.min_score, i.reasons,
                    (SELECT bytes FROM clips WHERE incident_id = i.id AND part = 0) AS clip_bytes,
                    (SELECT count(*) FROM clips WHERE incident_id = i.id) AS clip_parts,
                    r.decision, r.note, u.name AS reviewer, r.at AS decided_at
             FROM incidents i
             LEFT JOIN LATERAL (SELECT * FROM reviews WHERE incident_id = i.id ORDER BY at DESC, id DESC LIMIT 1) r ON true
             LEFT JOIN users u ON u.id = r.user_id
             WHERE i.session_id = ANY($1) ORDER BY i.started, i.id",
            &[&sessions],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| IncidentRow {
            id: r.get("id"),
            key: r.get("incident_key"),
            session_id: r.get("session_id"),
            started: r.get("started"),
            ended: r.get("ended"),
            min_score: r.get("min_score"),
            reasons: r.get("reasons"),
            clip_bytes: r.get("clip_bytes"),
            clip_parts: r.get("clip_parts"),
            decision: r.get::<_, Option<Decision>>("decision").map(|decision| DecisionRow {
                decision,
                note: r.get("note"),
                by: r.get::<_, Option<String>>("reviewer").unwrap_or_default(),
                at: r.get("decided_at"),
            }),
        })
        .collect())
}

/// Records a decision, in `tx` (its audit entry goes in the same one).
pub async fn insert(
    tx: &Transaction<'_>,
    incident: i64,
    user: i64,
    decision: Decision,
    note: Option<&str>,
) -> Result<(), tokio_postgres::Error> {
    tx.execute(
        "INSERT INTO reviews (incident_id, user_id, decision, note, at) VALUES ($1, $2, $3, $4, now())",
        &[&incident, &user, &decision, &note],
    )
    .await?;
    Ok(())
}

/// A session's scores: the first and last (placed by the hub's clock) and
/// how many.
#[derive(Clone, Copy, Debug, Default)]
pub struct ScoreSpan {
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    pub n: i64,
}

pub async fn score_span(c: &impl GenericClient, session: &str) -> Result<ScoreSpan, tokio_postgres::Error> {
    let r = c
        .query_one(
            "SELECT min(first_ts + offset_ms * interval '1 millisecond') AS first,
                    max(last_ts + offset_ms * interval '1 millisecond') AS last,
                    coalesce(sum(n_scores), 0)::bigint AS n
             FROM batches WHERE session_id = $1",
            &[&session],
        )
        .await?;
    Ok(ScoreSpan { from: r.get("first"), to: r.get("last"), n: r.get("n") })
}

/// A session's scores in buckets of `width_s` whole seconds: each
/// `[t_ms, min, mean]`, in time order.
pub async fn score_buckets(
    c: &impl GenericClient,
    session: &str,
    width_s: i64,
) -> Result<Vec<[f64; 3]>, tokio_postgres::Error> {
    let rows = c
        .query(
            // batch_id only grows: bounding it lets the BRIN index skip
            // everything outside the session's first and last batch; the
            // semi-join hashes the session's batches (a plain join hashed
            // the scores: twice as slow); per-second partials, then the
            // box's clock offset and the bucket (docs/PERFORMANCE.md).
            "WITH b AS MATERIALIZED (SELECT id, offset_ms FROM batches WHERE session_id = $1),
             p AS (SELECT s.batch_id, floor(extract(epoch FROM s.ts))::bigint AS sec, min(s.focus_score) AS mn,
                          sum(s.focus_score) AS sm, count(*) AS n
                   FROM scores s
                   WHERE s.batch_id BETWEEN (SELECT min(id) FROM b) AND (SELECT max(id) FROM b)
                     AND s.batch_id IN (SELECT id FROM b)
                   GROUP BY 1, 2)
             SELECT floor((p.sec + b.offset_ms / 1000.0) / $2::float8)::bigint AS k, min(p.mn)::int AS mn,
                    sum(p.sm)::float8 / sum(p.n) AS mean
             FROM p JOIN b ON b.id = p.batch_id GROUP BY k ORDER BY k",
            &[&session, &(width_s as f64)],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| {
            [(r.get::<_, i64>("k") * width_s * 1000) as f64, r.get::<_, i32>("mn") as f64, r.get::<_, f64>("mean")]
        })
        .collect())
}
