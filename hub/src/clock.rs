//! Time as a seam, as in the agent: code whose answer depends on the
//! hub's clock (receive times and clock skew at ingest, durations of open
//! incidents, a desk going offline) asks a [`Clock`] instead of calling
//! `Utc::now()`, so tests can set the time. What PostgreSQL decides by its
//! own `now()` (expiry of logins, retention) is moved in tests by moving
//! the stored times.

use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};

/// The hub's wall clock.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> DateTime<Utc>;
}

/// A clock shared by the parts of the hub.
pub type SharedClock = Arc<dyn Clock>;

/// The real clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// The real clock, shared.
pub fn system() -> SharedClock {
    Arc::new(SystemClock)
}

/// A clock that stands still until moved (tests).
#[derive(Debug)]
pub struct SimulatedClock(Mutex<DateTime<Utc>>);

impl SimulatedClock {
    pub fn new(at: DateTime<Utc>) -> Arc<SimulatedClock> {
        Arc::new(SimulatedClock(Mutex::new(at)))
    }

    pub fn advance(&self, d: chrono::Duration) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) += d;
    }
}

impl Clock for SimulatedClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}
