//! Clips of incidents: a pre-roll ring of encoded frames and an MP4 writer.
//!
//! # Guarantees
//! 1. **Pre-roll.** The ring keeps whole GOPs covering at least `preroll`
//!    of the newest encoded frames. A clip starts on the newest keyframe at
//!    or before `trigger - preroll` (or the oldest one held, just after start).
//! 2. **Length.** A clip holds frames from its first keyframe up to (not
//!    including) `start + length`: with a steady frame rate, exactly
//!    `length`, of which at least `preroll` precede the trigger. Timestamps
//!    are rebased to 0.
//! 3. **Overlapping triggers extend.** A trigger during a clip moves its end
//!    to `trigger + (length - preroll)`. Past `max_length` the clip is closed
//!    on the next keyframe and the next clip (`LABEL-1.mp4`, …) starts on
//!    that same keyframe: no gap and no frame twice. A clip triggered after
//!    another ended never starts before that end.
//! 4. **Crash-safe.** Clips are written as fragmented MP4 (a fragment a
//!    second) to `NAME.mp4.partial`: a process killed mid-clip leaves a file
//!    that plays up to its last fragment. A finished clip is fsynced and
//!    renamed to `NAME.mp4`, then the folder is fsynced.
//!    [`recover_partials`] renames leftovers after a crash.
//! 5. **Never blocks the streaming thread.** [`ClipRecorder::push`] only
//!    appends to the ring or to the writer's `appsrc` queue; finishing a clip
//!    (waiting for the muxer) runs on its own thread.
//! 6. **Bounded.** The ring holds at most [`RING_MAX_BYTES`]; older GOPs are
//!    dropped first.
//! 7. **Budget.** [`ClipRecorder::set_budget`] caps how many clip files may
//!    still be started (a chained clip is one more file). With the budget
//!    spent, a trigger while idle is refused ([`Trigger::Refused`]) and a
//!    long clip ends at `max_length` instead of chaining. The caller decides
//!    what a budget covers (the agent: one exam session).

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;

use crate::PipelineError;
use crate::capture::EncodedUnit;

/// Upper bound on encoded bytes kept for pre-roll (about 30 s at 2 Mbit/s).
pub const RING_MAX_BYTES: usize = 8 << 20;

/// Clip settings from `[clips]`.
#[derive(Clone, Debug, PartialEq)]
pub struct ClipSettings {
    pub dir: PathBuf,
    pub length_ns: u64,
    pub preroll_ns: u64,
    /// Longest clip an extension can make before chaining. Default 6x length.
    pub max_length_ns: u64,
}

impl ClipSettings {
    pub fn new(dir: PathBuf, length_s: u32, preroll_s: u32) -> Self {
        let length_ns = length_s as u64 * 1_000_000_000;
        Self { dir, length_ns, preroll_ns: preroll_s as u64 * 1_000_000_000, max_length_ns: length_ns * 6 }
    }
}

/// A finished clip.
#[derive(Clone, Debug, PartialEq)]
pub struct ClipInfo {
    /// Final path (`NAME.mp4`).
    pub path: PathBuf,
    /// The label given at the trigger (an incident id).
    pub label: String,
    /// Running time of the first and after-last frame.
    pub start_ns: u64,
    pub end_ns: u64,
    /// Running time of the trigger that opened the clip.
    pub trigger_ns: u64,
    pub frames: u64,
    pub bytes: u64,
}

/// What went wrong finishing a clip.
#[derive(Debug, Clone, thiserror::Error)]
#[error("clip {path}: {message}")]
pub struct ClipError {
    pub path: PathBuf,
    pub message: String,
}

/// Called on the finishing thread when a clip is done (or failed).
pub type ClipDone = Arc<dyn Fn(Result<ClipInfo, ClipError>) + Send + Sync>;

/// The pre-roll ring: whole GOPs, newest last.
#[derive(Default)]
pub struct Ring {
    units: VecDeque<EncodedUnit>,
    bytes: usize,
}

