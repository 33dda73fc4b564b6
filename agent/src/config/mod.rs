//! The TOML config (`../shared/CONTRACTS.md`, README "Config"). Every key is
//! optional; unknown keys are an error that names them. [`Config::load`]
//! parses and [`Config::validate`] checks values, naming the field and a
//! good value.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::credentials::{HUB_TOKEN, SERVER_TOKEN};

mod score;
pub use score::Score;

/// Where `invigil run` looks when `--config` is not given.
pub const SYSTEM_CONFIG: &str = "/etc/invigil/config.toml";
/// Data folder of the built-in defaults (relative to the working directory).
pub const DEFAULT_DATA_DIR: &str = "invigil-data";

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Default: the host name.
    pub device_id: Option<String>,
    pub camera: Camera,
    pub model: Model,
    pub score: Score,
    pub clips: Clips,
    pub spool: Spool,
    pub sync: Sync,
    pub storage: Storage,
    pub server: Server,
    pub gpio: Option<Gpio>,
    pub session: Session,
    pub hub: Option<Hub>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Camera {
    /// "v4l2:/dev/video0" | "libcamera" | "nvargus" | "file:PATH" | "test". Default "test".
    pub source: String,
    /// Default 640 (480 with profile "low").
    pub width: Option<u32>,
    /// Default 480 (360 with profile "low").
    pub height: Option<u32>,
    /// Default 30 (15 with profile "low").
    pub fps: Option<u32>,
    /// "standard" (640x480@30) or "low" (480x360@15). Default "standard".
    pub profile: String,
    /// Mains frequency, 50 or 60: sets the USB camera's anti-flicker control
    /// (and aperture-priority auto exposure). Default: leave the camera as it is.
    pub mains_hz: Option<u32>,
}

