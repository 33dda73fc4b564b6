//! The live server on `server.listen` (issue 6): HTTP + WebSocket with axum.
//!
//! - `GET /live` (WebSocket): every [`Analysis`] the run loop produces, as
//!   JSON, and an incident object when an incident opens and when it
//!   closes. A client that reads too slowly skips messages; the skipped
//!   count is the `invigil_live_lagged_messages_total` metric.
//! - `GET /analyze` (WebSocket): the browser protocol of CONTRACTS.md. Each
//!   message is a JPEG (data URL text, JSON `{"frame"|"image": dataurl}`, or
//!   binary bytes); each frame `N` (per-connection counter from 0) gets one
//!   reply: an analysis, `{"type":"error","frame":N,"error":…}`, or, when
//!   the client sends faster than frames are scored (more than
//!   [`Limits::queue`] waiting), `{"type":"dropped","frame":N}` for the
//!   oldest waiting frame. Analysis and error replies come in frame order.
//!   A message over [`Limits::max_message`] closes the connection (1009).
//! - `POST /session/start` `{"session_id","student_id"}`, `POST /session/stop`,
//!   `GET /session`.
//! - `GET /preview.jpg`: the latest analysed camera frame (at most 2 a
//!   second, encoded only while someone asked in the last 5 s; 204 until then).
//! - `GET /` : a status page (score graph from `/live`, preview with face box).
//! - `GET /healthz` (never needs the token), `GET /metrics` (Prometheus).
//!
//! With a token configured, every other endpoint needs
//! `Authorization: Bearer <token>` (or `?token=` for browsers' WebSockets).

use std::collections::VecDeque;
use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures_util::{SinkExt, StreamExt};
use serde::Serialize;
use serde_json::json;
use tokio::sync::{Notify, Semaphore, broadcast, mpsc};

use crate::analysis::{Analysis, Analyzer, now_ts};

/// An exam session, started and stopped over the control API.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Session {
    pub session_id: String,
    pub student_id: String,
    pub started: String,
}

/// Makes one analyzer per `/analyze` connection.
pub type AnalyzerFactory = Arc<dyn Fn() -> Result<Analyzer, String> + Send + Sync>;

/// Bounds of the server.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Largest WebSocket message accepted.
    pub max_message: usize,
    /// Frames waiting per `/analyze` connection before the oldest is dropped.
    pub queue: usize,
    /// Concurrent WebSocket connections.
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self { max_message: 8 << 20, queue: 4, max_connections: 16 }
    }
}

/// Inference-time histogram bounds (milliseconds).
const BUCKETS_MS: [f64; 8] = [2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 250.0, 1000.0];

/// Counters the run loop and the server update; read by `/healthz` and `/metrics`.
#[derive(Default)]
pub struct Health {
    pub analysed: AtomicU64,
    /// `/analyze` frames dropped because the client sent too fast.
    pub analyze_dropped: AtomicU64,
    pub analyze_frames: AtomicU64,
    pub live_lagged: AtomicU64,
    pub camera_lost: AtomicBool,
    /// Milliseconds since `started` of the last camera frame; 0 = none yet.
    pub last_frame_ms: AtomicU64,
    buckets: [AtomicU64; BUCKETS_MS.len()],
    latency_sum_us: AtomicU64,
    pub encoder: Mutex<Option<String>>,
    /// The backend the model runs on (set by the run loop).
    pub model_backend: Mutex<Option<models::BackendChoice>>,
    /// Incidents left without a clip because the session's clip cap was reached.
    pub clips_refused: AtomicU64,
    /// Clips the current session may still record (gauge).
    pub clips_left: AtomicU64,
    /// Set once the current session has had an incident refused a clip.
    pub clips_capped: AtomicBool,
    fps: Mutex<(Option<Instant>, u64, f64)>,
    started: Mutex<Option<Instant>>,
}

