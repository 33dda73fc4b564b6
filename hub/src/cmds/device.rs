//! `invigil-hub device add DESK --room ROOM [--rotate]`: enrols a desk and
//! prints its token once on stdout (nothing else on stdout); the hub keeps
//! only its SHA-256. `device revoke DESK`: the token stops working at once
//! on every hub (401; a connected desk is disconnected). `device list
//! [--room ROOM]`: one line a desk.

use clap::Subcommand;

use crate::config::Validated;
use crate::db::desks::EnrolError;

#[derive(Subcommand)]
pub enum DeviceCmd {
    /// Enrols a desk (its device_id) in a room; prints its token once.
    Add {
        desk: String,
        #[arg(long)]
        room: String,
        /// Replace the token of a desk that is already enrolled.
        #[arg(long)]
        rotate: bool,
    },
    /// Revokes a desk's token.
    Revoke { desk: String },
    /// Lists desks: device_id, room, enrolled|revoked.
    List {
        #[arg(long)]
        room: Option<String>,
    },
}

pub async fn run(cfg: Validated, cmd: DeviceCmd) -> i32 {
    let db = match super::connect(&cfg).await {
        Ok(db) => db,
        Err(code) => return code,
    };
    let mut c = match db.get().await {
        Ok(c) => c,
        Err(e) => return super::fail(&format!("database: {}", crate::db::describe(&e))),
    };
    let actor = super::actor();
    match cmd {
        DeviceCmd::Add { desk, room, rotate } => match crate::db::desks::enrol(&mut c, &desk, &room, rotate).await {
            Ok(token) => {
                let _ = crate::db::audit::log(
                    &**c,
                    &actor,
                    "device.add",
                    serde_json::json!({"desk": desk, "room": room, "rotate": rotate}),
                )
                .await;
                println!("{token}");
                0
            }
            Err(EnrolError::Invalid(m)) => super::usage(&m),
            Err(e) => super::fail(&e.to_string()),
        },
        DeviceCmd::Revoke { desk } => match crate::db::desks::revoke(&**c, &desk).await {
            Ok(true) => {
                let _ = crate::db::audit::log(&**c, &actor, "device.revoke", serde_json::json!({"desk": desk})).await;
                eprintln!("invigil-hub: desk {desk:?} revoked");
                0
            }
            Ok(false) => super::fail(&format!("desk {desk:?} is not enrolled (or already revoked)")),
            Err(e) => super::fail(&format!("database: {e}")),
        },
        DeviceCmd::List { room } => {
            let rows = c
                .query(
                    "SELECT d.device_id, r.name, d.token_sha256 IS NOT NULL FROM desks d JOIN rooms r ON r.id = d.room_id
                     WHERE $1::text IS NULL OR r.name = $1 ORDER BY r.name, d.device_id",
                    &[&room],
                )
                .await;
            match rows {
                Ok(rows) => {
                    for r in rows {
                        let state = if r.get::<_, bool>(2) { "enrolled" } else { "revoked" };
                        println!("{}\t{}\t{state}", r.get::<_, String>(0), r.get::<_, String>(1));
                    }
                    0
                }
                Err(e) => super::fail(&format!("database: {e}")),
            }
        }
    }
}
