//! The capture pipeline: source -> tee -> { analysis appsink, encoder appsink }.
//!
//! Promises:
//! - The analysis branch never blocks capture or encoding: it is a leaky
//!   queue into an appsink that keeps only the newest frame. Frames the
//!   caller did not pull in time are dropped and counted
//!   ([`CaptureStats::dropped`]), never queued without bound.
//! - Timestamps are running time in nanoseconds, monotonic across loops of a
//!   file source (looping uses segment seeks, not flushes).
//! - A pipeline error or an unexpected end of stream is returned from
//!   [`Capture::pull`] as a [`PullError`] naming the element; the caller
//!   decides to restart.
//! - Dropping a [`Capture`] sets the pipeline to Null.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;

use crate::encoder::EncoderSettings;
use crate::source::Source;
use crate::{PipelineError, require_elements};

/// What to capture and how to hand it over.
#[derive(Clone, Debug)]
pub struct CaptureConfig {
    pub source: Source,
    /// Size and rate of the camera stream (and of clips).
    pub width: u32,
    pub height: u32,
    pub fps: u32,
    /// Size of the RGB frames handed to analysis. The model sees 128x128, so
    /// anything above 320x240 only costs conversion time.
    pub analysis_width: u32,
    pub analysis_height: u32,
    /// File sources: start again at the end instead of ending.
    pub looping: bool,
    /// File sources: play at the file's own speed (like a camera). When false,
    /// decode as fast as the caller pulls, with no frame dropped (offline scoring).
    pub realtime: bool,
    /// Encode H.264 for clips. `None`: analysis only.
    pub encoder: Option<EncoderSettings>,
}

impl CaptureConfig {
    /// Standard profile: 640x480 at 30 FPS, analysis at 320x240.
    pub fn new(source: Source) -> Self {
        Self {
            source,
            width: 640,
            height: 480,
            fps: 30,
            analysis_width: 320,
            analysis_height: 240,
            looping: false,
            realtime: true,
            encoder: None,
        }
    }
}

/// One RGB frame for analysis. Owns the GStreamer buffer's mapping: no copy.
pub struct AnalysisFrame {
    /// Running time of the frame, in nanoseconds since the pipeline started.
    pub pts_ns: u64,
    /// Frame number: live, derived from the running time and the frame rate
    /// (gaps show frames dropped before analysis); offline, the frame's index.
    pub frame: u64,
    pub width: usize,
    pub height: usize,
    /// Bytes per row (RGB rows are padded to 4 bytes).
    pub stride: usize,
    /// Pipeline clock time since the frame's timestamp when it was pulled:
    /// the capture-to-analysis delay (0 if the clock is not running yet).
    pub age_ns: u64,
    map: gst::buffer::MappedBuffer<gst::buffer::Readable>,
}

impl AnalysisFrame {
    /// Packed RGB24 rows of `stride` bytes.
    pub fn data(&self) -> &[u8] {
        self.map.as_slice()
    }
}

/// One H.264 access unit (AVC format, one frame) from the encoder.
#[derive(Clone, Debug)]
pub struct EncodedUnit {
    pub buffer: gst::Buffer,
    /// Running time of the frame (presentation), in nanoseconds.
    pub pts_ns: u64,
    /// Running time of decoding, in nanoseconds: equal to `pts_ns` without
    /// B-frames; with them, earlier, and negative for the first frames of
    /// the stream (an encoder that reorders decodes ahead of time 0).
    pub dts_ns: i64,
    pub duration_ns: u64,
    pub keyframe: bool,
}

/// Counters, read at any time.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CaptureStats {
    /// Frames out of the source.
    pub captured: u64,
    /// Frames handed to the caller by [`Capture::pull`].
    pub analysed: u64,
    /// Frames the analysis branch dropped because the caller was busy.
    pub dropped: u64,
    /// Encoded access units delivered to the clip callback.
    pub encoded: u64,
    /// Times a file source started again from its beginning.
    pub loops: u64,
}

