//! The temporal rules of the new signals, as pure functions of samples and
//! time (`t_ms`): no clock, no model, no I/O. `docs/SCORING.md` gives the
//! numbers and how they were chosen.
//!
//! - [`Talking`]: the jaw's opening moving up and down over a window
//!   (2 s): at least 3 swings (open, close, open …) each larger than the
//!   session's own landmark jitter and at least 0.025 face heights. One
//!   yawn is 2 swings, a smile none: neither is talking. It reports since
//!   when: the start of the window it was first recognised in.
//! - [`GazeTracker`]: the irises' horizontal offset against the session's
//!   own baseline (median of its first 3 s), away beyond 0.12 eye widths
//!   for the persistence time.
//! - [`hand_overlaps_face`] + [`Persist`]: a palm over the ear or mouth
//!   region for the persistence time.

use std::collections::VecDeque;

use crate::blazeface::{BBox, Detection, keypoint as kp};
use crate::facemesh::Gaze;

/// Settings of [`Talking`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TalkingConfig {
    /// The window the swings are counted in. Default 2000 ms.
    pub window_ms: u64,
    /// Smallest swing counted, in face heights. Default 0.025.
    pub min_swing: f32,
    /// A swing must also exceed this many times the session's jitter
    /// (the 10th percentile of the change between samples over the last
    /// 300 samples: low enough that talking itself does not raise it).
    /// Default 3.
    pub jitter_factor: f32,
    /// Swings needed in the window. Default 3.
    pub min_swings: usize,
}

impl Default for TalkingConfig {
    fn default() -> Self {
        Self { window_ms: 2000, min_swing: 0.025, jitter_factor: 3.0, min_swings: 3 }
    }
}

/// How many changes between samples the jitter estimate keeps (20 s at 15 Hz).
const JITTER_HISTORY: usize = 300;
/// Most samples a window holds (bounds memory whatever the rate).
const MAX_WINDOW_SAMPLES: usize = 256;

/// Talking from mouth-opening samples.
#[derive(Clone, Debug, Default)]
pub struct Talking {
    cfg: TalkingConfig,
    window: VecDeque<(u64, f32)>,
    changes: VecDeque<f32>,
    since: Option<u64>,
}

impl Talking {
    pub fn new(cfg: TalkingConfig) -> Self {
        Self { cfg, window: VecDeque::new(), changes: VecDeque::new(), since: None }
    }

    /// Adds the opening measured at `t_ms` (samples in time order).
    pub fn push(&mut self, t_ms: u64, opening: f32) {
        if let Some(&(_, last)) = self.window.back() {
            if self.changes.len() == JITTER_HISTORY {
                self.changes.pop_front();
            }
            self.changes.push_back((opening - last).abs());
        }
        self.window.push_back((t_ms, opening));
        while self.window.len() > MAX_WINDOW_SAMPLES
            || self.window.front().is_some_and(|&(t, _)| t + self.cfg.window_ms < t_ms)
        {
            self.window.pop_front();
        }
    }

    /// The face is gone: its samples no longer describe anyone.
    pub fn clear(&mut self) {
        self.window.clear();
        self.since = None;
    }

    /// The smallest swing that counts now: the floor, or the session's
    /// jitter times the factor.
    pub fn min_swing(&self) -> f32 {
        if self.changes.len() < 10 {
            return self.cfg.min_swing;
        }
        let mut c: Vec<f32> = self.changes.iter().copied().collect();
        c.sort_by(f32::total_cmp);
        self.cfg.min_swing.max(c[c.len() / 10] * self.cfg.jitter_factor)
    }

    /// Swings of the window ending at `t_ms`.
    pub fn swings(&self, t_ms: u64) -> usize {
        let samples = self.window.iter().filter(|&&(t, _)| t + self.cfg.window_ms >= t_ms).map(|&(_, o)| o);
        count_swings(samples, self.min_swing())
    }

    /// Talking at `t_ms`.
    pub fn is_talking(&self, t_ms: u64) -> bool {
        self.swings(t_ms) >= self.cfg.min_swings
    }

    /// Since when the talking seen at `t_ms` goes on (the first sample of
    /// the window it was recognised in), or None when not talking.
    pub fn since(&mut self, t_ms: u64) -> Option<u64> {
        if !self.is_talking(t_ms) {
            self.since = None;
            return None;
        }
        let start = self.window.iter().map(|&(t, _)| t).find(|&t| t + self.cfg.window_ms >= t_ms).unwrap_or(t_ms);
        Some(*self.since.get_or_insert(start))
    }
}

/// Zig-zag count: how many times the sequence reverses by at least `min`
/// from its last extreme.
pub fn count_swings(samples: impl IntoIterator<Item = f32>, min: f32) -> usize {
    let mut it = samples.into_iter();
    let Some(first) = it.next() else { return 0 };
    let (mut lo, mut hi, mut dir, mut n) = (first, first, 0i8, 0);
    for v in it {
        if dir >= 0 {
            hi = hi.max(v);
            if hi - v >= min {
                n += 1;
                dir = -1;
                lo = v;
            }
        }
        if dir <= 0 {
            lo = lo.min(v);
            if v - lo >= min {
                n += 1;
                dir = 1;
                hi = v;
            }
        }
    }
    n
}