impl Default for Camera {
    fn default() -> Self {
        Self { source: "test".into(), width: None, height: None, fps: None, profile: "standard".into(), mains_hz: None }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Model {
    /// "auto" (default: LiteRT when its library loads, else tflite),
    /// "litert" or "tflite".
    pub backend: String,
    /// The LiteRT library. Default: `$INVIGIL_LITERT_LIB`, then
    /// "/usr/lib/invigil/libLiteRt.so", then where scripts/fetch-litert puts
    /// it (`~/.cache/invigil/litert/<arch>/libLiteRt.so`).
    pub litert_lib: Option<PathBuf>,
    /// Default "models/face_detection_short_range.tflite", then
    /// "/usr/share/invigil/models/face_detection_short_range.tflite".
    pub path: Option<PathBuf>,
    /// Inference threads. Default 1.
    pub threads: usize,
}

impl Default for Model {
    fn default() -> Self {
        Self { backend: "auto".into(), path: None, litert_lib: None, threads: 1 }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Clips {
    /// Default 10.
    pub length_s: u32,
    /// Default 3.
    pub preroll_s: u32,
    /// Default "<data dir>/clips".
    pub dir: Option<PathBuf>,
    /// Default 2048.
    pub max_disk_mb: u64,
    /// Most clip files recorded in one exam session (a chained clip counts
    /// as one more); later incidents are kept without a clip. 0 records
    /// none. Default 30 (five minutes of 10 s clips).
    pub max_per_session: u32,
    /// Hours an uploaded clip's local copy is kept (0: deleted once its
    /// upload is confirmed). Default 24. Clips not uploaded are kept.
    pub keep_uploaded_h: u32,
    /// "auto" or an element name. Default "auto".
    pub encoder: String,
}

impl Default for Clips {
    fn default() -> Self {
        Self {
            length_s: 10,
            preroll_s: 3,
            dir: None,
            max_disk_mb: 2048,
            max_per_session: 30,
            keep_uploaded_h: 24,
            encoder: "auto".into(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Spool {
    /// Default "<data dir>/spool.sqlite".
    pub path: Option<PathBuf>,
    /// Default 1000.
    pub commit_interval_ms: u64,
    /// Default 512.
    pub max_disk_mb: u64,
    /// Hours delivered (or dead-lettered) scores stay in the spool. Default 24.
    pub keep_delivered_h: u32,
}

impl Default for Spool {
    fn default() -> Self {
        Self { path: None, commit_interval_ms: 1000, max_disk_mb: 512, keep_delivered_h: 24 }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Sync {
    /// Absent: scores stay in the spool.
    pub endpoint: Option<String>,
    /// Default 3.
    pub interval_s: u64,
    pub token_file: Option<PathBuf>,
    /// Default 1 (every frame).
    pub every_nth_frame: u32,
}

impl Default for Sync {
    fn default() -> Self {
        Self { endpoint: None, interval_s: 3, token_file: None, every_nth_frame: 1 }
    }
}

/// `[storage]`: the same keys in the agent and the hub.
pub use conf::storage::StorageSection as Storage;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Server {
    /// Default "127.0.0.1:8000".
    pub listen: String,
    /// Required when `listen` is not a loopback address.
    pub token_file: Option<PathBuf>,
}

impl Default for Server {
    fn default() -> Self {
        Self { listen: "127.0.0.1:8000".into(), token_file: None }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Gpio {
    pub recording_led: Option<u8>,
    pub call_button: Option<u8>,
}

/// `[hub]`: the school's hub this box reports to (`invigil-hub`). With it
/// the box sends its batches to `{url}/api/exam/analyze-batch` (unless
/// `sync.endpoint` says otherwise), learns its exam sessions from the hub,
/// and uploads clips through the hub, holding no storage keys.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hub {
    /// "https://hub.example" (http:// only on a trusted network).
    pub url: String,
    /// The device token `invigil-hub device add` printed. Default: the
    /// systemd credential `hub-token`, else /etc/invigil/hub.token.
    pub token_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Session {
    /// Score, spool and record without an exam session. Default false.
    pub always_on: bool,
}

/// A config error: one line naming the file and the field.
pub use conf::file::ConfigError;

/// A checked config with every default filled in.
#[derive(Debug, Clone)]
pub struct Validated {
    pub device_id: String,
    pub source: pipeline::Source,
    pub width: u32,
    pub height: u32,
    pub fps: u32,
    pub model_path: PathBuf,
    pub model_threads: usize,
    pub model_backend: models::Backend,
    /// `model.litert_lib`; None: LiteRT's own search (models::LiteRt::load).
    pub litert_lib: Option<PathBuf>,
    pub score: models::ScoreConfig,
    /// Which second-stage signals run, and how often (`[score]`).
    pub signals: models::SignalConfig,
    pub clips_dir: PathBuf,
    pub clip_length_s: u32,
    pub preroll_s: u32,
    pub clips_max_disk_mb: u64,
    pub clips_max_per_session: u32,
    pub clips_keep_uploaded_h: u32,
    pub encoder: String,
    pub spool_path: PathBuf,
    pub commit_interval_ms: u64,
    pub spool_max_disk_mb: u64,
    pub spool_keep_delivered_h: u32,
    pub listen: std::net::SocketAddr,
    pub always_on: bool,
    /// `[hub]`, checked.
    pub hub: Option<HubConfig>,
    pub raw: Config,
}

/// A checked `[hub]`.
#[derive(Debug, Clone, PartialEq)]
pub struct HubConfig {
    /// Without a trailing slash.
    pub url: String,
    /// Where the device token is (by crate::credentials' rule).
    pub token_file: PathBuf,
}

impl HubConfig {
    /// Where batches go.
    pub fn ingest_url(&self) -> String {
        format!("{}/api/exam/analyze-batch", self.url)
    }

    /// The box's WebSocket to the hub (`ws://` or `wss://`).
    pub fn ws_url(&self) -> String {
        let rest = self.url.strip_prefix("https://").map(|r| format!("wss://{r}"));
        let ws = rest.unwrap_or_else(|| format!("ws://{}", self.url.trim_start_matches("http://")));
        format!("{ws}{}", proto::device::DEVICE_WS_PATH)
    }

    /// Where a clip of an incident is PUT (`part` 0 for its first file).
    pub fn clip_url(&self, incident_id: &str, part: u32) -> String {
        format!("{}{}/{incident_id}/clips/{part}", self.url, proto::device::DEVICE_CLIP_PATH)
    }
}

impl Config {
    /// Reads and parses `path`; unknown keys and wrong types are errors
    /// naming the key (the rule shared with the other binary, [`conf::file`]).
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        conf::file::load(path)
    }

    pub fn parse(text: &str, file: &str) -> Result<Config, ConfigError> {
        conf::file::parse(text, file)
    }

    /// Checks values and fills in defaults. `file` names the config in errors.
    pub fn validate(self, file: &str) -> Result<Validated, ConfigError> {
        let err = |field: &str, msg: String| ConfigError::field(file, field, msg);
        let source: pipeline::Source = self.camera.source.parse().map_err(|m| err("camera.source", m))?;
        let (dw, dh, df) = match self.camera.profile.as_str() {
            "standard" => (640, 480, 30),
            "low" => (480, 360, 15),
            other => {
                return Err(err("camera.profile", format!("{other:?} is not a profile; use \"standard\" or \"low\"")));
            }
        };
        let width = self.camera.width.unwrap_or(dw);
        let height = self.camera.height.unwrap_or(dh);
        let fps = self.camera.fps.unwrap_or(df);
        if !(32..=3840).contains(&width) || !width.is_multiple_of(2) {
            return Err(err("camera.width", format!("{width} is out of range; use an even number such as 640")));
        }
        if !(32..=2160).contains(&height) || !height.is_multiple_of(2) {
            return Err(err("camera.height", format!("{height} is out of range; use an even number such as 480")));
        }
        if !(1..=60).contains(&fps) {
            return Err(err("camera.fps", format!("{fps} is out of range; use 1 to 60, such as 30")));
        }
        if let Some(hz) = self.camera.mains_hz
            && hz != 50
            && hz != 60
        {
            return Err(err("camera.mains_hz", format!("{hz} is not a mains frequency; use 50 or 60")));
        }
        let model_backend: models::Backend = self.model.backend.parse().map_err(|m| err("model.backend", m))?;
        if !(1..=8).contains(&self.model.threads) {
            return Err(err("model.threads", format!("{} is out of range; use 1 to 8", self.model.threads)));
        }
        let (score, signals) = self.score.validate().map_err(|(field, m)| err(field, m))?;
        let c = &self.clips;
        if !(2..=120).contains(&c.length_s) {
            return Err(err("clips.length_s", format!("{} is out of range; use 2 to 120, such as 10", c.length_s)));
        }
        if c.preroll_s >= c.length_s {
            return Err(err(
                "clips.preroll_s",
                format!("{} must be shorter than clips.length_s ({})", c.preroll_s, c.length_s),
            ));
        }
        if c.max_per_session > 10_000 {
            return Err(err(
                "clips.max_per_session",
                format!("{} is over 10000; use e.g. 30 (0 records no clips)", c.max_per_session),
            ));
        }
        if c.keep_uploaded_h > 8760 {
            return Err(err(
                "clips.keep_uploaded_h",
                format!("{} is over a year; use e.g. 24 (0 deletes a clip once uploaded)", c.keep_uploaded_h),
            ));
        }
        if !(1..=8760).contains(&self.spool.keep_delivered_h) {
            return Err(err(
                "spool.keep_delivered_h",
                format!("{} is out of range; use 1 to 8760 hours, such as 24", self.spool.keep_delivered_h),
            ));
        }
        if !(100..=60_000).contains(&self.spool.commit_interval_ms) {
            return Err(err(
                "spool.commit_interval_ms",
                format!("{} is out of range; use 100 to 60000, such as 1000", self.spool.commit_interval_ms),
            ));
        }
        let listen: std::net::SocketAddr = self.server.listen.parse().map_err(|_| {
            err("server.listen", format!("{:?} is not an address; use e.g. \"127.0.0.1:8000\"", self.server.listen))
        })?;
        if !listen.ip().is_loopback() && SERVER_TOKEN.locate(self.server.token_file.as_deref()).is_none() {
            return Err(err(
                "server.token_file",
                format!("required because server.listen ({listen}) is not a loopback address"),
            ));
        }
        let hub = match &self.hub {
            None => None,
            Some(h) => {
                let url = h.url.trim_end_matches('/').to_string();
                match reqwest::Url::parse(&url) {
                    Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {}
                    _ => {
                        return Err(err(
                            "hub.url",
                            format!("{:?} is not a hub address; use e.g. \"https://hub.example\"", h.url),
                        ));
                    }
                }
                let Some(token_file) = HUB_TOKEN.locate(h.token_file.as_deref()) else {
                    return Err(err(
                        "hub.token_file",
                        "required with [hub] (the token `invigil-hub device add` printed; or the systemd credential hub-token, or /etc/invigil/hub.token)".into(),
                    ));
                };
                Some(HubConfig { url, token_file })
            }
        };
        let data = PathBuf::from(DEFAULT_DATA_DIR);
        let device_id = match &self.device_id {
            Some(d)
                if d.is_empty()
                    || d.len() > 64
                    || !d.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) =>
            {
                return Err(err(
                    "device_id",
                    format!("{d:?} must be 1-64 letters, digits, '-', '_' or '.'; such as \"desk-017\""),
                ));
            }
            Some(d) => d.clone(),
            None => hostname(),
        };
        Ok(Validated {
            device_id,
            source,
            width,
            height,
            fps,
            model_path: self.model.path.clone().unwrap_or_else(default_model_path),
            model_threads: self.model.threads,
            model_backend,
            litert_lib: self.model.litert_lib.clone(),
            score,
            signals,
            clips_dir: c.dir.clone().unwrap_or_else(|| data.join("clips")),
            clip_length_s: c.length_s,
            preroll_s: c.preroll_s,
            clips_max_disk_mb: c.max_disk_mb,
            clips_max_per_session: c.max_per_session,
            clips_keep_uploaded_h: c.keep_uploaded_h,
            encoder: c.encoder.clone(),
            spool_path: self.spool.path.clone().unwrap_or_else(|| data.join("spool.sqlite")),
            commit_interval_ms: self.spool.commit_interval_ms,
            spool_max_disk_mb: self.spool.max_disk_mb,
            spool_keep_delivered_h: self.spool.keep_delivered_h,
            listen,
            always_on: self.session.always_on,
            hub,
            raw: self,
        })
    }
}

/// `models/…` beside the working directory (a checkout), else the installed copy.
fn default_model_path() -> PathBuf {
    let local = PathBuf::from("models/face_detection_short_range.tflite");
    if local.exists() { local } else { PathBuf::from("/usr/share/invigil/models/face_detection_short_range.tflite") }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "invigil".into())
}

/// The config `--config` names, else the system one if present, else defaults.
pub fn resolve(path: Option<&Path>) -> Result<Validated, ConfigError> {
    match path {
        Some(p) => Config::load(p)?.validate(&p.display().to_string()),
        None if Path::new(SYSTEM_CONFIG).exists() => Config::load(Path::new(SYSTEM_CONFIG))?.validate(SYSTEM_CONFIG),
        None => Config::default().validate("built-in defaults"),
    }
}

#[cfg(test)]
mod tests;
