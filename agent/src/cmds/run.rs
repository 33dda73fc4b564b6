//! `invigil run`: capture -> detect -> score -> spool, until SIGINT/SIGTERM.
//!
//! One shutdown flag reaches every loop. The first SIGINT/SIGTERM stops in
//! order (capture, close the open incident, flush the spool); a second one
//! exits at once.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use pipeline::{Capture, CaptureConfig, PullError, Source};

use crate::Failure;
use crate::analysis::{Analysis, Analyzer, now_ts};
use crate::config::Validated;
use crate::incident::{Change, Tracker};
use crate::spool::{Record, ScoreRow, Spool, SpoolWriter};

/// No frame for this long: the camera counts as lost.
const STALL: Duration = Duration::from_secs(3);
/// Extra time allowed for the first frame after a (re)start.
const FIRST_FRAME_GRACE: Duration = Duration::from_secs(7);
/// Restart backoff: doubles from the first to the last.
const BACKOFF: (Duration, Duration) = (Duration::from_secs(1), Duration::from_secs(30));

pub fn run(config: Option<&Path>) -> Result<(), Failure> {
    let cfg = super::load_config(config)?;
    let analyzer = super::analyzer(&cfg)?;
    cfg.source.precheck().map_err(Failure::runtime)?;
    let spool = Spool::open(&cfg.spool_path).map_err(Failure::runtime)?;
    let (writer, writer_thread) = SpoolWriter::start(spool, Duration::from_millis(cfg.commit_interval_ms));

    let shutdown = Arc::new(AtomicBool::new(false));
    spawn_signal_handler(shutdown.clone())?;
    tracing::info!(
        device = %cfg.device_id, source = %cfg.source, width = cfg.width, height = cfg.height, fps = cfg.fps,
        spool = %cfg.spool_path.display(), always_on = cfg.always_on, "invigil starting"
    );
    let result = analysis_loop(&cfg, analyzer, &writer, &shutdown);
    writer.close();
    let _ = writer_thread.join();
    let committed = writer.stats.committed.load(Ordering::Relaxed);
    tracing::info!(committed, dropped = writer.stats.dropped.load(Ordering::Relaxed), "spool flushed; stopped");
    result
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

struct Printer {
    last: Instant,
    frames: u64,
}

impl Printer {
    /// One line a second on stdout: what a person watching wants to see.
    fn frame(&mut self, a: &Analysis) {
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
    shutdown: &AtomicBool,
) -> Result<(), Failure> {
    let spooling = cfg.always_on;
    let mut tracker = Tracker::default();
    let mut printer = Printer { last: Instant::now(), frames: 0 };
    let mut backoff = BACKOFF.0;
    // Frame numbers keep counting across camera restarts and gaps, so the
    // spool and upstream see one increasing sequence per run.
    let mut next_frame: u64 = 0;
    let started = Instant::now();
    let elapsed_ms = || started.elapsed().as_millis() as u64;
    let mut handle = |a: Analysis, tracker: &mut Tracker| {
        printer.frame(&a);
        if spooling {
            writer.push(Record::Score(ScoreRow::from_analysis(&a, None)));
        }
        match tracker.update(&a, None) {
            Some(Change::Opened(row)) => {
                tracing::warn!(incident = %row.id, score = a.focus_score, reasons = %row.reasons, "incident opened");
                if spooling {
                    writer.push(Record::Incident(row));
                }
            }
            Some(Change::Closed(row)) => {
                tracing::info!(incident = %row.id, min_score = row.min_score, reasons = %row.reasons, "incident closed");
                if spooling {
                    writer.push(Record::Incident(row));
                }
            }
            None => {}
        }
    };

    'outer: while !shutdown.load(Ordering::SeqCst) {
        let capture = match Capture::start(capture_config(cfg), None) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, retry_in_s = backoff.as_secs(), "camera failed to start");
                let a = analyzer.camera_lost(next_frame, elapsed_ms(), now_ts());
                next_frame += 1;
                handle(a, &mut tracker);
                if sleep_unless(shutdown, backoff) {
                    break;
                }
                backoff = (backoff * 2).min(BACKOFF.1);
                continue;
            }
        };
        let offset_ms = elapsed_ms();
        let frame_base = next_frame;
        // The first frame may take a while (plugin loading, camera warm-up).
        let mut last_frame = Instant::now() + FIRST_FRAME_GRACE;
        let mut last_lost_report = Instant::now();
        loop {
            if shutdown.load(Ordering::SeqCst) {
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
                    let t_ms = offset_ms + f.pts_ns / 1_000_000;
                    let frame_no = (frame_base + f.frame).max(next_frame);
                    next_frame = frame_no + 1;
                    match analyzer.analyse(&frame, frame_no, t_ms, now_ts()) {
                        Ok(a) => handle(a, &mut tracker),
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
                        handle(analyzer.camera_lost(next_frame, elapsed_ms(), now_ts()), &mut tracker);
                        next_frame += 1;
                        if last_frame.elapsed() >= STALL * 3 {
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
                    handle(analyzer.camera_lost(next_frame, elapsed_ms(), now_ts()), &mut tracker);
                    next_frame += 1;
                    break;
                }
            }
        }
        if sleep_unless(shutdown, backoff) {
            break;
        }
        backoff = (backoff * 2).min(BACKOFF.1);
    }
    if let Some(row) = tracker.close(&now_ts())
        && spooling
    {
        writer.push(Record::Incident(row));
    }
    Ok(())
}