/// A condition that counts only once it has held for a time.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Persist {
    since: Option<u64>,
}

impl Persist {
    /// Feeds the condition at `t_ms`; true once it has held `hold_ms`.
    pub fn update(&mut self, t_ms: u64, cond: bool, hold_ms: u64) -> bool {
        if !cond {
            self.since = None;
            return false;
        }
        let since = *self.since.get_or_insert(t_ms);
        t_ms.saturating_sub(since) >= hold_ms
    }

    pub fn reset(&mut self) {
        self.since = None;
    }
}

/// Settings of [`GazeTracker`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GazeConfig {
    /// Horizontal iris offset from the baseline that counts as away, in eye widths. Default 0.12.
    pub threshold: f32,
    /// How long the eyes must stay away. Default 2000 ms.
    pub persistence_ms: u64,
    /// The baseline is the median of the samples of the session's first
    /// this many ms. Default 3000.
    pub calibration_ms: u64,
    /// The baseline is clamped to ± this. Default 0.06.
    pub max_baseline: f32,
}

impl Default for GazeConfig {
    fn default() -> Self {
        Self { threshold: 0.12, persistence_ms: 2000, calibration_ms: 3000, max_baseline: 0.06 }
    }
}

/// Eyes off the screen, against the session's own baseline.
#[derive(Clone, Debug, Default)]
pub struct GazeTracker {
    cfg: GazeConfig,
    start: Option<u64>,
    calibration: Vec<f32>,
    baseline: Option<f32>,
    away: Persist,
}

impl GazeTracker {
    pub fn new(cfg: GazeConfig) -> Self {
        Self { cfg, ..Default::default() }
    }

    fn baseline_now(&mut self, t_ms: u64, h: f32) -> f32 {
        if let Some(b) = self.baseline {
            return b;
        }
        let start = *self.start.get_or_insert(t_ms);
        if self.calibration.len() < 1000 {
            self.calibration.push(h);
        }
        let mut c = self.calibration.clone();
        c.sort_by(f32::total_cmp);
        let b = c[c.len() / 2].clamp(-self.cfg.max_baseline, self.cfg.max_baseline);
        if t_ms.saturating_sub(start) >= self.cfg.calibration_ms {
            self.baseline = Some(b);
            self.calibration = Vec::new();
        }
        b
    }

    /// Feeds a gaze sample at `t_ms`; true while the eyes have been away
    /// for the persistence time.
    pub fn update(&mut self, t_ms: u64, gaze: Gaze) -> bool {
        let b = self.baseline_now(t_ms, gaze.horizontal);
        let away = (gaze.horizontal - b).abs() > self.cfg.threshold;
        self.away.update(t_ms, away, self.cfg.persistence_ms)
    }

    /// No eyes measured (no face): the eyes are not "away".
    pub fn lost(&mut self) {
        self.away.reset();
    }
}

/// The regions of a face a hand covers when it holds a phone or covers the
/// mouth: squares of half the face's width around each ear tragion and the
/// mouth.
pub fn face_hand_regions(face: &Detection) -> [BBox; 3] {
    let half = face.bbox.width() / 4.0;
    let sq = |i: usize| {
        let p = face.keypoints[i];
        BBox { xmin: p.x - half, ymin: p.y - half, xmax: p.x + half, ymax: p.y + half }
    };
    [sq(kp::RIGHT_EAR), sq(kp::LEFT_EAR), sq(kp::MOUTH)]
}

/// Least share of a palm's box that must lie in one of the face's regions.
pub const HAND_OVERLAP: f32 = 0.25;

