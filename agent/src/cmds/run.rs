//! `invigil run`: capture -> detect -> score -> spool, until SIGINT/SIGTERM.
//!
//! One shutdown flag reaches every loop. The first SIGINT/SIGTERM stops in
//! order (capture, close the open incident, flush the spool); a second one
//! exits at once.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use pipeline::clip::{ClipDone, recover_partials};
use pipeline::encoder::EncoderSettings;
use pipeline::{Capture, CaptureConfig, ClipRecorder, ClipSettings, PullError, Source, Trigger};

use crate::Failure;
use crate::analysis::{Analysis, Analyzer, now_ts};
use crate::config::Validated;
use crate::incident::{Change, Tracker};
use crate::service::Service;
use crate::spool::{ClipRow, Record, ScoreRow, Spool, SpoolWriter};

/// No frame for this long: the camera counts as lost.
const STALL: Duration = Duration::from_secs(3);
/// While an incident lasts, its clip is extended this often.
const RETRIGGER: Duration = Duration::from_secs(1);
/// Extra time allowed for the first frame after a (re)start.
const FIRST_FRAME_GRACE: Duration = Duration::from_secs(7);
/// Restart backoff: doubles from the first to the last.
const BACKOFF: (Duration, Duration) = (Duration::from_secs(1), Duration::from_secs(30));

pub fn run(config: Option<&Path>) -> Result<(), Failure> {
    let cfg = super::load_config(config)?;
    let (analyzer, backend) = super::analyzer_and_backend(&cfg)?;
    match &backend.fallback {
        Some(why) => tracing::warn!(backend = backend.backend, reason = %why, "model on tflite: LiteRT not used"),
        None => tracing::info!(backend = %backend, "model loaded"),
    }
    // /analyze connections load the model on the same backend and library.
    let cfg = super::pin_backend(&cfg, &backend);
    cfg.source.precheck().map_err(Failure::runtime)?;
    let sync_settings = crate::sync::SyncSettings::from_config(&cfg).map_err(Failure::usage)?;
    let upload_settings = crate::upload::UploadSettings::from_config(&cfg).map_err(Failure::usage)?;
    let mut spool = Spool::open(&cfg.spool_path).map_err(Failure::runtime)?;
    let limits = crate::spool::SpoolLimits {
        max_bytes: cfg.spool_max_disk_mb << 20,
        keep_delivered: Duration::from_secs(cfg.spool_keep_delivered_h as u64 * 3600),
    };
    spool.set_limits(limits).map_err(Failure::runtime)?;
    let (writer, writer_thread) = SpoolWriter::start(spool, Duration::from_millis(cfg.commit_interval_ms));
    // Sync and upload: threads of their own, stopped after the last commit.
    let sync = sync_settings.map(|s| crate::sync::spawn(s, &cfg.spool_path, Some(writer.stats.clone())));
    let sync = sync.transpose().map_err(Failure::runtime)?;
    let upload = crate::upload::spawn(upload_settings, &cfg.spool_path).map_err(Failure::runtime)?;

    let shutdown = Arc::new(AtomicBool::new(false));
    spawn_signal_handler(shutdown.clone())?;
    let shared = server_state(&cfg, &writer, sync.as_ref(), &upload)?;
    *shared.health.model_backend.lock().unwrap() = Some(backend.clone());
    // The server binds in its own thread, retrying while the address is
    // taken: scoring and the spool (always_on) do not wait for it.
    let server_thread = match crate::server::spawn(cfg.listen, shared.clone(), shutdown.clone()) {
        Ok(t) => Some(t),
        Err(e) => {
            tracing::error!(listen = %cfg.listen, error = %e, "server failed to start; no /live, /analyze or sessions");
            None
        }
    };
    tracing::info!(
        device = %cfg.device_id, source = %cfg.source, width = cfg.width, height = cfg.height, fps = cfg.fps,
        spool = %cfg.spool_path.display(), always_on = cfg.always_on, "invigil starting"
    );
    let recorder = clip_recorder(&cfg, &writer)?;
    let gpio_thread = match &cfg.raw.gpio {
        Some(g) => {
            let pins = crate::gpio::open(g.recording_led, g.call_button).map_err(Failure::runtime)?;
            Some(spawn_panel(pins, recorder.clone(), writer.clone(), cfg.device_id.clone(), shutdown.clone()))
        }
        None => None,
    };
    let mut service = Service::from_env();
    let result = analysis_loop(&cfg, analyzer, &writer, &recorder, &shutdown, &mut service, &shared);
    service.stopping();
    shutdown.store(true, Ordering::SeqCst);
    if let Some(t) = server_thread {
        let _ = t.join();
    }
    if let Some(t) = gpio_thread {
        let _ = t.join();
    }
    // Finish the clip being written before the last spool commit.
    recorder.flush();
    writer.close();
    let _ = writer_thread.join();
    upload.stop();
    if let Some(s) = sync {
        s.stop(Duration::from_secs(3));
    }
    let committed = writer.stats.committed.load(Ordering::Relaxed);
    tracing::info!(committed, dropped = writer.stats.dropped.load(Ordering::Relaxed), "spool flushed; stopped");
    result
}

