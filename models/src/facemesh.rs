//! The 468-point face landmarks and the iris, as MediaPipe's face mesh
//! and iris graphs crop and decode them, and what the score reads from
//! them: the mouth's opening, the head's yaw, the eyes' gaze.
//!
//! Regions (`scripts/reference/signals_reference.py` spells out the same):
//! - face: BlazeFace's box centre, rotated along the eye keypoints (right
//!   eye to left eye), 1.5 x the box's longer side;
//! - eyes: landmarks 33 -> 133 and 362 -> 263 (outer to inner corner of the
//!   image's left eye, inner to outer of its right eye), centred on the two
//!   corners, rotated along them, 2.3 x the longer side of their bounding
//!   box; the image's right eye is mirrored (the model knows one eye).
//!
//! Pure numbers: the models run in [`crate::frame`].

use crate::blazeface::{Detection, Point, keypoint as kp};
use crate::roi::{Border, CropSpec, Range, Region};

/// Crop of the face landmark model.
pub const FACE_CROP: CropSpec = CropSpec { size: 192, border: Border::Replicate, range: Range::Unit, mirror: false };
/// Crop of the iris model (the image's left eye; the other is mirrored).
pub const EYE_CROP: CropSpec = CropSpec { size: 64, border: Border::Replicate, range: Range::Unit, mirror: false };
/// Landmark pairs of the two eye regions (from, to, mirrored).
pub const EYES: [(usize, usize, bool); 2] = [(33, 133, false), (362, 263, true)];

/// Landmarks the score reads.
pub mod landmark {
    /// Inner lips, upper and lower.
    pub const UPPER_LIP: usize = 13;
    pub const LOWER_LIP: usize = 14;
    /// Below the nose (subnasale): the jaw opens away from it.
    pub const NOSE_BASE: usize = 2;
    /// Top of the forehead and the chin: the face's height.
    pub const FOREHEAD: usize = 10;
    pub const CHIN: usize = 152;
    /// The face's outline at the image's left and right cheek.
    pub const LEFT_CHEEK: usize = 234;
    pub const RIGHT_CHEEK: usize = 454;
}

/// The landmark model's region for a face BlazeFace found.
pub fn face_region(d: &Detection) -> Region {
    let (r, l) = (d.keypoints[kp::RIGHT_EYE], d.keypoints[kp::LEFT_EYE]);
    Region {
        cx: (d.bbox.xmin + d.bbox.xmax) / 2.0,
        cy: (d.bbox.ymin + d.bbox.ymax) / 2.0,
        side: 1.5 * d.bbox.width().max(d.bbox.height()),
        angle: (l.y - r.y).atan2(l.x - r.x),
    }
}

/// 468 points of one face, in frame pixels (z in the same scale: smaller
/// is nearer the camera).
#[derive(Clone, Debug, PartialEq)]
pub struct FaceMesh {
    pub points: Vec<[f32; 3]>,
    /// Probability that the crop holds a face (sigmoid of the model's flag).
    pub presence: f32,
}

impl FaceMesh {
    /// Decodes the model's outputs (1404 values, one logit) for `region`.
    ///
    /// # Panics
    /// If `raw` is not 1404 values long (the spec is checked at load).
    pub fn decode(raw: &[f32], flag_logit: f32, region: &Region) -> FaceMesh {
        assert_eq!(raw.len(), 1404, "468 x 3 landmark values");
        let n = FACE_CROP.size;
        let z_scale = region.side / n as f32;
        let points = raw
            .chunks_exact(3)
            .map(|p| {
                let f = region.to_frame(p[0], p[1], n, false);
                [f.x, f.y, p[2] * z_scale]
            })
            .collect();
        FaceMesh { points, presence: 1.0 / (1.0 + (-flag_logit.clamp(-100.0, 100.0)).exp()) }
    }

    fn xy(&self, i: usize) -> Point {
        Point { x: self.points[i][0], y: self.points[i][1] }
    }

    /// Distance between the inner lips over the face's height (forehead to
    /// chin): about 0.01-0.03 closed, 0.1-0.2 wide open.
    pub fn mouth_opening(&self) -> f32 {
        use landmark::*;
        let d = |a: Point, b: Point| ((a.x - b.x).powi(2) + (a.y - b.y).powi(2)).sqrt();
        let height = d(self.xy(FOREHEAD), self.xy(CHIN));
        if height < 1e-3 { 0.0 } else { d(self.xy(UPPER_LIP), self.xy(LOWER_LIP)) / height }
    }

    /// Distance from below the nose to the chin over the face's height:
    /// the jaw's opening, about 0.38-0.40 closed. Talking moves it by 0.03
    /// to 0.1; unlike the inner lips' gap, it does not flicker on a still
    /// open smile (docs/SCORING.md).
    pub fn jaw_opening(&self) -> f32 {
        use landmark::*;
        let d = |a: Point, b: Point| ((a.x - b.x).powi(2) + (a.y - b.y).powi(2)).sqrt();
        let height = d(self.xy(FOREHEAD), self.xy(CHIN));
        if height < 1e-3 { 0.0 } else { d(self.xy(NOSE_BASE), self.xy(CHIN)) / height }
    }

    /// Head yaw in degrees from the depth of the two cheek edges: 0 facing
    /// the camera, about ±40 or more in profile; positive = turned towards
    /// the image's right (as [`crate::Pose`]).
    pub fn yaw_deg(&self) -> f32 {
        let (a, b) = (self.points[landmark::LEFT_CHEEK], self.points[landmark::RIGHT_CHEEK]);
        (-(b[2] - a[2])).atan2(b[0] - a[0]).to_degrees()
    }

