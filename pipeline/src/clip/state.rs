//! The recorder's state machine. Every method runs under the recorder's
//! lock and does no I/O and no pipeline state change: what needs them (open
//! a writer, finish one, report a failure) is handed back as [`Effects`]
//! for the caller to do after unlocking.

use std::mem;

use gstreamer as gst;

use super::ring::Ring;
use super::writer::Writer;
use super::{ClipError, ClipInfo, ClipSettings, ClipStats, Trigger};
use crate::capture::EncodedUnit;

pub(super) struct State {
    pub ring: Ring,
    pub caps: Option<gst::Caps>,
    pub phase: Phase,
    /// Clips that ended before their writer opened, with the frames they
    /// hold; fed and finished when it opens.
    pub closing: Vec<Clip>,
    /// End of the last clip: a new clip never starts before it (no frame twice).
    pub last_end_ns: u64,
    /// Clip files that may still be started; None = no limit.
    pub budget: Option<u32>,
    /// Clips closed whose `done` callback has not returned yet.
    pub in_flight: usize,
    pub stats: ClipStats,
    next_id: u64,
}

pub(super) enum Phase {
    Idle,
    /// A trigger waiting for the caps, a keyframe after the last clip, or
    /// room in the backlog.
    Waiting {
        trigger_ns: u64,
        label: String,
    },
    /// A clip is open: frames go to its writer, or to its backlog until the
    /// writer is open.
    Recording(Clip),
}

pub(super) struct Clip {
    pub id: u64,
    pub info: ClipInfo,
    /// Running time at which the clip ends (triggers move it later).
    pub end_ns: u64,
    /// 0 for the first clip of an incident, N for its N-th chained clip.
    pub chain: u32,
    pub sink: Sink,
}

pub(super) enum Sink {
    /// The writer is being opened on the opener thread.
    Opening {
        backlog: Vec<EncodedUnit>,
        bytes: usize,
    },
    Open(Writer),
}

/// A writer to open for clip `id` (`LABEL.mp4`, `LABEL-N.mp4` when chained).
pub(super) struct OpenJob {
    pub id: u64,
    pub label: String,
    pub chain: u32,
    pub caps: gst::Caps,
}

/// What the caller does after unlocking.
#[derive(Default)]
#[must_use]
pub(super) struct Effects {
    pub open: Vec<OpenJob>,
    /// Writers to end and finish (each counted in `in_flight`).
    pub finish: Vec<(Writer, ClipInfo)>,
    /// Failures to report; `true` when the clip was counted in `in_flight`.
    pub failed: Vec<(ClipError, bool)>,
}

impl Clip {
    fn feed(&mut self, u: &EncodedUnit) {
        self.info.frames += 1;
        self.info.end_ns = self.info.end_ns.max(u.pts_ns + u.duration_ns);
        match &mut self.sink {
            Sink::Opening { backlog, bytes } => {
                *bytes += u.buffer.size();
                backlog.push(u.clone());
            }
            Sink::Open(w) => w.push(u),
        }
    }

    fn backlog_bytes(&self) -> usize {
        match &self.sink {
            Sink::Opening { bytes, .. } => *bytes,
            Sink::Open(_) => 0,
        }
    }
}

impl State {
    pub fn new() -> Self {
        State {
            ring: Ring::default(),
            caps: None,
            phase: Phase::Idle,
            closing: Vec::new(),
            last_end_ns: 0,
            budget: None,
            in_flight: 0,
            stats: ClipStats::default(),
            next_id: 0,
        }
    }

    /// Bytes held for clips whose writer is still opening.
    pub fn backlog_bytes(&self) -> usize {
        let current = match &self.phase {
            Phase::Recording(c) => c.backlog_bytes(),
            _ => 0,
        };
        current + self.closing.iter().map(Clip::backlog_bytes).sum::<usize>()
    }