impl Health {
    fn started(&self) -> Instant {
        *self.started.lock().unwrap().get_or_insert_with(Instant::now)
    }

    /// One camera frame analysed (or a camera-lost result, `lost`).
    pub fn frame(&self, a: &Analysis, lost: bool) {
        self.camera_lost.store(lost, Ordering::Relaxed);
        if lost {
            return;
        }
        let started = self.started();
        self.last_frame_ms.store(started.elapsed().as_millis().max(1) as u64, Ordering::Relaxed);
        self.observe(a.latency_ms);
        self.analysed.fetch_add(1, Ordering::Relaxed);
        let mut f = self.fps.lock().unwrap();
        let now = Instant::now();
        let since = *f.0.get_or_insert(now);
        f.1 += 1;
        let dt = now.duration_since(since).as_secs_f64();
        if dt >= 1.0 {
            f.2 = f.1 as f64 / dt;
            *f = (Some(now), 0, f.2);
        }
    }

    fn observe(&self, ms: f32) {
        for (i, b) in BUCKETS_MS.iter().enumerate() {
            if (ms as f64) <= *b {
                self.buckets[i].fetch_add(1, Ordering::Relaxed);
            }
        }
        self.latency_sum_us.fetch_add((ms.max(0.0) * 1000.0) as u64, Ordering::Relaxed);
    }
}

/// Everything the handlers share.
pub struct Shared {
    pub live: broadcast::Sender<Arc<str>>,
    pub session: Arc<Mutex<Option<Session>>>,
    pub health: Arc<Health>,
    pub token: Option<String>,
    pub analyzer: AnalyzerFactory,
    pub limits: Limits,
    pub writer: Option<Arc<crate::spool::WriterStats>>,
    pub sync: Option<Arc<crate::sync::SyncStats>>,
    pub upload: Option<Arc<crate::upload::UploadStats>>,
    /// The spool's folder, for the free-disk figure.
    pub spool_dir: Option<PathBuf>,
    conns: Arc<Semaphore>,
    /// When `/preview.jpg` was last asked for, and the last preview made.
    preview_wanted: Mutex<Option<Instant>>,
    preview: Mutex<Option<(Instant, Bytes)>>,
    /// The open incident's message, sent first to a `/live` client that
    /// connects while it lasts.
    open_incident: Mutex<Option<Arc<str>>>,
}

/// At most this many previews a second, and only while someone asks.
const PREVIEW_EVERY: Duration = Duration::from_millis(500);
const PREVIEW_IDLE: Duration = Duration::from_secs(5);

impl Shared {
    pub fn new(analyzer: AnalyzerFactory, token: Option<String>, limits: Limits) -> Self {
        let (live, _) = broadcast::channel(64);
        Self {
            live,
            session: Arc::default(),
            health: Arc::default(),
            token,
            analyzer,
            conns: Arc::new(Semaphore::new(limits.max_connections)),
            limits,
            writer: None,
            sync: None,
            upload: None,
            spool_dir: None,
            preview_wanted: Mutex::new(None),
            preview: Mutex::new(None),
            open_incident: Mutex::new(None),
        }
    }

    /// True when the run loop should JPEG-encode this frame for `/preview.jpg`
    /// (someone asked in the last 5 s, and the last preview is 0.5 s old).
    pub fn preview_due(&self) -> bool {
        let wanted = self.preview_wanted.lock().unwrap().is_some_and(|t| t.elapsed() < PREVIEW_IDLE);
        wanted && self.preview.lock().unwrap().as_ref().is_none_or(|(t, _)| t.elapsed() >= PREVIEW_EVERY)
    }

