//! `invigil-hub user add NAME --role admin|proctor [--room ROOM]...`: a
//! console account. The password is read from stdin (its first line; at
//! least 10 characters), never from the command line, so it stays out of
//! shell history and `ps`. Audited.

use std::io::BufRead;

use clap::Subcommand;

use crate::config::Validated;
use crate::domain::Role;

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
    let role = match Role::parse(&role) {
        Ok(r) => r,
        Err(m) => return super::usage(&format!("--role: {m}")),
    };
    if role == Role::Proctor && rooms.is_empty() {
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
    match crate::actions::users::add(&db, &super::actor(), &name, role, &rooms, password).await {
        Ok(_) => {
            eprintln!("invigil-hub: user {name:?} added ({role})");
            0
        }
        Err(e) => super::action_failed(&e),
    }
}
