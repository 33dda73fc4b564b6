//! Clips of incidents: a pre-roll ring of encoded frames and MP4 writers.
//!
//! # Guarantees
//! 1. **Pre-roll.** The ring keeps whole GOPs covering at least `preroll`
//!    of the newest encoded frames. A clip starts on the newest keyframe at
//!    or before `trigger - preroll` (or the oldest one held, just after start).
//! 2. **Length.** A clip holds frames from its first keyframe up to (not
//!    including) `start + length`: with a steady frame rate, exactly
//!    `length`, of which at least `preroll` precede the trigger. It ends at
//!    the first frame, in decode order, whose PTS reaches its end (with
//!    B-frames it may lack the last B-frames before that point; it never has
//!    a gap inside). Timestamps are rebased so the first frame decodes at 0.
//! 3. **Overlapping triggers extend.** A trigger during a clip moves its end
//!    to `trigger + (length - preroll)`. Past `max_length` the clip is closed
//!    on the next keyframe and the next clip (`LABEL-1.mp4`, …) starts on
//!    that same keyframe: no gap and no frame twice. A clip triggered after
//!    another ended never starts before that end.
//! 4. **Crash-safe.** Clips are written as fragmented MP4 (a fragment a
//!    second, the first one as a self-contained `moov`) to
//!    `NAME.mp4.partial`: a process killed mid-clip leaves a file that plays
//!    up to its last fragment. At its end mp4mux rewrites the clip into a
//!    plain MP4 (GStreamer 1.20+, `first-moov-then-finalise`); it is then
//!    fsynced and renamed to `NAME.mp4`, then the folder is fsynced.
//!    [`recover_partials`] renames leftovers after a crash.
//! 5. **Never blocks the streaming thread.** [`ClipRecorder::push`] (and
//!    [`ClipRecorder::trigger`]) only append to the ring, to a clip's
//!    backlog or to its writer's `appsrc` queue, under a lock that nobody
//!    holds across I/O, a pipeline state change or a callback. Opening a
//!    writer (choosing a free name, starting the mp4mux pipeline) runs on
//!    the recorder's opener thread; frames that arrive meanwhile wait in the
//!    clip's backlog and are fed to the writer in order when it opens, so 2
//!    and 3 hold across it. Finishing a clip (waiting for the muxer) runs on
//!    a thread of its own.
//! 6. **Bounded.** The ring holds at most [`RING_MAX_BYTES`]; older GOPs are
//!    dropped first. Backlogs hold at most `backlog_max_bytes` in all
//!    (default [`BACKLOG_MAX_BYTES`]): a frame that does not fit ends its
//!    clip there (the file stays whole; counted in [`ClipStats::cut_short`]),
//!    and a new clip waits until its pre-roll fits. One opener thread; each
//!    finishing thread waits at most 20 s for its muxer.
//! 7. **Budget.** [`ClipRecorder::set_budget`] caps how many clip files may
//!    still be started (a chained clip is one more file; a file counts when
//!    it is started, even if its writer then fails). With the budget spent,
//!    a trigger while idle is refused ([`Trigger::Refused`]) and a long clip
//!    ends at `max_length` instead of chaining. The caller decides what a
//!    budget covers (the agent: one exam session).
//! 8. **Reordering encoders.** PTS and DTS are rebased by one offset (the
//!    first frame's DTS): DTS strictly increases from 0 and PTS never
//!    precedes it, so B-frames keep their order (mp4mux writes a `ctts`
//!    box), and the finished file's edit list starts the picture at 0
//!    (before GStreamer 1.20 the first frame shows at the encoder's reorder
//!    delay and players may cut as many frames off the end). Assumes closed
//!    GOPs (every keyframe an IDR), as x264enc and the hardware encoders
//!    make by default.
//! 9. **Flush.** [`ClipRecorder::flush`] closes the open clip and returns
//!    once every closed clip's `done` callback has returned (bounded: 20 s
//!    for writers still opening, then 25 s for the muxers).
//!
//! Not promised: frames the encoder branch dropped before [`ClipRecorder::push`]
//! (its appsink keeps 60) are not in any clip.

mod ring;
mod state;
mod writer;

use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak, mpsc};
use std::time::{Duration, Instant};

use gstreamer as gst;

pub use ring::{RING_MAX_BYTES, Ring};
use state::{Effects, OpenJob, Phase, State};
pub use writer::{Mp4Opener, OpenWriter, Writer, recover_partials};

use crate::capture::EncodedUnit;

/// Default bound on the frames held for clips whose writer is still opening.
pub const BACKLOG_MAX_BYTES: usize = 2 * RING_MAX_BYTES;

