//! The clip store: a local folder (`file:///DIR`, the default) or
//! S3-compatible storage (`s3://BUCKET/PREFIX`, with `endpoint` for MinIO,
//! Supabase Storage and the like), through `object_store`. Only the hub
//! holds its credentials: boxes upload through the hub, which picks every
//! object key itself ([`object_key`]), so a box can neither name, list nor
//! read an object.
//!
//! Writes stream: [`Store::put_stream`] sends the body on in 8 MiB parts
//! (multipart on S3) while counting bytes, and aborts the upload when the
//! body is longer or shorter than announced, so a half-written object is
//! never recorded.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use conf::storage::{S3Credentials, S3Settings};
use futures_util::{Stream, StreamExt};
use object_store::path::Path as ObjPath;
use object_store::{GetOptions, GetRange, ObjectStore, ObjectStoreExt, WriteMultipart};

/// The part size of streamed uploads (S3's minimum is 5 MiB).
pub const PART_BYTES: usize = 8 << 20;

/// Where clips go, as the config says (the URL forms both programs take).
pub use conf::storage::Location as StoreUrl;

/// S3 credentials (the shared `KEY=VALUE` format, [`conf::storage`]).
pub type Credentials = S3Credentials;

/// `[storage]`, checked.
#[derive(Clone, Debug)]
pub struct StorageSettings {
    pub url: StoreUrl,
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub credentials: Option<Credentials>,
}

impl StorageSettings {
    pub fn build(&self) -> anyhow::Result<Store> {
        match &self.url {
            StoreUrl::File { dir } => {
                std::fs::create_dir_all(dir)
                    .map_err(|e| anyhow::anyhow!("storage.url: cannot create {}: {e}", dir.display()))?;
                let store = object_store::local::LocalFileSystem::new_with_prefix(dir)?;
                Ok(Store { inner: Arc::new(store), prefix: String::new() })
            }
            StoreUrl::S3 { bucket, prefix } => {
                let creds = self.credentials.as_ref().ok_or_else(|| anyhow::anyhow!("storage.credentials_file"))?;
                let store = S3Settings {
                    bucket,
                    region: self.region.as_deref(),
                    endpoint: self.endpoint.as_deref(),
                    credentials: creds,
                    request_timeout: Duration::from_secs(120),
                    max_retries: 3,
                }
                .build()?;
                Ok(Store { inner: Arc::new(store), prefix: prefix.clone() })
            }
        }
    }
}

/// Why a streamed upload was not stored.
#[derive(Debug, thiserror::Error)]
pub enum PutError {
    #[error("the body is longer than its Content-Length ({0} bytes)")]
    TooLong(u64),
    #[error("the body ended after {got} of {expected} bytes")]
    TooShort { got: u64, expected: u64 },
    #[error("reading the body: {0}")]
    Body(String),
    #[error("storage: {0}")]
    Store(#[from] object_store::Error),
}

/// The opened store and the key prefix of `s3://BUCKET/PREFIX`.
#[derive(Clone, Debug)]
pub struct Store {
    inner: Arc<dyn ObjectStore>,
    prefix: String,
}

impl Store {
    /// The key of an incident's clip: `{prefix}/{session}/{student}/{incident}[-{part}].mp4`;
    /// a missing session or student is `none` (as the agent writes it).
    pub fn object_key(&self, session_id: Option<&str>, student_id: Option<&str>, incident: &str, part: u32) -> String {
        object_key(&self.prefix, session_id, student_id, incident, part)
    }

    /// Streams `body` to `key`; exactly `expected` bytes or nothing is kept.
    pub async fn put_stream<S, E>(&self, key: &str, expected: u64, mut body: S) -> Result<u64, PutError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let path = ObjPath::from(key);
        let upload = self.inner.put_multipart(&path).await?;
        let mut w = WriteMultipart::new_with_chunk_size(upload, PART_BYTES);
        let mut got = 0u64;
        let outcome: Result<(), PutError> = async {
            while let Some(chunk) = body.next().await {
                let chunk = chunk.map_err(|e| PutError::Body(e.to_string()))?;
                got += chunk.len() as u64;
                if got > expected {
                    return Err(PutError::TooLong(expected));
                }
                // At most two parts in flight: memory stays bounded per upload.
                w.wait_for_capacity(2).await?;
                w.put(chunk);
            }
            if got != expected {
                return Err(PutError::TooShort { got, expected });
            }
            Ok(())
        }
        .await;
        match outcome {
            Ok(()) => {
                w.finish().await?;
                Ok(got)
            }
            Err(e) => {
                let _ = w.abort().await;
                Err(e)
            }
        }
    }

