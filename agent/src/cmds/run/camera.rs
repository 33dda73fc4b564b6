//! The camera loop: start the capture, hand each frame to the [`Desk`],
//! and when the camera fails to start, errors, ends or stalls, report it
//! lost, let go of it, and start it again with backoff (1 s doubling to
//! 30 s), until the shutdown is raised.
//!
//! A stall is [`STALL`] without frames (after [`FIRST_FRAME_GRACE`] for the
//! first one): a camera-lost score a second, and after three stalls' time
//! the capture is restarted. The camera is released before the backoff, so
//! the restart opens it afresh.

use std::time::{Duration, Instant};

use pipeline::encoder::EncoderSettings;
use pipeline::{Capture, CaptureConfig, ClipRecorder, PullError, Source};

use super::desk::Desk;
use crate::config::Validated;
use crate::shutdown::Shutdown;

/// No frame for this long: the camera counts as lost.
const STALL: Duration = Duration::from_secs(3);
/// Extra time allowed for the first frame after a (re)start.
const FIRST_FRAME_GRACE: Duration = Duration::from_secs(7);
/// Restart backoff: doubles from the first to the last.
const BACKOFF: (Duration, Duration) = (Duration::from_secs(1), Duration::from_secs(30));
/// How long one pull waits for a frame (bounds how late a stop is seen).
const PULL: Duration = Duration::from_millis(200);

/// How a capture ended.
#[derive(Debug, PartialEq, Eq)]
enum End {
    Shutdown,
    Lost,
}

/// Runs the camera until `shutdown` is raised.
pub fn run(desk: &mut Desk<'_>, cfg: &Validated, recorder: &ClipRecorder, shutdown: &Shutdown) {
    let mut backoff = BACKOFF.0;
    while !shutdown.is_raised() {
        if let (Source::V4l2(dev), Some(hz)) = (&cfg.source, cfg.raw.camera.mains_hz) {
            match pipeline::devices::apply_desk_controls(dev, hz) {
                Ok(set) => tracing::info!(device = %dev.display(), controls = ?set, "camera controls set"),
                Err(e) => tracing::warn!(device = %dev.display(), error = %e, "camera controls not set"),
            }
        }
        let rec = recorder.clone();
        let on_encoded: pipeline::capture::EncodedCallback = Box::new(move |unit, caps| {
            rec.set_caps(caps.to_owned());
            rec.push(unit);
        });
        match Capture::start(capture_config(cfg), Some(on_encoded)) {
            Ok(capture) => {
                desk.camera_started(&capture);
                let end = pump(desk, &capture, shutdown, &mut backoff);
                desk.camera_ended(capture.stats());
                if end == End::Shutdown {
                    capture.stop();
                    return;
                }
                // Let go of the camera (device, file, FIFO) before the
                // backoff, so the restart opens it afresh.
                drop(capture);
            }
            Err(e) => {
                tracing::error!(error = %e, retry_in_s = backoff.as_secs(), "camera failed to start");
                desk.camera_lost(&format!("camera failed to start: {e}; retrying in {} s", backoff.as_secs()));
            }
        }
        if shutdown.wait_timeout(backoff) {
            return;
        }
        backoff = (backoff * 2).min(BACKOFF.1);
    }
}

/// Frames from one capture to the desk until it ends or the shutdown.
fn pump(desk: &mut Desk<'_>, capture: &Capture, shutdown: &Shutdown, backoff: &mut Duration) -> End {
    // The first frame may take a while (plugin loading, camera warm-up).
    let mut last_frame = Instant::now() + FIRST_FRAME_GRACE;
    let mut last_lost_report = Instant::now();
    loop {
        if shutdown.is_raised() {
            return End::Shutdown;
        }
        match capture.pull(PULL) {
            Ok(Some(f)) => {
                last_frame = Instant::now();
                *backoff = BACKOFF.0;
                desk.frame(&f);
            }
            Ok(None) => {
                let now = Instant::now();
                if now > last_frame
                    && now.duration_since(last_frame) >= STALL
                    && now.duration_since(last_lost_report) >= Duration::from_secs(1)
                {
                    last_lost_report = now;
                    let stalled = now.duration_since(last_frame);
                    tracing::warn!(stalled_s = stalled.as_secs(), "no frames from the camera");
                    desk.camera_lost(&format!("no frames from the camera for {} s", stalled.as_secs()));
                    if stalled >= STALL * 3 {
                        return End::Lost;
                    }
                }
            }
            Err(e) => {
                let msg = match &e {
                    PullError::Eos => "the camera stream ended".to_string(),
                    PullError::Failed(e) => e.to_string(),
                };
                tracing::error!(error = %msg, retry_in_s = backoff.as_secs(), "camera lost; restarting");
                desk.camera_lost(&format!("camera lost: {msg}; restarting in {} s", backoff.as_secs()));
                return End::Lost;
            }
        }
    }
}

fn capture_config(cfg: &Validated) -> CaptureConfig {
    let mut cc = CaptureConfig::new(cfg.source.clone());
    cc.width = cfg.width;
    cc.height = cfg.height;
    cc.fps = cfg.fps;
    cc.analysis_width = (cfg.width / 2).max(128);
    cc.analysis_height = (cfg.height / 2).max(96);
    // A file plays like a camera: in real time, over and over.
    cc.looping = matches!(cfg.source, Source::File(_));
    cc.realtime = true;
    // About 0.1 bit per pixel: 1 Mbit/s at 640x480@30, 270 kbit/s at 480x360@15.
    let kbps = (cfg.width as u64 * cfg.height as u64 * cfg.fps as u64 / 9_000).clamp(200, 8000) as u32;
    cc.encoder = Some(EncoderSettings::new(&cfg.encoder, cfg.fps, kbps));
    cc
}
