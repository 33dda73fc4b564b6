//! `invigil-hub exam start --room ROOM --roster FILE.csv [--name N]
//! [--start-at T] [--end-at T]`: creates an exam and starts it (or
//! schedules it with `--start-at`, RFC 3339); prints its id on stdout.
//! Roster errors name the file and line. `exam stop ID`. `exam show ID
//! [--json]`: the contract's JSON (`db::exams::ExamShow`), or a table.

use std::path::PathBuf;

use clap::Subcommand;

use crate::config::Validated;
use crate::db::exams::{ExamError, NewExam};

#[derive(Subcommand)]
pub enum ExamCmd {
    /// Creates and starts an exam; prints its id.
    Start {
        #[arg(long)]
        room: String,
        /// CSV with the header desk,student_id (or desk,student_id,row,col).
        #[arg(long)]
        roster: PathBuf,
        #[arg(long)]
        name: Option<String>,
        /// Start at this time (RFC 3339) instead of now.
        #[arg(long)]
        start_at: Option<String>,
        /// Stop at this time (RFC 3339).
        #[arg(long)]
        end_at: Option<String>,
        /// Days after the stop when its clips and scores are deleted (default 30).
        #[arg(long)]
        retention_days: Option<i32>,
    },
    /// Stops an exam: its desks' sessions end.
    Stop { id: i64 },
    /// Shows an exam.
    Show {
        id: i64,
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(cfg: Validated, cmd: ExamCmd) -> i32 {
    // Bad input is reported before connecting.
    let mut new = None;
    if let ExamCmd::Start { room, roster, name, start_at, end_at, retention_days } = &cmd {
        let file = roster.display().to_string();
        let text = match std::fs::read_to_string(roster) {
            Ok(t) => t,
            Err(e) => return super::usage(&format!("{file}: {e}")),
        };
        let (lines, seats): (Vec<usize>, Vec<_>) = match crate::roster::parse_lines(&text, &file) {
            Ok(s) => s.into_iter().unzip(),
            Err(m) => return super::usage(&m),
        };
        let time = |flag: &str, v: &Option<String>| match v {
            None => Ok(None),
            Some(s) => proto::Timestamp::parse(s).map(|t| Some(t.0)).map_err(|m| format!("{flag}: {m}")),
        };
        let (start_at, end_at) = match (time("--start-at", start_at), time("--end-at", end_at)) {
            (Ok(a), Ok(b)) => (a, b),
            (Err(m), _) | (_, Err(m)) => return super::usage(&m),
        };
        new = Some((
            file,
            lines,
            NewExam {
                room: room.clone(),
                name: name.clone(),
                seats,
                start_at,
                end_at,
                created_by: super::actor(),
                retention_days: *retention_days,
            },
        ));
    }
    let db = match super::connect(&cfg).await {
        Ok(db) => db,
        Err(code) => return code,
    };
    let mut c = match db.get().await {
        Ok(c) => c,
        Err(e) => return super::fail(&format!("database: {}", crate::db::describe(&e))),
    };
    let actor = super::actor();
    let err = |e: ExamError, at: Option<(&str, &[usize])>| match e {
        ExamError::Seat { index, message } => match at {
            Some((file, lines)) => {
                super::usage(&format!("{file}: line {}: {message}", lines.get(index).copied().unwrap_or(0)))
            }
            None => super::usage(&format!("roster entry {}: {message}", index + 1)),
        },
        ExamError::Invalid(m) => super::usage(&m),
        e => super::fail(&e.to_string()),
    };
    match cmd {
        ExamCmd::Start { .. } => {
            let (file, lines, new) = new.expect("parsed above");
            let id = match crate::db::exams::create(&mut c, &new).await {
                Ok(id) => id,
                Err(e) => return err(e, Some((&file, &lines))),
            };
            let _ = crate::db::audit::log(
                &**c,
                &actor,
                "exam.create",
                serde_json::json!({"exam": id, "room": new.room, "desks": new.seats.len()}),
            )
            .await;
            if new.start_at.is_none() {
                if let Err(e) = crate::db::exams::start(&mut c, id).await {
                    return err(e, None);
                }
                let _ = crate::db::audit::log(&**c, &actor, "exam.start", serde_json::json!({"exam": id})).await;
            }
            println!("{id}");
            0
        }
        ExamCmd::Stop { id } => match crate::db::exams::stop(&mut c, id).await {
            Ok(()) => {
                let _ = crate::db::audit::log(&**c, &actor, "exam.stop", serde_json::json!({"exam": id})).await;
                0
            }
            Err(e) => err(e, None),
        },
        ExamCmd::Show { id, json } => match crate::db::exams::show(&**c, id).await {
            Ok(Some(show)) if json => {
                println!("{}", serde_json::to_string(&show).expect("ExamShow serialises"));
                0
            }
            Ok(Some(show)) => {
                println!("exam {} in {}: {}", show.id, show.room, show.state);
                for d in &show.desks {
                    let span = match (&d.first_score_ts, &d.last_score_ts) {
                        (Some(a), Some(b)) => format!("{a} .. {b}"),
                        _ => "-".into(),
                    };
                    println!(
                        "  {:<20} {:<20} {:>8} scores  {:>3} incidents  {span}",
                        d.device_id,
                        d.student_id,
                        d.scores,
                        d.incidents.len()
                    );
                }
                0
            }
            Ok(None) => super::fail(&format!("exam {id} does not exist")),
            Err(e) => super::fail(&format!("database: {e}")),
        },
    }
}