/// The live server's shared state: token, one analyzer per `/analyze`
/// connection, and the stats `/healthz` and `/metrics` report.
fn server_state(
    cfg: &Validated,
    writer: &SpoolWriter,
    sync: Option<&crate::sync::SyncHandle>,
    upload: &crate::upload::UploadHandle,
) -> Result<Arc<crate::server::Shared>, Failure> {
    // server.token_file, else the systemd credential `server-token`.
    let token_file = crate::sync::credential_file(cfg.raw.server.token_file.as_deref(), "server-token");
    let token = match &token_file {
        Some(p) => {
            let t = std::fs::read_to_string(p)
                .map_err(|e| Failure::usage(format!("server.token_file {}: {e}", p.display())))?;
            let t = t.trim().to_string();
            if t.is_empty() {
                return Err(Failure::usage(format!("server.token_file {} is empty", p.display())));
            }
            Some(t)
        }
        None => None,
    };
    let c = cfg.clone();
    let factory: crate::server::AnalyzerFactory = Arc::new(move || super::analyzer(&c).map_err(|f| f.message));
    let mut shared = crate::server::Shared::new(factory, token, Default::default());
    shared.writer = Some(writer.stats.clone());
    shared.sync = sync.map(|s| s.stats.clone());
    shared.upload = Some(upload.stats.clone());
    shared.spool_dir =
        cfg.spool_path.parent().map(|p| if p.as_os_str().is_empty() { Path::new(".") } else { p }.into());
    Ok(Arc::new(shared))
}

fn spawn_signal_handler(shutdown: Arc<AtomicBool>) -> Result<(), Failure> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::runtime(format!("tokio: {e}")))?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            rt.block_on(async move {
                use tokio::signal::unix::{SignalKind, signal};
                let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt()))
                else {
                    return;
                };
                let mut count = 0;
                loop {
                    tokio::select! {
                        _ = term.recv() => {}
                        _ = int.recv() => {}
                    }
                    count += 1;
                    if count == 1 {
                        tracing::info!("stopping: finishing the spool (signal again to stop at once)");
                        shutdown.store(true, Ordering::SeqCst);
                    } else {
                        std::process::exit(130);
                    }
                }
            })
        })
        .map_err(|e| Failure::runtime(format!("signal thread: {e}")))?;
    Ok(())
}

/// The clip recorder; finished clips become spool records. Clips left
/// half-written by a crash are recovered first (fragmented MP4 plays).
fn clip_recorder(cfg: &Validated, writer: &SpoolWriter) -> Result<ClipRecorder, Failure> {
    for path in recover_partials(&cfg.clips_dir) {
        let bytes = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        let incident_id = path.file_stem().map(|s| s.to_string_lossy().to_string()).unwrap_or_default();
        tracing::warn!(clip = %path.display(), "recovered a clip interrupted by a crash");
        writer.push(Record::Clip(ClipRow { incident_id, path: path.display().to_string(), bytes }));
    }
    let w = writer.clone();
    let done: ClipDone = Arc::new(move |r| match r {
        Ok(c) => {
            tracing::info!(clip = %c.path.display(), frames = c.frames, bytes = c.bytes,
                seconds = (c.end_ns - c.start_ns) as f64 / 1e9, "clip written");
            w.push(Record::Clip(ClipRow { incident_id: c.label, path: c.path.display().to_string(), bytes: c.bytes }));
        }
        Err(e) => tracing::error!(error = %e, "clip failed"),
    });
    ClipRecorder::new(ClipSettings::new(cfg.clips_dir.clone(), cfg.clip_length_s, cfg.preroll_s), done)
        .map_err(Failure::runtime)
}

