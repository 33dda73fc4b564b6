//! GStreamer capture and H.264 encoding. Knows frames and bytes, nothing of scores.
//!
//! # Layout
//! - [`source`]: what a camera source is (`v4l2`, `libcamera`, `nvargus`,
//!   `file`, `test`) and the GStreamer description of each.
//! - [`capture`]: the running capture pipeline. A tee feeds a leaky analysis
//!   branch (scaled RGB frames pulled by the caller; it never blocks the
//!   encoder) and, when asked, an H.264 encode branch whose access units go
//!   to a callback. Counters of frames captured, analysed and dropped.
//! - [`encoder`]: choosing an H.264 encoder that really works on this board.
//! - [`devices`]: V4L2 cameras, their formats and sizes, desk controls.
//! - [`clip`]: the pre-roll ring and crash-safe MP4 clips, written off the
//!   streaming thread (its state machine, writers and ring in `clip/`).
//!
//! Every fallible call returns a [`PipelineError`] that names the element
//! or the input at fault.

pub mod capture;
pub mod clip;
pub mod devices;
pub mod encoder;
pub mod source;

pub use capture::{AnalysisFrame, Capture, CaptureConfig, CaptureStats, EncodedUnit, PullError};
pub use clip::{ClipInfo, ClipRecorder, ClipSettings, Trigger};
pub use source::Source;

/// Errors of this crate. Each names the element, file or setting at fault.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error("GStreamer could not start: {0}")]
    Init(String),
    #[error("element {element} is not installed (package {package})")]
    MissingElement { element: String, package: &'static str },
    #[error("camera source {source_desc:?}: {reason}")]
    BadSource { source_desc: String, reason: String },
    #[error("video file {path}: {reason}")]
    File { path: String, reason: String },
    #[error("pipeline: {0}")]
    Build(String),
    #[error("{element}: {message}{}", debug.as_ref().map(|d| format!(" ({d})")).unwrap_or_default())]
    Stream { element: String, message: String, debug: Option<String> },
    #[error("no H.264 encoder works here (tried {tried})")]
    NoEncoder { tried: String },
}

/// Initialises GStreamer once; cheap to call again.
pub fn init() -> Result<(), PipelineError> {
    gstreamer::init().map_err(|e| PipelineError::Init(e.to_string()))
}

/// The Debian package that ships an element, for error messages.
pub(crate) fn package_of(element: &str) -> &'static str {
    match element {
        "x264enc" => "gstreamer1.0-plugins-ugly",
        "openh264enc" | "h264parse" | "v4l2h264enc" => "gstreamer1.0-plugins-bad",
        "mp4mux" | "qtdemux" | "v4l2src" | "matroskamux" => "gstreamer1.0-plugins-good",
        "avdec_h264" => "gstreamer1.0-libav",
        "libcamerasrc" => "gstreamer1.0-libcamera",
        "nvarguscamerasrc" | "nvv4l2h264enc" | "nvvidconv" => "NVIDIA JetPack (nvidia-l4t-gstreamer)",
        _ => "gstreamer1.0-plugins-base",
    }
}

/// Fails with [`PipelineError::MissingElement`] unless every element exists.
pub fn require_elements(names: &[&str]) -> Result<(), PipelineError> {
    init()?;
    for n in names {
        if gstreamer::ElementFactory::find(n).is_none() {
            return Err(PipelineError::MissingElement { element: n.to_string(), package: package_of(n) });
        }
    }
    Ok(())
}