/// Why [`Capture::pull`] returned no frame.
#[derive(Debug, thiserror::Error)]
pub enum PullError {
    #[error("the source ended")]
    Eos,
    #[error(transparent)]
    Failed(#[from] PipelineError),
}

#[derive(Default)]
struct Counters {
    captured: AtomicU64,
    analysed: AtomicU64,
    encoded: AtomicU64,
    loops: AtomicU64,
    last_pts: AtomicU64,
}

/// A running capture pipeline.
pub struct Capture {
    pipeline: gst::Pipeline,
    analysis: gst_app::AppSink,
    bus: gst::Bus,
    counters: Arc<Counters>,
    cfg: CaptureConfig,
    encoder_name: Option<String>,
}

/// Called on a GStreamer streaming thread for each encoded access unit; must
/// not block (push into a bounded structure and return).
/// The caps describe the stream (needed to mux it); they rarely change.
pub type EncodedCallback = Box<dyn Fn(EncodedUnit, &gst::CapsRef) + Send + Sync + 'static>;

impl Capture {
    /// Builds and starts the pipeline. For a file source this waits for the
    /// first frame to be decoded, so a corrupt file fails here, by name.
    pub fn start(cfg: CaptureConfig, on_encoded: Option<EncodedCallback>) -> Result<Self, PipelineError> {
        crate::init()?;
        cfg.source.precheck()?;
        require_elements(&["tee", "queue", "appsink", "videoconvert", "videoscale"])?;
        let (w, h, fps) = (cfg.width, cfg.height, cfg.fps);
        // A file is paced like a camera by a clock-synchronised element before
        // the tee; the sinks never sync (a leaky branch behind a syncing sink
        // would let the source run free and drop nearly everything).
        let pace = if cfg.realtime && !cfg.source.is_live() { " ! identity sync=true" } else { "" };
        let sync = false;
        let analysis_queue = if cfg.realtime {
            // Leaky: a busy scorer loses old frames, never stalls capture.
            "queue leaky=downstream max-size-buffers=2 max-size-bytes=0 max-size-time=0"
        } else {
            "queue max-size-buffers=4 max-size-bytes=0 max-size-time=0"
        };
        // Live: an end of stream does not wait for the app to pull what the
        // sinks hold (stop would otherwise wait for a frame nobody takes).
        // Offline it must: every frame is scored.
        let appsink_opts =
            if cfg.realtime { "max-buffers=1 drop=true wait-on-eos=false" } else { "max-buffers=4 drop=false" };
        // Scale first, in the camera's own format (1.5-2 bytes a pixel),
        // then convert only the small frame to RGB: converting the full
        // frame to RGB and then scaling it did 4x the conversion work.
        let mut desc = format!(
            "{src}{pace} ! tee name=t \
             t. ! {analysis_queue} ! videoscale ! videoconvert ! \
             video/x-raw,format=RGB,width={aw},height={ah},pixel-aspect-ratio=1/1 ! \
             appsink name=analysis sync={sync} {appsink_opts} enable-last-sample=false",
            src = cfg.source.description(w, h, fps, cfg.realtime || cfg.source.is_live()),
            aw = cfg.analysis_width,
            ah = cfg.analysis_height,
        );
        let mut encoder_name = None;
        if let Some(enc) = &cfg.encoder {
            let chosen = enc.resolve(w, h, fps)?;
            desc.push_str(&format!(
                " t. ! queue max-size-buffers=30 max-size-bytes=0 max-size-time=0 ! {} ! \
                 h264parse config-interval=-1 ! video/x-h264,stream-format=avc,alignment=au ! \
                 appsink name=enc sync={sync} max-buffers=60 drop=true wait-on-eos={wait} enable-last-sample=false",
                chosen.description,
                wait = !cfg.realtime,
            ));
            encoder_name = Some(chosen.element);
        }
        let pipeline = gst::parse::launch(&desc)
            .map_err(|e| PipelineError::Build(format!("{e} in `{desc}`")))?
            .downcast::<gst::Pipeline>()
            .map_err(|_| PipelineError::Build("not a pipeline".into()))?;
        let by_name = |n: &str| pipeline.by_name(n).ok_or_else(|| PipelineError::Build(format!("no element {n}")));
        match &cfg.source {
            Source::File(p) => by_name("src")?.set_property("location", p.to_string_lossy().as_ref()),
            Source::V4l2(p) => by_name("src")?.set_property("device", p.to_string_lossy().as_ref()),
            _ => {}
        }
        let counters = Arc::new(Counters::default());
        // Count frames leaving the source, before any branch can drop them.
        let tee = by_name("t")?;
        let c = counters.clone();
        tee.static_pad("sink").expect("tee has a sink pad").add_probe(gst::PadProbeType::BUFFER, move |_, _| {
            c.captured.fetch_add(1, Ordering::Relaxed);
            gst::PadProbeReturn::Ok
        });
        let analysis = by_name("analysis")?.downcast::<gst_app::AppSink>().expect("appsink");
        if let Some(cb) = on_encoded {
            let enc = by_name("enc")?.downcast::<gst_app::AppSink>().expect("appsink");
            let c = counters.clone();
            enc.set_callbacks(
                gst_app::AppSinkCallbacks::builder()
                    .new_sample(move |sink| {
                        let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                        if let (Some(unit), Some(caps)) = (encoded_unit(&sample), sample.caps()) {
                            c.encoded.fetch_add(1, Ordering::Relaxed);
                            cb(unit, caps);
                        }
                        Ok(gst::FlowSuccess::Ok)
                    })
                    .build(),
            );
        }
        let bus = pipeline.bus().expect("pipeline has a bus");
        let capture = Capture { pipeline, analysis, bus, counters, cfg, encoder_name };
        capture.set_playing()?;
        Ok(capture)
    }

