//! The live server on `server.listen`: HTTP + WebSocket with axum.
//!
//! - `GET /live` (WebSocket): every analysis the run loop produces, as
//!   JSON, and an incident object when an incident opens and when it
//!   closes ([`live`]).
//! - `GET /analyze` (WebSocket): the browser protocol of CONTRACTS.md: one
//!   reply per JPEG frame, in order; `dropped` for the oldest waiting frame
//!   when the client sends too fast ([`analyze`]).
//! - `POST /session/start` `{"session_id","student_id"}`, `POST /session/stop`,
//!   `GET /session` ([`sessions`]).
//! - `GET /preview.jpg` and `GET /` (the status page) ([`preview`]).
//! - `GET /healthz` (never needs the token) ([`health`]), `GET /metrics`
//!   (Prometheus text through `prometheus-client`, [`metrics`]).
//!
//! With a token configured, every endpoint but `/healthz` needs
//! `Authorization: Bearer <token>` (or `?token=` for browsers' WebSockets),
//! compared in constant time ([`auth`]).
//!
//! Bounds: at most [`Limits::max_connections`] WebSockets (a semaphore; one
//! more gets 503), [`Limits::max_message`] bytes a message, [`Limits::queue`]
//! frames waiting per `/analyze` connection, 64 `/live` messages buffered
//! per client (a slower client skips, counted). Stopping waits at most 2 s
//! for connections.

pub mod analyze;
pub mod auth;
pub mod health;
pub mod live;
pub mod metrics;
pub mod preview;
pub mod sessions;

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;
use tokio::sync::Semaphore;

pub use analyze::decode_jpeg;
pub use health::Health;
pub use live::Live;
pub use preview::Preview;

use crate::analysis::Analyzer;
use crate::domain::{DeskState, Incident, Session};
use crate::sessions::Sessions;
use crate::shutdown::Shutdown;

/// Makes one analyzer per `/analyze` connection.
pub type AnalyzerFactory = Arc<dyn Fn() -> Result<Analyzer, String> + Send + Sync>;

/// Bounds of the server.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Largest WebSocket message accepted.
    pub max_message: usize,
    /// Frames waiting per `/analyze` connection before the oldest is dropped.
    pub queue: usize,
    /// Concurrent WebSocket connections.
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self { max_message: 8 << 20, queue: 4, max_connections: 16 }
    }
}

/// Everything the handlers share.
pub struct Shared {
    pub live: Live,
    pub sessions: Sessions,
    pub health: Arc<Health>,
    pub preview: Preview,
    pub token: Option<String>,
    pub analyzer: AnalyzerFactory,
    pub limits: Limits,
    pub writer: Option<Arc<crate::spool::WriterStats>>,
    pub sync: Option<Arc<crate::sync::SyncStats>>,
    pub upload: Option<Arc<crate::upload::UploadStats>>,
    /// The spool's folder, for the free-disk figure.
    pub spool_dir: Option<PathBuf>,
    /// What the desk is doing now (the hub link reports it). Receivers are
    /// woken only when an incident opens or closes or the session changes;
    /// the latest frame is always there to read.
    pub desk_state: tokio::sync::watch::Sender<DeskState>,
    conns: Arc<Semaphore>,
}

impl Shared {
    pub fn new(analyzer: AnalyzerFactory, token: Option<String>, limits: Limits) -> Self {
        Self {
            live: Live::new(),
            sessions: Sessions::default(),
            health: Arc::default(),
            preview: Preview::default(),
            token,
            analyzer,
            conns: Arc::new(Semaphore::new(limits.max_connections)),
            limits,
            writer: None,
            sync: None,
            upload: None,
            spool_dir: None,
            desk_state: tokio::sync::watch::Sender::new(DeskState::default()),
        }
    }

    /// True when the run loop should JPEG-encode this frame for `/preview.jpg`.
    pub fn preview_due(&self) -> bool {
        self.preview.due()
    }

    /// Stores a preview of a packed-RGB frame (rows `stride` bytes apart).
    pub fn set_preview(&self, width: usize, height: usize, stride: usize, data: &[u8]) {
        self.preview.set(width, height, stride, data)
    }

