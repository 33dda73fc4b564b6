//! The console's server-rendered shells. Each checks the login session
//! (none: 303 to `/login?next=…`) and the room right (none: a 403 page),
//! renders what it knows escaped, and leaves the live parts to its script,
//! which reads `data-*` attributes of `<main>` (never inline script).

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{Html, IntoResponse, Response};
use serde::Deserialize;

use super::esc;
use crate::auth::{CurrentUser, rights};
use crate::db::users::User;
use crate::error::ApiError;
use crate::extract::{ApiPath, ApiQuery};
use crate::state::AppState;

/// The logged-in user of a page request, or the answer to give instead.
async fn page_user(app: &AppState, headers: &HeaderMap, uri: &Uri) -> Result<CurrentUser, Response> {
    let to_login = || {
        let next = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/console");
        let mut r = StatusCode::SEE_OTHER.into_response();
        let loc = format!("/login?next={}", urlencode(next));
        r.headers_mut()
            .insert(header::LOCATION, HeaderValue::from_str(&loc).unwrap_or(HeaderValue::from_static("/login")));
        r
    };
    let Some(tok) = crate::auth::user::session_token(headers) else { return Err(to_login()) };
    let c = app.db.get().await.map_err(|e| error_page(ApiError::from(e)))?;
    match crate::db::users::by_session(&**c, &tok).await {
        Ok(Some(u)) => Ok(CurrentUser(u)),
        Ok(None) => Err(to_login()),
        Err(e) => Err(error_page(e.into())),
    }
}

/// Percent-encodes a path for a query value.
fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A whole page: the header bar (user, links), `main` and its scripts.
fn shell(title: &str, user: Option<&User>, main_attrs: &str, main: &str, scripts: &[&str]) -> String {
    let nav = match user {
        Some(u) => format!(
            "<nav><a href=\"/console\">Rooms</a> <a href=\"/console/audit\">Audit log</a>{} <span class=\"who\">{} ({})</span> \
             <button id=\"logout\" type=\"button\">Log out</button></nav>",
            if u.is_admin() { " <a href=\"/console/admin\">Admin</a>" } else { "" },
            esc(&u.name),
            u.role
        ),
        None => String::new(),
    };
    let scripts: String = std::iter::once("common.js")
        .chain(scripts.iter().copied())
        .map(|s| format!("<script src=\"/static/{s}\" defer></script>"))
        .collect();
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\">\
         <title>{} · invigil</title><link rel=\"icon\" href=\"data:,\"><link rel=\"stylesheet\" href=\"/static/console.css\">{scripts}</head>\
         <body><header><a class=\"brand\" href=\"/console\">invigil</a> {nav}</header><main {main_attrs}>{main}</main></body></html>",
        esc(title)
    )
}

/// An API error as a page (403, 404, 503…).
fn error_page(e: ApiError) -> Response {
    let body = shell(
        &e.status.as_u16().to_string(),
        None,
        "",
        &format!(
            "<h1>{}</h1><p class=\"error\">{}</p><p><a href=\"/console\">Back to the rooms</a></p>",
            e.status,
            esc(&e.message)
        ),
        &[],
    );
    (e.status, Html(body)).into_response()
}

pub async fn root() -> Response {
    let mut r = StatusCode::SEE_OTHER.into_response();
    r.headers_mut().insert(header::LOCATION, HeaderValue::from_static("/console"));
    r
}

pub async fn login() -> Html<String> {
    Html(shell(
        "Log in",
        None,
        "",
        "<h1>Log in</h1><form id=\"login\" class=\"login\"><label>User <input name=\"user\" autocomplete=\"username\" required></label>\
         <label>Password <input name=\"password\" type=\"password\" autocomplete=\"current-password\" required></label>\
         <button type=\"submit\">Log in</button><p id=\"error\" class=\"error\" role=\"alert\"></p></form>",
        &["login.js"],
    ))
}

pub async fn rooms(State(app): State<AppState>, headers: HeaderMap, uri: Uri) -> Response {
    let user = match page_user(&app, &headers, &uri).await {
        Ok(u) => u,
        Err(r) => return r,
    };
    let r = async {
        let c = app.db.get().await?;
        let rooms = crate::db::rooms::list(&**c).await?;
        Ok::<_, ApiError>(rooms.into_iter().filter(|r| user.0.may(r.id)).map(|r| r.name).collect::<Vec<_>>())
    }
    .await;
    let names = match r {
        Ok(n) => n,
        Err(e) => return error_page(e),
    };
    let list: String = names
        .iter()
        .map(|n| format!("<li><a href=\"/console/rooms/{}\">{}</a></li>", esc(&urlencode(n)), esc(n)))
        .collect();
    let main = if names.is_empty() {
        "<h1>Rooms</h1><p>No room is assigned to you yet: an admin grants rooms (<code>invigil-hub user add NAME --role proctor --room ROOM</code>).</p>".to_string()
    } else {
        format!("<h1>Rooms</h1><ul class=\"rooms\">{list}</ul>")
    };
    Html(shell("Rooms", Some(&user.0), "", &main, &[])).into_response()
}

