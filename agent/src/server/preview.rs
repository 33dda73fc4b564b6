//! The status page for installers (`/`) and its camera preview
//! (`/preview.jpg`): at most 2 JPEGs a second, made by the run loop only
//! while someone asked in the last 5 s, so an unwatched box spends nothing
//! on them.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::Shared;

/// At most this many previews a second, and only while someone asks.
const PREVIEW_EVERY: Duration = Duration::from_millis(500);
const PREVIEW_IDLE: Duration = Duration::from_secs(5);

/// When `/preview.jpg` was last asked for, and the last preview made.
#[derive(Default)]
pub struct Preview {
    wanted: Mutex<Option<Instant>>,
    last: Mutex<Option<(Instant, Bytes)>>,
}

impl Preview {
    /// True when the run loop should JPEG-encode this frame (someone asked
    /// in the last 5 s, and the last preview is 0.5 s old).
    pub fn due(&self) -> bool {
        let wanted = self.wanted.lock().unwrap().is_some_and(|t| t.elapsed() < PREVIEW_IDLE);
        wanted && self.last.lock().unwrap().as_ref().is_none_or(|(t, _)| t.elapsed() >= PREVIEW_EVERY)
    }

    /// Stores a preview of a packed-RGB frame (rows `stride` bytes apart).
    pub fn set(&self, width: usize, height: usize, stride: usize, data: &[u8]) {
        let (Ok(w), Ok(h)) = (u16::try_from(width), u16::try_from(height)) else { return };
        let row = width * 3;
        if stride < row || data.len() < stride * (height.max(1) - 1) + row {
            return;
        }
        let packed: std::borrow::Cow<[u8]> = if stride == row {
            std::borrow::Cow::Borrowed(&data[..row * height])
        } else {
            std::borrow::Cow::Owned(data.chunks(stride).take(height).flat_map(|r| &r[..row]).copied().collect())
        };
        let mut out = Vec::new();
        if jpeg_encoder::Encoder::new(&mut out, 70).encode(&packed, w, h, jpeg_encoder::ColorType::Rgb).is_ok() {
            *self.last.lock().unwrap() = Some((Instant::now(), Bytes::from(out)));
        }
    }
}

pub(super) async fn index() -> Response {
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], include_str!("index.html")).into_response()
}

/// The latest preview JPEG (204 until the run loop made one). Asking keeps
/// previews coming for 5 s.
pub(super) async fn handler(State(s): State<Arc<Shared>>) -> Response {
    *s.preview.wanted.lock().unwrap() = Some(Instant::now());
    match s.preview.last.lock().unwrap().as_ref() {
        Some((_, jpeg)) => {
            ([(header::CONTENT_TYPE, "image/jpeg"), (header::CACHE_CONTROL, "no-store")], jpeg.clone()).into_response()
        }
        None => StatusCode::NO_CONTENT.into_response(),
    }
}
