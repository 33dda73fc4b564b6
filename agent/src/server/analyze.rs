//! `/analyze`: the browser protocol of CONTRACTS.md, for exam pages that
//! capture the webcam themselves. Each message is a JPEG (data URL text,
//! JSON `{"frame"|"image": dataurl}`, or binary bytes); each frame `N`
//! (per-connection counter from 0) gets one reply: an analysis,
//! `{"type":"error","frame":N,"error":…}`, or, when the client sends faster
//! than frames are scored (more than [`super::Limits::queue`] waiting),
//! `{"type":"dropped","frame":N}` for the oldest waiting frame. Analysis and
//! error replies come in frame order. A message over [`super::Limits::max_message`]
//! closes the connection (1009). Each connection has its own analyzer
//! (baseline and smoothing), on a blocking thread, one frame at a time.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::State;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::response::Response;
use futures_util::{SinkExt, StreamExt};
use proto::analysis::{AnalyzeDropped, AnalyzeError};
use tokio::sync::{Notify, mpsc};

use super::{Shared, too_busy};
use crate::analysis::Analyzer;

pub(super) async fn handler(State(s): State<Arc<Shared>>, ws: WebSocketUpgrade) -> Response {
    let Ok(permit) = s.conns.clone().try_acquire_owned() else { return too_busy() };
    let max = s.limits.max_message;
    ws.max_message_size(max).max_frame_size(max).on_upgrade(move |socket| async move {
        let _permit = permit;
        analyze_conn(socket, s).await
    })
}

/// Decodes a JPEG to packed RGB: (width, height, pixels).
pub fn decode_jpeg(bytes: &[u8]) -> Result<(usize, usize, Vec<u8>), String> {
    use zune_jpeg::zune_core::bytestream::ZCursor;
    use zune_jpeg::zune_core::colorspace::ColorSpace;
    use zune_jpeg::zune_core::options::DecoderOptions;
    if bytes.len() < 4 || bytes[0] != 0xFF || bytes[1] != 0xD8 {
        return Err("not a JPEG".into());
    }
    let opts = DecoderOptions::default().jpeg_set_out_colorspace(ColorSpace::RGB).set_strict_mode(true);
    let mut d = zune_jpeg::JpegDecoder::new_with_options(ZCursor::new(bytes), opts);
    let px = d.decode().map_err(|e| format!("JPEG: {e}"))?;
    let (w, h) = d.dimensions().ok_or("JPEG without dimensions")?;
    if px.len() != w * h * 3 {
        return Err("JPEG decoded to an unexpected size".into());
    }
    Ok((w, h, px))
}

/// One `/analyze` frame: its number and the message as received (decoded
/// on the scoring thread, see [`crate::frame_decode`]).
struct Job(u64, Message);

/// What one connection's scoring thread keeps from frame to frame.
struct Scoring {
    analyzer: Analyzer,
    /// Base64 output, reused.
    scratch: Vec<u8>,
    jpeg: crate::frame_decode::JpegScaler,
}

fn error_reply(frame: Option<u64>, error: String) -> String {
    serde_json::to_string(&AnalyzeError { frame, error }).expect("JSON of plain data")
}

/// Decodes and scores one frame; the reply to send, in the session's name.
fn score_one(sc: &mut Scoring, n: u64, m: &Message, started: Instant, session: Option<&str>) -> String {
    let err = |e: String| error_reply(Some(n), e);
    let jpeg = match crate::frame_decode::message_jpeg(m, &mut sc.scratch) {
        Ok(Some(j)) => j,
        Ok(None) => return err("not a frame".into()),
        Err(e) => return err(e),
    };
    let scaled = match sc.jpeg.decode(jpeg) {
        Ok(f) => f,
        Err(e) => return err(e),
    };
    match sc.analyzer.analyse(&scaled.frame, n, started.elapsed().as_millis() as u64, chrono::Utc::now()) {
        Ok(mut a) => {
            // The frame was decoded at 1/scale: the box goes back to the JPEG's pixels.
            let k = scaled.scale as f32;
            a.face_box = a.face_box.map(|b| b.map(|v| (v * k * 10.0).round() / 10.0));
            a.session_id = session.map(str::to_string);
            serde_json::to_string(&a).expect("JSON of plain data")
        }
        Err(e) => err(e.to_string()),
    }
}

