//! Per-frame cost of the analysis on 640x480 RGB frames, per backend and
//! thread count: preprocess + inference + decode + score against bare
//! inference. A plain timing binary (std::time::Instant, medians over many
//! frames) rather than criterion, which as a dev-dependency would be compiled
//! for every `cargo test` of this crate.
//!
//!   cargo bench -p models --bench detect        # tflite and litert (libLiteRt.so from scripts/fetch-litert)
//!   scripts/bench-models                        # the same, fetching LiteRT first
//!
//! Frames: 60 frames of carphone_pristine.mp4 scaled to 640x480 and
//! astronaut.png scaled to 480x480 centred in 640x480, decoded by ffmpeg.
//! Without `--bench` (as `cargo test --benches` runs it) each case runs a few
//! frames only, as a smoke test.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use models::blazeface::{self, Letterbox};
use models::net::{FACE_LANDMARK_SPEC, FULL_RANGE_SPEC, IRIS_SPEC, PALM_SPEC};
use models::roi::{self, Border, CropSpec, Range, Region};
use models::{
    Backend, FaceDetector, FrameAnalyzer, ModelSpec, Net, RgbFrame, ScoreConfig, Scorer, SignalConfig, SignalModels,
    Signals, TfliteDetector,
};
use tflite::ops::builtin::BuiltinOpResolver;
use tflite::{FlatBufferModel, InterpreterBuilder};

const W: usize = 640;
const H: usize = 480;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn asset(name: &str) -> PathBuf {
    let p = root().join(name);
    assert!(p.exists(), "{} is missing: run scripts/fetch-assets", p.display());
    p
}

/// Decodes `input` with ffmpeg through `filter` into at most `max` packed 640x480 RGB frames.
fn ffmpeg_frames(input: &Path, filter: &str, max: usize) -> Vec<Vec<u8>> {
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(input)
        .args(["-vf", filter, "-frames:v", &max.to_string(), "-f", "rawvideo", "-pix_fmt", "rgb24", "-"])
        .output()
        .expect("ffmpeg runs");
    assert!(out.status.success(), "ffmpeg: {}", String::from_utf8_lossy(&out.stderr));
    out.stdout.chunks_exact(W * H * 3).map(<[u8]>::to_vec).collect()
}

fn frames() -> Vec<Vec<u8>> {
    let mut f = ffmpeg_frames(&asset("assets/carphone_pristine.mp4"), "scale=640:480", 60);
    f.extend(ffmpeg_frames(&asset("assets/astronaut.png"), "scale=480:480,pad=640:480:80:0", 1));
    assert_eq!(f.len(), 61);
    f
}

