//! Helpers shared by the agent's integration tests.
#![allow(dead_code)]

pub mod moto;
pub mod receiver;

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use agent::domain::{Incident, Reason, Score};
use agent::spool::Record;

/// A score of session s1, student x1.
pub fn score(frame: u64) -> Record {
    Record::Score(Score {
        session_id: Some("s1".into()),
        student_id: Some("x1".into()),
        frame,
        ts: chrono::Utc::now(),
        focus_score: (frame % 101) as u8,
        num_faces: 1,
        yaw_deg: Some(-4.2),
        pitch_deg: Some(6.0),
        reasons: vec![],
    })
}

pub fn incident(id: &str, ended: Option<&str>) -> Record {
    Record::Incident(Incident {
        id: id.into(),
        session_id: Some("s1".into()),
        student_id: Some("x1".into()),
        started: chrono::Utc::now(),
        ended: ended.map(|t| t.parse().expect("an RFC 3339 time")),
        min_score: 12,
        reasons: vec![Reason::NoFace],
        clip_path: None,
    })
}

/// Polls `f` every 20 ms until it returns Some, at most `limit`.
pub fn wait_for<T>(limit: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let end = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= end {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Log lines of this test binary (a global subscriber at debug).
pub fn logs() -> Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let b = buf.clone();
        let _ = tracing_subscriber::fmt()
            .with_env_filter("debug,hyper=info,reqwest=info,hyper_util=info,object_store=info")
            .with_ansi(false)
            .with_writer(move || Capture(b.clone()))
            .try_init();
        buf
    })
    .clone()
}

/// Log lines at `level` ("ERROR", "WARN", …) that contain every one of `words`.
pub fn log_lines(level: &str, words: &[&str]) -> Vec<String> {
    let text = String::from_utf8_lossy(&logs().lock().unwrap()).to_string();
    text.lines().filter(|l| l.contains(level) && words.iter().all(|w| l.contains(w))).map(str::to_string).collect()
}

struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The repository root.
pub fn root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// An analyzer with the real model and the default score settings.
pub fn analyzer() -> Result<agent::analysis::Analyzer, String> {
    let det = models::TfliteDetector::load(&root().join("models/face_detection_short_range.tflite"), 1)
        .map_err(|e| e.to_string())?;
    let dir = root().join("models");
    let cfg = models::SignalConfig::default();
    let signals =
        models::SignalModels::load(&cfg, &dir, models::Backend::Tflite, None, 1).map_err(|e| e.to_string())?;
    let signals = models::FrameAnalyzer::new(cfg, signals);
    Ok(agent::analysis::Analyzer::new(Box::new(det), signals, models::ScoreConfig::default(), "test-desk".into()))
}

/// The astronaut photo (one frontal face) as packed RGB: (width, height, bytes).
pub fn astronaut_rgb() -> (usize, usize, Vec<u8>) {
    let file = std::fs::File::open(root().join("assets/astronaut.png")).expect("run scripts/fetch-assets");
    let mut r = png::Decoder::new(std::io::BufReader::new(file)).read_info().unwrap();
    let mut buf = vec![0; r.output_buffer_size().unwrap()];
    let info = r.next_frame(&mut buf).unwrap();
    buf.truncate(info.buffer_size());
    let rgb: Vec<u8> = match info.color_type {
        png::ColorType::Rgb => buf,
        png::ColorType::Rgba => buf.chunks(4).flat_map(|p| [p[0], p[1], p[2]]).collect(),
        c => panic!("unexpected PNG colour type {c:?}"),
    };
    (info.width as usize, info.height as usize, rgb)
}
