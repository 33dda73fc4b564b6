//! What the run loop and the server count, and `/healthz`: camera, model,
//! spool, sync, disk, clips (and the hub link when configured), each
//! `{"state": "ok"|"degraded"|"failed", "reason"}`, plus the worst of them.
//! `/healthz` never needs the token: an installer's first check.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use prometheus_client::metrics::histogram::Histogram;
use serde_json::{Value, json};

use super::Shared;

/// Inference-time histogram bounds (milliseconds).
pub const BUCKETS_MS: [f64; 8] = [2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 250.0, 1000.0];

/// Counters the run loop and the server update; read by `/healthz` and `/metrics`.
pub struct Health {
    pub analysed: AtomicU64,
    /// Frame numbers that never reached analysis (the leaky analysis queue
    /// dropped them: the board or the machine is too busy).
    pub skipped: AtomicU64,
    /// `/analyze` frames dropped because the client sent too fast.
    pub analyze_dropped: AtomicU64,
    pub analyze_frames: AtomicU64,
    pub live_lagged: AtomicU64,
    pub camera_lost: AtomicBool,
    /// Milliseconds since `started` of the last camera frame; 0 = none yet.
    pub last_frame_ms: AtomicU64,
    /// Detection and scoring time per camera frame (ms).
    pub inference_ms: Histogram,
    pub encoder: Mutex<Option<String>>,
    /// The runtime the model runs on (set by the run loop).
    pub model_backend: Mutex<Option<models::BackendChoice>>,
    /// Incidents left without a clip because the session's clip cap was reached.
    pub clips_refused: AtomicU64,
    /// Clips the current session may still record (gauge).
    pub clips_left: AtomicU64,
    /// Set once the current session has had an incident refused a clip.
    pub clips_capped: AtomicBool,
    /// The hub link's state, when a hub is configured (see crate::hub_link).
    pub hub: Mutex<Option<(proto::device::HealthState, Option<String>)>>,
    fps: Mutex<(Option<Instant>, u64, f64)>,
    started: Mutex<Option<Instant>>,
}

impl Default for Health {
    fn default() -> Self {
        Health {
            analysed: AtomicU64::new(0),
            skipped: AtomicU64::new(0),
            analyze_dropped: AtomicU64::new(0),
            analyze_frames: AtomicU64::new(0),
            live_lagged: AtomicU64::new(0),
            camera_lost: AtomicBool::new(false),
            last_frame_ms: AtomicU64::new(0),
            inference_ms: Histogram::new(BUCKETS_MS),
            encoder: Mutex::new(None),
            model_backend: Mutex::new(None),
            clips_refused: AtomicU64::new(0),
            clips_left: AtomicU64::new(0),
            clips_capped: AtomicBool::new(false),
            hub: Mutex::new(None),
            fps: Mutex::new((None, 0, 0.0)),
            started: Mutex::new(None),
        }
    }
}

impl Health {
    fn started(&self) -> Instant {
        *self.started.lock().unwrap().get_or_insert_with(Instant::now)
    }

    /// One camera frame analysed (or a camera-lost result, `lost`).
    pub fn frame(&self, a: &proto::Analysis, lost: bool) {
        self.camera_lost.store(lost, Ordering::Relaxed);
        if lost {
            return;
        }
        let started = self.started();
        self.last_frame_ms.store(started.elapsed().as_millis().max(1) as u64, Ordering::Relaxed);
        self.inference_ms.observe(a.latency_ms as f64);
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

    /// Camera frames analysed per second, over the last second or so.
    pub fn fps(&self) -> f64 {
        self.fps.lock().unwrap().2
    }

    /// The camera's state for `/healthz` and the hub.
    pub fn camera(&self) -> (proto::device::HealthState, Option<String>) {
        use proto::device::HealthState::*;
        let last = self.last_frame_ms.load(Ordering::Relaxed);
        let up = self.started().elapsed().as_millis() as u64;
        let age_ms = up - last.min(up);
        if self.camera_lost.load(Ordering::Relaxed) {
            (Failed, Some("camera lost".into()))
        } else if last == 0 {
            (Degraded, Some("no frame yet".into()))
        } else if age_ms > 3000 {
            (Degraded, Some(format!("last frame {} s ago", age_ms / 1000)))
        } else {
            (Ok, None)
        }
    }
}

fn part(state: proto::device::HealthState, reason: Option<String>) -> Value {
    json!({ "state": state, "reason": reason })
}

/// Free bytes on the file system holding `dir`.
pub fn disk_free(dir: &std::path::Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    // SAFETY: `statvfs` is a plain C struct of integers, for which all-zero
    // bytes are a valid value.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a valid NUL-terminated path and `st` a valid out-pointer.
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return None;
    }
    Some(st.f_bavail as u64 * st.f_frsize as u64)
}

