//! LISTEN for changes made by any hub (or the command line), on a
//! connection of its own, for as long as the hub runs.
//!
//! Guarantees:
//! 1. An exam start or stop reaches a connected desk within 2 s: its
//!    transaction notifies `invigil_sessions`; this hub re-reads the open
//!    sessions of that exam's desks connected here and pushes the changed
//!    ones.
//! 2. An enrolment, rotation or revocation (`invigil_desks`) clears this
//!    hub's token cache; a revoked desk connected here is disconnected.
//! 3. The listener reconnects with backoff (1 s doubling to 10 s); while
//!    it is down the token cache is not trusted (`App::notify_up`), and on
//!    reconnecting every connected desk's session is re-read at once.

use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::mpsc;

use super::JobError;
use crate::db::desks::DESKS_CHANNEL;
use crate::db::exams::SESSIONS_CHANNEL;
use crate::state::{App, AppState};

pub async fn run(app: AppState) {
    let mut backoff = Duration::from_secs(1);
    loop {
        let (tx, mut rx) = mpsc::channel(1024);
        match app.db.listening(tx, &[SESSIONS_CHANNEL, DESKS_CHANNEL]).await {
            Ok((_client, task)) => {
                set_up(&app, true);
                backoff = Duration::from_secs(1);
                tracing::info!("sessions: listening for changes");
                // What changed while nobody listened.
                app.tokens.clear();
                if let Err(e) = crate::sessions::push_to(&app, &app.connections.connected()).await {
                    tracing::warn!(error = %e, "sessions: reconcile after connecting failed");
                }
                loop {
                    tokio::select! {
                        n = rx.recv() => match n {
                            Some(n) => on_notification(&app, n.channel(), n.payload()).await,
                            None => break,
                        },
                        _ = app.shutdown.wait() => {
                            task.abort();
                            return;
                        }
                    }
                }
                task.abort();
                set_up(&app, false);
                tracing::warn!("sessions: the LISTEN connection dropped; reconnecting");
            }
            Err(e) => {
                tracing::warn!(error = %e, retry_s = backoff.as_secs(), "sessions: cannot LISTEN");
            }
        }
        if app.shutdown.sleep(backoff).await {
            return;
        }
        backoff = (backoff * 2).min(Duration::from_secs(10));
    }
}

fn set_up(app: &App, up: bool) {
    app.notify_up.store(up, Ordering::Relaxed);
    app.metrics.notify_connected.set(up as i64);
}

async fn on_notification(app: &App, channel: &str, payload: &str) {
    if channel == DESKS_CHANNEL {
        // Enrolled, rotated or revoked: no cached token may outlive it.
        app.tokens.clear();
        if let Err(e) = close_if_revoked(app, payload).await {
            tracing::warn!(error = %e, "sessions: handling a desk change failed");
        }
        return;
    }
    let Ok(exam) = payload.parse::<i64>() else {
        tracing::warn!(channel, payload = ?payload, "sessions: ignoring a notification");
        return;
    };
    match exam_changed(app, exam).await {
        Ok(n) => tracing::debug!(exam, pushed = n, "sessions: exam changed"),
        Err(e) => tracing::warn!(exam, error = %e, "sessions: pushing an exam change failed; the reconcile retries"),
    }
}

/// A revoked desk that is connected here is disconnected.
async fn close_if_revoked(app: &App, device_id: &str) -> Result<(), JobError> {
    let connected = app.connections.connected();
    if connected.is_empty() {
        return Ok(());
    }
    let c = app.db.get().await?;
    if let Some((id, true)) = crate::db::desks::revoked(&**c, device_id).await?
        && connected.contains(&id)
    {
        app.connections.close(id, "the desk's token was revoked");
    }
    Ok(())
}

/// Pushes the sessions of `exam`'s desks connected here.
async fn exam_changed(app: &App, exam: i64) -> Result<usize, JobError> {
    let c = app.db.get().await?;
    let roster = crate::db::exams::roster_desks(&**c, exam).await?;
    drop(c);
    let connected = app.connections.connected();
    let here: Vec<i64> = roster.into_iter().filter(|d| connected.contains(d)).collect();
    crate::sessions::push_to(app, &here).await
}
