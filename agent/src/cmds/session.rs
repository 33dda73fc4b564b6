//! `invigil session start|stop|status`: the running agent's control API on
//! `server.listen`, over a plain HTTP/1.1 request (with the bearer token when
//! `server.token_file` is set).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

use crate::Failure;

pub enum Action {
    Start { session_id: String, student_id: String },
    Stop,
    Status,
}

pub fn run(action: Action, config: Option<&Path>) -> Result<(), Failure> {
    let cfg = super::load_config(config)?;
    // The same rule as the agent's own (crate::credentials): over ssh,
    // outside the unit, that is /etc/invigil/server.token when the config
    // names no file.
    let token = crate::credentials::SERVER_TOKEN
        .load(cfg.raw.server.token_file.as_deref())
        .map_err(Failure::usage)?
        .map(|(_, t)| t);
    let (method, path, body) = match &action {
        Action::Start { session_id, student_id } => (
            "POST",
            "/session/start",
            serde_json::json!({ "session_id": session_id, "student_id": student_id }).to_string(),
        ),
        Action::Stop => ("POST", "/session/stop", String::new()),
        Action::Status => ("GET", "/session", String::new()),
    };
    let (status, reply) = request(cfg.listen, method, path, &body, token.as_deref())?;
    let v: serde_json::Value = serde_json::from_str(&reply).unwrap_or(serde_json::Value::String(reply.clone()));
    if !(200..300).contains(&status) {
        let msg = v.get("error").and_then(|e| e.as_str()).unwrap_or(&reply);
        return Err(Failure::runtime(format!("the agent said {status}: {msg}")));
    }
    match action {
        Action::Status => match v.get("session").filter(|s| !s.is_null()) {
            Some(s) => println!(
                "session {} (student {}) since {}",
                s["session_id"].as_str().unwrap_or("?"),
                s["student_id"].as_str().unwrap_or("?"),
                s["started"].as_str().unwrap_or("?")
            ),
            None => println!("no session"),
        },
        Action::Start { session_id, .. } => println!("session {session_id} started"),
        Action::Stop => println!("session {} stopped", v["stopped"]["session_id"].as_str().unwrap_or("?")),
    }
    Ok(())
}

fn request(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    body: &str,
    token: Option<&str>,
) -> Result<(u16, String), Failure> {
    let not_running =
        |e: std::io::Error| Failure::runtime(format!("no agent answering on {addr} ({e}); is `invigil run` running?"));
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(3)).map_err(not_running)?;
    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
    let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).map_err(not_running)?;
    let mut out = Vec::new();
    s.read_to_end(&mut out).map_err(not_running)?;
    let out = String::from_utf8_lossy(&out);
    let (head, body) =
        out.split_once("\r\n\r\n").ok_or_else(|| Failure::runtime("a malformed reply from the agent"))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| Failure::runtime("a malformed reply from the agent"))?;
    Ok((status, body.to_string()))
}
