//! `invigil-hub run`: the server. Migrates the schema first; tells systemd
//! READY=1 once serving and STOPPING=1 at the first SIGTERM/SIGINT, then
//! stops gracefully (see `server`); a second signal exits at once.

use crate::config::Validated;
use crate::server::StartError;

pub async fn run(cfg: Validated) -> i32 {
    let running = match crate::server::start(cfg).await {
        Ok(r) => r,
        Err(e @ StartError::Config(_)) => return super::usage(&e.to_string()),
        Err(e @ StartError::Failed(_)) => return super::fail(&e.to_string()),
    };
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
    wait_for_signal().await;
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
    tracing::info!("hub: stopping (a second signal exits at once)");
    tokio::spawn(async {
        wait_for_signal().await;
        eprintln!("invigil-hub: second signal: exiting at once");
        std::process::exit(crate::EXIT_FAILURE);
    });
    if running.stop().await { 0 } else { crate::EXIT_FAILURE }
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
        // Without signal handlers, run until killed.
        std::future::pending::<()>().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}
