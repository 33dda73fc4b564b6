//! Exams, their roster, and the sessions handed to desks.
//!
//! Guarantees:
//! 1. Starting an exam opens one session per roster desk
//!    (`ex{exam}-{device_id}`) in the same transaction that marks the exam
//!    running; a desk may have one open session at most (a unique partial
//!    index), so a desk already in another running exam makes the start
//!    fail with a 409 naming the desk, and nothing changes.
//! 2. Stopping closes every open session of the exam in one transaction.
//! 3. Both notify `invigil_sessions` (payload: the exam id) inside their
//!    transaction: every hub hears it at commit and pushes the change to
//!    the desks connected to it.
//! 4. Scheduled starts and stops are claimed with `FOR UPDATE SKIP
//!    LOCKED`: with several hubs ticking, each exam is started (stopped)
//!    once, by whichever hub claims it first.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use proto::Timestamp;
use proto::device::DeviceSession;
use serde::Serialize;
use tokio_postgres::GenericClient;

use crate::roster::Seat;

/// The channel hubs LISTEN on for session changes (payload: exam id).
pub const SESSIONS_CHANNEL: &str = "invigil_sessions";

#[derive(Debug, thiserror::Error)]
pub enum ExamError {
    #[error("{0}")]
    Invalid(String),
    /// A roster entry at fault: its index and why.
    #[error("roster entry {index}: {message}")]
    Seat { index: usize, message: String },
    #[error("exam {0} does not exist")]
    NotFound(i64),
    #[error("{0}")]
    Conflict(String),
    #[error("database: {0}")]
    Db(#[from] tokio_postgres::Error),
}

/// A new exam.
#[derive(Clone, Debug)]
pub struct NewExam {
    pub room: String,
    pub name: Option<String>,
    pub seats: Vec<Seat>,
    pub start_at: Option<DateTime<Utc>>,
    pub end_at: Option<DateTime<Utc>>,
    pub created_by: String,
    /// Days after the stop when clips and scores are deleted (None: the
    /// default, [`DEFAULT_RETENTION_DAYS`]).
    pub retention_days: Option<i32>,
}

/// Clips and scores of an exam are kept this many days after it stops,
/// unless the exam says otherwise.
pub const DEFAULT_RETENTION_DAYS: i32 = 30;
/// The longest retention an exam may ask for.
pub const MAX_RETENTION_DAYS: i32 = 3650;

/// Creates an exam (state `ready`) with its roster; returns its id.
pub async fn create(c: &mut deadpool_postgres::Object, new: &NewExam) -> Result<i64, ExamError> {
    if let (Some(a), Some(b)) = (new.start_at, new.end_at)
        && b <= a
    {
        return Err(ExamError::Invalid(format!("end_at ({b}) is not after start_at ({a})")));
    }
    let retention = new.retention_days.unwrap_or(DEFAULT_RETENTION_DAYS);
    if !(1..=MAX_RETENTION_DAYS).contains(&retention) {
        return Err(ExamError::Invalid(format!(
            "retention_days: {retention} is out of range 1-{MAX_RETENTION_DAYS}; e.g. {DEFAULT_RETENTION_DAYS}"
        )));
    }
    let tx = c.transaction().await?;
    let Some(room_id) = super::desks::find_room(&*tx, &new.room).await? else {
        return Err(ExamError::Invalid(format!(
            "room {:?} does not exist: enrol its desks first (invigil-hub device add DESK --room ROOM)",
            new.room
        )));
    };
    let exam: i64 = tx
        .query_one(
            "INSERT INTO exams (room_id, name, start_at, end_at, created_by, retention_days)
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
            &[&room_id, &new.name, &new.start_at, &new.end_at, &new.created_by, &retention],
        )
        .await?
        .get(0);
    for (index, seat) in new.seats.iter().enumerate() {
        let bad = |message: String| ExamError::Seat { index, message };
        crate::roster::validate(seat).map_err(bad)?;
        let desk = tx
            .query_opt(
                "SELECT d.id, d.room_id, r.name, d.token_sha256 IS NOT NULL FROM desks d JOIN rooms r ON r.id = d.room_id
                 WHERE d.device_id = $1",
                &[&seat.desk],
            )
            .await?;
        let Some(desk) = desk else {
            return Err(bad(format!(
                "desk {:?} is not enrolled (invigil-hub device add {} --room ROOM)",
                seat.desk, seat.desk
            )));
        };
        if desk.get::<_, i64>(1) != room_id {
            return Err(bad(format!(
                "desk {:?} is in room {:?}, not {:?}",
                seat.desk,
                desk.get::<_, String>(2),
                new.room
            )));
        }
        if !desk.get::<_, bool>(3) {
            return Err(bad(format!("desk {:?} is revoked", seat.desk)));
        }
        let student: i64 = tx
            .query_one(
                "INSERT INTO students (student_id) VALUES ($1)
                 ON CONFLICT (student_id) DO UPDATE SET student_id = EXCLUDED.student_id RETURNING id",
                &[&seat.student_id],
            )
            .await?
            .get(0);
        tx.execute(
            "INSERT INTO roster (exam_id, desk_id, student_id, seat_row, seat_col) VALUES ($1, $2, $3, $4, $5)",
            &[&exam, &desk.get::<_, i64>(0), &student, &seat.row.map(|n| n as i32), &seat.col.map(|n| n as i32)],
        )
        .await
        .map_err(|e| {
            if super::is_unique_violation(&e) { bad("desk or student twice in the roster".into()) } else { e.into() }
        })?;
    }
    tx.commit().await?;
    Ok(exam)
}

/// Starts a `ready` exam now.
pub async fn start(c: &mut deadpool_postgres::Object, exam: i64) -> Result<(), ExamError> {
    let tx = c.transaction().await?;
    start_in(&tx, exam).await?;
    tx.commit().await?;
    Ok(())
}

async fn start_in(tx: &tokio_postgres::Transaction<'_>, exam: i64) -> Result<(), ExamError> {
    let state: String = tx
        .query_opt("SELECT state FROM exams WHERE id = $1 FOR UPDATE", &[&exam])
        .await?
        .ok_or(ExamError::NotFound(exam))?
        .get(0);
    match state.as_str() {
        "ready" => {}
        "running" => return Err(ExamError::Conflict(format!("exam {exam} is already running"))),
        _ => return Err(ExamError::Conflict(format!("exam {exam} was stopped; create a new exam"))),
    }
    let busy = tx
        .query(
            "SELECT d.device_id, s.id FROM roster r JOIN sessions s ON s.desk_id = r.desk_id AND s.stopped_at IS NULL
             JOIN desks d ON d.id = r.desk_id WHERE r.exam_id = $1 ORDER BY d.device_id LIMIT 5",
            &[&exam],
        )
        .await?;
    if let Some(row) = busy.first() {
        return Err(ExamError::Conflict(format!(
            "desk {:?} is in session {:?} of another running exam: stop that exam first",
            row.get::<_, String>(0),
            row.get::<_, String>(1)
        )));
    }
    tx.execute(
        "INSERT INTO sessions (id, exam_id, desk_id, student_id, started_at)
         SELECT 'ex' || $1::bigint || '-' || d.device_id, $1, r.desk_id, r.student_id, now()
         FROM roster r JOIN desks d ON d.id = r.desk_id WHERE r.exam_id = $1",
        &[&exam],
    )
    .await?;
    tx.execute("UPDATE exams SET state = 'running', started_at = now() WHERE id = $1", &[&exam]).await?;
    tx.execute("SELECT pg_notify($1, $2)", &[&SESSIONS_CHANNEL, &exam.to_string()]).await?;
    Ok(())
}

/// Stops an exam: closes its sessions. A `ready` exam is stopped without
/// ever running; a stopped one is a conflict.
pub async fn stop(c: &mut deadpool_postgres::Object, exam: i64) -> Result<(), ExamError> {
    let tx = c.transaction().await?;
    stop_in(&tx, exam).await?;
    tx.commit().await?;
    Ok(())
}

async fn stop_in(tx: &tokio_postgres::Transaction<'_>, exam: i64) -> Result<(), ExamError> {
    let state: String = tx
        .query_opt("SELECT state FROM exams WHERE id = $1 FOR UPDATE", &[&exam])
        .await?
        .ok_or(ExamError::NotFound(exam))?
        .get(0);
    if state == "stopped" {
        return Err(ExamError::Conflict(format!("exam {exam} is already stopped")));
    }
    tx.execute("UPDATE sessions SET stopped_at = now() WHERE exam_id = $1 AND stopped_at IS NULL", &[&exam]).await?;
    tx.execute("UPDATE exams SET state = 'stopped', stopped_at = now() WHERE id = $1", &[&exam]).await?;
    tx.execute("SELECT pg_notify($1, $2)", &[&SESSIONS_CHANNEL, &exam.to_string()]).await?;
    Ok(())
}

/// Starts and stops exams whose scheduled time has come; returns how many.
/// Each is claimed with SKIP LOCKED in a transaction of its own.
pub async fn run_due(c: &mut deadpool_postgres::Object) -> Result<usize, tokio_postgres::Error> {
    let mut done = 0;
    for _ in 0..100 {
        let tx = c.transaction().await?;
        let row = tx
            .query_opt(
                "SELECT id, state FROM exams
                 WHERE (state = 'ready' AND start_at <= now()) OR (state = 'running' AND end_at <= now())
                 ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED",
                &[],
            )
            .await?;
        let Some(row) = row else { break };
        let (exam, state): (i64, String) = (row.get(0), row.get(1));
        let r = if state == "ready" { start_in(&tx, exam).await } else { stop_in(&tx, exam).await };
        match r {
            Ok(()) => {
                tx.commit().await?;
                tracing::info!(
                    exam,
                    action = if state == "ready" { "start" } else { "stop" },
                    "scheduler: exam {exam}"
                );
                done += 1;
            }
            Err(ExamError::Db(e)) => return Err(e),
            Err(e) => {
                // Not startable (a desk is busy): drop the schedule so the
                // scheduler does not retry it every tick; the audit log says why.
                drop(tx);
                let tx = c.transaction().await?;
                tx.execute("UPDATE exams SET start_at = NULL WHERE id = $1 AND state = 'ready'", &[&exam]).await?;
                super::audit::log(
                    &*tx,
                    "scheduler",
                    "exam.start_failed",
                    serde_json::json!({"exam": exam, "error": e.to_string()}),
                )
                .await?;
                tx.commit().await?;
                tracing::warn!(exam, error = %e, "scheduler: exam {exam} could not start");
            }
        }
    }
    Ok(done)
}

/// The open sessions of these desks.
pub async fn sessions_for(
    c: &impl GenericClient,
    desks: &[i64],
) -> Result<HashMap<i64, DeviceSession>, tokio_postgres::Error> {
    let rows = c
        .query(
            "SELECT s.desk_id, s.id, st.student_id, s.exam_id, s.started_at FROM sessions s
             JOIN students st ON st.id = s.student_id WHERE s.desk_id = ANY($1) AND s.stopped_at IS NULL",
            &[&desks],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| {
            let s = DeviceSession {
                session_id: r.get(1),
                student_id: r.get(2),
                exam_id: Some(r.get::<_, i64>(3).to_string()),
                started: Timestamp(r.get(4)),
            };
            (r.get::<_, i64>(0), s)
        })
        .collect())
}

