//! BlazeFace short-range decoding, as MediaPipe's face detection graph does it.
//!
//! Input: a 128x128 letterboxed frame. Output tensors: 896 anchors x 16
//! regressors (box centre, size, six keypoints) and 896 logits. This module
//! turns them into [`Detection`]s in the original frame's pixels. It is pure:
//! no model, no I/O, so it is tested with plain numbers.

use crate::image::RgbFrame;

/// Side of the model's square input.
pub const INPUT_SIZE: usize = 128;
/// Number of SSD anchors of the short-range model.
pub const NUM_ANCHORS: usize = 896;
/// Regressor values per anchor: 4 for the box, 2 for each of 6 keypoints.
pub const NUM_COORDS: usize = 16;
/// Detections below this confidence are dropped (MediaPipe's default).
pub const MIN_SCORE: f32 = 0.5;
/// Boxes overlapping more than this are merged by weighted NMS.
pub const NMS_IOU: f32 = 0.3;

/// A point in frame pixels.
#[derive(Clone, Copy, Debug, PartialEq, Default, serde::Serialize)]
pub struct Point {
    pub x: f32,
    pub y: f32,
}

/// An axis-aligned box in frame pixels.
#[derive(Clone, Copy, Debug, PartialEq, Default, serde::Serialize)]
pub struct BBox {
    pub xmin: f32,
    pub ymin: f32,
    pub xmax: f32,
    pub ymax: f32,
}

impl BBox {
    pub fn width(&self) -> f32 {
        (self.xmax - self.xmin).max(0.0)
    }
    pub fn height(&self) -> f32 {
        (self.ymax - self.ymin).max(0.0)
    }
    pub fn area(&self) -> f32 {
        self.width() * self.height()
    }
    /// Intersection over union; 0 for disjoint or empty boxes.
    pub fn iou(&self, other: &BBox) -> f32 {
        let ix = (self.xmax.min(other.xmax) - self.xmin.max(other.xmin)).max(0.0);
        let iy = (self.ymax.min(other.ymax) - self.ymin.max(other.ymin)).max(0.0);
        let inter = ix * iy;
        let union = self.area() + other.area() - inter;
        if union <= 0.0 { 0.0 } else { inter / union }
    }
}

/// Keypoint order of BlazeFace (the subject's right eye appears on the image's left).
pub mod keypoint {
    pub const RIGHT_EYE: usize = 0;
    pub const LEFT_EYE: usize = 1;
    pub const NOSE_TIP: usize = 2;
    pub const MOUTH: usize = 3;
    pub const RIGHT_EAR: usize = 4;
    pub const LEFT_EAR: usize = 5;
}

/// One face.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Detection {
    /// Confidence 0-1 (sigmoid of the logit).
    pub score: f32,
    pub bbox: BBox,
    /// See [`keypoint`] for the order.
    pub keypoints: [Point; 6],
}

/// An SSD anchor centre in normalised [0,1] input coordinates (the short-range
/// model uses fixed-size anchors, so width and height are 1).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Anchor {
    pub x: f32,
    pub y: f32,
}

/// The 896 anchors of MediaPipe's `SsdAnchorsCalculator` with the short-range
/// options: strides 8, 16, 16, 16; two anchors per cell and layer (aspect
/// ratio 1 plus the interpolated scale); layers of equal stride share a grid.
pub fn anchors() -> Vec<Anchor> {
    const STRIDES: [usize; 4] = [8, 16, 16, 16];
    let mut out = Vec::with_capacity(NUM_ANCHORS);
    let mut layer = 0;
    while layer < STRIDES.len() {
        let stride = STRIDES[layer];
        let mut per_cell = 0;
        while layer < STRIDES.len() && STRIDES[layer] == stride {
            per_cell += 2;
            layer += 1;
        }
        let grid = INPUT_SIZE.div_ceil(stride);
        for y in 0..grid {
            for x in 0..grid {
                for _ in 0..per_cell {
                    out.push(Anchor { x: (x as f32 + 0.5) / grid as f32, y: (y as f32 + 0.5) / grid as f32 });
                }
            }
        }
    }
    debug_assert_eq!(out.len(), NUM_ANCHORS);
    out
}

/// How a frame was fitted into the square input: scaled to fit, centred,
/// padded; in whole input pixels, exactly as [`preprocess`] placed it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Letterbox {
    pub frame_width: usize,
    pub frame_height: usize,
    /// Left and top padding in input pixels.
    pub x0: usize,
    pub y0: usize,
    /// Size of the scaled frame inside the input.
    pub content_width: usize,
    pub content_height: usize,
}

