//! The LiteRT backend against the TFLite backend and the Python reference,
//! on real images and real video frames, and the backend choice.
//!
//! Needs `libLiteRt.so` where `LiteRt::load` looks (`scripts/setup` runs
//! `scripts/fetch-litert`): `cargo test -p models --test litert`.

mod common;

use common::{asset, carphone_frames, check_astronaut_faces, check_astronaut_raw, load_png, model};
use models::blazeface;
use models::{Detection, FaceDetector, LiteRtDetector, RgbFrame, TfliteDetector};

/// Same faces in the same order: scores within 1e-3, box corners and
/// keypoints within 1e-3 of the frame's larger side (0.5 px on a 512-px image).
/// Returns the largest differences seen (score, pixels).
fn assert_same(what: &str, side: usize, a: &[Detection], b: &[Detection]) -> (f32, f32) {
    assert_eq!(a.len(), b.len(), "{what}: tflite found {a:?}, litert {b:?}");
    let tol = 1e-3 * side as f32;
    let (mut ds, mut dp) = (0f32, 0f32);
    for (x, y) in a.iter().zip(b) {
        ds = ds.max((x.score - y.score).abs());
        let coords = |d: &Detection| {
            let mut v = vec![d.bbox.xmin, d.bbox.ymin, d.bbox.xmax, d.bbox.ymax];
            v.extend(d.keypoints.iter().flat_map(|p| [p.x, p.y]));
            v
        };
        for (p, q) in coords(x).into_iter().zip(coords(y)) {
            dp = dp.max((p - q).abs());
        }
        assert!(ds <= 1e-3, "{what}: scores {} vs {}", x.score, y.score);
        assert!(dp <= tol, "{what}: a coordinate differs by {dp} px (tolerance {tol}): {x:?} vs {y:?}");
    }
    (ds, dp)
}

#[test]
fn astronaut_matches_tflite_and_the_python_reference() {
    let (w, h, rgb) = load_png("assets/astronaut.png");
    let frame = RgbFrame::packed(w, h, &rgb).unwrap();
    let mut lite = LiteRtDetector::load(&model(), 1).expect("LiteRT loads the model");
    assert_eq!(lite.backend(), "litert");
    let faces = lite.detect(&frame).unwrap();
    let want = TfliteDetector::load(&model(), 1).unwrap().detect(&frame).unwrap();
    assert_same("astronaut", w.max(h), &want, &faces);

    // The same checks as the TFLite backend's test (tests/real_images.rs).
    check_astronaut_faces(&faces);

    // Raw outputs of the strongest anchors, to the Python interpreter's.
    let mut input = vec![0f32; 128 * 128 * 3];
    blazeface::preprocess(&frame, &mut input);
    let (reg, logits) = lite.run_raw(&input).unwrap();
    check_astronaut_raw(&reg, &logits);
}

#[test]
fn carphone_frames_give_the_same_detections_on_both_backends() {
    // 30 frames; fewer where emulation makes each slow (scripts/cross-aarch64
    // sets INVIGIL_TEST_FRAMES: under qemu a frame takes about a second).
    let n = std::env::var("INVIGIL_TEST_FRAMES").ok().and_then(|v| v.parse().ok()).unwrap_or(30usize).clamp(1, 30);
    let (w, h, frames) = carphone_frames(n);
    let mut tfl = TfliteDetector::load(&model(), 1).unwrap();
    let mut lite = LiteRtDetector::load(&model(), 2).unwrap();
    let (mut ds, mut dp, mut faces) = (0f32, 0f32, 0);
    for (i, rgb) in frames.iter().enumerate() {
        let frame = RgbFrame::packed(w, h, rgb).unwrap();
        let a = tfl.detect(&frame).unwrap();
        let b = lite.detect(&frame).unwrap();
        let (s, p) = assert_same(&format!("carphone frame {}", i * 4), w.max(h), &a, &b);
        (ds, dp, faces) = (ds.max(s), dp.max(p), faces + b.len());
    }
    // One person in every frame: both backends must actually find him.
    assert!(faces >= n, "only {faces} faces in {n} frames");
    eprintln!("carphone, {n} frames: largest differences: score {ds:e}, {dp:e} px");
}