    /// Sends one analysis to `/live` clients; never blocks.
    pub fn publish(&self, a: &proto::Analysis) {
        self.live.publish(a)
    }

    /// An incident opened or closed, to `/live`.
    pub fn publish_incident(&self, device_id: &str, inc: &Incident) {
        self.live.publish_incident(device_id, inc)
    }

    /// The current session, if any.
    pub fn current_session(&self) -> Option<Session> {
        self.sessions.current()
    }
}

/// The router (for tests and [`serve`]).
pub fn router(state: Arc<Shared>) -> Router {
    Router::new()
        .route("/live", get(live::handler))
        .route("/analyze", get(analyze::handler))
        .route("/session", get(sessions::get))
        .route("/session/start", post(sessions::start))
        .route("/session/stop", post(sessions::stop))
        .route("/metrics", get(metrics::handler))
        .route("/", get(preview::index))
        .route("/preview.jpg", get(preview::handler))
        .layer(axum::middleware::from_fn_with_state(state.clone(), auth::middleware))
        .route("/healthz", get(health::handler))
        .with_state(state)
}

/// Serves on `listener` until `shutdown` resolves; then waits at most 2 s
/// for connections to finish.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: Arc<Shared>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let stop = Shutdown::new();
    let graceful = stop.clone();
    let server = axum::serve(listener, router(state)).with_graceful_shutdown(async move { graceful.raised().await });
    let server = tokio::spawn(async move { server.await });
    shutdown.await;
    stop.raise();
    match tokio::time::timeout(Duration::from_secs(2), server).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => Err(std::io::Error::other(e)),
        Err(_) => {
            tracing::warn!("server: connections still open after 2 s; closing them");
            Ok(())
        }
    }
}

/// Starts the server in a thread of its own (a 2-worker tokio runtime),
/// stopping when `shutdown` is raised. An address in use (another process,
/// an agent still stopping) is retried until it is free, so a box never
/// stays without sessions for good; scoring goes on meanwhile.
pub fn spawn(
    listen: std::net::SocketAddr,
    state: Arc<Shared>,
    shutdown: Shutdown,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    std::thread::Builder::new().name("server".into()).spawn(move || {
        let Some(listener) = rt.block_on(bind_retrying(listen, &shutdown)) else { return };
        tracing::info!(listen = %listener.local_addr().unwrap_or(listen), "server listening");
        let stop = async move { shutdown.raised().await };
        if let Err(e) = rt.block_on(serve(listener, state, stop)) {
            tracing::error!(error = %e, "server failed");
        }
        rt.shutdown_timeout(Duration::from_millis(500));
    })
}

/// Binds `listen`, retrying (1 s doubling to 10 s) while that fails; one
/// error line for the first failure, one line when it works. None if
/// `shutdown` comes first.
async fn bind_retrying(listen: std::net::SocketAddr, shutdown: &Shutdown) -> Option<tokio::net::TcpListener> {
    let mut wait = Duration::from_secs(1);
    let mut failures = 0u32;
    loop {
        match tokio::net::TcpListener::bind(listen).await {
            Ok(l) => {
                if failures > 0 {
                    tracing::warn!(listen = %listen, failures, "server: the address is free again");
                }
                return Some(l);
            }
            Err(e) if failures == 0 => {
                tracing::error!(listen = %listen, error = %e,
                    "server cannot listen; retrying (no /live, /analyze or sessions until then)");
            }
            Err(e) => tracing::debug!(listen = %listen, error = %e, "server: still cannot listen"),
        }
        failures += 1;
        if shutdown.sleep(wait).await {
            return None;
        }
        wait = (wait * 2).min(Duration::from_secs(10));
    }
}

pub(crate) fn json_error(status: StatusCode, msg: impl std::fmt::Display) -> Response {
    (status, axum::Json(json!({ "error": msg.to_string() }))).into_response()
}

pub(crate) fn too_busy() -> Response {
    json_error(StatusCode::SERVICE_UNAVAILABLE, "too many connections")
}
