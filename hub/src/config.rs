//! The hub's config: TOML, every key optional but the database URL, an
//! unknown key an error that names it (`deny_unknown_fields` everywhere).
//! [`Config::validate`] checks values and fills in defaults; its errors name
//! the field and show a good value. The keys of `../shared/CONTRACTS.md`
//! ("The hub") are kept as they are; the rest are additions.
//!
//! ```toml
//! [database]
//! url = "postgres://invigil@127.0.0.1:5432/invigil"   # or url_file = "/etc/invigil-hub/database.url"
//! pool_size = 16                 # connections per hub process
//! ca_file = "/etc/invigil-hub/db-ca.pem"   # extra CA for ?sslmode=require (a managed service's bundle)
//! [server]
//! listen = "127.0.0.1:8080"
//! hub_id = "hub-a"               # default: host name and port; shown per desk in the rooms API
//! secure_cookies = true          # false only for plain-HTTP trials without a TLS proxy
//! login_hours = 12               # a console login lasts this long
//! shutdown_timeout_s = 20        # in-flight requests get this long after SIGTERM
//! [storage]
//! url = "file:///var/lib/invigil-hub/clips"   # or "s3://bucket/prefix"
//! endpoint = "https://s3.example"             # S3-compatible endpoint (MinIO, Supabase, …)
//! region = "eu-west-1"
//! credentials_file = "/etc/invigil-hub/s3.credentials"   # access_key_id=… / secret_access_key=…
//! [limits]
//! max_batch_kib = 4096           # a batch body as sent (gzip'd); more: 413
//! max_batch_expanded_kib = 32768 # the same after gunzip (gzip bombs); more: 413
//! batches_per_s = 5.0            # per desk, token bucket; more: 429 + Retry-After
//! batch_burst = 60
//! max_clip_mib = 512             # one clip file; more: 413
//! login_failures = 10            # failed console logins per user name in the window; more: 429
//! login_window_min = 15
//! [log]
//! format = "text"                # or "json" (one object a line)
//! ```
//!
//! Secrets follow the rule the agent follows ([`conf::secret`]): without
//! `database.url` and `url_file`, `$CREDENTIALS_DIRECTORY/database-url`
//! (systemd's `LoadCredential=`) if it holds something, else
//! `/etc/invigil-hub/database.url` if it exists (so `invigil-hub` commands
//! over ssh find the database the unit uses); without
//! `storage.credentials_file`, `$CREDENTIALS_DIRECTORY/s3-credentials`, else
//! `/etc/invigil-hub/s3.credentials`. A named or system file that is blank
//! or unreadable is an error naming it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use conf::secret::Secret;
use conf::storage::{S3Credentials, check_endpoint};
use serde::Deserialize;

use crate::storage::{StorageSettings, StoreUrl};

/// Where `run` and the other commands look without `--config`.
pub const DEFAULT_PATH: &str = "/etc/invigil-hub/config.toml";
/// The database URL, by the one rule for secrets ([`conf::secret`]):
/// `database.url_file`, else the unit's credential, else the file the unit
/// loads it from (what `invigil-hub` over ssh, outside the unit, reads).
pub const DATABASE_URL: Secret =
    Secret { id: "database-url", key: "database.url_file", system_file: "/etc/invigil-hub/database.url" };
/// The S3 keys, by the same rule.
pub const S3_CREDENTIALS: Secret =
    Secret { id: "s3-credentials", key: "storage.credentials_file", system_file: "/etc/invigil-hub/s3.credentials" };

/// The clip folder when `storage.url` is unset.
pub const DEFAULT_STORAGE: &str = "file:///var/lib/invigil-hub/clips";

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub database: Database,
    pub server: Server,
    pub storage: Storage,
    pub limits: Limits,
    pub log: Log,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Database {
    pub url: Option<String>,
    pub url_file: Option<PathBuf>,
    /// Connections per hub process. Default 16.
    pub pool_size: usize,
    /// PEM certificates trusted besides the system's, for TLS.
    pub ca_file: Option<PathBuf>,
}

