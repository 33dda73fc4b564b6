//! An exam as `invigil-hub exam show --json` and `GET /api/exams/{id}`
//! show it (`../shared/CONTRACTS.md`: the contract's fields first,
//! additions after), and the incidents of its sessions.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use proto::Timestamp;
use serde::Serialize;
use tokio_postgres::GenericClient;

use crate::domain::ExamState;

#[derive(Clone, Debug, Serialize)]
pub struct ExamShow {
    pub id: i64,
    pub room: String,
    pub state: ExamState,
    pub desks: Vec<DeskShow>,
    pub name: Option<String>,
    pub start_at: Option<Timestamp>,
    pub end_at: Option<Timestamp>,
    pub started_at: Option<Timestamp>,
    pub stopped_at: Option<Timestamp>,
}

#[derive(Clone, Debug, Serialize)]
pub struct DeskShow {
    pub device_id: String,
    pub student_id: String,
    /// Scores delivered under this desk's session.
    pub scores: i64,
    /// Placed by the hub's clock (see `db::ingest`).
    pub first_score_ts: Option<Timestamp>,
    pub last_score_ts: Option<Timestamp>,
    pub incidents: Vec<IncidentShow>,
    pub session_id: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct IncidentShow {
    pub id: i64,
    pub started: Timestamp,
    pub ended: Option<Timestamp>,
    pub reasons: Vec<String>,
    pub clip: Option<ClipShow>,
    /// The box's id for it.
    pub key: String,
    pub min_score: i16,
    pub device_id: String,
    pub student_id: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct ClipShow {
    /// Bytes of the first clip file.
    pub size: i64,
    /// Where a console user plays it.
    pub url: String,
    /// Clip files of the incident (a long incident is chained).
    pub parts: i64,
}

/// Scores of a desk: how many, first and last (placed) timestamps.
#[derive(Clone, Copy, Debug, Default)]
struct ScoreSpan {
    n: i64,
    first: Option<DateTime<Utc>>,
    last: Option<DateTime<Utc>>,
}

fn ts(v: Option<DateTime<Utc>>) -> Option<Timestamp> {
    v.map(Timestamp)
}

/// An exam with its desks, score counts and incidents.
pub async fn show(c: &impl GenericClient, exam: i64) -> Result<Option<ExamShow>, tokio_postgres::Error> {
    let Some(e) = c
        .query_opt(
            "SELECT e.id, r.name AS room, e.state, e.name, e.start_at, e.end_at, e.started_at, e.stopped_at
             FROM exams e JOIN rooms r ON r.id = e.room_id WHERE e.id = $1",
            &[&exam],
        )
        .await?
    else {
        return Ok(None);
    };
    let desks = c
        .query(
            "SELECT d.id, d.device_id, st.student_id, s.id AS session_id FROM roster ro
             JOIN desks d ON d.id = ro.desk_id JOIN students st ON st.id = ro.student_id
             LEFT JOIN sessions s ON s.exam_id = ro.exam_id AND s.desk_id = ro.desk_id
             WHERE ro.exam_id = $1 ORDER BY d.device_id",
            &[&exam],
        )
        .await?;
    let sessions: Vec<String> = desks.iter().filter_map(|r| r.get::<_, Option<String>>("session_id")).collect();
    let spans = score_spans(c, &sessions).await?;
    let incidents = incidents_of_sessions(c, &sessions).await?;
    let out = desks
        .iter()
        .map(|d| {
            let device_id: String = d.get("device_id");
            let span = spans.get(&d.get::<_, i64>("id")).copied().unwrap_or_default();
            DeskShow {
                student_id: d.get("student_id"),
                scores: span.n,
                first_score_ts: ts(span.first),
                last_score_ts: ts(span.last),
                incidents: incidents.iter().filter(|i| i.device_id == device_id).cloned().collect(),
                session_id: d.get("session_id"),
                device_id,
            }
        })
        .collect();
    Ok(Some(ExamShow {
        id: e.get("id"),
        room: e.get("room"),
        state: e.get("state"),
        desks: out,
        name: e.get("name"),
        start_at: ts(e.get("start_at")),
        end_at: ts(e.get("end_at")),
        started_at: ts(e.get("started_at")),
        stopped_at: ts(e.get("stopped_at")),
    }))
}

/// Scores received under these sessions, per desk.
async fn score_spans(
    c: &impl GenericClient,
    sessions: &[String],
) -> Result<HashMap<i64, ScoreSpan>, tokio_postgres::Error> {
    let rows = c
        .query(
            "SELECT desk_id, sum(n_scores)::bigint AS n,
                    min(first_ts + offset_ms * interval '1 millisecond') AS first,
                    max(last_ts + offset_ms * interval '1 millisecond') AS last
             FROM batches WHERE session_id = ANY($1) GROUP BY desk_id",
            &[&sessions],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| (r.get("desk_id"), ScoreSpan { n: r.get("n"), first: r.get("first"), last: r.get("last") }))
        .collect())
}

/// The incidents delivered under these sessions, oldest first.
pub async fn incidents_of_sessions(
    c: &impl GenericClient,
    sessions: &[String],
) -> Result<Vec<IncidentShow>, tokio_postgres::Error> {
    let rows = c
        .query(
            "SELECT i.id, d.device_id, i.incident_key, i.student_id,
                    i.started + i.offset_ms * interval '1 millisecond' AS started,
                    i.ended + i.offset_ms * interval '1 millisecond' AS ended, i.reasons, i.min_score,
                    (SELECT bytes FROM clips WHERE incident_id = i.id AND part = 0) AS clip_bytes,
                    (SELECT count(*) FROM clips WHERE incident_id = i.id) AS clip_parts
             FROM incidents i JOIN desks d ON d.id = i.desk_id
             WHERE i.session_id = ANY($1) ORDER BY i.started, i.id",
            &[&sessions],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| {
            let id: i64 = r.get("id");
            IncidentShow {
                id,
                device_id: r.get("device_id"),
                key: r.get("incident_key"),
                student_id: r.get("student_id"),
                started: Timestamp(r.get("started")),
                ended: ts(r.get("ended")),
                reasons: r.get("reasons"),
                min_score: r.get("min_score"),
                clip: r.get::<_, Option<i64>>("clip_bytes").map(|size| ClipShow {
                    size,
                    url: format!("/api/incidents/{id}/clip"),
                    parts: r.get("clip_parts"),
                }),
            }
        })
        .collect())
}
