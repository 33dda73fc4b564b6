//! The run loop as a type: one [`Desk`] per `invigil run`, with one method
//! per event the camera loop reports — a frame to analyse
//! ([`Desk::frame`]), the camera lost ([`Desk::camera_lost`]), the camera
//! (re)started ([`Desk::camera_started`]) or ended ([`Desk::camera_ended`])
//! — and what a session change does ([`Desk::session_changed`]). Every
//! analysis, real or camera-lost, goes through [`Desk::analysed`]: status,
//! health, `/live`, spool, incident, clip.
//!
//! Outside an exam session the box neither spools nor records, unless
//! `session.always_on`; a new session recalibrates the baseline and gets a
//! clip budget of its own. Frame numbers keep counting across camera
//! restarts, so the spool and upstream see one increasing sequence per run.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use pipeline::{AnalysisFrame, Capture, CaptureStats, ClipRecorder};
use proto::Analysis;

use super::recorder::ClipCap;
use crate::analysis::Analyzer;
use crate::clock::SharedClock;
use crate::config::Validated;
use crate::domain::{DeskState, Reason, Score, Session};
use crate::incident::{Change, Tracker};
use crate::server::Shared;
use crate::service::Service;
use crate::spool::{Record, SpoolWriter};

/// While an incident lasts, its clip is extended this often.
const RETRIGGER: Duration = Duration::from_secs(1);
/// Capture-to-score latencies kept for the summary (an hour at 30 FPS).
const LATENCIES_KEPT: usize = 108_000;

/// Frames counted over the whole run, summed over captures.
#[derive(Default)]
struct Totals {
    analysed: u64,
    dropped: u64,
    encoded: u64,
    /// Capture-to-score latency of recent frames (microseconds).
    latencies_us: VecDeque<u32>,
}

/// Everything the run loop keeps between frames.
pub struct Desk<'a> {
    cfg: &'a Validated,
    analyzer: Analyzer,
    writer: &'a SpoolWriter,
    recorder: &'a ClipRecorder,
    shared: &'a Shared,
    service: &'a mut Service,
    clock: SharedClock,
    clips: ClipCap<'a>,
    tracker: Tracker,
    printer: Printer,
    /// The session this loop is in, and whether it spools and records.
    session: Option<Session>,
    spooling: bool,
    last_trigger: Option<Instant>,
    next_frame: u64,
    started: Instant,
    /// Stream time and frame number at which the current capture began.
    capture_offset_ms: u64,
    capture_frame_base: u64,
    encoder: Option<String>,
    totals: Totals,
}

impl<'a> Desk<'a> {
    pub fn new(
        cfg: &'a Validated,
        analyzer: Analyzer,
        writer: &'a SpoolWriter,
        recorder: &'a ClipRecorder,
        shared: &'a Shared,
        service: &'a mut Service,
        clock: SharedClock,
    ) -> Self {
        let started = clock.instant();
        Desk {
            cfg,
            analyzer,
            writer,
            recorder,
            shared,
            service,
            clips: ClipCap::new(cfg.clips_max_per_session, recorder, &shared.health),
            tracker: Tracker::default(),
            printer: Printer::new(),
            session: None,
            spooling: cfg.always_on,
            last_trigger: None,
            next_frame: 0,
            started,
            capture_offset_ms: 0,
            capture_frame_base: 0,
            encoder: None,
            totals: Totals::default(),
            clock,
        }
    }

    fn elapsed_ms(&self) -> u64 {
        self.clock.instant().duration_since(self.started).as_millis() as u64
    }

    /// Takes up a session change (from the control API or the hub) before
    /// the next analysis, stamped `ts`.
    fn follow_session(&mut self, ts: DateTime<Utc>) {
        let now = self.shared.current_session();
        if now.as_ref().map(|s| &s.session_id) != self.session.as_ref().map(|s| &s.session_id) {
            self.session_changed(now, ts);
        }
    }

