//! The second-stage models (face landmarks, iris, palm, full-range faces)
//! on real images, against the reference their own Python interpreter made
//! (`scripts/reference/signals_reference.py`,
//! `models/tests/fixtures/signals_reference.json`): the same crops (input
//! sums), raw outputs within 1e-3 (relative above 1), and the decoded
//! signals. On both backends where they load.

mod common;

use common::{asset, carphone_frames, load_png, root};
use models::facemesh::{self, EYE_CROP, EYES, FACE_CROP, FaceMesh};
use models::net::{FACE_LANDMARK_SPEC, FULL_RANGE_SPEC, IRIS_SPEC, PALM_SPEC};
use models::roi::{self, Border, CropSpec, Range, Region};
use models::{Backend, FaceDetector, FrameAnalyzer, ModelSpec, Net, RgbFrame, SignalConfig, SignalModels, ssd};
use serde_json::Value;

fn reference() -> Value {
    let text = std::fs::read_to_string(root().join("models/tests/fixtures/signals_reference.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// The two reference images as packed RGB.
fn image(name: &str) -> (usize, usize, Vec<u8>) {
    match name {
        "astronaut" => load_png("assets/astronaut.png"),
        "carphone_60" => {
            let (w, h, frames) = carphone_frames(16);
            (w, h, frames[15].clone())
        }
        other => panic!("no image {other}"),
    }
}

/// The reference images to check: both, or under emulation
/// (`scripts/cross-aarch64` sets INVIGIL_TEST_FRAMES, where a model run
/// takes seconds) astronaut only, said on stderr.
fn images() -> &'static [&'static str] {
    if std::env::var_os("INVIGIL_TEST_FRAMES").is_some() {
        eprintln!("INVIGIL_TEST_FRAMES set (emulation): carphone_60 skipped, astronaut only");
        &["astronaut"]
    } else {
        &["astronaut", "carphone_60"]
    }
}

fn region(v: &Value) -> Region {
    let f = |i: usize| v[i].as_f64().unwrap() as f32;
    Region { cx: f(0), cy: f(1), side: f(2), angle: f(3) }
}

fn backends() -> Vec<Backend> {
    let mut b = vec![Backend::Tflite];
    if models::LiteRt::load(None).is_ok() {
        b.push(Backend::LiteRt);
    } else {
        eprintln!("LiteRT library not found: the LiteRT half of this test is skipped (run scripts/fetch-litert)");
    }
    b
}

fn net(backend: Backend, file: &str, spec: &ModelSpec) -> Net {
    Net::load(backend, None, &asset(&format!("models/{file}")), 1, spec)
        .unwrap_or_else(|e| panic!("{file} on {backend:?}: {e}"))
}

fn check_input(t: &[f32], want: &Value, what: &str) {
    let sum: f64 = t.iter().map(|&v| v as f64).sum();
    let sq: f64 = t.iter().map(|&v| (v as f64) * (v as f64)).sum();
    let (ws, wq) = (want["sum"].as_f64().unwrap(), want["sum_of_squares"].as_f64().unwrap());
    // Sums of 12k-110k values: f32 crops against float64 numpy.
    assert!((sum - ws).abs() < 0.05 + ws.abs() * 1e-5, "{what}: input sum {sum} vs {ws}");
    assert!((sq - wq).abs() < 0.05 + wq.abs() * 1e-5, "{what}: input sum of squares {sq} vs {wq}");
}

fn close(got: f32, want: f64, what: &str) {
    let want = want as f32;
    assert!((got - want).abs() <= 1e-3 * want.abs().max(1.0), "{what}: {got} vs {want}");
}

fn crop(frame: &RgbFrame<'_>, r: &Region, spec: &CropSpec) -> Vec<f32> {
    let mut t = vec![0.0; spec.size * spec.size * 3];
    roi::crop(frame, r, spec, &mut t);
    t
}

#[test]
fn face_landmarks_and_iris_match_the_python_interpreter() {
    let refr = reference();
    for backend in backends() {
        let mut lm = net(backend, "face_landmark.tflite", &FACE_LANDMARK_SPEC);
        let mut iris = net(backend, "iris_landmark.tflite", &IRIS_SPEC);
        for &name in images() {
            let r = &refr["images"][name];
            let (w, h, rgb) = image(name);
            let frame = RgbFrame::packed(w, h, &rgb).unwrap();
            let reg = region(&r["landmarks"]["region"]);
            let t = crop(&frame, &reg, &FACE_CROP);
            check_input(&t, &r["landmarks"]["input"], &format!("{name} landmarks"));
            let out = lm.run(|i| i.copy_from_slice(&t)).unwrap();
            for (i, want) in r["landmarks"]["raw"].as_array().unwrap().iter().enumerate() {
                close(out[0][i], want.as_f64().unwrap(), &format!("{name} {backend:?} landmark value {i}"));
            }
            close(out[1][0], r["landmarks"]["face_flag_logit"].as_f64().unwrap(), "face flag");
            let mesh = FaceMesh::decode(&out[0], out[1][0], &reg);
            let want = r["landmarks"]["mouth_opening"].as_f64().unwrap() as f32;
            assert!((mesh.mouth_opening() - want).abs() < 1e-3, "{name}: mouth {}", mesh.mouth_opening());
            let want = r["landmarks"]["yaw_deg"].as_f64().unwrap() as f32;
            assert!((mesh.yaw_deg() - want).abs() < 0.1, "{name}: yaw {} vs {want}", mesh.yaw_deg());

            let mut centres = [models::Point::default(); 2];
            for (e, want) in r["iris"].as_array().unwrap().iter().enumerate() {
                let reg = mesh.eye_region(e);
                let wr = region(&want["region"]);
                assert!((reg.cx - wr.cx).abs() < 0.05 && (reg.side - wr.side).abs() < 0.05, "{name} eye {e} region");
                let spec = CropSpec { mirror: EYES[e].2, ..EYE_CROP };
                let t = crop(&frame, &wr, &spec);
                check_input(&t, &want["input"], &format!("{name} eye {e}"));
                let out = iris.run(|i| i.copy_from_slice(&t)).unwrap();
                for (i, v) in want["iris"].as_array().unwrap().iter().enumerate() {
                    close(out[1][i], v.as_f64().unwrap(), &format!("{name} {backend:?} eye {e} iris {i}"));
                }
                for (i, v) in want["contour"].as_array().unwrap().iter().enumerate() {
                    close(out[0][i], v.as_f64().unwrap(), &format!("{name} {backend:?} eye {e} contour {i}"));
                }
                centres[e] = facemesh::iris_centre(&out[1], &wr, spec.mirror);
            }
            let g = mesh.gaze(centres);
            let wg = &r["gaze"];
            assert!((g.horizontal - wg["horizontal"].as_f64().unwrap() as f32).abs() < 2e-3, "{name}: {g:?}");
            assert!((g.vertical - wg["vertical"].as_f64().unwrap() as f32).abs() < 2e-3, "{name}: {g:?}");
        }
    }
}

/// Raw outputs of the strongest anchors against the reference.
fn check_ssd(out: &[Vec<f32>], want: &Value, coords: usize, what: &str) {
    for a in want["top_raw_anchors"].as_array().unwrap() {
        let i = a["anchor"].as_u64().unwrap() as usize;
        close(out[1][i], a["raw_score"].as_f64().unwrap(), &format!("{what} anchor {i} logit"));
        for (j, v) in a["regressors"].as_array().unwrap().iter().enumerate() {
            close(out[0][i * coords + j], v.as_f64().unwrap(), &format!("{what} anchor {i} regressor {j}"));
        }
    }
}

#[test]
fn palm_and_full_range_detectors_match_the_python_interpreter() {
    let refr = reference();
    for backend in backends() {
        // TensorFlow Lite 1.15 cannot build the palm model (newer op
        // versions): the agent turns hand_at_face off there and says so.
        let palm_file = asset("models/palm_detection_lite.tflite");
        let mut palm = match Net::load(backend, None, &palm_file, 1, &PALM_SPEC) {
            Ok(n) => Some(n),
            Err(models::DetectorError::Runtime { .. }) if backend == Backend::Tflite => {
                eprintln!("palm detector: not on TensorFlow Lite 1.15 (checked on LiteRT only)");
                None
            }
            Err(e) => panic!("palm on {backend:?}: {e}"),
        };
        // TensorFlow Lite 1.15 builds the full-range model but computes it
        // wrong (a logit of 1.31 where the interpreter says 2.70 on
        // astronaut.png): the agent keeps it to LiteRT.
        if backend == Backend::Tflite {
            let mut full = net(backend, "face_detection_full_range.tflite", &FULL_RANGE_SPEC);
            let (w, h, rgb) = image("astronaut");
            let frame = RgbFrame::packed(w, h, &rgb).unwrap();
            let t = crop(
                &frame,
                &Region::whole(w, h),
                &CropSpec { size: 192, border: Border::Zero, range: Range::Signed, mirror: false },
            );
            let out = full.run(|i| i.copy_from_slice(&t)).unwrap();
            let want = refr["images"]["astronaut"]["full_range"]["top_raw_anchors"][0]["raw_score"].as_f64().unwrap();
            assert!(
                (out[1][549] as f64 - want).abs() > 0.5,
                "TensorFlow Lite 1.15 now agrees: allow it in SignalModels::load"
            );
        }
        let mut full =
            (backend == Backend::LiteRt).then(|| net(backend, "face_detection_full_range.tflite", &FULL_RANGE_SPEC));
        for &name in images() {
            let r = &refr["images"][name];
            let (w, h, rgb) = image(name);
            let frame = RgbFrame::packed(w, h, &rgb).unwrap();
            let reg = region(&r["palm"]["region"]);
            let spec = CropSpec { size: 192, border: Border::Zero, range: Range::Unit, mirror: false };
            let t = crop(&frame, &reg, &spec);
            check_input(&t, &r["palm"]["input"], &format!("{name} palm"));
            if let Some(palm) = palm.as_mut() {
                let out = palm.run(|i| i.copy_from_slice(&t)).unwrap();
                check_ssd(out, &r["palm"], 18, &format!("{name} {backend:?} palm"));
                let found = ssd::decode(&ssd::PALM, &out[0], &out[1], &ssd::PALM.anchors(), &reg);
                // None of these images has a hand.
                assert!(found.is_empty(), "{name}: {found:?}");
            }

            let whole = Region::whole(w, h);
            let spec = CropSpec { range: Range::Signed, ..spec };
            let t = crop(&frame, &whole, &spec);
            check_input(&t, &r["full_range"]["input"], &format!("{name} full range"));
            let Some(full) = full.as_mut() else { continue };
            let out = full.run(|i| i.copy_from_slice(&t)).unwrap();
            check_ssd(out, &r["full_range"], 16, &format!("{name} {backend:?} full range"));
            let faces = ssd::decode(&ssd::FULL_RANGE, &out[0], &out[1], &ssd::FULL_RANGE.anchors(), &whole);
            let want = r["full_range"]["detections"].as_array().unwrap();
            assert_eq!(faces.len(), want.len(), "{name}: {faces:?}");
            for (f, d) in faces.iter().zip(want) {
                let b: Vec<f32> = d["box"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32).collect();
                let got = [f.bbox.xmin, f.bbox.ymin, f.bbox.xmax, f.bbox.ymax];
                assert!(got.iter().zip(&b).all(|(g, w)| (g - w).abs() < 0.1), "{name}: {got:?} vs {b:?}");
            }
        }
    }
}

#[test]
fn the_frame_analyzer_reads_an_open_mouth_a_frontal_head_and_a_profile() {
    let dir = root().join("models");
    let tflite = SignalModels::load(&SignalConfig::default(), &dir, Backend::Tflite, None, 1).unwrap();
    assert!(tflite.palm.is_none() && tflite.full_range.is_none(), "TensorFlow Lite 1.15 runs neither");
    assert!(tflite.unavailable[0].contains("hand_at_face is off"), "{:?}", tflite.unavailable);
    assert!(tflite.unavailable[1].contains("second_person is off"), "{:?}", tflite.unavailable);
    let backend = *backends().last().unwrap();
    let models = SignalModels::load(&SignalConfig::default(), &dir, backend, None, 1).unwrap();
    let mut fa = FrameAnalyzer::new(SignalConfig::default(), models);
    let mut bf = models::TfliteDetector::load(&asset("models/face_detection_short_range.tflite"), 1).unwrap();
    let mut at = |name: &str, rgb: &[u8], w: usize, h: usize, t: u64| {
        let frame = RgbFrame::packed(w, h, rgb).unwrap();
        let faces = bf.detect(&frame).unwrap();
        let s = fa.analyse(&frame, &faces, t).unwrap();
        eprintln!("{name}: {s:?}");
        s
    };
    let (w, h, rgb) = image("carphone_60");
    let open = at("carphone 60", &rgb, w, h, 0);
    assert!(open.mouth_opening.unwrap() > 0.15, "{open:?}");
    let (w, h, rgb) = image("astronaut");
    // A few frames, so that every model has had its turn.
    let frontal = (0..6).map(|i| at("astronaut", &rgb, w, h, 1000 + i * 33)).last().unwrap();
    assert!(frontal.yaw_deg.unwrap().abs() < 10.0 && frontal.mouth_opening.unwrap() < 0.1, "{frontal:?}");
    if backend == Backend::LiteRt {
        assert_eq!(frontal.full_range_faces, Some(1));
    }
    assert!(frontal.talking_since.is_none() && !frontal.hand_at_face && !frontal.gaze_away);
    let (w, h, rgb) = load_png("assets/camera.png");
    let profile = at("camera", &rgb, w, h, 2000);
    assert!(profile.yaw_deg.unwrap() < -30.0, "a man in profile: {profile:?}");
}

/// Pastes `src` scaled to `w` x `h` at (`x`, `y`) on a packed RGB canvas,
/// bilinear (through the crop the models use).
fn paste(canvas: &mut [u8], cw: usize, src: (usize, usize, &[u8]), x: usize, y: usize, w: usize, h: usize) {
    let frame = RgbFrame::packed(src.0, src.1, src.2).unwrap();
    let side = w.max(h);
    let spec = CropSpec { size: side, border: Border::Zero, range: Range::Unit, mirror: false };
    // A square region of the source as wide as its longer side, centred.
    let s = src.0.max(src.1) as f32;
    let region = Region { cx: src.0 as f32 / 2.0, cy: src.1 as f32 / 2.0, side: s, angle: 0.0 };
    let t = crop(&frame, &region, &spec);
    let (ox, oy) = ((side - w) / 2, (side - h) / 2);
    for r in 0..h {
        for c in 0..w {
            let i = ((r + oy) * side + c + ox) * 3;
            let o = ((y + r) * cw + x + c) * 3;
            for k in 0..3 {
                canvas[o + k] = (t[i + k] * 255.0).round() as u8;
            }
        }
    }
}

#[test]
fn a_helper_standing_behind_the_student_counts_as_a_second_person() {
    if !backends().contains(&Backend::LiteRt) {
        eprintln!("SKIPPED: the full-range detector runs on LiteRT only (run scripts/fetch-litert)");
        return;
    }
    // 320x240, as the agent analyses: the student (astronaut) close to the
    // camera, a helper (Grace Hopper, 80 px tall) further back.
    let (cw, ch) = (320, 240);
    let mut canvas = vec![128u8; cw * ch * 3];
    let (aw, ah, a) = load_png("assets/astronaut.png");
    paste(&mut canvas, cw, (aw, ah, &a), 0, 40, 200, 200);
    let g = {
        let out = std::process::Command::new("ffmpeg")
            .args(["-v", "error", "-i"])
            .arg(asset("assets/grace_hopper.jpg"))
            .args(["-f", "rawvideo", "-pix_fmt", "rgb24", "-"])
            .output()
            .expect("ffmpeg runs");
        out.stdout
    };
    assert_eq!(g.len(), 512 * 600 * 3);
    paste(&mut canvas, cw, (512, 600, &g), 230, 10, 68, 80);
    let frame = RgbFrame::packed(cw, ch, &canvas).unwrap();
    let mut bf = models::TfliteDetector::load(&asset("models/face_detection_short_range.tflite"), 1).unwrap();
    let faces = bf.detect(&frame).unwrap();
    assert_eq!(faces.len(), 1, "BlazeFace short-range sees the student only: {faces:?}");
    let dir = root().join("models");
    let cfg = SignalConfig::default();
    let models = SignalModels::load(&cfg, &dir, Backend::LiteRt, None, 1).unwrap();
    let mut fa = FrameAnalyzer::new(cfg, models);
    // A fifth of a second at 30 FPS: the full-range detector takes the
    // first frame no other model needs.
    let s = (0..6).map(|i| fa.analyse(&frame, &faces, i * 33).unwrap()).last().unwrap();
    assert_eq!(s.full_range_faces, Some(2), "{s:?}");
    let signals = models::Signals::from_frame(&faces, &frame.stats()).with(&s);
    let (score, reasons) =
        models::score::instant_score(&signals, models::Pose::default(), &models::ScoreConfig::default());
    assert_eq!((score, reasons), (25.0, vec![models::Reason::MultipleFaces]));
}
