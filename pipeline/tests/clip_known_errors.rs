//! Clip files when things go wrong: a process killed mid-clip, leftovers
//! of a crash, a clip file that cannot be created. Real pipelines and real
//! files throughout.

mod support;

use std::time::Duration;

use pipeline::{ClipRecorder, ClipSettings, Trigger};
use support::{FPS, FRAME_NS, count_boxes, decode_indices, encoded, recorder, reporter};

#[test]
fn partial_clips_left_by_a_crash_are_recovered() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("x.mp4.partial"), b"fragment").unwrap();
    let got = pipeline::clip::recover_partials(dir.path());
    assert_eq!(got, vec![dir.path().join("x.mp4")]);
    assert!(dir.path().join("x.mp4").exists());
}

#[test]
fn a_clip_cut_off_mid_way_plays_up_to_its_last_fragment() {
    let dir = tempfile::tempdir().unwrap();
    let (units, caps) = encoded(330);
    let (rec, _done) = recorder(dir.path().to_path_buf(), 10, 3);
    rec.set_caps(caps);
    for u in units {
        let pts = u.pts_ns;
        rec.push(u);
        if pts == 200 * FRAME_NS {
            rec.trigger(pts, "cut");
        }
    }
    // The clip (from frame 90) holds 8 s; wait for the muxer to write its
    // first second (the moov) and four more fragments.
    let partial = dir.path().join("cut.mp4.partial");
    let fragments = || std::fs::read(&partial).map(|d| count_boxes(&d, "moof")).unwrap_or(0);
    for _ in 0..3000 {
        if fragments() >= 4 {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(fragments() >= 4, "the muxer wrote {} fragments", fragments());
    // Gone without an end of stream, as a killed process leaves it.
    drop(rec);
    assert_eq!(pipeline::clip::recover_partials(dir.path()), [dir.path().join("cut.mp4")]);
    let idx = decode_indices(&dir.path().join("cut.mp4"));
    assert_eq!(idx.first(), Some(&90));
    assert!(idx.windows(2).all(|w| w[1] == w[0] + 1), "no gap");
    assert!(idx.len() >= 4 * FPS as usize, "plays {} frames", idx.len());
}

#[test]
fn a_clip_file_that_cannot_be_created_is_reported_by_path_and_the_next_incident_records_again() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("clips");
    let (units, caps) = encoded(800);
    let (done, reported) = reporter();
    let rec = ClipRecorder::new(ClipSettings::new(dir.clone(), 10, 3), done).unwrap();
    // The folder goes away (an unmounted card): the muxer cannot open its file.
    std::fs::remove_dir(&dir).unwrap();
    rec.set_caps(caps);
    let mut units = units.into_iter();
    for u in units.by_ref().take(201) {
        let pts = u.pts_ns;
        rec.push(u);
        if pts == 200 * FRAME_NS {
            assert_eq!(rec.trigger(pts, "lost"), Trigger::Started);
        }
    }
    let err = reported.recv_timeout(Duration::from_secs(30)).unwrap().expect_err("no file, no clip");
    assert_eq!(err.path, dir.join("lost.mp4.partial"));
    assert!(err.to_string().contains("lost.mp4.partial"), "{err}");
    assert!(!rec.is_recording(), "the failed clip is over");
    // The folder is back: the next incident is recorded.
    std::fs::create_dir(&dir).unwrap();
    for u in units {
        let pts = u.pts_ns;
        rec.push(u);
        if pts == 451 * FRAME_NS {
            assert_eq!(rec.trigger(pts, "next"), Trigger::Started);
        }
    }
    assert!(!rec.is_recording());
    rec.flush();
    let clip = reported.try_recv().unwrap().expect("the next clip is written");
    assert_eq!(clip.path, dir.join("next.mp4"));
    let idx = decode_indices(&clip.path);
    assert_eq!((idx[0], idx.len()), (360, 300));
    assert_eq!(support::files(&dir), ["next.mp4"], "nothing left of the failed clip");
}
