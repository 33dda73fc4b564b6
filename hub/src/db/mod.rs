//! PostgreSQL: the pool, migrations, and typed queries, one module per
//! table group. The one rule for SQL: every statement of the hub is in this
//! folder (`scripts/check-structure` refuses a query anywhere else), and
//! every function here returns typed rows (structs and enums, columns read
//! by name), never a `Row` or a tuple to index. Every statement is
//! parameterised (`$1`, `$2`, …); no SQL is ever built from a value.
//! Statements are prepared once per connection (`prepare_cached`), so a
//! pooler must run in session mode (docs/DEPLOY.md).
//!
//! Connections come from a `deadpool-postgres` pool of `database.pool_size`
//! per hub process; waiting for one is bounded (5 s), after which the caller
//! answers 503 and the box retries. Each pooled connection has a statement
//! timeout of 30 s, so no request can hold a connection for ever.
//!
//! TLS: with `sslmode=require` (or `prefer`) in the URL, connections use
//! rustls and verify the server's certificate and name against the
//! system's roots plus `database.ca_file` (a managed service's CA bundle).
//! Without `sslmode` in the URL, no TLS is tried (a local PostgreSQL's
//! self-signed certificate would otherwise fail verification).

pub mod audit;
pub mod clips;
pub mod desk_live;
pub mod desks;
pub mod exam_show;
pub mod exams;
pub mod ingest;
pub mod migrate;
pub mod retention;
pub mod review;
pub mod room_view;
pub mod rooms;
pub mod sessions;
pub mod users;

use std::time::Duration;

use std::path::Path;
use std::sync::Arc;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_postgres::config::SslMode;
use tokio_postgres_rustls::MakeRustlsConnect;

pub use deadpool_postgres::Object as Client;
pub use deadpool_postgres::PoolError;

/// The hub's handle on its database.
#[derive(Clone)]
pub struct Db {
    pub pool: Pool,
    config: tokio_postgres::Config,
    tls: MakeRustlsConnect,
}

/// The TLS connector: the system's roots, plus `ca_file` (PEM) if given.
pub fn tls(ca_file: Option<&Path>) -> anyhow::Result<MakeRustlsConnect> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(c);
    }
    if let Some(p) = ca_file {
        let certs = CertificateDer::pem_file_iter(p)
            .and_then(|it| it.collect::<Result<Vec<_>, _>>())
            .map_err(|e| anyhow::anyhow!("database.ca_file: {}: {e}", p.display()))?;
        if certs.is_empty() {
            anyhow::bail!("database.ca_file: {} holds no PEM certificate", p.display());
        }
        for c in certs {
            roots.add(c).map_err(|e| anyhow::anyhow!("database.ca_file: {}: {e}", p.display()))?;
        }
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(MakeRustlsConnect::new(cfg))
}

impl Db {
    /// A pool on `url` of at most `size` connections; checks one connection.
    pub async fn connect(url: &str, size: usize) -> anyhow::Result<Db> {
        Self::connect_tls(url, size, None).await
    }

    /// As [`Db::connect`], with `ca_file` added to the trusted roots.
    pub async fn connect_tls(url: &str, size: usize, ca_file: Option<&Path>) -> anyhow::Result<Db> {
        let mut config: tokio_postgres::Config = url.parse().map_err(|e| anyhow::anyhow!("database.url: {e}"))?;
        if !url.contains("sslmode=") {
            config.ssl_mode(SslMode::Disable);
        }
        let tls = tls(ca_file)?;
        let mut pooled = config.clone();
        pooled.options("-c statement_timeout=30000");
        pooled.connect_timeout(Duration::from_secs(5));
        pooled.application_name("invigil-hub");
        let mgr = Manager::from_config(pooled, tls.clone(), ManagerConfig { recycling_method: RecyclingMethod::Fast });
        let pool = Pool::builder(mgr)
            .max_size(size)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(Duration::from_secs(5)))
            .create_timeout(Some(Duration::from_secs(5)))
            .recycle_timeout(Some(Duration::from_secs(5)))
            .build()?;
        let db = Db { pool, config, tls };
        let _ = db.get().await.map_err(|e| anyhow::anyhow!("database: {}", describe(&e)))?;
        Ok(db)
    }

    /// A pooled connection (waits at most 5 s).
    pub async fn get(&self) -> Result<Client, PoolError> {
        self.pool.get().await
    }

    /// A connection of its own, outside the pool (migrations hold a session
    /// lock on it; the notification listener keeps it). The driver task runs
    /// until the client is dropped; notifications are not delivered on it.
    pub async fn dedicated(&self) -> anyhow::Result<tokio_postgres::Client> {
        let mut c = self.config.clone();
        c.connect_timeout(Duration::from_secs(5));
        c.application_name("invigil-hub");
        let (client, conn) = c.connect(self.tls.clone()).await?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "database: a dedicated connection ended");
            }
        });
        Ok(client)
    }

    /// A connection of its own that LISTENs on `channels` (names of this
    /// crate's, never a value from outside) and sends their notifications
    /// to `tx`.
    pub async fn listening(
        &self,
        tx: tokio::sync::mpsc::Sender<tokio_postgres::Notification>,
        channels: &[&'static str],
    ) -> anyhow::Result<(tokio_postgres::Client, tokio::task::JoinHandle<()>)> {
        let mut c = self.config.clone();
        c.connect_timeout(Duration::from_secs(5));
        c.application_name("invigil-hub-listen");
        c.keepalives_idle(Duration::from_secs(10));
        let (client, mut conn) = c.connect(self.tls.clone()).await?;
        let task = tokio::spawn(async move {
            let mut messages = futures_util::stream::poll_fn(move |cx| conn.poll_message(cx));
            use futures_util::StreamExt;
            while let Some(m) = messages.next().await {
                match m {
                    Ok(tokio_postgres::AsyncMessage::Notification(n)) => {
                        if tx.send(n).await.is_err() {
                            return;
                        }
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "database: the notification connection failed");
                        return;
                    }
                }
            }
        });
        let listen: String = channels.iter().map(|c| format!("LISTEN {c};")).collect();
        if let Err(e) = client.batch_execute(&listen).await {
            task.abort();
            return Err(e.into());
        }
        Ok((client, task))
    }
}

/// A pool error in one line, without the URL.
pub fn describe(e: &PoolError) -> String {
    match e {
        PoolError::Timeout(_) => "no database connection free within 5 s".into(),
        PoolError::Backend(e) => chain(e),
        other => other.to_string(),
    }
}

/// An error and its sources, `: `-separated (a TLS failure says why).
pub fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        let t = s.to_string();
        if !out.contains(&t) {
            out.push_str(": ");
            out.push_str(&t);
        }
        src = s.source();
    }
    out
}

/// One round trip: the database answers.
pub async fn ping(c: &impl tokio_postgres::GenericClient) -> Result<(), tokio_postgres::Error> {
    c.query_one("SELECT 1", &[]).await.map(|_| ())
}

/// True when `e` is a unique-constraint violation.
pub fn is_unique_violation(e: &tokio_postgres::Error) -> bool {
    e.code() == Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION)
}
