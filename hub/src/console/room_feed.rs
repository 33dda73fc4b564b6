//! `GET /api/rooms/{room}/live` (WebSocket, console user with rights to the
//! room): the room view's one connection. The hub sends JSON text messages
//! tagged by `"type"`; the page sends nothing but pongs.
//!
//! - `snapshot` on connect: `{"room","exam","desks":[tile…],"alerts":[…],"threshold"}`;
//! - then every [`TICK`], only what changed: `desks` (the tiles whose
//!   content changed), `exam` (the room's current exam), `alerts` (the whole
//!   list, newest first, at most [`MAX_ALERTS`]).
//!
//! Everything is read from PostgreSQL (`desk_live`, written by whichever
//! hub each desk is connected to), so any hub serves any room. A tile's
//! `state` is one of `offline` (nothing heard for [`OFFLINE_AFTER_S`] s),
//! `camera` (camera lost, covered or failed), `no_session`, `alert` (an
//! incident is open on the box), `in_session` ([`tile_state`]); a desk is
//! in session once the box itself reports scoring under the session the
//! hub opened for it, so "live" on the page means live on the box.
//!
//! The upgrade refuses another site's `Origin` (403), as writes do: a
//! WebSocket is not covered by the same-origin policy. Connections are
//! bounded ([`MAX_CONNECTIONS`] per hub); a page gone for 30 s is closed.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::extract::State;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use futures_util::{SinkExt, StreamExt};
use proto::Reason;
use proto::device::{DeviceState, HealthState};
use serde_json::{Value, json};

use crate::auth::user::cross_site_upgrade;
use crate::auth::{CurrentUser, rights};
use crate::console::review::THRESHOLD;
use crate::db::room_view::{AlertRow, CurrentExam, DeskNow};
use crate::domain::{OFFLINE_AFTER_S, delete_at};
use crate::error::ApiError;
use crate::extract::ApiPath;
use crate::state::AppState;

/// How often the room is re-read.
pub const TICK: Duration = Duration::from_millis(250);
/// Incidents are re-read this many ticks apart, and at once when a tile
/// shows an incident the alert list does not have yet (so a new alert is
/// listed in the same tick its tile turns red).
const INCIDENT_TICKS: u32 = 4;
/// Alerts listed.
pub const MAX_ALERTS: usize = 100;
/// Open console pages per hub.
pub const MAX_CONNECTIONS: usize = 256;

static OPEN: AtomicUsize = AtomicUsize::new(0);

/// A tile's state from what the hub knows of the desk.
pub fn tile_state(online: bool, in_session: bool, state: Option<&DeviceState>) -> &'static str {
    if !online {
        return "offline";
    }
    let camera_bad = state.is_some_and(|s| {
        s.camera.state != HealthState::Ok
            || s.reasons.iter().any(|r| matches!(r, Reason::CameraLost | Reason::CameraCovered))
    });
    if camera_bad {
        "camera"
    } else if !in_session {
        "no_session"
    } else if state.is_some_and(|s| s.alert) {
        "alert"
    } else {
        "in_session"
    }
}

fn ts(v: Option<DateTime<Utc>>) -> Option<String> {
    v.map(|t| proto::Timestamp(t).to_string())
}

/// The exam as the page shows it.
fn exam_json(e: &CurrentExam) -> Value {
    json!({
        "id": e.id, "state": e.state, "name": e.name,
        "started_at": ts(e.started_at), "stopped_at": ts(e.stopped_at), "retention_days": e.retention_days,
        "delete_at": ts(delete_at(e.stopped_at, e.retention_days)), "purged_at": ts(e.purged_at),
    })
}