/// How long [`ClipRecorder::flush`] waits for writers still opening.
const OPEN_WAIT: Duration = Duration::from_secs(20);
/// And then for muxers to finish (each finishing thread waits 20 s at most).
const FINISH_WAIT: Duration = Duration::from_secs(25);

/// Clip settings from `[clips]`.
#[derive(Clone, Debug, PartialEq)]
pub struct ClipSettings {
    pub dir: PathBuf,
    pub length_ns: u64,
    pub preroll_ns: u64,
    /// Longest clip an extension can make before chaining. Default 6x length.
    pub max_length_ns: u64,
    /// Bound on the frames held for clips whose writer is still opening.
    /// Default [`BACKLOG_MAX_BYTES`].
    pub backlog_max_bytes: usize,
}

impl ClipSettings {
    pub fn new(dir: PathBuf, length_s: u32, preroll_s: u32) -> Self {
        let length_ns = length_s as u64 * 1_000_000_000;
        Self {
            dir,
            length_ns,
            preroll_ns: preroll_s as u64 * 1_000_000_000,
            max_length_ns: length_ns * 6,
            backlog_max_bytes: BACKLOG_MAX_BYTES,
        }
    }
}

/// A finished clip.
#[derive(Clone, Debug, PartialEq)]
pub struct ClipInfo {
    /// Final path (`NAME.mp4`).
    pub path: PathBuf,
    /// The label given at the trigger (an incident id).
    pub label: String,
    /// Running time of the first and after-last frame.
    pub start_ns: u64,
    pub end_ns: u64,
    /// Running time of the trigger that opened the clip.
    pub trigger_ns: u64,
    pub frames: u64,
    pub bytes: u64,
}

/// What went wrong finishing a clip.
#[derive(Debug, Clone, thiserror::Error)]
#[error("clip {path}: {message}")]
pub struct ClipError {
    pub path: PathBuf,
    pub message: String,
}

/// Called on a finishing (or the opener) thread when a clip is done or failed.
pub type ClipDone = Arc<dyn Fn(Result<ClipInfo, ClipError>) + Send + Sync>;

/// What [`ClipRecorder::trigger`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trigger {
    /// A new clip was started (or will be, on the first keyframe or caps).
    Started,
    /// The running clip now ends later.
    Extended,
    /// Nothing recorded: the budget is spent.
    Refused,
}

/// Counters and levels, read at any time.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClipStats {
    /// Bytes of frames held for clips whose writer is still opening.
    pub backlog_bytes: usize,
    /// Clips ended early because the backlog was full (their writer took
    /// too long to open); the frames after the cut are in no clip.
    pub cut_short: u64,
}

struct Shared {
    settings: ClipSettings,
    done: ClipDone,
    state: Mutex<State>,
    /// Signalled when `in_flight` drops (flush waits on it).
    settled: Condvar,
    jobs: mpsc::Sender<OpenJob>,
}

/// The clip recorder: feed it every encoded frame, trigger it on an incident.
#[derive(Clone)]
pub struct ClipRecorder {
    shared: Arc<Shared>,
}

impl ClipRecorder {
    /// A recorder writing MP4 files with mp4mux into `settings.dir` (created).
    pub fn new(settings: ClipSettings, done: ClipDone) -> Result<Self, ClipError> {
        Self::with_opener(settings, done, Arc::new(Mp4Opener))
    }

