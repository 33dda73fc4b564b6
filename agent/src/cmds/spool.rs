//! `invigil spool stats` and `invigil spool requeue-dead`.

use crate::Failure;
use crate::spool::Spool;

fn existing_spool(config: Option<&std::path::Path>) -> Result<crate::config::Validated, Failure> {
    let cfg = super::load_config(config)?;
    if !cfg.spool_path.exists() {
        return Err(Failure::runtime(format!(
            "spool {}: no such file (has the agent run yet?)",
            cfg.spool_path.display()
        )));
    }
    Ok(cfg)
}

pub fn requeue_dead(config: Option<&std::path::Path>) -> Result<(), Failure> {
    let cfg = existing_spool(config)?;
    let mut s = Spool::open(&cfg.spool_path).map_err(Failure::runtime)?;
    let (scores, incidents) = s.requeue_dead().map_err(Failure::runtime)?;
    println!(
        "requeued {scores} scores and {incidents} incidents; the agent sends them with its next batches{}",
        if cfg.raw.sync.endpoint.is_none() && cfg.hub.is_none() {
            " (neither sync.endpoint nor [hub] is set in this config)"
        } else {
            ""
        }
    );
    Ok(())
}

pub fn stats(config: Option<&std::path::Path>) -> Result<(), Failure> {
    let cfg = existing_spool(config)?;
    let s = Spool::open_read_only(&cfg.spool_path).map_err(Failure::runtime)?;
    let st = s.stats(cfg.score.threshold).map_err(Failure::runtime)?;
    let pct = |n: i64| if st.scores == 0 { 0.0 } else { 100.0 * n as f64 / st.scores as f64 };
    println!("spool:      {} ({} bytes on disk)", cfg.spool_path.display(), st.bytes);
    println!(
        "scores:     {} total, {} pending, {} synced, {} dead-lettered",
        st.scores, st.scores_pending, st.scores_synced, st.scores_dead
    );
    println!(
        "            mean {:.1}; {:.1}% at or above {}, {:.1}% below",
        st.mean_score.unwrap_or(0.0),
        pct(st.scores - st.scores_below_threshold),
        cfg.score.threshold,
        pct(st.scores_below_threshold)
    );
    println!(
        "incidents:  {} total, {} pending, {} dead-lettered",
        st.incidents, st.incidents_pending, st.incidents_dead
    );
    println!("clips:      {} total, {} uploaded, {} pending upload", st.clips, st.clips_uploaded, st.clips_pending);
    println!("batches:    {} pending, {} dead-lettered", st.batches_pending, st.batches_dead);
    println!(
        "dropped:    {} delivered and {} undelivered scores at the size cap, {} from a full memory queue",
        st.shed_delivered, st.shed_undelivered, st.queue_dropped
    );
    let oldest = st.oldest_pending.map(|t| proto::Timestamp(t).to_string());
    println!("oldest pending score: {}", oldest.as_deref().unwrap_or("none"));
    Ok(())
}
