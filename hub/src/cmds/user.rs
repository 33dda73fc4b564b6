//! `invigil-hub user add NAME --role admin|proctor [--room ROOM]...`: a
//! console account. The password is read from stdin (its first line; at
//! least 10 characters), never from the command line, so it stays out of
//! shell history and `ps`.

use std::io::BufRead;

use clap::Subcommand;

use crate::config::Validated;
use crate::db::users::UserError;

#[derive(Subcommand)]
pub enum UserCmd {
    /// Adds a console account; the password is read from stdin.
    Add {
        name: String,
        #[arg(long, value_parser = ["admin", "proctor"])]
        role: String,
        /// A room the proctor may see (repeat for several).
        #[arg(long = "room")]
        rooms: Vec<String>,
    },
}

pub async fn run(cfg: Validated, cmd: UserCmd) -> i32 {
    let UserCmd::Add { name, role, rooms } = cmd;
    if role == "proctor" && rooms.is_empty() {
        return super::usage("a proctor needs at least one --room ROOM");
    }
    let mut line = String::new();
    if let Err(e) = std::io::stdin().lock().read_line(&mut line) {
        return super::usage(&format!("cannot read the password from stdin: {e}"));
    }
    let password = line.trim_end_matches(['\r', '\n']);
    let db = match super::connect(&cfg).await {
        Ok(db) => db,
        Err(code) => return code,
    };
    let mut c = match db.get().await {
        Ok(c) => c,
        Err(e) => return super::fail(&format!("database: {}", crate::db::describe(&e))),
    };
    match crate::db::users::add(&mut c, &name, &role, &rooms, password).await {
        Ok(_) => {
            let _ = crate::db::audit::log(
                &**c,
                &super::actor(),
                "user.add",
                serde_json::json!({"user": name, "role": role, "rooms": rooms}),
            )
            .await;
            eprintln!("invigil-hub: user {name:?} added ({role})");
            0
        }
        Err(UserError::Invalid(m)) => super::usage(&m),
        Err(e) => super::fail(&e.to_string()),
    }
}