/// A palm over the ear or mouth region of `face`.
pub fn hand_overlaps_face(palms: &[BBox], face: &Detection) -> bool {
    let regions = face_hand_regions(face);
    palms.iter().any(|p| {
        regions.iter().any(|r| {
            let ix = (p.xmax.min(r.xmax) - p.xmin.max(r.xmin)).max(0.0);
            let iy = (p.ymax.min(r.ymax) - p.ymin.max(r.ymin)).max(0.0);
            p.area() > 0.0 && ix * iy / p.area() >= HAND_OVERLAP
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blazeface::Point;

    /// Feeds `f(t)` at 15 Hz for `ms`; returns whether talking was seen at each sample.
    fn run(tk: &mut Talking, t0: u64, ms: u64, f: impl Fn(f32) -> f32) -> Vec<bool> {
        (0..ms / 67)
            .map(|i| {
                let t = t0 + i * 67;
                tk.push(t, f(t as f32 / 1000.0));
                tk.since(t).is_some()
            })
            .collect()
    }

    #[test]
    fn syllables_are_talking() {
        let mut tk = Talking::new(TalkingConfig::default());
        // Opening 0.02-0.08 at 3 syllables a second.
        let out = run(&mut tk, 0, 6000, |s| 0.05 + 0.03 * (s * 3.0 * std::f32::consts::TAU).sin());
        assert!(out[30..].iter().all(|&t| t), "{out:?}");
        // Recognised within the first second; it goes on since the first sample.
        assert!(out[15]);
        assert_eq!(tk.since(5963), Some(0));
        tk.clear();
        assert_eq!(tk.since(6000), None);
    }

    #[test]
    fn a_yawn_a_smile_and_a_still_face_are_not_talking() {
        let mut tk = Talking::new(TalkingConfig::default());
        // Still, with landmark jitter of ±0.003.
        let still = run(&mut tk, 0, 4000, |s| 0.02 + 0.003 * ((s * 97.0).sin()));
        assert!(still.iter().all(|&t| !t));
        // A yawn: open to 0.3 over 2 s, close over 2 s.
        let yawn = run(&mut tk, 4000, 5000, |s| {
            let x = ((s - 4.0) / 4.0).clamp(0.0, 1.0);
            0.02 + 0.28 * (x * std::f32::consts::PI).sin()
        });
        assert!(yawn.iter().all(|&t| !t), "{yawn:?}");
        // A smile: lips apart, held.
        let smile = run(&mut tk, 9000, 4000, |_| 0.07);
        assert!(smile.iter().all(|&t| !t));
    }

    #[test]
    fn jitter_larger_than_the_floor_raises_the_smallest_swing() {
        let mut tk = Talking::new(TalkingConfig::default());
        // A noisy face: every sample jumps by 0.01 (swings of 0.01 each).
        run(&mut tk, 0, 4000, |s| if (s * 15.0) as i64 % 2 == 0 { 0.02 } else { 0.03 });
        assert!((tk.min_swing() - 0.03).abs() < 1e-4, "{}", tk.min_swing());
        // Swings of 0.028 would count on a quiet face, not on this one.
        let out = run(&mut tk, 4000, 2000, |s| if (s * 15.0) as i64 % 2 == 0 { 0.02 } else { 0.048 });
        assert!(out.iter().all(|&t| !t), "{out:?}");
        assert!(!tk.is_talking(4000));
    }

    #[test]
    fn swings_count_reversals_beyond_the_minimum() {
        assert_eq!(count_swings([0.0, 0.1, 0.0, 0.1, 0.0], 0.05), 4);
        assert_eq!(count_swings([0.0, 0.01, 0.0, 0.01], 0.05), 0);
        assert_eq!(count_swings([0.0, 0.3, 0.3, 0.0], 0.05), 2);
        assert_eq!(count_swings(std::iter::empty(), 0.05), 0);
    }

    #[test]
    fn persist_needs_the_condition_held_for_the_time() {
        let mut p = Persist::default();
        assert!(!p.update(0, true, 1000));
        assert!(!p.update(900, true, 1000));
        assert!(p.update(1000, true, 1000));
        assert!(!p.update(1100, false, 1000));
        assert!(!p.update(1200, true, 1000));
    }

    #[test]
    fn eyes_away_from_their_own_baseline_for_the_persistence_time() {
        let mut g = GazeTracker::new(GazeConfig::default());
        let at = |h: f32| Gaze { horizontal: h, vertical: 0.0 };
        // The student's eyes rest a little to the right: that is the baseline.
        for t in (0..3000).step_by(200) {
            assert!(!g.update(t, at(0.05)));
        }
        // Within the threshold of the baseline: fine.
        assert!(!g.update(3200, at(0.15)));
        // Away: counts after 2 s.
        let away: Vec<bool> = (0..12).map(|i| g.update(3400 + i * 200, at(-0.1))).collect();
        assert_eq!(away.iter().position(|&a| a), Some(10), "{away:?}");
        g.lost();
        assert!(!g.update(6000, at(-0.1)));
    }

    #[test]
    fn a_palm_on_the_ear_or_mouth_touches_the_face_and_one_beside_it_does_not() {
        let p = |x, y| Point { x, y };
        let face = Detection {
            score: 0.9,
            bbox: BBox { xmin: 100.0, ymin: 100.0, xmax: 200.0, ymax: 200.0 },
            keypoints: [
                p(130.0, 130.0),
                p(170.0, 130.0),
                p(150.0, 150.0),
                p(150.0, 175.0),
                p(100.0, 140.0),
                p(200.0, 140.0),
            ],
        };
        let on_ear = BBox { xmin: 185.0, ymin: 120.0, xmax: 235.0, ymax: 170.0 };
        let on_mouth = BBox { xmin: 130.0, ymin: 160.0, xmax: 170.0, ymax: 200.0 };
        let beside = BBox { xmin: 260.0, ymin: 120.0, xmax: 300.0, ymax: 170.0 };
        assert!(hand_overlaps_face(&[on_ear], &face));
        assert!(hand_overlaps_face(&[on_mouth], &face));
        assert!(!hand_overlaps_face(&[beside], &face));
        assert!(!hand_overlaps_face(&[], &face));
    }
}