/// CPU time of the calling thread: unlike wall time, it does not count the
/// time other processes hold the core, so single-thread figures stay
/// comparable on a shared machine.
fn thread_cpu_time() -> Duration {
    #[repr(C)]
    struct Timespec {
        sec: i64,
        nsec: i64,
    }
    unsafe extern "C" {
        fn clock_gettime(clock: i32, ts: *mut Timespec) -> i32;
    }
    const CLOCK_THREAD_CPUTIME_ID: i32 = 3;
    let mut ts = Timespec { sec: 0, nsec: 0 };
    // SAFETY: a valid out-pointer; Linux's clock_gettime with a valid clock id.
    let rc = unsafe { clock_gettime(CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime");
    Duration::new(ts.sec as u64, ts.nsec as u32)
}

/// Wall time per call (minimum, median, 90th percentile) and the calling
/// thread's CPU time per call (median), in ms, over `iters` calls of `f(i)`.
struct Stats {
    min: f64,
    median: f64,
    p90: f64,
    cpu: f64,
}

fn time(iters: usize, mut f: impl FnMut(usize)) -> Stats {
    for i in 0..iters.min(50) {
        f(i); // warm-up: caches, thread pools, lazy allocations
    }
    let (mut wall, mut cpu): (Vec<Duration>, Vec<Duration>) = (0..iters)
        .map(|i| {
            let (start, start_cpu) = (Instant::now(), thread_cpu_time());
            f(i);
            (start.elapsed(), thread_cpu_time() - start_cpu)
        })
        .unzip();
    wall.sort();
    cpu.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    Stats {
        min: ms(wall[0]),
        median: ms(wall[wall.len() / 2]),
        p90: ms(wall[wall.len() * 9 / 10]),
        cpu: ms(cpu[cpu.len() / 2]),
    }
}

fn row(name: &str, s: &Stats, note: &str) {
    println!("| {name} | {:.3} | {:.3} | {:.3} | {:.3} | {note} |", s.min, s.median, s.p90, s.cpu);
}

/// How much the full frame costs over bare inference: by CPU time with one
/// thread (robust to other load), by median wall time with more.
fn overhead(all: &Stats, bare: &Stats, threads: usize) -> String {
    if threads == 1 {
        format!("{:+.0}% over bare (CPU)", (all.cpu / bare.cpu - 1.0) * 100.0)
    } else {
        format!("{:+.0}% over bare (wall)", (all.median / bare.median - 1.0) * 100.0)
    }
}

/// Cases to run: those whose name contains one of the non-flag arguments
/// (all when there are none), e.g. `cargo bench -p models -- litert`.
fn wanted(name: &str) -> bool {
    let filters: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    filters.is_empty() || filters.iter().any(|f| name.contains(f.as_str()))
}

/// The full per-frame work of the agent's analysis loop: detect
/// (preprocess + inference + decode), frame statistics, signals, score.
fn full(det: &mut dyn FaceDetector, frames: &[Vec<u8>], iters: usize) -> Stats {
    let mut scorer = Scorer::new(ScoreConfig::default());
    time(iters, |i| {
        let frame = RgbFrame::packed(W, H, &frames[i % frames.len()]).unwrap();
        let faces = det.detect(&frame).unwrap();
        let signals = Signals::from_frame(&faces, &frame.stats());
        std::hint::black_box(scorer.update(i as u64 * 33, &signals));
    })
}

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let iters = if bench { 2000 } else { 5 };
    let model = asset("models/face_detection_short_range.tflite");
    let frames = frames();
    let frame = |i: usize| RgbFrame::packed(W, H, &frames[i % frames.len()]).unwrap();
    let mut input = vec![0f32; 128 * 128 * 3];
    blazeface::preprocess(&frame(0), &mut input);

    println!("BlazeFace short-range, 640x480 RGB frames, {iters} frames per case (ms per frame)\n");
    println!("| case | wall min | wall median | wall p90 | CPU median | |");
    println!("| --- | ---: | ---: | ---: | ---: | --- |");

    // The backend-independent parts on their own.
    let name = "preprocess (letterbox 640x480 to 128x128, bilinear)";
    if wanted(name) {
        let mut t = vec![0f32; 128 * 128 * 3];
        let stats = time(iters, |i| {
            blazeface::preprocess(&frame(i), &mut t);
        });
        row(name, &stats, "a new frame each time, from memory");
        let stats = time(iters, |_| {
            blazeface::preprocess(&frame(0), &mut t);
        });
        row(name, &stats, "the same frame, in cache");
    }
    let (reg, logits) = TfliteDetector::load(&model, 1).unwrap().run_raw(&input).unwrap();
    let anchors = blazeface::anchors();
    let lb = Letterbox::for_frame(W, H);
    let name = "decode (896 anchors, weighted NMS)";
    if wanted(name) {
        row(name, &time(iters, |_| drop(std::hint::black_box(blazeface::decode(&reg, &logits, &anchors, &lb)))), "");
    }
    let name = "frame stats + pose + score";
    if wanted(name) {
        let mut scorer = Scorer::new(ScoreConfig::default());
        let faces = blazeface::decode(&reg, &logits, &anchors, &lb);
        let stats = time(iters, |i| {
            let signals = Signals::from_frame(&faces, &frame(i).stats());
            std::hint::black_box(scorer.update(i as u64 * 33, &signals));
        });
        row(name, &stats, "");
    }

    for threads in [1, 2] {
        let name = format!("tflite {threads} thread(s)");
        if !wanted(&name) {
            continue;
        }
        // Bare inference: the interpreter alone, input already in place.
        let fb = FlatBufferModel::build_from_file(&model).unwrap();
        let mut interp =
            InterpreterBuilder::new(fb, BuiltinOpResolver::default()).unwrap().build_with_threads(threads).unwrap();
        interp.allocate_tensors().unwrap();
        let idx = interp.inputs()[0];
        interp.tensor_data_mut::<f32>(idx).unwrap().copy_from_slice(&input);
        let bare = time(iters, |_| interp.invoke().unwrap());
        row(&format!("{name}: bare inference"), &bare, "");
        let mut det = TfliteDetector::load(&model, threads as usize).unwrap();
        let all = full(&mut det, &frames, iters);
        row(&format!("{name}: full frame"), &all, &overhead(&all, &bare, threads as usize));
    }

    // What the 468-point landmark model would add per frame (docs/SCORING.md):
    // its bare inference on a 192x192 face crop, one thread.
    let name = "face_landmark (468 points, 192x192) tflite 1 thread(s): bare inference";
    if wanted(name) {
        let fb = FlatBufferModel::build_from_file(asset("models/face_landmark.tflite")).unwrap();
        let mut interp =
            InterpreterBuilder::new(fb, BuiltinOpResolver::default()).unwrap().build_with_threads(1).unwrap();
        interp.allocate_tensors().unwrap();
        let idx = interp.inputs()[0];
        let crop = interp.tensor_data_mut::<f32>(idx).unwrap();
        assert_eq!(crop.len(), 192 * 192 * 3, "face_landmark takes a 192x192 RGB crop");
        for (i, v) in crop.iter_mut().enumerate() {
            *v = input[i % input.len()];
        }
        row(name, &time(iters, |_| interp.invoke().unwrap()), "");
    }

    second_stage(&frames, iters);

    for threads in [1, 2] {
        let name = format!("litert {threads} thread(s)");
        if !wanted(&name) {
            continue;
        }
        let mut det = models::LiteRtDetector::load(&model, threads).unwrap();
        det.run_raw(&input).unwrap();
        let bare = time(iters, |_| det.invoke().unwrap());
        row(&format!("{name}: bare inference"), &bare, "");
        let all = full(&mut det, &frames, iters);
        row(&format!("{name}: full frame"), &all, &overhead(&all, &bare, threads));
    }
}

/// The second-stage models one at a time (crop + inference, one thread,
/// each backend that can run it), and the whole per-frame analysis with
/// every signal at its default rate against BlazeFace alone, averaged over
/// frames (`FrameAnalyzer` on 30 FPS timestamps).
fn second_stage(frames: &[Vec<u8>], iters: usize) {
    let frame = |i: usize| RgbFrame::packed(W, H, &frames[i % frames.len()]).unwrap();
    let mut bf = TfliteDetector::load(&asset("models/face_detection_short_range.tflite"), 1).unwrap();
    let face = bf.detect(&frame(0)).unwrap().remove(0);
    let face_region = models::facemesh::face_region(&face);
    let eye_region = Region { cx: face_region.cx, cy: face_region.cy, side: face_region.side / 4.0, angle: 0.0 };
    let cases: [(&str, &str, &ModelSpec, CropSpec, Region); 4] = [
        ("face_landmark", "face_landmark.tflite", &FACE_LANDMARK_SPEC, models::facemesh::FACE_CROP, face_region),
        ("iris (one eye)", "iris_landmark.tflite", &IRIS_SPEC, models::facemesh::EYE_CROP, eye_region),
        (
            "palm_detection_lite",
            "palm_detection_lite.tflite",
            &PALM_SPEC,
            CropSpec { size: 192, border: Border::Zero, range: Range::Unit, mirror: false },
            models::frame::palm_region(&face),
        ),
        (
            "face_detection_full_range",
            "face_detection_full_range.tflite",
            &FULL_RANGE_SPEC,
            CropSpec { size: 192, border: Border::Zero, range: Range::Signed, mirror: false },
            Region::whole(W, H),
        ),
    ];
    for (label, file, spec, crop, region) in cases {
        for backend in [Backend::Tflite, Backend::LiteRt] {
            let name = format!(
                "{label} {} 1 thread(s): crop + inference",
                if backend == Backend::LiteRt { "litert" } else { "tflite" }
            );
            if !wanted(&name) {
                continue;
            }
            let Ok(mut net) = Net::load(backend, None, &asset(&format!("models/{file}")), 1, spec) else {
                println!("| {name} | | | | | does not load on this backend |");
                continue;
            };
            let mut t = vec![0f32; crop.size * crop.size * 3];
            let stats = time(iters, |i| {
                roi::crop(&frame(i), &region, &crop, &mut t);
                std::hint::black_box(net.run(|input| input.copy_from_slice(&t)).unwrap());
            });
            row(&name, &stats, "");
        }
    }
    // The agent's per-frame work with every signal on at its default rate,
    // on LiteRT (where all four run), against BlazeFace alone.
    let name = "per frame at 30 FPS litert 1 thread(s): BlazeFace + all signals at default rates";
    if !wanted(name) || models::LiteRt::load(None).is_err() {
        return;
    }
    let mut det = models::LiteRtDetector::load(&asset("models/face_detection_short_range.tflite"), 1).unwrap();
    let dir = asset("models");
    for cfg in [SignalConfig::off(), SignalConfig::default()] {
        let on = cfg.talking;
        let models = SignalModels::load(&cfg, &dir, Backend::LiteRt, None, 1).unwrap();
        let mut fa = FrameAnalyzer::new(cfg, models);
        let mut scorer = Scorer::new(ScoreConfig::default());
        // Mean, not median: the second-stage models run on some frames only.
        let n = iters.max(60);
        let start = std::time::Instant::now();
        let cpu0 = thread_cpu_time();
        for i in 0..n {
            let f = frame(i);
            let t_ms = i as u64 * 1000 / 30;
            let faces = det.detect(&f).unwrap();
            let s = fa.analyse(&f, &faces, t_ms).unwrap();
            let signals = Signals::from_frame(&faces, &f.stats()).with(&s);
            std::hint::black_box(scorer.update(t_ms, &signals));
        }
        let wall = start.elapsed().as_secs_f64() * 1e3 / n as f64;
        let cpu = (thread_cpu_time() - cpu0).as_secs_f64() * 1e3 / n as f64;
        let label = if on { "all signals on" } else { "signals off (BlazeFace alone)" };
        println!(
            "| per frame at 30 FPS, litert 1 thread, {label} | | {wall:.3} (mean) | | {cpu:.3} (mean) | {:.1}% of a core at 30 FPS |",
            cpu * 30.0 / 10.0
        );
    }
}