    /// Stores a preview of a packed-RGB frame (rows `stride` bytes apart).
    pub fn set_preview(&self, width: usize, height: usize, stride: usize, data: &[u8]) {
        let (Ok(w), Ok(h)) = (u16::try_from(width), u16::try_from(height)) else { return };
        let row = width * 3;
        if stride < row || data.len() < stride * (height.max(1) - 1) + row {
            return;
        }
        let packed: std::borrow::Cow<[u8]> = if stride == row {
            std::borrow::Cow::Borrowed(&data[..row * height])
        } else {
            std::borrow::Cow::Owned(data.chunks(stride).take(height).flat_map(|r| &r[..row]).copied().collect())
        };
        let mut out = Vec::new();
        if jpeg_encoder::Encoder::new(&mut out, 70).encode(&packed, w, h, jpeg_encoder::ColorType::Rgb).is_ok() {
            *self.preview.lock().unwrap() = Some((Instant::now(), Bytes::from(out)));
        }
    }

    /// Sends one analysis to `/live` clients; never blocks.
    pub fn publish(&self, a: &Analysis) {
        if self.live.receiver_count() == 0 {
            return;
        }
        if let Ok(s) = serde_json::to_string(a) {
            let _ = self.live.send(Arc::from(s));
        }
    }

    /// An incident opened or closed by the run loop, to `/live` as the same
    /// incident object score batches carry, with the device and session
    /// (`clip` is null here: the clip's object is known only once uploaded,
    /// and goes upstream then).
    pub fn publish_incident(&self, device_id: &str, row: &crate::spool::IncidentRow) {
        #[derive(serde::Serialize)]
        struct Live<'a> {
            device_id: &'a str,
            session_id: &'a Option<String>,
            #[serde(flatten)]
            incident: crate::sync::IncidentOut<'a>,
        }
        let live = Live { device_id, session_id: &row.session_id, incident: crate::sync::IncidentOut::new(row, &[]) };
        let msg: Arc<str> = Arc::from(serde_json::to_string(&live).expect("JSON of plain data"));
        *self.open_incident.lock().unwrap() = row.ended.is_none().then(|| msg.clone());
        let _ = self.live.send(msg);
    }

    /// The current session, if any.
    pub fn current_session(&self) -> Option<Session> {
        self.session.lock().unwrap().clone()
    }
}

/// The router (for tests and [`serve`]).
pub fn router(state: Arc<Shared>) -> Router {
    Router::new()
        .route("/live", get(live))
        .route("/analyze", get(analyze))
        .route("/session", get(session_get))
        .route("/session/start", post(session_start))
        .route("/session/stop", post(session_stop))
        .route("/metrics", get(metrics))
        .route("/", get(index))
        .route("/preview.jpg", get(preview))
        .layer(axum::middleware::from_fn_with_state(state.clone(), auth))
        .route("/healthz", get(healthz))
        .with_state(state)
}

/// Serves on `listener` until `shutdown` resolves; then waits at most 2 s
/// for connections to finish.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: Arc<Shared>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (tx, mut rx) = tokio::sync::watch::channel(false);
    let app = router(state);
    let mut rx2 = rx.clone();
    let server = axum::serve(listener, app).with_graceful_shutdown(async move {
        let _ = rx2.wait_for(|v| *v).await;
    });
    let server = tokio::spawn(async move { server.await });
    shutdown.await;
    let _ = tx.send(true);
    let _ = rx.borrow_and_update();
    match tokio::time::timeout(Duration::from_secs(2), server).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => Err(std::io::Error::other(e)),
        Err(_) => {
            tracing::warn!("server: connections still open after 2 s; closing them");
            Ok(())
        }
    }
}

