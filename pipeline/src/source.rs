//! Camera sources and their GStreamer descriptions.

use std::path::PathBuf;
use std::str::FromStr;

use crate::PipelineError;

/// Where frames come from, as written in `[camera] source`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// `v4l2:/dev/videoN`: a USB camera.
    V4l2(PathBuf),
    /// `libcamera`: a Raspberry Pi CSI camera.
    Libcamera,
    /// `nvargus`: a Jetson CSI camera.
    Nvargus,
    /// `file:PATH`: a video file, decoded in real time and looped (demo, tests).
    File(PathBuf),
    /// `test`: GStreamer's test pattern with a moving ball.
    Test,
}

impl FromStr for Source {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "libcamera" => Ok(Source::Libcamera),
            "nvargus" => Ok(Source::Nvargus),
            "test" => Ok(Source::Test),
            _ => {
                if let Some(p) = s.strip_prefix("v4l2:") {
                    Ok(Source::V4l2(PathBuf::from(p)))
                } else if let Some(p) = s.strip_prefix("file:") {
                    Ok(Source::File(PathBuf::from(p)))
                } else {
                    Err(format!(
                        "unknown source {s:?}; expected \"v4l2:/dev/video0\", \"libcamera\", \"nvargus\", \"file:PATH\" or \"test\""
                    ))
                }
            }
        }
    }
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::V4l2(p) => write!(f, "v4l2:{}", p.display()),
            Source::Libcamera => f.write_str("libcamera"),
            Source::Nvargus => f.write_str("nvargus"),
            Source::File(p) => write!(f, "file:{}", p.display()),
            Source::Test => f.write_str("test"),
        }
    }
}

impl Source {
    /// Elements this source needs.
    pub fn elements(&self) -> &'static [&'static str] {
        match self {
            Source::V4l2(_) => &["v4l2src", "videoconvert", "videoscale", "videorate"],
            Source::Libcamera => &["libcamerasrc", "videoconvert", "videoscale"],
            Source::Nvargus => &["nvarguscamerasrc", "nvvidconv"],
            Source::File(_) => &["filesrc", "decodebin", "videoconvert", "videoscale", "videorate"],
            Source::Test => &["videotestsrc", "videoconvert"],
        }
    }

    /// Whether the source runs on its own clock (a camera) or must be paced
    /// by the sinks (a file).
    pub fn is_live(&self) -> bool {
        !matches!(self, Source::File(_))
    }

    /// Checks what can be checked before starting: the file exists, the device node exists.
    pub fn precheck(&self) -> Result<(), PipelineError> {
        match self {
            Source::File(p) => match std::fs::metadata(p) {
                // A FIFO is a stream from another process (plays once).
                Ok(m) if m.is_file() || std::os::unix::fs::FileTypeExt::is_fifo(&m.file_type()) => Ok(()),
                Ok(_) => {
                    Err(PipelineError::File { path: p.display().to_string(), reason: "not a regular file".into() })
                }
                Err(e) => Err(PipelineError::File { path: p.display().to_string(), reason: e.to_string() }),
            },
            Source::V4l2(p) if !p.exists() => Err(PipelineError::BadSource {
                source_desc: self.to_string(),
                reason: format!(
                    "{} does not exist (is the camera plugged in? `invigil devices` lists cameras)",
                    p.display()
                ),
            }),
            _ => Ok(()),
        }?;
        crate::require_elements(self.elements())
    }

    /// A gst-launch description that ends in raw video of exactly
    /// `width`x`height` at `fps` (letterboxed, square pixels). The file path or
    /// device is set afterwards on the element named `src`, never quoted
    /// into the text.
    ///
    /// `fixed_rate`: false keeps a file's own frame rate and frames (offline
    /// scoring must see each frame once, not a rate-converted stream).
    pub fn description(&self, width: u32, height: u32, fps: u32, fixed_rate: bool) -> String {
        let caps = format!("video/x-raw,width={width},height={height},framerate={fps}/1,pixel-aspect-ratio=1/1");
        let fit = if fixed_rate {
            format!("videoscale add-borders=true ! videorate ! {caps}")
        } else {
            format!("videoscale add-borders=true ! video/x-raw,width={width},height={height},pixel-aspect-ratio=1/1")
        };
        match self {
            Source::V4l2(_) => format!("v4l2src name=src ! videoconvert ! {fit}"),
            Source::Libcamera => {
                format!("libcamerasrc name=src ! video/x-raw,width={width},height={height} ! videoconvert ! {fit}")
            }
            Source::Nvargus => format!(
                "nvarguscamerasrc name=src ! video/x-raw(memory:NVMM),width={width},height={height},framerate={fps}/1 ! nvvidconv ! video/x-raw,format=I420 ! {fit}"
            ),
            Source::File(_) => format!("filesrc name=src ! decodebin ! videoconvert ! {fit}"),
            Source::Test => format!("videotestsrc name=src is-live=true pattern=ball ! {caps}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_parse_and_print_back() {
        for s in ["v4l2:/dev/video0", "libcamera", "nvargus", "file:/tmp/a b.mp4", "test"] {
            assert_eq!(s.parse::<Source>().unwrap().to_string(), s);
        }
        let err = "usb0".parse::<Source>().unwrap_err();
        assert!(err.contains("usb0") && err.contains("v4l2:/dev/video0"), "{err}");
    }

    #[test]
    fn a_missing_file_is_named() {
        let err = Source::File("/nonexistent/clip.mp4".into()).precheck().unwrap_err().to_string();
        assert!(err.contains("/nonexistent/clip.mp4"), "{err}");
    }
}