/// The desks on an exam's roster.
pub async fn roster_desks(c: &impl GenericClient, exam: i64) -> Result<Vec<i64>, tokio_postgres::Error> {
    Ok(c.query("SELECT desk_id FROM roster WHERE exam_id = $1", &[&exam]).await?.iter().map(|r| r.get(0)).collect())
}

/// The room (id, name) of an exam.
pub async fn exam_room(c: &impl GenericClient, exam: i64) -> Result<Option<(i64, String)>, tokio_postgres::Error> {
    Ok(c.query_opt("SELECT r.id, r.name FROM exams e JOIN rooms r ON r.id = e.room_id WHERE e.id = $1", &[&exam])
        .await?
        .map(|r| (r.get(0), r.get(1))))
}

/// `exam show --json`: the contract's fields first, additions after.
#[derive(Clone, Debug, Serialize)]
pub struct ExamShow {
    pub id: i64,
    pub room: String,
    pub state: String,
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
type ScoreSpan = (i64, Option<DateTime<Utc>>, Option<DateTime<Utc>>);

/// An exam with its desks, score counts and incidents.
pub async fn show(c: &impl GenericClient, exam: i64) -> Result<Option<ExamShow>, tokio_postgres::Error> {
    let Some(e) = c
        .query_opt(
            "SELECT e.id, r.name, e.state, e.name, e.start_at, e.end_at, e.started_at, e.stopped_at
             FROM exams e JOIN rooms r ON r.id = e.room_id WHERE e.id = $1",
            &[&exam],
        )
        .await?
    else {
        return Ok(None);
    };
    let ts = |v: Option<DateTime<Utc>>| v.map(Timestamp);
    let desks = c
        .query(
            "SELECT d.id, d.device_id, st.student_id, s.id FROM roster ro
             JOIN desks d ON d.id = ro.desk_id JOIN students st ON st.id = ro.student_id
             LEFT JOIN sessions s ON s.exam_id = ro.exam_id AND s.desk_id = ro.desk_id
             WHERE ro.exam_id = $1 ORDER BY d.device_id",
            &[&exam],
        )
        .await?;
    let sessions: Vec<String> = desks.iter().filter_map(|r| r.get::<_, Option<String>>(3)).collect();
    let counts: HashMap<i64, ScoreSpan> = c
        .query(
            "SELECT desk_id, sum(n_scores)::bigint,
                    min(first_ts + offset_ms * interval '1 millisecond'),
                    max(last_ts + offset_ms * interval '1 millisecond')
             FROM batches WHERE session_id = ANY($1) GROUP BY desk_id",
            &[&sessions],
        )
        .await?
        .iter()
        .map(|r| (r.get(0), (r.get(1), r.get(2), r.get(3))))
        .collect();
    let incidents = incidents_of_sessions(c, &sessions).await?;
    let mut out = Vec::new();
    for d in &desks {
        let desk_id: i64 = d.get(0);
        let device_id: String = d.get(1);
        let (n, first, last) = counts.get(&desk_id).cloned().unwrap_or((0, None, None));
        out.push(DeskShow {
            student_id: d.get(2),
            scores: n,
            first_score_ts: ts(first),
            last_score_ts: ts(last),
            incidents: incidents.iter().filter(|i| i.device_id == device_id).cloned().collect(),
            session_id: d.get(3),
            device_id,
        });
    }
    Ok(Some(ExamShow {
        id: e.get(0),
        room: e.get(1),
        state: e.get(2),
        desks: out,
        name: e.get(3),
        start_at: ts(e.get(4)),
        end_at: ts(e.get(5)),
        started_at: ts(e.get(6)),
        stopped_at: ts(e.get(7)),
    }))
}

/// The incidents delivered under these sessions, oldest first.
pub async fn incidents_of_sessions(
    c: &impl GenericClient,
    sessions: &[String],
) -> Result<Vec<IncidentShow>, tokio_postgres::Error> {
    let rows = c
        .query(
            "SELECT i.id, d.device_id, i.incident_key, i.student_id,
                    i.started + i.offset_ms * interval '1 millisecond',
                    i.ended + i.offset_ms * interval '1 millisecond', i.reasons, i.min_score,
                    (SELECT bytes FROM clips WHERE incident_id = i.id AND part = 0),
                    (SELECT count(*) FROM clips WHERE incident_id = i.id)
             FROM incidents i JOIN desks d ON d.id = i.desk_id
             WHERE i.session_id = ANY($1) ORDER BY i.started, i.id",
            &[&sessions],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| {
            let id: i64 = r.get(0);
            IncidentShow {
                id,
                device_id: r.get(1),
                key: r.get(2),
                student_id: r.get(3),
                started: Timestamp(r.get(4)),
                ended: r.get::<_, Option<DateTime<Utc>>>(5).map(Timestamp),
                reasons: r.get(6),
                min_score: r.get(7),
                clip: r.get::<_, Option<i64>>(8).map(|size| ClipShow {
                    size,
                    url: format!("/api/incidents/{id}/clip"),
                    parts: r.get(9),
                }),
            }
        })
        .collect())
}

/// The exams of a room, newest first.
pub async fn in_room(c: &impl GenericClient, room_id: i64) -> Result<Vec<serde_json::Value>, tokio_postgres::Error> {
    let rows = c
        .query(
            "SELECT id, state, name, start_at, end_at, started_at, stopped_at FROM exams
             WHERE room_id = $1 ORDER BY id DESC LIMIT 200",
            &[&room_id],
        )
        .await?;
    let ts = |v: Option<DateTime<Utc>>| v.map(|t| Timestamp(t).to_string());
    Ok(rows
        .iter()
        .map(|r| {
            serde_json::json!({
                "id": r.get::<_, i64>(0), "state": r.get::<_, String>(1), "name": r.get::<_, Option<String>>(2),
                "start_at": ts(r.get(3)), "end_at": ts(r.get(4)), "started_at": ts(r.get(5)), "stopped_at": ts(r.get(6)),
            })
        })
        .collect())
}
