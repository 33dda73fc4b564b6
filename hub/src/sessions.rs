//! A connected desk's session, as the hub's records say, pushed down its
//! WebSocket when it differs from what was last sent (see
//! [`crate::connections`]). Called on connect, on a notification of an
//! exam change, and by the periodic reconcile.

use crate::error::JobError;
use crate::state::App;

/// Reads the open sessions of `desks` and pushes the changed ones; how
/// many were pushed.
pub async fn push_to(app: &App, desks: &[i64]) -> Result<usize, JobError> {
    if desks.is_empty() {
        return Ok(0);
    }
    let c = app.db.get().await?;
    let sessions = crate::db::sessions::open_for(&**c, desks).await?;
    Ok(app.connections.push_sessions(desks, &sessions))
}
