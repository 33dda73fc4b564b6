//! Versioned schema migrations: `migrations/NNNN_*.sql`, embedded in the
//! binary, applied in order by `invigil-hub migrate` and at the start of
//! every other command.
//!
//! Guarantees:
//! 1. Each step runs in one transaction together with its `schema_version`
//!    row: a step is applied completely or not at all.
//! 2. A database whose schema is newer than this build knows is refused,
//!    untouched (an older hub must not write into a newer schema).
//! 3. Hubs starting together do not both migrate: a PostgreSQL advisory
//!    lock (session level, on a connection of its own) serialises them; the
//!    second finds the work done.

use tokio_postgres::Client;

/// One schema step.
pub struct Migration {
    pub version: i32,
    pub name: &'static str,
    pub sql: &'static str,
}

/// Every step, in order; `version` is the position + 1.
pub const MIGRATIONS: &[Migration] = &[
    Migration { version: 1, name: "0001_init.sql", sql: include_str!("migrations/0001_init.sql") },
    Migration { version: 2, name: "0002_console.sql", sql: include_str!("migrations/0002_console.sql") },
    Migration { version: 3, name: "0003_login_limit.sql", sql: include_str!("migrations/0003_login_limit.sql") },
];

/// The schema version this build writes.
pub const SCHEMA_VERSION: i32 = MIGRATIONS.len() as i32;

/// The advisory lock key ("invigil" in ASCII, then 1).
const LOCK_KEY: i64 = 0x0069_6e76_6967_696c;

/// What `migrate` did.
#[derive(Debug, PartialEq, Eq)]
pub struct Outcome {
    pub from: i32,
    pub to: i32,
}

#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error(
        "the database schema is version {found}, newer than this invigil-hub knows ({known}): upgrade invigil-hub; nothing was changed"
    )]
    Newer { found: i32, known: i32 },
    #[error("migration {name}: {source}")]
    Step { name: &'static str, source: tokio_postgres::Error },
    #[error("database: {0}")]
    Db(#[from] tokio_postgres::Error),
}

/// Brings the schema to [`SCHEMA_VERSION`] on `client`, a connection of its
/// own (the advisory lock is held by the session until it is released here
/// or the connection closes).
pub async fn migrate(client: &mut Client) -> Result<Outcome, MigrateError> {
    client.execute("SELECT pg_advisory_lock($1)", &[&LOCK_KEY]).await?;
    let r = steps(client).await;
    let _ = client.execute("SELECT pg_advisory_unlock($1)", &[&LOCK_KEY]).await;
    r
}

async fn steps(client: &mut Client) -> Result<Outcome, MigrateError> {
    client
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS schema_version (
                 version     integer PRIMARY KEY,
                 name        text NOT NULL,
                 applied_at  timestamptz NOT NULL DEFAULT now()
             )",
        )
        .await?;
    let from = current(client).await?;
    if from > SCHEMA_VERSION {
        return Err(MigrateError::Newer { found: from, known: SCHEMA_VERSION });
    }
    for m in MIGRATIONS.iter().filter(|m| m.version > from) {
        let step = |source| MigrateError::Step { name: m.name, source };
        let tx = client.transaction().await?;
        tx.batch_execute(m.sql).await.map_err(step)?;
        tx.execute("INSERT INTO schema_version (version, name) VALUES ($1, $2)", &[&m.version, &m.name])
            .await
            .map_err(step)?;
        tx.commit().await.map_err(step)?;
        tracing::info!(version = m.version, name = m.name, "database: schema migrated");
    }
    Ok(Outcome { from, to: SCHEMA_VERSION })
}

/// The schema version of the database (0: none yet).
pub async fn current(client: &Client) -> Result<i32, tokio_postgres::Error> {
    let exists: bool = client.query_one("SELECT to_regclass('schema_version') IS NOT NULL", &[]).await?.get(0);
    if !exists {
        return Ok(0);
    }
    let v: Option<i32> = client.query_one("SELECT max(version) FROM schema_version", &[]).await?.get(0);
    Ok(v.unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_positions() {
        for (i, m) in MIGRATIONS.iter().enumerate() {
            assert_eq!(m.version, i as i32 + 1, "{}", m.name);
            assert!(m.name.starts_with(&format!("{:04}_", m.version)), "{}", m.name);
        }
    }
}