impl Letterbox {
    pub fn for_frame(width: usize, height: usize) -> Self {
        let scale = INPUT_SIZE as f32 / width.max(height) as f32;
        let cw = ((width as f32 * scale).round() as usize).clamp(1, INPUT_SIZE);
        let ch = ((height as f32 * scale).round() as usize).clamp(1, INPUT_SIZE);
        Self {
            frame_width: width,
            frame_height: height,
            x0: (INPUT_SIZE - cw) / 2,
            y0: (INPUT_SIZE - ch) / 2,
            content_width: cw,
            content_height: ch,
        }
    }

    /// Normalised input coordinates (0-1) to frame pixels.
    pub fn to_frame(&self, x: f32, y: f32) -> Point {
        let n = INPUT_SIZE as f32;
        Point {
            x: (x * n - self.x0 as f32) / self.content_width as f32 * self.frame_width as f32,
            y: (y * n - self.y0 as f32) / self.content_height as f32 * self.frame_height as f32,
        }
    }
}

/// `v as f32` for every byte: a load is cheaper than a conversion.
const U8_TO_F32: [f32; 256] = {
    let mut t = [0.0; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = i as f32;
        i += 1;
    }
    t
};

/// Letterboxes `frame` into `out` (128x128x3 floats in [-1, 1], padding -1 =
/// black) with bilinear sampling. Returns how the frame was placed.
///
/// It reads at most 4 source pixels per input pixel, whatever the frame's
/// size (1 for 640x480): 0.05 ms for a 640x480 frame in cache on x86-64,
/// 0.07-0.12 ms from memory (docs/PERFORMANCE.md, "Models").
pub fn preprocess(frame: &RgbFrame<'_>, out: &mut [f32]) -> Letterbox {
    assert_eq!(out.len(), INPUT_SIZE * INPUT_SIZE * 3, "input tensor must be 128x128x3");
    let lb = Letterbox::for_frame(frame.width, frame.height);
    let (x0, y0, cw, ch) = (lb.x0, lb.y0, lb.content_width, lb.content_height);
    // Black padding only where the content does not go.
    let row_len = INPUT_SIZE * 3;
    out[..y0 * row_len].fill(-1.0);
    out[(y0 + ch) * row_len..].fill(-1.0);
    for row in out[y0 * row_len..(y0 + ch) * row_len].chunks_exact_mut(row_len) {
        row[..x0 * 3].fill(-1.0);
        row[(x0 + cw) * 3..].fill(-1.0);
    }
    // Source byte offsets and weights for each output column, computed once.
    // A sample that falls exactly on a source pixel (as every one does when
    // the frame is a whole multiple of the input, e.g. 640x480 to 128x96)
    // does not read the neighbour whose weight is 0: half the memory traffic,
    // the same values.
    // (On the stack: no allocation per frame.)
    let sx_scale = frame.width as f32 / cw as f32;
    let mut cols = [(0usize, 0usize, 0f32, 0f32); INPUT_SIZE];
    for (ox, c) in cols[..cw].iter_mut().enumerate() {
        let sx = ((ox as f32 + 0.5) * sx_scale - 0.5).clamp(0.0, (frame.width - 1) as f32);
        let xa = sx.floor() as usize;
        let fx = sx - xa as f32;
        let xb = if fx == 0.0 { xa } else { (xa + 1).min(frame.width - 1) };
        *c = (xa * 3, xb * 3, 1.0 - fx, fx);
    }
    let cols = &cols[..cw];
    let sy_scale = frame.height as f32 / ch as f32;
    const NORM: f32 = 1.0 / 127.5;
    let px = |row: &[u8], o: usize| -> [f32; 3] {
        let p: &[u8; 3] = row[o..o + 3].try_into().expect("3 bytes");
        p.map(|v| U8_TO_F32[v as usize])
    };
    for oy in 0..ch {
        let sy = ((oy as f32 + 0.5) * sy_scale - 0.5).clamp(0.0, (frame.height - 1) as f32);
        let ya = sy.floor() as usize;
        let (wb, wa) = (sy - ya as f32, 1.0 - (sy - ya as f32));
        let yb = if wb == 0.0 { ya } else { (ya + 1).min(frame.height - 1) };
        let row_a = &frame.data[ya * frame.stride..][..frame.width * 3];
        let row_b = &frame.data[yb * frame.stride..][..frame.width * 3];
        let dst = &mut out[((oy + y0) * INPUT_SIZE + x0) * 3..][..cw * 3];
        for (d, &(oa, ob, w0, w1)) in dst.chunks_exact_mut(3).zip(cols) {
            let (a0, a1, b0, b1) = (px(row_a, oa), px(row_a, ob), px(row_b, oa), px(row_b, ob));
            for c in 0..3 {
                let a = a0[c] * w0 + a1[c] * w1;
                let b = b0[c] * w0 + b1[c] * w1;
                d[c] = (a * wa + b * wb) * NORM - 1.0;
            }
        }
    }
    lb
}

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x.clamp(-100.0, 100.0)).exp())
}

