//! The recorder never holds up the thread that pushes frames (guarantee 5):
//! a writer's pipeline is opened on the recorder's own thread, and frames
//! that arrive meanwhile wait in a bounded backlog, fed to the writer in
//! order once it is open. Proven without timing: a real mp4mux opener
//! behind a gate the test holds shut while every frame is pushed.

mod support;

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use gstreamer as gst;
use pipeline::clip::{ClipDone, Mp4Opener, OpenWriter, Writer};
use pipeline::{ClipRecorder, ClipSettings, EncodedUnit, PipelineError, Trigger};
use support::{FRAME_NS, chaining_settings, collector, decode_indices, encoded, finished, reporter};

/// Long enough for anything that is not stuck.
const PATIENCE: Duration = Duration::from_secs(30);

/// Opens real mp4mux writers, but holds the `hold`-th open (0 = the first)
/// until the test releases it.
struct Gate {
    hold: usize,
    opens: AtomicUsize,
    holding: Mutex<mpsc::Sender<()>>,
    release: Mutex<mpsc::Receiver<()>>,
}

/// A recorder whose `hold`-th writer open waits at a gate; with a receiver
/// told when that open starts and a sender that releases it.
fn gated(settings: ClipSettings, hold: usize, done: ClipDone) -> (ClipRecorder, mpsc::Receiver<()>, mpsc::Sender<()>) {
    let (holding, held) = mpsc::channel();
    let (release, released) = mpsc::channel();
    let gate = Gate { hold, opens: AtomicUsize::new(0), holding: Mutex::new(holding), release: Mutex::new(released) };
    (ClipRecorder::with_opener(settings, done, Arc::new(gate)).unwrap(), held, release)
}

impl OpenWriter for Gate {
    fn open(&self, partial: &Path, caps: &gst::Caps) -> Result<Writer, PipelineError> {
        if self.opens.fetch_add(1, Ordering::SeqCst) == self.hold {
            let _ = self.holding.lock().unwrap().send(());
            // Bounded: a test that never releases fails instead of hanging.
            let _ = self.release.lock().unwrap().recv_timeout(2 * PATIENCE);
        }
        Mp4Opener.open(partial, caps)
    }
}

/// Pushes `units` on a thread of its own (the encoder's streaming thread),
/// triggering `label` at each frame `at` accepts; returns the outcomes
/// through the receiver once every push has returned.
fn stream(
    rec: &ClipRecorder,
    units: Vec<EncodedUnit>,
    caps: &gst::Caps,
    at: impl Fn(u64) -> bool + Send + 'static,
) -> mpsc::Receiver<Vec<Trigger>> {
    let (rec, caps) = (rec.clone(), caps.clone());
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut outcomes = Vec::new();
        for u in units {
            rec.set_caps(caps.clone());
            let pts = u.pts_ns;
            rec.push(u);
            if at(pts / FRAME_NS) {
                outcomes.push(rec.trigger(pts, "long"));
            }
        }
        let _ = tx.send(outcomes);
    });
    rx
}

fn contiguous(v: &[u64]) -> bool {
    v.windows(2).all(|w| w[1] == w[0] + 1)
}

#[test]
fn a_chained_clips_writer_opens_off_the_streaming_thread_and_no_frame_is_lost() {
    let dir = tempfile::tempdir().unwrap();
    let (units, caps) = encoded(900);
    let (done_cb, done) = collector();
    let (rec, held, release) = gated(chaining_settings(dir.path().to_path_buf()), 1, done_cb);
    // An incident re-triggering every 2 s from frame 200 to 440: the clip
    // (from frame 90) reaches its 12 s cap at frame 450 and chains there.
    let pushed = stream(&rec, units, &caps, |f| (200..=440).contains(&f) && f % 60 == 20);
    held.recv_timeout(PATIENCE).expect("the chain asks for a second writer");
    // The chained clip's writer is still opening, and every push returns.
    let outcomes = pushed.recv_timeout(PATIENCE).expect("push() returned while a writer was opening");
    assert_eq!(outcomes.first(), Some(&Trigger::Started));
    assert!(outcomes[1..].iter().all(|o| *o == Trigger::Extended), "{outcomes:?}");
    let waiting = rec.stats().backlog_bytes;
    assert!(waiting > 0, "the chained clip's frames wait for its writer");
    release.send(()).unwrap();
    let clips = finished(&rec, &done);
    assert_eq!(clips.len(), 2, "{clips:?}");
    assert_eq!(clips[1].path, dir.path().join("long-1.mp4"));
    let first = decode_indices(&clips[0].path);
    let chained = decode_indices(&clips[1].path);
    assert_eq!((first[0], *first.last().unwrap()), (90, 449));
    // Every frame pushed while its writer opened is in the chained clip, in order.
    assert_eq!((chained[0], *chained.last().unwrap()), (450, 440 + 210 - 1));
    assert!(contiguous(&[first, chained].concat()), "no gap, no frame twice across the chain");
    assert_eq!(rec.stats(), pipeline::clip::ClipStats { backlog_bytes: 0, cut_short: 0 });
}

