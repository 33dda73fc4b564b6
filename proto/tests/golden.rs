//! Golden JSON: the exact bytes each wire type is written as. A change that
//! renames, removes or reorders a field fails here (and in the agent and the
//! hub, which share these types). Adding a field means adding it to the
//! golden file too: a conscious, additive change.

use proto::analysis::AnalysisType;
use proto::device::{DeviceSession, DeviceState, FromDevice, Health, HealthState, OpenIncident, ToDevice};
use proto::{Analysis, Batch, Clip, Incident, LiveIncident, Reason, Score, Timestamp};

fn golden(name: &str) -> String {
    let p = format!("{}/tests/golden/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&p).unwrap().trim_end().to_string()
}

fn ts(s: &str) -> Timestamp {
    s.parse().unwrap()
}

/// Written exactly as the golden file, and read back to the same value.
fn check<T: serde::Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug>(name: &str, value: &T) {
    let text = golden(name);
    assert_eq!(serde_json::to_string(value).unwrap(), text, "{name}: written");
    assert_eq!(&serde_json::from_str::<T>(&text).unwrap(), value, "{name}: read");
}

#[test]
fn an_analysis_is_the_contract_example() {
    let a = Analysis {
        kind: AnalysisType::Analysis,
        device_id: "desk-017".into(),
        session_id: Some("exam-7-desk-017".into()),
        frame: 1234,
        ts: ts("2026-11-24T09:00:00.033Z"),
        focus_score: 87,
        face_detected: true,
        num_faces: 1,
        looking_away: false,
        yaw_deg: Some(-4.2),
        pitch_deg: Some(6.0),
        reasons: vec![],
        recording: false,
        latency_ms: 3.1,
        face_box: Some([119.8, 77.5, 204.2, 161.9]),
        t_ms: 41000,
        alert: false,
    };
    check("analysis.json", &a);
}

#[test]
fn a_batch_keeps_the_names_exam_platforms_accept() {
    let clip = Clip { key: "p/s1/x1/i1.mp4".into(), url: "s3://b/p/s1/x1/i1.mp4".into(), bytes: 9 };
    let b = Batch {
        session_id: Some("s1".into()),
        student_id: Some("x1".into()),
        device_id: "desk-1".into(),
        batch_id: "desk-1-1764000000000-7".into(),
        scores: vec![
            Score {
                ts: ts("2026-11-24T09:00:00.033Z"),
                frame: 0,
                focus_score: 87,
                num_faces: 1,
                yaw_deg: Some(-4.2),
                pitch_deg: None,
                reasons: vec![Reason::LookingAway],
            },
            Score {
                ts: ts("2026-11-24T09:00:00.066Z"),
                frame: 1,
                focus_score: 0,
                num_faces: 0,
                yaw_deg: None,
                pitch_deg: None,
                reasons: vec![Reason::NoFace, Reason::Talking, Reason::Other("phone".into())],
            },
        ],
        incidents: vec![Incident::new(
            "i1".into(),
            ts("2026-11-24T09:00:00.000Z"),
            None,
            12,
            vec![Reason::NoFace],
            vec![clip],
        )],
    };
    check("batch.json", &b);
    b.validate().unwrap();
}

#[test]
fn a_live_incident_carries_the_device_and_session() {
    let i = LiveIncident {
        device_id: "desk-1".into(),
        session_id: None,
        incident: Incident::new(
            "i2".into(),
            ts("2026-11-24T09:00:00.000Z"),
            Some(ts("2026-11-24T09:00:05.500Z")),
            0,
            vec![Reason::CameraLost],
            vec![],
        ),
    };
    check("live_incident.json", &i);
}

#[test]
fn device_messages_are_tagged_by_type() {
    let state = FromDevice::State(DeviceState {
        ts: Some(ts("2026-11-24T09:00:01.000Z")),
        session_id: Some("s1".into()),
        frame: Some(30),
        focus_score: Some(12),
        reasons: vec![Reason::NoFace],
        alert: true,
        recording: true,
        incident: Some(OpenIncident { id: "i1".into(), started: ts("2026-11-24T09:00:00.000Z") }),
        camera: Health::default(),
        encoder: Some("x264enc".into()),
        spool: Health::default(),
        sync: Health { state: HealthState::Degraded, reason: Some("61 s behind".into()) },
        pending_scores: 1830,
    });
    check("device_state.json", &state);
    let session = ToDevice::Session {
        session: Some(DeviceSession {
            session_id: "s1".into(),
            student_id: "x1".into(),
            exam_id: Some("7".into()),
            started: ts("2026-11-24T08:59:00.000Z"),
        }),
    };
    check("device_session.json", &session);
    let stop: ToDevice = serde_json::from_str(r#"{"type":"session","session":null}"#).unwrap();
    assert_eq!(stop, ToDevice::Session { session: None });
}

#[test]
fn validation_names_the_field_at_fault() {
    let mut b: Batch = serde_json::from_str(&golden("batch.json")).unwrap();
    b.scores[1].focus_score = 250;
    assert_eq!(b.validate().unwrap_err().to_string(), "scores[1].focus_score: 250 is out of range 0-100");
    b.scores[1].focus_score = 50;
    b.scores[0].yaw_deg = Some(f32::NAN);
    assert!(b.validate().unwrap_err().to_string().starts_with("scores[0].yaw_deg: "));
    b.scores[0].yaw_deg = None;
    b.incidents[0].ended = Some(ts("2026-11-24T08:00:00Z"));
    assert!(b.validate().unwrap_err().to_string().starts_with("incidents[0].ended: "));
    b.incidents[0].ended = None;
    b.device_id = "../etc".into();
    assert!(b.validate().unwrap_err().to_string().starts_with("device_id: "));
    // A negative frame is not even a batch.
    let neg = golden("batch.json").replacen("\"frame\":0", "\"frame\":-1", 1);
    assert!(serde_json::from_str::<Batch>(&neg).is_err());
}
