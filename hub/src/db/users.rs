//! Console users, their rooms, and login sessions.
//!
//! Passwords are stored as argon2id PHC strings (a random 16-byte salt,
//! the crate's default cost). A login session is a random token in an
//! HttpOnly cookie; only its SHA-256 is stored, with an expiry. Roles:
//! `admin` (every room, every action) and `proctor` (the rooms granted).

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use chrono::{DateTime, Utc};
use tokio_postgres::{GenericClient, Transaction};

use crate::domain::Role;
use crate::token;

/// A logged-in console user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    pub id: i64,
    pub name: String,
    pub role: Role,
    /// The rooms a proctor may see (empty for an admin, who sees all).
    pub rooms: Vec<i64>,
}

impl User {
    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }

    /// May this user see and act on `room_id`?
    pub fn may(&self, room_id: i64) -> bool {
        self.is_admin() || self.rooms.contains(&room_id)
    }
}

/// A user as the admin page lists them.
#[derive(Clone, Debug, serde::Serialize)]
pub struct UserRow {
    pub name: String,
    pub role: Role,
    pub disabled: bool,
    pub rooms: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum UserError {
    #[error("{0}")]
    Invalid(String),
    #[error("user {0:?} exists already")]
    Exists(String),
    #[error("database: {0}")]
    Db(#[from] tokio_postgres::Error),
}

/// Shortest password accepted.
pub const MIN_PASSWORD: usize = 10;

/// The argon2id PHC string of `password`.
pub fn hash_password(password: &str) -> String {
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).expect("the OS random source");
    let salt = SaltString::encode_b64(&salt).expect("16 bytes is a valid salt");
    Argon2::default().hash_password(password.as_bytes(), &salt).expect("argon2 with default parameters").to_string()
}

/// Does `password` match the stored `phc` string?
pub fn verify_password(password: &str, phc: &str) -> bool {
    PasswordHash::new(phc).is_ok_and(|h| Argon2::default().verify_password(password.as_bytes(), &h).is_ok())
}

/// Adds a user with these rooms (created if new), in `tx`.
pub async fn add_in(
    tx: &Transaction<'_>,
    name: &str,
    role: Role,
    rooms: &[String],
    password: &str,
) -> Result<i64, UserError> {
    proto::check_id("name", name, 64).map_err(|e| UserError::Invalid(e.to_string()))?;
    if password.chars().count() < MIN_PASSWORD {
        return Err(UserError::Invalid(format!("the password is shorter than {MIN_PASSWORD} characters")));
    }
    for r in rooms {
        crate::domain::check_room(r).map_err(UserError::Invalid)?;
    }
    let pw = password.to_string();
    // argon2 takes tens of milliseconds of CPU: off the async workers.
    let hash = tokio::task::spawn_blocking(move || hash_password(&pw)).await.expect("argon2 panicked");
    let id: i64 = match tx
        .query_one(
            "INSERT INTO users (name, password_hash, role) VALUES ($1, $2, $3) RETURNING id",
            &[&name, &hash, &role],
        )
        .await
    {
        Ok(r) => r.get("id"),
        Err(e) if super::is_unique_violation(&e) => return Err(UserError::Exists(name.to_string())),
        Err(e) => return Err(e.into()),
    };
    for r in rooms {
        let room = super::rooms::ensure(tx, r).await?;
        tx.execute("INSERT INTO user_rooms (user_id, room_id) VALUES ($1, $2) ON CONFLICT DO NOTHING", &[&id, &room])
            .await?;
    }
    Ok(id)
}

/// Every user with their rooms, by name.
pub async fn list(c: &impl GenericClient) -> Result<Vec<UserRow>, tokio_postgres::Error> {
    let rows = c
        .query(
            "SELECT u.name, u.role, u.disabled_at IS NOT NULL AS disabled,
                    coalesce(array_agg(r.name ORDER BY r.name) FILTER (WHERE r.name IS NOT NULL), '{}') AS rooms
             FROM users u LEFT JOIN user_rooms ur ON ur.user_id = u.id LEFT JOIN rooms r ON r.id = ur.room_id
             GROUP BY u.id ORDER BY u.name",
            &[],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| UserRow {
            name: r.get("name"),
            role: r.get("role"),
            disabled: r.get("disabled"),
            rooms: r.get("rooms"),
        })
        .collect())
}

/// How many failed logins a user name may have in a window before further
/// attempts are refused unchecked (`limits.login_failures`,
/// `limits.login_window_min`).
#[derive(Clone, Copy, Debug)]
pub struct LoginLimit {
    pub failures: u32,
    pub window_s: u32,
}

/// What a login attempt came to.
#[derive(Debug)]
pub enum LoginOutcome {
    /// A new login token (shown once, in the cookie) and its user.
    Ok(String, User),
    /// Wrong name or password (which one is not said).
    Wrong,
    /// Too many failures for this name in the window: the password was not
    /// checked; the oldest failure leaves the window in this many seconds.
    Throttled { retry_after_s: u64 },
}

