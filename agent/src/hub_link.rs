//! The box's link to its hub (`[hub]`): one WebSocket the box opens (boxes
//! only connect outward) at `proto::device::DEVICE_WS_PATH`, with its
//! device token. Over it the hub says which exam session the desk is in
//! (at once on connect, and within its own 2 s of a change), and the box
//! reports its live state twice a second (the contract: at least once), and at once when an
//! incident opens or closes or the session changes.
//!
//! # Guarantees
//! 1. **The hub's session is the box's session.** A `session` message sets
//!    the box's session (replacing one started on the local API); `null`
//!    stops it. It is also written to `hub-session.json` beside the spool
//!    (temp file, fsync, rename), so a box restarted while the hub is away
//!    keeps scoring under its last known session.
//! 2. **Losing the hub changes nothing but the link.** Scoring, spooling
//!    and sync go on under the last known session; the link reconnects with
//!    backoff (1 s doubling to 30 s, jitter; 60 s after the hub refuses the
//!    token) and takes up the hub's word again when it is back.
//! 3. **Reported.** `/healthz` has a `hub` part: ok while connected,
//!    degraded while reconnecting, failed while the hub refuses the token.
//! 4. **Bounded.** One connection; messages from the hub over 64 KiB close
//!    it; a state message is a few hundred bytes a second.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use proto::device::{DeviceSession, DeviceState, FromDevice, Health, HealthState, OpenIncident, ToDevice};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::clock::SharedClock;
use crate::credentials::HUB_TOKEN;
use crate::domain::Session;
use crate::server::Shared;
use crate::server::health::{spool_state, sync_state};
use crate::shutdown::Shutdown;
use crate::sync::Backoff;
use crate::worker::Worker;

/// The file beside the spool holding the last session the hub gave.
pub const SESSION_FILE: &str = "hub-session.json";

/// What the link needs, every default documented.
#[derive(Clone, Debug)]
pub struct HubLinkSettings {
    /// `ws(s)://HUB/api/device/ws`.
    pub ws_url: String,
    /// The device token (read again before each connection).
    pub token_file: PathBuf,
    /// Where the last session is kept (`<spool folder>/hub-session.json`).
    pub session_file: PathBuf,
    /// State messages at least this often. Default 1 s.
    pub state_every: Duration,
    /// Reconnect backoff. Default 1 s doubling to 30 s.
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    /// Wait after the hub refused the token. Default 60 s.
    pub refused_wait: Duration,
    /// Connecting (TCP, TLS, upgrade) may take this long. Default 10 s.
    pub connect_timeout: Duration,
}

impl HubLinkSettings {
    pub fn from_config(cfg: &crate::config::Validated) -> Option<Self> {
        let hub = cfg.hub.as_ref()?;
        let dir = cfg.spool_path.parent().map(Path::to_path_buf).unwrap_or_default();
        Some(HubLinkSettings {
            ws_url: hub.ws_url(),
            token_file: hub.token_file.clone(),
            session_file: dir.join(SESSION_FILE),
            state_every: Duration::from_millis(proto::device::STATE_EVERY_MS),
            backoff_min: Duration::from_secs(1),
            backoff_max: Duration::from_secs(30),
            refused_wait: Duration::from_secs(60),
            connect_timeout: Duration::from_secs(10),
        })
    }
}

/// The session the hub gave last, if one was kept.
pub fn load_session(file: &Path) -> Option<Session> {
    let text = std::fs::read_to_string(file).ok()?;
    match serde_json::from_str::<Option<DeviceSession>>(&text) {
        Ok(s) => s.map(session_of),
        Err(e) => {
            tracing::warn!(file = %file.display(), error = %e, "hub link: the kept session is unreadable; ignored");
            None
        }
    }
}

