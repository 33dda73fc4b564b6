//! Getting session changes to the desks, whichever hub they are connected
//! to, and the hub's other background loops.
//!
//! Guarantees:
//! 1. An exam start or stop committed by any hub (or by the command line)
//!    reaches a connected desk within 2 s: the transaction notifies
//!    `invigil_sessions`; each hub's listener (a connection of its own)
//!    re-reads the open sessions of that exam's desks connected to it and
//!    pushes the changed ones.
//! 2. A missed notification costs at most [`RECONCILE`]: every hub
//!    re-reads the sessions of all its connected desks that often, and at
//!    once after its listener reconnects.
//! 3. The listener reconnects with backoff (1 s doubling to 10 s) for as
//!    long as the hub runs; while it is down the desk-token cache is not
//!    trusted (a revocation is seen by the next request).
//! 4. The scheduler starts and stops due exams every second; claims are
//!    atomic (see `db::exams`), so any number of hubs may run it.
//! 5. Live states are written to `desk_live` every [`FLUSH`], changed
//!    desks only, in one statement.

use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use crate::api::AppState;
use crate::db::desks::DESKS_CHANNEL;
use crate::db::exams::SESSIONS_CHANNEL;

/// How often each hub re-reads its connected desks' sessions.
pub const RECONCILE: Duration = Duration::from_secs(3);
/// How often changed live states go to `desk_live`.
pub const FLUSH: Duration = Duration::from_millis(500);
const SCHEDULER: Duration = Duration::from_secs(1);

/// Reads the open sessions of `desks` and pushes the changed ones.
pub async fn push_to(app: &AppState, desks: &[i64]) -> anyhow::Result<usize> {
    if desks.is_empty() {
        return Ok(0);
    }
    let c = app.db.get().await.map_err(|e| anyhow::anyhow!(crate::db::describe(&e)))?;
    let sessions = crate::db::exams::sessions_for(&**c, desks).await?;
    Ok(app.live.push_sessions(desks, &sessions))
}

/// Waits until `shutdown` is true or `d` passes; true if stopping.
async fn pause(shutdown: &mut watch::Receiver<bool>, d: Duration) -> bool {
    tokio::time::timeout(d, crate::server::stopped(shutdown)).await.is_ok()
}

/// LISTEN for session and desk changes until shutdown; reconnects.
pub async fn listen(app: AppState, mut shutdown: watch::Receiver<bool>) {
    let mut backoff = Duration::from_secs(1);
    loop {
        let (tx, mut rx) = mpsc::channel(1024);
        let conn = async {
            let (client, task) = app.db.listening(tx).await?;
            client.batch_execute(&format!("LISTEN {SESSIONS_CHANNEL}; LISTEN {DESKS_CHANNEL}")).await?;
            anyhow::Ok((client, task))
        }
        .await;
        match conn {
            Ok((_client, task)) => {
                app.notify_up.store(true, Ordering::Relaxed);
                app.metrics.notify_connected.set(1);
                backoff = Duration::from_secs(1);
                tracing::info!("sessions: listening for changes");
                // What changed while nobody listened.
                app.desks.clear();
                if let Err(e) = push_to(&app, &app.live.connected()).await {
                    tracing::warn!(error = %e, "sessions: reconcile after connecting failed");
                }
                loop {
                    tokio::select! {
                        n = rx.recv() => match n {
                            Some(n) => on_notification(&app, n.channel(), n.payload()).await,
                            None => break,
                        },
                        _ = crate::server::stopped(&mut shutdown) => {
                            task.abort();
                            return;
                        }
                    }
                }
                task.abort();
                app.notify_up.store(false, Ordering::Relaxed);
                app.metrics.notify_connected.set(0);
                tracing::warn!("sessions: the LISTEN connection dropped; reconnecting");
            }
            Err(e) => {
                tracing::warn!(error = %e, retry_s = backoff.as_secs(), "sessions: cannot LISTEN");
            }
        }
        if pause(&mut shutdown, backoff).await {
            return;
        }
        backoff = (backoff * 2).min(Duration::from_secs(10));
    }
}

async fn on_notification(app: &AppState, channel: &str, payload: &str) {
    if channel == DESKS_CHANNEL {
        // Enrolled, rotated or revoked: no cached token may outlive it.
        app.desks.clear();
        let connected = app.live.connected();
        if connected.is_empty() {
            return;
        }
        // A revoked desk that is connected here is disconnected.
        let r = async {
            let c = app.db.get().await.map_err(|e| anyhow::anyhow!(crate::db::describe(&e)))?;
            let row =
                c.query_opt("SELECT id, token_sha256 IS NULL FROM desks WHERE device_id = $1", &[&payload]).await?;
            if let Some(row) = row
                && row.get::<_, bool>(1)
                && connected.contains(&row.get::<_, i64>(0))
            {
                app.live.close(row.get(0), "the desk's token was revoked");
            }
            anyhow::Ok(())
        }
        .await;
        if let Err(e) = r {
            tracing::warn!(error = %e, "sessions: handling a desk change failed");
        }
        return;
    }
    let Ok(exam) = payload.parse::<i64>() else {
        tracing::warn!(channel, payload, "sessions: ignoring a notification");
        return;
    };
    let r = async {
        let c = app.db.get().await.map_err(|e| anyhow::anyhow!(crate::db::describe(&e)))?;
        let roster = crate::db::exams::roster_desks(&**c, exam).await?;
        drop(c);
        let connected = app.live.connected();
        let here: Vec<i64> = roster.into_iter().filter(|d| connected.contains(d)).collect();
        push_to(app, &here).await
    }
    .await;
    match r {
        Ok(n) => tracing::debug!(exam, pushed = n, "sessions: exam changed"),
        Err(e) => tracing::warn!(exam, error = %e, "sessions: pushing an exam change failed; the reconcile retries"),
    }
}

/// Every [`RECONCILE`]: the sessions of every connected desk.
pub async fn reconcile(app: AppState, mut shutdown: watch::Receiver<bool>) {
    while !pause(&mut shutdown, RECONCILE).await {
        match push_to(&app, &app.live.connected()).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(pushed = n, "sessions: reconcile pushed changes a notification missed"),
            Err(e) => tracing::warn!(error = %e, "sessions: reconcile failed"),
        }
    }
}

/// Every second: start and stop the exams that are due.
pub async fn scheduler(app: AppState, mut shutdown: watch::Receiver<bool>) {
    while !pause(&mut shutdown, SCHEDULER).await {
        let r = async {
            let mut c = app.db.get().await.map_err(|e| anyhow::anyhow!(crate::db::describe(&e)))?;
            anyhow::Ok(crate::db::exams::run_due(&mut c).await?)
        }
        .await;
        if let Err(e) = r {
            tracing::warn!(error = %e, "scheduler: failed");
        }
    }
}

/// Every [`FLUSH`]: changed live states to `desk_live`. At shutdown, this
/// hub's desks are written as disconnected.
pub async fn flush_live(app: AppState, mut shutdown: watch::Receiver<bool>) {
    loop {
        let stopping = pause(&mut shutdown, FLUSH).await;
        let mut rows = app.live.take_dirty();
        if stopping {
            rows = app.live.all_gone(chrono::Utc::now());
        }
        if !rows.is_empty() {
            let r = async {
                let c = app.db.get().await.map_err(|e| anyhow::anyhow!(crate::db::describe(&e)))?;
                crate::db::live::write(&c, &app.cfg.hub_id, &rows).await?;
                anyhow::Ok(())
            }
            .await;
            match r {
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
