//! Time as a seam. Code whose behaviour depends on time (retention, clip
//! age, stalls, the watchdog) asks a [`Clock`] instead of calling
//! `Utc::now()` or `Instant::now()`, so tests move time forward with a
//! [`SimulatedClock`] instead of sleeping. Async loops (sync, upload) use
//! tokio's timers, which tests pause with `tokio::time::pause()`.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

/// Wall-clock and monotonic time.
pub trait Clock: Send + Sync + 'static {
    /// The wall clock (may jump: a Pi without an RTC sets it from NTP late).
    fn now(&self) -> DateTime<Utc>;
    /// The monotonic clock, for intervals.
    fn instant(&self) -> Instant;
}

/// A clock shared by the parts of the agent.
pub type SharedClock = Arc<dyn Clock>;

/// The real clocks.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
    fn instant(&self) -> Instant {
        Instant::now()
    }
}

/// The real clocks, shared.
pub fn system() -> SharedClock {
    Arc::new(SystemClock)
}

/// A clock that moves only when told to (tests).
#[derive(Debug)]
pub struct SimulatedClock {
    base: Instant,
    state: Mutex<(Duration, DateTime<Utc>)>,
}

impl SimulatedClock {
    /// Starts at wall-clock time `start`.
    pub fn new(start: DateTime<Utc>) -> Arc<SimulatedClock> {
        Arc::new(SimulatedClock { base: Instant::now(), state: Mutex::new((Duration::ZERO, start)) })
    }

    /// Moves both clocks forward by `d`.
    pub fn advance(&self, d: Duration) {
        let mut s = self.state.lock().unwrap();
        s.0 += d;
        s.1 += chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX);
    }

    /// Sets the wall clock alone (an NTP correction); the monotonic clock does not move.
    pub fn set_wall(&self, t: DateTime<Utc>) {
        self.state.lock().unwrap().1 = t;
    }
}

impl Clock for SimulatedClock {
    fn now(&self) -> DateTime<Utc> {
        self.state.lock().unwrap().1
    }
    fn instant(&self) -> Instant {
        self.base + self.state.lock().unwrap().0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_simulated_clock_moves_only_when_advanced() {
        let start = "2026-11-24T09:00:00Z".parse().unwrap();
        let c = SimulatedClock::new(start);
        let i0 = c.instant();
        assert_eq!((c.now(), c.instant()), (start, i0));
        c.advance(Duration::from_secs(90));
        assert_eq!(c.instant() - i0, Duration::from_secs(90));
        assert_eq!(c.now(), "2026-11-24T09:01:30Z".parse::<DateTime<Utc>>().unwrap());
        c.set_wall("2026-11-25T00:00:00Z".parse().unwrap());
        assert_eq!(c.instant() - i0, Duration::from_secs(90), "a wall-clock jump is not an interval");
    }
}