pub async fn room(
    State(app): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    ApiPath(room): ApiPath<String>,
) -> Response {
    let user = match page_user(&app, &headers, &uri).await {
        Ok(u) => u,
        Err(r) => return r,
    };
    if let Err(e) = rights::room(&app, &user, &room).await {
        return error_page(e);
    }
    let main = format!(
        "<div class=\"bar\"><h1>Room {r}</h1><div id=\"exam\" class=\"exam\"></div>\
         <div class=\"actions\"><label class=\"file\">Import roster (CSV) <input id=\"roster\" type=\"file\" accept=\".csv,text/csv\"></label>\
         <label>Retention (days) <input id=\"retention\" type=\"number\" min=\"1\" max=\"3650\" value=\"30\"></label>\
         <button id=\"start\" type=\"button\" disabled>Start exam</button><button id=\"stop\" type=\"button\" disabled>Stop exam</button>\
         <a id=\"review\" class=\"button\" hidden>Review</a> <a href=\"/console/audit?room={q}\">Audit log</a></div>\
         <p id=\"msg\" class=\"msg\" role=\"status\"></p><p id=\"conn\" class=\"conn\">connecting…</p></div>\
         <div class=\"room\"><section><h2>Desks</h2><div id=\"grid\" class=\"grid\"></div>\
         <p class=\"legend\"><span class=\"t in_session\">in session</span><span class=\"t alert\">alert</span>\
         <span class=\"t camera\">camera lost or covered</span><span class=\"t no_session\">no session</span>\
         <span class=\"t offline\">offline (nothing for 10 s)</span></p></section>\
         <aside><h2>Alerts</h2><ol id=\"alerts\" class=\"alerts\"></ol></aside></div>",
        r = esc(&room),
        q = esc(&urlencode(&room))
    );
    Html(shell(&format!("Room {room}"), Some(&user.0), &format!("data-room=\"{}\"", esc(&room)), &main, &["room.js"]))
        .into_response()
}

pub async fn exam(State(app): State<AppState>, headers: HeaderMap, uri: Uri, ApiPath(id): ApiPath<i64>) -> Response {
    let user = match page_user(&app, &headers, &uri).await {
        Ok(u) => u,
        Err(r) => return r,
    };
    if let Err(e) = rights::exam(&app, &user, id).await {
        return error_page(e);
    }
    let main = format!(
        "<h1>Review: exam {id}</h1><p id=\"examinfo\"></p><p id=\"retentioninfo\" class=\"retention\"></p>\
         <p class=\"formula\">{}</p><div class=\"review\"><section><h2>Sessions by priority</h2>\
         <table id=\"sessions\" class=\"sessions\"><thead><tr><th>priority</th><th>desk</th><th>student</th>\
         <th>under threshold</th><th>incidents</th><th>reviewed</th></tr></thead><tbody></tbody></table></section>\
         <section id=\"detail\" hidden><h2 id=\"who\"></h2><p><a id=\"csv\">CSV</a> · <a id=\"print\">Printable page</a></p>\
         <svg id=\"plot\" class=\"plot\" viewBox=\"0 0 800 200\" role=\"img\" aria-label=\"focus score over the session\"></svg>\
         <ol id=\"incidents\" class=\"incidents\"></ol></section></div>\
         <dialog id=\"player\"><h3 id=\"ptitle\"></h3><video id=\"video\" controls preload=\"auto\"></video><p id=\"parts\" class=\"parts\"></p>\
         <form id=\"decide\"><label><input type=\"radio\" name=\"decision\" value=\"confirmed\"> confirmed</label>\
         <label><input type=\"radio\" name=\"decision\" value=\"dismissed\"> dismissed</label>\
         <label>Note <textarea name=\"note\" maxlength=\"4000\" rows=\"3\"></textarea></label>\
         <button type=\"submit\">Record decision</button> <button id=\"close\" type=\"button\">Close</button>\
         <p id=\"dmsg\" class=\"msg\" role=\"status\"></p></form></dialog>",
        esc(crate::domain::PRIORITY_FORMULA)
    );
    Html(shell(&format!("Review exam {id}"), Some(&user.0), &format!("data-exam=\"{id}\""), &main, &["review.js"]))
        .into_response()
}