/// The spool's state: failed while commits fail, degraded at its cap.
pub fn spool_state(s: &Shared) -> (proto::device::HealthState, Option<String>) {
    use proto::device::HealthState::*;
    match &s.writer {
        Some(w) if w.failing.load(Ordering::Relaxed) => (Failed, Some("the last spool commit failed".into())),
        Some(w) if w.full.load(Ordering::Relaxed) => (Degraded, Some("the spool is at its size cap".into())),
        _ => (Ok, None),
    }
}

/// Sync's state: failed while paused after a refusal, degraded a minute behind.
pub fn sync_state(s: &Shared) -> (proto::device::HealthState, Option<String>) {
    use proto::device::HealthState::*;
    match &s.sync {
        None => (Ok, Some("sync not configured".into())),
        Some(st) if st.paused.load(Ordering::Relaxed) => {
            (Failed, Some(format!("paused after HTTP {}", st.last_status.load(Ordering::Relaxed))))
        }
        Some(st) if st.lag_ms.load(Ordering::Relaxed) > 60_000 => {
            (Degraded, Some(format!("{} s behind", st.lag_ms.load(Ordering::Relaxed) / 1000)))
        }
        Some(_) => (Ok, None),
    }
}

pub(super) async fn handler(State(s): State<Arc<Shared>>) -> Response {
    use proto::device::HealthState::*;
    let h = &s.health;
    let (cs, cr) = h.camera();
    let camera = part(cs, cr);
    let mut model = part(Ok, None);
    if let Some(b) = h.model_backend.lock().unwrap().as_ref() {
        model["backend"] = json!(b.backend);
        model["library"] = json!(b.library);
        model["reason"] = json!(b.fallback.as_ref().map(|why| format!("LiteRT not used: {why}")));
    }
    let (ss, sr) = spool_state(&s);
    let spool = part(ss, sr);
    let (ys, yr) = sync_state(&s);
    let sync = part(ys, yr);
    let disk = match s.spool_dir.as_deref().and_then(disk_free) {
        Some(b) if b < 100 << 20 => part(Degraded, Some(format!("{} MiB free", b >> 20))),
        Some(_) => part(Ok, None),
        None => part(Ok, Some("not measured".into())),
    };
    let clips = match &s.upload {
        Some(u) if u.over_quota.load(Ordering::Relaxed) => {
            part(Degraded, Some("clips over clips.max_disk_mb and none uploaded to evict".into()))
        }
        _ if h.clips_capped.load(Ordering::Relaxed) => {
            part(Ok, Some("clips.max_per_session reached: new incidents get no clip".into()))
        }
        _ => part(Ok, None),
    };
    let hub = h.hub.lock().unwrap().clone().map(|(st, r)| part(st, r));
    let mut all = vec![&camera, &model, &spool, &sync, &disk, &clips];
    all.extend(hub.as_ref());
    let worst = if all.iter().any(|p| p["state"] == "failed") {
        "failed"
    } else if all.iter().any(|p| p["state"] == "degraded") {
        "degraded"
    } else {
        "ok"
    };
    let mut v = json!({
        "state": worst, "camera": camera, "model": model, "spool": spool, "sync": sync, "disk": disk, "clips": clips
    });
    if let Some(hub) = hub {
        v["hub"] = hub;
    }
    axum::Json(v).into_response()
}