impl Ring {
    pub fn push(&mut self, unit: EncodedUnit, keep_ns: u64) {
        self.bytes += unit.buffer.size();
        let newest = unit.pts_ns;
        self.units.push_back(unit);
        // Drop the oldest GOP while the next keyframe alone still covers `keep_ns`.
        while let Some(second_key) = self.units.iter().skip(1).position(|u| u.keyframe).map(|i| i + 1) {
            let covered = newest.saturating_sub(self.units[second_key].pts_ns) >= keep_ns;
            if !(covered || self.bytes > RING_MAX_BYTES) {
                break;
            }
            for u in self.units.drain(..second_key) {
                self.bytes -= u.buffer.size();
            }
        }
    }

    /// Index of the newest keyframe at or before `t`, else the oldest keyframe.
    fn start_index(&self, t: u64) -> Option<usize> {
        let keys = self.units.iter().enumerate().filter(|(_, u)| u.keyframe);
        let mut best = None;
        for (i, u) in keys {
            if u.pts_ns <= t || best.is_none() {
                best = Some(i);
            }
            if u.pts_ns > t {
                break;
            }
        }
        best
    }

    pub fn len(&self) -> usize {
        self.units.len()
    }
    pub fn is_empty(&self) -> bool {
        self.units.is_empty()
    }
    /// Running time covered, oldest to newest frame.
    pub fn span_ns(&self) -> u64 {
        match (self.units.front(), self.units.back()) {
            (Some(a), Some(b)) => b.pts_ns - a.pts_ns,
            _ => 0,
        }
    }
}

struct Writer {
    pipeline: gst::Pipeline,
    appsrc: gst_app::AppSrc,
    partial: PathBuf,
    info: ClipInfo,
    last_pts: Option<u64>,
}

impl Writer {
    fn start(partial: PathBuf, caps: &gst::Caps, info: ClipInfo) -> Result<Writer, PipelineError> {
        crate::require_elements(&["appsrc", "mp4mux", "filesink"])?;
        let pipeline = gst::Pipeline::new();
        let appsrc = gst_app::AppSrc::builder().caps(caps).format(gst::Format::Time).is_live(false).build();
        // Unbounded in bytes here; the recorder bounds what it feeds (one clip).
        appsrc.set_max_bytes(0);
        let mux = gst::ElementFactory::make("mp4mux")
            .property("fragment-duration", 1000u32)
            .build()
            .map_err(|e| PipelineError::Build(e.to_string()))?;
        let sink = gst::ElementFactory::make("filesink")
            .property("location", partial.to_string_lossy().as_ref())
            .build()
            .map_err(|e| PipelineError::Build(e.to_string()))?;
        pipeline.add_many([appsrc.upcast_ref(), &mux, &sink]).map_err(|e| PipelineError::Build(e.to_string()))?;
        // Request the video pad explicitly: a plain link can land on an audio pad.
        let pad =
            mux.request_pad_simple("video_%u").ok_or_else(|| PipelineError::Build("mp4mux: no video pad".into()))?;
        appsrc
            .static_pad("src")
            .unwrap()
            .link(&pad)
            .map_err(|e| PipelineError::Build(format!("appsrc -> mp4mux: {e:?}")))?;
        mux.link(&sink).map_err(|e| PipelineError::Build(e.to_string()))?;
        pipeline.set_state(gst::State::Playing).map_err(|e| PipelineError::Build(format!("clip writer: {e}")))?;
        Ok(Writer { pipeline, appsrc, partial, info, last_pts: None })
    }

