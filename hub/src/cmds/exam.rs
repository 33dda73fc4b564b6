//! `invigil-hub exam start --room ROOM --roster FILE.csv [--name N]
//! [--start-at T] [--end-at T] [--retention-days N]`: creates an exam and
//! starts it (or schedules it with `--start-at`, RFC 3339); prints its id
//! on stdout. Roster errors name the file and line. `exam stop ID`.
//! `exam show ID [--json]`: the contract's JSON (`db::exam_show::ExamShow`),
//! or a table. Start and stop are audited, in their transaction.

use std::path::PathBuf;

use clap::Subcommand;

use crate::actions::ActionError;
use crate::config::Validated;
use crate::db::Db;
use crate::db::exam_show::ExamShow;
use crate::db::exams::NewExam;

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

/// An exam to start, read from the command line and its roster file; the
/// file's line of each roster entry, for errors.
struct Planned {
    file: String,
    lines: Vec<usize>,
    new: NewExam,
}

pub async fn run(cfg: Validated, cmd: ExamCmd) -> i32 {
    // Bad input is reported before connecting.
    let planned = match &cmd {
        ExamCmd::Start { .. } => match plan(&cmd) {
            Ok(p) => Some(p),
            Err(m) => return super::usage(&m),
        },
        _ => None,
    };
    let db = match super::connect(&cfg).await {
        Ok(db) => db,
        Err(code) => return code,
    };
    let actor = super::actor();
    match cmd {
        ExamCmd::Start { .. } => start(&db, &actor, planned.expect("planned above")).await,
        ExamCmd::Stop { id } => match crate::actions::exams::stop(&db, &actor, id).await {
            Ok(()) => 0,
            Err(e) => super::action_failed(&e),
        },
        ExamCmd::Show { id, json } => show(&db, id, json).await,
    }
}

/// The exam of `exam start`, or a usage error naming the file, line or flag.
fn plan(cmd: &ExamCmd) -> Result<Planned, String> {
    let ExamCmd::Start { room, roster, name, start_at, end_at, retention_days } = cmd else {
        unreachable!("plan is only called for start");
    };
    let file = roster.display().to_string();
    let text = std::fs::read_to_string(roster).map_err(|e| format!("{file}: {e}"))?;
    let (lines, seats): (Vec<usize>, Vec<_>) = crate::roster::parse_lines(&text, &file)?.into_iter().unzip();
    let time = |flag: &str, v: &Option<String>| match v {
        None => Ok(None),
        Some(s) => proto::Timestamp::parse(s).map(|t| Some(t.0)).map_err(|m| format!("{flag}: {m}")),
    };
    let new = NewExam {
        room: room.clone(),
        name: name.clone(),
        seats,
        start_at: time("--start-at", start_at)?,
        end_at: time("--end-at", end_at)?,
        created_by: super::actor(),
        retention_days: *retention_days,
    };
    Ok(Planned { file, lines, new })
}

async fn start(db: &Db, actor: &str, p: Planned) -> i32 {
    let start_now = p.new.start_at.is_none();
    match crate::actions::exams::create(db, actor, &p.new, start_now).await {
        Ok(id) => {
            println!("{id}");
            0
        }
        Err(ActionError::Seat { index, message }) => {
            super::usage(&format!("{}: line {}: {message}", p.file, p.lines.get(index).copied().unwrap_or(0)))
        }
        Err(e) => super::action_failed(&e),
    }
}

async fn show(db: &Db, id: i64, json: bool) -> i32 {
    let found = async {
        let c = db.get().await.map_err(|e| crate::db::describe(&e))?;
        crate::db::exam_show::show(&**c, id).await.map_err(|e| e.to_string())
    }
    .await;
    match found {
        Ok(Some(show)) if json => {
            println!("{}", serde_json::to_string(&show).expect("ExamShow serialises"));
            0
        }
        Ok(Some(show)) => {
            print_table(&show);
            0
        }
        Ok(None) => super::fail(&format!("exam {id} does not exist")),
        Err(e) => super::fail(&format!("database: {e}")),
    }
}

fn print_table(show: &ExamShow) {
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
}
