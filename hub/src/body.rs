//! Request bodies read with a cap: a body over its limit is refused (413)
//! before it is read whole when `Content-Length` says so, and counted
//! while it streams when it does not; gzip is expanded with a cap on the
//! output (a gzip bomb is a 413). A refused body is drained ([`drain`]) so
//! the client reads the refusal instead of a broken pipe.

use axum::body::Body;
use axum::http::{HeaderMap, StatusCode, header};
use futures_util::StreamExt;

use crate::error::ApiError;

/// The largest refused body read to its end so the client sees the answer.
pub const DRAIN_MAX: u64 = 64 << 20;
/// The longest a refused body is read for.
pub const DRAIN_TIME: std::time::Duration = std::time::Duration::from_secs(30);

/// The request's `Content-Length`, if it has a valid one.
pub fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok())
}

/// Reads and drops the rest of a refused body whose declared length is at
/// most [`DRAIN_MAX`], for at most [`DRAIN_TIME`], before the refusal is
/// sent: an HTTP/1.1 client still writing when the server answers and
/// closes gets a broken pipe instead of the answer, and a box could not
/// tell a refusal (dead-letter) from a network fault (retry). A client
/// that sent `Expect: 100-continue` has not sent its body and is not asked
/// for it (reading would send it a 100 Continue).
pub async fn drain(body: Body, headers: &HeaderMap) {
    let expects = headers.get(header::EXPECT).and_then(|v| v.to_str().ok());
    if expects.is_some_and(|v| v.trim().eq_ignore_ascii_case("100-continue")) {
        return;
    }
    if content_length(headers).is_none_or(|n| n > DRAIN_MAX) {
        return;
    }
    let mut stream = body.into_data_stream();
    let mut seen = 0u64;
    let _ = tokio::time::timeout(DRAIN_TIME, async {
        while let Some(Ok(chunk)) = stream.next().await {
            seen += chunk.len() as u64;
            if seen > DRAIN_MAX {
                break;
            }
        }
    })
    .await;
}

/// The body, at most `cap` bytes (413 beyond, at once if Content-Length says so).
pub async fn read_capped(headers: &HeaderMap, body: Body, cap: usize) -> Result<Vec<u8>, ApiError> {
    let too_big = |n: String| {
        ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, format!("body: {n} bytes is over the limit of {cap} bytes"))
    };
    let declared = content_length(headers);
    if let Some(n) = declared
        && n > cap as u64
    {
        drain(body, headers).await;
        return Err(too_big(n.to_string()));
    }
    let mut out = Vec::with_capacity(declared.unwrap_or(0) as usize);
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk =
            chunk.map_err(|e| ApiError::new(StatusCode::REQUEST_TIMEOUT, format!("body: reading failed: {e}")))?;
        if out.len() + chunk.len() > cap {
            return Err(too_big(format!("more than {}", out.len() + chunk.len())));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// gunzip with a cap on the output.
pub fn gunzip(data: &[u8], cap: usize) -> Result<Vec<u8>, ApiError> {
    use std::io::Read;
    let mut out = Vec::with_capacity(data.len() * 8);
    flate2::read::MultiGzDecoder::new(data).take(cap as u64 + 1).read_to_end(&mut out).map_err(|e| {
        ApiError::bad(format!("body: not valid gzip ({e}); send gzip with Content-Encoding: gzip, or plain JSON"))
    })?;
    if out.len() > cap {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("body: more than {cap} bytes after gunzip (limits.max_batch_expanded_kib)"),
        ));
    }
    Ok(out)
}

/// The body as JSON bytes: plain, or gunzipped (capped at `expanded_cap`);
/// any other `Content-Encoding` is a 415, which makes a box send plain JSON.
pub fn decode(headers: &HeaderMap, raw: Vec<u8>, expanded_cap: usize) -> Result<Vec<u8>, ApiError> {
    let enc = headers.get(header::CONTENT_ENCODING).map(|v| v.to_str().unwrap_or("?").trim().to_ascii_lowercase());
    match enc.as_deref() {
        None | Some("") | Some("identity") => Ok(raw),
        Some("gzip") | Some("x-gzip") => gunzip(&raw, expanded_cap),
        Some(enc) => Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("Content-Encoding {enc:?} is not supported; send gzip or plain JSON"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gzip_bomb_stops_at_the_cap() {
        use std::io::Write;
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        enc.write_all(&vec![b' '; 10 << 20]).unwrap();
        let bomb = enc.finish().unwrap();
        assert!(bomb.len() < 64 << 10);
        assert_eq!(gunzip(&bomb, 1 << 20).unwrap_err().status, StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(gunzip(b"\x1f\x8b not gzip", 1 << 20).unwrap_err().status, StatusCode::BAD_REQUEST);
    }
}
