//! Where clips go and with which keys: the store URL, S3 credentials, the
//! upload settings and the object key of a clip (module docs of
//! [`crate::upload`], "Where" and "Credentials").

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use conf::storage::{Location, S3Credentials, S3Settings, check_endpoint};
use object_store::ObjectStore;

use super::UploadError;
use crate::config::Validated;
use crate::credentials::S3_CREDENTIALS;

/// Placeholder for a missing session or student in an object key.
pub const NO_ID: &str = "none";

/// Where clips go.
#[derive(Clone, Debug, PartialEq)]
pub enum StoreUrl {
    S3 {
        bucket: String,
        prefix: String,
    },
    File {
        dir: PathBuf,
    },
    /// Through the hub (`[hub]` without a `storage.url`): the box holds no
    /// storage keys; the hub picks the object key.
    Hub {
        url: String,
        token_file: PathBuf,
    },
}

impl StoreUrl {
    /// `s3://BUCKET[/PREFIX]` or `file:///ABSOLUTE/DIR` (a relative
    /// `file://DIR` is taken from the working directory).
    pub fn parse(url: &str) -> Result<StoreUrl, String> {
        Ok(match Location::parse(url, "s3://exam-clips/desks", "file:///var/lib/invigil/outbox")? {
            Location::S3 { bucket, prefix } => StoreUrl::S3 { bucket, prefix },
            Location::File { dir } => StoreUrl::File { dir },
        })
    }
}

/// S3 credentials (the shared `KEY=VALUE` format, [`conf::storage`]).
pub type Credentials = S3Credentials;

/// Parses the text of a credentials file (read by the one rule for
/// secrets); `file` names it in errors.
pub fn read_credentials(text: &str, file: &str) -> Result<Credentials, UploadError> {
    S3Credentials::parse(text).map_err(|message| UploadError::Credentials { file: file.to_string(), message })
}

/// What the upload loop needs, every default documented.
#[derive(Clone, Debug)]
pub struct UploadSettings {
    pub url: StoreUrl,
    /// `storage.endpoint` (S3-compatible servers). Default: AWS.
    pub endpoint: Option<String>,
    /// `storage.region`. Default "us-east-1".
    pub region: Option<String>,
    /// Required for `s3://`.
    pub credentials: Option<Credentials>,
    /// `clips.max_disk_mb`. Default 2048 MiB.
    pub clips_max_bytes: u64,
    /// `clips.keep_uploaded_h`: an uploaded clip's local file is deleted
    /// this long after its upload. Default 24 h.
    pub keep_uploaded: Duration,
    /// Poll for new clips this often. Default 2 s.
    pub interval: Duration,
    /// Default 1 s doubling to 5 min.
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    /// One PUT up to this size, else parts of this size. Default 8 MiB.
    pub part_size: usize,
    /// Per request. Default 120 s.
    pub request_timeout: Duration,
    /// The store is the box's own default outbox (`storage.url` unset): its
    /// files are on the same disk, so they are kept under `clips_max_bytes`
    /// too (oldest deleted first). An explicit `file://` is left alone.
    pub bound_outbox: bool,
}

impl UploadSettings {
    pub fn new(url: StoreUrl) -> Self {
        Self {
            url,
            endpoint: None,
            region: None,
            credentials: None,
            clips_max_bytes: 2048 << 20,
            keep_uploaded: Duration::from_secs(24 * 3600),
            interval: Duration::from_secs(2),
            backoff_min: Duration::from_secs(1),
            backoff_max: Duration::from_secs(300),
            part_size: 8 << 20,
            request_timeout: Duration::from_secs(120),
            bound_outbox: false,
        }
    }

    /// From the config's `[storage]` and `clips.max_disk_mb`. Errors name
    /// the field or the credentials file.
    pub fn from_config(cfg: &Validated) -> Result<Self, UploadError> {
        let st = &cfg.raw.storage;
        let url = match (&st.url, &cfg.hub) {
            (Some(u), _) => {
                StoreUrl::parse(u).map_err(|message| UploadError::Config { field: "storage.url", message })?
            }
            (None, Some(hub)) => {
                crate::credentials::HUB_TOKEN.read(&hub.token_file)?;
                StoreUrl::Hub { url: hub.url.clone(), token_file: hub.token_file.clone() }
            }
            (None, None) => StoreUrl::File {
                dir: cfg.spool_path.parent().map(Path::to_path_buf).unwrap_or_default().join("outbox"),
            },
        };
        let mut s = Self::new(url);
        s.bound_outbox = st.url.is_none() && cfg.hub.is_none();
        s.endpoint = st.endpoint.clone();
        s.region = st.region.clone();
        s.clips_max_bytes = cfg.clips_max_disk_mb << 20;
        s.keep_uploaded = Duration::from_secs(cfg.clips_keep_uploaded_h as u64 * 3600);
        if let Some(ep) = &s.endpoint {
            check_endpoint(ep).map_err(|message| UploadError::Config { field: "storage.endpoint", message })?;
        }
        if matches!(s.url, StoreUrl::S3 { .. }) {
            let Some((file, text)) = S3_CREDENTIALS.load(st.credentials_file.as_deref())? else {
                return Err(UploadError::Config {
                    field: "storage.credentials_file",
                    message: "required for an s3:// storage.url (or $CREDENTIALS_DIRECTORY/s3-credentials)".into(),
                });
            };
            s.credentials = Some(read_credentials(&text, &file.display().to_string())?);
        }
        Ok(s)
    }

