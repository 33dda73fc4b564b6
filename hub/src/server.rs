//! Starting and stopping a hub: `invigil-hub run` calls [`start`] then
//! [`Running::stop`]; tests run the same in-process.
//!
//! Start, in order: connect to PostgreSQL, migrate (under the advisory
//! lock), open the pool's connections with the ingest statement prepared,
//! open the clip store, bind the listen address, then serve and start the
//! background loops (LISTEN, reconcile, scheduler, live flush, retention).
//!
//! Stop, in order (graceful: batches in flight finish): stop accepting
//! connections; tell WebSockets to close (1012) and loops to end; wait for
//! requests in flight (at most `server.shutdown_timeout_s`); write this
//! hub's desks as disconnected to `desk_live`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::api::{App, DeskCache, Limiter};
use crate::config::Validated;
use crate::db::Db;

/// Returns once `shutdown` is true (or its sender is gone).
pub async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|s| *s).await;
}

/// A running hub.
pub struct Running {
    pub addr: SocketAddr,
    pub app: Arc<App>,
    shutdown: watch::Sender<bool>,
    serve: JoinHandle<std::io::Result<()>>,
    loops: Vec<JoinHandle<()>>,
}

/// Connects, migrates and serves `cfg`.
pub async fn start(cfg: Validated) -> anyhow::Result<Running> {
    let db = Db::connect_tls(&cfg.database_url, cfg.pool_size, cfg.ca_file.as_deref()).await?;
    let mut mc = db.dedicated().await?;
    let m = crate::db::migrate::migrate(&mut mc).await?;
    drop(mc);
    if m.from != m.to {
        tracing::info!(from = m.from, to = m.to, "database: schema upgraded");
    }
    if let Err(e) = crate::db::ingest::warm(&db, cfg.pool_size).await {
        tracing::warn!(error = %crate::db::describe(&e), "database: warming the pool failed; connections open on demand");
    }
    let store = cfg.storage.build()?;
    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .map_err(|e| anyhow::anyhow!("server.listen: cannot listen on {}: {e}", cfg.listen))?;
    let addr = listener.local_addr()?;
    let (tx, rx) = watch::channel(false);
    let app = Arc::new(App {
        limiter: Limiter::new(cfg.limits.batches_per_s, cfg.limits.batch_burst),
        cfg,
        db,
        store,
        live: crate::live::Live::new(),
        metrics: crate::metrics::Metrics::new(),
        desks: DeskCache::default(),
        shutdown: rx.clone(),
        notify_up: Default::default(),
        skew_logged: Default::default(),
    });
    let router = crate::api::router(app.clone());
    let mut stop = rx.clone();
    let serve = tokio::spawn(async move {
        axum::serve(listener, router).with_graceful_shutdown(async move { stopped(&mut stop).await }).await
    });
    let loops = vec![
        tokio::spawn(crate::sessions::listen(app.clone(), rx.clone())),
        tokio::spawn(crate::sessions::reconcile(app.clone(), rx.clone())),
        tokio::spawn(crate::sessions::scheduler(app.clone(), rx.clone())),
        tokio::spawn(crate::sessions::flush_live(app.clone(), rx.clone())),
        tokio::spawn(crate::retention::run(app.clone(), rx.clone())),
    ];
    tracing::info!(%addr, hub_id = %app.cfg.hub_id, "hub: serving");
    Ok(Running { addr, app, shutdown: tx, serve, loops })
}

impl Running {
    /// Stops gracefully (see the module docs); false if requests were still
    /// running at the timeout.
    pub async fn stop(self) -> bool {
        let _ = self.shutdown.send(true);
        let limit = Duration::from_secs(self.app.cfg.shutdown_timeout_s);
        let clean = match tokio::time::timeout(limit, self.serve).await {
            Ok(Ok(Ok(()))) => true,
            Ok(Ok(Err(e))) => {
                tracing::warn!(error = %e, "hub: the server ended with an error");
                true
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "hub: the server task failed");
                false
            }
            Err(_) => {
                tracing::warn!(limit_s = limit.as_secs(), "hub: requests still running at the shutdown timeout");
                false
            }
        };
        for l in self.loops {
            // The loops end at the signal; the live flush writes the
            // disconnects last.
            if tokio::time::timeout(Duration::from_secs(5), l).await.is_err() {
                tracing::warn!("hub: a background loop did not stop within 5 s");
            }
        }
        tracing::info!(clean, "hub: stopped");
        clean
    }
}
