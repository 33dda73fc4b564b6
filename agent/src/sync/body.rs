//! The body of a batch: the spool's rows as the wire type `proto::Batch`
//! (CONTRACTS.md "Upstream"), gzip'd for the uplink and the SD card.

use proto::{Batch, Score};

use crate::spool::BatchRows;

/// The JSON body of a batch. Angles are rounded to 0.1 degree (they are
/// stored as f32; more digits are noise). `every_nth_frame = N` keeps the
/// scores whose frame number is a multiple of N.
pub fn batch_body(device_id: &str, every_nth_frame: u32, rows: &BatchRows, batch_id: &str) -> Vec<u8> {
    let round = |v: Option<f32>| v.map(|v| (v * 10.0).round() / 10.0);
    let nth = every_nth_frame.max(1) as u64;
    let batch = Batch {
        session_id: rows.session_id.clone(),
        student_id: rows.student_id.clone(),
        device_id: device_id.to_string(),
        batch_id: batch_id.to_string(),
        scores: rows
            .scores
            .iter()
            .filter(|(_, s)| s.frame % nth == 0)
            .map(|(_, s)| Score {
                ts: s.ts.into(),
                frame: s.frame,
                focus_score: s.focus_score,
                num_faces: s.num_faces,
                yaw_deg: round(s.yaw_deg),
                pitch_deg: round(s.pitch_deg),
                reasons: s.reasons.clone(),
            })
            .collect(),
        incidents: rows
            .incidents
            .iter()
            .map(|(i, clips)| i.to_wire(clips.iter().map(|c| c.to_wire()).collect()))
            .collect(),
    };
    serde_json::to_vec(&batch).expect("JSON of plain data")
}

/// The JSON of a stored body (plain bytes if it is not gzip'd).
pub fn gunzip(data: &[u8]) -> Vec<u8> {
    use std::io::Read;
    let mut out = Vec::with_capacity(data.len() * 8);
    match flate2::read::GzDecoder::new(data).read_to_end(&mut out) {
        Ok(_) => out,
        Err(_) => data.to_vec(),
    }
}

/// gzip at the best level: bodies are small, the uplink is what costs.
pub fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut enc = flate2::write::GzEncoder::new(Vec::with_capacity(data.len() / 4), flate2::Compression::best());
    enc.write_all(data).expect("gzip to memory");
    enc.finish().expect("gzip to memory")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Incident, Reason, Score as DomainScore};
    use crate::spool::UploadedClip;

    #[test]
    fn a_body_has_the_contract_fields_and_rounded_angles() {
        let t = |s: &str| s.parse::<chrono::DateTime<chrono::Utc>>().unwrap();
        let rows = BatchRows {
            session_id: Some("s1".into()),
            student_id: Some("x1".into()),
            scores: (0..4)
                .map(|f| {
                    (
                        f as i64 + 1,
                        DomainScore {
                            session_id: Some("s1".into()),
                            student_id: Some("x1".into()),
                            frame: f,
                            ts: t("2026-11-24T09:00:00.033Z"),
                            focus_score: 87,
                            num_faces: 1,
                            yaw_deg: Some(-4.2),
                            pitch_deg: None,
                            reasons: vec![Reason::LookingAway],
                        },
                    )
                })
                .collect(),
            incidents: vec![(
                Incident {
                    id: "i1".into(),
                    session_id: Some("s1".into()),
                    student_id: Some("x1".into()),
                    started: t("2026-11-24T09:00:00Z"),
                    ended: None,
                    min_score: 12,
                    reasons: vec![Reason::NoFace],
                    clip_path: None,
                },
                vec![UploadedClip { key: "p/s1/x1/i1.mp4".into(), url: "s3://b/p/s1/x1/i1.mp4".into(), bytes: 9 }],
            )],
        };
        let v: serde_json::Value = serde_json::from_slice(&batch_body("desk-1", 2, &rows, "b-1")).unwrap();
        assert_eq!(v["session_id"], "s1");
        assert_eq!(v["student_id"], "x1");
        assert_eq!(v["device_id"], "desk-1");
        assert_eq!(v["batch_id"], "b-1");
        let scores = v["scores"].as_array().unwrap();
        assert_eq!(scores.iter().map(|s| s["frame"].as_u64().unwrap()).collect::<Vec<_>>(), vec![0, 2], "every 2nd");
        assert_eq!(scores[0]["yaw_deg"].to_string(), "-4.2");
        assert!(scores[0]["pitch_deg"].is_null());
        assert_eq!(scores[0]["reasons"][0], "looking_away");
        assert_eq!(scores[0]["focus_score"], 87);
        let i = &v["incidents"][0];
        assert_eq!(i["type"], "incident");
        assert_eq!(i["clip"]["key"], "p/s1/x1/i1.mp4");
        assert!(i["ended"].is_null());
    }
}
