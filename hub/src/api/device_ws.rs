//! `GET /api/device/ws`: the one connection a box keeps to the hub
//! (outbound from the box; the protocol is `proto::device`).
//!
//! On connect the hub sends `welcome` (device id, room, hub clock), then
//! `session` (the desk's open session or null), then `session` again on
//! every change, pushed by [`crate::sessions`]. The box sends `state` at
//! least once a second; each one updates [`crate::connections`] and the box's
//! clock skew. Messages of unknown type are ignored (a newer box may send
//! more); a message over 64 KiB closes the connection.
//!
//! Connections are bounded by the enrolled desks: only a valid device
//! token upgrades, and a desk's new connection replaces its old one (which
//! is closed with 1008). Each connection's push queue holds 8 messages.
//!
//! A connection silent for 30 s is closed (the box is gone or wedged); the
//! hub pings every 15 s so proxies keep it open. At shutdown each
//! connection is closed with 1012 ("service restart"): the box reconnects,
//! to this hub when it is back or to another behind the same address.

use std::time::Duration;

use axum::extract::State;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use futures_util::{SinkExt, StreamExt};
use proto::device::{FromDevice, ToDevice};

use crate::connections::Push;
use crate::db::desks::Desk;
use crate::error::ApiError;
use crate::state::AppState;

/// Largest message accepted from a box.
pub const MAX_MESSAGE: usize = 64 << 10;
/// A box silent this long is disconnected.
pub const SILENCE: Duration = Duration::from_secs(30);
const PING_EVERY: Duration = Duration::from_secs(15);

pub async fn upgrade(State(app): State<AppState>, headers: HeaderMap, ws: WebSocketUpgrade) -> Response {
    let desk = match crate::auth::device::desk(&app, &headers).await {
        Ok(d) => d,
        Err(e) => return e.into_response(),
    };
    if app.shutdown.is_raised() {
        return ApiError::unavailable("the hub is stopping", 1).into_response();
    }
    ws.max_message_size(MAX_MESSAGE).max_frame_size(MAX_MESSAGE).on_upgrade(move |socket| run(app, desk, socket))
}

async fn run(app: AppState, desk: Desk, socket: WebSocket) {
    let (generation, mut pushes) = app.connections.connect(&desk, app.clock.now());
    app.metrics.desks_connected.set(app.connections.count() as i64);
    tracing::info!(desk = %desk.device_id, room = %desk.room, "device: connected");
    let (mut tx, mut rx) = socket.split();
    let welcome = ToDevice::Welcome {
        device_id: desk.device_id.clone(),
        room: desk.room.clone(),
        hub_time: proto::Timestamp(app.clock.now()),
    };
    let mut why = "closed by the box";
    if send(&mut tx, &welcome).await.is_err() {
        why = "send failed";
    } else {
        // The first session goes through the same path as every push, so
        // "sent" is recorded and a concurrent push is not duplicated.
        if let Err(e) = crate::sessions::push_to(&app, &[desk.id]).await {
            tracing::warn!(desk = %desk.device_id, error = %e, "device: reading the session failed; the reconcile retries");
        }
        let mut ping = tokio::time::interval(PING_EVERY);
        ping.tick().await;
        let silence = tokio::time::sleep(SILENCE);
        tokio::pin!(silence);
        loop {
            tokio::select! {
                m = rx.next() => match m {
                    Some(Ok(Message::Text(t))) => {
                        silence.as_mut().reset(tokio::time::Instant::now() + SILENCE);
                        let now = app.clock.now();
                        match serde_json::from_str::<FromDevice>(t.as_str()) {
                            Ok(FromDevice::State(s)) => app.connections.update(desk.id, generation, &s, now),
                            Err(e) => {
                                app.connections.seen(desk.id, generation, now);
                                tracing::debug!(desk = %desk.device_id, error = %e, "device: ignoring a message");
                            }
                        }
                    }
                    Some(Ok(Message::Close(_))) | None => break,
                    Some(Ok(_)) => {
                        silence.as_mut().reset(tokio::time::Instant::now() + SILENCE);
                        app.connections.seen(desk.id, generation, app.clock.now());
                    }
                    Some(Err(e)) => {
                        tracing::info!(desk = %desk.device_id, error = %e, "device: connection error");
                        why = "connection error";
                        break;
                    }
                },
                p = pushes.recv() => match p {
                    Some(Push::Session(s)) => {
                        app.metrics.session_pushes.inc();
                        if send(&mut tx, &ToDevice::Session { session: s }).await.is_err() {
                            why = "send failed";
                            break;
                        }
                    }
                    Some(Push::Close(reason)) => {
                        let _ = tx.send(Message::Close(Some(CloseFrame { code: 1008, reason: reason.into() }))).await;
                        why = reason;
                        break;
                    }
                    None => break,
                },
                _ = ping.tick() => {
                    if tx.send(Message::Ping(Vec::new().into())).await.is_err() {
                        why = "send failed";
                        break;
                    }
                }
                _ = &mut silence => {
                    why = "silent for 30 s";
                    let _ = tx.send(Message::Close(Some(CloseFrame { code: 1001, reason: "silent for 30 s".into() }))).await;
                    break;
                }
                _ = app.shutdown.wait() => {
                    why = "hub stopping";
                    let _ = tx.send(Message::Close(Some(CloseFrame { code: 1012, reason: "hub restarting".into() }))).await;
                    break;
                }
            }
        }
    }
    app.connections.disconnect(desk.id, generation, app.clock.now());
    app.metrics.desks_connected.set(app.connections.count() as i64);
    tracing::info!(desk = %desk.device_id, why, "device: disconnected");
}

async fn send<S>(tx: &mut S, msg: &ToDevice) -> Result<(), axum::Error>
where
    S: SinkExt<Message, Error = axum::Error> + Unpin,
{
    let text = serde_json::to_string(msg).expect("ToDevice serialises");
    tx.send(Message::Text(text.into())).await
}
