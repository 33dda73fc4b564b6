//! The audit log: who did what, when. Every admin action (enrolment,
//! revocation, users, exams) and every clip view is written here, in the
//! same transaction as the action where there is one.

use tokio_postgres::GenericClient;

/// Appends one entry.
pub async fn log(
    c: &impl GenericClient,
    actor: &str,
    action: &str,
    detail: serde_json::Value,
) -> Result<(), tokio_postgres::Error> {
    c.execute("INSERT INTO audit_log (actor, action, detail) VALUES ($1, $2, $3)", &[&actor, &action, &detail]).await?;
    Ok(())
}

/// The newest entries (for the console and tests).
pub async fn recent(
    c: &impl GenericClient,
    limit: i64,
) -> Result<Vec<(String, String, serde_json::Value)>, tokio_postgres::Error> {
    Ok(c.query("SELECT actor, action, detail FROM audit_log ORDER BY id DESC LIMIT $1", &[&limit])
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect())
}