    fn push(&mut self, u: &EncodedUnit) {
        // Rebase to the clip's start; never let time go back (loop points).
        let mut pts = u.pts_ns.saturating_sub(self.info.start_ns);
        if let Some(last) = self.last_pts
            && pts <= last
        {
            pts = last + u.duration_ns.max(1);
        }
        self.last_pts = Some(pts);
        let mut buf = u.buffer.copy();
        {
            let b = buf.get_mut().unwrap();
            b.set_pts(gst::ClockTime::from_nseconds(pts));
            b.set_dts(gst::ClockTime::from_nseconds(pts));
            if u.duration_ns > 0 {
                b.set_duration(gst::ClockTime::from_nseconds(u.duration_ns));
            }
        }
        let _ = self.appsrc.push_buffer(buf);
        self.info.frames += 1;
        self.info.end_ns = u.pts_ns + u.duration_ns;
    }

    /// Sends EOS and finishes on a thread of its own.
    fn finish(self, done: ClipDone) {
        let _ = self.appsrc.end_of_stream();
        let _ = std::thread::Builder::new().name("clip-finish".into()).spawn(move || done(self.complete()));
    }

    fn complete(self) -> Result<ClipInfo, ClipError> {
        let bus = self.pipeline.bus().unwrap();
        let msg =
            bus.timed_pop_filtered(gst::ClockTime::from_seconds(20), &[gst::MessageType::Eos, gst::MessageType::Error]);
        let _ = self.pipeline.set_state(gst::State::Null);
        let fail = |m: String| ClipError { path: self.partial.clone(), message: m };
        match msg.as_ref().map(|m| m.view()) {
            Some(gst::MessageView::Eos(_)) => {}
            Some(gst::MessageView::Error(e)) => return Err(fail(e.error().to_string())),
            _ => return Err(fail("muxer did not finish within 20 s".into())),
        }
        let mut info = self.info;
        info.bytes = finalize(&self.partial, &info.path).map_err(|e| fail(e.to_string()))?;
        Ok(info)
    }
}

/// fsync the file, rename it into place, fsync the folder. Returns its size.
fn finalize(partial: &Path, path: &Path) -> std::io::Result<u64> {
    let f = std::fs::File::open(partial)?;
    f.sync_all()?;
    let bytes = f.metadata()?.len();
    std::fs::rename(partial, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(bytes)
}

/// Renames `*.mp4.partial` left by a crash to `*.mp4` (fragmented MP4 plays
/// up to its last complete fragment). Returns the recovered paths.
pub fn recover_partials(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else { return vec![] };
    let mut out = Vec::new();
    for e in entries.flatten() {
        let p = e.path();
        if let Some(name) = p.file_name().and_then(|n| n.to_str()).and_then(|n| n.strip_suffix(".partial")) {
            let target = dir.join(name);
            if finalize(&p, &target).is_ok() {
                out.push(target);
            }
        }
    }
    out.sort();
    out
}

struct State {
    ring: Ring,
    caps: Option<gst::Caps>,
    writer: Option<Writer>,
    /// Running time at which the open clip ends.
    end_ns: u64,
    /// A trigger waiting for the caps (the first encoded frame).
    pending: Option<(u64, String)>,
    /// Labels of chained clips: the next one continues the same label.
    chain: u32,
    /// End of the last clip: a new clip never starts before it (no frame twice).
    last_end_ns: u64,
    /// Clip files that may still be started; None = no limit.
    budget: Option<u32>,
}

/// What [`ClipRecorder::trigger`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trigger {
    /// A new clip was started (or will be, on the first keyframe or caps).
    Started,
    /// The running clip now ends later.
    Extended,
    /// Nothing recorded: the budget is spent.
    Refused,
}

/// The clip recorder: feed it every encoded frame, trigger it on an incident.
#[derive(Clone)]
pub struct ClipRecorder {
    settings: ClipSettings,
    state: Arc<Mutex<State>>,
    done: ClipDone,
}

impl ClipRecorder {
    pub fn new(settings: ClipSettings, done: ClipDone) -> Result<Self, ClipError> {
        std::fs::create_dir_all(&settings.dir)
            .map_err(|e| ClipError { path: settings.dir.clone(), message: format!("cannot create: {e}") })?;
        let state = State {
            ring: Ring::default(),
            caps: None,
            writer: None,
            end_ns: 0,
            pending: None,
            chain: 0,
            last_end_ns: 0,
            budget: None,
        };
        Ok(Self { settings, state: Arc::new(Mutex::new(state)), done })
    }

