//! SSD anchors and decoding for the palm detector and the full-range face
//! detector, as MediaPipe's `SsdAnchorsCalculator` and
//! `TensorsToDetectionsCalculator` do it (fixed-size anchors, sigmoid
//! scores clipped at ±100, weighted non-maximum suppression at IoU 0.3).
//! Pure numbers, like [`crate::blazeface`].

use crate::blazeface::{Anchor, BBox, NMS_IOU, Point};
use crate::roi::Region;

/// The anchor layout and decoding of one SSD model.
#[derive(Clone, Copy, Debug)]
pub struct SsdOptions {
    /// Side of the square input.
    pub input: usize,
    /// One stride per layer; consecutive layers of one stride share a grid.
    pub strides: &'static [usize],
    /// Anchors per cell and layer: 2 with the interpolated scale, else 1.
    pub per_layer: usize,
    /// Values per anchor: 4 for the box, 2 per keypoint.
    pub coords: usize,
    /// Detections under this confidence are dropped.
    pub min_score: f32,
}

/// MediaPipe's palm detector (lite): 2016 anchors, 7 keypoints. Its graph
/// keeps palms from 0.5; 0.8 is used here, because on `carphone` a bow tie
/// and a chin scored up to 0.71 (docs/SCORING.md).
pub const PALM: SsdOptions =
    SsdOptions { input: 192, strides: &[8, 16, 16, 16], per_layer: 2, coords: 18, min_score: 0.8 };
/// BlazeFace full range: 2304 anchors on one 48x48 grid, 6 keypoints,
/// minimum score 0.6 as in MediaPipe's graph.
pub const FULL_RANGE: SsdOptions = SsdOptions { input: 192, strides: &[4], per_layer: 1, coords: 16, min_score: 0.6 };

impl SsdOptions {
    /// Anchor centres in normalised input coordinates.
    pub fn anchors(&self) -> Vec<Anchor> {
        let mut out = Vec::new();
        let mut layer = 0;
        while layer < self.strides.len() {
            let stride = self.strides[layer];
            let mut per_cell = 0;
            while layer < self.strides.len() && self.strides[layer] == stride {
                per_cell += self.per_layer;
                layer += 1;
            }
            let grid = self.input.div_ceil(stride);
            for y in 0..grid {
                for x in 0..grid {
                    for _ in 0..per_cell {
                        out.push(Anchor { x: (x as f32 + 0.5) / grid as f32, y: (y as f32 + 0.5) / grid as f32 });
                    }
                }
            }
        }
        out
    }

    fn keypoints(&self) -> usize {
        (self.coords - 4) / 2
    }
}

/// A detection of an SSD model, in frame pixels.
#[derive(Clone, Debug, PartialEq)]
pub struct SsdDetection {
    pub score: f32,
    pub bbox: BBox,
    pub keypoints: Vec<Point>,
}

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x.clamp(-100.0, 100.0)).exp())
}

/// Decodes raw outputs of a model that saw `region` of the frame (cropped
/// by [`crate::roi::crop`]) into detections in frame pixels, strongest first.
///
/// # Panics
/// If the outputs do not have one row per anchor (the model's spec is
/// checked at load, so this is a programming error).
pub fn decode(
    opts: &SsdOptions,
    regressors: &[f32],
    logits: &[f32],
    anchors: &[Anchor],
    region: &Region,
) -> Vec<SsdDetection> {
    assert_eq!(regressors.len(), anchors.len() * opts.coords);
    assert_eq!(logits.len(), anchors.len());
    let n = opts.input as f32;
    let mut raw = Vec::new();
    for (i, a) in anchors.iter().enumerate() {
        let score = sigmoid(logits[i]);
        if score < opts.min_score {
            continue;
        }
        let r = &regressors[i * opts.coords..][..opts.coords];
        let (cx, cy, w, h) = (r[0] / n + a.x, r[1] / n + a.y, r[2] / n, r[3] / n);
        let bbox = BBox { xmin: cx - w / 2.0, ymin: cy - h / 2.0, xmax: cx + w / 2.0, ymax: cy + h / 2.0 };
        let keypoints = (0..opts.keypoints()).map(|k| Point { x: r[4 + 2 * k] / n + a.x, y: r[5 + 2 * k] / n + a.y });
        raw.push(SsdDetection { score, bbox, keypoints: keypoints.collect() });
    }
    let side = opts.input;
    let to = |p: Point| region.to_frame(p.x * side as f32, p.y * side as f32, side, false);
    weighted_nms(raw)
        .into_iter()
        .map(|d| {
            let (tl, br) = (to(Point { x: d.bbox.xmin, y: d.bbox.ymin }), to(Point { x: d.bbox.xmax, y: d.bbox.ymax }));
            SsdDetection {
                score: d.score,
                bbox: BBox { xmin: tl.x.min(br.x), ymin: tl.y.min(br.y), xmax: tl.x.max(br.x), ymax: tl.y.max(br.y) },
                keypoints: d.keypoints.into_iter().map(to).collect(),
            }
        })
        .collect()
}

