//! What the model tests share: the assets, a PNG decoder, the Python
//! reference and the checks against it (so both backends meet the same ones).
#![allow(dead_code)] // each test file uses part of it

use std::path::{Path, PathBuf};
use std::process::Command;

use models::Detection;

pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

pub fn asset(name: &str) -> PathBuf {
    let p = root().join(name);
    assert!(p.exists(), "{} is missing: run scripts/fetch-assets", p.display());
    p
}

pub fn model() -> PathBuf {
    asset("models/face_detection_short_range.tflite")
}

/// Decodes a PNG to packed RGB8 (alpha dropped, grey expanded).
pub fn load_png(name: &str) -> (usize, usize, Vec<u8>) {
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
        1 => buf[..w * h].iter().flat_map(|&g| [g, g, g]).collect(),
        n => panic!("{name}: {n} channels"),
    };
    (w, h, rgb)
}

/// `count` frames of carphone_pristine.mp4 (176x144, one face throughout),
/// every 4th, decoded to packed RGB by ffmpeg.
pub fn carphone_frames(count: usize) -> (usize, usize, Vec<Vec<u8>>) {
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

/// The reference computed once by the model's Python interpreter
/// (`scripts/reference/blazeface_reference.py`).
pub fn reference() -> serde_json::Value {
    let text = std::fs::read_to_string(root().join("models/tests/fixtures/blazeface_reference.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// astronaut.png's detections against the reference: one face, box within
/// IoU 0.8, score within 0.02, keypoints within 3 px.
pub fn check_astronaut_faces(faces: &[Detection]) {
    assert_eq!(faces.len(), 1, "{faces:?}");
    let refr = reference();
    let r = &refr["astronaut"]["detections"][0];
    let f = |k: &str| r[k].as_f64().unwrap() as f32;
    let want = models::BBox { xmin: f("xmin"), ymin: f("ymin"), xmax: f("xmax"), ymax: f("ymax") };
    let iou = faces[0].bbox.iou(&want);
    assert!(iou >= 0.8, "IoU {iou} of {:?} with reference {want:?}", faces[0].bbox);
    assert!((faces[0].score - f("score")).abs() < 0.02, "score {} vs {}", faces[0].score, f("score"));
    for (k, p) in faces[0].keypoints.iter().enumerate() {
        let (x, y) = (r["keypoints"][k][0].as_f64().unwrap() as f32, r["keypoints"][k][1].as_f64().unwrap() as f32);
        assert!((p.x - x).abs() < 3.0 && (p.y - y).abs() < 3.0, "keypoint {k}: {p:?} vs ({x}, {y})");
    }
}

/// astronaut.png's raw outputs (logits and regressors of the strongest
/// anchors) against the reference, to 1e-3.
pub fn check_astronaut_raw(reg: &[f32], logits: &[f32]) {
    for a in reference()["astronaut"]["top_raw_anchors"].as_array().unwrap() {
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