#[test]
fn one_and_two_threads_give_the_same_outputs() {
    let (w, h, rgb) = load_png("assets/astronaut.png");
    let frame = RgbFrame::packed(w, h, &rgb).unwrap();
    let mut input = vec![0f32; 128 * 128 * 3];
    blazeface::preprocess(&frame, &mut input);
    let one = LiteRtDetector::load(&model(), 1).unwrap().run_raw(&input).unwrap();
    let two = LiteRtDetector::load(&model(), 2).unwrap().run_raw(&input).unwrap();
    let max_diff =
        one.0.iter().zip(&two.0).chain(one.1.iter().zip(&two.1)).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
    assert!(max_diff < 1e-4, "raw outputs differ by {max_diff}");
}

#[test]
fn a_file_that_is_not_a_model_is_named_in_the_error() {
    let dir = std::env::temp_dir().join(format!("invigil-litert-notamodel-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join("junk.tflite");
    std::fs::write(&p, b"this is not a flatbuffer at all, just some bytes").unwrap();
    let err = LiteRtDetector::load(&p, 1).err().expect("junk is refused").to_string();
    assert!(err.contains("junk.tflite") && err.contains("not a TensorFlow Lite"), "{err}");
    let err = LiteRtDetector::load(&dir.join("missing.tflite"), 1).err().unwrap().to_string();
    assert!(err.contains("missing.tflite") && err.contains("cannot read"), "{err}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_model_with_other_shapes_names_the_expected_shape() {
    let err = LiteRtDetector::load(&asset("models/face_landmark.tflite"), 1).err().expect("refused").to_string();
    assert!(err.contains("face_landmark.tflite") && err.contains("[1, 128, 128, 3]"), "{err}");
    assert!(err.contains("[1, 192, 192, 3]"), "the error shows the shape found: {err}");
}

#[test]
fn auto_takes_litert_when_its_library_loads() {
    let (mut det, choice) = models::load_face_detector(models::Backend::Auto, &model(), 1, None).unwrap();
    assert_eq!((det.backend(), choice.backend), ("litert", "litert"));
    assert!(choice.library.as_ref().is_some_and(|p| p.ends_with("libLiteRt.so")), "{choice:?}");
    let (w, h, rgb) = load_png("assets/astronaut.png");
    assert_eq!(det.detect(&RgbFrame::packed(w, h, &rgb).unwrap()).unwrap().len(), 1);
}

#[test]
fn auto_without_the_library_falls_back_to_tflite_and_says_why() {
    let missing = std::path::Path::new("/nonexistent/libLiteRt.so");
    let (det, choice) = models::load_face_detector(models::Backend::Auto, &model(), 1, Some(missing)).unwrap();
    assert_eq!(det.backend(), "tflite");
    let said = choice.to_string();
    assert!(said.starts_with("tflite") && said.contains("/nonexistent/libLiteRt.so"), "{said}");
}

#[test]
fn litert_asked_for_without_the_library_is_an_error_naming_it() {
    let missing = std::path::Path::new("/nonexistent/libLiteRt.so");
    let err = models::load_face_detector(models::Backend::LiteRt, &model(), 1, Some(missing)).err().unwrap();
    assert!(err.to_string().contains("/nonexistent/libLiteRt.so"), "{err}");
}

#[test]
fn a_bad_model_file_is_an_error_on_auto_too_not_a_fallback() {
    let err = models::load_face_detector(models::Backend::Auto, &asset("models/face_landmark.tflite"), 1, None)
        .err()
        .expect("refused");
    assert!(err.to_string().contains("[1, 128, 128, 3]"), "{err}");
}
