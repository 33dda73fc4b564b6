//! `GET /healthz` and `GET /metrics`, for load balancers and Prometheus.
//! No login: they reveal counts and states, never ids, tokens or scores.
//!
//! `/healthz` answers 200 with `{"state":"ok",…}` while the database
//! answers within 2 s, else 503 with `"state":"failed"` (a load balancer
//! then sends boxes to another hub); a LISTEN connection that is down is
//! `"degraded"` (sessions then reach desks by the reconcile, within
//! seconds).

use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::state::AppState;

pub async fn healthz(State(app): State<AppState>) -> Response {
    let db = tokio::time::timeout(Duration::from_secs(2), async {
        let c = app.db.get().await.map_err(|e| crate::db::describe(&e))?;
        crate::db::ping(&**c).await.map_err(|e| crate::db::chain(&e))?;
        Ok::<_, String>(())
    })
    .await
    .unwrap_or_else(|_| Err("no answer within 2 s".into()));
    let notify = app.notify_up.load(Ordering::Relaxed);
    let state = match (&db, notify) {
        (Err(_), _) => "failed",
        (Ok(()), false) => "degraded",
        (Ok(()), true) => "ok",
    };
    let body = serde_json::json!({
        "state": state,
        "hub_id": app.cfg.hub_id,
        "database": match &db { Ok(()) => serde_json::json!({"state": "ok"}), Err(e) => serde_json::json!({"state": "failed", "reason": e}) },
        "notify": if notify { serde_json::json!({"state": "ok"}) } else { serde_json::json!({"state": "degraded", "reason": "LISTEN connection down; sessions reach desks by the reconcile"}) },
        "desks_connected": app.connections.count(),
        "stopping": app.shutdown.is_raised(),
    });
    let status = if db.is_ok() { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, Json(body)).into_response()
}

pub async fn metrics(State(app): State<AppState>) -> Response {
    let st = app.db.pool.status();
    app.metrics.db_pool_size.set(st.size as i64);
    app.metrics.db_pool_available.set(st.available as i64);
    app.metrics.db_pool_waiting.set(st.waiting as i64);
    app.metrics.desks_connected.set(app.connections.count() as i64);
    let mut r = app.metrics.encode().into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    r
}
