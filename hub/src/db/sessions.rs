//! Exam sessions (one per roster desk while its exam runs): looked up for
//! rights and pushed to the desks.

use std::collections::HashMap;

use proto::Timestamp;
use proto::device::DeviceSession;
use tokio_postgres::GenericClient;

/// The exam and room of a session.
pub async fn exam_and_room(c: &impl GenericClient, session: &str) -> Result<Option<(i64, i64)>, tokio_postgres::Error> {
    Ok(c.query_opt(
        "SELECT s.exam_id, e.room_id FROM sessions s JOIN exams e ON e.id = s.exam_id WHERE s.id = $1",
        &[&session],
    )
    .await?
    .map(|r| (r.get("exam_id"), r.get("room_id"))))
}

/// The ids of an exam's sessions.
pub async fn of_exam(c: &impl GenericClient, exam: i64) -> Result<Vec<String>, tokio_postgres::Error> {
    Ok(c.query("SELECT id FROM sessions WHERE exam_id = $1", &[&exam]).await?.iter().map(|r| r.get("id")).collect())
}

/// The open sessions of these desks, by desk id.
pub async fn open_for(
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
                session_id: r.get("id"),
                student_id: r.get("student_id"),
                exam_id: Some(r.get::<_, i64>("exam_id").to_string()),
                started: Timestamp(r.get("started_at")),
            };
            (r.get::<_, i64>("desk_id"), s)
        })
        .collect())
}