impl Default for Database {
    fn default() -> Self {
        Database { url: None, url_file: None, pool_size: 16, ca_file: None }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Server {
    /// Default `127.0.0.1:8080`.
    pub listen: String,
    pub hub_id: Option<String>,
    /// Default true: the login cookie is `Secure`.
    pub secure_cookies: bool,
    /// Default 12.
    pub login_hours: u32,
    /// Default 20.
    pub shutdown_timeout_s: u64,
}

impl Default for Server {
    fn default() -> Self {
        Server {
            listen: "127.0.0.1:8080".into(),
            hub_id: None,
            secure_cookies: true,
            login_hours: 12,
            shutdown_timeout_s: 20,
        }
    }
}

/// `[storage]`: the same keys in the agent and the hub.
pub use conf::storage::StorageSection as Storage;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    pub max_batch_kib: u64,
    pub max_batch_expanded_kib: u64,
    pub batches_per_s: f64,
    pub batch_burst: u32,
    pub max_clip_mib: u64,
    /// Failed console logins one user name may have in the window.
    pub login_failures: u32,
    pub login_window_min: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_batch_kib: 4096,
            max_batch_expanded_kib: 32768,
            batches_per_s: 5.0,
            batch_burst: 60,
            max_clip_mib: 512,
            login_failures: 10,
            login_window_min: 15,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Log {
    /// "text" (default) or "json".
    pub format: String,
}

impl Default for Log {
    fn default() -> Self {
        Log { format: "text".into() }
    }
}

/// A config error: one line naming the file and the field.
pub use conf::file::ConfigError;

/// A checked config with every default filled in.
#[derive(Debug, Clone)]
pub struct Validated {
    pub database_url: String,
    pub pool_size: usize,
    pub ca_file: Option<PathBuf>,
    pub listen: SocketAddr,
    pub hub_id: String,
    pub secure_cookies: bool,
    pub login_hours: u32,
    pub shutdown_timeout_s: u64,
    pub storage: StorageSettings,
    pub limits: Limits,
    pub json_logs: bool,
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
        let database_url = self.database_url(file)?;
        if !(1..=1000).contains(&self.database.pool_size) {
            return Err(err(
                "database.pool_size",
                format!("{} is out of range 1-1000; e.g. 16", self.database.pool_size),
            ));
        }
        if let Some(p) = &self.database.ca_file
            && !p.is_file()
        {
            return Err(err(
                "database.ca_file",
                format!("{} is not a file; e.g. \"/etc/invigil-hub/db-ca.pem\"", p.display()),
            ));
        }
        let (listen, hub_id) = self.server.check().map_err(|(f, m)| err(f, m))?;
        let storage = storage_settings(&self.storage).map_err(|(f, m)| err(f, m))?;
        self.limits.check().map_err(|(f, m)| err(f, m))?;
        let json_logs = match self.log.format.as_str() {
            "text" => false,
            "json" => true,
            other => return Err(err("log.format", format!("{other:?} is not a format; use \"text\" or \"json\""))),
        };
        Ok(Validated {
            database_url,
            pool_size: self.database.pool_size,
            ca_file: self.database.ca_file.clone(),
            listen,
            hub_id,
            secure_cookies: self.server.secure_cookies,
            login_hours: self.server.login_hours,
            shutdown_timeout_s: self.server.shutdown_timeout_s,
            storage,
            limits: self.limits,
            json_logs,
        })
    }

    /// `database.url` or the file holding it (by the one rule for secrets).
    fn database_url(&self, file: &str) -> Result<String, ConfigError> {
        let err = |field: &str, msg: String| ConfigError::field(file, field, msg);
        let url = match (&self.database.url, &self.database.url_file) {
            (Some(_), Some(_)) => {
                return Err(err("database.url_file", "set database.url or database.url_file, not both".into()));
            }
            (Some(u), None) => u.trim().to_string(),
            (None, configured) => match DATABASE_URL
                .load(configured.as_deref())
                .map_err(|e| ConfigError { file: file.to_string(), message: e.to_string() })?
            {
                Some((_, url)) => url,
                None => {
                    return Err(err(
                        "database.url",
                        "required; e.g. url = \"postgres://invigil@127.0.0.1:5432/invigil\" (or url_file)".into(),
                    ));
                }
            },
        };
        if url.parse::<tokio_postgres::Config>().is_err()
            || !(url.starts_with("postgres://") || url.starts_with("postgresql://"))
        {
            // Never echo the URL: it may hold a password.
            return Err(err(
                "database.url",
                "not a PostgreSQL URL; use e.g. \"postgres://invigil@127.0.0.1:5432/invigil\"".into(),
            ));
        }
        Ok(url)
    }
}

impl Server {
    /// The listen address and the hub's id; errors are (field, message).
    fn check(&self) -> Result<(SocketAddr, String), (&'static str, String)> {
        let listen: SocketAddr = self.listen.parse().map_err(|_| {
            ("server.listen", format!("{:?} is not an address; use e.g. \"127.0.0.1:8080\"", self.listen))
        })?;
        let hub_id = match &self.hub_id {
            Some(h) => {
                proto::check_id("server.hub_id", h, 64).map_err(|e| ("server.hub_id", e.message))?;
                h.clone()
            }
            None => format!("{}:{}", hostname(), listen.port()),
        };
        if self.login_hours == 0 || self.login_hours > 24 * 30 {
            return Err(("server.login_hours", format!("{} is out of range 1-720; e.g. 12", self.login_hours)));
        }
        if self.shutdown_timeout_s > 600 {
            return Err((
                "server.shutdown_timeout_s",
                format!("{} is out of range 0-600; e.g. 20", self.shutdown_timeout_s),
            ));
        }
        Ok((listen, hub_id))
    }
}

impl Limits {
    /// Every limit in its range; errors are (field, message).
    fn check(&self) -> Result<(), (&'static str, String)> {
        for (field, v, lo, hi, good) in [
            ("limits.max_batch_kib", self.max_batch_kib, 16, 1 << 20, 4096),
            ("limits.max_batch_expanded_kib", self.max_batch_expanded_kib, 16, 1 << 22, 32768),
            ("limits.max_clip_mib", self.max_clip_mib, 1, 1 << 16, 512),
            ("limits.batch_burst", self.batch_burst as u64, 1, 100_000, 60),
            ("limits.login_failures", self.login_failures as u64, 1, 10_000, 10),
            ("limits.login_window_min", self.login_window_min as u64, 1, 1440, 15),
        ] {
            if !(lo..=hi).contains(&v) {
                return Err((field, format!("{v} is out of range {lo}-{hi}; e.g. {good}")));
            }
        }
        if !(self.batches_per_s.is_finite() && self.batches_per_s > 0.0 && self.batches_per_s <= 10_000.0) {
            return Err(("limits.batches_per_s", format!("{} is out of range (0, 10000]; e.g. 5", self.batches_per_s)));
        }
        Ok(())
    }
}

/// `[storage]`, checked; errors are (field, message).
fn storage_settings(st: &Storage) -> Result<StorageSettings, (&'static str, String)> {
    let raw = st.url.as_deref().unwrap_or(DEFAULT_STORAGE);
    let url = StoreUrl::parse(raw, "s3://exam-clips/hub", "file:///var/lib/invigil-hub/clips")
        .map_err(|m| ("storage.url", m))?;
    if let StoreUrl::File { dir } = &url
        && !dir.is_absolute()
    {
        return Err((
            "storage.url",
            format!("{raw:?} is not an absolute folder; use e.g. \"file:///var/lib/invigil-hub/clips\""),
        ));
    }
    if let Some(ep) = &st.endpoint {
        check_endpoint(ep).map_err(|m| ("storage.endpoint", m))?;
    }
    let mut credentials = None;
    if matches!(url, StoreUrl::S3 { .. }) {
        let found = S3_CREDENTIALS
            .load(st.credentials_file.as_deref())
            .map_err(|e| ("storage.credentials_file", format!("{}: {}", e.path.display(), e.message)))?;
        let Some((file, text)) = found else {
            return Err((
                "storage.credentials_file",
                "required for an s3:// storage.url (or $CREDENTIALS_DIRECTORY/s3-credentials)".to_string(),
            ));
        };
        credentials = Some(
            S3Credentials::parse(&text)
                .map_err(|m| ("storage.credentials_file", format!("{}: {m}", file.display())))?,
        );
    }
    Ok(StorageSettings { url, endpoint: st.endpoint.clone(), region: st.region.clone(), credentials })
}

/// The config at `path` (or [`DEFAULT_PATH`]), loaded and validated.
pub fn resolve(path: Option<&Path>) -> Result<Validated, ConfigError> {
    let path = path.map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from(DEFAULT_PATH));
    let file = path.display().to_string();
    Config::load(&path)?.validate(&file)
}

