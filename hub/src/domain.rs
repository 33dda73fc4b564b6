//! The hub's vocabulary as types: exam states, console roles, review
//! decisions (each a text column in PostgreSQL, read and written through
//! `ToSql`/`FromSql`, so no other code compares bare strings), room names,
//! and the weight of an incident's reasons in the review priority.

use std::error::Error;

use bytes::BytesMut;
use chrono::{DateTime, Utc};
use proto::Reason;
use tokio_postgres::types::{FromSql, IsNull, ToSql, Type, to_sql_checked};

macro_rules! text_enum {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $v:ident = $s:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
        pub enum $name { $($(#[$vm])* #[serde(rename = $s)] $v),+ }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                $name::parse(&s).map_err(serde::de::Error::custom)
            }
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$v),+];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$v => $s),+ }
            }

            /// The value named `s`, or an error listing the good ones.
            pub fn parse(s: &str) -> Result<$name, String> {
                match s {
                    $($s => Ok($name::$v),)+
                    _ => Err(format!(
                        "{s:?} is not one of {}",
                        [$($s),+].join(", ")
                    )),
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl ToSql for $name {
            fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> Result<IsNull, Box<dyn Error + Sync + Send>> {
                self.as_str().to_sql(ty, out)
            }
            fn accepts(ty: &Type) -> bool {
                <&str as ToSql>::accepts(ty)
            }
            to_sql_checked!();
        }

        impl<'a> FromSql<'a> for $name {
            fn from_sql(ty: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn Error + Sync + Send>> {
                let s = <&str as FromSql>::from_sql(ty, raw)?;
                Ok($name::parse(s)?)
            }
            fn accepts(ty: &Type) -> bool {
                <&str as FromSql>::accepts(ty)
            }
        }
    };
}

text_enum! {
    /// `exams.state`: created, running, stopped (never back).
    ExamState {
        /// Created, not started (`start_at`, if set, is when the scheduler starts it).
        Ready = "ready",
        Running = "running",
        Stopped = "stopped",
    }
}

text_enum! {
    /// `users.role`.
    Role {
        /// Every room, every action.
        Admin = "admin",
        /// The rooms granted.
        Proctor = "proctor",
    }
}

text_enum! {
    /// `reviews.decision`: what a reviewer made of an incident.
    Decision {
        Dismissed = "dismissed",
        Confirmed = "confirmed",
        Unsure = "unsure",
    }
}

/// A room name: 1 to 64 printable characters (spaces allowed), no slash,
/// quote or backslash.
pub fn check_room(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.trim() == name
        && name.chars().all(|c| !c.is_control() && !matches!(c, '/' | '\\' | '"' | '\''));
    if ok {
        Ok(())
    } else {
        Err(format!("room {name:?} is not a room name: use 1 to 64 printable characters without slashes or quotes"))
    }
}

/// A desk heard from nothing for this long is offline (seconds).
pub const OFFLINE_AFTER_S: i64 = 10;

/// When an exam's clips and scores are (or were) deleted: its stop plus
/// its retention; None while it has not stopped.
pub fn delete_at(stopped_at: Option<DateTime<Utc>>, retention_days: i32) -> Option<DateTime<Utc>> {
    stopped_at.map(|t| t + chrono::Duration::days(retention_days as i64))
}

/// The formula of the review priority, as the page and docs/DESIGN.md state it.
pub const PRIORITY_FORMULA: &str = "priority = seconds under the threshold + for each incident the weight of its \
     gravest reason (second person 120, camera covered 90, camera lost 60, no face 30, any other 20)";

/// The weight of one reason in the review priority.
pub fn reason_weight(r: &Reason) -> f64 {
    match r {
        Reason::MultipleFaces => 120.0,
        Reason::CameraCovered => 90.0,
        Reason::CameraLost => 60.0,
        Reason::NoFace => 30.0,
        _ => 20.0,
    }
}

/// The weight of an incident with these reasons: its gravest reason's.
pub fn incident_weight(reasons: &[Reason]) -> f64 {
    reasons.iter().map(reason_weight).fold(20.0, f64::max)
}

/// Reasons as stored (text), typed; a name no build knows is kept as
/// [`Reason::Other`], one that is not even a name is dropped.
pub fn reasons(stored: &[String]) -> Vec<Reason> {
    stored.iter().filter_map(|s| Reason::parse(s).ok()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gravest_reason_weighs() {
        assert_eq!(incident_weight(&[Reason::NoFace, Reason::MultipleFaces]), 120.0);
        assert_eq!(incident_weight(&[Reason::LookingAway]), 20.0);
        assert_eq!(incident_weight(&[]), 20.0);
        assert_eq!(reasons(&["no_face".into(), "humming".into(), "Bad Name".into()]).len(), 2);
    }

    #[test]
    fn the_delete_date_is_the_stop_plus_the_retention() {
        let t: DateTime<Utc> = "2026-12-01T10:00:00Z".parse().unwrap();
        assert_eq!(delete_at(Some(t), 30).unwrap().to_rfc3339(), "2026-12-31T10:00:00+00:00");
        assert_eq!(delete_at(None, 30), None);
    }

    #[test]
    fn text_enums_name_the_good_values() {
        assert_eq!(Decision::parse("confirmed"), Ok(Decision::Confirmed));
        assert_eq!(Decision::parse("maybe").unwrap_err(), "\"maybe\" is not one of dismissed, confirmed, unsure");
        assert_eq!(serde_json::to_string(&ExamState::Running).unwrap(), "\"running\"");
        assert_eq!(Role::ALL.len(), 2);
        let e = serde_json::from_str::<Decision>("\"maybe\"").unwrap_err().to_string();
        assert!(e.starts_with("\"maybe\" is not one of dismissed, confirmed, unsure"), "{e}");
    }
}
