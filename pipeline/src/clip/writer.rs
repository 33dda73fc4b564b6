//! One clip file: an `appsrc ! mp4mux ! filesink` pipeline, its timestamps,
//! and putting the finished file in place.
//!
//! - Timestamps are rebased by one offset for PTS and DTS alike (the first
//!   frame's DTS), so the file keeps the encoder's reordering: DTS starts at
//!   0 and strictly increases, PTS never precedes DTS. mp4mux writes the
//!   difference as a `ctts` box when the encoder made B-frames.
//! - A finished clip is fsynced, renamed from `NAME.mp4.partial` to
//!   `NAME.mp4`, then the folder is fsynced.
//! - Dropping a [`Writer`] sets its pipeline to Null.

use std::path::{Path, PathBuf};

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;

use super::{ClipError, ClipInfo};
use crate::PipelineError;
use crate::capture::EncodedUnit;

/// Opens the muxing pipeline of one clip file. The recorder calls it on its
/// own opener thread, never on the thread that pushes frames. [`Mp4Opener`]
/// is the real one; a test may wrap it (to hold an open while frames
/// arrive, say).
pub trait OpenWriter: Send + Sync + 'static {
    /// Builds and starts a writer to the file `partial`.
    ///
    /// # Errors
    /// [`PipelineError`] naming the element that is missing or failed.
    fn open(&self, partial: &Path, caps: &gst::Caps) -> Result<Writer, PipelineError>;
}

/// Writes MP4 with mp4mux: fragmented (a fragment a second) while the clip
/// is written, rewritten into a plain MP4 (moov at the end) when it ends.
pub struct Mp4Opener;

impl OpenWriter for Mp4Opener {
    fn open(&self, partial: &Path, caps: &gst::Caps) -> Result<Writer, PipelineError> {
        Writer::start(partial, caps)
    }
}

/// A running clip pipeline, fed encoded frames in decode order.
pub struct Writer {
    pipeline: gst::Pipeline,
    appsrc: gst_app::AppSrc,
    partial: PathBuf,
    timeline: Timeline,
}

impl Writer {
    /// Builds `appsrc ! mp4mux ! filesink location=partial` and sets it playing.
    ///
    /// # Errors
    /// [`PipelineError::MissingElement`] or [`PipelineError::Build`].
    pub fn start(partial: &Path, caps: &gst::Caps) -> Result<Writer, PipelineError> {
        crate::require_elements(&["appsrc", "mp4mux", "filesink"])?;
        let build = |e: gst::glib::BoolError| PipelineError::Build(format!("clip writer: {e}"));
        let pipeline = gst::Pipeline::new();
        let appsrc = gst_app::AppSrc::builder().caps(caps).format(gst::Format::Time).is_live(false).build();
        // Unbounded in bytes here, so a push never blocks; the recorder
        // bounds what it feeds (one clip, at most `max_length`).
        appsrc.set_max_bytes(0);
        let mux = gst::ElementFactory::make("mp4mux").property("fragment-duration", 1000u32).build().map_err(build)?;
        // Finished, the file becomes a plain MP4 whose edit list starts the
        // picture at 0 (with B-frames the first frame shows at the reorder
        // delay; without the edit list players cut the last frames off).
        // GStreamer 1.20+; older ones keep plain fragments.
        if mux.find_property("fragment-mode").is_some() {
            mux.set_property_from_str("fragment-mode", "first-moov-then-finalise");
        }
        let sink = gst::ElementFactory::make("filesink")
            .property("location", partial.to_string_lossy().as_ref())
            .build()
            .map_err(build)?;
        pipeline.add_many([appsrc.upcast_ref(), &mux, &sink]).map_err(build)?;
        // Request the video pad explicitly: a plain link can land on an audio pad.
        let pad =
            mux.request_pad_simple("video_%u").ok_or_else(|| PipelineError::Build("mp4mux: no video pad".into()))?;
        let src_pad = appsrc.static_pad("src").ok_or_else(|| PipelineError::Build("appsrc: no src pad".into()))?;
        src_pad.link(&pad).map_err(|e| PipelineError::Build(format!("appsrc -> mp4mux: {e:?}")))?;
        mux.link(&sink).map_err(build)?;
        let writer = Writer { pipeline, appsrc, partial: partial.to_path_buf(), timeline: Timeline::default() };
        // On failure `writer` drops here and sets Null.
        writer
            .pipeline
            .set_state(gst::State::Playing)
            .map_err(|e| PipelineError::Build(format!("clip writer {}: {e}", partial.display())))?;
        Ok(writer)
    }

    /// Queues one frame (never blocks: the appsrc queue is unbounded).
    pub(super) fn push(&mut self, u: &EncodedUnit) {
        let (pts, dts) = self.timeline.place(u);
        let mut buf = u.buffer.copy();
        {
            let b = buf.make_mut();
            b.set_pts(gst::ClockTime::from_nseconds(pts));
            b.set_dts(gst::ClockTime::from_nseconds(dts));
            if u.duration_ns > 0 {
                b.set_duration(gst::ClockTime::from_nseconds(u.duration_ns));
            }
        }
        // A refused buffer means the pipeline failed; its error is read in complete().
        let _ = self.appsrc.push_buffer(buf);
    }

