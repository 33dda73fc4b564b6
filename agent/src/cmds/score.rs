//! `invigil score VIDEO`: the scorer and trigger logic of `run`, on a file,
//! every frame, as fast as the machine goes.

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use pipeline::{Capture, CaptureConfig, PullError, Source};

use crate::Failure;
use crate::incident::{Change, Tracker};

/// An incident of the offline run, in video time.
struct Span {
    start_ms: u64,
    end_ms: Option<u64>,
    min_score: u8,
    reasons: Vec<crate::domain::Reason>,
}

pub fn run(video: &Path, json: Option<&Path>, plot: Option<&Path>, config: Option<&Path>) -> Result<(), Failure> {
    let cfg = super::load_config(config)?;
    if let Some(p) = plot
        && !matches!(p.extension().and_then(|e| e.to_str()), Some("svg" | "png" | "SVG" | "PNG"))
    {
        return Err(Failure::usage(format!("--plot {}: use a .svg or .png file name", p.display())));
    }
    let mut points: Vec<(f32, u8)> = Vec::new();
    // Per reason, spans of consecutive frames that carry it (for the plot).
    let mut bands: Vec<(String, Vec<(f32, f32)>)> = Vec::new();
    // A missing file is bad usage (exit 2), named before anything loads.
    if let Err(e) = std::fs::metadata(video) {
        return Err(Failure::usage(format!("video {}: {e}", video.display())));
    }
    let mut analyzer = super::analyzer(&cfg)?;
    let mut out = match json {
        Some(p) => Some(std::io::BufWriter::new(
            std::fs::File::create(p).map_err(|e| Failure::runtime(format!("{}: {e}", p.display())))?,
        )),
        None => None,
    };
    let mut cc = CaptureConfig::new(Source::File(video.to_path_buf()));
    cc.realtime = false;
    cc.width = cfg.width;
    cc.height = cfg.height;
    let capture = Capture::start(cc, None).map_err(Failure::runtime)?;
    // A progress bar by video time, only on a terminal (never in pipes or CI logs).
    let bar = if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        let total = capture.duration_ns().unwrap_or(0) / 1_000_000;
        let bar = indicatif::ProgressBar::new(total.max(1));
        bar.set_style(
            indicatif::ProgressStyle::with_template("{bar:40} {percent:>3}% {msg} [{elapsed} / ~{eta} left]")
                .expect("valid template"),
        );
        bar
    } else {
        indicatif::ProgressBar::hidden()
    };
    // What the container says; a decode that ends well before it is a
    // truncated or corrupt file, not a short video.
    let declared_ns = capture.duration_ns();
    let t0 = chrono::Utc::now();
    let started = Instant::now();
    let (mut frames, mut sum, mut at_or_above) = (0u64, 0u64, 0u64);
    let mut tracker = Tracker::default();
    let mut spans: Vec<Span> = Vec::new();
    let mut last_t = 0;
    let threshold = analyzer.threshold();
    let failure = loop {
        match capture.pull(Duration::from_secs(10)) {
            Ok(Some(f)) => {
                let frame = models::RgbFrame::new(f.width, f.height, f.stride, f.data()).map_err(Failure::runtime)?;
                let t_ms = f.pts_ns / 1_000_000;
                let ts = t0 + chrono::Duration::milliseconds(t_ms as i64);
                let a = analyzer.analyse(&frame, f.frame, t_ms, ts).map_err(Failure::runtime)?;
                frames += 1;
                points.push((t_ms as f32 / 1000.0, a.focus_score));
                mark_reasons(&mut bands, &a.reasons, t_ms as f32 / 1000.0, last_t as f32 / 1000.0);
                if frames % 10 == 0 {
                    bar.set_position(t_ms);
                    bar.set_message(format!("frame {frames}, score {}", a.focus_score));
                }
                sum += a.focus_score as u64;
                at_or_above += (a.focus_score >= threshold) as u64;
                last_t = t_ms;
                match tracker.update(&a, None) {
                    Some(Change::Opened(r)) => {
                        spans.push(Span { start_ms: t_ms, end_ms: None, min_score: r.min_score, reasons: r.reasons })
                    }
                    Some(Change::Closed(r)) => {
                        if let Some(s) = spans.last_mut() {
                            s.end_ms = Some(t_ms);
                            s.min_score = r.min_score;
                            s.reasons = r.reasons;
                        }
                    }
                    None => {
                        if let (Some(s), Some(r)) = (spans.last_mut(), tracker.current()) {
                            s.min_score = r.min_score;
                            s.reasons = r.reasons.clone();
                        }
                    }
                }
                if let Some(w) = out.as_mut() {
                    let line = serde_json::to_string(&a).expect("analysis serialises");
                    writeln!(w, "{line}").map_err(|e| Failure::runtime(format!("{}: {e}", json.unwrap().display())))?;
                }
            }
            Ok(None) => break Some(format!("no frame for 10 s after {:.2} s", last_t as f64 / 1000.0)),
            Err(PullError::Eos) => match declared_ns {
                Some(d) if frames > 0 && (last_t + 1000) * 1_000_000 < d => {
                    break Some(format!(
                        "decoding stopped at {:.2} s of {:.2} s (frame {frames}): the file is truncated or corrupt",
                        last_t as f64 / 1000.0,
                        d as f64 / 1e9
                    ));
                }
                _ => break None,
            },
            Err(PullError::Failed(e)) => {
                break Some(format!("at {:.2} s (after frame {frames}): {e}", last_t as f64 / 1000.0));
            }
        }
    };
    bar.finish_and_clear();
    if let Some(w) = out.as_mut() {
        let _ = w.flush();
    }
    let elapsed = started.elapsed().as_secs_f64();
    println!("video:      {}", video.display());
    println!(
        "frames:     {frames} in {:.2} s of video, scored in {elapsed:.2} s ({:.0} frames/s)",
        last_t as f64 / 1000.0,
        frames as f64 / elapsed.max(1e-9)
    );
    if frames > 0 {
        println!(
            "score:      mean {:.1}; {:.1}% of frames at or above {threshold}",
            sum as f64 / frames as f64,
            100.0 * at_or_above as f64 / frames as f64
        );
    }
    println!("incidents:  {}", spans.len());
    for s in &spans {
        let end = s.end_ms.map(|e| format!("{:.2} s", e as f64 / 1000.0)).unwrap_or_else(|| "end".into());
        let reasons = serde_json::to_string(&s.reasons).unwrap_or_default();
        println!("  {:.2} s - {end}  min score {}  reasons {reasons}", s.start_ms as f64 / 1000.0, s.min_score);
    }
    if let Some(p) = json {
        println!("json:       {} ({frames} lines)", p.display());
    }
    if let Some(p) = plot {
        let end_s = last_t as f32 / 1000.0;
        let incidents: Vec<(f32, f32)> = spans
            .iter()
            .map(|s| (s.start_ms as f32 / 1000.0, s.end_ms.map(|e| e as f32 / 1000.0).unwrap_or(end_s)))
            .collect();
        let title = format!("{}: focus score", video.file_name().map(|n| n.to_string_lossy()).unwrap_or_default());
        crate::plot::write(
            p,
            &crate::plot::ScorePlot {
                title: &title,
                points: &points,
                threshold,
                incidents: &incidents,
                reasons: &bands,
            },
        )
        .map_err(Failure::runtime)?;
        println!("plot:       {}", p.display());
    }
    match failure {
        None => Ok(()),
        Some(m) => {
            Err(Failure::runtime(format!("video {}: {m}; the {frames} frames before it were scored", video.display())))
        }
    }
}

/// Extends the band of each reason `reasons` carries to the frame at `t`
/// (a new span when the previous frame, at `prev`, did not carry it).
fn mark_reasons(bands: &mut Vec<(String, Vec<(f32, f32)>)>, reasons: &[crate::domain::Reason], t: f32, prev: f32) {
    for r in reasons {
        let name = r.as_str();
        let i = match bands.iter().position(|(n, _)| n == name) {
            Some(i) => i,
            None => {
                bands.push((name.to_string(), Vec::new()));
                bands.len() - 1
            }
        };
        let spans = &mut bands[i].1;
        match spans.last_mut() {
            Some(s) if s.1 >= prev - 1e-3 => s.1 = t,
            _ => spans.push((t, t)),
        }
    }
}
