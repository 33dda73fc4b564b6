//! What lowered a score, as the result JSON names it. A box newer than the
//! reader may send a name the reader does not know: it is kept as
//! [`Reason::Other`], never refused, so an old hub still stores a new box's
//! batches.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The longest reason name accepted from the wire.
pub const MAX_REASON_LEN: usize = 40;

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reason {
    NoFace,
    MultipleFaces,
    LookingAway,
    CameraCovered,
    CameraLost,
    /// The desk's call button was pressed (GPIO): an incident of its own.
    HelpRequested,
    /// The mouth moves as in speech.
    Talking,
    /// The eyes point away while the head faces the screen.
    GazeAway,
    /// A palm over the ear or the mouth.
    HandAtFace,
    /// A name this build does not know (snake case, at most
    /// [`MAX_REASON_LEN`] characters).
    Other(String),
}

impl Reason {
    /// Every reason this build knows, in a stable order (the hub stores a
    /// score's reasons as bits in this order). New reasons are appended,
    /// never inserted: a bit once given keeps its meaning.
    pub const KNOWN: [Reason; 9] = [
        Reason::NoFace,
        Reason::MultipleFaces,
        Reason::LookingAway,
        Reason::CameraCovered,
        Reason::CameraLost,
        Reason::HelpRequested,
        Reason::Talking,
        Reason::GazeAway,
        Reason::HandAtFace,
    ];

    pub fn as_str(&self) -> &str {
        match self {
            Reason::NoFace => "no_face",
            Reason::MultipleFaces => "multiple_faces",
            Reason::LookingAway => "looking_away",
            Reason::CameraCovered => "camera_covered",
            Reason::CameraLost => "camera_lost",
            Reason::HelpRequested => "help_requested",
            Reason::Talking => "talking",
            Reason::GazeAway => "gaze_away",
            Reason::HandAtFace => "hand_at_face",
            Reason::Other(s) => s,
        }
    }

    /// A name read from the wire: a known reason, else [`Reason::Other`]
    /// if it is snake case of at most [`MAX_REASON_LEN`] characters.
    pub fn parse(s: &str) -> Result<Reason, String> {
        if let Some(r) = Reason::KNOWN.iter().find(|r| r.as_str() == s) {
            return Ok(r.clone());
        }
        let snake = !s.is_empty()
            && s.len() <= MAX_REASON_LEN
            && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if snake {
            Ok(Reason::Other(s.to_string()))
        } else {
            Err(format!("{s:?} is not a reason name (snake case, at most {MAX_REASON_LEN} characters)"))
        }
    }

    /// Its bit in [`Reason::KNOWN`] order; `None` for [`Reason::Other`].
    pub fn bit(&self) -> Option<u32> {
        Reason::KNOWN.iter().position(|r| r == self).map(|i| 1 << i)
    }

    /// The known reasons whose bits are set in `bits`.
    pub fn from_bits(bits: u32) -> Vec<Reason> {
        Reason::KNOWN.iter().enumerate().filter(|(i, _)| bits & (1 << i) != 0).map(|(_, r)| r.clone()).collect()
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Reason {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Reason {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Reason::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_names_round_trip_and_unknown_ones_are_kept() {
        for r in Reason::KNOWN {
            let json = serde_json::to_string(&r).unwrap();
            assert_eq!(serde_json::from_str::<Reason>(&json).unwrap(), r);
        }
        let r: Reason = serde_json::from_str("\"phone\"").unwrap();
        assert_eq!(r, Reason::Other("phone".into()));
        assert_eq!(serde_json::to_string(&r).unwrap(), "\"phone\"");
        assert!(serde_json::from_str::<Reason>("\"Robert'); DROP TABLE\"").is_err());
        assert!(serde_json::from_str::<Reason>(&format!("\"{}\"", "a".repeat(41))).is_err());
    }

    #[test]
    fn bits_follow_the_known_order() {
        let bits = Reason::NoFace.bit().unwrap() | Reason::CameraLost.bit().unwrap();
        assert_eq!(Reason::from_bits(bits), vec![Reason::NoFace, Reason::CameraLost]);
        assert_eq!(Reason::Other("x".into()).bit(), None);
    }

    #[test]
    fn the_bits_of_the_first_six_reasons_never_move_and_new_ones_follow() {
        let names: Vec<&str> = Reason::KNOWN.iter().map(Reason::as_str).collect();
        assert_eq!(
            names,
            [
                "no_face",
                "multiple_faces",
                "looking_away",
                "camera_covered",
                "camera_lost",
                "help_requested",
                "talking",
                "gaze_away",
                "hand_at_face"
            ]
        );
        assert_eq!(Reason::HelpRequested.bit(), Some(1 << 5));
        assert_eq!(Reason::Talking.bit(), Some(1 << 6));
        assert_eq!(Reason::HandAtFace.bit(), Some(1 << 8));
        assert_eq!(Reason::from_bits(1 << 7), vec![Reason::GazeAway]);
    }
}