    /// Ends the stream (queued; returns at once).
    pub(super) fn end(&self) {
        let _ = self.appsrc.end_of_stream();
    }

    /// Waits (up to 20 s) for the muxer to write the end of the file, then
    /// puts the file in place. Blocks: run it off the streaming thread.
    pub(super) fn complete(self, mut info: ClipInfo) -> Result<ClipInfo, ClipError> {
        let bus = self.pipeline.bus().expect("a pipeline has a bus");
        let msg =
            bus.timed_pop_filtered(gst::ClockTime::from_seconds(20), &[gst::MessageType::Eos, gst::MessageType::Error]);
        let _ = self.pipeline.set_state(gst::State::Null);
        let fail = |m: String| ClipError { path: self.partial.clone(), message: m };
        match msg.as_ref().map(|m| m.view()) {
            Some(gst::MessageView::Eos(_)) => {}
            Some(gst::MessageView::Error(e)) => {
                let element = e.src().map(|s| s.path_string().to_string()).unwrap_or_default();
                return Err(fail(format!("{element}: {}", e.error())));
            }
            _ => return Err(fail("muxer did not finish within 20 s".into())),
        }
        info.bytes = finalize(&self.partial, &info.path).map_err(|e| fail(e.to_string()))?;
        Ok(info)
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}

/// Rebases a clip's timestamps: one offset (the first frame's DTS) for PTS
/// and DTS, so their difference (the encoder's reordering) is kept.
#[derive(Default, Debug)]
pub(super) struct Timeline {
    offset: Option<i64>,
    /// Added after a jump back in time (a file source's loop point), to
    /// this frame and every later one alike.
    shift: i64,
    last_dts: Option<i64>,
}

impl Timeline {
    /// (pts, dts) of `u` in the clip: DTS strictly increasing from 0, PTS >= DTS.
    pub(super) fn place(&mut self, u: &EncodedUnit) -> (u64, u64) {
        let offset = *self.offset.get_or_insert(u.dts_ns);
        let mut dts = u.dts_ns - offset + self.shift;
        if let Some(last) = self.last_dts
            && dts <= last
        {
            let step = last + (u.duration_ns as i64).max(1) - dts;
            self.shift += step;
            dts += step;
        }
        self.last_dts = Some(dts);
        let pts = (u.pts_ns as i64 - offset + self.shift).max(dts);
        (pts as u64, dts as u64)
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

/// `LABEL.mp4`, or `LABEL-N.mp4` for chained clips and when taken; with its
/// `.partial` name. Checks the folder: call it where I/O may block.
pub(super) fn free_name(dir: &Path, label: &str, chain: u32) -> (PathBuf, PathBuf) {
    let mut n = chain;
    loop {
        let name = if n == 0 { label.to_string() } else { format!("{label}-{n}") };
        let path = dir.join(format!("{name}.mp4"));
        let partial = dir.join(format!("{name}.mp4.partial"));
        if !path.exists() && !partial.exists() {
            return (path, partial);
        }
        n += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const F: u64 = 33_333_333;

    fn unit(pts: u64, dts: i64, keyframe: bool) -> EncodedUnit {
        crate::init().unwrap();
        EncodedUnit { buffer: gst::Buffer::new(), pts_ns: pts, dts_ns: dts, duration_ns: F, keyframe }
    }

    #[test]
    fn b_frames_keep_their_reordering_with_dts_from_zero() {
        // x264enc with bframes=2 from the stream's start: DTS two frames
        // before PTS, negative for the first two frames.
        let f = F as i64;
        let units = [(0, -2 * f), (3 * F, -f), (F, 0), (2 * F, f), (6 * F, 2 * f), (4 * F, 3 * f)];
        let mut t = Timeline::default();
        let placed: Vec<_> = units.iter().map(|&(p, d)| t.place(&unit(p, d, p == 0))).collect();
        let dts: Vec<u64> = placed.iter().map(|p| p.1).collect();
        assert_eq!(dts, [0, F, 2 * F, 3 * F, 4 * F, 5 * F]);
        assert!(placed.iter().all(|(p, d)| p >= d));
        let pts: Vec<u64> = placed.iter().map(|p| p.0).collect();
        assert_eq!(pts, [2 * F, 5 * F, 3 * F, 4 * F, 8 * F, 6 * F], "PTS moved by the same offset");
    }

    #[test]
    fn a_jump_back_in_time_moves_pts_and_dts_alike() {
        let mut t = Timeline::default();
        assert_eq!(t.place(&unit(10 * F, 10 * F as i64, true)), (0, 0));
        assert_eq!(t.place(&unit(11 * F, 11 * F as i64, false)), (F, F));
        // A loop point: time starts again at 0, and this frame shows two after it decodes.
        let (pts, dts) = t.place(&unit(2 * F, 0, true));
        assert_eq!(dts, 2 * F);
        assert_eq!(pts, 4 * F);
    }
}
