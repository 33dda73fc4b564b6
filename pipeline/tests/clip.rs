//! Clips through real GStreamer pipelines: x264enc -> the recorder -> mp4mux,
//! read back with qtdemux and avdec_h264. Each source frame carries its
//! index as a bar code, so pre-roll is proven by content, not by timestamps.

mod support;

use pipeline::Trigger;
use support::{FPS, FRAME_NS, chaining_recorder, decode_indices, demux, encode, files, finished, recorder};

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
    let clips = finished(&rec, &done);
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
    let clips = finished(&rec, &done);
    assert_eq!(clips.len(), 1, "one extended clip, not two");
    let idx = decode_indices(&clips[0].path);
    assert!(idx.windows(2).all(|w| w[1] == w[0] + 1), "no gap, no repeat");
    // Extended to the second trigger + (length - preroll) = 330 + 210 frames.
    assert_eq!(idx[0], 90);
    assert_eq!(*idx.last().unwrap(), 330 + 210 - 1);
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
    let clips = finished(&rec, &done);
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
    let clips = finished(&rec, &done);
    assert_eq!(outcomes.first(), Some(&(200, Trigger::Started)));
    assert_eq!(outcomes.last(), Some(&(1350, Trigger::Refused)), "{outcomes:?}");
    assert_eq!(rec.budget(), Some(0));
    // finished() returned after every clip started was reported: nothing is left to come.
    assert_eq!(files(dir.path()), ["long-1.mp4", "long.mp4"], "two files and no third");
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
    assert_eq!(finished(&rec, &done).len(), 4);
    assert_eq!(rec.budget(), None);
}