async fn analyze_conn(socket: WebSocket, s: Arc<Shared>) {
    let (mut sink, mut incoming) = socket.split();
    let (out_tx, mut out_rx) = mpsc::channel::<Message>(32);
    let writer = tokio::spawn(async move {
        while let Some(m) = out_rx.recv().await {
            let close = matches!(m, Message::Close(_));
            if sink.send(m).await.is_err() || close {
                break;
            }
        }
        let _ = sink.close().await;
    });
    let factory = s.analyzer.clone();
    let scoring = match tokio::task::spawn_blocking(move || {
        let jpeg = crate::frame_decode::JpegScaler::new()?;
        Ok::<_, String>(Scoring { analyzer: factory()?, scratch: Vec::new(), jpeg })
    })
    .await
    {
        Ok(Ok(a)) => a,
        Ok(Err(e)) => {
            let _ = out_tx.send(Message::Text(error_reply(None, e).into())).await;
            drop(out_tx);
            let _ = writer.await;
            return;
        }
        Err(e) => {
            tracing::error!(error = %e, "analyzer task failed");
            return;
        }
    };
    let session = s.current_session().map(|x| x.session_id);
    let queue: Arc<Mutex<(VecDeque<Job>, bool)>> = Arc::default();
    let notify = Arc::new(Notify::new());
    // Scoring: one frame at a time on a blocking thread, replies in order.
    let worker = {
        let (queue, notify, out_tx) = (queue.clone(), notify.clone(), out_tx.clone());
        tokio::spawn(async move {
            let mut scoring = Some(scoring);
            let started = Instant::now();
            loop {
                let job = {
                    let mut q = queue.lock().unwrap();
                    match q.0.pop_front() {
                        Some(j) => Some(j),
                        None if q.1 => return,
                        None => None,
                    }
                };
                let Some(Job(n, m)) = job else {
                    notify.notified().await;
                    continue;
                };
                let mut sc = scoring.take().expect("scoring state");
                let session = session.clone();
                let Ok((sc, reply)) = tokio::task::spawn_blocking(move || {
                    let r = score_one(&mut sc, n, &m, started, session.as_deref());
                    (sc, r)
                })
                .await
                else {
                    return;
                };
                scoring = Some(sc);
                if out_tx.send(Message::Text(reply.into())).await.is_err() {
                    return;
                }
            }
        })
    };
    let mut next = 0u64;
    let cap = s.limits.queue.max(1);
    while let Some(m) = incoming.next().await {
        let m = match m {
            Ok(m) => m,
            Err(e) => {
                let reason = e.to_string();
                let code = if reason.contains("too long") || reason.contains("Space limit") { 1009 } else { 1002 };
                tracing::info!(error = %reason, "/analyze: closing a connection");
                let reason: String = reason.chars().take(100).collect();
                let _ = out_tx.send(Message::Close(Some(CloseFrame { code, reason: reason.into() }))).await;
                break;
            }
        };
        if matches!(m, Message::Close(_)) {
            break;
        }
        if !matches!(m, Message::Binary(_) | Message::Text(_)) {
            continue;
        }
        let job = Job(next, m);
        s.health.analyze_frames.fetch_add(1, Ordering::Relaxed);
        next += 1;
        let dropped = {
            let mut q = queue.lock().unwrap();
            q.0.push_back(job);
            if q.0.len() > cap { q.0.pop_front().map(|Job(n, _)| n) } else { None }
        };
        notify.notify_one();
        if let Some(n) = dropped {
            s.health.analyze_dropped.fetch_add(1, Ordering::Relaxed);
            let reply = serde_json::to_string(&AnalyzeDropped { frame: n }).expect("JSON of plain data");
            if out_tx.send(Message::Text(reply.into())).await.is_err() {
                break;
            }
        }
    }
    queue.lock().unwrap().1 = true;
    notify.notify_one();
    let _ = worker.await;
    drop(out_tx);
    let _ = writer.await;
}