    fn set_playing(&self) -> Result<(), PipelineError> {
        self.change_state(gst::State::Playing)?;
        if self.cfg.looping && !self.cfg.source.is_live() {
            // A segment seek makes the end of the file post SEGMENT_DONE
            // (handled in pull) instead of EOS. Done in PLAYING: the pacing
            // element before the tee would block a preroll in PAUSED.
            if self
                .pipeline
                .seek(
                    1.0,
                    gst::SeekFlags::FLUSH | gst::SeekFlags::SEGMENT,
                    gst::SeekType::Set,
                    gst::ClockTime::ZERO,
                    gst::SeekType::None,
                    gst::ClockTime::NONE,
                )
                .is_err()
            {
                // A pipe or a stream: play it once.
                tracing::warn!(source = %self.cfg.source, "the source cannot seek, so it will not loop");
            }
        }
        Ok(())
    }

    fn change_state(&self, state: gst::State) -> Result<(), PipelineError> {
        let failed =
            self.pipeline.set_state(state).is_err() || self.pipeline.state(gst::ClockTime::from_seconds(10)).0.is_err();
        if failed {
            // The bus holds the reason (a corrupt file, a missing decoder).
            if let Some(e) = self.pending_error() {
                return Err(e);
            }
            return Err(self.file_or_build(format!("could not reach state {state:?}")));
        }
        Ok(())
    }

    fn file_or_build(&self, reason: String) -> PipelineError {
        match &self.cfg.source {
            Source::File(p) => PipelineError::File { path: p.display().to_string(), reason },
            _ => PipelineError::Build(reason),
        }
    }

    fn pending_error(&self) -> Option<PipelineError> {
        while let Some(msg) = self.bus.pop_filtered(&[gst::MessageType::Error]) {
            if let gst::MessageView::Error(e) = msg.view() {
                return Some(self.stream_error(e));
            }
        }
        None
    }

    fn stream_error(&self, e: &gst::message::Error) -> PipelineError {
        let element = e.src().map(|s| s.path_string().to_string()).unwrap_or_else(|| "pipeline".into());
        let err =
            PipelineError::Stream { element, message: e.error().to_string(), debug: e.debug().map(|d| d.to_string()) };
        match &self.cfg.source {
            Source::File(p) => PipelineError::File { path: p.display().to_string(), reason: err.to_string() },
            _ => err,
        }
    }

    /// Handles bus messages (errors, end of stream, loop points) and
    /// returns the next analysis frame, or `Ok(None)` after `timeout` without one.
    pub fn pull(&self, timeout: Duration) -> Result<Option<AnalysisFrame>, PullError> {
        while let Some(msg) = self.bus.pop() {
            match msg.view() {
                gst::MessageView::Error(e) => return Err(PullError::Failed(self.stream_error(e))),
                gst::MessageView::SegmentDone(_) => {
                    self.counters.loops.fetch_add(1, Ordering::Relaxed);
                    // Non-flushing: running time goes on where it was.
                    let _ = self.pipeline.seek(
                        1.0,
                        gst::SeekFlags::SEGMENT,
                        gst::SeekType::Set,
                        gst::ClockTime::ZERO,
                        gst::SeekType::None,
                        gst::ClockTime::NONE,
                    );
                }
                _ => {}
            }
        }
        let Some(sample) = self.analysis.try_pull_sample(gst::ClockTime::from_nseconds(timeout.as_nanos() as u64))
        else {
            if self.analysis.is_eos() {
                return Err(PullError::Eos);
            }
            return Ok(None);
        };
        let frame = self.analysis_frame(&sample).map_err(PullError::Failed)?;
        self.counters.analysed.fetch_add(1, Ordering::Relaxed);
        Ok(Some(frame))
    }

