//! `invigil run`: capture -> detect -> score -> spool (-> sync, upload),
//! until SIGINT/SIGTERM.
//!
//! Stop order: the first SIGINT/SIGTERM raises the root [`Shutdown`]; the
//! camera loop stops capture and the desk closes the open incident; the
//! server, the GPIO panel (child tokens) and the hub link stop; the open clip is
//! finished; the spool is flushed; upload stops; sync sends what is pending
//! for up to 3 s. A second signal exits at once.
//!
//! # Layout
//! - here: the wiring, in that order.
//! - [`desk`]: the run loop as a type, one method per event.
//! - [`camera`]: the capture and its restarts.
//! - [`recorder`]: the clip recorder, its spool records and the session cap.
//! - [`panel`]: the GPIO light and call button.
//! - the hub link is [`crate::hub_link`].

pub mod camera;
pub mod desk;
pub mod panel;
pub mod recorder;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::Failure;
use crate::cmds::plan::Plan;
use crate::config::Validated;
use crate::service::Service;
use crate::shutdown::Shutdown;
use crate::spool::{Spool, SpoolLimits, SpoolWriter};

/// How long the last sync may take at stop.
const SYNC_GRACE: Duration = Duration::from_secs(3);

pub fn run(config: Option<&Path>) -> Result<(), Failure> {
    let cfg = super::load_config(config)?;
    let (analyzer, backend) = super::analyzer_and_backend(&cfg)?;
    match &backend.fallback {
        Some(why) => tracing::warn!(backend = backend.backend, reason = %why, "model on tflite: LiteRT not used"),
        None => tracing::info!(backend = %backend, "model loaded"),
    }
    // /analyze connections load the model on the same backend and library.
    let cfg = super::pin_backend(&cfg, &backend);
    cfg.source.precheck().map_err(Failure::runtime)?;
    let plan = Plan::build(&cfg)?;
    let clock = crate::clock::system();
    let mut spool = Spool::open(&cfg.spool_path).map_err(Failure::runtime)?;
    let limits = SpoolLimits {
        max_bytes: cfg.spool_max_disk_mb << 20,
        keep_delivered: Duration::from_secs(cfg.spool_keep_delivered_h as u64 * 3600),
    };
    spool.set_limits(limits).map_err(Failure::runtime)?;
    let interval = Duration::from_millis(cfg.commit_interval_ms);
    let (writer, writer_thread) =
        SpoolWriter::start_with_clock(spool, interval, clock.clone()).map_err(Failure::runtime)?;
    // Sync and upload: threads of their own, stopped after the last commit.
    let sync = plan.sync.map(|s| crate::sync::spawn(s, &cfg.spool_path, Some(writer.stats.clone())));
    let sync = sync.transpose().map_err(Failure::runtime)?;
    let upload = crate::upload::spawn(plan.upload, &cfg.spool_path).map_err(Failure::runtime)?;

    let shutdown = Shutdown::new();
    spawn_signal_handler(shutdown.clone())?;
    let shared = server_state(&cfg, plan.server_token, &writer, sync.as_ref(), &upload);
    *shared.health.model_backend.lock().unwrap() = Some(backend);
    // The server binds in its own thread, retrying while the address is
    // taken: scoring and the spool (always_on) do not wait for it.
    let server_thread = match crate::server::spawn(cfg.listen, shared.clone(), shutdown.child()) {
        Ok(t) => Some(t),
        Err(e) => {
            tracing::error!(listen = %cfg.listen, error = %e, "server failed to start; no /live, /analyze or sessions");
            None
        }
    };
    tracing::info!(
        device = %cfg.device_id, source = %cfg.source, width = cfg.width, height = cfg.height, fps = cfg.fps,
        spool = %cfg.spool_path.display(), always_on = cfg.always_on, "invigil starting"
    );
    // The hub's session (kept from the last run, then the hub's word) before
    // the first frame.
    let hub_link = match plan.hub {
        Some(h) => Some(
            crate::hub_link::spawn(h, shared.clone(), clock.clone())
                .map_err(|e| Failure::runtime(format!("hub link: {e}")))?,
        ),
        None => None,
    };
    let recorder = recorder::clip_recorder(&cfg, &writer)?;
    let panel_thread = match &cfg.raw.gpio {
        Some(g) => {
            let pins = crate::gpio::open(g.recording_led, g.call_button).map_err(Failure::runtime)?;
            let t = panel::spawn(
                pins,
                recorder.clone(),
                writer.clone(),
                cfg.device_id.clone(),
                shared.sessions.clone(),
                clock.clone(),
                shutdown.child(),
            );
            Some(t.map_err(|e| Failure::runtime(format!("GPIO thread: {e}")))?)
        }
        None => None,
    };
    let mut service = Service::from_env();
    {
        let mut desk = desk::Desk::new(&cfg, analyzer, &writer, &recorder, &shared, &mut service, clock.clone());
        camera::run(&mut desk, &cfg, &recorder, &shutdown);
        desk.finish();
    }
    service.stopping();
    shutdown.raise();
    if let Some(h) = hub_link {
        h.stop();
    }
    for t in [server_thread, panel_thread].into_iter().flatten() {
        let _ = t.join();
    }
    // Finish the clip being written before the last spool commit.
    recorder.flush();
    writer.close();
    let _ = writer_thread.join();
    upload.stop();
    if let Some(s) = sync {
        s.stop(SYNC_GRACE);
    }
    let committed = writer.stats.committed.load(Ordering::Relaxed);
    tracing::info!(committed, dropped = writer.stats.dropped.load(Ordering::Relaxed), "spool flushed; stopped");
    Ok(())
}

