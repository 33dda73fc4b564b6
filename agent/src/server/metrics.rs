//! `/metrics`: Prometheus text (format 0.0.4) through `prometheus-client`.
//! The counters live where they are counted (the run loop's [`Health`],
//! the spool writer, sync, upload); a collector reads them at each scrape,
//! so nothing is copied on the hot path. Names are those of earlier
//! releases (dashboards rely on them); the inference histogram is a real
//! `prometheus-client` histogram fed by the run loop.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

use super::Shared;
use super::health::{Health, disk_free};

/// Reads the counters of one running agent at scrape time.
struct AgentCollector {
    shared: std::sync::Weak<Shared>,
}

impl std::fmt::Debug for AgentCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AgentCollector")
    }
}

fn counter(e: &mut DescriptorEncoder, name: &str, help: &str, v: &AtomicU64) -> std::fmt::Result {
    let c = ConstCounter::new(v.load(Ordering::Relaxed));
    c.encode(e.encode_descriptor(name, help, None, c.metric_type())?)
}

fn gauge<N: prometheus_client::encoding::EncodeGaugeValue>(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    v: N,
) -> std::fmt::Result {
    let g = ConstGauge::new(v);
    g.encode(e.encode_descriptor(name, help, None, g.metric_type())?)
}

fn flag(b: &AtomicBool) -> i64 {
    b.load(Ordering::Relaxed) as i64
}

impl Collector for AgentCollector {
    fn encode(&self, mut e: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(s) = self.shared.upgrade() else { return Ok(()) };
        let h: &Health = &s.health;
        counter(&mut e, "invigil_analysed_frames", "Camera frames analysed", &h.analysed)?;
        counter(
            &mut e,
            "invigil_analysis_skipped_frames",
            "Camera frames dropped before analysis (the analysis queue was full)",
            &h.skipped,
        )?;
        gauge(&mut e, "invigil_analysed_fps", "Camera frames analysed per second", h.fps())?;
        counter(&mut e, "invigil_analyze_frames", "Frames received on /analyze", &h.analyze_frames)?;
        counter(&mut e, "invigil_analyze_dropped", "/analyze frames dropped (client too fast)", &h.analyze_dropped)?;
        counter(&mut e, "invigil_live_lagged_messages", "/live messages skipped by slow clients", &h.live_lagged)?;
        if let Some(w) = &s.writer {
            counter(&mut e, "invigil_spool_committed", "Records committed to the spool", &w.committed)?;
            counter(&mut e, "invigil_spool_dropped", "Records dropped before the spool", &w.dropped)?;
            gauge(&mut e, "invigil_spool_failing", "1 while spool commits fail", flag(&w.failing))?;
        }
        if let Some(st) = &s.sync {
            counter(&mut e, "invigil_sync_batches_sent", "Score batches delivered", &st.batches_sent)?;
            counter(&mut e, "invigil_sync_retried", "Sync attempts retried", &st.retried)?;
            counter(&mut e, "invigil_sync_dead_lettered", "Score batches dead-lettered", &st.dead_lettered)?;
            let pending = st.pending_scores.load(Ordering::Relaxed);
            gauge(&mut e, "invigil_sync_pending_scores", "Scores not yet delivered upstream", pending)?;
            let lag = st.lag_ms.load(Ordering::Relaxed) as f64 / 1000.0;
            gauge(&mut e, "invigil_sync_lag_seconds", "Age of the oldest undelivered score", lag)?;
        }
        let left = h.clips_left.load(Ordering::Relaxed);
        gauge(&mut e, "invigil_clips_session_left", "Clips the current session may still record", left)?;
        let refused = "Incidents left without a clip by clips.max_per_session";
        counter(&mut e, "invigil_clips_refused", refused, &h.clips_refused)?;
        if let Some(u) = &s.upload {
            counter(&mut e, "invigil_uploads", "Clips uploaded", &u.uploaded)?;
            gauge(&mut e, "invigil_upload_pending", "Clips waiting for upload", u.pending.load(Ordering::Relaxed))?;
            counter(&mut e, "invigil_clips_evicted", "Uploaded clips deleted locally for the quota", &u.evicted)?;
            let expired = "Uploaded clips deleted locally after clips.keep_uploaded_h";
            counter(&mut e, "invigil_clips_expired", expired, &u.expired)?;
        }
        if let Some(b) = s.spool_dir.as_deref().and_then(disk_free) {
            gauge(&mut e, "invigil_disk_free_bytes", "Free bytes in the spool's folder", b)?;
        }
        let enc = h.encoder.lock().unwrap().clone().unwrap_or_else(|| "none".into());
        let info = Info::new(vec![("encoder".to_string(), enc)]);
        info.encode(e.encode_descriptor("invigil_encoder", "The H.264 encoder in use", None, info.metric_type())?)?;
        if let Some(b) = h.model_backend.lock().unwrap().as_ref() {
            let info = Info::new(vec![("backend".to_string(), b.backend.to_string())]);
            let help = "The runtime the face model runs on";
            let d = e.encode_descriptor("invigil_model_backend", help, None, info.metric_type())?;
            info.encode(d)?;
        }
        Ok(())
    }
}

/// The registry of one agent's server: the collector and the histogram.
pub fn registry(shared: &Arc<Shared>) -> Registry {
    let mut r = Registry::default();
    r.register_collector(Box::new(AgentCollector { shared: Arc::downgrade(shared) }));
    r.register(
        "invigil_inference_ms",
        "Detection and scoring time per camera frame",
        shared.health.inference_ms.clone(),
    );
    r
}

pub(super) async fn handler(State(s): State<Arc<Shared>>) -> Response {
    let mut out = String::new();
    let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, &registry(&s));
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response()
}
