//! The hub's HTTP API: one router, the shared [`App`] state, and the error
//! type every handler answers with (`{"error": "…"}`, naming what is at
//! fault).
//!
//! | path | who | what |
//! | --- | --- | --- |
//! | `POST /api/exam/analyze-batch` | desk token | score batches ([`ingest`]) |
//! | `GET /api/device/ws` | desk token | sessions down, live state up ([`device_ws`]) |
//! | `PUT /api/device/incidents/{id}/clips/{part}` | desk token | clip upload ([`clips`]) |
//! | `POST /api/login`, `POST /api/logout`, `GET /api/me` | console | login cookie ([`auth`]) |
//! | `GET /api/rooms`, `GET /api/rooms/{room}/desks`, `GET /api/rooms/{room}/exams` | console | rooms and live desks ([`rooms`]) |
//! | `POST /api/exams`, `GET /api/exams/{id}`, `POST /api/exams/{id}/start`, `…/stop`, `GET /api/exams/{id}/incidents` | console | exams ([`exams`]) |
//! | `GET /api/incidents/{id}/clip`, `POST /api/incidents/{id}/review` | console | playback (Range) and review ([`clips`], [`exams`]) |
//! | `GET /api/rooms/{room}/live` (WebSocket), `GET /api/exams/{id}/review`, `GET /api/sessions/{id}/scores`, `GET /api/sessions/{id}/incidents.csv`, `GET /api/audit` | console | the room console's live view, review, export and audit log ([`crate::console`]) |
//! | `/login`, `/console/…`, `/static/…` | console | the console's pages ([`crate::console`]) |
//! | `GET /healthz`, `GET /metrics` | anyone | health and Prometheus metrics ([`health`]) |
//!
//! Status codes follow what a box does with them: 2xx delivered; 408, 429
//! (with `Retry-After`) and 5xx retried; other 4xx dead-lettered. So an
//! overloaded or unreachable database is a 503 with `Retry-After`, never a
//! 4xx; a 4xx is only for a request that can never succeed.

pub mod auth;
pub mod clips;
pub mod device_ws;
pub mod exams;
pub mod health;
pub mod ingest;
pub mod rooms;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use tokio::sync::watch;

use crate::config::Validated;
use crate::db::Db;
use crate::db::desks::Desk;
use crate::live::Live;
use crate::metrics::Metrics;
use crate::storage::Store;

/// Everything a handler needs.
pub struct App {
    pub cfg: Validated,
    pub db: Db,
    pub store: Store,
    pub live: Live,
    pub metrics: Metrics,
    pub desks: DeskCache,
    pub limiter: Limiter,
    /// True once stopping: WebSockets close, new work is refused.
    pub shutdown: watch::Receiver<bool>,
    /// The LISTEN connection is up (the desk cache may be trusted).
    pub notify_up: AtomicBool,
    /// When a large skew was last logged, per desk (one line a minute).
    pub skew_logged: std::sync::Mutex<HashMap<i64, Instant>>,
}

/// An error answer: a status and one line naming what is at fault.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError { status, message: message.into(), retry_after: None }
    }
    pub fn bad(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }
    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, message)
    }
    pub fn forbidden(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, message)
    }
    /// Try again later (503 with Retry-After).
    pub fn unavailable(message: impl Into<String>, retry_after: u64) -> ApiError {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, message).with_retry_after(retry_after)
    }
    /// The same answer, telling the client when to try again (`Retry-After`).
    pub fn with_retry_after(self, seconds: u64) -> ApiError {
        ApiError { retry_after: Some(seconds), ..self }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = (self.status, axum::Json(serde_json::json!({ "error": self.message }))).into_response();
        if let Some(s) = self.retry_after {
            r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        r
    }
}

impl From<tokio_postgres::Error> for ApiError {
    fn from(e: tokio_postgres::Error) -> Self {
        tracing::warn!(error = %e, "database error");
        ApiError::unavailable(format!("database: {e}"), 2)
    }
}

impl From<crate::db::PoolError> for ApiError {
    fn from(e: crate::db::PoolError) -> Self {
        tracing::warn!(error = %crate::db::describe(&e), "database unavailable");
        ApiError::unavailable(format!("database: {}", crate::db::describe(&e)), 1)
    }
}

pub type AppState = Arc<App>;

/// The router with every route of the module docs.
pub fn router(app: AppState) -> Router {
    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/metrics", get(health::metrics))
        .route("/api/exam/analyze-batch", post(ingest::analyze_batch))
        .route(proto::device::DEVICE_WS_PATH, get(device_ws::upgrade))
        .route("/api/device/incidents/{incident}/clips/{part}", put(clips::upload))
        .route("/api/login", post(auth::login))
        .route("/api/logout", post(auth::logout))
        .route("/api/me", get(auth::me))
        .route("/api/rooms", get(rooms::list))
        .route("/api/rooms/{room}/desks", get(rooms::desks))
        .route("/api/rooms/{room}/exams", get(rooms::exams))
        .route("/api/exams", post(exams::create))
        .route("/api/exams/{id}", get(exams::show))
        .route("/api/exams/{id}/start", post(exams::start))
        .route("/api/exams/{id}/stop", post(exams::stop))
        .route("/api/exams/{id}/incidents", get(exams::incidents))
        .route("/api/incidents/{id}/clip", get(clips::play))
        .route("/api/incidents/{id}/review", post(exams::review))
        .merge(crate::console::routes())
        .layer(axum::middleware::from_fn(crate::console::security_headers))
        .layer(axum::middleware::from_fn(log_request))
        .with_state(app)
}

