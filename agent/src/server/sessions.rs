//! The local control API for exam sessions (`invigil session …`):
//! `POST /session/start` `{"session_id","student_id"}` (400 names a missing
//! field, 409 while one runs), `POST /session/stop` (409 when none runs),
//! `GET /session`. A box that reports to a hub learns its sessions from
//! the hub instead; the hub's word replaces a local session.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::{Shared, json_error};
use crate::domain::Session;
use crate::sessions::StartError;

/// A session as the control API shows it.
pub fn session_json(s: &Session) -> Value {
    json!({
        "session_id": s.session_id,
        "student_id": s.student_id,
        "started": proto::Timestamp(s.started),
        "exam_id": s.exam_id,
    })
}

pub(super) async fn get(State(s): State<Arc<Shared>>) -> Response {
    axum::Json(json!({ "session": s.current_session().as_ref().map(session_json) })).into_response()
}

pub(super) async fn start(State(s): State<Arc<Shared>>, body: Bytes) -> Response {
    let v: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return json_error(StatusCode::BAD_REQUEST, format!("body is not JSON: {e}")),
    };
    let field = |name: &str| -> Result<String, String> {
        match v.get(name).and_then(|x| x.as_str()).map(str::trim) {
            Some(x) if !x.is_empty() => Ok(x.to_string()),
            _ => Err(format!("missing field {name} (a non-empty string)")),
        }
    };
    let (session_id, student_id) = match (field("session_id"), field("student_id")) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(e), _) | (_, Err(e)) => return json_error(StatusCode::BAD_REQUEST, e),
    };
    let new = Session { session_id, student_id, started: chrono::Utc::now(), exam_id: None };
    match s.sessions.start_local(new) {
        Ok(new) => {
            tracing::info!(session = %new.session_id, student = %new.student_id, "session started");
            axum::Json(json!({ "session": session_json(&new) })).into_response()
        }
        Err(StartError::Running(id)) => {
            json_error(StatusCode::CONFLICT, format!("session {id} is already running; stop it first"))
        }
    }
}

pub(super) async fn stop(State(s): State<Arc<Shared>>) -> Response {
    match s.sessions.stop() {
        Some(old) => {
            tracing::info!(session = %old.session_id, "session stopped");
            axum::Json(json!({ "stopped": session_json(&old) })).into_response()
        }
        None => json_error(StatusCode::CONFLICT, "no session is running"),
    }
}
