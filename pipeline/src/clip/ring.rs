//! The pre-roll ring: encoded frames in decode order, whole GOPs, newest last.
//!
//! It keeps the fewest whole GOPs that still cover `keep_ns` back from the
//! newest frame, and never more than [`RING_MAX_BYTES`] (oldest GOPs go
//! first). A GOP starts on a keyframe (a frame without `DELTA_UNIT`), so a
//! clip cut from the ring at a keyframe decodes on its own.

use std::collections::VecDeque;

use crate::capture::EncodedUnit;

/// Upper bound on encoded bytes kept for pre-roll (about 30 s at 2 Mbit/s).
pub const RING_MAX_BYTES: usize = 8 << 20;

/// The pre-roll ring: whole GOPs, newest last.
#[derive(Default)]
pub struct Ring {
    pub(super) units: VecDeque<EncodedUnit>,
    bytes: usize,
}

impl Ring {
    pub fn push(&mut self, unit: EncodedUnit, keep_ns: u64) {
        self.bytes += unit.buffer.size();
        let newest = unit.pts_ns;
        self.units.push_back(unit);
        // Drop the oldest GOP while the next keyframe alone still covers `keep_ns`.
        while let Some(second_key) = self.units.iter().skip(1).position(|u| u.keyframe).map(|i| i + 1) {
            let covered = newest.saturating_sub(self.units[second_key].pts_ns) >= keep_ns;
            if !(covered || self.bytes > RING_MAX_BYTES) {
                break;
            }
            for u in self.units.drain(..second_key) {
                self.bytes -= u.buffer.size();
            }
        }
    }

    /// Index of the newest keyframe at or before `t`, else the oldest keyframe.
    pub(super) fn start_index(&self, t: u64) -> Option<usize> {
        let keys = self.units.iter().enumerate().filter(|(_, u)| u.keyframe);
        let mut best = None;
        for (i, u) in keys {
            if u.pts_ns <= t || best.is_none() {
                best = Some(i);
            }
            if u.pts_ns > t {
                break;
            }
        }
        best
    }

    pub fn len(&self) -> usize {
        self.units.len()
    }
    pub fn is_empty(&self) -> bool {
        self.units.is_empty()
    }
    /// Running time covered, oldest to newest frame.
    pub fn span_ns(&self) -> u64 {
        match (self.units.front(), self.units.back()) {
            (Some(a), Some(b)) => b.pts_ns.saturating_sub(a.pts_ns),
            _ => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gstreamer as gst;

    fn unit(i: u64, key_every: u64) -> EncodedUnit {
        crate::init().unwrap();
        EncodedUnit {
            buffer: gst::Buffer::from_slice(vec![0u8; 100]),
            pts_ns: i * 33_333_333,
            dts_ns: (i * 33_333_333) as i64,
            duration_ns: 33_333_333,
            keyframe: i.is_multiple_of(key_every),
        }
    }

    #[test]
    fn the_ring_keeps_whole_gops_covering_the_preroll() {
        let mut r = Ring::default();
        for i in 0..300 {
            r.push(unit(i, 30), 3_000_000_000);
        }
        // Newest is frame 299 (9.97 s); 3 s back is 6.97 s; the newest
        // keyframe at or before it is frame 180 (6.0 s), so frames 180..299 stay.
        assert!(r.units.front().unwrap().keyframe);
        assert_eq!(r.units.front().unwrap().pts_ns, 180 * 33_333_333);
        assert_eq!(r.len(), 120);
        let t = 299 * 33_333_333 - 3_000_000_000;
        assert_eq!(r.units[r.start_index(t).unwrap()].pts_ns, 180 * 33_333_333);
    }

    #[test]
    fn a_trigger_before_the_ring_is_full_starts_at_the_oldest_keyframe() {
        let mut r = Ring::default();
        for i in 0..40 {
            r.push(unit(i, 30), 3_000_000_000);
        }
        assert_eq!(r.start_index(0), Some(0));
    }
}
