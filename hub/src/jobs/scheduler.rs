//! Every second: start and stop the exams whose scheduled time has come.
//! Each is claimed with SKIP LOCKED in a transaction of its own, with its
//! audit entry (actor `scheduler`), so any number of hubs may run this.
//! An exam that cannot start (a desk busy in another exam) loses its
//! schedule, so it is not retried every tick, and the audit log says why.

use std::time::Duration;

use serde_json::json;

use super::JobError;
use crate::db::exams::ExamError;
use crate::state::{App, AppState};

const EVERY: Duration = Duration::from_secs(1);
/// Most exams started or stopped in one round.
const MAX_PER_ROUND: usize = 100;
const ACTOR: &str = "scheduler";

pub async fn run(app: AppState) {
    while !app.shutdown.sleep(EVERY).await {
        if let Err(e) = run_due(&app).await {
            tracing::warn!(error = %e, "scheduler: failed");
        }
    }
}

/// Starts and stops the exams that are due; how many.
pub async fn run_due(app: &App) -> Result<usize, JobError> {
    let mut c = app.db.get().await?;
    let mut done = 0;
    for _ in 0..MAX_PER_ROUND {
        let tx = c.transaction().await?;
        let Some((exam, starting)) = crate::db::exams::claim_due(&tx).await? else { break };
        let r = if starting {
            crate::db::exams::start_in(&tx, exam).await
        } else {
            crate::db::exams::stop_in(&tx, exam).await
        };
        let action = if starting { "exam.start" } else { "exam.stop" };
        match r {
            Ok(room) => {
                crate::db::audit::append(&*tx, ACTOR, action, Some(room), json!({"exam": exam})).await?;
                tx.commit().await?;
                tracing::info!(exam, action, "scheduler: exam {exam}");
                done += 1;
            }
            Err(ExamError::Db(e)) => return Err(e.into()),
            Err(e) => {
                drop(tx);
                let tx = c.transaction().await?;
                let room = crate::db::exams::unschedule(&*tx, exam).await?;
                let detail = json!({"exam": exam, "error": e.to_string()});
                crate::db::audit::append(&*tx, ACTOR, "exam.start_failed", room, detail).await?;
                tx.commit().await?;
                tracing::warn!(exam, error = %e, "scheduler: exam {exam} could not start");
            }
        }
    }
    Ok(done)
}
