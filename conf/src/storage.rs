//! Where clips are stored, read the same way by the agent and the hub:
//! `s3://BUCKET[/PREFIX]` or `file://DIR`, S3 credentials in a `KEY=VALUE`
//! file, and one S3 client set-up (timeouts, retries, S3-compatible
//! endpoints such as MinIO or Supabase Storage).
//!
//! Guarantees: an error names what is wrong and gives a good example; the
//! credentials' `Debug` never shows the secret key or the session token.

use std::path::PathBuf;
use std::time::Duration;

use object_store::aws::{AmazonS3, AmazonS3Builder};

/// The `[storage]` section of both configs, as written.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageSection {
    /// `s3://BUCKET[/PREFIX]` or `file:///DIR`; the default is each
    /// program's own (the box's outbox, the hub's clip folder).
    pub url: Option<String>,
    /// An S3-compatible server (MinIO, Supabase Storage, …). Default: AWS.
    pub endpoint: Option<String>,
    /// Default "us-east-1".
    pub region: Option<String>,
    /// The S3 keys' file (else the systemd credential `s3-credentials`).
    pub credentials_file: Option<PathBuf>,
}

/// A store URL, parsed.
#[derive(Clone, Debug, PartialEq)]
pub enum Location {
    S3 { bucket: String, prefix: String },
    File { dir: PathBuf },
}

impl Location {
    /// `s3://BUCKET[/PREFIX]` or `file://DIR`; errors end with the caller's
    /// examples of each.
    pub fn parse(url: &str, s3_example: &str, file_example: &str) -> Result<Location, String> {
        if let Some(rest) = url.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(format!("{url:?} has no bucket; use e.g. \"{s3_example}\""));
            }
            Ok(Location::S3 { bucket: bucket.to_string(), prefix: prefix.trim_matches('/').to_string() })
        } else if let Some(dir) = url.strip_prefix("file://") {
            if dir.is_empty() {
                return Err(format!("{url:?} has no folder; use e.g. \"{file_example}\""));
            }
            Ok(Location::File { dir: PathBuf::from(dir) })
        } else {
            Err(format!("{url:?} is neither s3:// nor file://; use e.g. \"{s3_example}\" or \"{file_example}\""))
        }
    }
}

/// S3 credentials: `access_key_id=…`, `secret_access_key=…` and optionally
/// `session_token=…` lines (an `aws_` prefix and any case are accepted,
/// `#` starts a comment).
#[derive(Clone, PartialEq)]
pub struct S3Credentials {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: Option<String>,
}

impl std::fmt::Debug for S3Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Credentials").field("access_key_id", &self.access_key_id).finish_non_exhaustive()
    }
}

impl S3Credentials {
    /// Parses the file's text; errors name the line, never a value.
    pub fn parse(text: &str) -> Result<S3Credentials, String> {
        let (mut id, mut secret, mut token) = (None, None, None);
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((k, v)) = line.split_once('=') else {
                return Err(format!("line {}: expected KEY=VALUE", n + 1));
            };
            let v = v.trim().trim_matches('"').to_string();
            match k.trim().to_ascii_lowercase().trim_start_matches("aws_") {
                "access_key_id" => id = Some(v),
                "secret_access_key" => secret = Some(v),
                "session_token" => token = Some(v),
                other => {
                    return Err(format!(
                        "line {}: unknown key {other:?}; use access_key_id, secret_access_key or session_token",
                        n + 1
                    ));
                }
            }
        }
        Ok(S3Credentials {
            access_key_id: id.filter(|v| !v.is_empty()).ok_or("access_key_id is missing")?,
            secret_access_key: secret.filter(|v| !v.is_empty()).ok_or("secret_access_key is missing")?,
            session_token: token.filter(|v| !v.is_empty()),
        })
    }
}