/// Starts the server in a thread of its own (a 2-worker tokio runtime),
/// stopping when `shutdown` is set. An address in use (another process, an
/// agent still stopping) is retried until it is free, so a box never stays
/// without sessions for good; scoring goes on meanwhile.
pub fn spawn(
    listen: std::net::SocketAddr,
    state: Arc<Shared>,
    shutdown: Arc<AtomicBool>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    std::thread::Builder::new().name("server".into()).spawn(move || {
        let Some(listener) = rt.block_on(bind_retrying(listen, &shutdown)) else { return };
        tracing::info!(listen = %listener.local_addr().unwrap_or(listen), "server listening");
        let stop = async move {
            while !shutdown.load(Ordering::SeqCst) {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        };
        if let Err(e) = rt.block_on(serve(listener, state, stop)) {
            tracing::error!(error = %e, "server failed");
        }
        rt.shutdown_timeout(Duration::from_millis(500));
    })
}

/// Binds `listen`, retrying (1 s doubling to 10 s) while that fails; one
/// error line for the first failure, one line when it works. None if
/// `shutdown` comes first.
async fn bind_retrying(listen: std::net::SocketAddr, shutdown: &AtomicBool) -> Option<tokio::net::TcpListener> {
    let mut wait = Duration::from_secs(1);
    let mut failures = 0u32;
    loop {
        match tokio::net::TcpListener::bind(listen).await {
            Ok(l) => {
                if failures > 0 {
                    tracing::warn!(listen = %listen, failures, "server: the address is free again");
                }
                return Some(l);
            }
            Err(e) if failures == 0 => {
                tracing::error!(listen = %listen, error = %e,
                    "server cannot listen; retrying (no /live, /analyze or sessions until then)");
            }
            Err(e) => tracing::debug!(listen = %listen, error = %e, "server: still cannot listen"),
        }
        failures += 1;
        let end = Instant::now() + wait;
        while Instant::now() < end {
            if shutdown.load(Ordering::SeqCst) {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        wait = (wait * 2).min(Duration::from_secs(10));
    }
}

fn json_error(status: StatusCode, msg: impl std::fmt::Display) -> Response {
    (status, axum::Json(json!({ "error": msg.to_string() }))).into_response()
}

/// Constant-time token check (length is not secret).
fn token_ok(expected: &str, given: &str) -> bool {
    use subtle::ConstantTimeEq;
    expected.len() == given.len() && bool::from(expected.as_bytes().ct_eq(given.as_bytes()))
}

async fn auth(State(s): State<Arc<Shared>>, req: Request, next: Next) -> Response {
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

async fn index() -> Response {
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], include_str!("server/index.html")).into_response()
}

/// The latest preview JPEG (204 until the run loop made one). Asking keeps
/// previews coming for 5 s.
async fn preview(State(s): State<Arc<Shared>>) -> Response {
    *s.preview_wanted.lock().unwrap() = Some(Instant::now());
    match s.preview.lock().unwrap().as_ref() {
        Some((_, jpeg)) => {
            ([(header::CONTENT_TYPE, "image/jpeg"), (header::CACHE_CONTROL, "no-store")], jpeg.clone()).into_response()
        }
        None => StatusCode::NO_CONTENT.into_response(),
    }
}

async fn session_get(State(s): State<Arc<Shared>>) -> Response {
    axum::Json(json!({ "session": s.current_session() })).into_response()
}

async fn session_start(State(s): State<Arc<Shared>>, body: Bytes) -> Response {
    let v: serde_json::Value = match serde_json::from_slice(&body) {
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
    let mut cur = s.session.lock().unwrap();
    if let Some(c) = cur.as_ref() {
        return json_error(StatusCode::CONFLICT, format!("session {} is already running; stop it first", c.session_id));
    }
    let new = Session { session_id, student_id, started: now_ts() };
    tracing::info!(session = %new.session_id, student = %new.student_id, "session started");
    *cur = Some(new.clone());
    axum::Json(json!({ "session": new })).into_response()
}

async fn session_stop(State(s): State<Arc<Shared>>) -> Response {
    match s.session.lock().unwrap().take() {
        Some(old) => {
            tracing::info!(session = %old.session_id, "session stopped");
            axum::Json(json!({ "stopped": old })).into_response()
        }
        None => json_error(StatusCode::CONFLICT, "no session is running"),
    }
}

fn part(state: &str, reason: Option<String>) -> serde_json::Value {
    json!({ "state": state, "reason": reason })
}

fn disk_free(dir: &std::path::Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    // SAFETY: statvfs is a plain C struct of integers, for which all zeros is valid.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a valid NUL-terminated path and `st` a valid out-pointer.
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return None;
    }
    Some(st.f_bavail as u64 * st.f_frsize as u64)
}

async fn healthz(State(s): State<Arc<Shared>>) -> Response {
    let h = &s.health;
    let last = h.last_frame_ms.load(Ordering::Relaxed);
    let age_ms = h.started().elapsed().as_millis() as u64 - last.min(h.started().elapsed().as_millis() as u64);
    let camera = if h.camera_lost.load(Ordering::Relaxed) {
        part("failed", Some("camera lost".into()))
    } else if last == 0 {
        part("degraded", Some("no frame yet".into()))
    } else if age_ms > 3000 {
        part("degraded", Some(format!("last frame {} s ago", age_ms / 1000)))
    } else {
        part("ok", None)
    };
    let mut model = part("ok", None);
    if let Some(b) = h.model_backend.lock().unwrap().as_ref() {
        model["backend"] = json!(b.backend);
        model["library"] = json!(b.library);
        model["reason"] = json!(b.fallback.as_ref().map(|why| format!("LiteRT not used: {why}")));
    }
    let spool = match &s.writer {
        Some(w) if w.failing.load(Ordering::Relaxed) => part("failed", Some("the last spool commit failed".into())),
        Some(w) if w.full.load(Ordering::Relaxed) => part("degraded", Some("the spool is at its size cap".into())),
        _ => part("ok", None),
    };
    let sync = match &s.sync {
        None => part("ok", Some("sync not configured".into())),
        Some(st) if st.paused.load(Ordering::Relaxed) => {
            part("failed", Some(format!("paused after HTTP {}", st.last_status.load(Ordering::Relaxed))))
        }
        Some(st) if st.lag_ms.load(Ordering::Relaxed) > 60_000 => {
            part("degraded", Some(format!("{} s behind", st.lag_ms.load(Ordering::Relaxed) / 1000)))
        }
        Some(_) => part("ok", None),
    };
    let disk = match s.spool_dir.as_deref().and_then(disk_free) {
        Some(b) if b < 100 << 20 => part("degraded", Some(format!("{} MiB free", b >> 20))),
        Some(_) => part("ok", None),
        None => part("ok", Some("not measured".into())),
    };
    let clips = match &s.upload {
        Some(u) if u.over_quota.load(Ordering::Relaxed) => {
            part("degraded", Some("clips over clips.max_disk_mb and none uploaded to evict".into()))
        }
        _ if h.clips_capped.load(Ordering::Relaxed) => {
            part("ok", Some("clips.max_per_session reached: new incidents get no clip".into()))
        }
        _ => part("ok", None),
    };
    let all = [&camera, &model, &spool, &sync, &disk, &clips];
    let worst = if all.iter().any(|p| p["state"] == "failed") {
        "failed"
    } else if all.iter().any(|p| p["state"] == "degraded") {
        "degraded"
    } else {
        "ok"
    };
    axum::Json(json!({
        "state": worst, "camera": camera, "model": model, "spool": spool, "sync": sync, "disk": disk, "clips": clips
    }))
    .into_response()
}

async fn metrics(State(s): State<Arc<Shared>>) -> Response {
    use std::fmt::Write;
    let h = &s.health;
    let mut o = String::new();
    let mut m = |name: &str, kind: &str, help: &str, v: String| {
        let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}");
    };
    let ld = |a: &AtomicU64| a.load(Ordering::Relaxed).to_string();
    m("invigil_analysed_frames_total", "counter", "Camera frames analysed.", ld(&h.analysed));
    m("invigil_analysed_fps", "gauge", "Camera frames analysed per second.", format!("{:.2}", h.fps.lock().unwrap().2));
    m("invigil_analyze_frames_total", "counter", "Frames received on /analyze.", ld(&h.analyze_frames));
    m("invigil_analyze_dropped_total", "counter", "/analyze frames dropped (client too fast).", ld(&h.analyze_dropped));
    m("invigil_live_lagged_messages_total", "counter", "/live messages skipped by slow clients.", ld(&h.live_lagged));
    if let Some(w) = &s.writer {
        m("invigil_spool_committed_total", "counter", "Records committed to the spool.", ld(&w.committed));
        m("invigil_spool_dropped_total", "counter", "Records dropped before the spool.", ld(&w.dropped));
        m(
            "invigil_spool_failing",
            "gauge",
            "1 while spool commits fail.",
            (w.failing.load(Ordering::Relaxed) as u8).to_string(),
        );
    }
    if let Some(st) = &s.sync {
        m("invigil_sync_batches_sent_total", "counter", "Score batches delivered.", ld(&st.batches_sent));
        m("invigil_sync_retried_total", "counter", "Sync attempts retried.", ld(&st.retried));
        m("invigil_sync_dead_lettered_total", "counter", "Score batches dead-lettered.", ld(&st.dead_lettered));
        m("invigil_sync_pending_scores", "gauge", "Scores not yet delivered upstream.", ld(&st.pending_scores));
        m(
            "invigil_sync_lag_seconds",
            "gauge",
            "Age of the oldest undelivered score.",
            format!("{:.1}", st.lag_ms.load(Ordering::Relaxed) as f64 / 1000.0),
        );
    }
    m("invigil_clips_session_left", "gauge", "Clips the current session may still record.", ld(&h.clips_left));
    m(
        "invigil_clips_refused_total",
        "counter",
        "Incidents left without a clip by clips.max_per_session.",
        ld(&h.clips_refused),
    );
    if let Some(u) = &s.upload {
        m("invigil_uploads_total", "counter", "Clips uploaded.", ld(&u.uploaded));
        m("invigil_upload_pending", "gauge", "Clips waiting for upload.", ld(&u.pending));
        m("invigil_clips_evicted_total", "counter", "Uploaded clips deleted locally for the quota.", ld(&u.evicted));
        m(
            "invigil_clips_expired_total",
            "counter",
            "Uploaded clips deleted locally after clips.keep_uploaded_h.",
            ld(&u.expired),
        );
    }
    if let Some(b) = s.spool_dir.as_deref().and_then(disk_free) {
        m("invigil_disk_free_bytes", "gauge", "Free bytes in the spool's folder.", b.to_string());
    }
    let enc = h.encoder.lock().unwrap().clone().unwrap_or_else(|| "none".into()).replace(['"', '\\', '\n'], "_");
    m("invigil_encoder_info", "gauge", "The H.264 encoder in use.", String::new());
    o.truncate(o.len() - 2);
    let _ = writeln!(o, "{{encoder=\"{enc}\"}} 1");
    if let Some(b) = h.model_backend.lock().unwrap().as_ref() {
        let _ = writeln!(o, "# HELP invigil_model_backend_info The runtime the face model runs on.");
        let _ = writeln!(o, "# TYPE invigil_model_backend_info gauge");
        let _ = writeln!(o, "invigil_model_backend_info{{backend=\"{}\"}} 1", b.backend);
    }
    let _ = writeln!(o, "# HELP invigil_inference_ms Detection and scoring time per camera frame.");
    let _ = writeln!(o, "# TYPE invigil_inference_ms histogram");
    for (i, b) in BUCKETS_MS.iter().enumerate() {
        let _ = writeln!(o, "invigil_inference_ms_bucket{{le=\"{b}\"}} {}", h.buckets[i].load(Ordering::Relaxed));
    }
    let _ = writeln!(o, "invigil_inference_ms_bucket{{le=\"+Inf\"}} {}", h.analysed.load(Ordering::Relaxed));
    let _ = writeln!(o, "invigil_inference_ms_sum {}", h.latency_sum_us.load(Ordering::Relaxed) as f64 / 1000.0);
    let _ = writeln!(o, "invigil_inference_ms_count {}", h.analysed.load(Ordering::Relaxed));
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], o).into_response()
}

