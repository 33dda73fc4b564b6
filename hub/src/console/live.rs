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

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_postgres::GenericClient;

use crate::api::auth::CurrentUser;
use crate::api::rooms::{OFFLINE_AFTER_S, room_for};
use crate::api::{ApiError, AppState};

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
/// The threshold the console draws (the agents' default, `score.threshold`).
pub const THRESHOLD: i64 = 50;

static OPEN: AtomicUsize = AtomicUsize::new(0);

/// A tile's state from what the hub knows of the desk.
pub fn tile_state(online: bool, in_session: bool, state: Option<&Value>) -> &'static str {
    if !online {
        return "offline";
    }
    let camera_bad = state.is_some_and(|s| {
        s["camera"]["state"].as_str().is_some_and(|c| c != "ok")
            || s["reasons"].as_array().is_some_and(|r| r.iter().any(|r| r == "camera_lost" || r == "camera_covered"))
    });
    if camera_bad {
        "camera"
    } else if !in_session {
        "no_session"
    } else if state.is_some_and(|s| s["alert"] == true) {
        "alert"
    } else {
        "in_session"
    }
}

/// The room's current exam: the running one, else the newest.
pub async fn current_exam(c: &impl GenericClient, room_id: i64) -> Result<Option<Value>, tokio_postgres::Error> {
    let row = c
        .query_opt(
            "SELECT id, state, name, started_at, stopped_at, retention_days, purged_at FROM exams WHERE room_id = $1
             ORDER BY (state = 'running') DESC, id DESC LIMIT 1",
            &[&room_id],
        )
        .await?;
    let ts = |v: Option<DateTime<Utc>>| v.map(|t| proto::Timestamp(t).to_string());
    Ok(row.map(|r| {
        let stopped: Option<DateTime<Utc>> = r.get(4);
        json!({
            "id": r.get::<_, i64>(0), "state": r.get::<_, String>(1), "name": r.get::<_, Option<String>>(2),
            "started_at": ts(r.get(3)), "stopped_at": ts(stopped), "retention_days": r.get::<_, i32>(5),
            "delete_at": ts(crate::retention::delete_at(stopped, r.get(5))), "purged_at": ts(r.get(6)),
        })
    }))
}

/// Every active desk of the room as a tile (by device id).
pub async fn tiles(
    c: &impl GenericClient,
    room_id: i64,
    exam: Option<i64>,
    now: DateTime<Utc>,
) -> Result<Vec<Value>, tokio_postgres::Error> {
    let rows = c
        .query(
            "SELECT d.device_id, l.connected, l.seen_at, l.state, s.id, st.student_id, ro.seat_row, ro.seat_col,
                    rst.student_id
             FROM desks d
             LEFT JOIN desk_live l ON l.desk_id = d.id
             LEFT JOIN sessions s ON s.desk_id = d.id AND s.stopped_at IS NULL
             LEFT JOIN students st ON st.id = s.student_id
             LEFT JOIN roster ro ON ro.exam_id = $2 AND ro.desk_id = d.id
             LEFT JOIN students rst ON rst.id = ro.student_id
             WHERE d.room_id = $1 AND d.token_sha256 IS NOT NULL ORDER BY d.device_id",
            &[&room_id, &exam.unwrap_or(-1)],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| {
            let seen: Option<DateTime<Utc>> = r.get(2);
            let online = r.get::<_, Option<bool>>(1) == Some(true)
                && seen.is_some_and(|t| (now - t).num_seconds() < OFFLINE_AFTER_S);
            let state: Option<Value> = r.get(3);
            let session: Option<String> = r.get(4);
            // In session once the box reports scoring under the open session
            // (not merely once the hub opened it).
            let boxed = state.as_ref().and_then(|s| s["session_id"].as_str());
            let in_session = session.is_some() && boxed == session.as_deref();
            let st = tile_state(online, in_session, state.as_ref());
            let s = state.as_ref();
            json!({
                "desk": r.get::<_, String>(0),
                "student": r.get::<_, Option<String>>(5).or(r.get(8)),
                "row": r.get::<_, Option<i32>>(6), "col": r.get::<_, Option<i32>>(7),
                "state": st,
                "session_id": session,
                "score": if online { s.and_then(|s| s["focus_score"].as_i64()) } else { None },
                "reasons": s.map(|s| s["reasons"].clone()).unwrap_or(json!([])),
                // An incident outside the session is not the exam's.
                "incident": if online && in_session { s.map(|s| s["incident"].clone()).unwrap_or(Value::Null) } else { Value::Null },
                "camera": s.map(|s| s["camera"].clone()).unwrap_or(Value::Null),
                "box_ts": s.map(|s| s["ts"].clone()).unwrap_or(Value::Null),
                "seen_at": seen.map(|t| proto::Timestamp(t).to_string()),
            })
        })
        .collect())
}

