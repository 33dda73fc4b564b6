//! The spool's schema and its versions. A new file gets [`SCHEMA`] at once;
//! an older one is upgraded one transaction per step ([`UPGRADES`]), each
//! step also writing `PRAGMA user_version`; a newer one is refused
//! untouched. An upgraded file equals a fresh one (tested in
//! `spool/tests.rs`: `an_upgraded_v1_spool_equals_a_fresh_one`).

use rusqlite::{Connection, TransactionBehavior};

/// The schema version this build writes.
pub const SCHEMA_VERSION: i64 = 2;

/// The whole schema of a new file at [`SCHEMA_VERSION`]. An older file
/// upgraded by [`UPGRADES`] must end up equal to it (columns in the same
/// order, the same indexes): `an_upgraded_v1_spool_equals_a_fresh_one`.
pub const SCHEMA: &str = "
    CREATE TABLE scores (
        id INTEGER PRIMARY KEY,
        session_id TEXT,
        student_id TEXT,
        frame INTEGER NOT NULL,
        ts TEXT NOT NULL,
        focus_score INTEGER NOT NULL CHECK (focus_score BETWEEN 0 AND 100),
        num_faces INTEGER NOT NULL,
        yaw_deg REAL,
        pitch_deg REAL,
        reasons TEXT NOT NULL,
        delivered INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX scores_pending ON scores (delivered, id);
    CREATE TABLE incidents (
        id TEXT PRIMARY KEY,
        session_id TEXT,
        student_id TEXT,
        started TEXT NOT NULL,
        ended TEXT,
        min_score INTEGER NOT NULL,
        reasons TEXT NOT NULL,
        clip_path TEXT,
        delivered INTEGER NOT NULL DEFAULT 0,
        rev INTEGER NOT NULL DEFAULT 0,
        batch INTEGER,
        sent_rev INTEGER
    );
    CREATE INDEX incidents_pending ON incidents (delivered);
    CREATE TABLE clips (
        id INTEGER PRIMARY KEY,
        incident_id TEXT NOT NULL,
        path TEXT NOT NULL UNIQUE,
        bytes INTEGER NOT NULL DEFAULT 0,
        uploaded INTEGER NOT NULL DEFAULT 0,
        object_key TEXT,
        object_url TEXT,
        uploaded_at TEXT,
        removed INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX clips_pending ON clips (uploaded, id);
    CREATE TABLE batches (
        id INTEGER PRIMARY KEY,
        batch_id TEXT NOT NULL UNIQUE,
        created TEXT NOT NULL,
        state INTEGER NOT NULL DEFAULT 0,
        first_score INTEGER,
        last_score INTEGER,
        scores INTEGER NOT NULL,
        incidents INTEGER NOT NULL,
        body BLOB,
        status INTEGER,
        error TEXT,
        done TEXT
    );
    CREATE INDEX batches_state ON batches (state, id);
    CREATE TABLE counters (
        name TEXT PRIMARY KEY,
        value INTEGER NOT NULL
    ) WITHOUT ROWID;";

/// Each entry upgrades an existing file from version `i` to `i + 1`, in one
/// transaction. (A new file gets [`SCHEMA`] at once.)
pub const UPGRADES: [&str; SCHEMA_VERSION as usize] = [
    // v0 -> v1
    "CREATE TABLE scores (
        id INTEGER PRIMARY KEY,
        session_id TEXT,
        student_id TEXT,
        frame INTEGER NOT NULL,
        ts TEXT NOT NULL,
        focus_score INTEGER NOT NULL CHECK (focus_score BETWEEN 0 AND 100),
        num_faces INTEGER NOT NULL,
        yaw_deg REAL,
        pitch_deg REAL,
        reasons TEXT NOT NULL,
        delivered INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX scores_pending ON scores (delivered, id);
    CREATE TABLE incidents (
        id TEXT PRIMARY KEY,
        session_id TEXT,
        student_id TEXT,
        started TEXT NOT NULL,
        ended TEXT,
        min_score INTEGER NOT NULL,
        reasons TEXT NOT NULL,
        clip_path TEXT,
        delivered INTEGER NOT NULL DEFAULT 0
    );
    CREATE TABLE clips (
        id INTEGER PRIMARY KEY,
        incident_id TEXT NOT NULL,
        path TEXT NOT NULL UNIQUE,
        bytes INTEGER NOT NULL DEFAULT 0,
        uploaded INTEGER NOT NULL DEFAULT 0
    );",
    // v1 -> v2: sync batches, incident revisions, clip upload state, counters.
    "ALTER TABLE incidents ADD COLUMN rev INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE incidents ADD COLUMN batch INTEGER;
    ALTER TABLE incidents ADD COLUMN sent_rev INTEGER;
    CREATE INDEX incidents_pending ON incidents (delivered);
    ALTER TABLE clips ADD COLUMN object_key TEXT;
    ALTER TABLE clips ADD COLUMN object_url TEXT;
    ALTER TABLE clips ADD COLUMN uploaded_at TEXT;
    ALTER TABLE clips ADD COLUMN removed INTEGER NOT NULL DEFAULT 0;
    CREATE INDEX clips_pending ON clips (uploaded, id);
    CREATE TABLE batches (
        id INTEGER PRIMARY KEY,
        batch_id TEXT NOT NULL UNIQUE,
        created TEXT NOT NULL,
        state INTEGER NOT NULL DEFAULT 0,
        first_score INTEGER,
        last_score INTEGER,
        scores INTEGER NOT NULL,
        incidents INTEGER NOT NULL,
        body BLOB,
        status INTEGER,
        error TEXT,
        done TEXT
    );
    CREATE INDEX batches_state ON batches (state, id);
    CREATE TABLE counters (
        name TEXT PRIMARY KEY,
        value INTEGER NOT NULL
    ) WITHOUT ROWID;",
];

/// The version a file says it has.
pub fn version(conn: &Connection) -> rusqlite::Result<i64> {
    conn.pragma_query_value(None, "user_version", |r| r.get(0))
}

/// Brings a file at version `found` (not newer than this build's) to
/// [`SCHEMA_VERSION`]. Each step re-reads the version inside its
/// transaction: another process may have upgraded meanwhile.
pub fn upgrade(conn: &mut Connection, found: i64) -> rusqlite::Result<()> {
    if found == 0 {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        if version(&tx)? == 0 {
            tx.execute_batch(SCHEMA)?;
            tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
        }
        return tx.commit();
    }
    for v in found..SCHEMA_VERSION {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        if version(&tx)? == v {
            tx.execute_batch(UPGRADES[v as usize])?;
            tx.pragma_update(None, "user_version", v + 1)?;
        }
        tx.commit()?;
    }
    Ok(())
}