#[test]
fn a_clips_first_writer_opening_slowly_holds_up_neither_push_nor_trigger() {
    let dir = tempfile::tempdir().unwrap();
    let (units, caps) = encoded(600);
    let (done_cb, done) = collector();
    let (rec, held, release) = gated(ClipSettings::new(dir.path().to_path_buf(), 10, 3), 0, done_cb);
    let pushed = stream(&rec, units, &caps, |f| f == 200);
    held.recv_timeout(PATIENCE).expect("the trigger asks for a writer");
    let outcomes = pushed.recv_timeout(PATIENCE).expect("push() and trigger() returned while a writer was opening");
    assert_eq!(outcomes, [Trigger::Started]);
    // The clip (frames 90 to 389) ended while its writer was still opening.
    assert!(!rec.is_recording());
    release.send(()).unwrap();
    let clips = finished(&rec, &done);
    assert_eq!(clips.len(), 1);
    let idx = decode_indices(&clips[0].path);
    assert_eq!((idx[0], *idx.last().unwrap(), idx.len()), (90, 389, 300));
    assert!(contiguous(&idx));
}

#[test]
fn a_full_backlog_cuts_the_clip_short_without_a_gap_and_the_next_clip_waits_for_room() {
    let dir = tempfile::tempdir().unwrap();
    let (units, caps) = encoded(600);
    // Room for frames 90 to 259 (a clip from 90 whose writer does not open).
    let bound: usize = units[90..260].iter().map(|u| u.buffer.size()).sum();
    let mut settings = ClipSettings::new(dir.path().to_path_buf(), 10, 3);
    settings.backlog_max_bytes = bound;
    let (done, reported) = reporter();
    let (rec, held, release) = gated(settings, 0, done);
    let (held_up, next) = (units[..=450].to_vec(), units[451].clone());
    // A second incident at frame 420 finds the backlog full: it must wait.
    let pushed = stream(&rec, held_up, &caps, |f| f == 200 || f == 420);
    held.recv_timeout(PATIENCE).expect("the trigger asks for a writer");
    let outcomes = pushed.recv_timeout(PATIENCE).expect("push() returned with the backlog full");
    assert_eq!(outcomes, [Trigger::Started, Trigger::Started]);
    assert!(!rec.is_recording(), "the second clip waits for room");
    let stats = rec.stats();
    assert_eq!(stats.cut_short, 1);
    assert!(stats.backlog_bytes <= bound, "{} > {bound}", stats.backlog_bytes);
    release.send(()).unwrap();
    let cut = reported.recv_timeout(PATIENCE).unwrap().expect("the cut clip is written");
    let cut = decode_indices(&cut.path);
    assert_eq!((cut[0], *cut.last().unwrap()), (90, 259), "cut where the backlog was full");
    assert!(contiguous(&cut), "the cut clip has no gap");
    // With the backlog empty, the next frame starts the waiting clip, from
    // the oldest keyframe the ring still holds (3 s before frame 451).
    rec.push(next);
    assert!(rec.is_recording());
    rec.flush();
    let second = reported.try_recv().unwrap().expect("the second clip is written");
    let second = decode_indices(&second.path);
    assert_eq!((second[0], *second.last().unwrap()), (360, 451));
    assert!(contiguous(&second));
}