    /// The same with writers opened by `opener` (a seam for tests).
    pub fn with_opener(settings: ClipSettings, done: ClipDone, opener: Arc<dyn OpenWriter>) -> Result<Self, ClipError> {
        std::fs::create_dir_all(&settings.dir)
            .map_err(|e| ClipError { path: settings.dir.clone(), message: format!("cannot create: {e}") })?;
        let (jobs, rx) = mpsc::channel();
        let dir = settings.dir.clone();
        let shared =
            Arc::new(Shared { settings, done, state: Mutex::new(State::new()), settled: Condvar::new(), jobs });
        let weak = Arc::downgrade(&shared);
        std::thread::Builder::new().name("clip-open".into()).spawn(move || run_opener(weak, rx, opener, dir)).map_err(
            |e| ClipError { path: PathBuf::from("clip-open"), message: format!("cannot start thread: {e}") },
        )?;
        Ok(Self { shared })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic on another thread must not stop recording here: the state
        // is plain data, so go on with it as it is.
        self.shared.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn set_caps(&self, caps: gst::Caps) {
        self.lock().caps = Some(caps);
    }

    /// True while a clip is open (for the recording light), also while its
    /// writer is still opening.
    pub fn is_recording(&self) -> bool {
        matches!(self.lock().phase, Phase::Recording(_))
    }

    /// Frames and running time held for pre-roll.
    pub fn ring_stats(&self) -> (usize, u64) {
        let s = self.lock();
        (s.ring.len(), s.ring.span_ns())
    }

    /// Backlog level and the clips it cut short.
    pub fn stats(&self) -> ClipStats {
        let s = self.lock();
        ClipStats { backlog_bytes: s.backlog_bytes(), ..s.stats }
    }

    /// From now on, start at most `files` more clip files (None: no limit).
    /// A clip being written goes on; it just cannot chain past the budget.
    pub fn set_budget(&self, files: Option<u32>) {
        self.lock().budget = files;
    }

    /// Clip files that may still be started (None: no limit).
    pub fn budget(&self) -> Option<u32> {
        self.lock().budget
    }

    /// Asks for a clip around running time `t_ns`, labelled `label` (the file
    /// is `LABEL.mp4`). During a clip it extends that clip instead.
    pub fn trigger(&self, t_ns: u64, label: &str) -> Trigger {
        let mut fx = Effects::default();
        let outcome = self.lock().trigger(&self.shared.settings, t_ns, label, &mut fx);
        self.apply(fx);
        outcome
    }

    /// Feeds one encoded frame, in decode order (from the encoder's
    /// streaming thread; never blocks it, see guarantee 5).
    pub fn push(&self, unit: EncodedUnit) {
        let mut fx = Effects::default();
        self.lock().push(&self.shared.settings, unit, &mut fx);
        self.apply(fx);
    }

    /// Finishes the open clip now (shutdown) and waits until every clip
    /// closed so far has been reported to `done` (guarantee 9).
    pub fn flush(&self) {
        let mut fx = Effects::default();
        self.lock().close_current(&mut fx);
        self.apply(fx);
        let open_by = Instant::now() + OPEN_WAIT;
        let finish_by = open_by + FINISH_WAIT;
        let mut s = self.lock();
        while s.in_flight > 0 {
            let now = Instant::now();
            if !s.closing.is_empty() && now >= open_by {
                let mut fx = Effects::default();
                s.abandon_closing(&mut fx);
                drop(s);
                self.apply(fx);
                s = self.lock();
                continue;
            }
            if now >= finish_by {
                tracing::warn!(clips = s.in_flight, "clips still finishing after flush's wait");
                break;
            }
            let until = if s.closing.is_empty() { finish_by } else { open_by };
            s = self.shared.settled.wait_timeout(s, until - now).unwrap_or_else(|p| p.into_inner()).0;
        }
    }

    /// Does what the state machine asked for, outside the lock.
    fn apply(&self, fx: Effects) {
        let Effects { open, finish, failed } = fx;
        for job in open {
            // The opener thread lives as long as `shared` (it holds a Weak).
            let _ = self.shared.jobs.send(job);
        }
        for (writer, info) in finish {
            writer.end();
            let shared = self.shared.clone();
            let fallback = info.clone();
            let spawned = std::thread::Builder::new().name("clip-finish".into()).spawn(move || {
                let result = writer.complete(info);
                (shared.done)(result);
                settle(&shared, 1);
            });
            if let Err(e) = spawned {
                // The closure (and the writer, set to Null) is gone; report it.
                let message = format!("cannot start a finishing thread: {e}");
                (self.shared.done)(Err(ClipError { path: fallback.path, message }));
                settle(&self.shared, 1);
            }
        }
        for (error, counted) in failed {
            (self.shared.done)(Err(error));
            if counted {
                settle(&self.shared, 1);
            }
        }
    }
}

/// One closed clip was reported: wake flush().
fn settle(shared: &Shared, n: usize) {
    let mut s = shared.state.lock().unwrap_or_else(|p| p.into_inner());
    s.in_flight = s.in_flight.saturating_sub(n);
    shared.settled.notify_all();
}

/// The opener thread: opens each clip's writer in turn and hands it to the
/// state, which feeds it the clip's backlog. Ends with the recorder.
fn run_opener(shared: Weak<Shared>, jobs: mpsc::Receiver<OpenJob>, opener: Arc<dyn OpenWriter>, dir: PathBuf) {
    while let Ok(job) = jobs.recv() {
        let (path, partial) = writer::free_name(&dir, &job.label, job.chain);
        let result = opener.open(&partial, &job.caps).map(|w| (w, path)).map_err(|e| {
            // Whatever the failed pipeline created holds no frame: leave
            // nothing for recover_partials to mistake for a clip.
            let _ = std::fs::remove_file(&partial);
            ClipError { path: partial, message: e.to_string() }
        });
        let Some(shared) = shared.upgrade() else { return };
        let recorder = ClipRecorder { shared };
        let mut fx = Effects::default();
        recorder.lock().opened(job.id, result, &mut fx);
        recorder.apply(fx);
        // A clip that waited in `closing` may be finishing now: wake flush().
        recorder.shared.settled.notify_all();
    }
}
