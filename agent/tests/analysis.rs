//! The analyzer and the incident tracker together, on the real model and a
//! real photo.

mod support;

use agent::domain::Reason;
use agent::incident::{Change, Tracker};
use models::RgbFrame;

/// Frame `i`'s time at 30 FPS.
fn ts(i: u64) -> chrono::DateTime<chrono::Utc> {
    "2026-11-24T09:00:00Z".parse::<chrono::DateTime<chrono::Utc>>().unwrap()
        + chrono::Duration::milliseconds(i as i64 * 33)
}

#[test]
fn a_lost_camera_is_an_incident_at_once_and_a_face_again_closes_it() {
    let mut an = support::analyzer().expect("run scripts/fetch-assets");
    let (w, h, rgb) = support::astronaut_rgb();
    let frame = RgbFrame::packed(w, h, &rgb).unwrap();
    let mut tracker = Tracker::default();
    let mut t = 0;
    // Five seconds of a face: calibrated, no incident.
    for i in 0..150 {
        let a = an.analyse(&frame, i, t, ts(i)).unwrap();
        assert!(tracker.update(&a, None).is_none(), "frame {i}: {a:?}");
        t += 33;
    }
    // One lost frame, far shorter than persistence_ms: an incident now.
    let a = an.camera_lost(150, t, ts(150));
    assert_eq!((a.focus_score, a.alert, a.reasons.clone()), (0, true, vec![Reason::CameraLost]));
    let Some(Change::Opened(row)) = tracker.update(&a, None) else { panic!("no incident opened") };
    assert_eq!(row.reasons, vec![Reason::CameraLost]);
    // The face is back: the incident closes within a few seconds.
    let closed = (151..301).find_map(|i| {
        t += 33;
        let a = an.analyse(&frame, i, t, ts(i)).unwrap();
        match tracker.update(&a, None) {
            Some(Change::Closed(row)) => Some((i, row)),
            _ => None,
        }
    });
    let (i, row) = closed.expect("the incident closes once frames with a face return");
    assert!(i < 151 + 90, "closed at frame {i}");
    assert_eq!(row.min_score, 0);
}
