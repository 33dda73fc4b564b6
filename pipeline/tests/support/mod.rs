//! Helpers shared by the clip tests: bar-coded frames encoded by a real
//! x264enc, and clips read back with qtdemux and avdec_h264. Each source
//! frame carries its index as a bar code, so what a clip holds is proven by
//! content, not by timestamps.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, mpsc};

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use pipeline::clip::{ClipDone, ClipError};
use pipeline::{ClipInfo, ClipRecorder, ClipSettings, EncodedUnit};

pub const W: usize = 320;
pub const H: usize = 240;
pub const FPS: u64 = 30;
const BITS: usize = 12;
pub const FRAME_NS: u64 = 1_000_000_000 / FPS;

/// x264enc as the agent runs it: no B-frames, a keyframe a second.
pub const X264_LOW_LATENCY: &str = "x264enc tune=zerolatency speed-preset=ultrafast key-int-max=30 bframes=0";

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

/// Encodes `n` bar-code frames with x264enc (a keyframe a second, no
/// B-frames) and hands each access unit to `f`, in order.
pub fn encode(n: u64, f: impl FnMut(EncodedUnit, &gst::Caps)) {
    encode_with(n, X264_LOW_LATENCY, f)
}

/// Encodes `n` bar-code frames with the encoder described by `encoder` and
/// hands each access unit to `f` in decode order.
pub fn encode_with(n: u64, encoder: &str, mut f: impl FnMut(EncodedUnit, &gst::Caps)) {
    pipeline::init().unwrap();
    let desc = format!(
        "appsrc name=src format=time caps=\"video/x-raw,format=RGB,width={W},height={H},framerate={FPS}/1\" ! videoconvert ! \
         video/x-raw,format=I420 ! {encoder} ! \
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

/// All units of `n` frames (see [`encode`]), with the stream's caps.
pub fn encoded(n: u64) -> (Vec<EncodedUnit>, gst::Caps) {
    let mut units = Vec::new();
    let mut caps = None;
    encode(n, |u, c| {
        units.push(u);
        caps = Some(c.clone());
    });
    (units, caps.expect("the encoder produced output"))
}

/// One demuxed sample: timestamps as the MP4 gives them back.
#[derive(Clone, Copy, Debug)]
pub struct Sample {
    pub pts_ns: u64,
    pub dts_ns: Option<u64>,
    pub duration_ns: u64,
    pub keyframe: bool,
}

/// Demuxes an MP4 (no decoding): its samples in file (decode) order.
pub fn samples(path: &Path) -> Vec<Sample> {
    let desc = format!("filesrc location={} ! qtdemux ! appsink name=out sync=false", path.display());
    let p = gst::parse::launch(&desc).unwrap().downcast::<gst::Pipeline>().unwrap();
    let out = p.by_name("out").unwrap().downcast::<gst_app::AppSink>().unwrap();
    p.set_state(gst::State::Playing).unwrap();
    let mut v = Vec::new();
    while let Some(s) = out.try_pull_sample(gst::ClockTime::from_seconds(5)) {
        let b = s.buffer().unwrap();
        v.push(Sample {
            pts_ns: b.pts().unwrap().nseconds(),
            dts_ns: b.dts().map(|d| d.nseconds()),
            duration_ns: b.duration().map(|d| d.nseconds()).unwrap_or(0),
            keyframe: !b.flags().contains(gst::BufferFlags::DELTA_UNIT),
        });
    }
    p.set_state(gst::State::Null).unwrap();
    v
}

/// Demuxes an MP4: (first sample is a keyframe, sample count, duration in ns).
pub fn demux(path: &Path) -> (bool, usize, u64) {
    let v = samples(path);
    let first = v.iter().map(|s| s.pts_ns).min().unwrap_or(0);
    let end = v.iter().map(|s| s.pts_ns + s.duration_ns).max().unwrap_or(0);
    (v.first().is_some_and(|s| s.keyframe), v.len(), end - first)
}

/// Decodes an MP4 and reads the bar code of every frame, in display order.
pub fn decode_indices(path: &Path) -> Vec<u64> {
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

pub type Done = Arc<Mutex<Vec<Result<ClipInfo, ClipError>>>>;

/// A callback that collects every outcome into the returned list.
pub fn collector() -> (ClipDone, Done) {
    let done: Done = Arc::default();
    let d = done.clone();
    (Arc::new(move |r| d.lock().unwrap().push(r)), done)
}

/// A callback that sends every outcome to the returned receiver, so a test
/// can wait for one.
pub fn reporter() -> (ClipDone, mpsc::Receiver<Result<ClipInfo, ClipError>>) {
    let (tx, rx) = mpsc::channel();
    let tx = Mutex::new(tx);
    (Arc::new(move |r| tx.lock().unwrap().send(r).unwrap()), rx)
}

pub fn recorder(dir: PathBuf, length_s: u32, preroll_s: u32) -> (ClipRecorder, Done) {
    recorder_with(ClipSettings::new(dir, length_s, preroll_s))
}

pub fn recorder_with(settings: ClipSettings) -> (ClipRecorder, Done) {
    let (cb, done) = collector();
    (ClipRecorder::new(settings, cb).unwrap(), done)
}

/// 10 s clips with 3 s of pre-roll that chain after 12 s.
pub fn chaining_settings(dir: PathBuf) -> ClipSettings {
    let mut settings = ClipSettings::new(dir, 10, 3);
    settings.max_length_ns = 12_000_000_000;
    settings
}

pub fn chaining_recorder(dir: PathBuf) -> (ClipRecorder, Done) {
    recorder_with(chaining_settings(dir))
}

/// Waits for every clip the recorder started to be finished (no clip may
/// still be open: the tests end their incidents before the frames end) and
/// returns them, oldest first.
pub fn finished(rec: &ClipRecorder, done: &Done) -> Vec<ClipInfo> {
    assert!(!rec.is_recording(), "a clip is still open when the frames end");
    rec.flush();
    let mut clips: Vec<ClipInfo> = done.lock().unwrap().iter().map(|r| r.clone().expect("clip finished")).collect();
    clips.sort_by_key(|c| c.start_ns);
    clips
}

/// Files in `dir`, sorted by name.
pub fn files(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    v.sort();
    v
}

/// The payload of the first box at `path` (e.g. `["moov", "trak", "edts",
/// "elst"]`) in an MP4 file's bytes, if there is one.
pub fn mp4_box<'a>(mut data: &'a [u8], path: &[&str]) -> Option<&'a [u8]> {
    let (want, rest) = path.split_first()?;
    while data.len() >= 8 {
        let size = u32::from_be_bytes(data[..4].try_into().unwrap()) as usize;
        let (header, size) = match size {
            1 => (16, u64::from_be_bytes(data.get(8..16)?.try_into().unwrap()) as usize),
            0 => (8, data.len()),
            n => (8, n),
        };
        let body = data.get(header..size)?;
        if &data[4..8] == want.as_bytes() {
            return if rest.is_empty() { Some(body) } else { mp4_box(body, rest) };
        }
        data = &data[size..];
    }
    None
}

/// Counts the top-level boxes of type `kind` in an MP4 file's bytes.
pub fn count_boxes(mut data: &[u8], kind: &str) -> usize {
    let mut n = 0;
    while data.len() >= 8 {
        let size = u32::from_be_bytes(data[..4].try_into().unwrap()) as usize;
        let size = match size {
            1 => data.get(8..16).map(|b| u64::from_be_bytes(b.try_into().unwrap()) as usize).unwrap_or(data.len()),
            0 => data.len(),
            n => n,
        };
        n += (&data[4..8] == kind.as_bytes()) as usize;
        if size < 8 || size > data.len() {
            break;
        }
        data = &data[size..];
    }
    n
}

/// The composition offsets of a finished MP4's `ctts` box, one per sample
/// (empty without the box: every frame shows when it decodes).
pub fn composition_offsets(data: &[u8]) -> Vec<u32> {
    let Some(ctts) = mp4_box(data, &["moov", "trak", "mdia", "minf", "stbl", "ctts"]) else { return vec![] };
    let be = |i: usize| u32::from_be_bytes(ctts[i..i + 4].try_into().unwrap());
    let entries = be(4) as usize;
    (0..entries).flat_map(|e| std::iter::repeat_n(be(8 + e * 8 + 4), be(8 + e * 8) as usize)).collect()
}

/// The media time at which a finished MP4's edit list starts the picture
/// (0 without one), in the track's timescale.
pub fn edit_start(data: &[u8]) -> u32 {
    let Some(elst) = mp4_box(data, &["moov", "trak", "edts", "elst"]) else { return 0 };
    // Version 0: entry count, then (segment duration, media time, rate).
    u32::from_be_bytes(elst[12..16].try_into().unwrap())
}
