//! `/analyze`'s work before the model: one WebSocket message to the JPEG's
//! bytes, and the JPEG to pixels at the size the model needs.
//!
//! Promises:
//! - A binary message is used as it is; a data URL (as text, or under
//!   `"frame"`/`"image"` in a JSON object) is base64-decoded into a buffer
//!   the connection reuses. The JSON is read without building a tree, and
//!   the data URL is borrowed from the message when it holds no escapes.
//! - A JPEG is decoded by libjpeg-turbo straight to the smallest DCT scale
//!   (1/8, 1/4, 1/2 or 1) whose larger side still covers the model's input
//!   (128 px): 640x480 decodes to 160x120, without the full-size image ever
//!   existing. [`ScaledFrame::scale`] maps its pixels back to the JPEG's.
//! - After the first frames of a connection, nothing here allocates: the
//!   base64 buffer and the pixel buffer grow to the largest frame seen.
//! - Bad input is an error naming what is wrong, never a panic or a large
//!   allocation: a header over [`MAX_SIDE`] pixels on a side is refused
//!   before any pixel memory is taken; truncated or corrupt data is an error
//!   (libjpeg-turbo's warnings count as errors); a progressive JPEG may have
//!   at most [`MAX_SCANS`] scans.

use std::borrow::Cow;

use axum::extract::ws::Message;
use base64::Engine;
use models::RgbFrame;
use turbojpeg::{Decompressor, Image, PixelFormat, ScalingFactor};

/// Largest width or height accepted, in the JPEG's own pixels.
pub const MAX_SIDE: usize = 8192;
/// Most scans a progressive JPEG may have (a guard against crafted files
/// that cost seconds of CPU; browsers' JPEGs are baseline, one scan).
pub const MAX_SCANS: u32 = 100;
/// The model's input side: decoding stops scaling down before this.
const MODEL_SIDE: usize = models::blazeface::INPUT_SIZE;

/// The JPEG's bytes in one `/analyze` message: `Ok(None)` for messages
/// that carry no frame (ping, pong, close). `scratch` receives the decoded
/// base64 of a text message and is reused from message to message.
pub fn message_jpeg<'a>(m: &'a Message, scratch: &'a mut Vec<u8>) -> Result<Option<&'a [u8]>, String> {
    let text = match m {
        Message::Binary(b) => return Ok(Some(b)),
        Message::Text(t) => t.as_str().trim(),
        _ => return Ok(None),
    };
    let url: Cow<'_, str> = if text.starts_with('{') { json_frame(text)? } else { Cow::Borrowed(text) };
    let b64 = match url.strip_prefix("data:") {
        Some(rest) => rest.split_once(',').ok_or("data URL without a comma")?.1,
        None => &url,
    };
    scratch.clear();
    base64::engine::general_purpose::STANDARD
        .decode_vec(b64.trim(), scratch)
        .map_err(|e| format!("invalid base64: {e}"))?;
    Ok(Some(scratch))
}

/// The data URL under `"frame"` (else `"image"`) of a JSON object.
fn json_frame(text: &str) -> Result<Cow<'_, str>, String> {
    #[derive(serde::Deserialize)]
    struct Msg<'a> {
        #[serde(borrow, default)]
        frame: Option<Cow<'a, str>>,
        #[serde(borrow, default)]
        image: Option<Cow<'a, str>>,
    }
    let m: Msg<'_> = serde_json::from_str(text).map_err(|e| format!("bad JSON: {e}"))?;
    m.frame.or(m.image).ok_or_else(|| "JSON message without a \"frame\" or \"image\" string".to_string())
}

/// Decodes JPEGs at the scale the model needs, into a buffer it reuses.
pub struct JpegScaler {
    tj: Decompressor,
    rgb: Vec<u8>,
}

/// A decoded frame and how it relates to the JPEG.
#[derive(Debug)]
pub struct ScaledFrame<'a> {
    pub frame: RgbFrame<'a>,
    /// JPEG pixels per frame pixel (1, 2, 4 or 8).
    pub scale: usize,
    /// The JPEG's own size.
    pub jpeg_width: usize,
    pub jpeg_height: usize,
}

impl JpegScaler {
    pub fn new() -> Result<Self, String> {
        let mut tj = Decompressor::new().map_err(|e| format!("JPEG decoder: {e}"))?;
        tj.set_scan_limit(MAX_SCANS).map_err(|e| format!("JPEG decoder: {e}"))?;
        Ok(Self { tj, rgb: Vec::new() })
    }

    /// Decodes `jpeg` at the smallest DCT scale that still covers the
    /// model's input.
    pub fn decode(&mut self, jpeg: &[u8]) -> Result<ScaledFrame<'_>, String> {
        if jpeg.len() < 4 || jpeg[0] != 0xFF || jpeg[1] != 0xD8 {
            return Err("not a JPEG".into());
        }
        let h = self.tj.read_header(jpeg).map_err(|e| format!("JPEG: {e}"))?;
        if h.width == 0 || h.height == 0 || h.width > MAX_SIDE || h.height > MAX_SIDE {
            return Err(format!("JPEG of {}x{} pixels: at most {MAX_SIDE} on a side", h.width, h.height));
        }
        let denom = scale_for(h.width, h.height);
        let factor = ScalingFactor::new(1, denom);
        self.tj.set_scaling_factor(factor).map_err(|e| format!("JPEG: {e}"))?;
        let (w, ht) = (factor.scale(h.width), factor.scale(h.height));
        let len = w * ht * 3;
        if self.rgb.len() < len {
            self.rgb.resize(len, 0);
        }
        let out = Image { pixels: &mut self.rgb[..len], width: w, pitch: w * 3, height: ht, format: PixelFormat::RGB };
        self.tj.decompress(jpeg, out).map_err(|e| format!("JPEG: {e}"))?;
        let frame = RgbFrame::packed(w, ht, &self.rgb[..len]).map_err(|e| e.to_string())?;
        Ok(ScaledFrame { frame, scale: denom, jpeg_width: h.width, jpeg_height: h.height })
    }
}

