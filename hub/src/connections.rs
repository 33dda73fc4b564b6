//! The desks connected to this hub: for each, the channel its WebSocket
//! task reads pushes from, the session last sent to it, and its latest live
//! state (with the box's clock skew). A `std` mutex guards the map: nothing
//! awaits while it is held.
//!
//! Guarantees:
//! 1. One connection per desk: a new connection of the same desk replaces
//!    the old one, which is told to close; the old one's disconnect does not
//!    remove the new one (a generation number tells them apart).
//! 2. A session is pushed only when it differs from the one last sent to
//!    that connection; the first push after connecting always goes.
//! 3. Pushes never block: each connection has a queue of 8; a full queue
//!    (a connection that does not drain) forgets what was sent, so the next
//!    reconcile tries again.
//! 4. Changed states (and disconnects) are collected for the `desk_live`
//!    table and written in one statement every 500 ms ([`Connections::take_dirty`]).

use std::collections::HashMap;
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use proto::device::{DeviceSession, DeviceState};
use tokio::sync::mpsc;

use crate::db::desk_live::LiveRow;
use crate::db::desks::Desk;

/// What a connection's task is told to do.
#[derive(Clone, Debug, PartialEq)]
pub enum Push {
    Session(Option<DeviceSession>),
    /// Replaced by a newer connection, or the desk was revoked.
    Close(&'static str),
}

/// Queue length per connection.
const QUEUE: usize = 8;

struct Conn {
    generation: u64,
    tx: mpsc::Sender<Push>,
    /// None: nothing sent yet.
    sent: Option<Option<DeviceSession>>,
    state: Option<serde_json::Value>,
    session_id: Option<String>,
    seen_at: DateTime<Utc>,
    skew_ms: Option<i64>,
    dirty: bool,
}

#[derive(Default)]
struct Inner {
    conns: HashMap<i64, Conn>,
    next_gen: u64,
    /// Desks that disconnected since the last flush (desk id, when).
    gone: Vec<(i64, DateTime<Utc>)>,
}

/// See the module docs.
#[derive(Default)]
pub struct Connections {
    inner: Mutex<Inner>,
}

impl Connections {
    pub fn new() -> Connections {
        Connections::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic elsewhere must not take every desk down with it.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a connection of `desk`; returns its generation and queue.
    pub fn connect(&self, desk: &Desk, now: DateTime<Utc>) -> (u64, mpsc::Receiver<Push>) {
        let (tx, rx) = mpsc::channel(QUEUE);
        let mut g = self.lock();
        g.next_gen += 1;
        let generation = g.next_gen;
        let conn = Conn {
            generation,
            tx,
            sent: None,
            state: None,
            session_id: None,
            seen_at: now,
            skew_ms: None,
            dirty: true,
        };
        if let Some(old) = g.conns.insert(desk.id, conn) {
            let _ = old.tx.try_send(Push::Close("replaced by a newer connection of this desk"));
        }
        (generation, rx)
    }

    /// Forgets connection `generation` of `desk_id` (if it is still the current one).
    pub fn disconnect(&self, desk_id: i64, generation: u64, now: DateTime<Utc>) {
        let mut g = self.lock();
        if g.conns.get(&desk_id).is_some_and(|c| c.generation == generation) {
            g.conns.remove(&desk_id);
            g.gone.push((desk_id, now));
        }
    }

    /// Tells a desk's connection to close (its token was revoked).
    pub fn close(&self, desk_id: i64, why: &'static str) {
        if let Some(c) = self.lock().conns.get(&desk_id) {
            let _ = c.tx.try_send(Push::Close(why));
        }
    }

    /// A state message from the box, received at `now`.
    pub fn update(&self, desk_id: i64, generation: u64, state: &DeviceState, now: DateTime<Utc>) {
        let json = serde_json::to_value(state).ok();
        let mut g = self.lock();
        if let Some(c) = g.conns.get_mut(&desk_id).filter(|c| c.generation == generation) {
            if let Some(ts) = state.ts {
                c.skew_ms = Some(now.timestamp_millis() - ts.millis());
            }
            c.session_id = state.session_id.clone();
            c.state = json;
            c.seen_at = now;
            c.dirty = true;
        }
    }

    /// A message of any kind from the box (keeps it "seen").
    pub fn seen(&self, desk_id: i64, generation: u64, now: DateTime<Utc>) {
        if let Some(c) = self.lock().conns.get_mut(&desk_id).filter(|c| c.generation == generation) {
            c.seen_at = now;
            c.dirty = true;
        }
    }

    /// hub - box clock difference from the desk's live state (ms).
    pub fn skew(&self, desk_id: i64) -> Option<i64> {
        self.lock().conns.get(&desk_id).and_then(|c| c.skew_ms)
    }

    /// Desks connected here.
    pub fn connected(&self) -> Vec<i64> {
        self.lock().conns.keys().copied().collect()
    }

    pub fn count(&self) -> usize {
        self.lock().conns.len()
    }

    /// Pushes to each of `desks` connected here its session in `sessions`
    /// (absent: none) if it differs from what was last sent; returns how
    /// many were pushed.
    pub fn push_sessions(&self, desks: &[i64], sessions: &HashMap<i64, DeviceSession>) -> usize {
        let mut g = self.lock();
        let mut pushed = 0;
        for id in desks {
            let Some(c) = g.conns.get_mut(id) else { continue };
            let now = sessions.get(id).cloned();
            if c.sent.as_ref() == Some(&now) {
                continue;
            }
            match c.tx.try_send(Push::Session(now.clone())) {
                Ok(()) => {
                    c.sent = Some(now);
                    pushed += 1;
                }
                Err(e) => {
                    tracing::warn!(desk = id, error = %e, "live: a desk's queue is full; its session is retried at the next reconcile");
                    c.sent = None;
                }
            }
        }
        pushed
    }

    /// The rows to write to `desk_live`: changed states and disconnects.
    pub fn take_dirty(&self) -> Vec<LiveRow> {
        let mut g = self.lock();
        let mut rows: Vec<LiveRow> = std::mem::take(&mut g.gone)
            .into_iter()
            .map(|(desk_id, at)| LiveRow { desk_id, connected: false, seen_at: at, skew_ms: None, state: None })
            .collect();
        for (id, c) in g.conns.iter_mut().filter(|(_, c)| c.dirty) {
            c.dirty = false;
            rows.retain(|r| r.desk_id != *id);
            rows.push(LiveRow {
                desk_id: *id,
                connected: true,
                seen_at: c.seen_at,
                skew_ms: c.skew_ms,
                state: c.state.clone(),
            });
        }
        rows
    }

    /// Every connected desk as disconnected (at shutdown).
    pub fn all_gone(&self, now: DateTime<Utc>) -> Vec<LiveRow> {
        let g = self.lock();
        g.conns
            .keys()
            .map(|id| LiveRow { desk_id: *id, connected: false, seen_at: now, skew_ms: None, state: None })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::Timestamp;

    fn desk(id: i64) -> Desk {
        Desk { id, device_id: format!("d{id}"), room_id: 1, room: "r".into() }
    }

    fn session(s: &str) -> DeviceSession {
        DeviceSession {
            session_id: s.into(),
            student_id: "x".into(),
            exam_id: None,
            started: Timestamp::from_millis(0).unwrap(),
        }
    }

    #[test]
    fn sessions_are_pushed_once_per_change_and_first_always() {
        let live = Connections::new();
        let now = Utc::now();
        let (_, mut rx) = live.connect(&desk(1), now);
        let none = HashMap::new();
        assert_eq!(live.push_sessions(&[1, 2], &none), 1);
        assert_eq!(rx.try_recv().unwrap(), Push::Session(None));
        assert_eq!(live.push_sessions(&[1], &none), 0);
        let with = HashMap::from([(1, session("s1"))]);
        assert_eq!(live.push_sessions(&[1], &with), 1);
        assert_eq!(rx.try_recv().unwrap(), Push::Session(Some(session("s1"))));
        assert_eq!(live.push_sessions(&[1], &with), 0);
    }

    #[test]
    fn a_newer_connection_replaces_the_old_and_survives_its_disconnect() {
        let live = Connections::new();
        let now = Utc::now();
        let (g1, mut rx1) = live.connect(&desk(1), now);
        let (_g2, _rx2) = live.connect(&desk(1), now);
        assert!(matches!(rx1.try_recv().unwrap(), Push::Close(_)));
        live.disconnect(1, g1, now);
        assert_eq!(live.connected(), vec![1]);
    }

    #[test]
    fn states_give_the_skew_and_dirty_rows() {
        let live = Connections::new();
        let now = Utc::now();
        let (g, _rx) = live.connect(&desk(1), now);
        let st = DeviceState { ts: Some(Timestamp(now - chrono::Duration::days(1))), ..Default::default() };
        live.update(1, g, &st, now);
        assert_eq!(live.skew(1), Some(86_400_000));
        let rows = live.take_dirty();
        assert_eq!((rows.len(), rows[0].connected), (1, true));
        assert!(live.take_dirty().is_empty());
        live.disconnect(1, g, now);
        let rows = live.take_dirty();
        assert_eq!((rows.len(), rows[0].connected), (1, false));
    }
}