/// Checks `storage.endpoint`: an http(s) URL.
pub fn check_endpoint(ep: &str) -> Result<(), String> {
    if ep.starts_with("http://") || ep.starts_with("https://") {
        Ok(())
    } else {
        Err(format!("{ep:?} is not an http(s) URL; use e.g. \"https://s3.example\""))
    }
}

/// What an S3 client is made of.
pub struct S3Settings<'a> {
    pub bucket: &'a str,
    /// Default "us-east-1" (what S3-compatible servers expect).
    pub region: Option<&'a str>,
    /// An S3-compatible server; plain `http://` is allowed only when named.
    pub endpoint: Option<&'a str>,
    pub credentials: &'a S3Credentials,
    /// Per request (connecting: 5 s).
    pub request_timeout: Duration,
    /// The client's own retries of a failed request (callers that loop for
    /// ever keep this small: the client only rides out a blip).
    pub max_retries: usize,
}

impl S3Settings<'_> {
    /// The client; no request is made.
    pub fn build(&self) -> Result<AmazonS3, object_store::Error> {
        let c = self.credentials;
        let mut b = AmazonS3Builder::new()
            .with_bucket_name(self.bucket)
            .with_region(self.region.unwrap_or("us-east-1"))
            .with_access_key_id(&c.access_key_id)
            .with_secret_access_key(&c.secret_access_key)
            .with_client_options(
                object_store::ClientOptions::new()
                    .with_timeout(self.request_timeout)
                    .with_connect_timeout(Duration::from_secs(5)),
            )
            .with_retry(object_store::RetryConfig {
                max_retries: self.max_retries,
                retry_timeout: Duration::from_secs(60),
                ..Default::default()
            });
        if let Some(t) = &c.session_token {
            b = b.with_token(t);
        }
        if let Some(ep) = self.endpoint {
            b = b.with_endpoint(ep).with_allow_http(ep.starts_with("http://"));
        }
        b.build()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_parse_or_name_the_callers_example() {
        let p = |u| Location::parse(u, "s3://b/p", "file:///x");
        assert_eq!(p("s3://clips/desks/").unwrap(), Location::S3 { bucket: "clips".into(), prefix: "desks".into() });
        assert_eq!(p("s3://clips").unwrap(), Location::S3 { bucket: "clips".into(), prefix: "".into() });
        assert_eq!(p("file:///var/x").unwrap(), Location::File { dir: "/var/x".into() });
        for bad in ["s3://", "file://", "http://x", "clips"] {
            let e = p(bad).unwrap_err();
            assert!(e.contains("e.g. \"s3://b/p\"") || e.contains("e.g. \"file:///x\""), "{bad}: {e}");
        }
    }

    #[test]
    fn credentials_parse_without_showing_the_secret() {
        let c = S3Credentials::parse("# keys\nAWS_ACCESS_KEY_ID=AK\nsecret_access_key = \"sk\"\n").unwrap();
        assert_eq!(
            (c.access_key_id.as_str(), c.secret_access_key.as_str(), c.session_token.as_deref()),
            ("AK", "sk", None)
        );
        assert!(!format!("{c:?}").contains("sk"));
        assert_eq!(S3Credentials::parse("access_key_id=a\n").unwrap_err(), "secret_access_key is missing");
        assert!(S3Credentials::parse("token\n").unwrap_err().starts_with("line 1:"));
        assert!(S3Credentials::parse("region=x\n").unwrap_err().contains("unknown key \"region\""));
    }

    #[test]
    fn an_s3_client_is_built_for_an_s3_compatible_endpoint() {
        let c = S3Credentials { access_key_id: "a".into(), secret_access_key: "s".into(), session_token: None };
        let s = S3Settings {
            bucket: "clips",
            region: None,
            endpoint: Some("http://127.0.0.1:9"),
            credentials: &c,
            request_timeout: Duration::from_secs(1),
            max_retries: 0,
        };
        assert!(s.build().is_ok());
        assert!(check_endpoint("ftp://x").unwrap_err().contains("https://s3.example"));
    }
}
