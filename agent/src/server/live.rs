//! `/live`: every analysis the run loop produces and an incident object
//! when an incident opens and closes, to each connected client. A client
//! that reads too slowly skips messages (a broadcast of 64); the skipped
//! count is `invigil_live_lagged_messages_total`. A client that connects
//! while an incident is open gets it first.

use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::extract::ws::{Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::response::Response;
use futures_util::{SinkExt, StreamExt};
use tokio::sync::broadcast;

use super::{Health, Shared, too_busy};
use crate::domain::Incident;

/// Messages buffered per client before it skips.
const BUFFER: usize = 64;

/// The broadcast to `/live` clients.
pub struct Live {
    tx: broadcast::Sender<Arc<str>>,
    /// The open incident's message, sent first to a client that connects
    /// while it lasts.
    open_incident: Mutex<Option<Arc<str>>>,
}

impl Live {
    pub fn new() -> Self {
        Live { tx: broadcast::channel(BUFFER).0, open_incident: Mutex::new(None) }
    }

    pub fn receiver_count(&self) -> usize {
        self.tx.receiver_count()
    }

    /// Sends one analysis; never blocks; does nothing without clients.
    pub fn publish(&self, a: &proto::Analysis) {
        if self.tx.receiver_count() == 0 {
            return;
        }
        if let Ok(s) = serde_json::to_string(a) {
            let _ = self.tx.send(Arc::from(s));
        }
    }

    /// An incident opened or closed, as the incident object score batches
    /// carry, with the device and session (`clip` is null here: the clip's
    /// object is known only once uploaded, and goes upstream then).
    pub fn publish_incident(&self, device_id: &str, inc: &Incident) {
        let live = proto::LiveIncident {
            device_id: device_id.to_string(),
            session_id: inc.session_id.clone(),
            incident: inc.to_wire(vec![]),
        };
        let msg: Arc<str> = Arc::from(serde_json::to_string(&live).expect("JSON of plain data"));
        *self.open_incident.lock().unwrap() = inc.ended.is_none().then(|| msg.clone());
        let _ = self.tx.send(msg);
    }
}

impl Default for Live {
    fn default() -> Self {
        Self::new()
    }
}

pub(super) async fn handler(State(s): State<Arc<Shared>>, ws: WebSocketUpgrade) -> Response {
    let Ok(permit) = s.conns.clone().try_acquire_owned() else { return too_busy() };
    let rx = s.live.tx.subscribe();
    // Taken after subscribing: an incident that closes meanwhile is also
    // in `rx`, so the client ends up with its latest state.
    let open = s.live.open_incident.lock().unwrap().clone();
    let health = s.health.clone();
    ws.max_message_size(64 << 10).on_upgrade(move |socket| async move {
        let _permit = permit;
        live_loop(socket, open, rx, health).await
    })
}

async fn live_loop(
    socket: WebSocket,
    open_incident: Option<Arc<str>>,
    mut rx: broadcast::Receiver<Arc<str>>,
    health: Arc<Health>,
) {
    use std::sync::atomic::Ordering;
    let (mut tx, mut incoming) = socket.split();
    if let Some(text) = open_incident
        && tx.send(Message::Text(Utf8Bytes::from(&*text))).await.is_err()
    {
        return;
    }
    loop {
        tokio::select! {
            m = rx.recv() => match m {
                Ok(text) => {
                    if tx.send(Message::Text(Utf8Bytes::from(&*text))).await.is_err() {
                        return;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    health.live_lagged.fetch_add(n, Ordering::Relaxed);
                }
                Err(broadcast::error::RecvError::Closed) => return,
            },
            m = incoming.next() => match m {
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                Some(Ok(_)) => {}
            },
        }
    }
}
