//! The real BlazeFace model on real images from scikit-image's data set
//! (fetched by `scripts/fetch-assets`), compared with a reference computed
//! once by the model's own Python interpreter (`scripts/reference/`).

mod common;

use common::{asset, check_astronaut_faces, check_astronaut_raw, load_png, model, reference};
use models::blazeface::{self, Letterbox};
use models::{FaceDetector, RgbFrame, TfliteDetector};

fn detector() -> TfliteDetector {
    TfliteDetector::load(&model(), 1).expect("model loads")
}

#[test]
fn astronaut_has_one_face_matching_the_python_reference() {
    let (w, h, rgb) = load_png("assets/astronaut.png");
    let frame = RgbFrame::packed(w, h, &rgb).unwrap();
    let faces = detector().detect(&frame).unwrap();
    check_astronaut_faces(&faces);
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
    check_astronaut_raw(&reg, &logits);
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
