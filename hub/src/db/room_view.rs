//! What the room view reads every tick: the room's current exam, one row
//! per desk (its live state from `desk_live`, its open session, its seat on
//! the exam's roster), and the exam's incidents newest first.

use chrono::{DateTime, Utc};
use proto::device::DeviceState;
use tokio_postgres::GenericClient;

use crate::domain::ExamState;

/// The room's current exam: the running one, else the newest.
#[derive(Clone, Debug, PartialEq)]
pub struct CurrentExam {
    pub id: i64,
    pub state: ExamState,
    pub name: Option<String>,
    pub started_at: Option<DateTime<Utc>>,
    pub stopped_at: Option<DateTime<Utc>>,
    pub retention_days: i32,
    pub purged_at: Option<DateTime<Utc>>,
}

pub async fn current_exam(c: &impl GenericClient, room_id: i64) -> Result<Option<CurrentExam>, tokio_postgres::Error> {
    Ok(c.query_opt(
        "SELECT id, state, name, started_at, stopped_at, retention_days, purged_at FROM exams WHERE room_id = $1
         ORDER BY (state = 'running') DESC, id DESC LIMIT 1",
        &[&room_id],
    )
    .await?
    .map(|r| CurrentExam {
        id: r.get("id"),
        state: r.get("state"),
        name: r.get("name"),
        started_at: r.get("started_at"),
        stopped_at: r.get("stopped_at"),
        retention_days: r.get("retention_days"),
        purged_at: r.get("purged_at"),
    }))
}

/// One enrolled desk of the room as the hub knows it now.
#[derive(Clone, Debug)]
pub struct DeskNow {
    pub device_id: String,
    /// From `desk_live`: None when the desk never connected.
    pub connected: Option<bool>,
    pub seen_at: Option<DateTime<Utc>>,
    pub state: Option<DeviceState>,
    /// The desk's open session and its student.
    pub session_id: Option<String>,
    pub session_student: Option<String>,
    /// The desk's seat and student on the current exam's roster.
    pub row: Option<i32>,
    pub col: Option<i32>,
    pub roster_student: Option<String>,
}

/// Every enrolled desk of the room, by device id, with its seat on
/// `exam`'s roster.
pub async fn desks(
    c: &impl GenericClient,
    room_id: i64,
    exam: Option<i64>,
) -> Result<Vec<DeskNow>, tokio_postgres::Error> {
    let rows = c
        .query(
            "SELECT d.device_id, l.connected, l.seen_at, l.state, s.id AS session_id, st.student_id AS session_student,
                    ro.seat_row, ro.seat_col, rst.student_id AS roster_student
             FROM desks d
             LEFT JOIN desk_live l ON l.desk_id = d.id
             LEFT JOIN sessions s ON s.desk_id = d.id AND s.stopped_at IS NULL
             LEFT JOIN students st ON st.id = s.student_id
             LEFT JOIN roster ro ON ro.exam_id = $2 AND ro.desk_id = d.id
             LEFT JOIN students rst ON rst.id = ro.student_id
             WHERE d.room_id = $1 AND d.token_sha256 IS NOT NULL ORDER BY d.device_id",
            &[&room_id, &exam.unwrap_or(-1)],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| DeskNow {
            device_id: r.get("device_id"),
            connected: r.get("connected"),
            seen_at: r.get("seen_at"),
            state: super::desk_live::state(r.get("state")),
            session_id: r.get("session_id"),
            session_student: r.get("session_student"),
            row: r.get("seat_row"),
            col: r.get("seat_col"),
            roster_student: r.get("roster_student"),
        })
        .collect())
}

/// An incident of the exam as the alert list shows it.
#[derive(Clone, Debug)]
pub struct AlertRow {
    pub id: i64,
    pub key: String,
    pub device_id: String,
    pub student_id: Option<String>,
    pub started: DateTime<Utc>,
    pub ended: Option<DateTime<Utc>>,
    pub reasons: Vec<String>,
    pub min_score: i16,
}

/// The exam's newest `limit` incidents, placed by the hub's clock.
pub async fn alerts(c: &impl GenericClient, exam: i64, limit: i64) -> Result<Vec<AlertRow>, tokio_postgres::Error> {
    let rows = c
        .query(
            "SELECT i.id, i.incident_key, d.device_id, i.student_id,
                    i.started + i.offset_ms * interval '1 millisecond' AS started,
                    i.ended + i.offset_ms * interval '1 millisecond' AS ended, i.reasons, i.min_score
             FROM incidents i JOIN desks d ON d.id = i.desk_id JOIN sessions s ON s.id = i.session_id
             WHERE s.exam_id = $1 ORDER BY i.started DESC, i.id DESC LIMIT $2",
            &[&exam, &limit],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| AlertRow {
            id: r.get("id"),
            key: r.get("incident_key"),
            device_id: r.get("device_id"),
            student_id: r.get("student_id"),
            started: r.get("started"),
            ended: r.get("ended"),
            reasons: r.get("reasons"),
            min_score: r.get("min_score"),
        })
        .collect())
}
