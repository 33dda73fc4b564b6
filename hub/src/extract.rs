//! Extractors whose rejections are the hub's own error shape
//! (`{"error": "…"}`, naming the part of the request at fault), instead of
//! axum's plain-text ones: a console script or a box reads one shape.
//!
//! - [`ApiJson`]: a JSON body (`Content-Type: application/json`, else 415);
//!   a body that does not parse is a 400 naming its JSON path
//!   (`body: roster[2].desk: …`).
//! - [`ApiPath`], [`ApiQuery`]: path segments and query strings (400
//!   naming the part).

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use bytes::Bytes;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// A JSON request body.
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
        if !json {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "Content-Type: application/json is expected for this body",
            ));
        }
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|e| ApiError::new(e.status(), format!("body: {}", e.body_text())))?;
        parse_json(&bytes).map(ApiJson)
    }
}

/// `bytes` as a `T`, or a 400 naming the JSON path at fault.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let at = if path == "." { "body".to_string() } else { format!("body: {path}") };
        ApiError::bad(format!("{at}: {}", e.inner()))
    })
}

/// Path segments.
pub struct ApiPath<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| ApiPath(p.0))
            .map_err(|e| ApiError::new(e.status(), format!("path: {}", e.body_text())))
    }
}

/// A query string.
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| ApiQuery(q.0))
            .map_err(|e| ApiError::new(e.status(), format!("query: {}", e.body_text())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug)]
    #[allow(dead_code)]
    struct Seat {
        desk: String,
        row: u32,
    }

    #[test]
    fn a_bad_body_names_its_json_path() {
        let e = parse_json::<Vec<Seat>>(br#"[{"desk":"d1","row":1},{"desk":"d2","row":-1}]"#).unwrap_err();
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        assert!(e.message.starts_with("body: [1].row: "), "{}", e.message);
        assert!(parse_json::<Seat>(b"{not json").unwrap_err().message.starts_with("body: "));
    }
}