    fn analysis_frame(&self, sample: &gst::Sample) -> Result<AnalysisFrame, PipelineError> {
        let caps = sample.caps().ok_or_else(|| PipelineError::Build("analysis sample without caps".into()))?;
        let info = gstreamer_video::VideoInfo::from_caps(caps).map_err(|e| PipelineError::Build(e.to_string()))?;
        let buffer =
            sample.buffer_owned().ok_or_else(|| PipelineError::Build("analysis sample without buffer".into()))?;
        // At a loop point a file's last frame and the next segment's first
        // can share a running time; time handed out never goes back or stalls.
        let frame_ns = 1_000_000_000 / self.cfg.fps.max(1) as u64;
        let raw = running_time(sample, buffer.pts()).unwrap_or(0);
        let last = self.counters.last_pts.load(Ordering::Relaxed);
        let pts_ns =
            if self.counters.analysed.load(Ordering::Relaxed) > 0 && raw <= last { last + frame_ns } else { raw };
        self.counters.last_pts.store(pts_ns, Ordering::Relaxed);
        let age_ns = self.pipeline.current_running_time().map(|now| now.nseconds().saturating_sub(raw)).unwrap_or(0);
        let map = buffer.into_mapped_buffer_readable().map_err(|_| PipelineError::Build("cannot map frame".into()))?;
        let fps = self.cfg.fps.max(1) as u64;
        let frame = if self.cfg.realtime {
            (pts_ns * fps + 500_000_000) / 1_000_000_000
        } else {
            // Offline every frame is delivered: count them.
            self.counters.analysed.load(Ordering::Relaxed)
        };
        Ok(AnalysisFrame {
            pts_ns,
            frame,
            width: info.width() as usize,
            height: info.height() as usize,
            stride: info.stride()[0] as usize,
            age_ns,
            map,
        })
    }

    pub fn stats(&self) -> CaptureStats {
        let c = &self.counters;
        let captured = c.captured.load(Ordering::Relaxed);
        let analysed = c.analysed.load(Ordering::Relaxed);
        CaptureStats {
            captured,
            analysed,
            // At most two frames sit in the queue and one in the appsink.
            dropped: captured.saturating_sub(analysed).saturating_sub(3),
            encoded: c.encoded.load(Ordering::Relaxed),
            loops: c.loops.load(Ordering::Relaxed),
        }
    }

    /// Length of a file source, once known (for progress bars).
    pub fn duration_ns(&self) -> Option<u64> {
        self.pipeline.query_duration::<gst::ClockTime>().map(|d| d.nseconds())
    }

    /// The encoder element in use, if encoding.
    pub fn encoder(&self) -> Option<&str> {
        self.encoder_name.as_deref()
    }

    /// Caps of the encoded stream (needed to write clips), once known.
    pub fn encoded_caps(&self) -> Option<gst::Caps> {
        self.pipeline.by_name("enc")?.static_pad("sink")?.current_caps()
    }

    /// Sends end-of-stream and waits (bounded, 2 s) so encoders flush, then
    /// stops. True if the end of stream reached every sink in time.
    pub fn stop(self) -> bool {
        // Into the tee, not to the source: a file source run by its demuxer
        // (pull mode) never forwards an EOS sent to it, which cost every
        // stop the full wait.
        let tee_sink = self.pipeline.by_name("t").and_then(|t| t.static_pad("sink"));
        match tee_sink {
            Some(pad) => {
                pad.send_event(gst::event::Eos::new());
            }
            None => {
                self.pipeline.send_event(gst::event::Eos::new());
            }
        }
        let msg = self
            .bus
            .timed_pop_filtered(gst::ClockTime::from_seconds(2), &[gst::MessageType::Eos, gst::MessageType::Error]);
        // Drop sets Null.
        matches!(msg.as_ref().map(|m| m.view()), Some(gst::MessageView::Eos(_)))
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}

fn running_time(sample: &gst::Sample, ts: Option<gst::ClockTime>) -> Option<u64> {
    let ts = ts?;
    let seg = sample.segment()?.downcast_ref::<gst::ClockTime>()?;
    seg.to_running_time(ts).map(|t| t.nseconds())
}

/// Running time that may lie before the segment's start (a B-frame
/// encoder's first DTS): negative then, instead of none.
fn signed_running_time(sample: &gst::Sample, ts: Option<gst::ClockTime>) -> Option<i64> {
    let seg = sample.segment()?.downcast_ref::<gst::ClockTime>()?;
    match seg.to_running_time_full(ts?)? {
        gst::Signed::Positive(t) => Some(t.nseconds() as i64),
        gst::Signed::Negative(t) => Some(-(t.nseconds() as i64)),
    }
}

/// An encoder's sample as an [`EncodedUnit`] with running-time timestamps
/// (encoders shift PTS by an offset and compensate in the segment).
pub fn encoded_unit(sample: &gst::Sample) -> Option<EncodedUnit> {
    let buffer = sample.buffer_owned()?;
    let pts_ns = running_time(sample, buffer.pts())?;
    let dts_ns = signed_running_time(sample, buffer.dts()).unwrap_or(pts_ns as i64);
    Some(EncodedUnit {
        pts_ns,
        dts_ns,
        duration_ns: buffer.duration().map(|d| d.nseconds()).unwrap_or(0),
        keyframe: !buffer.flags().contains(gst::BufferFlags::DELTA_UNIT),
        buffer,
    })
}
