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
//!
//! Every function here works in the caller's transaction; the actions that
//! write an audit entry with them are in `crate::actions::exams`.

use chrono::{DateTime, Utc};
use proto::Timestamp;
use serde::Serialize;
use tokio_postgres::{GenericClient, Transaction};

use crate::domain::ExamState;
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

impl NewExam {
    /// Checks what needs no database; the retention in days.
    fn check(&self) -> Result<i32, ExamError> {
        if let (Some(a), Some(b)) = (self.start_at, self.end_at)
            && b <= a
        {
            return Err(ExamError::Invalid(format!("end_at ({b}) is not after start_at ({a})")));
        }
        let retention = self.retention_days.unwrap_or(DEFAULT_RETENTION_DAYS);
        if !(1..=MAX_RETENTION_DAYS).contains(&retention) {
            return Err(ExamError::Invalid(format!(
                "retention_days: {retention} is out of range 1-{MAX_RETENTION_DAYS}; e.g. {DEFAULT_RETENTION_DAYS}"
            )));
        }
        Ok(retention)
    }
}

/// Creates an exam (state `ready`) with its roster, in `tx`; returns its
/// id and its room's id.
pub async fn create_in(tx: &Transaction<'_>, new: &NewExam) -> Result<(i64, i64), ExamError> {
    let retention = new.check()?;
    let Some(room_id) = super::rooms::find(tx, &new.room).await? else {
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
        .get("id");
    for (index, seat) in new.seats.iter().enumerate() {
        add_seat(tx, exam, room_id, &new.room, seat).await.map_err(|e| match e {
            SeatError::Seat(message) => ExamError::Seat { index, message },
            SeatError::Db(e) => ExamError::Db(e),
        })?;
    }
    Ok((exam, room_id))
}

enum SeatError {
    Seat(String),
    Db(tokio_postgres::Error),
}

impl From<tokio_postgres::Error> for SeatError {
    fn from(e: tokio_postgres::Error) -> Self {
        SeatError::Db(e)
    }
}

/// One roster row: the desk must be enrolled in the exam's room.
async fn add_seat(tx: &Transaction<'_>, exam: i64, room_id: i64, room: &str, seat: &Seat) -> Result<(), SeatError> {
    crate::roster::validate(seat).map_err(SeatError::Seat)?;
    let desk = tx
        .query_opt(
            "SELECT d.id, d.room_id, r.name AS room, d.token_sha256 IS NOT NULL AS enrolled
             FROM desks d JOIN rooms r ON r.id = d.room_id WHERE d.device_id = $1",
            &[&seat.desk],
        )
        .await?;
    let Some(desk) = desk else {
        return Err(SeatError::Seat(format!(
            "desk {:?} is not enrolled (invigil-hub device add {} --room ROOM)",
            seat.desk, seat.desk
        )));
    };
    if desk.get::<_, i64>("room_id") != room_id {
        let theirs: String = desk.get("room");
        return Err(SeatError::Seat(format!("desk {:?} is in room {theirs:?}, not {room:?}", seat.desk)));
    }
    if !desk.get::<_, bool>("enrolled") {
        return Err(SeatError::Seat(format!("desk {:?} is revoked", seat.desk)));
    }
    let student: i64 = tx
        .query_one(
            "INSERT INTO students (student_id) VALUES ($1)
             ON CONFLICT (student_id) DO UPDATE SET student_id = EXCLUDED.student_id RETURNING id",
            &[&seat.student_id],
        )
        .await?
        .get("id");
    let (row, col) = (seat.row.map(|n| n as i32), seat.col.map(|n| n as i32));
    tx.execute(
        "INSERT INTO roster (exam_id, desk_id, student_id, seat_row, seat_col) VALUES ($1, $2, $3, $4, $5)",
        &[&exam, &desk.get::<_, i64>("id"), &student, &row, &col],
    )
    .await
    .map_err(|e| {
        if super::is_unique_violation(&e) {
            SeatError::Seat("desk or student twice in the roster".into())
        } else {
            e.into()
        }
    })?;
    Ok(())
}

/// Locks an exam's row; its state and room.
async fn lock(tx: &Transaction<'_>, exam: i64) -> Result<(ExamState, i64), ExamError> {
    let row = tx
        .query_opt("SELECT state, room_id FROM exams WHERE id = $1 FOR UPDATE", &[&exam])
        .await?
        .ok_or(ExamError::NotFound(exam))?;
    Ok((row.get("state"), row.get("room_id")))
}

/// Starts a `ready` exam now, in `tx`: opens its sessions and notifies
/// every hub at commit. Returns its room's id.
pub async fn start_in(tx: &Transaction<'_>, exam: i64) -> Result<i64, ExamError> {
    let (state, room) = lock(tx, exam).await?;
    match state {
        ExamState::Ready => {}
        ExamState::Running => return Err(ExamError::Conflict(format!("exam {exam} is already running"))),
        ExamState::Stopped => return Err(ExamError::Conflict(format!("exam {exam} was stopped; create a new exam"))),
    }
    let busy = tx
        .query_opt(
            "SELECT d.device_id, s.id AS session FROM roster r
             JOIN sessions s ON s.desk_id = r.desk_id AND s.stopped_at IS NULL
             JOIN desks d ON d.id = r.desk_id WHERE r.exam_id = $1 ORDER BY d.device_id LIMIT 1",
            &[&exam],
        )
        .await?;
    if let Some(row) = busy {
        return Err(ExamError::Conflict(format!(
            "desk {:?} is in session {:?} of another running exam: stop that exam first",
            row.get::<_, String>("device_id"),
            row.get::<_, String>("session")
        )));
    }
    tx.execute(
        "INSERT INTO sessions (id, exam_id, desk_id, student_id, started_at)
         SELECT 'ex' || $1::bigint || '-' || d.device_id, $1, r.desk_id, r.student_id, now()
         FROM roster r JOIN desks d ON d.id = r.desk_id WHERE r.exam_id = $1",
        &[&exam],
    )
    .await?;
    tx.execute("UPDATE exams SET state = $2, started_at = now() WHERE id = $1", &[&exam, &ExamState::Running]).await?;
    tx.execute("SELECT pg_notify($1, $2)", &[&SESSIONS_CHANNEL, &exam.to_string()]).await?;
    Ok(room)
}

/// Stops an exam in `tx`: closes its sessions and notifies every hub at
/// commit. A `ready` exam is stopped without ever running; a stopped one
/// is a conflict. Returns its room's id.
pub async fn stop_in(tx: &Transaction<'_>, exam: i64) -> Result<i64, ExamError> {
    let (state, room) = lock(tx, exam).await?;
    if state == ExamState::Stopped {
        return Err(ExamError::Conflict(format!("exam {exam} is already stopped")));
    }
    tx.execute("UPDATE sessions SET stopped_at = now() WHERE exam_id = $1 AND stopped_at IS NULL", &[&exam]).await?;
    tx.execute("UPDATE exams SET state = $2, stopped_at = now() WHERE id = $1", &[&exam, &ExamState::Stopped]).await?;
    tx.execute("SELECT pg_notify($1, $2)", &[&SESSIONS_CHANNEL, &exam.to_string()]).await?;
    Ok(room)
}

/// An exam whose scheduled start or stop is due, claimed (locked, SKIP
/// LOCKED) in `tx`: its id and whether it is to start.
pub async fn claim_due(tx: &Transaction<'_>) -> Result<Option<(i64, bool)>, tokio_postgres::Error> {
    Ok(tx
        .query_opt(
            "SELECT id, state FROM exams
             WHERE (state = 'ready' AND start_at <= now()) OR (state = 'running' AND end_at <= now())
             ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED",
            &[],
        )
        .await?
        .map(|r| (r.get("id"), r.get::<_, ExamState>("state") == ExamState::Ready)))
}

/// Drops a `ready` exam's schedule (it could not start; the scheduler
/// does not retry it every tick). Its room's id.
pub async fn unschedule(c: &impl GenericClient, exam: i64) -> Result<Option<i64>, tokio_postgres::Error> {
    Ok(c.query_opt("UPDATE exams SET start_at = NULL WHERE id = $1 AND state = 'ready' RETURNING room_id", &[&exam])
        .await?
        .map(|r| r.get("room_id")))
}

/// The desks on an exam's roster.
pub async fn roster_desks(c: &impl GenericClient, exam: i64) -> Result<Vec<i64>, tokio_postgres::Error> {
    Ok(c.query("SELECT desk_id FROM roster WHERE exam_id = $1", &[&exam])
        .await?
        .iter()
        .map(|r| r.get("desk_id"))
        .collect())
}

/// The room (id, name) of an exam.
pub async fn exam_room(c: &impl GenericClient, exam: i64) -> Result<Option<(i64, String)>, tokio_postgres::Error> {
    Ok(c.query_opt("SELECT r.id, r.name FROM exams e JOIN rooms r ON r.id = e.room_id WHERE e.id = $1", &[&exam])
        .await?
        .map(|r| (r.get("id"), r.get("name"))))
}

/// An exam as the room's list shows it.
#[derive(Clone, Debug, Serialize)]
pub struct ExamRow {
    pub id: i64,
    pub state: ExamState,
    pub name: Option<String>,
    pub start_at: Option<Timestamp>,
    pub end_at: Option<Timestamp>,
    pub started_at: Option<Timestamp>,
    pub stopped_at: Option<Timestamp>,
}

/// The exams of a room, newest first (at most 200).
pub async fn in_room(c: &impl GenericClient, room_id: i64) -> Result<Vec<ExamRow>, tokio_postgres::Error> {
    let rows = c
        .query(
            "SELECT id, state, name, start_at, end_at, started_at, stopped_at FROM exams
             WHERE room_id = $1 ORDER BY id DESC LIMIT 200",
            &[&room_id],
        )
        .await?;
    let ts = |r: &tokio_postgres::Row, k: &str| r.get::<_, Option<DateTime<Utc>>>(k).map(Timestamp);
    Ok(rows
        .iter()
        .map(|r| ExamRow {
            id: r.get("id"),
            state: r.get("state"),
            name: r.get("name"),
            start_at: ts(r, "start_at"),
            end_at: ts(r, "end_at"),
            started_at: ts(r, "started_at"),
            stopped_at: ts(r, "stopped_at"),
        })
        .collect())
}