/// The exam's incidents as alerts, newest first, merged with the incidents
/// open on the boxes that the hub has not received in a batch yet.
pub async fn alerts(
    c: &impl GenericClient,
    exam: Option<i64>,
    tiles: &[Value],
) -> Result<Vec<Value>, tokio_postgres::Error> {
    let mut out: Vec<Value> = Vec::new();
    if let Some(exam) = exam {
        let rows = c
            .query(
                "SELECT i.id, i.incident_key, d.device_id, i.student_id,
                        i.started + i.offset_ms * interval '1 millisecond',
                        i.ended + i.offset_ms * interval '1 millisecond', i.reasons, i.min_score
                 FROM incidents i JOIN desks d ON d.id = i.desk_id JOIN sessions s ON s.id = i.session_id
                 WHERE s.exam_id = $1 ORDER BY i.started DESC, i.id DESC LIMIT $2",
                &[&exam, &(MAX_ALERTS as i64)],
            )
            .await?;
        for r in &rows {
            out.push(json!({
                "id": r.get::<_, i64>(0), "key": r.get::<_, String>(1), "desk": r.get::<_, String>(2),
                "student": r.get::<_, Option<String>>(3),
                "started": proto::Timestamp(r.get(4)).to_string(),
                "ended": r.get::<_, Option<DateTime<Utc>>>(5).map(|t| proto::Timestamp(t).to_string()),
                "reasons": r.get::<_, Vec<String>>(6), "min_score": r.get::<_, i16>(7),
            }));
        }
    }
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
    Ok(out)
}

pub async fn upgrade(
    State(app): State<AppState>,
    user: CurrentUser,
    Path(room): Path<String>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    cross_site_upgrade(&headers)?;
    let room_id = room_for(&app, &user, &room).await?;
    if OPEN.load(Ordering::Relaxed) >= MAX_CONNECTIONS {
        return Err(ApiError::unavailable("too many console connections on this hub", 5));
    }
    Ok(ws.max_message_size(4096).on_upgrade(move |socket| run(app, room, room_id, socket)).into_response())
}

/// 403 for a WebSocket opened from another site's page.
pub fn cross_site_upgrade(headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else { return Ok(()) };
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok()).unwrap_or("");
    let origin_host = origin.split_once("://").map(|(_, h)| h.trim_end_matches('/')).unwrap_or("");
    if origin_host.is_empty() || origin_host != host {
        return Err(ApiError::new(StatusCode::FORBIDDEN, "cross-site WebSocket refused"));
    }
    Ok(())
}

struct Guard;
impl Drop for Guard {
    fn drop(&mut self) {
        OPEN.fetch_sub(1, Ordering::Relaxed);
    }
}

