//! Clips of an encoder that reorders frames (B-frames): the recorder must
//! keep each frame's DTS apart from its PTS, or the muxed file shows frames
//! out of order. x264enc is configured as a user-named encoder might be:
//! two B-frames, no adaptive placement, not zerolatency.

mod support;

use gstreamer as gst;
use pipeline::Trigger;
use support::{FRAME_NS, composition_offsets, decode_indices, edit_start, encode_with, finished, recorder, samples};

const X264_B_FRAMES: &str = "x264enc speed-preset=veryfast key-int-max=30 bframes=2 b-adapt=false";

#[test]
fn a_b_frame_encoders_clips_decode_every_frame_once_in_order_with_dts_kept() {
    pipeline::init().unwrap();
    if gst::ElementFactory::find("x264enc").is_none() {
        eprintln!("SKIPPED: x264enc is not installed (gstreamer1.0-plugins-ugly)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (rec, done) = recorder(dir.path().to_path_buf(), 10, 3);
    // (pts, dts) of every frame in decode order, as the encoder made them.
    let mut made: Vec<(u64, i64)> = Vec::new();
    let mut outcomes = Vec::new();
    encode_with(800, X264_B_FRAMES, |u, caps| {
        made.push((u.pts_ns, u.dts_ns));
        rec.set_caps(caps.clone());
        let frame = u.pts_ns / FRAME_NS;
        let pts = u.pts_ns;
        rec.push(u);
        // The first clip starts on the stream's first keyframe (whose DTS
        // lies before 0); the second in mid-stream.
        if frame == 30 || frame == 450 {
            outcomes.push(rec.trigger(pts, &format!("f{frame}")));
        }
    });
    let reordered = made.windows(2).filter(|w| w[1].0 < w[0].0).count();
    assert!(reordered > 100, "the encoder made B-frames ({reordered} frames shown before the one decoded ahead)");
    assert!(made[0].1 < 0, "the first frame decodes before 0: {:?}", made[0]);
    assert_eq!(outcomes, [Trigger::Started, Trigger::Started]);
    let clips = finished(&rec, &done);
    assert_eq!(clips.len(), 2, "{clips:?}");
    for (clip, trigger) in clips.iter().zip([30, 450]) {
        let name = clip.path.display();
        // The clip holds the frames made from its keyframe, in decode order,
        // up to the first whose PTS reaches start + 10 s (guarantee 2).
        let j = made.iter().position(|m| m.0 == clip.start_ns).expect("the clip starts on a frame made");
        let end = clip.start_ns + 10_000_000_000;
        let n = made[j..].iter().position(|m| m.0 + FRAME_NS / 2 >= end).expect("the stream goes past the clip");
        let idx = decode_indices(&clip.path);
        assert!(idx.windows(2).all(|w| w[1] == w[0] + 1), "{name}: every frame once, in order: {idx:?}");
        assert!(idx.contains(&trigger), "{name}");
        assert_eq!(idx.len(), n, "{name}: every frame held is decoded");
        let s = samples(&clip.path);
        assert_eq!(s.len(), n, "{name}: every frame held is in the file");
        assert!(s[0].keyframe, "{name} starts on a keyframe");
        let dts: Vec<u64> = s.iter().map(|s| s.dts_ns.expect("the file has DTS")).collect();
        assert!(dts.windows(2).all(|w| w[1] > w[0]), "{name}: DTS strictly increasing");
        assert!(s.iter().all(|s| s.pts_ns >= s.dts_ns.unwrap()), "{name}: no frame shown before it is decoded");
        // The file's own tables: a composition offset per sample that varies
        // (reordering), and an edit list that starts the picture at the first
        // frame, so players show it at 0 and keep the last frames (ffprobe:
        // start_time 0, all 299 frames).
        let data = std::fs::read(&clip.path).unwrap();
        let offsets = composition_offsets(&data);
        assert_eq!(offsets.len(), s.len(), "{name}: a ctts entry per sample");
        assert!(offsets.iter().any(|&o| o != offsets[0]), "{name}: ctts shows the reordering");
        assert_eq!(edit_start(&data), offsets[0], "{name}: the edit list skips the first frame's delay");
        // Sample i is the i-th frame the encoder made from the clip's start
        // (decode order), and keeps its presentation time and its delay.
        for (i, got) in s.iter().enumerate() {
            let (pts, dts) = made[j + i];
            let want_pts = pts as i64 - made[j].1;
            let want_dts = dts - made[j].1;
            let (got_pts, got_dts) = (got.pts_ns as i64 - s[0].dts_ns.unwrap() as i64, got.dts_ns.unwrap() as i64);
            assert!(
                (got_pts - want_pts).abs() < 1_000_000,
                "{name}: sample {i} shows at {got_pts}, made for {want_pts}"
            );
            assert!(
                (got_dts - want_dts).abs() < 1_000_000,
                "{name}: sample {i} decodes at {got_dts}, made for {want_dts}"
            );
        }
    }
    assert_eq!(clips[0].start_ns, 0);
    assert!(clips[1].start_ns >= clips[0].end_ns, "no frame twice across the two clips");
}
