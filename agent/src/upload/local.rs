//! The clip files on the box (guarantees 4 and 5 of [`crate::upload`]):
//! the disk quota, the age limit of uploaded copies, and the size of the
//! default local outbox. Only uploaded clips are ever deleted, never a
//! pending one.

use std::path::Path;
use std::sync::atomic::Ordering;

use object_store::ObjectStoreExt;

use super::{StoreUrl, Uploader};
use crate::spool::ClipState;

impl Uploader {
    /// With [`UploadSettings::bound_outbox`]: deletes the oldest files of
    /// the default outbox while it holds more than `clips_max_bytes`.
    /// Returns the bytes freed.
    pub async fn trim_outbox(&mut self) -> u64 {
        use futures_util::TryStreamExt;
        // Never a remote store, whatever the flag says.
        if !self.settings.bound_outbox || !matches!(self.settings.url, StoreUrl::File { .. }) {
            return 0;
        }
        let super::Target::Store { store, base_url, .. } = &self.target else { return 0 };
        let Ok(mut objects) = store.list(None).try_collect::<Vec<_>>().await else { return 0 };
        objects.sort_by(|a, b| (a.last_modified, &a.location).cmp(&(b.last_modified, &b.location)));
        let mut total: u64 = objects.iter().map(|o| o.size).sum();
        let mut freed = 0;
        for o in objects {
            if total <= self.settings.clips_max_bytes {
                break;
            }
            if store.delete(&o.location).await.is_ok() {
                total -= o.size;
                freed += o.size;
            }
        }
        if freed > 0 {
            tracing::info!(outbox = %base_url, freed_bytes = freed, max_bytes = self.settings.clips_max_bytes,
                "upload: the local outbox is over clips.max_disk_mb; deleted its oldest clips");
        }
        freed
    }

    /// Deletes the local files of clips uploaded more than `keep_uploaded`
    /// before `now` (their rows stay, `removed = 1`). Returns the bytes freed.
    pub fn expire_uploaded(&mut self, now: chrono::DateTime<chrono::Utc>) -> u64 {
        let Ok(clips) = self.spool.clips_on_disk() else { return 0 };
        let keep = chrono::Duration::from_std(self.settings.keep_uploaded).unwrap_or(chrono::Duration::MAX);
        let mut freed = 0;
        for c in clips {
            let Some(at) = c.uploaded_at else {
                continue; // pending (or of unknown upload time): never deleted for its age
            };
            if now - at >= keep && self.delete_local(c.id, &c.path) {
                freed += c.bytes;
                self.stats.expired.fetch_add(1, Ordering::Relaxed);
            }
        }
        if freed > 0 {
            tracing::info!(
                freed_bytes = freed,
                keep_h = self.settings.keep_uploaded.as_secs() / 3600,
                "upload: deleted the local copies of clips uploaded long enough ago"
            );
        }
        freed
    }

    /// Deletes an uploaded clip's local file and records it; true when the
    /// file is gone (also if it already was).
    fn delete_local(&mut self, id: i64, path: &Path) -> bool {
        let gone = std::fs::remove_file(path).is_ok() || !path.exists();
        if gone {
            let _ = self.spool.clip_removed(id);
        }
        gone
    }

    /// Deletes the oldest uploaded clips while the clip files exceed the
    /// quota. Returns the bytes freed.
    pub fn enforce_quota(&mut self) -> u64 {
        let Ok(clips) = self.spool.clips_on_disk() else { return 0 };
        let mut sizes = Vec::with_capacity(clips.len());
        for c in clips {
            let (id, path, bytes, uploaded) = (c.id, c.path, c.bytes, c.state == ClipState::Uploaded);
            match std::fs::metadata(&path) {
                Ok(m) => sizes.push((id, path, m.len(), uploaded)),
                // Gone already (by hand): only an uploaded one is settled.
                Err(_) if uploaded => {
                    let _ = self.spool.clip_removed(id);
                }
                Err(_) => sizes.push((id, path, bytes, uploaded)),
            }
        }
        let mut total: u64 = sizes.iter().map(|c| c.2).sum();
        let mut freed = 0;
        for (id, path, bytes, uploaded) in &sizes {
            if total <= self.settings.clips_max_bytes {
                break;
            }
            if !uploaded {
                continue;
            }
            if self.delete_local(*id, path) {
                total -= bytes;
                freed += bytes;
                self.stats.evicted.fetch_add(1, Ordering::Relaxed);
                self.stats.evicted_bytes.fetch_add(*bytes, Ordering::Relaxed);
            }
        }
        if freed > 0 {
            tracing::info!(
                freed_bytes = freed,
                max_bytes = self.settings.clips_max_bytes,
                "upload: clip quota: deleted the oldest uploaded clips"
            );
        }
        let over = total > self.settings.clips_max_bytes;
        if over && !self.stats.over_quota.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                bytes = total,
                max_bytes = self.settings.clips_max_bytes,
                "upload: clips over quota and none left that is uploaded; keeping the pending ones"
            );
        } else if !over {
            self.stats.over_quota.store(false, Ordering::Relaxed);
        }
        freed
    }
}
