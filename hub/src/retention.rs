//! Retention: an exam's clips (objects and rows) and scores are deleted
//! `retention_days` after it stopped (per exam, default 30, set when it is
//! created). The console shows the date ([`delete_at`]).
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

use chrono::{DateTime, Utc};
use tokio::sync::watch;

use crate::api::AppState;

/// How often each hub looks for due exams.
pub const EVERY: Duration = Duration::from_secs(60);
/// Most exams purged in one run.
pub const MAX_PER_RUN: usize = 20;

/// When an exam's clips and scores are (or were) deleted: its stop plus
/// its retention; None while it has not stopped.
pub fn delete_at(stopped_at: Option<DateTime<Utc>>, retention_days: i32) -> Option<DateTime<Utc>> {
    stopped_at.map(|t| t + chrono::Duration::days(retention_days as i64))
}

/// What one purge removed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Purged {
    pub exams: usize,
    pub clips: u64,
    pub scores: u64,
}

/// Purges every exam that is due now (at most [`MAX_PER_RUN`]).
pub async fn purge_due(app: &AppState) -> anyhow::Result<Purged> {
    let mut c = app.db.get().await.map_err(|e| anyhow::anyhow!(crate::db::describe(&e)))?;
    let mut out = Purged::default();
    for _ in 0..MAX_PER_RUN {
        let tx = c.transaction().await?;
        let Some(row) = tx
            .query_opt(
                "SELECT id, room_id, retention_days FROM exams
                 WHERE state = 'stopped' AND purged_at IS NULL
                   AND stopped_at + retention_days * interval '1 day' <= now()
                 ORDER BY stopped_at LIMIT 1 FOR UPDATE SKIP LOCKED",
                &[],
            )
            .await?
        else {
            break;
        };
        let (exam, room, days): (i64, i64, i32) = (row.get(0), row.get(1), row.get(2));
        let keys: Vec<(i64, String)> = tx
            .query(
                "SELECT c.id, c.object_key FROM clips c JOIN incidents i ON i.id = c.incident_id
                 JOIN sessions s ON s.id = i.session_id WHERE s.exam_id = $1",
                &[&exam],
            )
            .await?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        for (_, key) in &keys {
            app.store.delete(key).await.map_err(|e| anyhow::anyhow!("storage: deleting {key}: {e}"))?;
        }
        let ids: Vec<i64> = keys.iter().map(|k| k.0).collect();
        let clips = tx.execute("DELETE FROM clips WHERE id = ANY($1)", &[&ids]).await?;
        let scores = tx
            .execute(
                "DELETE FROM scores WHERE batch_id IN
                   (SELECT b.id FROM batches b JOIN sessions s ON s.id = b.session_id WHERE s.exam_id = $1)",
                &[&exam],
            )
            .await?;
        tx.execute("UPDATE exams SET purged_at = now() WHERE id = $1", &[&exam]).await?;
        crate::db::audit::log_room(
            &*tx,
            "retention",
            "exam.purge",
            room,
            serde_json::json!({"exam": exam, "retention_days": days, "clips": clips, "scores": scores}),
        )
        .await?;
        tx.commit().await?;
        tracing::info!(exam, clips, scores, retention_days = days, "retention: exam {exam} purged");
        out.exams += 1;
        out.clips += clips;
        out.scores += scores;
    }
    Ok(out)
}

/// Every [`EVERY`], and once at start: [`purge_due`].
pub async fn run(app: AppState, mut shutdown: watch::Receiver<bool>) {
    loop {
        if let Err(e) = purge_due(&app).await {
            tracing::warn!(error = %e, "retention: purge failed; retried at the next run");
        }
        if tokio::time::timeout(EVERY, crate::server::stopped(&mut shutdown)).await.is_ok() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_delete_date_is_the_stop_plus_the_retention() {
        let t: DateTime<Utc> = "2026-12-01T10:00:00Z".parse().unwrap();
        assert_eq!(delete_at(Some(t), 30).unwrap().to_rfc3339(), "2026-12-31T10:00:00+00:00");
        assert_eq!(delete_at(None, 30), None);
    }
}