/// Keeps the hub's session across restarts: temp file, fsync, rename.
fn save_session(file: &Path, s: &Option<DeviceSession>) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = file.with_extension("json.tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(serde_json::to_string(s).expect("JSON of plain data").as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, file)?;
    if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

fn session_of(s: DeviceSession) -> Session {
    Session { session_id: s.session_id, student_id: s.student_id, started: s.started.0, exam_id: s.exam_id }
}

/// The running link; stops (closing the connection) when dropped.
pub struct HubLink {
    worker: Worker,
}

impl HubLink {
    pub fn stop(self) {
        self.worker.stop();
    }
}

/// Starts the link in a thread of its own. The kept session (if any) is
/// the box's session from now on, until the hub says otherwise.
pub fn spawn(settings: HubLinkSettings, shared: Arc<Shared>, clock: SharedClock) -> std::io::Result<HubLink> {
    if let Some(s) = load_session(&settings.session_file) {
        tracing::info!(session = %s.session_id, "hub link: scoring under the session the hub gave last");
        shared.sessions.set_from_hub(Some(s));
    }
    set_health(&shared, HealthState::Degraded, Some("connecting".into()));
    let worker = Worker::spawn("hub-link", move |stop| async move { run(settings, shared, clock, stop).await })?;
    Ok(HubLink { worker })
}

fn set_health(shared: &Shared, state: HealthState, reason: Option<String>) {
    *shared.health.hub.lock().unwrap() = Some((state, reason));
}

/// How a connection ended.
enum Ended {
    Stopped,
    /// The hub refused the token (HTTP status).
    Refused(u16),
    /// Anything else: reconnect after the backoff.
    Lost(String),
}

async fn run(settings: HubLinkSettings, shared: Arc<Shared>, clock: SharedClock, stop: Shutdown) {
    let mut backoff = Backoff::new(settings.backoff_min, settings.backoff_max);
    let mut last_error: Option<String> = None;
    tracing::info!(hub = %settings.ws_url, "hub link: started");
    while !stop.is_raised() {
        let wait = match connect_and_serve(&settings, &shared, &clock, &stop, &mut backoff).await {
            Ended::Stopped => break,
            Ended::Refused(status) => {
                let why = format!("the hub refused the device token (HTTP {status}); check hub.token_file");
                if last_error.as_deref() != Some(why.as_str()) {
                    tracing::error!(hub = %settings.ws_url, "hub link: {why}");
                }
                set_health(&shared, HealthState::Failed, Some(why.clone()));
                last_error = Some(why);
                settings.refused_wait
            }
            Ended::Lost(why) => {
                let wait = backoff.next_wait();
                if last_error.as_deref() != Some(why.as_str()) {
                    tracing::warn!(hub = %settings.ws_url, error = %why, retry_in_ms = wait.as_millis() as u64,
                        "hub link: no connection; scoring goes on under the last known session");
                }
                set_health(&shared, HealthState::Degraded, Some(format!("reconnecting: {why}")));
                last_error = Some(why);
                wait
            }
        };
        if stop.sleep(wait).await {
            break;
        }
    }
    tracing::info!("hub link: stopped");
}

/// A TLS setup for `wss://`: the platform's roots, aws-lc-rs (as reqwest).
fn tls() -> Result<tokio_tungstenite::Connector, String> {
    use rustls_platform_verifier::BuilderVerifierExt;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .and_then(|b| b.with_platform_verifier())
        .map_err(|e| format!("TLS: {e}"))?
        .with_no_client_auth();
    Ok(tokio_tungstenite::Connector::Rustls(Arc::new(config)))
}

async fn connect_and_serve(
    settings: &HubLinkSettings,
    shared: &Shared,
    clock: &SharedClock,
    stop: &Shutdown,
    backoff: &mut Backoff,
) -> Ended {
    use tokio_tungstenite::tungstenite::Error as WsError;
    let token = match HUB_TOKEN.read(&settings.token_file) {
        Ok(t) => t,
        Err(e) => return Ended::Lost(e.to_string()),
    };
    let mut req = match settings.ws_url.as_str().into_client_request() {
        Ok(r) => r,
        Err(e) => return Ended::Lost(format!("{}: {e}", settings.ws_url)),
    };
    match format!("Bearer {token}").parse() {
        Ok(v) => {
            req.headers_mut().insert("authorization", v);
        }
        Err(_) => return Ended::Lost(format!("{}: the token is not a valid header value", HUB_TOKEN.key)),
    }
    let connector = if settings.ws_url.starts_with("wss://") {
        match tls() {
            Ok(c) => Some(c),
            Err(e) => return Ended::Lost(e),
        }
    } else {
        None
    };
    let ws_config =
        tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default().max_message_size(Some(64 << 10));
    let connecting = tokio_tungstenite::connect_async_tls_with_config(req, Some(ws_config), false, connector);
    let ws = tokio::select! {
        r = tokio::time::timeout(settings.connect_timeout, connecting) => match r {
            Err(_) => return Ended::Lost("connecting timed out".into()),
            Ok(Err(WsError::Http(resp))) if matches!(resp.status().as_u16(), 401 | 403) => {
                return Ended::Refused(resp.status().as_u16());
            }
            Ok(Err(e)) => return Ended::Lost(e.to_string()),
            Ok(Ok((ws, _))) => ws,
        },
        _ = stop.raised() => return Ended::Stopped,
    };
    backoff.reset();
    set_health(shared, HealthState::Ok, None);
    tracing::info!(hub = %settings.ws_url, "hub link: connected");
    let (mut tx, mut rx) = ws.split();
    let mut desk = shared.desk_state.subscribe();
    let mut tick = tokio::time::interval(settings.state_every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.raised() => {
                let _ = tx.send(Message::Close(None)).await;
                return Ended::Stopped;
            }
            m = rx.next() => match m {
                Some(Ok(Message::Text(t))) => match serde_json::from_str::<ToDevice>(&t) {
                    Ok(msg) => {
                        if on_message(msg, settings, shared) {
                            // Tell the hub at once that the box follows.
                            desk.mark_changed();
                        }
                    }
                    // A newer hub's message type: ignored, as the protocol says.
                    Err(e) => tracing::debug!(error = %e, "hub link: a message not understood; ignored"),
                },
                Some(Ok(Message::Close(c))) => return Ended::Lost(format!("the hub closed the connection ({c:?})")),
                Some(Ok(_)) => {}
                Some(Err(e)) => return Ended::Lost(e.to_string()),
                None => return Ended::Lost("the connection ended".into()),
            },
            r = desk.changed() => {
                if r.is_err() {
                    return Ended::Stopped;
                }
                if let Err(e) = send_state(&mut tx, shared, clock).await {
                    return Ended::Lost(e);
                }
            }
            _ = tick.tick() => {
                if let Err(e) = send_state(&mut tx, shared, clock).await {
                    return Ended::Lost(e);
                }
            }
        }
    }
}

