//! Head pose (yaw and pitch in degrees) from BlazeFace's six keypoints.
//!
//! A cylinder-head approximation, cheap enough for every frame:
//! - **yaw**: the nose tip's offset from the midpoint of the two ear
//!   tragions, along the ear-to-ear axis, over half the ear distance, is
//!   `NOSE_DEPTH * tan(yaw)` for a head turning about its vertical axis.
//!   Positive yaw = the face turns towards the image's right.
//! - **pitch**: the nose tip's position between the eye line and the mouth,
//!   along the eye-to-mouth axis, moves by `PITCH_GAIN * sin(pitch)` from its
//!   frontal value `FRONTAL_NOSE_T`. Positive pitch = looking down.
//!
//! Absolute angles are rough (±10°); the score compares them with a
//! per-session baseline, which removes the constant offsets of a given face
//! and camera placement.

use crate::blazeface::{Detection, Point, keypoint as kp};

/// How far the nose tip stands in front of the ear axis, in half ear distances.
pub const NOSE_DEPTH: f32 = 1.0;
/// Nose-tip position between eye line (0) and mouth (1) when facing the camera.
pub const FRONTAL_NOSE_T: f32 = 0.55;
/// Change of that position per unit of sin(pitch).
pub const PITCH_GAIN: f32 = 0.45;

#[derive(Clone, Copy, Debug, PartialEq, Default, serde::Serialize)]
pub struct Pose {
    pub yaw_deg: f32,
    pub pitch_deg: f32,
}

fn sub(a: Point, b: Point) -> (f32, f32) {
    (a.x - b.x, a.y - b.y)
}
fn mid(a: Point, b: Point) -> Point {
    Point { x: (a.x + b.x) / 2.0, y: (a.y + b.y) / 2.0 }
}

impl Pose {
    /// Estimates the pose of one detection. Returns `None` for degenerate
    /// keypoints (ears or eyes and mouth on top of each other).
    pub fn from_detection(d: &Detection) -> Option<Pose> {
        let k = &d.keypoints;
        // Yaw along the ear axis.
        let (ex, ey) = sub(k[kp::LEFT_EAR], k[kp::RIGHT_EAR]);
        let ear_len = (ex * ex + ey * ey).sqrt();
        // Pitch along the eyes-to-mouth axis.
        let eyes = mid(k[kp::RIGHT_EYE], k[kp::LEFT_EYE]);
        let (vx, vy) = sub(k[kp::MOUTH], eyes);
        let face_len = (vx * vx + vy * vy).sqrt();
        if ear_len < 1e-3 || face_len < 1e-3 {
            return None;
        }
        let (nx, ny) = sub(k[kp::NOSE_TIP], mid(k[kp::RIGHT_EAR], k[kp::LEFT_EAR]));
        let offset = (nx * ex + ny * ey) / ear_len;
        let yaw = (offset / (ear_len / 2.0) / NOSE_DEPTH).atan();
        let (px, py) = sub(k[kp::NOSE_TIP], eyes);
        let t = (px * vx + py * vy) / (face_len * face_len);
        let pitch = ((t - FRONTAL_NOSE_T) / PITCH_GAIN).clamp(-1.0, 1.0).asin();
        Some(Pose { yaw_deg: yaw.to_degrees(), pitch_deg: pitch.to_degrees() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blazeface::BBox;

    fn face(nose_dx: f32, nose_t: f32) -> Detection {
        let p = |x: f32, y: f32| Point { x, y };
        // Eyes at y=100, mouth at y=140, ears at x=60 and x=140.
        let nose_y = 100.0 + nose_t * 40.0;
        Detection {
            score: 0.9,
            bbox: BBox { xmin: 60.0, ymin: 80.0, xmax: 140.0, ymax: 160.0 },
            keypoints: [
                p(85.0, 100.0),
                p(115.0, 100.0),
                p(100.0 + nose_dx, nose_y),
                p(100.0, 140.0),
                p(60.0, 105.0),
                p(140.0, 105.0),
            ],
        }
    }

    #[test]
    fn frontal_face_has_no_yaw_or_pitch() {
        let p = Pose::from_detection(&face(0.0, FRONTAL_NOSE_T)).unwrap();
        assert!(p.yaw_deg.abs() < 0.1 && p.pitch_deg.abs() < 0.1, "{p:?}");
    }

    #[test]
    fn nose_towards_an_ear_is_yaw_with_sign() {
        // Offset of half the half-ear-distance: atan(0.5) = 26.6 degrees.
        let right = Pose::from_detection(&face(20.0, FRONTAL_NOSE_T)).unwrap();
        assert!((right.yaw_deg - 26.57).abs() < 0.1, "{right:?}");
        let left = Pose::from_detection(&face(-20.0, FRONTAL_NOSE_T)).unwrap();
        assert!((left.yaw_deg + 26.57).abs() < 0.1, "{left:?}");
    }

    #[test]
    fn nose_towards_the_mouth_is_looking_down() {
        let down = Pose::from_detection(&face(0.0, FRONTAL_NOSE_T + PITCH_GAIN * 0.5)).unwrap();
        assert!((down.pitch_deg - 30.0).abs() < 0.1, "{down:?}");
    }

    #[test]
    fn degenerate_keypoints_give_no_pose() {
        let mut d = face(0.0, 0.5);
        d.keypoints[kp::LEFT_EAR] = d.keypoints[kp::RIGHT_EAR];
        assert_eq!(Pose::from_detection(&d), None);
    }
}