/// The live server's shared state: token, one analyzer per `/analyze`
/// connection, and the stats `/healthz` and `/metrics` report.
fn server_state(
    cfg: &Validated,
    token: Option<String>,
    writer: &SpoolWriter,
    sync: Option<&crate::sync::SyncHandle>,
    upload: &crate::upload::UploadHandle,
) -> Arc<crate::server::Shared> {
    // `/analyze` connections (the older browser protocol) score with the
    // face detector alone: the second-stage models cost about 65 MB per
    // connection, and up to 16 connections would not fit a Pi's memory.
    let mut c = cfg.clone();
    c.signals.talking = false;
    c.signals.gaze = false;
    c.signals.hand_at_face = false;
    c.signals.second_person = false;
    let factory: crate::server::AnalyzerFactory = Arc::new(move || super::analyzer(&c).map_err(|f| f.message));
    let mut shared = crate::server::Shared::new(factory, token, Default::default());
    shared.writer = Some(writer.stats.clone());
    shared.sync = sync.map(|s| s.stats.clone());
    shared.upload = Some(upload.stats.clone());
    shared.spool_dir =
        cfg.spool_path.parent().map(|p| if p.as_os_str().is_empty() { Path::new(".") } else { p }.into());
    Arc::new(shared)
}

/// The first SIGINT/SIGTERM raises `shutdown`; a second exits at once.
fn spawn_signal_handler(shutdown: Shutdown) -> Result<(), Failure> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::runtime(format!("tokio: {e}")))?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            rt.block_on(async move {
                use tokio::signal::unix::{SignalKind, signal};
                let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt()))
                else {
                    return;
                };
                let mut count = 0;
                loop {
                    tokio::select! {
                        _ = term.recv() => {}
                        _ = int.recv() => {}
                    }
                    count += 1;
                    if count == 1 {
                        tracing::info!("stopping: finishing the spool (signal again to stop at once)");
                        shutdown.raise();
                    } else {
                        std::process::exit(130);
                    }
                }
            })
        })
        .map_err(|e| Failure::runtime(format!("signal thread: {e}")))?;
    Ok(())
}
