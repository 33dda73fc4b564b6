//! Choosing an H.264 encoder that really works on this board.
//!
//! An element can exist and still fail (Jetson Orin Nano ships
//! `nvv4l2h264enc` without an encoder block), so `auto` probes each
//! candidate with a few frames and keeps the first that produces a keyframe.

use gstreamer as gst;
use gstreamer::prelude::*;

use crate::{PipelineError, package_of};

/// Tried in this order by `auto`: hardware first.
pub const CANDIDATES: [&str; 4] = ["nvv4l2h264enc", "v4l2h264enc", "x264enc", "openh264enc"];

/// Encoder settings from `[clips]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EncoderSettings {
    /// "auto" or an element name.
    pub choice: String,
    pub bitrate_kbps: u32,
    /// Keyframe interval in frames (one a second by default).
    pub keyframe_interval: u32,
}

/// A resolved encoder: the element and the description fragment that feeds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChosenEncoder {
    pub element: String,
    pub description: String,
}

impl EncoderSettings {
    pub fn new(choice: &str, fps: u32, bitrate_kbps: u32) -> Self {
        Self { choice: choice.to_string(), bitrate_kbps, keyframe_interval: fps.max(1) }
    }

    /// The gst-launch fragment for `element`: conversion, encoder, parser input.
    pub fn fragment(&self, element: &str) -> String {
        let (kbps, gop) = (self.bitrate_kbps, self.keyframe_interval);
        match element {
            "x264enc" => format!(
                "videoconvert ! video/x-raw,format=I420 ! x264enc tune=zerolatency speed-preset=ultrafast bitrate={kbps} key-int-max={gop} bframes=0"
            ),
            "openh264enc" => format!(
                "videoconvert ! video/x-raw,format=I420 ! openh264enc bitrate={} gop-size={gop} complexity=low",
                kbps * 1000
            ),
            "v4l2h264enc" => format!(
                "videoconvert ! video/x-raw,format=I420 ! v4l2h264enc extra-controls=\"controls,video_bitrate={},h264_i_frame_period={gop}\" ! video/x-h264,level=(string)4",
                kbps * 1000
            ),
            "nvv4l2h264enc" => format!(
                "nvvidconv ! video/x-raw(memory:NVMM),format=I420 ! nvv4l2h264enc bitrate={} iframeinterval={gop} insert-sps-pps=true",
                kbps * 1000
            ),
            other => format!("videoconvert ! {other}"),
        }
    }

    /// Picks the encoder: the named one (which must work), or with "auto"
    /// the first candidate that encodes probe frames.
    pub fn resolve(&self, width: u32, height: u32, fps: u32) -> Result<ChosenEncoder, PipelineError> {
        crate::init()?;
        let candidates: Vec<&str> =
            if self.choice == "auto" { CANDIDATES.to_vec() } else { vec![self.choice.as_str()] };
        let mut tried = Vec::new();
        for element in candidates {
            if gst::ElementFactory::find(element).is_none() {
                if self.choice != "auto" {
                    return Err(PipelineError::MissingElement {
                        element: element.into(),
                        package: package_of(element),
                    });
                }
                tried.push(format!("{element}: not installed"));
                continue;
            }
            match probe(&self.fragment(element), width, height, fps) {
                Ok(()) => return Ok(ChosenEncoder { element: element.into(), description: self.fragment(element) }),
                Err(e) => tried.push(format!("{element}: {e}")),
            }
        }
        Err(PipelineError::NoEncoder { tried: tried.join("; ") })
    }
}

/// Encodes a few test frames through `fragment`; Ok if a keyframe comes out.
pub fn probe(fragment: &str, width: u32, height: u32, fps: u32) -> Result<(), String> {
    let desc = format!(
        "videotestsrc num-buffers=5 ! video/x-raw,width={width},height={height},framerate={fps}/1 ! {fragment} ! h264parse ! fakesink name=out signal-handoffs=false"
    );
    let pipeline = gst::parse::launch(&desc).map_err(|e| e.to_string())?;
    let bus = pipeline.bus().expect("bus");
    let guard = NullOnDrop(pipeline.clone());
    pipeline.set_state(gst::State::Playing).map_err(|e| e.to_string())?;
    let msg =
        bus.timed_pop_filtered(gst::ClockTime::from_seconds(10), &[gst::MessageType::Eos, gst::MessageType::Error]);
    drop(guard);
    match msg.as_ref().map(|m| m.view()) {
        Some(gst::MessageView::Eos(_)) => Ok(()),
        // The debug text carries the element's own reason (a device that
        // cannot be opened, a missing encoder block).
        Some(gst::MessageView::Error(e)) => Err(match e.debug() {
            Some(d) => format!("{} ({d})", e.error()),
            None => e.error().to_string(),
        }),
        _ => Err("no output within 10 s".into()),
    }
}

/// Sets a pipeline to Null when dropped, whatever path the code took.
pub(crate) struct NullOnDrop(pub gst::Element);
impl Drop for NullOnDrop {
    fn drop(&mut self) {
        let _ = self.0.set_state(gst::State::Null);
    }
}

/// Encoders that exist here and pass the probe, for `invigil devices`.
pub fn working_encoders(width: u32, height: u32, fps: u32) -> Vec<(String, Result<(), String>)> {
    let s = EncoderSettings::new("auto", fps, 1000);
    CANDIDATES
        .iter()
        .map(|&e| {
            let r = if gst::ElementFactory::find(e).is_none() {
                Err("not installed".to_string())
            } else {
                probe(&s.fragment(e), width, height, fps)
            };
            (e.to_string(), r)
        })
        .collect()
}