    pub fn trigger(&mut self, s: &ClipSettings, t_ns: u64, label: &str, fx: &mut Effects) -> Trigger {
        if let Phase::Recording(c) = &mut self.phase {
            // Extend; past max_length the clip is chained in push().
            c.end_ns = c.end_ns.max(t_ns + s.length_ns.saturating_sub(s.preroll_ns));
            return Trigger::Extended;
        }
        if self.budget == Some(0) {
            return Trigger::Refused;
        }
        self.phase = Phase::Waiting { trigger_ns: t_ns, label: label.to_string() };
        self.try_start(s, fx);
        Trigger::Started
    }

    /// Feeds one frame: closes (and maybe chains) the open clip when this
    /// frame is past its end, else adds the frame to it; then to the ring.
    pub fn push(&mut self, s: &ClipSettings, unit: EncodedUnit, fx: &mut Effects) {
        if let Phase::Recording(c) = &self.phase {
            // Half a frame of slack: nanosecond timestamps of 1/30 s frames drift by rounding.
            let at = unit.pts_ns + unit.duration_ns / 2;
            let past_end = at >= c.end_ns;
            let at_cap = at >= c.info.start_ns + s.max_length_ns;
            // Close on a keyframe when chaining, so the next clip can start on it.
            if past_end || (at_cap && unit.keyframe) {
                let Phase::Recording(c) = mem::replace(&mut self.phase, Phase::Idle) else { unreachable!() };
                self.last_end_ns = unit.pts_ns;
                // Chain only while the budget allows another file.
                let chain = !past_end && self.budget != Some(0);
                let (label, next, end) = (c.info.label.clone(), c.chain + 1, c.end_ns);
                self.close(c, fx);
                if chain {
                    // A new clip from this keyframe, same label, same end.
                    self.ring.push(unit.clone(), s.preroll_ns);
                    let caps = self.caps.clone().expect("a clip was open, so the caps are known");
                    self.begin(label, next, unit.pts_ns, end, vec![unit], caps, fx);
                    return;
                }
            }
        }
        let held = self.backlog_bytes();
        if let Phase::Recording(c) = &mut self.phase {
            let opening = matches!(c.sink, Sink::Opening { .. });
            if opening && held + unit.buffer.size() > s.backlog_max_bytes {
                // The writer is not open and the backlog is full: end the clip
                // here rather than leave a gap in it.
                let Phase::Recording(c) = mem::replace(&mut self.phase, Phase::Idle) else { unreachable!() };
                self.last_end_ns = unit.pts_ns;
                self.stats.cut_short += 1;
                self.close(c, fx);
            } else {
                c.feed(&unit);
            }
        }
        self.ring.push(unit, s.preroll_ns);
        self.try_start(s, fx);
    }

    /// Starts the waiting trigger's clip if it can start now.
    fn try_start(&mut self, s: &ClipSettings, fx: &mut Effects) {
        let Phase::Waiting { trigger_ns, .. } = &self.phase else { return };
        let trigger_ns = *trigger_ns;
        if self.budget == Some(0) {
            // The budget was cut while this trigger waited.
            self.phase = Phase::Idle;
            return;
        }
        let Some(caps) = self.caps.clone() else { return };
        let want = trigger_ns.saturating_sub(s.preroll_ns);
        let units = &self.ring.units;
        let start = self.ring.start_index(want).and_then(|i| {
            if units[i].pts_ns >= self.last_end_ns {
                return Some(i);
            }
            // The pre-roll would repeat frames of the previous clip: start on
            // the first keyframe after it instead.
            units.iter().position(|u| u.keyframe && u.pts_ns >= self.last_end_ns)
        });
        // No keyframe yet (after the previous clip): wait for one.
        let Some(start) = start else { return };
        let bytes: usize = units.iter().skip(start).map(|u| u.buffer.size()).sum();
        if self.backlog_bytes() + bytes > s.backlog_max_bytes {
            // Earlier clips still wait for their writers: wait for room.
            return;
        }
        let preroll: Vec<EncodedUnit> = units.iter().skip(start).cloned().collect();
        let Phase::Waiting { label, .. } = mem::replace(&mut self.phase, Phase::Idle) else { unreachable!() };
        let start_ns = preroll[0].pts_ns;
        self.begin(label, 0, trigger_ns, start_ns + s.length_ns, preroll, caps, fx);
    }