/// Decodes raw model outputs (`regressors`: 896x16, `logits`: 896) into
/// detections in frame pixels, after weighted non-maximum suppression.
pub fn decode(regressors: &[f32], logits: &[f32], anchors: &[Anchor], lb: &Letterbox) -> Vec<Detection> {
    assert_eq!(regressors.len(), anchors.len() * NUM_COORDS);
    assert_eq!(logits.len(), anchors.len());
    let n = INPUT_SIZE as f32;
    let mut raw: Vec<Detection> = Vec::new();
    for (i, a) in anchors.iter().enumerate() {
        let score = sigmoid(logits[i]);
        if score < MIN_SCORE {
            continue;
        }
        let r = &regressors[i * NUM_COORDS..][..NUM_COORDS];
        let (cx, cy) = (r[0] / n + a.x, r[1] / n + a.y);
        let (w, h) = (r[2] / n, r[3] / n);
        let tl = lb.to_frame(cx - w / 2.0, cy - h / 2.0);
        let br = lb.to_frame(cx + w / 2.0, cy + h / 2.0);
        let mut keypoints = [Point::default(); 6];
        for (k, p) in keypoints.iter_mut().enumerate() {
            *p = lb.to_frame(r[4 + 2 * k] / n + a.x, r[5 + 2 * k] / n + a.y);
        }
        raw.push(Detection { score, bbox: BBox { xmin: tl.x, ymin: tl.y, xmax: br.x, ymax: br.y }, keypoints });
    }
    weighted_nms(raw, NMS_IOU)
}

