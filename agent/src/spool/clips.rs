//! Clip files and their upload state (used by [`crate::upload`]): the
//! oldest pending clip, marking it uploaded or lost, and the files still on
//! disk for the quota and the age limit.

use std::path::PathBuf;

use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension, params};

use super::states::{ClipState, Delivery, parse_ts, ts_text};
use super::{Spool, SpoolError, sq};

/// A clip already in object storage.
#[derive(Clone, Debug, PartialEq)]
pub struct UploadedClip {
    pub key: String,
    pub url: String,
    pub bytes: u64,
}

impl UploadedClip {
    pub fn to_wire(&self) -> proto::Clip {
        proto::Clip { key: self.key.clone(), url: self.url.clone(), bytes: self.bytes }
    }
}

/// A clip waiting for upload.
#[derive(Clone, Debug, PartialEq)]
pub struct PendingClip {
    pub id: i64,
    pub incident_id: String,
    pub path: PathBuf,
    pub bytes: u64,
    pub session_id: Option<String>,
    pub student_id: Option<String>,
}

/// A clip whose file is (meant to be) on the box.
#[derive(Clone, Debug, PartialEq)]
pub struct ClipOnDisk {
    pub id: i64,
    pub path: PathBuf,
    pub bytes: u64,
    pub state: ClipState,
    /// When it was uploaded (None while pending, and for clips uploaded by
    /// a build that did not record it).
    pub uploaded_at: Option<DateTime<Utc>>,
}

impl Spool {
    /// The oldest clip not yet uploaded, with its incident's session.
    pub fn next_clip(&self) -> Result<Option<PendingClip>, SpoolError> {
        self.conn
            .query_row(
                "SELECT c.id, c.incident_id, c.path, c.bytes, i.session_id, i.student_id
                 FROM clips c LEFT JOIN incidents i ON i.id = c.incident_id
                 WHERE c.uploaded = ?1 ORDER BY c.id LIMIT 1",
                [ClipState::Pending],
                |r| {
                    Ok(PendingClip {
                        id: r.get(0)?,
                        incident_id: r.get(1)?,
                        path: PathBuf::from(r.get::<_, String>(2)?),
                        bytes: r.get::<_, i64>(3)? as u64,
                        session_id: r.get(4)?,
                        student_id: r.get(5)?,
                    })
                },
            )
            .optional()
            .map_err(sq(&self.path))
    }

    /// Clips waiting for upload.
    pub fn pending_clips(&self) -> Result<u64, SpoolError> {
        self.conn
            .query_row("SELECT COUNT(*) FROM clips WHERE uploaded = ?1", [ClipState::Pending], |r| r.get::<_, i64>(0))
            .map(|n| n as u64)
            .map_err(sq(&self.path))
    }

    /// Records a finished upload; the incident is sent again with the clip.
    pub fn clip_uploaded(
        &mut self,
        clip: &PendingClip,
        key: &str,
        url: &str,
        now: DateTime<Utc>,
    ) -> Result<(), SpoolError> {
        let e = sq(&self.path);
        let tx = self.conn.transaction().map_err(&e)?;
        tx.execute(
            "UPDATE clips SET uploaded = ?5, object_key = ?2, object_url = ?3, uploaded_at = ?4 WHERE id = ?1",
            params![clip.id, key, url, ts_text(now), ClipState::Uploaded],
        )
        .map_err(&e)?;
        tx.execute(
            "UPDATE incidents SET delivered = ?2, rev = rev + 1 WHERE id = ?1",
            params![&clip.incident_id, Delivery::Pending],
        )
        .map_err(&e)?;
        tx.commit().map_err(&e)
    }

    /// Records that a clip's file is gone before it could be uploaded.
    pub fn clip_lost(&mut self, clip: &PendingClip) -> Result<(), SpoolError> {
        self.conn
            .execute("UPDATE clips SET uploaded = ?2, removed = 1 WHERE id = ?1", params![clip.id, ClipState::Lost])
            .map(|_| ())
            .map_err(sq(&self.path))
    }

    /// Clip files not yet deleted, oldest first.
    pub fn clips_on_disk(&self) -> Result<Vec<ClipOnDisk>, SpoolError> {
        let e = sq(&self.path);
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT id, path, bytes, uploaded, CASE WHEN uploaded = ?1 THEN uploaded_at END
                 FROM clips WHERE removed = 0 ORDER BY id",
            )
            .map_err(&e)?;
        stmt.query_map([ClipState::Uploaded], |r| {
            Ok(ClipOnDisk {
                id: r.get(0)?,
                path: PathBuf::from(r.get::<_, String>(1)?),
                bytes: r.get::<_, i64>(2)? as u64,
                state: r.get(3)?,
                uploaded_at: r.get::<_, Option<String>>(4)?.map(|t| parse_ts(&t)).transpose()?,
            })
        })
        .map_err(&e)?
        .collect::<Result<_, _>>()
        .map_err(&e)
    }

    /// Records that an uploaded clip's local file was deleted (quota, age).
    pub fn clip_removed(&mut self, id: i64) -> Result<(), SpoolError> {
        self.conn.execute("UPDATE clips SET removed = 1 WHERE id = ?1", [id]).map(|_| ()).map_err(sq(&self.path))
    }
}
