//! Clips through real GStreamer pipelines: x264enc -> the recorder -> mp4mux,
//! read back with qtdemux and avdec_h264. Each source frame carries its
//! index as a bar code, so pre-roll is proven by content, not by timestamps.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use pipeline::clip::{ClipDone, ClipError};
use pipeline::{ClipInfo, ClipRecorder, ClipSettings, EncodedUnit, Trigger};

const W: usize = 320;
const H: usize = 240;
const FPS: u64 = 30;
const BITS: usize = 12;
const FRAME_NS: u64 = 1_000_000_000 / FPS;

/// An RGB frame whose top half shows `i` as 12 black/white bars.
fn barcode_frame(i: u64) -> Vec<u8> {
    let mut v = vec![128u8; W * H * 3];
    for y in 0..H / 2 {
        for x in 0..W {
            let bit = x * BITS / W;
            let on = (i >> (BITS - 1 - bit)) & 1 == 1;
            let o = (y * W + x) * 3;
            v[o..o + 3].fill(if on { 255 } else { 0 });
        }
    }
    v
}

fn read_barcode(rgb: &[u8], stride: usize) -> u64 {
    let y = H / 4;
    (0..BITS).fold(0, |acc, bit| {
        let x = bit * W / BITS + W / BITS / 2;
        let on = rgb[y * stride + x * 3] > 128;
        (acc << 1) | on as u64
    })
}

/// Encodes `n` bar-code frames with x264enc (a keyframe a second) and hands
/// each access unit to `f`, in order.
fn encode(n: u64, mut f: impl FnMut(EncodedUnit, &gst::Caps)) {
    pipeline::init().unwrap();
    let desc = format!(
        "appsrc name=src format=time caps=\"video/x-raw,format=RGB,width={W},height={H},framerate={FPS}/1\" ! videoconvert ! \
         video/x-raw,format=I420 ! x264enc tune=zerolatency speed-preset=ultrafast key-int-max={FPS} bframes=0 ! \
         h264parse ! video/x-h264,stream-format=avc,alignment=au ! appsink name=out sync=false"
    );
    let p = gst::parse::launch(&desc).unwrap().downcast::<gst::Pipeline>().unwrap();
    let src = p.by_name("src").unwrap().downcast::<gst_app::AppSrc>().unwrap();
    let out = p.by_name("out").unwrap().downcast::<gst_app::AppSink>().unwrap();
    p.set_state(gst::State::Playing).unwrap();
    let feeder = std::thread::spawn(move || {
        for i in 0..n {
            let mut b = gst::Buffer::from_slice(barcode_frame(i));
            {
                let b = b.get_mut().unwrap();
                b.set_pts(gst::ClockTime::from_nseconds(i * FRAME_NS));
                b.set_duration(gst::ClockTime::from_nseconds(FRAME_NS));
            }
            src.push_buffer(b).unwrap();
        }
        src.end_of_stream().unwrap();
    });
    while let Some(sample) = out.try_pull_sample(gst::ClockTime::from_seconds(10)) {
        let unit = pipeline::capture::encoded_unit(&sample).expect("timestamped sample");
        f(unit, &sample.caps().unwrap().to_owned());
    }
    feeder.join().unwrap();
    if let Some(m) = p.bus().unwrap().pop_filtered(&[gst::MessageType::Error]) {
        panic!("encoder pipeline: {m:?}");
    }
    p.set_state(gst::State::Null).unwrap();
}

/// Demuxes an MP4: (first sample is a keyframe, sample count, duration in ns).
fn demux(path: &Path) -> (bool, usize, u64) {
    let desc = format!("filesrc location={} ! qtdemux ! appsink name=out sync=false", path.display());
    let p = gst::parse::launch(&desc).unwrap().downcast::<gst::Pipeline>().unwrap();
    let out = p.by_name("out").unwrap().downcast::<gst_app::AppSink>().unwrap();
    p.set_state(gst::State::Playing).unwrap();
    let (mut first_key, mut n, mut first, mut end) = (None, 0, 0, 0);
    while let Some(s) = out.try_pull_sample(gst::ClockTime::from_seconds(5)) {
        let b = s.buffer().unwrap();
        let pts = b.pts().unwrap().nseconds();
        if first_key.is_none() {
            first_key = Some(!b.flags().contains(gst::BufferFlags::DELTA_UNIT));
            first = pts;
        }
        end = end.max(pts + b.duration().map(|d| d.nseconds()).unwrap_or(0));
        n += 1;
    }
    p.set_state(gst::State::Null).unwrap();
    (first_key.unwrap_or(false), n, end - first)
}