fn too_busy() -> Response {
    json_error(StatusCode::SERVICE_UNAVAILABLE, "too many connections")
}

async fn live(State(s): State<Arc<Shared>>, ws: WebSocketUpgrade) -> Response {
    let Ok(permit) = s.conns.clone().try_acquire_owned() else { return too_busy() };
    let rx = s.live.subscribe();
    // Taken after subscribing: an incident that closes meanwhile is also
    // in `rx`, so the client ends up with its latest state.
    let open = s.open_incident.lock().unwrap().clone();
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

async fn analyze(State(s): State<Arc<Shared>>, ws: WebSocketUpgrade) -> Response {
    let Ok(permit) = s.conns.clone().try_acquire_owned() else { return too_busy() };
    let max = s.limits.max_message;
    ws.max_message_size(max).max_frame_size(max).on_upgrade(move |socket| async move {
        let _permit = permit;
        analyze_conn(socket, s).await
    })
}

/// Decodes a JPEG to packed RGB: (width, height, pixels).
pub fn decode_jpeg(bytes: &[u8]) -> Result<(usize, usize, Vec<u8>), String> {
    use zune_jpeg::zune_core::bytestream::ZCursor;
    use zune_jpeg::zune_core::colorspace::ColorSpace;
    use zune_jpeg::zune_core::options::DecoderOptions;
    if bytes.len() < 4 || bytes[0] != 0xFF || bytes[1] != 0xD8 {
        return Err("not a JPEG".into());
    }
    let opts = DecoderOptions::default().jpeg_set_out_colorspace(ColorSpace::RGB).set_strict_mode(true);
    let mut d = zune_jpeg::JpegDecoder::new_with_options(ZCursor::new(bytes), opts);
    let px = d.decode().map_err(|e| format!("JPEG: {e}"))?;
    let (w, h) = d.dimensions().ok_or("JPEG without dimensions")?;
    if px.len() != w * h * 3 {
        return Err("JPEG decoded to an unexpected size".into());
    }
    Ok((w, h, px))
}

/// One `/analyze` frame: its number and the message as received (decoded
/// on the scoring thread, see [`crate::frame_decode`]).
struct Job(u64, Message);

/// What one connection's scoring thread keeps from frame to frame.
struct Scoring {
    analyzer: Analyzer,
    /// Base64 output, reused.
    scratch: Vec<u8>,
    jpeg: crate::frame_decode::JpegScaler,
}

fn score_one(sc: &mut Scoring, n: u64, m: &Message, started: Instant, session: Option<&str>) -> String {
    let err = |e: String| json!({ "type": "error", "frame": n, "error": e }).to_string();
    let jpeg = match crate::frame_decode::message_jpeg(m, &mut sc.scratch) {
        Ok(Some(j)) => j,
        Ok(None) => return err("not a frame".into()),
        Err(e) => return err(e),
    };
    let scaled = match sc.jpeg.decode(jpeg) {
        Ok(f) => f,
        Err(e) => return err(e),
    };
    match sc.analyzer.analyse(&scaled.frame, n, started.elapsed().as_millis() as u64, now_ts()) {
        Ok(mut a) => {
            // The frame was decoded at 1/scale: the box goes back to the JPEG's pixels.
            let k = scaled.scale as f32;
            a.face_box = a.face_box.map(|b| b.map(|v| (v * k * 10.0).round() / 10.0));
            a.session_id = session.map(str::to_string);
            serde_json::to_string(&a).unwrap_or_default()
        }
        Err(e) => err(e.to_string()),
    }
}

async fn analyze_conn(socket: WebSocket, s: Arc<Shared>) {
    let (mut sink, mut incoming) = socket.split();
    let (out_tx, mut out_rx) = mpsc::channel::<Message>(32);
    let writer = tokio::spawn(async move {
        while let Some(m) = out_rx.recv().await {
            let close = matches!(m, Message::Close(_));
            if sink.send(m).await.is_err() || close {
                break;
            }
        }
        let _ = sink.close().await;
    });
    let factory = s.analyzer.clone();
    let scoring = match tokio::task::spawn_blocking(move || {
        let jpeg = crate::frame_decode::JpegScaler::new()?;
        Ok::<_, String>(Scoring { analyzer: factory()?, scratch: Vec::new(), jpeg })
    })
    .await
    {
        Ok(Ok(a)) => a,
        Ok(Err(e)) => {
            let _ = out_tx.send(Message::Text(json!({"type":"error","frame":null,"error":e}).to_string().into())).await;
            drop(out_tx);
            let _ = writer.await;
            return;
        }
        Err(e) => {
            tracing::error!(error = %e, "analyzer task failed");
            return;
        }
    };
    let session = s.current_session().map(|x| x.session_id);
    let queue: Arc<Mutex<(VecDeque<Job>, bool)>> = Arc::default();
    let notify = Arc::new(Notify::new());
    // Scoring: one frame at a time on a blocking thread, replies in order.
    let worker = {
        let (queue, notify, out_tx) = (queue.clone(), notify.clone(), out_tx.clone());
        tokio::spawn(async move {
            let mut scoring = Some(scoring);
            let started = Instant::now();
            loop {
                let job = {
                    let mut q = queue.lock().unwrap();
                    match q.0.pop_front() {
                        Some(j) => Some(j),
                        None if q.1 => return,
                        None => None,
                    }
                };
                let Some(Job(n, m)) = job else {
                    notify.notified().await;
                    continue;
                };
                let mut sc = scoring.take().expect("scoring state");
                let session = session.clone();
                let Ok((sc, reply)) = tokio::task::spawn_blocking(move || {
                    let r = score_one(&mut sc, n, &m, started, session.as_deref());
                    (sc, r)
                })
                .await
                else {
                    return;
                };
                scoring = Some(sc);
                if out_tx.send(Message::Text(reply.into())).await.is_err() {
                    return;
                }
            }
        })
    };
    let mut next = 0u64;
    let cap = s.limits.queue.max(1);
    while let Some(m) = incoming.next().await {
        let m = match m {
            Ok(m) => m,
            Err(e) => {
                let reason = e.to_string();
                let code = if reason.contains("too long") || reason.contains("Space limit") { 1009 } else { 1002 };
                tracing::info!(error = %reason, "/analyze: closing a connection");
                let reason: String = reason.chars().take(100).collect();
                let _ = out_tx.send(Message::Close(Some(CloseFrame { code, reason: reason.into() }))).await;
                break;
            }
        };
        if matches!(m, Message::Close(_)) {
            break;
        }
        if !matches!(m, Message::Binary(_) | Message::Text(_)) {
            continue;
        }
        let job = Job(next, m);
        s.health.analyze_frames.fetch_add(1, Ordering::Relaxed);
        next += 1;
        let dropped = {
            let mut q = queue.lock().unwrap();
            q.0.push_back(job);
            if q.0.len() > cap { q.0.pop_front().map(|Job(n, _)| n) } else { None }
        };
        notify.notify_one();
        if let Some(n) = dropped {
            s.health.analyze_dropped.fetch_add(1, Ordering::Relaxed);
            if out_tx.send(Message::Text(json!({"type":"dropped","frame":n}).to_string().into())).await.is_err() {
                break;
            }
        }
    }
    queue.lock().unwrap().1 = true;
    notify.notify_one();
    let _ = worker.await;
    drop(out_tx);
    let _ = writer.await;
}