/// Takes up one message from the hub; true when the session changed.
fn on_message(msg: ToDevice, settings: &HubLinkSettings, shared: &Shared) -> bool {
    match msg {
        ToDevice::Welcome { device_id, room, hub_time } => {
            let skew_ms = (hub_time.0 - chrono::Utc::now()).num_milliseconds();
            tracing::info!(device = %device_id, room = %room, clock_skew_ms = skew_ms, "hub link: welcomed");
            if skew_ms.abs() > 5_000 {
                tracing::warn!(
                    clock_skew_ms = skew_ms,
                    "hub link: this box's clock is off; the hub places scores by its own"
                );
            }
            false
        }
        ToDevice::Session { session } => {
            if let Err(e) = save_session(&settings.session_file, &session) {
                tracing::warn!(file = %settings.session_file.display(), error = %e,
                    "hub link: cannot keep the session for a restart");
            }
            let changed = shared.sessions.set_from_hub(session.clone().map(session_of));
            if changed {
                match &session {
                    Some(s) => {
                        tracing::info!(session = %s.session_id, student = %s.student_id, "hub link: session started by the hub")
                    }
                    None => tracing::info!("hub link: session stopped by the hub"),
                }
            }
            changed
        }
    }
}

fn health_of((state, reason): (HealthState, Option<String>)) -> Health {
    Health { state, reason }
}

/// The box's state now, as the hub wants it.
pub fn state_now(shared: &Shared, clock: &SharedClock) -> DeviceState {
    let d = shared.desk_state.borrow().clone();
    let pending = shared.sync.as_ref().map(|s| s.pending_scores.load(std::sync::atomic::Ordering::Relaxed));
    DeviceState {
        ts: Some(clock.now().into()),
        session_id: shared.current_session().map(|s| s.session_id),
        frame: d.frame,
        focus_score: d.focus_score,
        reasons: d.reasons,
        alert: d.alert,
        recording: d.recording,
        incident: d.incident.map(|(id, started)| OpenIncident { id, started: started.into() }),
        camera: health_of(shared.health.camera()),
        encoder: shared.health.encoder.lock().unwrap().clone(),
        spool: health_of(spool_state(shared)),
        sync: health_of(sync_state(shared)),
        pending_scores: pending.unwrap_or(0),
    }
}

async fn send_state<S>(tx: &mut S, shared: &Shared, clock: &SharedClock) -> Result<(), String>
where
    S: futures_util::Sink<Message> + Unpin,
    S::Error: std::fmt::Display,
{
    let msg = FromDevice::State(state_now(shared, clock));
    let text = serde_json::to_string(&msg).expect("JSON of plain data");
    tokio::time::timeout(Duration::from_secs(10), tx.send(Message::Text(text.into())))
        .await
        .map_err(|_| "sending timed out".to_string())?
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kept_session_survives_a_restart_and_a_stop_is_kept_too() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join(SESSION_FILE);
        assert_eq!(load_session(&f), None);
        let s = DeviceSession {
            session_id: "ex7-desk-1".into(),
            student_id: "s-42".into(),
            exam_id: Some("7".into()),
            started: "2026-11-24T09:00:00Z".parse().unwrap(),
        };
        save_session(&f, &Some(s)).unwrap();
        let back = load_session(&f).unwrap();
        assert_eq!((back.session_id.as_str(), back.exam_id.as_deref()), ("ex7-desk-1", Some("7")));
        save_session(&f, &None).unwrap();
        assert_eq!(load_session(&f), None);
        std::fs::write(&f, "{not json").unwrap();
        assert_eq!(load_session(&f), None, "a damaged file is ignored, not fatal");
    }
}
