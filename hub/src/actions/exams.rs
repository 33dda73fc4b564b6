//! Exams: create (and start at once), start, stop; each with its audit
//! entries in the action's transaction. Sessions open and close with the
//! exam (see `db::exams`); every hub hears of it at commit.

use serde_json::json;

use super::ActionError;
use crate::db::Db;
use crate::db::exams::NewExam;

/// Creates an exam, and starts it in the same transaction when
/// `start_now` (a start that fails leaves no exam behind). Its id.
pub async fn create(db: &Db, actor: &str, new: &NewExam, start_now: bool) -> Result<i64, ActionError> {
    let mut c = db.get().await?;
    let tx = c.transaction().await?;
    let (exam, room) = crate::db::exams::create_in(&tx, new).await?;
    let detail = json!({"exam": exam, "room": new.room, "desks": new.seats.len()});
    crate::db::audit::append(&*tx, actor, "exam.create", Some(room), detail).await?;
    if start_now {
        crate::db::exams::start_in(&tx, exam).await?;
        crate::db::audit::append(&*tx, actor, "exam.start", Some(room), json!({"exam": exam})).await?;
    }
    tx.commit().await?;
    Ok(exam)
}

/// Starts a `ready` exam now.
pub async fn start(db: &Db, actor: &str, exam: i64) -> Result<(), ActionError> {
    let mut c = db.get().await?;
    let tx = c.transaction().await?;
    let room = crate::db::exams::start_in(&tx, exam).await?;
    crate::db::audit::append(&*tx, actor, "exam.start", Some(room), json!({"exam": exam})).await?;
    tx.commit().await?;
    Ok(())
}

/// Stops an exam (a `ready` one is stopped without ever running).
pub async fn stop(db: &Db, actor: &str, exam: i64) -> Result<(), ActionError> {
    let mut c = db.get().await?;
    let tx = c.transaction().await?;
    let room = crate::db::exams::stop_in(&tx, exam).await?;
    crate::db::audit::append(&*tx, actor, "exam.stop", Some(room), json!({"exam": exam})).await?;
    tx.commit().await?;
    Ok(())
}
