//! Starting and stopping a hub: `invigil-hub run` calls [`start`] then
//! [`Running::stop`]; tests run the same in-process.
//!
//! Start, in order: connect to PostgreSQL, migrate (under the advisory
//! lock), open the pool's connections with the ingest statement prepared,
//! open the clip store, bind the listen address, then serve and start the
//! background jobs ([`crate::jobs`]).
//!
//! Stop, in order (graceful: batches in flight finish): raise the one
//! [`Shutdown`]: the server stops accepting connections, WebSockets close
//! (1012) and jobs end; wait for requests in flight (at most
//! `server.shutdown_timeout_s`); the live flush writes this hub's desks as
//! disconnected to `desk_live` last.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;

use crate::clock::SharedClock;
use crate::config::Validated;
use crate::db::Db;
use crate::shutdown::{Shutdown, Trigger};
use crate::state::App;

/// Why a hub did not start: the config's fault (exit 2) or the world's (exit 1).
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A value of the config cannot work (the listen address, the storage).
    #[error("{0}")]
    Config(String),
    #[error("{0:#}")]
    Failed(#[from] anyhow::Error),
}

/// A running hub.
pub struct Running {
    pub addr: SocketAddr,
    pub app: Arc<App>,
    trigger: Trigger,
    serve: JoinHandle<std::io::Result<()>>,
    jobs: Vec<JoinHandle<()>>,
}

/// Connects, migrates and serves `cfg` on the real clock.
pub async fn start(cfg: Validated) -> Result<Running, StartError> {
    start_with(cfg, crate::clock::system()).await
}

/// As [`start`], on `clock`.
pub async fn start_with(cfg: Validated, clock: SharedClock) -> Result<Running, StartError> {
    let db = Db::connect_tls(&cfg.database_url, cfg.pool_size, cfg.ca_file.as_deref()).await?;
    let mut mc = db.dedicated().await?;
    let m = crate::db::migrate::migrate(&mut mc).await.map_err(anyhow::Error::from)?;
    drop(mc);
    if m.from != m.to {
        tracing::info!(from = m.from, to = m.to, "database: schema upgraded");
    }
    if let Err(e) = crate::db::ingest::warm(&db, cfg.pool_size).await {
        tracing::warn!(error = %crate::db::describe(&e), "database: warming the pool failed; connections open on demand");
    }
    let store = cfg.storage.build().map_err(|e| StartError::Config(format!("{e:#}")))?;
    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .map_err(|e| StartError::Config(format!("server.listen: cannot listen on {}: {e}", cfg.listen)))?;
    let addr = listener.local_addr().map_err(anyhow::Error::from)?;
    let (trigger, shutdown) = Shutdown::new();
    let app = Arc::new(App::new(cfg, db, store, shutdown.clone(), clock));
    let router = crate::routes::router(app.clone());
    let serve = tokio::spawn(async move {
        axum::serve(listener, router).with_graceful_shutdown(async move { shutdown.wait().await }).await
    });
    let jobs = crate::jobs::spawn_all(&app);
    tracing::info!(%addr, hub_id = %app.cfg.hub_id, "hub: serving");
    Ok(Running { addr, app, trigger, serve, jobs })
}

impl Running {
    /// Stops gracefully (see the module docs); false if requests were still
    /// running at the timeout.
    pub async fn stop(self) -> bool {
        self.trigger.raise();
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
        for j in self.jobs {
            // The jobs end at the signal; the live flush writes the
            // disconnects last.
            if tokio::time::timeout(Duration::from_secs(5), j).await.is_err() {
                tracing::warn!("hub: a background job did not stop within 5 s");
            }
        }
        tracing::info!(clean, "hub: stopped");
        clean
    }
}
