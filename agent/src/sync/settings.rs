//! What the sync loop needs, every default documented, and how the config
//! gives it.

use std::path::PathBuf;
use std::time::Duration;

use crate::config::Validated;
use crate::credentials::{HUB_TOKEN, SYNC_TOKEN, Secret};

use super::SyncError;

/// What the sync loop needs.
#[derive(Clone, Debug)]
pub struct SyncSettings {
    /// `sync.endpoint`: where batches are POSTed.
    pub endpoint: String,
    /// `device_id` in each batch.
    pub device_id: String,
    /// File holding the bearer token (crate::credentials' rule for
    /// `sync.token_file`). None: no `Authorization` header. Read before
    /// each attempt, so a rotated token takes effect without a restart.
    pub token_file: Option<PathBuf>,
    /// Which secret `token_file` is (named in errors): the sync token, or
    /// the hub's device token.
    pub token_secret: Secret,
    /// `sync.interval_s`. Default 3 s.
    pub interval: Duration,
    /// Default 900 (30 s at 30 FPS).
    pub max_batch_scores: usize,
    /// Default 50.
    pub max_batch_incidents: usize,
    /// `sync.every_nth_frame`. Default 1.
    pub every_nth_frame: u32,
    /// Default 30 s for a whole request; 5 s to connect.
    pub request_timeout: Duration,
    pub connect_timeout: Duration,
    /// Default 1 s doubling to 60 s.
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    /// `Retry-After` is honoured up to this. Default 10 min.
    pub retry_after_max: Duration,
    /// Pause after a 401/403 unless the token changes. Default 5 min.
    pub auth_pause: Duration,
    /// How long to wait for the spool writer's next fsync before sending a
    /// new batch (else the sync loop fsyncs itself). Default 2 x commit
    /// interval + 0.5 s.
    pub durable_wait: Duration,
    /// Start with gzip'd bodies. Default true.
    pub gzip: bool,
}

impl SyncSettings {
    pub fn new(endpoint: impl Into<String>, device_id: impl Into<String>) -> Self {
        Self {
            endpoint: endpoint.into(),
            device_id: device_id.into(),
            token_file: None,
            token_secret: SYNC_TOKEN,
            interval: Duration::from_secs(3),
            max_batch_scores: 900,
            max_batch_incidents: 50,
            every_nth_frame: 1,
            request_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(5),
            backoff_min: Duration::from_secs(1),
            backoff_max: Duration::from_secs(60),
            retry_after_max: Duration::from_secs(600),
            auth_pause: Duration::from_secs(300),
            durable_wait: Duration::from_millis(2500),
            gzip: true,
        }
    }

    /// From the config: `sync.endpoint`, else the hub's ingest path when
    /// `[hub]` is set; `None` when neither is (scores then stay in the
    /// spool). The token file must hold a token now (it is read again
    /// before each attempt). Errors name the field.
    pub fn from_config(cfg: &Validated) -> Result<Option<Self>, SyncError> {
        let s = &cfg.raw.sync;
        let bad = |field: &'static str, message: String| SyncError::Config { field, message };
        let (endpoint, token_file, token_secret) = match (&s.endpoint, &cfg.hub) {
            (Some(e), _) => {
                check_url(e).map_err(|m| bad("sync.endpoint", m))?;
                let token = SYNC_TOKEN.load(s.token_file.as_deref())?;
                (e.clone(), token.map(|(p, _)| p), SYNC_TOKEN)
            }
            (None, Some(hub)) => {
                HUB_TOKEN.read(&hub.token_file)?;
                (hub.ingest_url(), Some(hub.token_file.clone()), HUB_TOKEN)
            }
            (None, None) => return Ok(None),
        };
        if !(1..=3600).contains(&s.interval_s) {
            return Err(bad("sync.interval_s", format!("{} is out of range; use 1 to 3600, such as 3", s.interval_s)));
        }
        if s.every_nth_frame == 0 {
            return Err(bad("sync.every_nth_frame", "0 is not allowed; use 1 (every frame) or more".into()));
        }
        let mut out = Self::new(endpoint, cfg.device_id.clone());
        out.token_file = token_file;
        out.token_secret = token_secret;
        out.interval = Duration::from_secs(s.interval_s);
        out.every_nth_frame = s.every_nth_frame;
        out.durable_wait = Duration::from_millis(cfg.commit_interval_ms * 2 + 500);
        Ok(Some(out))
    }
}

/// An http(s) URL with a host, or what to write instead.
pub fn check_url(url: &str) -> Result<(), String> {
    match reqwest::Url::parse(url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => Ok(()),
        _ => Err(format!("{url:?} is not an http(s) URL; use e.g. \"https://exam.example/api/exam/analyze-batch\"")),
    }
}
