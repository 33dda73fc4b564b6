//! Helpers shared by the spool, sync and upload tests.
#![allow(dead_code)]

pub mod moto;
pub mod receiver;

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use agent::spool::{IncidentRow, Record, ScoreRow};

/// A score of session s1, student x1.
pub fn score(frame: u64) -> Record {
    Record::Score(ScoreRow {
        session_id: Some("s1".into()),
        student_id: Some("x1".into()),
        frame,
        ts: agent::analysis::now_ts(),
        focus_score: (frame % 101) as u8,
        num_faces: 1,
        yaw_deg: Some(-4.2),
        pitch_deg: Some(6.0),
        reasons: "[]".into(),
    })
}

pub fn incident(id: &str, ended: Option<&str>) -> Record {
    Record::Incident(IncidentRow {
        id: id.into(),
        session_id: Some("s1".into()),
        student_id: Some("x1".into()),
        started: agent::analysis::now_ts(),
        ended: ended.map(str::to_string),
        min_score: 12,
        reasons: "[\"no_face\"]".into(),
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