/// One debug line per request; a warning for a 5xx.
async fn log_request(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let (method, path) = (req.method().clone(), req.uri().path().to_string());
    let t0 = Instant::now();
    let r = next.run(req).await;
    let ms = t0.elapsed().as_secs_f64() * 1000.0;
    if r.status().is_server_error() {
        tracing::warn!(%method, %path, status = r.status().as_u16(), ms, "http");
    } else {
        tracing::debug!(%method, %path, status = r.status().as_u16(), ms, "http");
    }
    r
}

impl App {
    /// The desk of the request's bearer token: 401 when missing, unknown or
    /// revoked.
    pub async fn desk_auth(&self, headers: &HeaderMap) -> Result<Desk, ApiError> {
        let unauthorized = |m: &str| ApiError::new(StatusCode::UNAUTHORIZED, m);
        let Some(tok) = crate::token::bearer(headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok())) else {
            return Err(unauthorized("missing Authorization: Bearer <device token>"));
        };
        let hash = crate::token::hash(tok);
        let trusted = self.notify_up.load(Ordering::Relaxed);
        if trusted && let Some(d) = self.desks.get(&hash) {
            return Ok(d);
        }
        let c = self.db.get().await?;
        match crate::db::desks::by_token(&**c, &hash).await? {
            Some(d) => {
                self.desks.put(hash, d.clone());
                Ok(d)
            }
            None => Err(unauthorized("unknown or revoked device token")),
        }
    }
}

/// Desks by token hash, trusted only while the LISTEN connection is up:
/// any enrolment or revocation clears it (and entries expire after 60 s).
#[derive(Default)]
pub struct DeskCache {
    map: std::sync::Mutex<HashMap<Vec<u8>, (Desk, Instant)>>,
}

impl DeskCache {
    const TTL: Duration = Duration::from_secs(60);
    /// More entries than this: the cache is cleared (bounded memory).
    const MAX: usize = 100_000;

    pub fn get(&self, hash: &[u8]) -> Option<Desk> {
        let g = self.map.lock().unwrap_or_else(|p| p.into_inner());
        g.get(hash).filter(|(_, at)| at.elapsed() < Self::TTL).map(|(d, _)| d.clone())
    }

    pub fn put(&self, hash: Vec<u8>, desk: Desk) {
        let mut g = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if g.len() >= Self::MAX {
            g.clear();
        }
        g.insert(hash, (desk, Instant::now()));
    }

    pub fn clear(&self) {
        self.map.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }
}

/// A token bucket per desk: `rate` a second, at most `burst` saved up.
pub struct Limiter {
    rate: f64,
    burst: f64,
    map: std::sync::Mutex<HashMap<i64, (f64, Instant)>>,
}

impl Limiter {
    pub fn new(rate: f64, burst: u32) -> Limiter {
        Limiter { rate, burst: burst as f64, map: Default::default() }
    }

    /// Takes one token for `desk`, or says how many seconds until one is there.
    pub fn take(&self, desk: i64) -> Result<(), u64> {
        let mut g = self.map.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        let (tokens, at) = g.entry(desk).or_insert((self.burst, now));
        *tokens = (*tokens + at.elapsed().as_secs_f64() * self.rate).min(self.burst);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - *tokens) / self.rate).ceil().max(1.0) as u64)
        }
    }
}

/// The largest refused body read to its end so the client sees the answer.
pub const DRAIN_MAX: u64 = 64 << 20;
/// The longest a refused body is read for.
pub const DRAIN_TIME: std::time::Duration = std::time::Duration::from_secs(30);

/// Reads and drops the rest of a refused body whose declared length is at
/// most [`DRAIN_MAX`], for at most [`DRAIN_TIME`], before the refusal is
/// sent: an HTTP/1.1 client still writing when the server answers and
/// closes gets a broken pipe instead of the answer, and a box could not
/// tell a refusal (dead-letter) from a network fault (retry). A client
/// that sent `Expect: 100-continue` has not sent its body and is not asked
/// for it (reading would send it a 100 Continue).
pub async fn drain(body: axum::body::Body, headers: &HeaderMap) {
    use futures_util::StreamExt;
    let expects = headers.get(header::EXPECT).and_then(|v| v.to_str().ok());
    if expects.is_some_and(|v| v.trim().eq_ignore_ascii_case("100-continue")) {
        return;
    }
    let declared =
        headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_none_or(|n| n > DRAIN_MAX) {
        return;
    }
    let mut stream = body.into_data_stream();
    let mut seen = 0u64;
    let _ = tokio::time::timeout(DRAIN_TIME, async {
        while let Some(Ok(chunk)) = stream.next().await {
            seen += chunk.len() as u64;
            if seen > DRAIN_MAX {
                break;
            }
        }
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limiter_allows_a_burst_then_the_rate() {
        let l = Limiter::new(1.0, 3);
        assert!(l.take(1).is_ok() && l.take(1).is_ok() && l.take(1).is_ok());
        assert_eq!(l.take(1), Err(1));
        assert!(l.take(2).is_ok(), "desks have buckets of their own");
    }
}
