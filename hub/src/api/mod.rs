//! The hub's HTTP API: the routes boxes and console scripts call. Handlers
//! take the shared [`crate::state::App`] and answer [`crate::error::ApiError`]
//! (`{"error": "…"}`, naming what is at fault).
//!
//! | path | who | what |
//! | --- | --- | --- |
//! | `POST /api/exam/analyze-batch` | desk token | score batches ([`ingest`]) |
//! | `GET /api/device/ws` | desk token | sessions down, live state up ([`device_ws`]) |
//! | `PUT /api/device/incidents/{id}/clips/{part}` | desk token | clip upload ([`clips`]) |
//! | `POST /api/login`, `POST /api/logout`, `GET /api/me` | console | login cookie ([`login`]) |
//! | `GET /api/rooms`, `GET /api/rooms/{room}/desks`, `GET /api/rooms/{room}/exams` | console | rooms and live desks ([`rooms`]) |
//! | `POST /api/exams`, `GET /api/exams/{id}`, `POST /api/exams/{id}/start`, `…/stop`, `GET /api/exams/{id}/incidents` | console | exams ([`exams`]) |
//! | `GET /api/incidents/{id}/clip`, `POST /api/incidents/{id}/review` | console | playback (Range) and review ([`clips`], [`exams`]) |
//! | `GET /healthz`, `GET /metrics` | anyone | health and Prometheus metrics ([`health`]) |
//!
//! The room console's pages and its own API (live view, review, export,
//! audit, admin) are in [`crate::console`].
//!
//! Status codes follow what a box does with them: 2xx delivered; 408, 429
//! (with `Retry-After`) and 5xx retried; other 4xx dead-lettered. So an
//! overloaded or unreachable database is a 503 with `Retry-After`, never a
//! 4xx; a 4xx is only for a request that can never succeed.

pub mod clips;
pub mod device_ws;
pub mod exams;
pub mod health;
pub mod ingest;
pub mod login;
pub mod rooms;

use axum::Router;
use axum::routing::{get, post, put};

use crate::state::AppState;

/// The API's routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/metrics", get(health::metrics))
        .route("/api/exam/analyze-batch", post(ingest::analyze_batch))
        .route(proto::device::DEVICE_WS_PATH, get(device_ws::upgrade))
        .route("/api/device/incidents/{incident}/clips/{part}", put(clips::upload))
        .route("/api/login", post(login::login))
        .route("/api/logout", post(login::logout))
        .route("/api/me", get(login::me))
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
}
