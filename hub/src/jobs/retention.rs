//! Retention: an exam's clips (objects and rows) and scores are deleted
//! `retention_days` after it stopped (per exam, default 30, set when it is
//! created). The console shows the date ([`crate::domain::delete_at`]).
//!
//! Guarantees:
//! 1. Each due exam is claimed with `FOR UPDATE SKIP LOCKED` in a
//!    transaction of its own, as the scheduler claims exams: with several
//!    hubs running the job, each exam is purged by one of them.
//! 2. In that transaction, in order: the clip objects are deleted from
//!    storage (one already gone is fine), then the clip rows and the
//!    scores, then `purged_at` is set and the audit log says what went.
//!    A crash in between rolls the rows back; the next run deletes the
//!    objects again (idempotent) and finishes.
//! 3. Incidents, review decisions, batches (counts, the idempotency keys)
//!    and the audit log are kept: what was flagged and decided stays on
//!    record, the recordings and the score series go.
//! 4. Bounded: at most [`MAX_PER_RUN`] exams a run; the job runs every
//!    [`EVERY`] (and once at start).

use std::time::Duration;

use super::JobError;
use crate::state::{App, AppState};

/// How often each hub looks for due exams.
pub const EVERY: Duration = Duration::from_secs(60);
/// Most exams purged in one run.
pub const MAX_PER_RUN: usize = 20;

/// What one purge removed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Purged {
    pub exams: usize,
    pub clips: u64,
    pub scores: u64,
}

/// Purges every exam that is due now (at most [`MAX_PER_RUN`]).
pub async fn purge_due(app: &App) -> Result<Purged, JobError> {
    let mut c = app.db.get().await?;
    let mut out = Purged::default();
    for _ in 0..MAX_PER_RUN {
        let tx = c.transaction().await?;
        let Some(due) = crate::db::retention::claim_due(&tx).await? else {
            break;
        };
        let keys = crate::db::retention::clips_of(&tx, due.id).await?;
        for (_, key) in &keys {
            app.store.delete(key).await.map_err(|e| JobError::Storage(format!("deleting {key}: {e}")))?;
        }
        let ids: Vec<i64> = keys.iter().map(|k| k.0).collect();
        let clips = crate::db::retention::delete_clips(&tx, &ids).await?;
        let scores = crate::db::retention::delete_scores(&tx, due.id).await?;
        crate::db::retention::mark_purged(&tx, due.id).await?;
        let detail =
            serde_json::json!({"exam": due.id, "retention_days": due.retention_days, "clips": clips, "scores": scores});
        crate::db::audit::append(&*tx, "retention", "exam.purge", Some(due.room_id), detail).await?;
        tx.commit().await?;
        tracing::info!(exam = due.id, clips, scores, retention_days = due.retention_days, "retention: exam purged");
        out.exams += 1;
        out.clips += clips;
        out.scores += scores;
    }
    Ok(out)
}

/// Every [`EVERY`], and once at start: [`purge_due`].
pub async fn run(app: AppState) {
    loop {
        if let Err(e) = purge_due(&app).await {
            tracing::warn!(error = %e, "retention: purge failed; retried at the next run");
        }
        if app.shutdown.sleep(EVERY).await {
            return;
        }
    }
}
