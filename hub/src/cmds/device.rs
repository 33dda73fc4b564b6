//! `invigil-hub device add DESK --room ROOM [--rotate]`: enrols a desk and
//! prints its token once on stdout (nothing else on stdout); the hub keeps
//! only its SHA-256. `device revoke DESK`: the token stops working at once
//! on every hub (401; a connected desk is disconnected). `device list
//! [--room ROOM]`: one line a desk. Changes are audited with the room.

use clap::Subcommand;

use crate::config::Validated;

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
    let actor = super::actor();
    match cmd {
        DeviceCmd::Add { desk, room, rotate } => {
            match crate::actions::desks::enrol(&db, &actor, &desk, &room, rotate).await {
                Ok(token) => {
                    println!("{token}");
                    0
                }
                Err(e) => super::action_failed(&e),
            }
        }
        DeviceCmd::Revoke { desk } => match crate::actions::desks::revoke(&db, &actor, &desk).await {
            Ok(()) => {
                eprintln!("invigil-hub: desk {desk:?} revoked");
                0
            }
            Err(e) => super::action_failed(&e),
        },
        DeviceCmd::List { room } => {
            let rows = async {
                let c = db.get().await.map_err(|e| crate::db::describe(&e))?;
                crate::db::desks::list(&**c, room.as_deref(), i64::MAX).await.map_err(|e| e.to_string())
            }
            .await;
            match rows {
                Ok(rows) => {
                    for d in rows {
                        let state = if d.enrolled { "enrolled" } else { "revoked" };
                        println!("{}\t{}\t{state}", d.device_id, d.room);
                    }
                    0
                }
                Err(e) => super::fail(&format!("database: {e}")),
            }
        }
    }
}