/// The largest of 8, 4, 2 whose scaled larger side is still at least the
/// model's input, else 1.
fn scale_for(width: usize, height: usize) -> usize {
    let side = width.max(height);
    [8, 4, 2].into_iter().find(|&d| side.div_ceil(d) >= MODEL_SIDE).unwrap_or(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jpeg(w: u16, h: u16) -> Vec<u8> {
        let px: Vec<u8> = (0..w as usize * h as usize * 3).map(|i| (i * 31 % 251) as u8).collect();
        let mut out = Vec::new();
        jpeg_encoder::Encoder::new(&mut out, 80).encode(&px, w, h, jpeg_encoder::ColorType::Rgb).unwrap();
        out
    }

    fn data_url(b: &[u8]) -> String {
        format!("data:image/jpeg;base64,{}", base64::engine::general_purpose::STANDARD.encode(b))
    }

    #[test]
    fn the_scale_keeps_the_larger_side_at_or_over_the_model_input() {
        assert_eq!(scale_for(640, 480), 4);
        assert_eq!(scale_for(1280, 720), 8);
        assert_eq!(scale_for(320, 240), 2);
        assert_eq!(scale_for(176, 144), 1);
        assert_eq!(scale_for(1000, 1000), 4); // 125 at 1/8 would be under 128
    }

    #[test]
    fn a_640x480_jpeg_decodes_to_160x120() {
        let mut s = JpegScaler::new().unwrap();
        let f = s.decode(&jpeg(640, 480)).unwrap();
        assert_eq!((f.frame.width, f.frame.height, f.scale), (160, 120, 4));
        assert_eq!((f.jpeg_width, f.jpeg_height), (640, 480));
    }

    #[test]
    fn all_three_message_forms_give_the_same_bytes() {
        let j = jpeg(64, 48);
        let mut scratch = Vec::new();
        let bin = Message::Binary(j.clone().into());
        assert_eq!(message_jpeg(&bin, &mut scratch).unwrap().unwrap(), &j[..]);
        let url = Message::Text(data_url(&j).into());
        assert_eq!(message_jpeg(&url, &mut scratch).unwrap().unwrap(), &j[..]);
        for key in ["frame", "image"] {
            let json = Message::Text(serde_json::json!({ key: data_url(&j), "ts": 1 }).to_string().into());
            assert_eq!(message_jpeg(&json, &mut scratch).unwrap().unwrap(), &j[..], "{key}");
        }
        // An escaped slash, as some JSON encoders write it, still decodes.
        let escaped = format!("{{\"frame\":\"{}\"}}", data_url(&j).replace('/', "\\/"));
        assert_eq!(message_jpeg(&Message::Text(escaped.into()), &mut scratch).unwrap().unwrap(), &j[..]);
        assert!(message_jpeg(&Message::Ping(Default::default()), &mut scratch).unwrap().is_none());
    }

    #[test]
    fn bad_messages_say_what_is_wrong() {
        let mut s = Vec::new();
        let err = |m: Message, s: &mut Vec<u8>| message_jpeg(&m, s).unwrap_err();
        assert!(err(Message::Text("data:image/jpeg;base64,@@@".into()), &mut s).contains("base64"));
        assert!(err(Message::Text("data:image/jpeg;base64".into()), &mut s).contains("comma"));
        assert!(err(Message::Text("{\"frame\": 12}".into()), &mut s).contains("JSON"));
        assert!(err(Message::Text("{\"other\": \"x\"}".into()), &mut s).contains("\"frame\""));
        assert!(err(Message::Text("{not json".into()), &mut s).contains("JSON"));
    }

    #[test]
    fn truncated_and_corrupt_jpegs_are_errors() {
        let mut s = JpegScaler::new().unwrap();
        let j = jpeg(320, 240);
        assert!(s.decode(&j[..j.len() / 2]).unwrap_err().starts_with("JPEG"));
        let mut corrupt = j.clone();
        for b in corrupt[j.len() / 3..j.len() / 3 + 400].iter_mut() {
            *b = 0x5A;
        }
        corrupt.truncate(j.len() - 2);
        assert!(s.decode(&corrupt).is_err());
        assert_eq!(s.decode(b"hello").unwrap_err(), "not a JPEG");
        assert!(s.decode(&j).is_ok(), "a good frame after bad ones");
    }

    #[test]
    fn a_header_claiming_65500_pixels_a_side_is_refused_before_any_allocation() {
        // A real 16x16 JPEG whose SOF0 claims 65,500 x 65,500.
        let mut j = jpeg(16, 16);
        let sof = j.windows(2).position(|w| w == [0xFF, 0xC0]).expect("baseline SOF0");
        j[sof + 5..sof + 9].copy_from_slice(&[0xFF, 0xDC, 0xFF, 0xDC]);
        let mut s = JpegScaler::new().unwrap();
        let err = s.decode(&j).unwrap_err();
        assert!(err.contains("65500x65500"), "{err}");
        assert_eq!(s.rgb.capacity(), 0, "no pixel memory was taken");
    }
}
