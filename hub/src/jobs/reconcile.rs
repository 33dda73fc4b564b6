//! Every [`EVERY`], the sessions of every desk connected to this hub are
//! re-read and the changed ones pushed: a lost notification costs at most
//! this long.

use std::time::Duration;

use crate::state::AppState;

/// How often each hub re-reads its connected desks' sessions.
pub const EVERY: Duration = Duration::from_secs(3);

pub async fn run(app: AppState) {
    while !app.shutdown.sleep(EVERY).await {
        match crate::sessions::push_to(&app, &app.connections.connected()).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(pushed = n, "sessions: reconcile pushed changes a notification missed"),
            Err(e) => tracing::warn!(error = %e, "sessions: reconcile failed"),
        }
    }
}
