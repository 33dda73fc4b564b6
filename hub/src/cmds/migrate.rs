//! `invigil-hub migrate`: creates or upgrades the schema, then exits.
//! Prints `schema version N (was M)` on stdout.

use crate::config::Validated;
use crate::db::Db;

pub async fn run(cfg: Validated) -> i32 {
    let db = match Db::connect_tls(&cfg.database_url, 1, cfg.ca_file.as_deref()).await {
        Ok(db) => db,
        Err(e) => return super::fail(&format!("{e:#}")),
    };
    let mut c = match db.dedicated().await {
        Ok(c) => c,
        Err(e) => return super::fail(&format!("database: {e}")),
    };
    match crate::db::migrate::migrate(&mut c).await {
        Ok(o) => {
            println!("schema version {} (was {})", o.to, o.from);
            0
        }
        Err(e) => super::fail(&e.to_string()),
    }
}