/// Drives the recording light and the call button every 10 ms until shutdown.
/// A press becomes a `help_requested` incident.
fn spawn_panel(
    mut pins: Box<dyn crate::gpio::Pins>,
    recorder: ClipRecorder,
    writer: SpoolWriter,
    device_id: String,
    shutdown: Arc<AtomicBool>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut panel = crate::gpio::Panel::default();
        let start = Instant::now();
        let mut presses = 0u64;
        while !shutdown.load(Ordering::SeqCst) {
            let now = start.elapsed().as_millis() as u64;
            if panel.tick(pins.as_mut(), recorder.is_recording(), now).is_some() {
                presses += 1;
                let ts = now_ts();
                let id = format!("{device_id}-help-{}-{presses}", ts.replace([':', '.', '-'], ""));
                tracing::warn!(incident = %id, "call button: help requested");
                writer.push(Record::Incident(crate::spool::IncidentRow {
                    id,
                    session_id: None,
                    student_id: None,
                    started: ts.clone(),
                    ended: Some(ts),
                    min_score: 100,
                    reasons: "[\"help_requested\"]".into(),
                    clip_path: None,
                }));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        pins.set_light(false);
    })
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

/// Sleeps up to `d`, waking early on shutdown. Returns true if shutting down.
fn sleep_unless(shutdown: &AtomicBool, d: Duration) -> bool {
    let end = Instant::now() + d;
    while Instant::now() < end {
        if shutdown.load(Ordering::SeqCst) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    shutdown.load(Ordering::SeqCst)
}

/// `clips.max_per_session`: the recorder's budget, reset for each session,
/// and what health and the log say when it runs out.
struct ClipCap<'a> {
    cap: u32,
    recorder: &'a ClipRecorder,
    health: &'a crate::server::Health,
    /// The last incident refused a clip (counted once).
    refused: Option<String>,
}

impl<'a> ClipCap<'a> {
    fn new(cap: u32, recorder: &'a ClipRecorder, health: &'a crate::server::Health) -> Self {
        let mut c = Self { cap, recorder, health, refused: None };
        c.reset();
        c
    }

    fn reset(&mut self) {
        self.recorder.set_budget(Some(self.cap));
        self.health.clips_left.store(self.cap as u64, Ordering::Relaxed);
        self.health.clips_capped.store(false, Ordering::Relaxed);
        self.refused = None;
    }

    fn trigger(&mut self, t_ns: u64, incident: &str) {
        let outcome = self.recorder.trigger(t_ns, incident);
        self.health.clips_left.store(self.recorder.budget().unwrap_or(self.cap) as u64, Ordering::Relaxed);
        if outcome != Trigger::Refused || self.refused.as_deref() == Some(incident) {
            return;
        }
        if !self.health.clips_capped.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                incident,
                max_per_session = self.cap,
                "clips.max_per_session reached: this incident and later ones in this session are kept without a clip"
            );
        }
        self.health.clips_refused.fetch_add(1, Ordering::Relaxed);
        self.refused = Some(incident.to_string());
    }
}

struct Printer {
    last: Instant,
    frames: u64,
    /// Off under systemd (`JOURNAL_STREAM`): a line a second would be
    /// 86,400 journal lines a day; STATUS= and /live say the same.
    on: bool,
}

impl Printer {
    fn new() -> Self {
        Self { last: Instant::now(), frames: 0, on: std::env::var_os("JOURNAL_STREAM").is_none() }
    }

    /// One line a second on stdout: what a person watching wants to see.
    fn frame(&mut self, a: &Analysis) {
        if !self.on {
            return;
        }
        self.frames += 1;
        let dt = self.last.elapsed();
        if dt >= Duration::from_secs(1) {
            let reasons: Vec<&str> = a.reasons.iter().map(|r| r.as_str()).collect();
            println!(
                "{}  frame {:>6}  score {:>3}  faces {}  yaw {:>6}  pitch {:>6}  {:>4.1} fps  {:.1} ms  {}",
                &a.ts[11..23],
                a.frame,
                a.focus_score,
                a.num_faces,
                a.yaw_deg.map(|v| format!("{v:.1}")).unwrap_or_else(|| "-".into()),
                a.pitch_deg.map(|v| format!("{v:.1}")).unwrap_or_else(|| "-".into()),
                self.frames as f64 / dt.as_secs_f64(),
                a.latency_ms,
                if reasons.is_empty() { "ok".to_string() } else { reasons.join(",") }
            );
            self.last = Instant::now();
            self.frames = 0;
        }
    }
}

