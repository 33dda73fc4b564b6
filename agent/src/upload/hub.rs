//! Clips through the hub: the box PUTs each clip file to
//! `{hub}/api/device/incidents/{incident}/clips/{part}` with its device
//! token; the hub checks the incident is this desk's, picks the object key
//! and stores it. The box holds no storage keys and can name no key.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::UploadError;
use crate::credentials::HUB_TOKEN;
use crate::spool::PendingClip;

/// A clip larger than this is not sent (a 10 s clip is about 1.3 MB; a
/// clip chained at six lengths about 8 MB).
pub const MAX_CLIP_BYTES: u64 = 512 << 20;

pub struct HubTarget {
    url: String,
    token_file: PathBuf,
    client: reqwest::Client,
}

impl HubTarget {
    pub fn new(url: &str, token_file: &Path, timeout: Duration) -> Result<Self, UploadError> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(Duration::from_secs(5))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("invigil/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| UploadError::Config { field: "hub.url", message: e.to_string() })?;
        Ok(HubTarget { url: url.trim_end_matches('/').to_string(), token_file: token_file.to_path_buf(), client })
    }

    pub fn describe(&self) -> String {
        format!("{} (through the hub)", self.url)
    }

    /// Sends one clip; the hub's answer names the object.
    pub async fn put(&self, clip: &PendingClip) -> Result<proto::Clip, String> {
        let token = HUB_TOKEN.read(&self.token_file).map_err(|e| e.to_string())?;
        let body = tokio::fs::read(&clip.path).await.map_err(|e| e.to_string())?;
        let len = body.len() as u64;
        if len > MAX_CLIP_BYTES {
            return Err(format!("{len} bytes is over the {MAX_CLIP_BYTES} a clip may have"));
        }
        let part = part_of(&clip.incident_id, &clip.path);
        let url = format!("{}{}/{}/clips/{part}", self.url, proto::device::DEVICE_CLIP_PATH, clip.incident_id);
        let resp = self
            .client
            .put(&url)
            .bearer_auth(token)
            .header(reqwest::header::CONTENT_TYPE, "video/mp4")
            .body(body)
            .send()
            .await
            .map_err(|e| format!("{url}: {e}"))?;
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        if !status.is_success() {
            // 409: the hub has not had this incident's batch yet; the
            // backoff gives sync the time to deliver it.
            let reply: String = text.chars().take(200).collect();
            return Err(format!("{url}: the hub answered HTTP {}: {reply}", status.as_u16()));
        }
        let c: proto::Clip =
            serde_json::from_str(&text).map_err(|e| format!("{url}: an answer that is not a clip: {e}"))?;
        if c.bytes != len {
            return Err(format!("{url}: the hub stored {} bytes of {len}", c.bytes));
        }
        Ok(c)
    }
}

/// The part number of a clip file: `INCIDENT.mp4` is 0, a chained
/// `INCIDENT-N.mp4` is N.
pub fn part_of(incident_id: &str, path: &Path) -> u32 {
    let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or_default();
    stem.strip_prefix(incident_id).and_then(|rest| rest.strip_prefix('-')).and_then(|n| n.parse().ok()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chained_files_are_numbered_parts() {
        let id = "desk-1-20261124T090000000Z-3";
        assert_eq!(part_of(id, Path::new(&format!("/c/{id}.mp4"))), 0);
        assert_eq!(part_of(id, Path::new(&format!("/c/{id}-2.mp4"))), 2);
        assert_eq!(part_of(id, Path::new("/c/other.mp4")), 0);
    }
}