/// Decodes an MP4 and reads the bar code of every frame.
fn decode_indices(path: &Path) -> Vec<u64> {
    let desc = format!(
        "filesrc location={} ! qtdemux ! h264parse ! avdec_h264 ! videoconvert ! video/x-raw,format=RGB ! appsink name=out sync=false",
        path.display()
    );
    let p = gst::parse::launch(&desc).unwrap().downcast::<gst::Pipeline>().unwrap();
    let out = p.by_name("out").unwrap().downcast::<gst_app::AppSink>().unwrap();
    p.set_state(gst::State::Playing).unwrap();
    let mut v = Vec::new();
    while let Some(s) = out.try_pull_sample(gst::ClockTime::from_seconds(5)) {
        let info = gstreamer_video::VideoInfo::from_caps(s.caps().unwrap()).unwrap();
        let map = s.buffer().unwrap().map_readable().unwrap();
        v.push(read_barcode(map.as_slice(), info.stride()[0] as usize));
    }
    p.set_state(gst::State::Null).unwrap();
    v
}

type Done = Arc<Mutex<Vec<Result<ClipInfo, ClipError>>>>;

fn recorder(dir: PathBuf, length_s: u32, preroll_s: u32) -> (ClipRecorder, Done) {
    recorder_with(ClipSettings::new(dir, length_s, preroll_s))
}

fn recorder_with(settings: ClipSettings) -> (ClipRecorder, Done) {
    let done: Done = Arc::default();
    let d = done.clone();
    let cb: ClipDone = Arc::new(move |r| d.lock().unwrap().push(r));
    (ClipRecorder::new(settings, cb).unwrap(), done)
}

/// 10 s clips with 3 s of pre-roll that chain after 12 s.
fn chaining_recorder(dir: PathBuf) -> (ClipRecorder, Done) {
    let mut settings = ClipSettings::new(dir, 10, 3);
    settings.max_length_ns = 12_000_000_000;
    recorder_with(settings)
}

fn wait_done(done: &Done, n: usize) -> Vec<ClipInfo> {
    for _ in 0..200 {
        if done.lock().unwrap().len() >= n {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    done.lock().unwrap().iter().map(|r| r.clone().expect("clip finished")).collect()
}

#[test]
fn a_clip_is_ten_seconds_from_a_keyframe_with_preroll_proven_by_content() {
    let dir = tempfile::tempdir().unwrap();
    let (rec, done) = recorder(dir.path().to_path_buf(), 10, 3);
    let trigger_frame = 200;
    encode(600, |u, caps| {
        rec.set_caps(caps.clone());
        let pts = u.pts_ns;
        rec.push(u);
        if pts == trigger_frame * FRAME_NS {
            rec.trigger(pts, "incident-1");
        }
    });
    let clips = wait_done(&done, 1);
    assert_eq!(clips.len(), 1);
    let clip = &clips[0];
    assert_eq!(clip.path, dir.path().join("incident-1.mp4"));
    assert!(!dir.path().join("incident-1.mp4.partial").exists());
    let (first_is_key, samples, duration) = demux(&clip.path);
    assert!(first_is_key, "the clip starts on a keyframe");
    assert_eq!(samples, 300);
    assert!((duration as i64 - 10_000_000_000).abs() <= 100_000_000, "duration {duration} ns");
    let idx = decode_indices(&clip.path);
    assert_eq!(idx.len(), 300);
    assert!(idx.windows(2).all(|w| w[1] == w[0] + 1), "consecutive frames, none twice");
    let preroll_frames = trigger_frame - idx[0];
    assert!(preroll_frames >= 2 * FPS, "pre-roll of {preroll_frames} frames");
    assert!(idx.contains(&trigger_frame));
}

#[test]
fn overlapping_triggers_extend_the_clip_without_gaps() {
    let dir = tempfile::tempdir().unwrap();
    let (rec, done) = recorder(dir.path().to_path_buf(), 10, 3);
    encode(900, |u, caps| {
        rec.set_caps(caps.clone());
        let pts = u.pts_ns;
        rec.push(u);
        // A second trigger 4.3 s after the first, while its clip (3.0 s - 13.0 s) is open.
        if pts == 200 * FRAME_NS {
            rec.trigger(pts, "a");
        }
        if pts == 330 * FRAME_NS {
            rec.trigger(pts, "b");
        }
    });
    let clips = wait_done(&done, 1);
    assert_eq!(clips.len(), 1, "one extended clip, not two");
    let idx = decode_indices(&clips[0].path);
    assert!(idx.windows(2).all(|w| w[1] == w[0] + 1), "no gap, no repeat");
    // Extended to the second trigger + (length - preroll) = 330 + 210 frames.
    assert_eq!(idx[0], 90);
    assert_eq!(*idx.last().unwrap(), 330 + 210 - 1);
}

#[test]
fn partial_clips_left_by_a_crash_are_recovered() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("x.mp4.partial"), b"fragment").unwrap();
    let got = pipeline::clip::recover_partials(dir.path());
    assert_eq!(got, vec![dir.path().join("x.mp4")]);
    assert!(dir.path().join("x.mp4").exists());
}