    pub fn set_caps(&self, caps: gst::Caps) {
        self.state.lock().unwrap().caps = Some(caps);
    }

    /// True while a clip is being written (for the recording light).
    pub fn is_recording(&self) -> bool {
        self.state.lock().unwrap().writer.is_some()
    }

    /// Frames and running time held for pre-roll.
    pub fn ring_stats(&self) -> (usize, u64) {
        let s = self.state.lock().unwrap();
        (s.ring.len(), s.ring.span_ns())
    }

    /// From now on, start at most `files` more clip files (None: no limit).
    /// A clip being written goes on; it just cannot chain past the budget.
    pub fn set_budget(&self, files: Option<u32>) {
        self.state.lock().unwrap().budget = files;
    }

    /// Clip files that may still be started (None: no limit).
    pub fn budget(&self) -> Option<u32> {
        self.state.lock().unwrap().budget
    }

    /// Asks for a clip around running time `t_ns`, labelled `label` (the file
    /// is `LABEL.mp4`). During a clip it extends that clip instead.
    pub fn trigger(&self, t_ns: u64, label: &str) -> Trigger {
        let mut s = self.state.lock().unwrap();
        let end = t_ns + self.settings.length_ns - self.settings.preroll_ns;
        if s.writer.is_some() {
            // Extend; past max_length the clip is chained in push().
            s.end_ns = s.end_ns.max(end);
            return Trigger::Extended;
        }
        if s.budget == Some(0) {
            return Trigger::Refused;
        }
        if s.caps.is_none() || s.ring.is_empty() {
            s.pending = Some((t_ns, label.to_string()));
            return Trigger::Started;
        }
        s.chain = 0;
        self.open(&mut s, t_ns, label.to_string(), None);
        Trigger::Started
    }

    fn open(&self, s: &mut State, t_ns: u64, label: String, from: Option<usize>) {
        let want = t_ns.saturating_sub(self.settings.preroll_ns);
        let start = from.or_else(|| {
            let i = s.ring.start_index(want)?;
            if s.ring.units[i].pts_ns >= s.last_end_ns {
                return Some(i);
            }
            // The pre-roll would repeat frames of the previous clip: start on
            // the first keyframe after it instead.
            s.ring.units.iter().position(|u| u.keyframe && u.pts_ns >= s.last_end_ns)
        });
        let Some(start) = start else {
            // No keyframe yet after the previous clip: wait for one.
            s.pending = Some((t_ns, label));
            return;
        };
        let start_ns = s.ring.units[start].pts_ns;
        let (path, partial) = self.free_name(&label, s.chain);
        let info = ClipInfo { path, label, start_ns, end_ns: start_ns, trigger_ns: t_ns, frames: 0, bytes: 0 };
        let caps = s.caps.clone().expect("caps known");
        match Writer::start(partial.clone(), &caps, info) {
            Ok(mut w) => {
                for u in s.ring.units.iter().skip(start) {
                    w.push(u);
                }
                s.end_ns = start_ns + self.settings.length_ns;
                s.writer = Some(w);
                s.budget = s.budget.map(|b| b.saturating_sub(1));
            }
            Err(e) => (self.done)(Err(ClipError { path: partial, message: e.to_string() })),
        }
    }

    /// `LABEL.mp4`, or `LABEL-N.mp4` for chained clips and when taken.
    fn free_name(&self, label: &str, chain: u32) -> (PathBuf, PathBuf) {
        let mut n = chain;
        loop {
            let name = if n == 0 { label.to_string() } else { format!("{label}-{n}") };
            let path = self.settings.dir.join(format!("{name}.mp4"));
            let partial = self.settings.dir.join(format!("{name}.mp4.partial"));
            if !path.exists() && !partial.exists() {
                return (path, partial);
            }
            n += 1;
        }
    }