/// Checks a name and password; on success a new login token valid for
/// `hours`. Failures are counted per name in PostgreSQL, so every hub
/// process on the database shares the count; a success clears it. The
/// count and the check are not one transaction: hubs racing may let a few
/// more attempts through than `limit.failures`, never unboundedly many.
pub async fn login(
    c: &impl GenericClient,
    name: &str,
    password: &str,
    hours: u32,
    limit: LoginLimit,
) -> Result<LoginOutcome, tokio_postgres::Error> {
    let window = limit.window_s as f64;
    let recent = c
        .query_one(
            "SELECT count(*), COALESCE(EXTRACT(EPOCH FROM (min(at) + make_interval(secs => $2) - now())), 0)::float8
             FROM login_failures WHERE user_name = $1 AND at > now() - make_interval(secs => $2)",
            &[&name, &window],
        )
        .await?;
    if recent.get::<_, i64>(0) >= limit.failures as i64 {
        return Ok(LoginOutcome::Throttled { retry_after_s: recent.get::<_, f64>(1).ceil().max(1.0) as u64 });
    }
    let row =
        c.query_opt("SELECT id, password_hash FROM users WHERE name = $1 AND disabled_at IS NULL", &[&name]).await?;
    // argon2 takes tens of milliseconds of CPU: off the async workers.
    let phc = row.as_ref().map(|r| r.get::<_, String>(1));
    let pw = password.to_string();
    let ok = tokio::task::spawn_blocking(move || match phc {
        Some(phc) => verify_password(&pw, &phc),
        None => {
            // The same work for an unknown name: no timing oracle for names.
            let _ = verify_password(&pw, DUMMY_HASH);
            false
        }
    })
    .await
    .expect("password check panicked");
    let Some(row) = row.filter(|_| ok) else {
        c.execute("INSERT INTO login_failures (user_name) VALUES ($1)", &[&name]).await?;
        c.execute("DELETE FROM login_failures WHERE at < now() - make_interval(secs => $1)", &[&window]).await?;
        return Ok(LoginOutcome::Wrong);
    };
    c.execute("DELETE FROM login_failures WHERE user_name = $1", &[&name]).await?;
    let tok = token::new_token();
    let expires: DateTime<Utc> = Utc::now() + chrono::Duration::hours(hours as i64);
    c.execute(
        "INSERT INTO login_sessions (token_sha256, user_id, expires_at) VALUES ($1, $2, $3)",
        &[&token::hash(&tok), &row.get::<_, i64>(0), &expires],
    )
    .await?;
    c.execute("DELETE FROM login_sessions WHERE expires_at < now()", &[]).await?;
    let user = by_id(c, row.get(0)).await?.expect("the user just found");
    Ok(LoginOutcome::Ok(tok, user))
}

/// The user of a login token, if it is valid.
pub async fn by_session(c: &impl GenericClient, tok: &str) -> Result<Option<User>, tokio_postgres::Error> {
    let row = c
        .query_opt(
            "SELECT u.id FROM login_sessions s JOIN users u ON u.id = s.user_id
             WHERE s.token_sha256 = $1 AND s.expires_at > now() AND u.disabled_at IS NULL",
            &[&token::hash(tok)],
        )
        .await?;
    match row {
        Some(r) => by_id(c, r.get(0)).await,
        None => Ok(None),
    }
}

/// Ends a login session.
pub async fn logout(c: &impl GenericClient, tok: &str) -> Result<(), tokio_postgres::Error> {
    c.execute("DELETE FROM login_sessions WHERE token_sha256 = $1", &[&token::hash(tok)]).await?;
    Ok(())
}

async fn by_id(c: &impl GenericClient, id: i64) -> Result<Option<User>, tokio_postgres::Error> {
    let Some(u) = c.query_opt("SELECT id, name, role FROM users WHERE id = $1", &[&id]).await? else {
        return Ok(None);
    };
    let rooms = c
        .query("SELECT room_id FROM user_rooms WHERE user_id = $1", &[&id])
        .await?
        .iter()
        .map(|r| r.get("room_id"))
        .collect();
    Ok(Some(User { id: u.get("id"), name: u.get("name"), role: u.get("role"), rooms }))
}

/// A valid argon2id hash of a random password, verified against when the
/// user name is unknown.
const DUMMY_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$0HdUqz0vbbyY6KhQ1Z3lwnzMFIKhOVL3lnHfSUhdH0A";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_verify_only_themselves() {
        let h = hash_password("correct horse battery");
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password("correct horse battery", &h));
        assert!(!verify_password("correct horse batterY", &h));
        assert!(!verify_password("x", "not a hash"));
        assert!(PasswordHash::new(DUMMY_HASH).is_ok());
    }
}