    /// Deletes the object; one already gone is not an error (a purge that
    /// was interrupted runs again).
    pub async fn delete(&self, key: &str) -> Result<(), object_store::Error> {
        match self.inner.delete(&ObjPath::from(key)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// The object's size.
    pub async fn size(&self, key: &str) -> Result<u64, object_store::Error> {
        Ok(self.inner.head(&ObjPath::from(key)).await?.size)
    }

    /// `range` (or all) of the object: its stream and the byte range sent.
    pub async fn get(
        &self,
        key: &str,
        range: Option<std::ops::Range<u64>>,
    ) -> Result<
        (futures_util::stream::BoxStream<'static, object_store::Result<Bytes>>, std::ops::Range<u64>, u64),
        object_store::Error,
    > {
        let opts = GetOptions { range: range.map(GetRange::Bounded), ..Default::default() };
        let r = self.inner.get_opts(&ObjPath::from(key), opts).await?;
        let (span, size) = (r.range.clone(), r.meta.size);
        Ok((r.into_stream(), span, size))
    }
}

/// See [`Store::object_key`]. The ids were checked by `proto::check_id`
/// (no slashes), so a key has exactly the segments shown.
pub fn object_key(
    prefix: &str,
    session_id: Option<&str>,
    student_id: Option<&str>,
    incident: &str,
    part: u32,
) -> String {
    let id = |s: Option<&str>| s.filter(|s| !s.is_empty()).unwrap_or("none").to_string();
    let file = if part == 0 { format!("{incident}.mp4") } else { format!("{incident}-{part}.mp4") };
    let key = format!("{}/{}/{file}", id(session_id), id(student_id));
    if prefix.is_empty() { key } else { format!("{prefix}/{key}") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_follow_the_contract_layout() {
        assert_eq!(object_key("hub", Some("ex1-d1"), Some("s7"), "i1", 0), "hub/ex1-d1/s7/i1.mp4");
        assert_eq!(object_key("", None, Some(""), "i1", 2), "none/none/i1-2.mp4");
    }

    #[test]
    fn credentials_name_the_line_at_fault() {
        let c = Credentials::parse("# moto\naccess_key_id=a\nsecret_access_key = \"b\"\n").unwrap();
        assert_eq!((c.access_key_id.as_str(), c.secret_access_key.as_str()), ("a", "b"));
        assert!(Credentials::parse("access_key_id=a\nbogus=1").unwrap_err().starts_with("line 2"));
        assert!(Credentials::parse("access_key_id=a").unwrap_err().contains("secret_access_key"));
    }

    #[tokio::test]
    async fn a_body_of_the_wrong_length_leaves_no_object() {
        let dir = tempfile::tempdir().unwrap();
        let s = StorageSettings {
            url: StoreUrl::File { dir: dir.path().to_path_buf() },
            endpoint: None,
            region: None,
            credentials: None,
        }
        .build()
        .unwrap();
        let chunks = || futures_util::stream::iter(vec![Ok::<_, String>(Bytes::from_static(b"0123")); 3]);
        assert_eq!(s.put_stream("a/ok.mp4", 12, chunks()).await.unwrap(), 12);
        assert_eq!(s.size("a/ok.mp4").await.unwrap(), 12);
        assert!(matches!(s.put_stream("a/long.mp4", 10, chunks()).await, Err(PutError::TooLong(10))));
        assert!(matches!(s.put_stream("a/short.mp4", 13, chunks()).await, Err(PutError::TooShort { got: 12, .. })));
        assert!(s.size("a/long.mp4").await.is_err() && s.size("a/short.mp4").await.is_err());
    }
}