    /// Feeds one encoded frame (from the encoder's streaming thread).
    pub fn push(&self, unit: EncodedUnit) {
        let mut s = self.state.lock().unwrap();
        let s = &mut *s;
        // Close the open clip when this frame is past its end (on a keyframe
        // when chaining, so the next clip can start on it).
        if let Some(w) = &s.writer {
            // Half a frame of slack: nanosecond timestamps of 1/30 s frames drift by rounding.
            let past_end = unit.pts_ns + unit.duration_ns / 2 >= s.end_ns;
            let at_cap = unit.pts_ns + unit.duration_ns / 2 >= w.info.start_ns + self.settings.max_length_ns;
            if past_end || (at_cap && unit.keyframe) {
                let w = s.writer.take().unwrap();
                let label = w.info.label.clone();
                s.last_end_ns = unit.pts_ns;
                // Chain only while the budget allows another file.
                let continue_from = if !past_end && at_cap && s.budget != Some(0) { Some(s.end_ns) } else { None };
                w.finish(self.done.clone());
                if let Some(end) = continue_from {
                    // Chain: a new clip from this keyframe, same label.
                    s.ring.push(unit, self.settings.preroll_ns);
                    s.chain += 1;
                    let idx = s.ring.units.len() - 1;
                    self.open(s, unit_pts(&s.ring, idx), label, Some(idx));
                    s.end_ns = end;
                    return;
                }
            }
        }
        if let Some(w) = s.writer.as_mut() {
            w.push(&unit);
        }
        s.ring.push(unit, self.settings.preroll_ns);
        if let Some((t, label)) = s.pending.take() {
            if s.budget == Some(0) {
                // The budget was cut while this trigger waited.
            } else if s.caps.is_some() {
                s.chain = 0;
                self.open(s, t, label, None);
            } else {
                s.pending = Some((t, label));
            }
        }
    }

    /// Finishes the open clip now (shutdown). Its `done` callback still runs.
    pub fn flush(&self) {
        let w = self.state.lock().unwrap().writer.take();
        if let Some(w) = w {
            let _ = w.appsrc.end_of_stream();
            // Synchronous here: the caller is stopping and must not lose the clip.
            (self.done)(w.complete());
        }
    }
}

fn unit_pts(ring: &Ring, i: usize) -> u64 {
    ring.units[i].pts_ns
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit(i: u64, key_every: u64) -> EncodedUnit {
        crate::init().unwrap();
        EncodedUnit {
            buffer: gst::Buffer::from_slice(vec![0u8; 100]),
            pts_ns: i * 33_333_333,
            dts_ns: i * 33_333_333,
            duration_ns: 33_333_333,
            keyframe: i.is_multiple_of(key_every),
        }
    }

    #[test]
    fn the_ring_keeps_whole_gops_covering_the_preroll() {
        let mut r = Ring::default();
        for i in 0..300 {
            r.push(unit(i, 30), 3_000_000_000);
        }
        // Newest is frame 299 (9.97 s); 3 s back is 6.97 s; the newest
        // keyframe at or before it is frame 180 (6.0 s), so frames 180..299 stay.
        assert!(r.units.front().unwrap().keyframe);
        assert_eq!(r.units.front().unwrap().pts_ns, 180 * 33_333_333);
        assert_eq!(r.len(), 120);
        let t = 299 * 33_333_333 - 3_000_000_000;
        assert_eq!(r.units[r.start_index(t).unwrap()].pts_ns, 180 * 33_333_333);
    }

    #[test]
    fn a_trigger_before_the_ring_is_full_starts_at_the_oldest_keyframe() {
        let mut r = Ring::default();
        for i in 0..40 {
            r.push(unit(i, 30), 3_000_000_000);
        }
        assert_eq!(r.start_index(0), Some(0));
    }
}
