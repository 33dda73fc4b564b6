//! The systemd side of the agent: READY, WATCHDOG, STATUS and STOPPING.
//!
//! - READY=1 is sent once, after the model and spool are open and the first
//!   camera frame has been analysed.
//! - WATCHDOG=1 is sent only from the analysis loop, after a frame was
//!   analysed, at half the watchdog interval: a stalled pipeline stops the
//!   pings and systemd restarts the agent.
//! - STATUS= says what the agent does, at most once every few seconds.
//!
//! Without `NOTIFY_SOCKET` (not under systemd) every call is a no-op.

use std::time::{Duration, Instant};

use sd_notify::NotifyState;

pub struct Service {
    watchdog: Option<Duration>,
    last_ping: Option<Instant>,
    ready: bool,
    last_status: Option<Instant>,
}

/// STATUS= lines are sent at most this often.
const STATUS_EVERY: Duration = Duration::from_secs(5);

impl Service {
    pub fn from_env() -> Self {
        Self { watchdog: sd_notify::watchdog_enabled(), last_ping: None, ready: false, last_status: None }
    }

    fn send(&self, states: &[NotifyState]) {
        if let Err(e) = sd_notify::notify(states) {
            tracing::debug!(error = %e, "sd_notify failed");
        }
    }

    /// A frame was analysed: READY the first time, WATCHDOG when due.
    pub fn frame_analysed(&mut self) {
        if !self.ready {
            self.ready = true;
            self.send(&[NotifyState::Ready, NotifyState::Status("analysing")]);
            tracing::info!("ready: camera, model and spool are up");
        }
        if let Some(interval) = self.watchdog
            && self.last_ping.is_none_or(|t| t.elapsed() >= interval / 2)
        {
            self.last_ping = Some(Instant::now());
            self.send(&[NotifyState::Watchdog]);
        }
    }

    /// A status line, rate-limited unless `urgent`.
    pub fn status(&mut self, text: &str, urgent: bool) {
        if urgent || self.last_status.is_none_or(|t| t.elapsed() >= STATUS_EVERY) {
            self.last_status = Some(Instant::now());
            self.send(&[NotifyState::Status(text)]);
        }
    }

    pub fn stopping(&self) {
        self.send(&[NotifyState::Stopping, NotifyState::Status("stopping: finishing the clip, flushing the spool")]);
    }
}