    /// Builds the store as the upload loop will (no request is made): the
    /// errors `run` would meet at start.
    pub fn validate(&self) -> Result<(), UploadError> {
        self.build().map(|_| ())
    }

    /// Where clips go: an object store (with its base URL for object URLs
    /// and the key prefix), or the hub.
    pub(super) fn build(&self) -> Result<super::Target, UploadError> {
        if let StoreUrl::Hub { url, token_file } = &self.url {
            return Ok(super::Target::Hub(super::hub::HubTarget::new(url, token_file, self.request_timeout)?));
        }
        let (store, base_url, prefix) = self.build_store()?;
        Ok(super::Target::Store { store, base_url, prefix })
    }

    fn build_store(&self) -> Result<(Arc<dyn ObjectStore>, String, String), UploadError> {
        match &self.url {
            StoreUrl::Hub { .. } => unreachable!("built by build()"),
            StoreUrl::File { dir } => {
                std::fs::create_dir_all(dir).map_err(|e| UploadError::Config {
                    field: "storage.url",
                    message: format!("cannot create {}: {e}", dir.display()),
                })?;
                let abs = dir.canonicalize().unwrap_or_else(|_| dir.clone());
                let store = object_store::local::LocalFileSystem::new_with_prefix(&abs)?;
                Ok((Arc::new(store), format!("file://{}", abs.display()), String::new()))
            }
            StoreUrl::S3 { bucket, prefix } => {
                let creds = self.credentials.as_ref().ok_or_else(|| UploadError::Config {
                    field: "storage.credentials_file",
                    message: "required for an s3:// storage.url".into(),
                })?;
                let store = S3Settings {
                    bucket,
                    region: self.region.as_deref(),
                    endpoint: self.endpoint.as_deref(),
                    credentials: creds,
                    request_timeout: self.request_timeout,
                    // Our own loop retries for ever; the client only rides
                    // out a blip.
                    max_retries: 2,
                }
                .build()?;
                Ok((Arc::new(store), format!("s3://{bucket}"), prefix.clone()))
            }
        }
    }
}

/// `PREFIX/SESSION/STUDENT/FILE`, see the module docs.
pub fn object_key(prefix: &str, session_id: Option<&str>, student_id: Option<&str>, file: &str) -> String {
    let clean = |s: Option<&str>| -> String {
        match s.filter(|s| !s.is_empty()) {
            None => NO_ID.into(),
            Some(s) => s
                .chars()
                .map(|c| if c.is_ascii_alphanumeric() || "._-".contains(c) { c } else { '_' })
                .collect::<String>()
                .trim_start_matches('.')
                .to_string(),
        }
    };
    let tail = format!("{}/{}/{}", clean(session_id), clean(student_id), clean(Some(file)));
    if prefix.is_empty() { tail } else { format!("{prefix}/{tail}") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_urls_parse_or_name_a_good_example() {
        assert_eq!(
            StoreUrl::parse("s3://clips/desks/").unwrap(),
            StoreUrl::S3 { bucket: "clips".into(), prefix: "desks".into() }
        );
        assert_eq!(StoreUrl::parse("s3://clips").unwrap(), StoreUrl::S3 { bucket: "clips".into(), prefix: "".into() });
        assert_eq!(StoreUrl::parse("file:///var/x").unwrap(), StoreUrl::File { dir: "/var/x".into() });
        for bad in ["s3://", "file://", "http://x", "clips"] {
            assert!(StoreUrl::parse(bad).unwrap_err().contains("e.g."), "{bad}");
        }
    }

    #[test]
    fn object_keys_follow_the_contract_with_placeholders() {
        assert_eq!(object_key("p", Some("s1"), Some("x9"), "i1.mp4"), "p/s1/x9/i1.mp4");
        assert_eq!(object_key("", None, Some(""), "i1.mp4"), "none/none/i1.mp4");
        assert_eq!(object_key("a/b", Some("../e v"), Some("x"), "i.mp4"), "a/b/_e_v/x/i.mp4");
    }

    #[test]
    fn credentials_files_take_key_value_lines() {
        let c = read_credentials("# s3\naccess_key_id = AK\nAWS_SECRET_ACCESS_KEY=\"sk\"\n\n", "c").unwrap();
        assert_eq!((c.access_key_id.as_str(), c.secret_access_key.as_str()), ("AK", "sk"));
        assert_eq!(c.session_token, None);
        assert!(!format!("{c:?}").contains("sk"), "the secret is not printed");
        let e = read_credentials("access_key_id=AK\n", "/etc/c").unwrap_err().to_string();
        assert!(e.starts_with("/etc/c: ") && e.contains("secret_access_key"), "{e}");
        let e = read_credentials("acess_key=AK\n", "c").unwrap_err().to_string();
        assert!(e.contains("acess_key") && e.contains("line 1"), "{e}");
    }
}