    /// Opens a clip (its writer on the opener thread) holding `units`.
    #[allow(clippy::too_many_arguments)]
    fn begin(
        &mut self,
        label: String,
        chain: u32,
        trigger_ns: u64,
        end_ns: u64,
        units: Vec<EncodedUnit>,
        caps: gst::Caps,
        fx: &mut Effects,
    ) {
        let id = self.next_id;
        self.next_id += 1;
        self.budget = self.budget.map(|b| b.saturating_sub(1));
        let start_ns = units.first().map(|u| u.pts_ns).unwrap_or(trigger_ns);
        // The real name is chosen when the writer opens (it checks the folder).
        let info = ClipInfo {
            path: Default::default(),
            label: label.clone(),
            start_ns,
            end_ns: start_ns,
            trigger_ns,
            frames: 0,
            bytes: 0,
        };
        let sink = Sink::Opening { backlog: Vec::with_capacity(units.len()), bytes: 0 };
        let mut clip = Clip { id, info, end_ns, chain, sink };
        for u in &units {
            clip.feed(u);
        }
        fx.open.push(OpenJob { id, label, chain, caps });
        self.phase = Phase::Recording(clip);
    }

    /// Ends `c`: its writer finishes, or it waits in `closing` for one.
    fn close(&mut self, c: Clip, fx: &mut Effects) {
        self.in_flight += 1;
        match c.sink {
            Sink::Open(w) => fx.finish.push((w, c.info)),
            Sink::Opening { .. } => self.closing.push(c),
        }
    }

    /// The writer of clip `id` opened (as file `path`) or failed.
    pub fn opened(&mut self, id: u64, result: Result<(Writer, std::path::PathBuf), ClipError>, fx: &mut Effects) {
        let current = matches!(&self.phase, Phase::Recording(c) if c.id == id);
        let mut clip = if current {
            let Phase::Recording(c) = mem::replace(&mut self.phase, Phase::Idle) else { unreachable!() };
            c
        } else if let Some(i) = self.closing.iter().position(|c| c.id == id) {
            self.closing.remove(i)
        } else {
            // Given up by flush(): the writer drops (Null) with nothing in it.
            if let Ok((_, path)) = result {
                let _ = std::fs::remove_file(path.with_extension("mp4.partial"));
            }
            return;
        };
        let (mut writer, path) = match result {
            Ok(ok) => ok,
            Err(e) => {
                fx.failed.push((e, !current));
                return;
            }
        };
        clip.info.path = path;
        if let Sink::Opening { backlog, .. } = mem::replace(&mut clip.sink, Sink::Opening { backlog: vec![], bytes: 0 })
        {
            for u in &backlog {
                writer.push(u);
            }
        }
        if current {
            clip.sink = Sink::Open(writer);
            self.phase = Phase::Recording(clip);
        } else {
            fx.finish.push((writer, clip.info));
        }
    }

    /// Closes the open clip, if any (shutdown).
    pub fn close_current(&mut self, fx: &mut Effects) {
        if matches!(self.phase, Phase::Recording(_)) {
            let Phase::Recording(c) = mem::replace(&mut self.phase, Phase::Idle) else { unreachable!() };
            self.close(c, fx);
        }
    }

    /// Reports the clips still waiting for a writer as failed (flush gave up).
    pub fn abandon_closing(&mut self, fx: &mut Effects) {
        for c in self.closing.drain(..) {
            let path = std::path::PathBuf::from(&c.info.label);
            let message = "its writer did not open in time".to_string();
            fx.failed.push((ClipError { path, message }, true));
        }
    }
}
