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
//! [log]
//! format = "text"                # or "json" (one object a line)
//! ```
//!
//! Without `database.url` and `url_file`, `$CREDENTIALS_DIRECTORY/database-url`
//! is read (systemd's `LoadCredential=`); without `storage.credentials_file`,
//! `$CREDENTIALS_DIRECTORY/s3-credentials`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Where `run` and the other commands look without `--config`.
pub const DEFAULT_PATH: &str = "/etc/invigil-hub/config.toml";
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

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Storage {
    pub url: Option<String>,
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub credentials_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    pub max_batch_kib: u64,
    pub max_batch_expanded_kib: u64,
    pub batches_per_s: f64,
    pub batch_burst: u32,
    pub max_clip_mib: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_batch_kib: 4096,
            max_batch_expanded_kib: 32768,
            batches_per_s: 5.0,
            batch_burst: 60,
            max_clip_mib: 512,
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
#[derive(Debug, thiserror::Error)]
#[error("{file}: {message}")]
pub struct ConfigError {
    pub file: String,
    pub message: String,
}

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
    pub storage: crate::storage::StorageSettings,
    pub limits: Limits,
    pub json_logs: bool,
}

impl Config {
    /// Reads and parses `path`; unknown keys and wrong types name the key.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let file = path.display().to_string();
        let text =
            std::fs::read_to_string(path).map_err(|e| ConfigError { file: file.clone(), message: e.to_string() })?;
        Self::parse(&text, &file)
    }

    pub fn parse(text: &str, file: &str) -> Result<Config, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError {
            file: file.to_string(),
            // toml's message spans several lines with a caret; keep it on one.
            message: e
                .to_string()
                .split('\n')
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('|'))
                .collect::<Vec<_>>()
                .join(" "),
        })
    }

    /// Checks values and fills in defaults. `file` names the config in errors.
    pub fn validate(self, file: &str) -> Result<Validated, ConfigError> {
        let err = |field: &str, msg: String| ConfigError { file: file.to_string(), message: format!("{field}: {msg}") };
        let database_url = match (&self.database.url, &self.database.url_file) {
            (Some(_), Some(_)) => {
                return Err(err("database.url_file", "set database.url or database.url_file, not both".into()));
            }
            (Some(u), None) => u.trim().to_string(),
            (None, Some(p)) => read_secret(p).map_err(|m| err("database.url_file", m))?,
            (None, None) => match credential("database-url") {
                Some(p) => read_secret(&p).map_err(|m| err("database.url", m))?,
                None => {
                    return Err(err(
                        "database.url",
                        "required; e.g. url = \"postgres://invigil@127.0.0.1:5432/invigil\" (or url_file)".into(),
                    ));
                }
            },
        };
        if database_url.parse::<tokio_postgres::Config>().is_err()
            || !(database_url.starts_with("postgres://") || database_url.starts_with("postgresql://"))
        {
            // Never echo the URL: it may hold a password.
            return Err(err(
                "database.url",
                "not a PostgreSQL URL; use e.g. \"postgres://invigil@127.0.0.1:5432/invigil\"".into(),
            ));
        }
        if !(1..=1000).contains(&self.database.pool_size) {
            return Err(err(
                "database.pool_size",
                format!("{} is out of range 1-1000; e.g. 16", self.database.pool_size),
            ));
        }
        let listen: SocketAddr = self.server.listen.parse().map_err(|_| {
            err("server.listen", format!("{:?} is not an address; use e.g. \"127.0.0.1:8080\"", self.server.listen))
        })?;
        let hub_id = match &self.server.hub_id {
            Some(h) => {
                proto::check_id("server.hub_id", h, 64).map_err(|e| err("server.hub_id", e.message))?;
                h.clone()
            }
            None => format!("{}:{}", hostname(), listen.port()),
        };
        if self.server.login_hours == 0 || self.server.login_hours > 24 * 30 {
            return Err(err(
                "server.login_hours",
                format!("{} is out of range 1-720; e.g. 12", self.server.login_hours),
            ));
        }
        if self.server.shutdown_timeout_s > 600 {
            return Err(err(
                "server.shutdown_timeout_s",
                format!("{} is out of range 0-600; e.g. 20", self.server.shutdown_timeout_s),
            ));
        }
        let storage = crate::storage::StorageSettings::from_config(&self.storage).map_err(|(f, m)| err(f, m))?;
        let l = &self.limits;
        for (field, v, lo, hi, good) in [
            ("limits.max_batch_kib", l.max_batch_kib, 16, 1 << 20, 4096),
            ("limits.max_batch_expanded_kib", l.max_batch_expanded_kib, 16, 1 << 22, 32768),
            ("limits.max_clip_mib", l.max_clip_mib, 1, 1 << 16, 512),
            ("limits.batch_burst", l.batch_burst as u64, 1, 100_000, 60),
        ] {
            if !(lo..=hi).contains(&v) {
                return Err(err(field, format!("{v} is out of range {lo}-{hi}; e.g. {good}")));
            }
        }
        if !(l.batches_per_s.is_finite() && l.batches_per_s > 0.0 && l.batches_per_s <= 10_000.0) {
            return Err(err("limits.batches_per_s", format!("{} is out of range (0, 10000]; e.g. 5", l.batches_per_s)));
        }
        let json_logs = match self.log.format.as_str() {
            "text" => false,
            "json" => true,
            other => return Err(err("log.format", format!("{other:?} is not a format; use \"text\" or \"json\""))),
        };
        if let Some(p) = &self.database.ca_file
            && !p.is_file()
        {
            return Err(err(
                "database.ca_file",
                format!("{} is not a file; e.g. \"/etc/invigil-hub/db-ca.pem\"", p.display()),
            ));
        }
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
}

/// The config at `path` (or [`DEFAULT_PATH`]), loaded and validated.
pub fn resolve(path: Option<&Path>) -> Result<Validated, ConfigError> {
    let path = path.map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from(DEFAULT_PATH));
    let file = path.display().to_string();
    Config::load(&path)?.validate(&file)
}

/// `$CREDENTIALS_DIRECTORY/NAME` if it exists and is not empty once
/// trimmed (systemd's fallback for a missing source file is one newline).
pub fn credential(name: &str) -> Option<PathBuf> {
    let dir = std::env::var_os("CREDENTIALS_DIRECTORY")?;
    let p = Path::new(&dir).join(name);
    let text = std::fs::read_to_string(&p).ok()?;
    (!text.trim().is_empty()).then_some(p)
}

/// A one-line secret file, trimmed.
fn read_secret(p: &Path) -> Result<String, String> {
    let text = std::fs::read_to_string(p).map_err(|e| format!("cannot read {}: {e}", p.display()))?;
    let t = text.trim();
    if t.is_empty() {
        return Err(format!("{} is empty", p.display()));
    }
    Ok(t.to_string())
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
}
