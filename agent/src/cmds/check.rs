//! `invigil check`: a self-test an installer runs. One line per check,
//! `ok` or `FAIL` with the reason; exit 1 if any check fails. The sync,
//! storage and server lines come from the same [`Parts`] that `invigil run`
//! builds its [`Plan`](super::plan::Plan) from: what run would refuse, check
//! fails with the same message.

use std::time::Duration;

use pipeline::{Capture, CaptureConfig};

use super::plan::Parts;
use crate::Failure;
use crate::spool::Spool;

struct Report {
    failed: usize,
}

impl Report {
    fn line(&mut self, name: &str, r: Result<String, String>) {
        match r {
            Ok(detail) => println!("ok    {name:<9} {detail}"),
            Err(why) => {
                self.failed += 1;
                println!("FAIL  {name:<9} {why}");
            }
        }
    }
}

pub fn run(config: Option<&std::path::Path>) -> Result<(), Failure> {
    let mut report = Report { failed: 0 };
    let cfg = match super::load_config(config) {
        Ok(c) => {
            let from = config.map(|p| p.display().to_string()).unwrap_or_else(|| {
                if std::path::Path::new(crate::config::SYSTEM_CONFIG).exists() {
                    crate::config::SYSTEM_CONFIG.into()
                } else {
                    "built-in defaults".into()
                }
            });
            report.line("config", Ok(format!("{from} (device {})", c.device_id)));
            c
        }
        Err(f) => {
            report.line("config", Err(f.message));
            return Err(Failure::runtime("1 check failed"));
        }
    };

    // Model: loads, and scores a frame.
    report.line(
        "model",
        super::analyzer_and_backend(&cfg).map_err(|f| f.message).and_then(|(mut a, backend)| {
            let px = vec![90u8; 320 * 240 * 3];
            let frame = models::RgbFrame::packed(320, 240, &px).map_err(|e| e.to_string())?;
            let r = a.analyse(&frame, 0, 0, chrono::Utc::now()).map_err(|e| e.to_string())?;
            Ok(format!("{} on {backend} scored a test frame in {:.1} ms", cfg.model_path.display(), r.latency_ms))
        }),
    );

    // Camera: opens and delivers a frame within 10 s.
    report.line(
        "camera",
        (|| {
            cfg.source.precheck().map_err(|e| e.to_string())?;
            let mut cc = CaptureConfig::new(cfg.source.clone());
            cc.width = cfg.width;
            cc.height = cfg.height;
            cc.fps = cfg.fps;
            let cap = Capture::start(cc, None).map_err(|e| e.to_string())?;
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            while std::time::Instant::now() < deadline {
                match cap.pull(Duration::from_millis(500)) {
                    Ok(Some(_)) => return Ok(format!("{} delivers {}x{} frames", cfg.source, cfg.width, cfg.height)),
                    Ok(None) => {}
                    Err(e) => return Err(e.to_string()),
                }
            }
            Err(format!("{}: no frame within 10 s", cfg.source))
        })(),
    );

    // Encoder: the configured (or first working) H.264 encoder encodes.
    report.line(
        "encoder",
        pipeline::encoder::EncoderSettings::new(&cfg.encoder, cfg.fps, 1000)
            .resolve(cfg.width, cfg.height, cfg.fps)
            .map(|c| format!("{} encodes {}x{}", c.element, cfg.width, cfg.height))
            .map_err(|e| e.to_string()),
    );

    // Spool: opens (creating it), passes integrity_check, accepts a write.
    report.line(
        "spool",
        Spool::open(&cfg.spool_path)
            .and_then(|s| {
                s.integrity_check()?;
                s.write_probe()?;
                Ok(format!("{} writable, integrity ok", cfg.spool_path.display()))
            })
            .map_err(|e| e.to_string()),
    );

    // Clips folder: writable.
    report.line(
        "clips",
        std::fs::create_dir_all(&cfg.clips_dir)
            .and_then(|_| tempfile_in(&cfg.clips_dir))
            .map(|_| format!("{} writable", cfg.clips_dir.display()))
            .map_err(|e| format!("{}: {e}", cfg.clips_dir.display())),
    );

    let parts = Parts::of(&cfg);
    // Storage: the store run would upload clips to, with its credentials.
    report.line("storage", parts.upload.as_ref().map(|u| format!("{:?}", u.url)).map_err(Clone::clone));
    // Server: the token run would require, if any.
    report.line(
        "server",
        parts.server_token.as_ref().map_err(Clone::clone).map(|t| {
            format!("{} ({})", cfg.listen, if t.is_some() { "token required" } else { "no token: loopback only" })
        }),
    );
    // Hub: the device token run would connect with (the connection itself
    // is the upstream line's job when batches go to the hub).
    report.line(
        "hub",
        parts.hub.as_ref().map_err(Clone::clone).map(|h| match h {
            Some(h) => format!("{} with {}", h.ws_url, h.token_file.display()),
            None => "not configured".into(),
        }),
    );
    // Upstream: an empty batch (no scores, no incidents) with the token.
    report.line("upstream", upstream(&cfg, parts.sync));

    if report.failed > 0 {
        return Err(Failure::runtime(format!("{} check(s) failed", report.failed)));
    }
    Ok(())
}

/// POSTs an empty batch to the sync endpoint: reachable and authorised?
fn upstream(
    cfg: &crate::config::Validated,
    settings: Result<Option<crate::sync::SyncSettings>, String>,
) -> Result<String, String> {
    let Some(s) = settings? else { return Ok("not configured (scores stay in the spool)".into()) };
    let token = match &s.token_file {
        Some(p) => Some(s.token_secret.read(p).map_err(|e| e.to_string())?),
        None => None,
    };
    let body = serde_json::json!({
        "session_id": null, "student_id": null, "device_id": cfg.device_id,
        "batch_id": format!("check-{}-{}", cfg.device_id, chrono::Utc::now().timestamp_millis()),
        "scores": [], "incidents": [],
    });
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
    let status = rt.block_on(async {
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| e.to_string())?;
        let mut req =
            client.post(&s.endpoint).header(reqwest::header::CONTENT_TYPE, "application/json").body(body.to_string());
        if let Some(t) = &token {
            req = req.bearer_auth(t);
        }
        req.send().await.map(|r| r.status()).map_err(|e| format!("{}: unreachable: {e}", s.endpoint))
    })?;
    match status.as_u16() {
        200..=299 => Ok(format!("{} accepts batches (HTTP {status})", s.endpoint)),
        401 | 403 => Err(format!("{}: not authorised (HTTP {status}); check {}", s.endpoint, s.token_secret.key)),
        _ => Err(format!("{}: answered HTTP {status} to an empty batch", s.endpoint)),
    }
}

/// Creates and removes a file in `dir`.
fn tempfile_in(dir: &std::path::Path) -> std::io::Result<()> {
    let p = dir.join(format!(".invigil-check-{}", std::process::id()));
    std::fs::write(&p, b"check")?;
    std::fs::remove_file(&p)
}
