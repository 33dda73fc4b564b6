//! The statements of the retention job (`crate::jobs::retention`): claim a
//! due exam, list its clips, delete its clip rows and scores, mark it
//! purged. Each runs in the job's transaction.

use tokio_postgres::Transaction;

/// An exam whose retention has run out.
#[derive(Clone, Copy, Debug)]
pub struct DueExam {
    pub id: i64,
    pub room_id: i64,
    pub retention_days: i32,
}

/// The oldest due exam, claimed (FOR UPDATE SKIP LOCKED: several hubs run
/// the job, each exam is purged by one).
pub async fn claim_due(tx: &Transaction<'_>) -> Result<Option<DueExam>, tokio_postgres::Error> {
    Ok(tx
        .query_opt(
            "SELECT id, room_id, retention_days FROM exams
             WHERE state = 'stopped' AND purged_at IS NULL
               AND stopped_at + retention_days * interval '1 day' <= now()
             ORDER BY stopped_at LIMIT 1 FOR UPDATE SKIP LOCKED",
            &[],
        )
        .await?
        .map(|r| DueExam { id: r.get("id"), room_id: r.get("room_id"), retention_days: r.get("retention_days") }))
}

/// The clips (row id, object key) of an exam's sessions.
pub async fn clips_of(tx: &Transaction<'_>, exam: i64) -> Result<Vec<(i64, String)>, tokio_postgres::Error> {
    Ok(tx
        .query(
            "SELECT c.id, c.object_key FROM clips c JOIN incidents i ON i.id = c.incident_id
             JOIN sessions s ON s.id = i.session_id WHERE s.exam_id = $1",
            &[&exam],
        )
        .await?
        .iter()
        .map(|r| (r.get("id"), r.get("object_key")))
        .collect())
}

/// Deletes these clip rows; how many went.
pub async fn delete_clips(tx: &Transaction<'_>, ids: &[i64]) -> Result<u64, tokio_postgres::Error> {
    tx.execute("DELETE FROM clips WHERE id = ANY($1)", &[&ids]).await
}

/// Deletes the scores of an exam's sessions; how many went.
pub async fn delete_scores(tx: &Transaction<'_>, exam: i64) -> Result<u64, tokio_postgres::Error> {
    tx.execute(
        "DELETE FROM scores WHERE batch_id IN
           (SELECT b.id FROM batches b JOIN sessions s ON s.id = b.session_id WHERE s.exam_id = $1)",
        &[&exam],
    )
    .await
}

/// Marks an exam purged.
pub async fn mark_purged(tx: &Transaction<'_>, exam: i64) -> Result<(), tokio_postgres::Error> {
    tx.execute("UPDATE exams SET purged_at = now() WHERE id = $1", &[&exam]).await?;
    Ok(())
}
