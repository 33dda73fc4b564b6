//! `/analyze`'s scaled JPEG decoding against a full decode, with the real
//! model on real frames: the same faces, in the JPEG's own pixels.

mod support;

use agent::frame_decode::JpegScaler;
use models::{BBox, FaceDetector, RgbFrame};

/// 640x480 JPEGs (quality about a browser's 0.8) of carphone, every 8th frame.
fn carphone_640x480() -> Vec<Vec<u8>> {
    let dir = tempfile::tempdir().unwrap();
    let st = std::process::Command::new("ffmpeg")
        .args(["-loglevel", "error", "-i"])
        .arg(support::root().join("assets/carphone_pristine.mp4"))
        .args(["-vf", "select=not(mod(n\\,8)),scale=640:480", "-fps_mode", "passthrough", "-q:v", "4"])
        .arg(dir.path().join("%03d.jpg"))
        .status()
        .expect("ffmpeg");
    assert!(st.success());
    (1..=15).map(|i| std::fs::read(dir.path().join(format!("{i:03}.jpg"))).unwrap()).collect()
}

fn detector() -> models::TfliteDetector {
    models::TfliteDetector::load(&support::root().join("models/face_detection_short_range.tflite"), 1).unwrap()
}

fn scaled(b: &BBox, k: f32) -> BBox {
    BBox { xmin: b.xmin * k, ymin: b.ymin * k, xmax: b.xmax * k, ymax: b.ymax * k }
}

#[test]
fn a_quarter_scale_decode_finds_the_same_face_as_a_full_decode() {
    let mut det = detector();
    let mut scaler = JpegScaler::new().unwrap();
    let (mut min_iou, mut max_dscore) = (1f32, 0f32);
    for (i, jpeg) in carphone_640x480().iter().enumerate() {
        let (w, h, px) = agent::server::decode_jpeg(jpeg).unwrap();
        let full = det.detect(&RgbFrame::packed(w, h, &px).unwrap()).unwrap();
        let s = scaler.decode(jpeg).unwrap();
        assert_eq!((s.frame.width, s.frame.height, s.scale), (160, 120, 4));
        let quarter = det.detect(&s.frame).unwrap();
        assert_eq!(full.len(), 1, "frame {i}: one face in a full decode: {full:?}");
        assert_eq!(quarter.len(), 1, "frame {i}: one face at 1/4: {quarter:?}");
        let b = scaled(&quarter[0].bbox, s.scale as f32);
        min_iou = min_iou.min(b.iou(&full[0].bbox));
        max_dscore = max_dscore.max((quarter[0].score - full[0].score).abs());
    }
    eprintln!("15 carphone frames at 640x480: smallest IoU {min_iou:.3}, largest score difference {max_dscore:.3}");
    assert!(min_iou >= 0.85, "boxes differ: IoU {min_iou}");
    assert!(max_dscore <= 0.05, "scores differ by {max_dscore}");
}