/// A desk as its tile shows it.
pub fn tile(d: &DeskNow, now: DateTime<Utc>) -> Value {
    let online = d.connected == Some(true) && d.seen_at.is_some_and(|t| (now - t).num_seconds() < OFFLINE_AFTER_S);
    let s = d.state.as_ref();
    // In session once the box reports scoring under the open session (not
    // merely once the hub opened it).
    let in_session = d.session_id.is_some() && s.and_then(|s| s.session_id.as_deref()) == d.session_id.as_deref();
    json!({
        "desk": d.device_id,
        "student": d.session_student.as_ref().or(d.roster_student.as_ref()),
        "row": d.row, "col": d.col,
        "state": tile_state(online, in_session, s),
        "session_id": d.session_id,
        "score": if online { s.and_then(|s| s.focus_score) } else { None },
        "reasons": s.map(|s| s.reasons.clone()).unwrap_or_default(),
        // An incident outside the session is not the exam's.
        "incident": if online && in_session { s.and_then(|s| s.incident.clone()) } else { None },
        "camera": s.map(|s| s.camera.clone()),
        "box_ts": s.and_then(|s| s.ts),
        "seen_at": ts(d.seen_at),
    })
}

fn alert_json(a: &AlertRow) -> Value {
    json!({
        "id": a.id, "key": a.key, "desk": a.device_id, "student": a.student_id,
        "started": proto::Timestamp(a.started).to_string(), "ended": ts(a.ended),
        "reasons": a.reasons, "min_score": a.min_score,
    })
}

/// The exam's incidents as alerts, newest first, merged with the incidents
/// open on the boxes that the hub has not received in a batch yet.
pub fn merge_alerts(stored: &[AlertRow], tiles: &[Value]) -> Vec<Value> {
    let mut out: Vec<Value> = stored.iter().map(alert_json).collect();
    for t in tiles {
        let Some(key) = t["incident"]["id"].as_str() else { continue };
        if let Some(a) = out.iter_mut().find(|a| a["key"] == key) {
            a["open"] = json!(true);
            continue;
        }
        out.push(json!({
            "id": null, "key": key, "desk": t["desk"], "student": t["student"], "started": t["incident"]["started"],
            "ended": null, "reasons": t["reasons"], "min_score": t["score"], "open": true,
        }));
    }
    out.sort_by(|a, b| b["started"].as_str().cmp(&a["started"].as_str()));
    out.truncate(MAX_ALERTS);
    out
}

pub async fn upgrade(
    State(app): State<AppState>,
    user: CurrentUser,
    ApiPath(room): ApiPath<String>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    cross_site_upgrade(&headers)?;
    let room_id = rights::room(&app, &user, &room).await?;
    if OPEN.load(Ordering::Relaxed) >= MAX_CONNECTIONS {
        return Err(ApiError::unavailable("too many console connections on this hub", 5));
    }
    Ok(ws.max_message_size(4096).on_upgrade(move |socket| run(app, room, room_id, socket)).into_response())
}

struct Guard;
impl Drop for Guard {
    fn drop(&mut self) {
        OPEN.fetch_sub(1, Ordering::Relaxed);
    }
}

/// What the page was last sent, to send only changes.
#[derive(Default)]
struct Sent {
    tiles: HashMap<String, Value>,
    exam: Value,
    alerts: Value,
}

impl Sent {
    fn listed(&self, key: &str) -> bool {
        self.alerts.as_array().is_some_and(|a| a.iter().any(|x| x["key"] == key))
    }

    /// The messages that bring the page from what it was sent to `now`.
    fn update(&mut self, room: &str, first: bool, now: Read) -> Vec<Value> {
        let (exam, tiles, alerts) = now;
        if first {
            let alerts = alerts.unwrap_or(json!([]));
            let msg = json!({"type": "snapshot", "room": room, "exam": exam, "desks": tiles, "alerts": alerts, "threshold": THRESHOLD});
            self.exam = exam;
            self.alerts = alerts;
            self.tiles = tiles.into_iter().map(|t| (t["desk"].as_str().unwrap_or("").to_string(), t)).collect();
            return vec![msg];
        }
        let mut msgs = Vec::new();
        if exam != self.exam {
            msgs.push(json!({"type": "exam", "exam": exam}));
            self.exam = exam;
        }
        let changed: Vec<Value> =
            tiles.into_iter().filter(|t| self.tiles.get(t["desk"].as_str().unwrap_or("")) != Some(t)).collect();
        if !changed.is_empty() {
            for t in &changed {
                self.tiles.insert(t["desk"].as_str().unwrap_or("").to_string(), t.clone());
            }
            msgs.push(json!({"type": "desks", "desks": changed}));
        }
        if let Some(a) = alerts
            && a != self.alerts
        {
            msgs.push(json!({"type": "alerts", "alerts": a}));
            self.alerts = a;
        }
        msgs
    }
}