    /// The session changed: the open incident belongs to the one that
    /// ended; a new session gets a new baseline and its own clip budget.
    pub fn session_changed(&mut self, new: Option<Session>, ts: DateTime<Utc>) {
        if let Some(inc) = self.tracker.close(ts)
            && self.spooling
        {
            self.writer.push(Record::Incident(inc));
        }
        if new.is_some() {
            self.analyzer.reset();
        }
        match &new {
            Some(s) => tracing::info!(session = %s.session_id, student = %s.student_id, "scoring for a session"),
            None => tracing::info!("no session"),
        }
        self.session = new;
        self.spooling = self.cfg.always_on || self.session.is_some();
        self.clips.reset();
    }

    /// A capture started (the first, or a restart after a loss).
    pub fn camera_started(&mut self, capture: &Capture) {
        self.capture_offset_ms = self.elapsed_ms();
        self.capture_frame_base = self.next_frame;
        if self.encoder.is_none() {
            self.encoder = capture.encoder().map(str::to_string);
            *self.shared.health.encoder.lock().unwrap() = self.encoder.clone();
            tracing::info!(
                encoder = self.encoder.as_deref().unwrap_or("none"),
                "encoding clips with this H.264 encoder"
            );
        }
    }

    /// A capture ended (lost, or stopping): its counters join the totals.
    pub fn camera_ended(&mut self, st: CaptureStats) {
        self.totals.analysed += st.analysed;
        self.totals.dropped += st.dropped;
        self.totals.encoded += st.encoded;
    }

    /// A frame from the camera: analyse it, then [`Desk::analysed`].
    pub fn frame(&mut self, f: &AnalysisFrame) {
        let frame = match models::RgbFrame::new(f.width, f.height, f.stride, f.data()) {
            Ok(fr) => fr,
            Err(e) => {
                tracing::warn!(frame = f.frame, error = %e, "bad frame skipped");
                return;
            }
        };
        let pulled = Instant::now();
        let ts = self.clock.now();
        self.follow_session(ts);
        if self.shared.preview_due() {
            self.shared.set_preview(f.width, f.height, f.stride, f.data());
        }
        let t_ms = self.capture_offset_ms + f.pts_ns / 1_000_000;
        let frame_no = (self.capture_frame_base + f.frame).max(self.next_frame);
        if frame_no > self.next_frame {
            self.shared.health.skipped.fetch_add(frame_no - self.next_frame, Ordering::Relaxed);
        }
        self.next_frame = frame_no + 1;
        match self.analyzer.analyse(&frame, frame_no, t_ms, ts) {
            Ok(a) => {
                let total = f.age_ns / 1000 + pulled.elapsed().as_micros() as u64;
                if self.totals.latencies_us.len() >= LATENCIES_KEPT {
                    self.totals.latencies_us.pop_front();
                }
                self.totals.latencies_us.push_back(total.min(u32::MAX as u64) as u32);
                self.service.frame_analysed();
                let recording = if a.recording { "recording" } else { "not recording" };
                self.service
                    .status(&format!("analysing frame {frame_no}: score {}, {recording}", a.focus_score), false);
                self.analysed(a, Some(f.pts_ns));
            }
            Err(e) => tracing::error!(frame = f.frame, error = %e, "analysis failed"),
        }
    }

    /// No frame came (a failed start, an error, the end of the stream, a
    /// stall): a camera-lost score, an incident at once. `status` goes to
    /// systemd's status line (the camera loop logs).
    pub fn camera_lost(&mut self, status: &str) {
        self.service.status(status, true);
        let ts = self.clock.now();
        self.follow_session(ts);
        let a = self.analyzer.camera_lost(self.next_frame, self.elapsed_ms(), ts);
        self.next_frame += 1;
        self.analysed(a, None);
    }