/// MediaPipe's WEIGHTED non-maximum suppression: each cluster of boxes that
/// overlap the strongest remaining one by more than `iou` becomes one
/// detection whose box and keypoints are the score-weighted mean of the
/// cluster and whose score is the strongest one's.
pub fn weighted_nms(mut dets: Vec<Detection>, iou: f32) -> Vec<Detection> {
    dets.sort_by(|a, b| b.score.total_cmp(&a.score));
    let mut out = Vec::new();
    while !dets.is_empty() {
        let top = dets[0].clone();
        let (cluster, rest): (Vec<Detection>, Vec<Detection>) =
            dets.into_iter().partition(|d| d.bbox.iou(&top.bbox) > iou || d.bbox == top.bbox);
        dets = rest;
        let total: f32 = cluster.iter().map(|d| d.score).sum();
        let mut merged = Detection { score: top.score, bbox: BBox::default(), keypoints: [Point::default(); 6] };
        for d in &cluster {
            let w = d.score / total;
            merged.bbox.xmin += d.bbox.xmin * w;
            merged.bbox.ymin += d.bbox.ymin * w;
            merged.bbox.xmax += d.bbox.xmax * w;
            merged.bbox.ymax += d.bbox.ymax * w;
            for (m, p) in merged.keypoints.iter_mut().zip(&d.keypoints) {
                m.x += p.x * w;
                m.y += p.y * w;
            }
        }
        out.push(merged);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anchors_match_mediapipe_layout() {
        let a = anchors();
        assert_eq!(a.len(), 896);
        // First grid: 16x16 cells, two anchors each, centred in the cell.
        assert_eq!(a[0], Anchor { x: 0.5 / 16.0, y: 0.5 / 16.0 });
        assert_eq!(a[1], a[0]);
        assert_eq!(a[2], Anchor { x: 1.5 / 16.0, y: 0.5 / 16.0 });
        // Second grid starts at 512: 8x8 cells, six anchors each.
        assert_eq!(a[512], Anchor { x: 0.5 / 8.0, y: 0.5 / 8.0 });
        assert_eq!(a[517], a[512]);
        assert_eq!(a[518], Anchor { x: 1.5 / 8.0, y: 0.5 / 8.0 });
        assert_eq!(a[895], Anchor { x: 7.5 / 8.0, y: 7.5 / 8.0 });
    }

    #[test]
    fn letterbox_maps_content_corners_to_frame_corners() {
        let lb = Letterbox::for_frame(640, 480);
        assert_eq!((lb.x0, lb.y0, lb.content_width, lb.content_height), (0, 16, 128, 96));
        let tl = lb.to_frame(0.0, 0.125);
        let br = lb.to_frame(1.0, 0.875);
        assert!((tl.x).abs() < 1e-3 && (tl.y).abs() < 1e-3);
        assert!((br.x - 640.0).abs() < 1e-3 && (br.y - 480.0).abs() < 1e-3);
    }

    #[test]
    fn preprocess_pads_with_black_and_keeps_content() {
        let white = vec![255u8; 64 * 32 * 3];
        let frame = RgbFrame::packed(64, 32, &white).unwrap();
        let mut t = vec![0.0; 128 * 128 * 3];
        preprocess(&frame, &mut t);
        assert_eq!(t[0], -1.0, "top padding row is black");
        let mid = (64 * 128 + 64) * 3;
        assert!((t[mid] - 1.0).abs() < 1e-6, "content is white");
        assert_eq!(t[(127 * 128) * 3], -1.0, "bottom padding row is black");
    }

    /// Bilinear sampling written the plain way, one sample at a time.
    fn plain_preprocess(frame: &RgbFrame<'_>) -> Vec<f32> {
        let lb = Letterbox::for_frame(frame.width, frame.height);
        let mut t = vec![-1.0; INPUT_SIZE * INPUT_SIZE * 3];
        let at = |x: usize, y: usize, c: usize| frame.data[y * frame.stride + x * 3 + c] as f32;
        for oy in 0..lb.content_height {
            for ox in 0..lb.content_width {
                let src = |o: usize, size: usize, content: usize| {
                    let s = ((o as f32 + 0.5) * (size as f32 / content as f32) - 0.5).clamp(0.0, (size - 1) as f32);
                    let a = s.floor() as usize;
                    (a, (a + 1).min(size - 1), s - a as f32)
                };
                let (xa, xb, fx) = src(ox, frame.width, lb.content_width);
                let (ya, yb, fy) = src(oy, frame.height, lb.content_height);
                for c in 0..3 {
                    let top = at(xa, ya, c) * (1.0 - fx) + at(xb, ya, c) * fx;
                    let bottom = at(xa, yb, c) * (1.0 - fx) + at(xb, yb, c) * fx;
                    t[((oy + lb.y0) * INPUT_SIZE + ox + lb.x0) * 3 + c] =
                        (top * (1.0 - fy) + bottom * fy) / 127.5 - 1.0;
                }
            }
        }
        t
    }

    #[test]
    fn preprocess_matches_plain_bilinear_sampling_at_any_size_and_stride() {
        for (w, h, stride) in [(640, 480, 1920), (176, 144, 528), (50, 50, 152), (1, 7, 4), (9, 1, 27), (300, 301, 904)]
        {
            let data: Vec<u8> = (0..stride * h).map(|i| ((i * 7919 + i / 13) % 256) as u8).collect();
            let frame = RgbFrame::new(w, h, stride, &data).unwrap();
            let mut t = vec![0.0; INPUT_SIZE * INPUT_SIZE * 3];
            preprocess(&frame, &mut t);
            let want = plain_preprocess(&frame);
            let worst = t.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
            assert!(worst < 1e-5, "{w}x{h} stride {stride}: differs by {worst}");
        }
    }

    fn det(score: f32, x: f32) -> Detection {
        Detection {
            score,
            bbox: BBox { xmin: x, ymin: 0.0, xmax: x + 10.0, ymax: 10.0 },
            keypoints: [Point { x, y: 0.0 }; 6],
        }
    }

    #[test]
    fn weighted_nms_merges_overlaps_and_keeps_separate_faces() {
        let out = weighted_nms(vec![det(0.6, 2.0), det(0.9, 0.0), det(0.8, 100.0)], 0.3);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].score, 0.9);
        // Weighted mean of x=0 (0.9) and x=2 (0.6): 0.8.
        assert!((out[0].bbox.xmin - 0.8).abs() < 1e-5, "{}", out[0].bbox.xmin);
        assert_eq!(out[1].bbox.xmin, 100.0);
    }

    #[test]
    fn decode_drops_low_scores_and_places_boxes_in_frame_pixels() {
        let a = anchors();
        let mut reg = vec![0.0; 896 * 16];
        let mut logits = vec![-10.0; 896];
        // Anchor 0 at (1/32, 1/32) with a 32-pixel box (0.25 of the input).
        logits[0] = 5.0;
        reg[2] = 32.0;
        reg[3] = 32.0;
        let lb = Letterbox::for_frame(128, 128);
        let d = decode(&reg, &logits, &a, &lb);
        assert_eq!(d.len(), 1);
        assert!((d[0].score - sigmoid(5.0)).abs() < 1e-6);
        assert!((d[0].bbox.xmin - (4.0 - 16.0)).abs() < 1e-3);
        assert!((d[0].bbox.width() - 32.0).abs() < 1e-3);
    }
}