async fn run(app: AppState, room: String, room_id: i64, socket: WebSocket) {
    OPEN.fetch_add(1, Ordering::Relaxed);
    let _guard = Guard;
    let (mut tx, mut rx) = socket.split();
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut sent = Sent::default();
    let mut n: u32 = 0;
    let mut last_heard = tokio::time::Instant::now();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            m = rx.next() => match m {
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                Some(Ok(_)) => { last_heard = tokio::time::Instant::now(); continue; }
            },
            _ = app.shutdown.wait() => {
                let _ = tx.send(Message::Close(None)).await;
                return;
            }
        }
        if last_heard.elapsed() > Duration::from_secs(30) && n > 0 {
            // The page answers the ping sent every 10 s, so 30 s of silence
            // means it is gone.
            return;
        }
        if n.is_multiple_of(40) {
            let _ = tx.send(Message::Ping(Default::default())).await;
        }
        let r = read(&app, room_id, n.is_multiple_of(INCIDENT_TICKS), &|k| sent.listed(k)).await;
        let now = match r {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(room = ?room, error = %e, "console: reading the room failed");
                n += 1;
                continue;
            }
        };
        let msgs = sent.update(&room, n == 0, now);
        n = n.wrapping_add(1);
        for m in msgs {
            let send = tx.send(Message::Text(m.to_string().into()));
            match tokio::time::timeout(Duration::from_secs(10), send).await {
                Ok(Ok(())) => {}
                _ => return,
            }
        }
    }
}

/// The room now: its exam, tiles, and alerts (when asked for).
type Read = (Value, Vec<Value>, Option<Value>);

/// Reads the room: alerts when `with_incidents` or when a tile shows an
/// incident not `listed` yet.
async fn read(
    app: &AppState,
    room_id: i64,
    with_incidents: bool,
    listed: &(dyn Fn(&str) -> bool + Sync),
) -> Result<Read, ApiError> {
    let c = app.db.get().await?;
    let exam = crate::db::room_view::current_exam(&**c, room_id).await?;
    let exam_id = exam.as_ref().map(|e| e.id);
    let now = app.clock.now();
    let tiles: Vec<Value> =
        crate::db::room_view::desks(&**c, room_id, exam_id).await?.iter().map(|d| tile(d, now)).collect();
    let unlisted = tiles.iter().any(|t| t["incident"]["id"].as_str().is_some_and(|k| !listed(k)));
    let alerts = if with_incidents || unlisted {
        let stored = match exam_id {
            Some(id) => crate::db::room_view::alerts(&**c, id, MAX_ALERTS as i64).await?,
            None => Vec::new(),
        };
        Some(Value::Array(merge_alerts(&stored, &tiles)))
    } else {
        None
    };
    Ok((exam.as_ref().map(exam_json).unwrap_or(Value::Null), tiles, alerts))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::device::Health;

    fn state(camera: HealthState, reasons: Vec<Reason>, alert: bool) -> DeviceState {
        DeviceState { camera: Health { state: camera, reason: None }, reasons, alert, ..Default::default() }
    }

    #[test]
    fn a_tile_says_offline_then_camera_then_session_then_alert() {
        let ok = state(HealthState::Ok, vec![], false);
        let alert = state(HealthState::Ok, vec![Reason::NoFace], true);
        let covered = state(HealthState::Ok, vec![Reason::CameraCovered], true);
        let lost = state(HealthState::Failed, vec![], false);
        assert_eq!(tile_state(false, true, Some(&alert)), "offline");
        assert_eq!(tile_state(true, true, Some(&covered)), "camera");
        assert_eq!(tile_state(true, false, Some(&lost)), "camera");
        assert_eq!(tile_state(true, false, Some(&ok)), "no_session");
        assert_eq!(tile_state(true, true, Some(&alert)), "alert");
        assert_eq!(tile_state(true, true, Some(&ok)), "in_session");
        assert_eq!(tile_state(true, true, None), "in_session");
    }
}
