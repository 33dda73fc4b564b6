//! The LiteRT backend (feature `litert`) against the TFLite backend and the
//! Python reference, on real images and real video frames.
//!
//! Run: `export LITERT_LIB_DIR=$(scripts/fetch-litert); cargo test -p models --features litert`.
#![cfg(feature = "litert")]

use std::path::{Path, PathBuf};
use std::process::Command;

use models::blazeface;
use models::{Detection, FaceDetector, LiteRtDetector, RgbFrame, TfliteDetector};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn asset(name: &str) -> PathBuf {
    let p = root().join(name);
    assert!(p.exists(), "{} is missing: run scripts/fetch-assets", p.display());
    p
}

fn model() -> PathBuf {
    asset("models/face_detection_short_range.tflite")
}

/// Decodes a PNG to packed RGB8 (alpha dropped).
fn load_png(name: &str) -> (usize, usize, Vec<u8>) {
    let file = std::fs::File::open(asset(name)).unwrap();
    let mut dec = png::Decoder::new(std::io::BufReader::new(file));
    dec.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
    let mut reader = dec.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    let (w, h) = (info.width as usize, info.height as usize);
    let rgb = match info.color_type.samples() {
        3 => buf[..w * h * 3].to_vec(),
        4 => buf[..w * h * 4].chunks(4).flat_map(|p| [p[0], p[1], p[2]]).collect(),
        n => panic!("{name}: {n} channels"),
    };
    (w, h, rgb)
}

/// `count` frames of carphone_pristine.mp4 (176x144, one face throughout),
/// every 4th, decoded to packed RGB by ffmpeg.
fn carphone_frames(count: usize) -> (usize, usize, Vec<Vec<u8>>) {
    let (w, h) = (176, 144);
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(asset("assets/carphone_pristine.mp4"))
        .args(["-vf", "select=not(mod(n\\,4))", "-fps_mode", "passthrough", "-frames:v"])
        .arg(count.to_string())
        .args(["-f", "rawvideo", "-pix_fmt", "rgb24", "-"])
        .output()
        .expect("ffmpeg runs (apt-get install ffmpeg)");
    assert!(out.status.success(), "ffmpeg: {}", String::from_utf8_lossy(&out.stderr));
    let frames: Vec<Vec<u8>> = out.stdout.chunks_exact(w * h * 3).map(<[u8]>::to_vec).collect();
    assert_eq!(frames.len(), count, "ffmpeg gave {} bytes", out.stdout.len());
    (w, h, frames)
}

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
    assert_eq!(faces.len(), 1, "{faces:?}");
    let text = std::fs::read_to_string(root().join("models/tests/fixtures/blazeface_reference.json")).unwrap();
    let refr: serde_json::Value = serde_json::from_str(&text).unwrap();
    let r = &refr["astronaut"]["detections"][0];
    let f = |k: &str| r[k].as_f64().unwrap() as f32;
    let bbox = models::BBox { xmin: f("xmin"), ymin: f("ymin"), xmax: f("xmax"), ymax: f("ymax") };
    let iou = faces[0].bbox.iou(&bbox);
    assert!(iou >= 0.8, "IoU {iou} of {:?} with reference {bbox:?}", faces[0].bbox);
    assert!((faces[0].score - f("score")).abs() < 0.02, "score {} vs {}", faces[0].score, f("score"));
    for (k, p) in faces[0].keypoints.iter().enumerate() {
        let (x, y) = (r["keypoints"][k][0].as_f64().unwrap() as f32, r["keypoints"][k][1].as_f64().unwrap() as f32);
        assert!((p.x - x).abs() < 3.0 && (p.y - y).abs() < 3.0, "keypoint {k}: {p:?} vs ({x}, {y})");
    }

    // Raw outputs of the strongest anchors, to the Python interpreter's.
    let mut input = vec![0f32; 128 * 128 * 3];
    blazeface::preprocess(&frame, &mut input);
    let (reg, logits) = lite.run_raw(&input).unwrap();
    for a in refr["astronaut"]["top_raw_anchors"].as_array().unwrap() {
        let i = a["anchor"].as_u64().unwrap() as usize;
        let want = a["raw_score"].as_f64().unwrap() as f32;
        assert!((logits[i] - want).abs() < 1e-3, "anchor {i} logit {} vs {want}", logits[i]);
        for (j, v) in a["regressors"].as_array().unwrap().iter().enumerate() {
            let want = v.as_f64().unwrap() as f32;
            let got = reg[i * 16 + j];
            assert!((got - want).abs() < 1e-3 * want.abs().max(1.0), "anchor {i} regressor {j}: {got} vs {want}");
        }
    }
}

#[test]
fn carphone_frames_give_the_same_detections_on_both_backends() {
    let (w, h, frames) = carphone_frames(30);
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
    assert!(faces >= 30, "only {faces} faces in 30 frames");
    eprintln!("carphone, 30 frames: largest differences: score {ds:e}, {dp:e} px");
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
