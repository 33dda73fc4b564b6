//! A borrowed RGB frame and the statistics the score needs from its pixels.

/// A packed RGB24 frame borrowed from whoever owns the pixels (a GStreamer
/// buffer, a decoded JPEG, a PNG), so analysis never copies a frame.
#[derive(Clone, Copy, Debug)]
pub struct RgbFrame<'a> {
    pub width: usize,
    pub height: usize,
    /// Bytes from one row to the next (at least `width * 3`; GStreamer pads rows to 4 bytes).
    pub stride: usize,
    pub data: &'a [u8],
}

/// Why a buffer cannot be read as an RGB frame.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    #[error("frame is {width}x{height}: both sides must be at least 1 pixel")]
    Empty { width: usize, height: usize },
    #[error("frame of {width}x{height} with stride {stride} needs {needed} bytes, got {got}")]
    TooShort { width: usize, height: usize, stride: usize, needed: usize, got: usize },
}

impl<'a> RgbFrame<'a> {
    /// Checks that `data` holds `height` rows of `stride` bytes (the last row may be short).
    pub fn new(width: usize, height: usize, stride: usize, data: &'a [u8]) -> Result<Self, FrameError> {
        if width == 0 || height == 0 {
            return Err(FrameError::Empty { width, height });
        }
        let stride = stride.max(width * 3);
        let needed = stride * (height - 1) + width * 3;
        if data.len() < needed {
            return Err(FrameError::TooShort { width, height, stride, needed, got: data.len() });
        }
        Ok(Self { width, height, stride, data })
    }

    /// A tightly packed frame (`stride == width * 3`).
    pub fn packed(width: usize, height: usize, data: &'a [u8]) -> Result<Self, FrameError> {
        Self::new(width, height, width * 3, data)
    }

    #[inline]
    pub(crate) fn pixel(&self, x: usize, y: usize) -> [u8; 3] {
        let i = y * self.stride + x * 3;
        [self.data[i], self.data[i + 1], self.data[i + 2]]
    }

    /// Mean and spread of luma over a sparse grid (about 4,800 samples at
    /// any size), enough to tell a covered or blacked-out lens.
    pub fn stats(&self) -> FrameStats {
        let step_x = (self.width / 80).max(1);
        let step_y = (self.height / 60).max(1);
        let (mut n, mut sum, mut sum_sq) = (0u64, 0u64, 0u64);
        for y in (0..self.height).step_by(step_y) {
            for x in (0..self.width).step_by(step_x) {
                let [r, g, b] = self.pixel(x, y);
                // BT.601 luma in integer arithmetic.
                let l = (77 * r as u64 + 150 * g as u64 + 29 * b as u64) >> 8;
                n += 1;
                sum += l;
                sum_sq += l * l;
            }
        }
        let mean = sum as f32 / n as f32;
        let var = (sum_sq as f32 / n as f32 - mean * mean).max(0.0);
        FrameStats { mean_luma: mean, luma_stddev: var.sqrt() }
    }
}

/// Brightness statistics of one frame.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FrameStats {
    /// 0-255.
    pub mean_luma: f32,
    /// Standard deviation of luma; a hand or tape over the lens gives a flat frame.
    pub luma_stddev: f32,
}

impl FrameStats {
    /// Below this mean luma the frame is too dark to show a face.
    pub const DARK_MEAN: f32 = 18.0;
    /// Below this spread the frame is flat: the lens is covered or the sensor is blank.
    pub const FLAT_STDDEV: f32 = 6.0;

    /// A dark or flat frame: the camera is covered (or sees nothing useful).
    pub fn covered(&self) -> bool {
        self.mean_luma < Self::DARK_MEAN || self.luma_stddev < Self::FLAT_STDDEV
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_buffer_is_rejected_with_sizes() {
        let data = vec![0u8; 10];
        let err = RgbFrame::packed(4, 4, &data).unwrap_err();
        assert_eq!(err, FrameError::TooShort { width: 4, height: 4, stride: 12, needed: 48, got: 10 });
    }

    #[test]
    fn black_and_flat_frames_count_as_covered() {
        let black = vec![0u8; 64 * 48 * 3];
        assert!(RgbFrame::packed(64, 48, &black).unwrap().stats().covered());
        let grey = vec![128u8; 64 * 48 * 3];
        assert!(RgbFrame::packed(64, 48, &grey).unwrap().stats().covered());
        let noisy: Vec<u8> = (0..64 * 48 * 3).map(|i| ((i * 7919) % 251) as u8).collect();
        assert!(!RgbFrame::packed(64, 48, &noisy).unwrap().stats().covered());
    }
}
