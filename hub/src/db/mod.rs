//! PostgreSQL: the pool, migrations, and typed queries, one module per
//! table group. Every statement is parameterised (`$1`, `$2`, …); no SQL is
//! ever built from a value. Statements are prepared once per connection
//! (`prepare_cached`), so a pooler must run in session mode (docs/DEPLOY.md).
//!
//! Connections come from a `deadpool-postgres` pool of `database.pool_size`
//! per hub process; waiting for one is bounded (5 s), after which the caller
//! answers 503 and the box retries. Each pooled connection has a statement
//! timeout of 30 s, so no request can hold a connection for ever.

pub mod audit;
pub mod clips;
pub mod desks;
pub mod exams;
pub mod ingest;
pub mod live;
pub mod migrate;
pub mod users;

use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_postgres::NoTls;

pub use deadpool_postgres::Object as Client;
pub use deadpool_postgres::PoolError;

/// The hub's handle on its database.
#[derive(Clone)]
pub struct Db {
    pub pool: Pool,
    config: tokio_postgres::Config,
}

impl Db {
    /// A pool on `url` of at most `size` connections; checks one connection.
    pub async fn connect(url: &str, size: usize) -> anyhow::Result<Db> {
        let config: tokio_postgres::Config = url.parse().map_err(|e| anyhow::anyhow!("database.url: {e}"))?;
        let mut pooled = config.clone();
        pooled.options("-c statement_timeout=30000");
        pooled.connect_timeout(Duration::from_secs(5));
        pooled.application_name("invigil-hub");
        let mgr = Manager::from_config(pooled, NoTls, ManagerConfig { recycling_method: RecyclingMethod::Fast });
        let pool = Pool::builder(mgr)
            .max_size(size)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(Duration::from_secs(5)))
            .create_timeout(Some(Duration::from_secs(5)))
            .recycle_timeout(Some(Duration::from_secs(5)))
            .build()?;
        let db = Db { pool, config };
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
        let (client, conn) = c.connect(NoTls).await?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "database: a dedicated connection ended");
            }
        });
        Ok(client)
    }

    /// A connection of its own whose notifications (LISTEN) go to `tx`.
    pub async fn listening(
        &self,
        tx: tokio::sync::mpsc::Sender<tokio_postgres::Notification>,
    ) -> anyhow::Result<(tokio_postgres::Client, tokio::task::JoinHandle<()>)> {
        let mut c = self.config.clone();
        c.connect_timeout(Duration::from_secs(5));
        c.application_name("invigil-hub-listen");
        c.keepalives_idle(Duration::from_secs(10));
        let (client, mut conn) = c.connect(NoTls).await?;
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
        Ok((client, task))
    }
}

/// A pool error in one line, without the URL.
pub fn describe(e: &PoolError) -> String {
    match e {
        PoolError::Timeout(_) => "no database connection free within 5 s".into(),
        PoolError::Backend(e) => e.to_string(),
        other => other.to_string(),
    }
}

/// True when `e` is a unique-constraint violation.
pub fn is_unique_violation(e: &tokio_postgres::Error) -> bool {
    e.code() == Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION)
}
