//! Regions of a frame as the second-stage models see them: a rotated
//! square, cropped into an N x N f32 tensor with bilinear sampling, and
//! points of the tensor mapped back to frame pixels.
//!
//! The formulas are those of `scripts/reference/signals_reference.py`
//! (its docstring spells them out), so the Rust crops equal the Python
//! reference's input tensors (`models/tests/signals.rs` checks their sums).
//! Pure: no model, no I/O, no allocation.

use crate::blazeface::Point;
use crate::image::RgbFrame;

/// A rotated square in frame pixels.
#[derive(Clone, Copy, Debug, PartialEq, Default)]
pub struct Region {
    /// Centre.
    pub cx: f32,
    pub cy: f32,
    /// Side length.
    pub side: f32,
    /// Radians, y down: the region's x axis points along (cos, sin).
    pub angle: f32,
}

/// What a sample outside the frame reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Border {
    /// The nearest edge pixel (MediaPipe's default for landmark crops).
    Replicate,
    /// Black.
    Zero,
}

/// How pixel values are scaled into the tensor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Range {
    /// v / 255.
    Unit,
    /// v / 127.5 - 1.
    Signed,
}

/// How a crop is made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CropSpec {
    /// Side of the square tensor.
    pub size: usize,
    pub border: Border,
    pub range: Range,
    /// Left-right mirrored (the iris model's other eye).
    pub mirror: bool,
}

impl Region {
    /// The whole frame, centred, as a letterbox of its longer side.
    pub fn whole(width: usize, height: usize) -> Self {
        Region { cx: width as f32 / 2.0, cy: height as f32 / 2.0, side: width.max(height) as f32, angle: 0.0 }
    }

    /// A point of an `n` x `n` tensor (in tensor pixels) in frame pixels.
    pub fn to_frame(&self, px: f32, py: f32, n: usize, mirror: bool) -> Point {
        let n = n as f32;
        let px = if mirror { n - px } else { px };
        let a = (px / n - 0.5) * self.side;
        let b = (py / n - 0.5) * self.side;
        let (s, c) = self.angle.sin_cos();
        Point { x: self.cx + a * c - b * s, y: self.cy + a * s + b * c }
    }
}

