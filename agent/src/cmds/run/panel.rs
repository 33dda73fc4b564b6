//! The desk's GPIO panel: the recording light follows the clip recorder,
//! and a debounced press of the call button becomes a `help_requested`
//! incident of the current session. A thread that ticks every 10 ms until its shutdown is raised.

use std::time::Duration;

use pipeline::ClipRecorder;

use crate::clock::SharedClock;
use crate::domain::{Incident, Reason};
use crate::sessions::Sessions;
use crate::shutdown::Shutdown;
use crate::spool::{Record, SpoolWriter};

/// How often the pins are read and set.
const TICK: Duration = Duration::from_millis(10);

pub fn spawn(
    mut pins: Box<dyn crate::gpio::Pins>,
    recorder: ClipRecorder,
    writer: SpoolWriter,
    device_id: String,
    sessions: Sessions,
    clock: SharedClock,
    shutdown: Shutdown,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new().name("gpio".into()).spawn(move || {
        let mut panel = crate::gpio::Panel::default();
        let start = clock.instant();
        let mut presses = 0u64;
        while !shutdown.wait_timeout(TICK) {
            let now = clock.instant().duration_since(start).as_millis() as u64;
            if panel.tick(pins.as_mut(), recorder.is_recording(), now).is_some() {
                presses += 1;
                let ts = clock.now();
                let id = format!("{device_id}-help-{}-{presses}", ts.format("%Y%m%dT%H%M%S%3fZ"));
                tracing::warn!(incident = %id, "call button: help requested");
                let session = sessions.current();
                writer.push(Record::Incident(Incident {
                    id,
                    session_id: session.as_ref().map(|s| s.session_id.clone()),
                    student_id: session.map(|s| s.student_id),
                    started: ts,
                    ended: Some(ts),
                    min_score: 100,
                    reasons: vec![Reason::HelpRequested],
                    clip_path: None,
                }));
            }
        }
        pins.set_light(false);
    })
}
