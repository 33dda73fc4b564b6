//! The systemd side of the agent: READY, WATCHDOG, STATUS and STOPPING.
//!
//! - READY=1 is sent once, after the model and spool are open and the first
//!   camera frame has been analysed.
//! - WATCHDOG=1 is sent only from the analysis loop, after a frame was
//!   analysed, at half the watchdog interval: a stalled pipeline stops the
//!   pings and systemd restarts the agent.
//! - STATUS= says what the agent does, at most once every few seconds.
//!
//! Without `NOTIFY_SOCKET` (not under systemd) every call is a no-op. Time
//! comes from a [`Clock`](crate::clock::Clock) and messages go through a
//! [`Notifier`], so the rules above are tested on simulated time.

use std::time::{Duration, Instant};

use sd_notify::NotifyState;

use crate::clock::SharedClock;

/// Where notifications go: systemd's socket, or a test's list.
pub trait Notifier: Send {
    fn notify(&mut self, states: &[NotifyState<'_>]);
}

/// `sd_notify` to `$NOTIFY_SOCKET` (honours `WATCHDOG_PID`).
struct Systemd;

impl Notifier for Systemd {
    fn notify(&mut self, states: &[NotifyState<'_>]) {
        if let Err(e) = sd_notify::notify(states) {
            tracing::debug!(error = %e, "sd_notify failed");
        }
    }
}

pub struct Service {
    watchdog: Option<Duration>,
    last_ping: Option<Instant>,
    ready: bool,
    last_status: Option<Instant>,
    clock: SharedClock,
    notifier: Box<dyn Notifier>,
}

/// STATUS= lines are sent at most this often.
const STATUS_EVERY: Duration = Duration::from_secs(5);

impl Service {
    pub fn from_env() -> Self {
        Self::new(sd_notify::watchdog_enabled(), crate::clock::system(), Box::new(Systemd))
    }

    /// `watchdog`: systemd's `WatchdogSec`, if enabled.
    pub fn new(watchdog: Option<Duration>, clock: SharedClock, notifier: Box<dyn Notifier>) -> Self {
        Self { watchdog, last_ping: None, ready: false, last_status: None, clock, notifier }
    }

    /// A frame was analysed: READY the first time, WATCHDOG when due.
    pub fn frame_analysed(&mut self) {
        if !self.ready {
            self.ready = true;
            self.notifier.notify(&[NotifyState::Ready, NotifyState::Status("analysing")]);
            tracing::info!("ready: camera, model and spool are up");
        }
        let now = self.clock.instant();
        if let Some(interval) = self.watchdog
            && self.last_ping.is_none_or(|t| now.duration_since(t) >= interval / 2)
        {
            self.last_ping = Some(now);
            self.notifier.notify(&[NotifyState::Watchdog]);
        }
    }

    /// A status line, rate-limited unless `urgent`.
    pub fn status(&mut self, text: &str, urgent: bool) {
        let now = self.clock.instant();
        if urgent || self.last_status.is_none_or(|t| now.duration_since(t) >= STATUS_EVERY) {
            self.last_status = Some(now);
            self.notifier.notify(&[NotifyState::Status(text)]);
        }
    }

    pub fn stopping(&mut self) {
        self.notifier
            .notify(&[NotifyState::Stopping, NotifyState::Status("stopping: finishing the clip, flushing the spool")]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::SimulatedClock;
    use std::sync::{Arc, Mutex};

    struct Recorder(Arc<Mutex<Vec<String>>>);
    impl Notifier for Recorder {
        fn notify(&mut self, states: &[NotifyState<'_>]) {
            self.0.lock().unwrap().extend(states.iter().map(|s| s.to_string()));
        }
    }

    #[test]
    fn ready_once_then_a_watchdog_ping_every_half_interval_of_analysed_frames() {
        let clock = SimulatedClock::new("2026-11-24T09:00:00Z".parse().unwrap());
        let sent = Arc::new(Mutex::new(vec![]));
        let mut s = Service::new(Some(Duration::from_secs(30)), clock.clone(), Box::new(Recorder(sent.clone())));
        let pings = |sent: &Arc<Mutex<Vec<String>>>| sent.lock().unwrap().iter().filter(|m| *m == "WATCHDOG=1").count();
        // 30 FPS for 40 simulated seconds: pings at 0, 15 and 30 s.
        for _ in 0..1200 {
            s.frame_analysed();
            clock.advance(Duration::from_millis(33));
        }
        let all = sent.lock().unwrap().clone();
        assert_eq!(all.iter().filter(|m| *m == "READY=1").count(), 1);
        assert_eq!(pings(&sent), 3, "{all:?}");
        // No frames for a minute: no pings (systemd restarts a stalled agent).
        clock.advance(Duration::from_secs(60));
        assert_eq!(pings(&sent), 3);
        s.frame_analysed();
        assert_eq!(pings(&sent), 4, "frames again: pinged at once");
    }

    #[test]
    fn status_lines_are_rate_limited_unless_urgent() {
        let clock = SimulatedClock::new("2026-11-24T09:00:00Z".parse().unwrap());
        let sent = Arc::new(Mutex::new(vec![]));
        let mut s = Service::new(None, clock.clone(), Box::new(Recorder(sent.clone())));
        for i in 0..100 {
            s.status(&format!("frame {i}"), false);
            clock.advance(Duration::from_millis(100));
        }
        s.status("camera lost", true);
        let all = sent.lock().unwrap().clone();
        // 10 simulated seconds: at 0 s, 5 s; plus the urgent one.
        assert_eq!(all, vec!["STATUS=frame 0", "STATUS=frame 50", "STATUS=camera lost"], "{all:?}");
    }
}