fn analysis_loop(
    cfg: &Validated,
    mut analyzer: Analyzer,
    writer: &SpoolWriter,
    recorder: &ClipRecorder,
    shutdown: &AtomicBool,
    service: &mut Service,
    shared: &crate::server::Shared,
) -> Result<(), Failure> {
    // Outside an exam session the box neither spools nor records, unless
    // `always_on`; a new session recalibrates the baseline.
    let mut spooling = cfg.always_on;
    let mut session: Option<crate::server::Session> = None;
    let mut last_trigger = Instant::now();
    let mut tracker = Tracker::default();
    let mut printer = Printer::new();
    let mut backoff = BACKOFF.0;
    // Frame numbers keep counting across camera restarts and gaps, so the
    // spool and upstream see one increasing sequence per run.
    let mut next_frame: u64 = 0;
    let mut baseline_session: Option<String> = None;
    let mut encoder_name: Option<String> = None;
    // Capture-to-score latency of every analysed frame (microseconds), for
    // the summary at exit: bounded to the last hour at 30 FPS.
    let mut latencies_us: std::collections::VecDeque<u32> = std::collections::VecDeque::new();
    let (mut analysed, mut dropped, mut encoded) = (0u64, 0u64, 0u64);
    let started = Instant::now();
    let elapsed_ms = || started.elapsed().as_millis() as u64;
    // Each session (and the time outside sessions) gets its own clip budget.
    let mut clips = ClipCap::new(cfg.clips_max_per_session, recorder, &shared.health);
    // `pts_ns`: running time of the frame in the current capture (for clips).
    let mut handle = |mut a: Analysis, pts_ns: Option<u64>, tracker: &mut Tracker| {
        let now_session = shared.current_session();
        if now_session.as_ref().map(|s| &s.session_id) != session.as_ref().map(|s| &s.session_id) {
            // The open incident belongs to the session that ended.
            if let Some(row) = tracker.close(&a.ts)
                && spooling
            {
                writer.push(Record::Incident(row));
            }
            session = now_session;
            spooling = cfg.always_on || session.is_some();
            clips.reset();
        }
        let student = session.as_ref().map(|s| s.student_id.clone());
        a.session_id = session.as_ref().map(|s| s.session_id.clone());
        a.recording = recorder.is_recording();
        printer.frame(&a);
        shared.health.frame(&a, a.reasons.contains(&models::Reason::CameraLost));
        shared.publish(&a);
        if spooling {
            writer.push(Record::Score(ScoreRow::from_analysis(&a, student.clone())));
        }
        match tracker.update(&a, student.as_deref()) {
            Some(Change::Opened(row)) => {
                tracing::warn!(incident = %row.id, score = a.focus_score, reasons = %row.reasons, "incident opened");
                shared.publish_incident(&cfg.device_id, &row);
                if spooling {
                    if let Some(t) = pts_ns {
                        clips.trigger(t, &row.id);
                        last_trigger = Instant::now();
                    }
                    writer.push(Record::Incident(row));
                }
            }
            Some(Change::Closed(row)) => {
                tracing::info!(incident = %row.id, min_score = row.min_score, reasons = %row.reasons, "incident closed");
                shared.publish_incident(&cfg.device_id, &row);
                if spooling {
                    writer.push(Record::Incident(row));
                }
            }
            None => {
                // Extend the clip while the incident lasts.
                if let (Some(row), Some(t)) = (tracker.current(), pts_ns)
                    && spooling
                    && last_trigger.elapsed() >= RETRIGGER
                {
                    clips.trigger(t, &row.id);
                    last_trigger = Instant::now();
                }
            }
        }
    };

    'outer: while !shutdown.load(Ordering::SeqCst) {
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
        let capture = match Capture::start(capture_config(cfg), Some(on_encoded)) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, retry_in_s = backoff.as_secs(), "camera failed to start");
                service.status(&format!("camera failed to start: {e}; retrying in {} s", backoff.as_secs()), true);
                let a = analyzer.camera_lost(next_frame, elapsed_ms(), now_ts());
                next_frame += 1;
                handle(a, None, &mut tracker);
                if sleep_unless(shutdown, backoff) {
                    break;
                }
                backoff = (backoff * 2).min(BACKOFF.1);
                continue;
            }
        };
        if encoder_name.is_none() {
            encoder_name = capture.encoder().map(str::to_string);
            *shared.health.encoder.lock().unwrap() = encoder_name.clone();
            tracing::info!(
                encoder = encoder_name.as_deref().unwrap_or("none"),
                "encoding clips with this H.264 encoder"
            );
        }
        let offset_ms = elapsed_ms();
        let frame_base = next_frame;
        // The first frame may take a while (plugin loading, camera warm-up).
        let mut last_frame = Instant::now() + FIRST_FRAME_GRACE;
        let mut last_lost_report = Instant::now();
        loop {
            if shutdown.load(Ordering::SeqCst) {
                let st = capture.stats();
                (analysed, dropped, encoded) = (analysed + st.analysed, dropped + st.dropped, encoded + st.encoded);
                capture.stop();
                break 'outer;
            }
            match capture.pull(Duration::from_millis(200)) {
                Ok(Some(f)) => {
                    last_frame = Instant::now();
                    backoff = BACKOFF.0;
                    let frame = match models::RgbFrame::new(f.width, f.height, f.stride, f.data()) {
                        Ok(fr) => fr,
                        Err(e) => {
                            tracing::warn!(frame = f.frame, error = %e, "bad frame skipped");
                            continue;
                        }
                    };
                    if shared.preview_due() {
                        shared.set_preview(f.width, f.height, f.stride, f.data());
                    }
                    let t_ms = offset_ms + f.pts_ns / 1_000_000;
                    let frame_no = (frame_base + f.frame).max(next_frame);
                    next_frame = frame_no + 1;
                    let pulled = Instant::now();
                    let sid = shared.current_session().map(|s| s.session_id);
                    if sid != baseline_session {
                        if sid.is_some() {
                            analyzer.reset();
                        }
                        baseline_session = sid;
                    }
                    match analyzer.analyse(&frame, frame_no, t_ms, now_ts()) {
                        Ok(a) => {
                            let total = f.age_ns / 1000 + pulled.elapsed().as_micros() as u64;
                            if latencies_us.len() >= 108_000 {
                                latencies_us.pop_front();
                            }
                            latencies_us.push_back(total.min(u32::MAX as u64) as u32);
                            service.frame_analysed();
                            service.status(
                                &format!(
                                    "analysing frame {frame_no}: score {}, {}",
                                    a.focus_score,
                                    if a.recording { "recording" } else { "not recording" }
                                ),
                                false,
                            );
                            handle(a, Some(f.pts_ns), &mut tracker)
                        }
                        Err(e) => tracing::error!(frame = f.frame, error = %e, "analysis failed"),
                    }
                }
                Ok(None) => {
                    if Instant::now() > last_frame
                        && last_frame.elapsed() >= STALL
                        && last_lost_report.elapsed() >= Duration::from_secs(1)
                    {
                        last_lost_report = Instant::now();
                        tracing::warn!(stalled_s = last_frame.elapsed().as_secs(), "no frames from the camera");
                        service.status(
                            &format!("no frames from the camera for {} s", last_frame.elapsed().as_secs()),
                            true,
                        );
                        handle(analyzer.camera_lost(next_frame, elapsed_ms(), now_ts()), None, &mut tracker);
                        next_frame += 1;
                        if last_frame.elapsed() >= STALL * 3 {
                            let st = capture.stats();
                            (analysed, dropped, encoded) =
                                (analysed + st.analysed, dropped + st.dropped, encoded + st.encoded);
                            break;
                        }
                    }
                }
                Err(e) => {
                    let msg = match &e {
                        PullError::Eos => "the camera stream ended".to_string(),
                        PullError::Failed(e) => e.to_string(),
                    };
                    tracing::error!(error = %msg, retry_in_s = backoff.as_secs(), "camera lost; restarting");
                    service.status(&format!("camera lost: {msg}; restarting in {} s", backoff.as_secs()), true);
                    handle(analyzer.camera_lost(next_frame, elapsed_ms(), now_ts()), None, &mut tracker);
                    next_frame += 1;
                    let st = capture.stats();
                    (analysed, dropped, encoded) = (analysed + st.analysed, dropped + st.dropped, encoded + st.encoded);
                    break;
                }
            }
        }
        // Let go of the camera (device, file, FIFO) before the backoff, so
        // the restart opens it afresh and nothing else is kept from it.
        drop(capture);
        if sleep_unless(shutdown, backoff) {
            break;
        }
        backoff = (backoff * 2).min(BACKOFF.1);
    }
    let mut v: Vec<u32> = latencies_us.into_iter().collect();
    v.sort_unstable();
    let pct =
        |p: f64| v.get(((v.len() as f64 - 1.0) * p).round() as usize).map(|&us| us as f64 / 1000.0).unwrap_or(0.0);
    tracing::info!(
        analysed,
        dropped,
        encoded,
        encoder = encoder_name.as_deref().unwrap_or("none"),
        latency_p50_ms = pct(0.5),
        latency_p99_ms = pct(0.99),
        "summary: frames analysed, dropped before analysis, encoded; capture-to-score latency"
    );
    if let Some(row) = tracker.close(&now_ts())
        && (cfg.always_on || shared.current_session().is_some())
    {
        writer.push(Record::Incident(row));
    }
    Ok(())
}
