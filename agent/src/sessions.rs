//! The box's current exam session, set by the local control API or by the
//! hub, read by the run loop at every frame (a mutex nothing awaits while
//! holding, so a `std` one).
//!
//! Outside a session the box neither spools nor records unless
//! `session.always_on`; a new session recalibrates the baseline.

use std::sync::{Arc, Mutex};

use crate::domain::{Session, SessionSource};

#[derive(Clone, Default)]
pub struct Sessions {
    inner: Arc<Mutex<Option<(Session, SessionSource)>>>,
}

/// Why a start was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum StartError {
    /// Another session is running (its id).
    Running(String),
}

impl Sessions {
    pub fn current(&self) -> Option<Session> {
        self.inner.lock().unwrap().as_ref().map(|(s, _)| s.clone())
    }

    pub fn source(&self) -> Option<SessionSource> {
        self.inner.lock().unwrap().as_ref().map(|(_, src)| *src)
    }

    /// Starts a session from the local API; refused while one runs.
    pub fn start_local(&self, s: Session) -> Result<Session, StartError> {
        let mut cur = self.inner.lock().unwrap();
        if let Some((c, _)) = cur.as_ref() {
            return Err(StartError::Running(c.session_id.clone()));
        }
        *cur = Some((s.clone(), SessionSource::Local));
        Ok(s)
    }

    /// Stops the running session, if any; returns it.
    pub fn stop(&self) -> Option<Session> {
        self.inner.lock().unwrap().take().map(|(s, _)| s)
    }

    /// What the hub says the session is (None: no session). The hub's word
    /// replaces a local session. True when something changed.
    pub fn set_from_hub(&self, s: Option<Session>) -> bool {
        let mut cur = self.inner.lock().unwrap();
        let same = match (cur.as_ref(), s.as_ref()) {
            (Some((c, SessionSource::Hub)), Some(n)) => c.session_id == n.session_id,
            (None, None) => true,
            // A local session stays until the hub names one (or stops one it gave).
            (Some((_, SessionSource::Local)), None) => true,
            _ => false,
        };
        if !same {
            *cur = s.map(|s| (s, SessionSource::Hub));
        }
        !same
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(id: &str) -> Session {
        Session { session_id: id.into(), student_id: "x".into(), started: chrono::Utc::now(), exam_id: None }
    }

    #[test]
    fn a_second_local_start_is_refused_and_the_hub_replaces_a_local_session() {
        let ss = Sessions::default();
        ss.start_local(s("a")).unwrap();
        assert_eq!(ss.start_local(s("b")), Err(StartError::Running("a".into())));
        assert!(!ss.set_from_hub(None), "the hub saying nothing leaves a local session alone");
        assert!(ss.set_from_hub(Some(s("h1"))));
        assert_eq!(ss.source(), Some(SessionSource::Hub));
        assert!(!ss.set_from_hub(Some(s("h1"))), "the same session again is no change");
        assert!(ss.set_from_hub(None));
        assert_eq!(ss.current(), None);
    }
}