/// MediaPipe's WEIGHTED non-maximum suppression (as
/// [`crate::blazeface::weighted_nms`], for any number of keypoints).
fn weighted_nms(mut dets: Vec<SsdDetection>) -> Vec<SsdDetection> {
    dets.sort_by(|a, b| b.score.total_cmp(&a.score));
    let mut out = Vec::new();
    while let Some(top) = dets.first().cloned() {
        let (cluster, rest): (Vec<SsdDetection>, Vec<SsdDetection>) =
            dets.into_iter().partition(|d| d.bbox.iou(&top.bbox) > NMS_IOU || d.bbox == top.bbox);
        dets = rest;
        let total: f32 = cluster.iter().map(|d| d.score).sum();
        let mut merged = SsdDetection {
            score: top.score,
            bbox: BBox::default(),
            keypoints: vec![Point::default(); top.keypoints.len()],
        };
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
    fn anchor_counts_match_the_models() {
        assert_eq!(PALM.anchors().len(), 2016);
        assert_eq!(FULL_RANGE.anchors().len(), 2304);
        let f = FULL_RANGE.anchors();
        assert_eq!(f[0], Anchor { x: 0.5 / 48.0, y: 0.5 / 48.0 });
        assert_eq!(f[1], Anchor { x: 1.5 / 48.0, y: 0.5 / 48.0 });
        let p = PALM.anchors();
        // 24x24 cells x 2, then 12x12 cells x 6.
        assert_eq!(p[1152], Anchor { x: 0.5 / 12.0, y: 0.5 / 12.0 });
        assert_eq!(p[1157], p[1152]);
    }

    #[test]
    fn two_overlapping_boxes_merge_and_a_far_one_stays() {
        let opts = SsdOptions { input: 192, strides: &[96], per_layer: 1, coords: 6, min_score: 0.5 };
        let anchors = opts.anchors(); // a 2x2 grid
        assert_eq!(anchors.len(), 4);
        let mut reg = vec![0.0; 4 * 6];
        let mut logits = vec![-10.0; 4];
        for i in [0, 3] {
            reg[i * 6 + 2] = 40.0;
            reg[i * 6 + 3] = 40.0;
            reg[i * 6 + 4] = 10.0; // keypoint 10 px right of the anchor
            logits[i] = 3.0;
        }
        // Anchor 0 twice, as two anchors at the same place would be: use anchor 1 moved onto it.
        let mut a = anchors.clone();
        a[1] = a[0];
        reg[6 + 2] = 40.0;
        reg[6 + 3] = 40.0;
        reg[6 + 4] = 20.0;
        logits[1] = 1.0;
        let d = decode(&opts, &reg, &logits, &a, &Region::whole(192, 192));
        assert_eq!(d.len(), 2, "{d:?}");
        assert!((d[0].bbox.width() - 40.0).abs() < 1e-3);
        // Keypoint x: weighted mean of 10 and 20 px past the anchor at 48.
        let w = (sigmoid(3.0), sigmoid(1.0));
        let want = 48.0 + (10.0 * w.0 + 20.0 * w.1) / (w.0 + w.1);
        assert!((d[0].keypoints[0].x - want).abs() < 1e-3, "{} vs {want}", d[0].keypoints[0].x);
    }
}
