//! The hub's one router: the API's routes ([`crate::api::routes`]) and the
//! console's ([`crate::console::routes`]), under two layers every answer
//! passes: the request log (a request id for each request, in its log
//! lines and error answers) and the security headers.

use std::time::Instant;

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::Response;

use crate::error::{new_request_id, with_request_id};
use crate::state::AppState;

/// The Content-Security-Policy of every answer: scripts, styles, media and
/// connections from this hub only; no inline script or style.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
     media-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// Every route of the hub.
pub fn router(app: AppState) -> Router {
    Router::new()
        .merge(crate::api::routes())
        .merge(crate::console::routes())
        .layer(axum::middleware::from_fn(security_headers))
        .layer(axum::middleware::from_fn(request_log))
        .with_state(app)
}

/// Gives the request an id (answered as `X-Request-Id`); one debug line per
/// request, a warning for a 5xx.
async fn request_log(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let (method, path) = (req.method().clone(), req.uri().path().to_string());
    let id = new_request_id();
    let t0 = Instant::now();
    let mut r = with_request_id(id.clone(), next.run(req)).await;
    let ms = t0.elapsed().as_secs_f64() * 1000.0;
    // The path is the client's: logged with Debug quoting, so it cannot
    // forge a line.
    if r.status().is_server_error() {
        tracing::warn!(request_id = %id, %method, path = ?path, status = r.status().as_u16(), ms, "http");
    } else {
        tracing::debug!(request_id = %id, %method, path = ?path, status = r.status().as_u16(), ms, "http");
    }
    if let Ok(v) = HeaderValue::from_str(&id) {
        r.headers_mut().insert("x-request-id", v);
    }
    r
}

/// Adds the security headers to every answer: the CSP, no framing, no
/// sniffing, a same-origin referrer.
async fn security_headers(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let mut r = next.run(req).await;
    let h = r.headers_mut();
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    r
}
