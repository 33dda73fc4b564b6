//! The real BlazeFace model on real images from scikit-image's data set
//! (fetched by `scripts/fetch-assets`), compared with a reference computed
//! once by the model's own Python interpreter (`scripts/reference/`).

use std::path::{Path, PathBuf};

use models::blazeface::{self, Letterbox};
use models::{FaceDetector, RgbFrame, TfliteDetector};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn asset(name: &str) -> PathBuf {
    let p = root().join(name);
    assert!(p.exists(), "{} is missing: run scripts/fetch-assets", p.display());
    p
}

fn detector() -> TfliteDetector {
    TfliteDetector::load(&asset("models/face_detection_short_range.tflite"), 1).expect("model loads")
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
    let ch = info.color_type.samples();
    let rgb = match ch {
        3 => buf[..w * h * 3].to_vec(),
        4 => buf[..w * h * 4].chunks(4).flat_map(|p| [p[0], p[1], p[2]]).collect(),
        1 => buf[..w * h].iter().flat_map(|&g| [g, g, g]).collect(),
        n => panic!("{name}: {n} channels"),
    };
    (w, h, rgb)
}

fn reference() -> serde_json::Value {
    let text = std::fs::read_to_string(root().join("models/tests/fixtures/blazeface_reference.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

#[test]
fn astronaut_has_one_face_matching_the_python_reference() {
    let (w, h, rgb) = load_png("assets/astronaut.png");
    let frame = RgbFrame::packed(w, h, &rgb).unwrap();
    let faces = detector().detect(&frame).unwrap();
    assert_eq!(faces.len(), 1, "{faces:?}");
    let r = &reference()["astronaut"]["detections"][0];
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

#[test]
fn astronaut_input_tensor_and_raw_outputs_match_the_python_interpreter() {
    let (w, h, rgb) = load_png("assets/astronaut.png");
    let frame = RgbFrame::packed(w, h, &rgb).unwrap();
    let mut input = vec![0f32; 128 * 128 * 3];
    let lb = blazeface::preprocess(&frame, &mut input);
    assert_eq!(lb, Letterbox::for_frame(512, 512));
    let refr = reference();
    let t = &refr["astronaut"]["input_tensor"];
    let sum: f64 = input.iter().map(|&v| v as f64).sum();
    let sum_sq: f64 = input.iter().map(|&v| (v as f64) * (v as f64)).sum();
    assert!((sum - t["sum"].as_f64().unwrap()).abs() < 0.05, "input sum {sum}");
    assert!((sum_sq - t["sum_of_squares"].as_f64().unwrap()).abs() < 0.05, "input sum of squares {sum_sq}");

    let (reg, logits) = detector().run_raw(&input).unwrap();
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
fn coffee_and_chelsea_have_no_face() {
    let mut det = detector();
    for name in ["assets/coffee.png", "assets/chelsea.png"] {
        let (w, h, rgb) = load_png(name);
        let faces = det.detect(&RgbFrame::packed(w, h, &rgb).unwrap()).unwrap();
        assert!(faces.is_empty(), "{name}: {faces:?}");
    }
}

/// Reads scikit-image's `lfw_subset.npy`: 200 float64 25x25 grey crops in
/// [0, 1], the first 100 faces and the last 100 not.
fn load_lfw() -> Vec<Vec<u8>> {
    let bytes = std::fs::read(asset("assets/lfw_subset.npy")).unwrap();
    assert_eq!(&bytes[..6], b"\x93NUMPY", "not an .npy file");
    let header_len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    let header = std::str::from_utf8(&bytes[10..10 + header_len]).unwrap();
    assert!(header.contains("'<f8'") && header.contains("(200, 25, 25)"), "unexpected header {header}");
    let data = &bytes[10 + header_len..];
    (0..200)
        .map(|i| {
            (0..625)
                .map(|p| {
                    let o = (i * 625 + p) * 8;
                    let v = f64::from_le_bytes(data[o..o + 8].try_into().unwrap());
                    (v * 255.0).round().clamp(0.0, 255.0) as u8
                })
                .collect()
        })
        .collect()
}

#[test]
fn lfw_subset_finds_faces_and_rejects_non_faces() {
    // Each 25x25 crop is centred on a black 50x50 frame, so the detector sees
    // it at 64x64 in its 128x128 input: the size BlazeFace short-range is
    // made for (faces within about 2 m of the camera). See docs/SCORING.md.
    let mut det = detector();
    let crops = load_lfw();
    let mut found = [0usize; 2];
    for (i, crop) in crops.iter().enumerate() {
        let mut rgb = vec![0u8; 50 * 50 * 3];
        for y in 0..25 {
            for x in 0..25 {
                let v = crop[y * 25 + x];
                let o = ((y + 12) * 50 + x + 12) * 3;
                rgb[o..o + 3].copy_from_slice(&[v, v, v]);
            }
        }
        let faces = det.detect(&RgbFrame::packed(50, 50, &rgb).unwrap()).unwrap();
        if !faces.is_empty() {
            found[i / 100] += 1;
        }
    }
    assert!(found[0] >= 95, "found {} of 100 faces", found[0]);
    assert!(found[1] <= 5, "found a face in {} of 100 non-faces", found[1]);
}

#[test]
fn a_file_that_is_not_a_model_is_named_in_the_error() {
    let dir = std::env::temp_dir().join(format!("invigil-notamodel-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join("junk.tflite");
    std::fs::write(&p, b"this is not a flatbuffer at all, just some bytes").unwrap();
    let err = TfliteDetector::load(&p, 1).err().expect("junk is refused").to_string();
    assert!(err.contains("junk.tflite") && err.contains("not a TensorFlow Lite"), "{err}");
    let err = TfliteDetector::load(&dir.join("missing.tflite"), 1).err().unwrap().to_string();
    assert!(err.contains("missing.tflite") && err.contains("cannot read"), "{err}");
}

#[test]
fn a_model_with_other_shapes_names_the_expected_shape() {
    // The face landmark model is a real TFLite model with a 192x192 input.
    let err = TfliteDetector::load(&asset("models/face_landmark.tflite"), 1).err().expect("refused").to_string();
    assert!(err.contains("face_landmark.tflite") && err.contains("[1, 128, 128, 3]"), "{err}");
}