async fn run(app: AppState, room: String, room_id: i64, socket: WebSocket) {
    OPEN.fetch_add(1, Ordering::Relaxed);
    let _guard = Guard;
    let (mut tx, mut rx) = socket.split();
    let mut shutdown = app.shutdown.clone();
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut sent_tiles: HashMap<String, Value> = HashMap::new();
    let (mut sent_exam, mut sent_alerts) = (Value::Null, Value::Null);
    let mut n: u32 = 0;
    let mut last_heard = tokio::time::Instant::now();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            m = rx.next() => match m {
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                Some(Ok(_)) => { last_heard = tokio::time::Instant::now(); continue; }
            },
            _ = crate::server::stopped(&mut shutdown) => {
                let _ = tx.send(Message::Close(None)).await;
                return;
            }
        }
        if last_heard.elapsed() > Duration::from_secs(30) && n > 0 {
            // Pings every tick would be wasteful; the page answers the
            // ping we send every 10 s, so 30 s of silence means it is gone.
            return;
        }
        if n.is_multiple_of(40) {
            let _ = tx.send(Message::Ping(Default::default())).await;
        }
        let listed = |key: &str| sent_alerts.as_array().is_some_and(|a| a.iter().any(|x| x["key"] == key));
        let r = read(&app, room_id, n.is_multiple_of(INCIDENT_TICKS), &listed).await;
        let (exam, tiles, alerts) = match r {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(room, error = %e, "console: reading the room failed");
                n += 1;
                continue;
            }
        };
        let mut msgs: Vec<Value> = Vec::new();
        if n == 0 {
            msgs.push(json!({"type": "snapshot", "room": room, "exam": exam, "desks": tiles, "alerts": alerts.clone().unwrap_or(json!([])), "threshold": THRESHOLD}));
            sent_exam = exam;
            sent_alerts = alerts.unwrap_or(json!([]));
            sent_tiles = tiles.into_iter().map(|t| (t["desk"].as_str().unwrap_or("").to_string(), t)).collect();
        } else {
            if exam != sent_exam {
                msgs.push(json!({"type": "exam", "exam": exam}));
                sent_exam = exam;
            }
            let changed: Vec<Value> =
                tiles.into_iter().filter(|t| sent_tiles.get(t["desk"].as_str().unwrap_or("")) != Some(t)).collect();
            if !changed.is_empty() {
                for t in &changed {
                    sent_tiles.insert(t["desk"].as_str().unwrap_or("").to_string(), t.clone());
                }
                msgs.push(json!({"type": "desks", "desks": changed}));
            }
            if let Some(a) = alerts
                && a != sent_alerts
            {
                msgs.push(json!({"type": "alerts", "alerts": a}));
                sent_alerts = a;
            }
        }
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

type Read = (Value, Vec<Value>, Option<Value>);

/// The room now: its exam, tiles, and alerts when `with_incidents` or when
/// a tile shows an incident not `listed` yet.
async fn read(
    app: &AppState,
    room_id: i64,
    with_incidents: bool,
    listed: &(dyn Fn(&str) -> bool + Sync),
) -> anyhow::Result<Read> {
    let c = app.db.get().await.map_err(|e| anyhow::anyhow!(crate::db::describe(&e)))?;
    let exam = current_exam(&**c, room_id).await?;
    let exam_id = exam.as_ref().and_then(|e| e["id"].as_i64());
    let tiles = tiles(&**c, room_id, exam_id, Utc::now()).await?;
    let unlisted = tiles.iter().any(|t| t["incident"]["id"].as_str().is_some_and(|k| !listed(k)));
    let alerts =
        if with_incidents || unlisted { Some(Value::Array(alerts(&**c, exam_id, &tiles).await?)) } else { None };
    Ok((exam.unwrap_or(Value::Null), tiles, alerts))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tile_says_offline_then_camera_then_session_then_alert() {
        let ok = json!({"camera": {"state": "ok"}, "reasons": [], "alert": false});
        let alert = json!({"camera": {"state": "ok"}, "reasons": ["no_face"], "alert": true});
        let covered = json!({"camera": {"state": "ok"}, "reasons": ["camera_covered"], "alert": true});
        let lost = json!({"camera": {"state": "failed"}, "reasons": [], "alert": false});
        assert_eq!(tile_state(false, true, Some(&alert)), "offline");
        assert_eq!(tile_state(true, true, Some(&covered)), "camera");
        assert_eq!(tile_state(true, false, Some(&lost)), "camera");
        assert_eq!(tile_state(true, false, Some(&ok)), "no_session");
        assert_eq!(tile_state(true, true, Some(&alert)), "alert");
        assert_eq!(tile_state(true, true, Some(&ok)), "in_session");
        assert_eq!(tile_state(true, true, None), "in_session");
    }

    #[test]
    fn another_sites_websocket_is_refused() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, "hub:8080".parse().unwrap());
        assert!(cross_site_upgrade(&h).is_ok());
        h.insert(header::ORIGIN, "http://hub:8080".parse().unwrap());
        assert!(cross_site_upgrade(&h).is_ok());
        h.insert(header::ORIGIN, "http://evil.example".parse().unwrap());
        assert!(cross_site_upgrade(&h).is_err());
    }
}
