//! What `invigil run` builds from a checked config before it starts
//! anything: the sync, upload, server and hub-link settings with their
//! secrets read.
//! `invigil check` builds exactly the same parts, so a config that `run`
//! would refuse fails `check` with the same message (tested in
//! `tests/e2e/check.rs`).

use crate::Failure;
use crate::config::Validated;
use crate::credentials::{HUB_TOKEN, SERVER_TOKEN};
use crate::hub_link::HubLinkSettings;
use crate::sync::SyncSettings;
use crate::upload::UploadSettings;

/// Everything `run` needs besides the model, the camera and the spool.
#[derive(Debug)]
pub struct Plan {
    pub sync: Option<SyncSettings>,
    pub upload: UploadSettings,
    pub server_token: Option<String>,
    pub hub: Option<HubLinkSettings>,
}

/// Each part on its own, for `check`'s lines.
pub struct Parts {
    pub sync: Result<Option<SyncSettings>, String>,
    pub upload: Result<UploadSettings, String>,
    pub server_token: Result<Option<String>, String>,
    pub hub: Result<Option<HubLinkSettings>, String>,
}

impl Parts {
    pub fn of(cfg: &Validated) -> Parts {
        Parts {
            sync: SyncSettings::from_config(cfg).map_err(|e| e.to_string()),
            upload: UploadSettings::from_config(cfg)
                // Build the store as the upload loop will (no network): a
                // bad endpoint or bucket name fails here, not at start.
                .and_then(|u| u.validate().map(|_| u))
                .map_err(|e| e.to_string()),
            server_token: SERVER_TOKEN
                .load(cfg.raw.server.token_file.as_deref())
                .map(|t| t.map(|(_, t)| t))
                .map_err(|e| e.to_string()),
            hub: match HubLinkSettings::from_config(cfg) {
                Some(h) => HUB_TOKEN.read(&h.token_file).map(|_| Some(h)).map_err(|e| e.to_string()),
                None => Ok(None),
            },
        }
    }
}

impl Plan {
    /// All parts, or the first that fails (bad config: exit 2).
    pub fn build(cfg: &Validated) -> Result<Plan, Failure> {
        let p = Parts::of(cfg);
        Ok(Plan {
            server_token: p.server_token.map_err(Failure::usage)?,
            sync: p.sync.map_err(Failure::usage)?,
            upload: p.upload.map_err(Failure::usage)?,
            hub: p.hub.map_err(Failure::usage)?,
        })
    }
}
