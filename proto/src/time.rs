//! Timestamps on the wire: RFC 3339 in UTC with milliseconds and a `Z`
//! (`2026-11-24T09:00:00.033Z`). Any RFC 3339 time is accepted when read,
//! whatever its offset or precision; it is always written this way.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A point in time as the wire carries it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub DateTime<Utc>);

impl Timestamp {
    pub fn from_millis(ms: i64) -> Option<Timestamp> {
        DateTime::from_timestamp_millis(ms).map(Timestamp)
    }

    pub fn millis(&self) -> i64 {
        self.0.timestamp_millis()
    }

    /// Parses any RFC 3339 time.
    pub fn parse(s: &str) -> Result<Timestamp, String> {
        DateTime::parse_from_rfc3339(s.trim())
            .map(|t| Timestamp(t.with_timezone(&Utc)))
            .map_err(|e| format!("{s:?} is not an RFC 3339 time ({e}); use e.g. \"2026-11-24T09:00:00.033Z\""))
    }
}

impl From<DateTime<Utc>> for Timestamp {
    fn from(t: DateTime<Utc>) -> Self {
        Timestamp(t)
    }
}

impl std::fmt::Display for Timestamp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0.to_rfc3339_opts(SecondsFormat::Millis, true))
    }
}

impl std::str::FromStr for Timestamp {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Timestamp::parse(s)
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Timestamp::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_with_milliseconds_and_z_read_with_any_offset() {
        let t: Timestamp = "2026-11-24T10:00:00.0331+01:00".parse().unwrap();
        assert_eq!(t.to_string(), "2026-11-24T09:00:00.033Z");
        assert_eq!(serde_json::to_string(&t).unwrap(), "\"2026-11-24T09:00:00.033Z\"");
        let e = "yesterday".parse::<Timestamp>().unwrap_err();
        assert!(e.contains("RFC 3339"), "{e}");
    }
}