/// Crops `region` of `frame` into `out` (`spec.size`² x 3 values, RGB).
///
/// # Panics
/// If `out` is not `spec.size * spec.size * 3` long (a programming error:
/// the callers size it from the model's spec).
pub fn crop(frame: &RgbFrame<'_>, region: &Region, spec: &CropSpec, out: &mut [f32]) {
    let n = spec.size;
    assert_eq!(out.len(), n * n * 3, "crop tensor must be {n}x{n}x3");
    let (s, c) = region.angle.sin_cos();
    let step = region.side / n as f32;
    let (w, h) = (frame.width as isize, frame.height as isize);
    let (scale, offset) = match spec.range {
        Range::Unit => (1.0 / 255.0, 0.0),
        Range::Signed => (1.0 / 127.5, -1.0),
    };
    let fetch = |x: isize, y: isize| -> [f32; 3] {
        let inside = x >= 0 && y >= 0 && x < w && y < h;
        if !inside && spec.border == Border::Zero {
            return [0.0; 3];
        }
        let p = frame.pixel(x.clamp(0, w - 1) as usize, y.clamp(0, h - 1) as usize);
        [p[0] as f32, p[1] as f32, p[2] as f32]
    };
    let stride = frame.stride;
    for v in 0..n {
        let b = (v as f32 + 0.5) * step - region.side / 2.0;
        // The row's x and y at a = 0; each pixel adds a * (cos, sin).
        let (bx, by) = (region.cx - b * s - 0.5, region.cy + b * c - 0.5);
        for u in 0..n {
            let uu = if spec.mirror { n - 1 - u } else { u };
            let a = (uu as f32 + 0.5) * step - region.side / 2.0;
            let (x, y) = (bx + a * c, by + a * s);
            let (x0, y0) = (x.floor(), y.floor());
            let (fx, fy) = (x - x0, y - y0);
            let (xi, yi) = (x0 as isize, y0 as isize);
            let d = &mut out[(v * n + u) * 3..][..3];
            if xi >= 0 && yi >= 0 && xi + 1 < w && yi + 1 < h {
                // All four neighbours inside: read them straight from the rows.
                let o = yi as usize * stride + xi as usize * 3;
                let (r0, r1) = (&frame.data[o..o + 6], &frame.data[o + stride..o + stride + 6]);
                for k in 0..3 {
                    let top = r0[k] as f32 * (1.0 - fx) + r0[k + 3] as f32 * fx;
                    let bottom = r1[k] as f32 * (1.0 - fx) + r1[k + 3] as f32 * fx;
                    d[k] = (top * (1.0 - fy) + bottom * fy) * scale + offset;
                }
                continue;
            }
            let (p00, p01, p10, p11) = (fetch(xi, yi), fetch(xi + 1, yi), fetch(xi, yi + 1), fetch(xi + 1, yi + 1));
            for k in 0..3 {
                let top = p00[k] * (1.0 - fx) + p01[k] * fx;
                let bottom = p10[k] * (1.0 - fx) + p11[k] * fx;
                d[k] = (top * (1.0 - fy) + bottom * fy) * scale + offset;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gradient(w: usize, h: usize) -> Vec<u8> {
        (0..h).flat_map(|y| (0..w).flat_map(move |x| [(x * 10) as u8, (y * 10) as u8, 7])).collect()
    }

    #[test]
    fn an_axis_aligned_crop_of_whole_pixels_reads_them_exactly() {
        let data = gradient(8, 8);
        let frame = RgbFrame::packed(8, 8, &data).unwrap();
        // A 4x4 region at pixels 2..6 sampled at 4x4: one pixel each.
        let r = Region { cx: 4.0, cy: 4.0, side: 4.0, angle: 0.0 };
        let spec = CropSpec { size: 4, border: Border::Zero, range: Range::Unit, mirror: false };
        let mut out = vec![0.0; 48];
        crop(&frame, &r, &spec, &mut out);
        assert!((out[0] - 20.0 / 255.0).abs() < 1e-6 && (out[1] - 20.0 / 255.0).abs() < 1e-6, "{:?}", &out[..3]);
        let last = &out[45..48];
        assert!((last[0] - 50.0 / 255.0).abs() < 1e-6 && (last[1] - 50.0 / 255.0).abs() < 1e-6, "{last:?}");
    }

    #[test]
    fn borders_are_black_or_the_edge_pixel() {
        let data = vec![200u8; 4 * 4 * 3];
        let frame = RgbFrame::packed(4, 4, &data).unwrap();
        let r = Region { cx: 2.0, cy: 2.0, side: 16.0, angle: 0.0 };
        let mut out = vec![0.0; 16 * 16 * 3];
        let zero = CropSpec { size: 16, border: Border::Zero, range: Range::Signed, mirror: false };
        crop(&frame, &r, &zero, &mut out);
        assert_eq!(out[0], -1.0, "black is -1 in the signed range");
        let rep = CropSpec { border: Border::Replicate, ..zero };
        crop(&frame, &r, &rep, &mut out);
        assert!((out[0] - (200.0 / 127.5 - 1.0)).abs() < 1e-6);
    }

    #[test]
    fn a_quarter_turn_maps_the_region_x_axis_down_and_back() {
        let r = Region { cx: 50.0, cy: 40.0, side: 20.0, angle: std::f32::consts::FRAC_PI_2 };
        // The right edge's middle of the tensor is 10 px below the centre.
        let p = r.to_frame(8.0, 4.0, 8, false);
        assert!((p.x - 50.0).abs() < 1e-4 && (p.y - 50.0).abs() < 1e-4, "{p:?}");
        // Mirrored: the same tensor point is the left edge, 10 px above.
        let m = r.to_frame(8.0, 4.0, 8, true);
        assert!((m.x - 50.0).abs() < 1e-4 && (m.y - 30.0).abs() < 1e-4, "{m:?}");
    }

    #[test]
    fn mirrored_crops_are_left_right_flipped() {
        let data = gradient(8, 8);
        let frame = RgbFrame::packed(8, 8, &data).unwrap();
        let r = Region { cx: 4.0, cy: 4.0, side: 8.0, angle: 0.0 };
        let spec = CropSpec { size: 8, border: Border::Zero, range: Range::Unit, mirror: false };
        let (mut a, mut b) = (vec![0.0; 192], vec![0.0; 192]);
        crop(&frame, &r, &spec, &mut a);
        crop(&frame, &r, &CropSpec { mirror: true, ..spec }, &mut b);
        for v in 0..8 {
            for u in 0..8 {
                assert_eq!(a[(v * 8 + u) * 3], b[(v * 8 + 7 - u) * 3]);
            }
        }
    }
}