/// The host name (through uname, so it works under `ProcSubset=pid`).
fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most buf.len() bytes into buf.
    let ok = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) } == 0;
    let name = if ok { buf.split(|b| *b == 0).next().map(|b| String::from_utf8_lossy(b).to_string()) } else { None };
    name.filter(|s| proto::check_id("host", s, 56).is_ok()).unwrap_or_else(|| "hub".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Validated, ConfigError> {
        Config::parse(text, "hub.toml")?.validate("hub.toml")
    }

    #[test]
    fn the_contract_example_is_valid_and_defaults_are_documented() {
        let v = parse(
            "[database]\nurl = \"postgres://user@127.0.0.1:5432/invigil\"\n[server]\nlisten = \"127.0.0.1:8080\"\n\
             [storage]\nurl = \"file:///tmp/invigil-hub-clips\"\n",
        )
        .unwrap();
        assert_eq!(v.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(v.pool_size, 16);
        assert_eq!(v.limits.max_batch_kib, 4096);
        assert!(v.secure_cookies);
        assert!(!v.json_logs);
    }

    #[test]
    fn unknown_keys_are_named() {
        let e = parse("[database]\nurl = \"postgres://u@h/d\"\nurll = 1\n").unwrap_err().to_string();
        assert!(e.contains("urll"), "{e}");
        let e = parse("[databse]\n").unwrap_err().to_string();
        assert!(e.contains("databse"), "{e}");
    }

    #[test]
    fn bad_values_name_the_field_and_a_good_value() {
        let e = parse("").unwrap_err().to_string();
        assert!(e.contains("database.url: required"), "{e}");
        let e = parse("[database]\nurl = \"mysql://secret@h/d\"\n").unwrap_err().to_string();
        assert!(e.contains("database.url") && !e.contains("secret"), "{e}");
        let base = "[database]\nurl = \"postgres://u@h/d\"\n";
        let e = parse(&format!("{base}[server]\nlisten = \"8080\"\n")).unwrap_err().to_string();
        assert!(e.contains("server.listen") && e.contains("127.0.0.1:8080"), "{e}");
        let e = parse(&format!("{base}[storage]\nurl = \"ftp://x\"\n")).unwrap_err().to_string();
        assert!(e.contains("storage.url"), "{e}");
        let e = parse(&format!("{base}[limits]\nmax_clip_mib = 0\n")).unwrap_err().to_string();
        assert!(e.contains("limits.max_clip_mib"), "{e}");
        let e = parse(&format!("{base}[log]\nformat = \"xml\"\n")).unwrap_err().to_string();
        assert!(e.contains("log.format"), "{e}");
        let e = parse(&format!("{base}[storage]\nurl = \"s3://b/p\"\n")).unwrap_err().to_string();
        assert!(e.contains("storage.credentials_file"), "{e}");
    }

    #[test]
    fn secret_files_follow_the_shared_rule_and_a_blank_one_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("database.url");
        std::fs::write(&f, "  postgres://invigil@127.0.0.1:5432/invigil\n").unwrap();
        let text = format!("[database]\nurl_file = \"{}\"\n", f.display());
        assert_eq!(parse(&text).unwrap().database_url, "postgres://invigil@127.0.0.1:5432/invigil");
        std::fs::write(&f, "\n").unwrap();
        let e = parse(&text).unwrap_err().to_string();
        assert!(e.contains("database.url_file") && e.contains("database.url") && e.contains("empty"), "{e}");
        let creds = dir.path().join("s3.credentials");
        std::fs::write(&creds, "access_key_id=a\n").unwrap();
        let base = "[database]\nurl = \"postgres://u@h/d\"\n";
        let e = parse(&format!("{base}[storage]\nurl = \"s3://b\"\ncredentials_file = \"{}\"\n", creds.display()))
            .unwrap_err()
            .to_string();
        assert!(e.contains("storage.credentials_file") && e.contains("secret_access_key is missing"), "{e}");
        let e = parse(&format!("{base}[storage]\nurl = \"file://clips\"\n")).unwrap_err().to_string();
        assert!(e.contains("not an absolute folder"), "{e}");
        let e = parse(&format!("{base}[limits]\nlogin_failures = 0\n")).unwrap_err().to_string();
        assert!(e.contains("limits.login_failures"), "{e}");
    }
}
