//! The bearer token: every endpoint but `/healthz` needs it when one is
//! configured (`server.token_file`), compared in constant time.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;

use super::{Shared, json_error};

/// Constant-time token check (length is not secret).
pub fn token_ok(expected: &str, given: &str) -> bool {
    use subtle::ConstantTimeEq;
    expected.len() == given.len() && bool::from(expected.as_bytes().ct_eq(given.as_bytes()))
}

pub(super) async fn middleware(State(s): State<Arc<Shared>>, req: Request, next: Next) -> Response {
    let Some(expected) = &s.token else {
        return next.run(req).await;
    };
    let header_token = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let query_token =
        req.uri().query().and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("token="))).map(str::to_string);
    let ok = header_token.is_some_and(|t| token_ok(expected, t)) || query_token.is_some_and(|t| token_ok(expected, &t));
    if ok { next.run(req).await } else { json_error(StatusCode::UNAUTHORIZED, "missing or wrong bearer token") }
}