pub async fn print(
    State(app): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    ApiPath(session): ApiPath<String>,
) -> Response {
    let user = match page_user(&app, &headers, &uri).await {
        Ok(u) => u,
        Err(r) => return r,
    };
    let s = match super::review::one_session(&app, &user, &session).await {
        Ok(s) => s,
        Err(e) => return error_page(e),
    };
    let rows: String = s
        .incidents
        .iter()
        .map(|i| {
            let d = i.decision.as_ref();
            format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{:.1} s</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                i.id,
                esc(&i.started.to_string()),
                esc(&i.ended.map(|t| t.to_string()).unwrap_or_else(|| "open".into())),
                i.duration_s,
                i.min_score,
                esc(&i.reasons.join(", ")),
                esc(&d.map(|d| format!("{} by {} at {}", d.decision, d.by, d.at)).unwrap_or_else(|| "not reviewed".into())),
                esc(&d.and_then(|d| d.note.clone()).unwrap_or_default()),
            )
        })
        .collect();
    let main = format!(
        "<h1>Incidents of {student} at {desk}</h1><p>Session {sid}, from {from} to {to}. Time under the threshold: {under:.0} s; \
         {n} incidents, {rev} reviewed; review priority {prio:.0}.</p>\
         <table class=\"print\"><thead><tr><th>id</th><th>started</th><th>ended</th><th>duration</th><th>lowest score</th>\
         <th>reasons</th><th>decision</th><th>note</th></tr></thead><tbody>{rows}</tbody></table>\
         <p class=\"noprint\"><a href=\"/api/sessions/{q}/incidents.csv\">CSV</a></p>",
        student = esc(&s.student_id),
        desk = esc(&s.device_id),
        sid = esc(&s.session_id),
        from = esc(&s.started_at.to_string()),
        to = esc(&s.stopped_at.map(|t| t.to_string()).unwrap_or_else(|| "now".into())),
        under = s.under_s,
        n = s.incidents.len(),
        rev = s.reviewed,
        prio = s.priority,
        q = esc(&urlencode(&s.session_id)),
    );
    Html(shell(&format!("Incidents of {}", s.student_id), Some(&user.0), "class=\"printable\"", &main, &[]))
        .into_response()
}

#[derive(Deserialize)]
pub struct AuditPage {
    #[serde(default)]
    pub room: Option<String>,
}

pub async fn audit(
    State(app): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    ApiQuery(q): ApiQuery<AuditPage>,
) -> Response {
    let user = match page_user(&app, &headers, &uri).await {
        Ok(u) => u,
        Err(r) => return r,
    };
    let room = q.room.filter(|r| !r.is_empty());
    match &room {
        Some(r) => {
            if let Err(e) = rights::room(&app, &user, r).await {
                return error_page(e);
            }
        }
        None if !user.0.is_admin() => {
            return error_page(ApiError::forbidden(
                "a proctor reads the audit log of a room: open it from the room's page",
            ));
        }
        None => {}
    }
    let title = match &room {
        Some(r) => format!("Audit log of room {r}"),
        None => "Audit log".to_string(),
    };
    let main = format!(
        "<h1>{}</h1><table id=\"audit\" class=\"audit\"><thead><tr><th>when</th><th>who</th><th>what</th><th>room</th>\
         <th>details</th></tr></thead><tbody></tbody></table><button id=\"more\" type=\"button\" hidden>Older</button>",
        esc(&title)
    );
    let attrs = format!("data-room=\"{}\"", esc(room.as_deref().unwrap_or("")));
    Html(shell(&title, Some(&user.0), &attrs, &main, &["audit.js"])).into_response()
}

pub async fn admin(State(app): State<AppState>, headers: HeaderMap, uri: Uri) -> Response {
    let user = match page_user(&app, &headers, &uri).await {
        Ok(u) => u,
        Err(r) => return r,
    };
    if let Err(e) = user.admin() {
        return error_page(e);
    }
    let main = "<h1>Admin</h1><div class=\"admin\"><section><h2>Users</h2>\
        <table id=\"users\"><thead><tr><th>name</th><th>role</th><th>rooms</th></tr></thead><tbody></tbody></table>\
        <form id=\"adduser\" class=\"stack\"><label>Name <input name=\"name\" required></label>\
        <label>Role <select name=\"role\"><option>proctor</option><option>admin</option></select></label>\
        <label>Rooms (comma-separated) <input name=\"rooms\"></label>\
        <label>Password (10 characters or more) <input name=\"password\" type=\"password\" autocomplete=\"new-password\" required></label>\
        <button type=\"submit\">Add user</button><p class=\"msg\" role=\"status\"></p></form></section>\
        <section><h2>Desks</h2><table id=\"desks\"><thead><tr><th>desk</th><th>room</th><th>state</th><th></th></tr></thead><tbody></tbody></table>\
        <form id=\"adddesk\" class=\"stack\"><label>Desk (its device_id) <input name=\"desk\" required></label>\
        <label>Room <input name=\"room\" required></label><label><input name=\"rotate\" type=\"checkbox\"> replace the token of an enrolled desk</label>\
        <button type=\"submit\">Enrol desk</button><p class=\"msg\" role=\"status\"></p>\
        <p>The token is shown once: put it in the box's <code>[hub] token_file</code>.</p><pre id=\"token\"></pre></form></section></div>";
    Html(shell("Admin", Some(&user.0), "", main, &["admin.js"])).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_next_path_is_encoded() {
        assert_eq!(urlencode("/console/rooms/hall a?x=1&y"), "/console/rooms/hall%20a%3Fx%3D1%26y");
    }
}
