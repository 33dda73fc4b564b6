//! The room console: web pages `invigil-hub` serves to proctors and admins.
//!
//! Server-rendered shells (the user, the room or exam, links) with small
//! vanilla scripts that read the JSON API; no build step, no framework,
//! nothing fetched from elsewhere: every script, style sheet and icon is
//! embedded in the binary (`console/static/`, `include_str!`).
//!
//! | page | what |
//! | --- | --- |
//! | `/login` | the login form (`POST /api/login`) |
//! | `/console` | the rooms this user may see |
//! | `/console/rooms/{room}` | the room view: a tile per desk, live ([`room_feed`]), alerts newest first, roster import, start and stop |
//! | `/console/exams/{id}` | review: sessions by priority, the score plot, incidents with their clips, decisions ([`review`]) |
//! | `/console/sessions/{id}/print` | a session's incidents, printable |
//! | `/console/audit[?room=R]` | the audit log (admin: all; proctor: their rooms) |
//! | `/console/admin` | admins: users (add, with rooms) and desks (enrol: the token once; revoke) ([`admin`]) |
//!
//! Guarantees:
//! 1. Every page and API answer carries a strict Content-Security-Policy
//!    (scripts, styles, media and connections from this hub only; no inline
//!    script or style), `X-Frame-Options: DENY`, `nosniff` and a same-origin
//!    referrer policy (`crate::routes`).
//! 2. A page without a valid login session redirects to `/login` (303); a
//!    page about a room the user has no rights to is a 403 page, as its
//!    API is a 403 (the same check, `CurrentUser::room`).
//! 3. Values are HTML-escaped ([`esc`]) where the server renders them;
//!    scripts set `textContent`, never `innerHTML` with data.

pub mod admin;
pub mod audit;
pub mod pages;
pub mod review;
pub mod room_feed;

use axum::Router;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::extract::ApiPath;
use crate::state::AppState;

/// The console's routes (pages, its API additions, static files).
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(pages::root))
        .route("/login", get(pages::login))
        .route("/console", get(pages::rooms))
        .route("/console/rooms/{room}", get(pages::room))
        .route("/console/exams/{id}", get(pages::exam))
        .route("/console/sessions/{session}/print", get(pages::print))
        .route("/console/audit", get(pages::audit))
        .route("/console/admin", get(pages::admin))
        .route("/static/{file}", get(asset))
        .route("/api/rooms/{room}/live", get(room_feed::upgrade))
        .route("/api/exams/{id}/review", get(review::review))
        .route("/api/sessions/{session}/scores", get(review::scores))
        .route("/api/sessions/{session}/incidents.csv", get(review::csv))
        .route("/api/audit", get(audit::list))
        .route("/api/admin/users", get(admin::users).post(admin::add_user))
        .route("/api/admin/desks", get(admin::desks).post(admin::add_desk))
        .route("/api/admin/desks/{desk}/revoke", axum::routing::post(admin::revoke_desk))
}

/// The embedded static files: (name, content type, body).
const ASSETS: &[(&str, &str, &str)] = &[
    ("console.css", "text/css; charset=utf-8", include_str!("static/console.css")),
    ("common.js", "text/javascript; charset=utf-8", include_str!("static/common.js")),
    ("login.js", "text/javascript; charset=utf-8", include_str!("static/login.js")),
    ("room.js", "text/javascript; charset=utf-8", include_str!("static/room.js")),
    ("review.js", "text/javascript; charset=utf-8", include_str!("static/review.js")),
    ("audit.js", "text/javascript; charset=utf-8", include_str!("static/audit.js")),
    ("admin.js", "text/javascript; charset=utf-8", include_str!("static/admin.js")),
];

async fn asset(ApiPath(file): ApiPath<String>) -> Response {
    match ASSETS.iter().find(|(n, _, _)| *n == file) {
        Some((_, ct, body)) => {
            let mut r = (*body).into_response();
            r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
            // Embedded in this build: a restart with a new build changes them.
            r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
            r
        }
        None => (StatusCode::NOT_FOUND, "no such file").into_response(),
    }
}

/// `s` safe inside HTML text and double-quoted attributes.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_is_escaped() {
        assert_eq!(esc(r#"<a href="x">'&'</a>"#), "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;");
    }

    #[test]
    fn every_page_script_is_embedded() {
        for f in ["console.css", "common.js", "login.js", "room.js", "review.js", "audit.js", "admin.js"] {
            assert!(ASSETS.iter().any(|(n, _, b)| *n == f && !b.is_empty()), "{f}");
        }
    }
}