    /// One analysis, real or camera-lost: what it changes everywhere.
    /// `pts_ns`: its running time in the current capture (for clips).
    fn analysed(&mut self, mut a: Analysis, pts_ns: Option<u64>) {
        let student = self.session.as_ref().map(|s| s.student_id.clone());
        a.session_id = self.session.as_ref().map(|s| s.session_id.clone());
        a.recording = self.recorder.is_recording();
        self.printer.frame(&a);
        self.shared.health.frame(&a, a.reasons.contains(&Reason::CameraLost));
        self.shared.publish(&a);
        if self.spooling {
            self.writer.push(Record::Score(Score::of(&a, student.clone())));
        }
        match self.tracker.update(&a, student.as_deref()) {
            Some(Change::Opened(inc)) => {
                tracing::warn!(incident = %inc.id, score = a.focus_score, reasons = ?inc.reasons, "incident opened");
                self.shared.publish_incident(&self.cfg.device_id, &inc);
                if self.spooling {
                    if let Some(t) = pts_ns {
                        self.clips.trigger(t, &inc.id);
                        self.last_trigger = Some(self.clock.instant());
                    }
                    self.writer.push(Record::Incident(inc));
                }
            }
            Some(Change::Closed(inc)) => {
                tracing::info!(incident = %inc.id, min_score = inc.min_score, reasons = ?inc.reasons, "incident closed");
                self.shared.publish_incident(&self.cfg.device_id, &inc);
                if self.spooling {
                    self.writer.push(Record::Incident(inc));
                }
            }
            None => {
                // Extend the clip while the incident lasts.
                let now = self.clock.instant();
                let due = self.last_trigger.is_none_or(|t| now.duration_since(t) >= RETRIGGER);
                if let (Some(inc), Some(t)) = (self.tracker.current(), pts_ns)
                    && self.spooling
                    && due
                {
                    let id = inc.id.clone();
                    self.clips.trigger(t, &id);
                    self.last_trigger = Some(now);
                }
            }
        }
        self.report(&a);
    }

    /// The latest frame and incident for the hub link; it is woken only by
    /// what a proctor must see at once (an incident, a session change).
    fn report(&self, a: &Analysis) {
        let incident = self.tracker.current().map(|i| (i.id.clone(), i.started));
        self.shared.desk_state.send_if_modified(|s| {
            let urgent = s.incident != incident || s.session_id != a.session_id;
            *s = DeskState {
                session_id: a.session_id.clone(),
                frame: Some(a.frame),
                focus_score: Some(a.focus_score),
                reasons: a.reasons.clone(),
                alert: a.alert,
                recording: a.recording,
                incident,
            };
            urgent
        });
    }

    /// Stopping: the summary line, and the open incident closed.
    pub fn finish(mut self) {
        let mut v: Vec<u32> = std::mem::take(&mut self.totals.latencies_us).into_iter().collect();
        v.sort_unstable();
        let pct =
            |p: f64| v.get(((v.len() as f64 - 1.0) * p).round() as usize).map(|&us| us as f64 / 1000.0).unwrap_or(0.0);
        tracing::info!(
            analysed = self.totals.analysed,
            dropped = self.totals.dropped,
            encoded = self.totals.encoded,
            encoder = self.encoder.as_deref().unwrap_or("none"),
            latency_p50_ms = pct(0.5),
            latency_p99_ms = pct(0.99),
            "summary: frames analysed, dropped before analysis, encoded; capture-to-score latency"
        );
        if let Some(inc) = self.tracker.close(self.clock.now())
            && self.spooling
        {
            self.writer.push(Record::Incident(inc));
        }
    }
}

/// One line a second on stdout: what a person watching wants to see.
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

    fn frame(&mut self, a: &Analysis) {
        if !self.on {
            return;
        }
        self.frames += 1;
        let dt = self.last.elapsed();
        if dt >= Duration::from_secs(1) {
            let reasons: Vec<&str> = a.reasons.iter().map(|r| r.as_str()).collect();
            let deg = |v: Option<f32>| v.map(|v| format!("{v:.1}")).unwrap_or_else(|| "-".into());
            println!(
                "{}  frame {:>6}  score {:>3}  faces {}  yaw {:>6}  pitch {:>6}  {:>4.1} fps  {:.1} ms  {}",
                a.ts.0.format("%H:%M:%S%.3f"),
                a.frame,
                a.focus_score,
                a.num_faces,
                deg(a.yaw_deg),
                deg(a.pitch_deg),
                self.frames as f64 / dt.as_secs_f64(),
                a.latency_ms,
                if reasons.is_empty() { "ok".to_string() } else { reasons.join(",") }
            );
            self.last = Instant::now();
            self.frames = 0;
        }
    }
}
