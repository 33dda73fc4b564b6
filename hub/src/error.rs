//! The one error every HTTP answer of the hub is made from: a status and
//! one line naming what is at fault, sent as `{"error": "…"}` (plus
//! `Retry-After` when the client should come back, and the request's id).
//!
//! Database errors are classified once, by SQLSTATE ([`classify`]), because
//! a box acts on the status: 503 (retry later) for a database that is down,
//! saturated, timed out or restarting; 400/409 for data the database
//! refuses by its own checks (the request can never succeed: a box
//! dead-letters it); 500 for anything else (a bug). The driver's text is
//! logged in full with the request id and never sent: it can name tables,
//! constraints and values.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tokio_postgres::error::SqlState;

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
    pub fn unauthorized(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, message)
    }
    pub fn forbidden(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, message)
    }
    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, message)
    }
    pub fn conflict(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::CONFLICT, message)
    }
    /// Too many requests: come back in `retry_after` seconds (429).
    pub fn too_many(message: impl Into<String>, retry_after: u64) -> ApiError {
        ApiError::new(StatusCode::TOO_MANY_REQUESTS, message).with_retry_after(retry_after)
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

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.status.as_u16(), self.message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let id = request_id();
        let body = match &id {
            Some(id) => serde_json::json!({ "error": self.message, "request_id": id }),
            None => serde_json::json!({ "error": self.message }),
        };
        let mut r = (self.status, axum::Json(body)).into_response();
        if let Some(s) = self.retry_after {
            r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        r
    }
}

/// What a database error means for the client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DbFault {
    /// Down, saturated, timed out, restarting, a lock or serialization
    /// conflict: the same request may succeed later (503).
    Unavailable,
    /// The request's data breaks a check of the database (SQLSTATE class
    /// 22): it never will succeed (400).
    BadData,
    /// A unique or foreign-key constraint (class 23): 409.
    Constraint,
    /// Anything else: a bug of the hub's (500).
    Internal,
}

/// Classifies a driver error by its SQLSTATE; an error without one (the
/// connection broke) is [`DbFault::Unavailable`].
pub fn classify(e: &tokio_postgres::Error) -> DbFault {
    let Some(code) = e.code() else {
        return DbFault::Unavailable;
    };
    if *code == SqlState::LOCK_NOT_AVAILABLE {
        return DbFault::Unavailable;
    }
    match &code.code()[..2] {
        // connection, insufficient resources, operator intervention
        // (statement timeout, admin shutdown), transaction rollback
        // (serialization, deadlock), system error (I/O).
        "08" | "53" | "57" | "40" | "58" => DbFault::Unavailable,
        "22" => DbFault::BadData,
        "23" => DbFault::Constraint,
        _ => DbFault::Internal,
    }
}

impl From<tokio_postgres::Error> for ApiError {
    fn from(e: tokio_postgres::Error) -> Self {
        let fault = classify(&e);
        let id = request_id().unwrap_or_default();
        tracing::warn!(request_id = %id, ?fault, error = %crate::db::chain(&e), "database error");
        match fault {
            DbFault::Unavailable => ApiError::unavailable("the database is unavailable; try again", 2),
            DbFault::BadData => ApiError::bad("the database refused a value of this request"),
            DbFault::Constraint => ApiError::conflict("this conflicts with what is stored"),
            DbFault::Internal => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error"),
        }
    }
}

impl From<crate::db::PoolError> for ApiError {
    fn from(e: crate::db::PoolError) -> Self {
        match e {
            crate::db::PoolError::Backend(e) => e.into(),
            e => {
                let id = request_id().unwrap_or_default();
                tracing::warn!(request_id = %id, error = %crate::db::describe(&e), "database unavailable");
                ApiError::unavailable("the database is busy; try again", 1)
            }
        }
    }
}

/// Why one round of a job failed (it tries again at its next round).
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error("database: {}", crate::db::describe(.0))]
    Pool(#[from] crate::db::PoolError),
    #[error("database: {}", crate::db::chain(.0))]
    Db(#[from] tokio_postgres::Error),
    #[error("storage: {0}")]
    Storage(String),
}

tokio::task_local! {
    static REQUEST_ID: String;
}

/// The id of the request being answered (set by the request log, see
/// `routes`), for logs and error answers.
pub fn request_id() -> Option<String> {
    REQUEST_ID.try_with(|id| id.clone()).ok()
}

/// A new request id: a per-process random start, counted up (unique and
/// cheap; not a secret).
pub fn new_request_id() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    static START: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    let start = *START.get_or_init(|| {
        let mut b = [0u8; 8];
        let _ = getrandom::fill(&mut b);
        u64::from_le_bytes(b) & 0xffff_ffff_0000_0000
    });
    format!("{:016x}", start.wrapping_add(NEXT.fetch_add(1, Ordering::Relaxed)))
}

/// Runs `f` with `id` as the request id.
pub async fn with_request_id<F: Future>(id: String, f: F) -> F::Output {
    REQUEST_ID.scope(id, f).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_unique() {
        let (a, b) = (new_request_id(), new_request_id());
        assert_ne!(a, b);
        assert_eq!(a.len(), 16);
    }

    #[tokio::test]
    async fn an_error_answer_names_the_request() {
        let r = with_request_id("abc".into(), async { ApiError::bad("field x: wrong").into_response() }).await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        let body = axum::body::to_bytes(r.into_body(), 1 << 16).await.unwrap();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v, serde_json::json!({"error": "field x: wrong", "request_id": "abc"}));
    }
}