    /// The iris model's region of eye `i` of [`EYES`].
    pub fn eye_region(&self, i: usize) -> Region {
        let (a, b) = (self.xy(EYES[i].0), self.xy(EYES[i].1));
        Region {
            cx: (a.x + b.x) / 2.0,
            cy: (a.y + b.y) / 2.0,
            side: 2.3 * (b.x - a.x).abs().max((b.y - a.y).abs()),
            angle: (b.y - a.y).atan2(b.x - a.x),
        }
    }

    /// Where the irises look: each iris centre's offset from the middle of
    /// its eye's corners, along the corner axis (horizontal) and across it
    /// (vertical, positive down), in eye widths, averaged over both eyes.
    pub fn gaze(&self, iris_centres: [Point; 2]) -> Gaze {
        let (mut h, mut v) = (0.0, 0.0);
        for (i, c) in iris_centres.iter().enumerate() {
            let (p, q) = (self.xy(EYES[i].0), self.xy(EYES[i].1));
            let (ax, ay) = (q.x - p.x, q.y - p.y);
            let w2 = (ax * ax + ay * ay).max(1e-6);
            let (dx, dy) = (c.x - (p.x + q.x) / 2.0, c.y - (p.y + q.y) / 2.0);
            h += (dx * ax + dy * ay) / w2 / 2.0;
            v += (ax * dy - ay * dx) / w2 / 2.0;
        }
        Gaze { horizontal: h, vertical: v }
    }
}

/// The iris model's output (15 values: 5 points, centre first) to the
/// iris centre in frame pixels.
pub fn iris_centre(iris: &[f32], region: &Region, mirror: bool) -> Point {
    region.to_frame(iris[0], iris[1], EYE_CROP.size, mirror)
}

/// Iris offsets from the eye's middle, in eye widths (see [`FaceMesh::gaze`]).
#[derive(Clone, Copy, Debug, PartialEq, Default)]
pub struct Gaze {
    /// Positive = towards the image's right.
    pub horizontal: f32,
    /// Positive = down.
    pub vertical: f32,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blazeface::BBox;

    fn mesh_with(points: &[(usize, [f32; 3])]) -> FaceMesh {
        let mut m = FaceMesh { points: vec![[0.0; 3]; 468], presence: 1.0 };
        for &(i, p) in points {
            m.points[i] = p;
        }
        m
    }

    #[test]
    fn the_face_region_is_rotated_along_the_eyes_and_half_again_as_large() {
        let p = |x, y| Point { x, y };
        let d = Detection {
            score: 0.9,
            bbox: BBox { xmin: 100.0, ymin: 100.0, xmax: 200.0, ymax: 180.0 },
            keypoints: [p(120.0, 130.0), p(180.0, 190.0), p(0.0, 0.0), p(0.0, 0.0), p(0.0, 0.0), p(0.0, 0.0)],
        };
        let r = face_region(&d);
        assert_eq!((r.cx, r.cy, r.side), (150.0, 140.0, 150.0));
        assert!((r.angle - std::f32::consts::FRAC_PI_4).abs() < 1e-6);
    }

    #[test]
    fn mouth_opening_is_the_lip_gap_over_the_face_height() {
        use landmark::*;
        let m = mesh_with(&[
            (FOREHEAD, [50.0, 0.0, 0.0]),
            (CHIN, [50.0, 100.0, 0.0]),
            (UPPER_LIP, [50.0, 70.0, 0.0]),
            (LOWER_LIP, [50.0, 85.0, 0.0]),
        ]);
        assert!((m.mouth_opening() - 0.15).abs() < 1e-6);
        let mut m = m;
        m.points[NOSE_BASE] = [50.0, 60.0, 0.0];
        assert!((m.jaw_opening() - 0.4).abs() < 1e-6);
    }

    #[test]
    fn a_nearer_right_cheek_is_a_head_turned_to_the_image_left() {
        use landmark::*;
        let frontal = mesh_with(&[(LEFT_CHEEK, [0.0, 0.0, 0.0]), (RIGHT_CHEEK, [100.0, 0.0, 0.0])]);
        assert!(frontal.yaw_deg().abs() < 1e-4);
        let turned = mesh_with(&[(LEFT_CHEEK, [0.0, 0.0, 0.0]), (RIGHT_CHEEK, [100.0, 0.0, -100.0])]);
        assert!((turned.yaw_deg() - 45.0).abs() < 1e-3, "{}", turned.yaw_deg());
    }

    #[test]
    fn irises_in_the_middle_look_ahead_and_shifted_ones_look_aside() {
        let m = mesh_with(&[
            (33, [0.0, 0.0, 0.0]),
            (133, [30.0, 0.0, 0.0]),
            (362, [60.0, 0.0, 0.0]),
            (263, [90.0, 0.0, 0.0]),
        ]);
        let ahead = m.gaze([Point { x: 15.0, y: 0.0 }, Point { x: 75.0, y: 0.0 }]);
        assert_eq!(ahead, Gaze::default());
        let right = m.gaze([Point { x: 21.0, y: 3.0 }, Point { x: 81.0, y: 3.0 }]);
        assert!((right.horizontal - 0.2).abs() < 1e-6 && (right.vertical - 0.1).abs() < 1e-6, "{right:?}");
        assert!((m.eye_region(0).side - 69.0).abs() < 1e-4);
    }
}
