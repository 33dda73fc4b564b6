//! Every [`EVERY`]: the changed live states of the desks connected to this
//! hub go to `desk_live` in one statement, where every hub's room view
//! reads them. At shutdown, this hub's desks are written as disconnected.

use std::time::Duration;

use super::JobError;
use crate::db::desk_live::LiveRow;
use crate::state::{App, AppState};

/// How often changed live states go to `desk_live`.
pub const EVERY: Duration = Duration::from_millis(500);

pub async fn run(app: AppState) {
    loop {
        let stopping = app.shutdown.sleep(EVERY).await;
        let rows = if stopping { app.connections.all_gone(app.clock.now()) } else { app.connections.take_dirty() };
        if !rows.is_empty() {
            match write(&app, &rows).await {
                Ok(()) => {
                    app.metrics.live_rows_written.inc_by(rows.len() as u64);
                }
                Err(e) => {
                    tracing::warn!(error = %e, rows = rows.len(), "live: writing desk_live failed; the next state retries")
                }
            }
        }
        if stopping {
            return;
        }
    }
}

async fn write(app: &App, rows: &[LiveRow]) -> Result<(), JobError> {
    let c = app.db.get().await?;
    crate::db::desk_live::write(&c, &app.cfg.hub_id, rows).await?;
    Ok(())
}
