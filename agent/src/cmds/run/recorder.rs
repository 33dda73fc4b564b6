//! The clip recorder as the run loop uses it: finished clips become spool
//! records (clips a crash left half-written are recovered first), and
//! `clips.max_per_session` is the recorder's budget, reset for each
//! session, with what health and the log say when it runs out.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use pipeline::clip::{ClipDone, recover_partials};
use pipeline::{ClipRecorder, ClipSettings, Trigger};

use crate::Failure;
use crate::config::Validated;
use crate::domain::ClipFile;
use crate::server::Health;
use crate::spool::{Record, SpoolWriter};

/// The clip recorder; finished clips become spool records. Clips left
/// half-written by a crash are recovered first (fragmented MP4 plays).
pub fn clip_recorder(cfg: &Validated, writer: &SpoolWriter) -> Result<ClipRecorder, Failure> {
    for path in recover_partials(&cfg.clips_dir) {
        let bytes = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        let incident_id = path.file_stem().map(|s| s.to_string_lossy().to_string()).unwrap_or_default();
        tracing::warn!(clip = %path.display(), "recovered a clip interrupted by a crash");
        writer.push(Record::Clip(ClipFile { incident_id, path, bytes }));
    }
    let w = writer.clone();
    let done: ClipDone = Arc::new(move |r| match r {
        Ok(c) => {
            tracing::info!(clip = %c.path.display(), frames = c.frames, bytes = c.bytes,
                seconds = (c.end_ns - c.start_ns) as f64 / 1e9, "clip written");
            w.push(Record::Clip(ClipFile { incident_id: c.label, path: c.path, bytes: c.bytes }));
        }
        Err(e) => tracing::error!(error = %e, "clip failed"),
    });
    ClipRecorder::new(ClipSettings::new(cfg.clips_dir.clone(), cfg.clip_length_s, cfg.preroll_s), done)
        .map_err(Failure::runtime)
}

/// `clips.max_per_session`: the recorder's budget, reset for each session,
/// and what health and the log say when it runs out.
pub struct ClipCap<'a> {
    cap: u32,
    recorder: &'a ClipRecorder,
    health: &'a Health,
    /// The last incident refused a clip (counted once).
    refused: Option<String>,
}

impl<'a> ClipCap<'a> {
    pub fn new(cap: u32, recorder: &'a ClipRecorder, health: &'a Health) -> Self {
        let mut c = Self { cap, recorder, health, refused: None };
        c.reset();
        c
    }

    pub fn reset(&mut self) {
        self.recorder.set_budget(Some(self.cap));
        self.health.clips_left.store(self.cap as u64, Ordering::Relaxed);
        self.health.clips_capped.store(false, Ordering::Relaxed);
        self.refused = None;
    }

    pub fn trigger(&mut self, t_ns: u64, incident: &str) {
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
