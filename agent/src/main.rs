//! `invigil`: the exam-desk camera agent. The work is in the `agent` library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use agent::cmds;

#[derive(Parser)]
#[command(
    name = "invigil",
    version,
    about = "Exam-desk camera agent: on-device focus scores, durable spool, clips of incidents"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the agent (systemd runs this).
    Run {
        /// Config file. Default: /etc/invigil/config.toml if present, else built-in defaults.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Score a video file offline with the same scorer as `run`.
    Score {
        video: PathBuf,
        /// Write one analysis JSON object per frame to this file.
        #[arg(long)]
        json: Option<PathBuf>,
        /// Draw score over time, threshold and incidents to this .svg or .png file.
        #[arg(long)]
        plot: Option<PathBuf>,
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// List cameras and the H.264 encoders that work here.
    Devices,
    /// Self-test: config, model, camera, encoder, spool, clips, upstream. Exit 1 if any fails.
    Check {
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Start, stop or show the exam session of the running agent (its control API on server.listen).
    Session {
        #[command(subcommand)]
        what: SessionCommand,
        #[arg(long, global = true)]
        config: Option<PathBuf>,
    },
    /// Show what the spool holds.
    Spool {
        #[command(subcommand)]
        what: SpoolCommand,
        #[arg(long, global = true)]
        config: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum SessionCommand {
    /// Start a session: scores, incidents and clips carry its ids.
    Start {
        #[arg(long)]
        session_id: String,
        #[arg(long)]
        student_id: String,
    },
    /// Stop the running session.
    Stop,
    /// Show the running session, if any.
    Status,
}

#[derive(Subcommand)]
enum SpoolCommand {
    /// Scores, incidents and clips: pending, synced, dead-lettered; bytes on disk.
    Stats,
    /// Sends dead-lettered scores and incidents again (after fixing what
    /// refused them, such as the token). Safe while the agent runs.
    RequeueDead,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    cmds::init_logging();
    let result = match cli.command {
        Command::Run { config } => cmds::run::run(config.as_deref()),
        Command::Score { video, json, plot, config } => {
            cmds::score::run(&video, json.as_deref(), plot.as_deref(), config.as_deref())
        }
        Command::Devices => cmds::devices::run(),
        Command::Check { config } => cmds::check::run(config.as_deref()),
        Command::Session { what, config } => {
            let action = match what {
                SessionCommand::Start { session_id, student_id } => {
                    cmds::session::Action::Start { session_id, student_id }
                }
                SessionCommand::Stop => cmds::session::Action::Stop,
                SessionCommand::Status => cmds::session::Action::Status,
            };
            cmds::session::run(action, config.as_deref())
        }
        Command::Spool { what: SpoolCommand::Stats, config } => cmds::spool::stats(config.as_deref()),
        Command::Spool { what: SpoolCommand::RequeueDead, config } => cmds::spool::requeue_dead(config.as_deref()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("invigil: error: {}", f.message);
            ExitCode::from(f.code)
        }
    }
}