#[test]
fn a_long_incident_chains_clips_on_a_keyframe_with_no_gap_and_no_frame_twice() {
    let dir = tempfile::tempdir().unwrap();
    let (rec, done) = chaining_recorder(dir.path().to_path_buf());
    encode(1200, |u, caps| {
        rec.set_caps(caps.clone());
        let pts = u.pts_ns;
        rec.push(u);
        // An incident that keeps re-triggering every 2 s from 6.7 s to 26.7 s.
        if (200 * FRAME_NS..=800 * FRAME_NS).contains(&pts) && (pts / FRAME_NS) % 60 == 20 {
            rec.trigger(pts, "long");
        }
    });
    let mut clips = wait_done(&done, 2);
    clips.sort_by_key(|c| c.start_ns);
    assert!(clips.len() >= 2, "chained into several clips: {clips:?}");
    let mut all = Vec::new();
    for c in &clips {
        let (first_is_key, _, duration) = demux(&c.path);
        assert!(first_is_key, "{} starts on a keyframe", c.path.display());
        // At most max_length plus one GOP (chaining waits for a keyframe).
        assert!(duration <= 13_000_000_000, "{} is {duration} ns", c.path.display());
        all.extend(decode_indices(&c.path));
    }
    assert!(all.windows(2).all(|w| w[1] == w[0] + 1), "no gap, no repeat across the chain");
    assert_eq!(clips[1].path, dir.path().join("long-1.mp4"));
    // The last trigger (frame 800) + 7 s ends the chain.
    assert_eq!(*all.last().unwrap(), 800 + 210 - 1);
}

#[test]
fn a_spent_budget_stops_chaining_and_refuses_new_clips() {
    let dir = tempfile::tempdir().unwrap();
    let (rec, done) = chaining_recorder(dir.path().to_path_buf());
    rec.set_budget(Some(2));
    let mut outcomes = Vec::new();
    encode(1500, |u, caps| {
        rec.set_caps(caps.clone());
        let pts = u.pts_ns;
        rec.push(u);
        let frame = pts / FRAME_NS;
        // The same long incident as above (it would chain into three clips),
        // then a separate one at 45 s, after the chain has ended.
        if ((200..=1000).contains(&frame) && frame % 60 == 20) || frame == 1350 {
            outcomes.push((frame, rec.trigger(pts, "long")));
        }
    });
    let clips = wait_done(&done, 2);
    assert_eq!(outcomes.first(), Some(&(200, Trigger::Started)));
    assert_eq!(outcomes.last(), Some(&(1350, Trigger::Refused)), "{outcomes:?}");
    assert_eq!(rec.budget(), Some(0));
    std::thread::sleep(Duration::from_millis(300));
    let mut files: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    files.sort();
    assert_eq!(files, ["long-1.mp4", "long.mp4"], "two files and no third");
    let mut all = Vec::new();
    for c in &clips {
        let (first_is_key, _, duration) = demux(&c.path);
        assert!(first_is_key);
        assert!(duration <= 13_000_000_000, "{} is {duration} ns", c.path.display());
        all.extend(decode_indices(&c.path));
    }
    all.sort();
    assert!(all.windows(2).all(|w| w[1] == w[0] + 1), "no gap, no repeat");
    // The second clip stops at its cap, well before the incident's last
    // trigger (frame 980) + 7 s.
    assert!(*all.last().unwrap() < 980, "last frame {}", all.last().unwrap());
}

#[test]
fn without_a_budget_a_trigger_is_never_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (rec, done) = recorder(dir.path().to_path_buf(), 2, 1);
    let mut outcomes = Vec::new();
    encode(400, |u, caps| {
        rec.set_caps(caps.clone());
        let pts = u.pts_ns;
        rec.push(u);
        if (pts / FRAME_NS) % 100 == 50 {
            outcomes.push(rec.trigger(pts, "t"));
        }
    });
    assert_eq!(outcomes, [Trigger::Started; 4]);
    assert_eq!(wait_done(&done, 4).len(), 4);
    assert_eq!(rec.budget(), None);
}
