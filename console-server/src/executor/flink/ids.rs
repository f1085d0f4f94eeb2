//! The identifiers and locations that cross the wire to Flink. Each is checked when it is made, so a
//! value of these types is always well formed, whether it came from Flink, the database or a user.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A value that does not have the shape its type requires. `what` names the type ("job id").
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {what} {value:?}: {reason}")]
pub struct InvalidValue {
    /// What was being parsed: "job id", "trigger id", "jar id", "savepoint location".
    pub what: &'static str,
    /// The offending value, cut to 80 characters (it may come from an untrusted answer).
    pub value: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

impl InvalidValue {
    fn new(what: &'static str, value: &str, reason: &'static str) -> Self {
        Self {
            what,
            value: value.chars().take(80).collect(),
            reason,
        }
    }
}

/// Parses 32 hexadecimal digits (either case) into 16 bytes.
fn parse_hex16(what: &'static str, value: &str) -> Result<[u8; 16], InvalidValue> {
    let invalid = || InvalidValue::new(what, value, "must be 32 hexadecimal digits");
    if value.len() != 32 || !value.bytes().all(|byte| byte.is_ascii_hexdigit()) {
        return Err(invalid());
    }
    let mut bytes = [0u8; 16];
    for (index, byte) in bytes.iter_mut().enumerate() {
        // ASCII only (checked above), so every 2-byte slice is on character boundaries.
        *byte = u8::from_str_radix(&value[2 * index..2 * index + 2], 16).map_err(|_| invalid())?;
    }
    Ok(bytes)
}

fn write_hex16(bytes: &[u8; 16], f: &mut fmt::Formatter<'_>) -> fmt::Result {
    bytes.iter().try_for_each(|byte| write!(f, "{byte:02x}"))
}

/// Implements the 16-byte id types: `FromStr` (32 hex digits, either case), `Display` (lowercase,
/// as Flink writes them), and serde as that string.
macro_rules! hex16_id {
    ($name:ident, $what:literal) => {
        impl $name {
            /// The id made of these 16 bytes.
            pub const fn from_bytes(bytes: [u8; 16]) -> Self {
                Self(bytes)
            }

            /// The id's 16 bytes.
            pub const fn as_bytes(&self) -> &[u8; 16] {
                &self.0
            }
        }

        impl FromStr for $name {
            type Err = InvalidValue;

            fn from_str(value: &str) -> Result<Self, InvalidValue> {
                parse_hex16($what, value).map(Self)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write_hex16(&self.0, f)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({self})", stringify!($name))
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_str(self)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let value = String::deserialize(deserializer)?;
                value.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

/// A Flink job id: 16 bytes, written as 32 lowercase hexadecimal digits.
///
/// The console chooses it (`jobId` of `/jars/{id}/run`), so that a second submission of the same
/// job is refused by Flink: see [`FlinkError::JobAlreadyExists`](super::FlinkError::JobAlreadyExists).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct JobId([u8; 16]);
hex16_id!(JobId, "job id");

/// The id of a savepoint operation (`triggerId` of `/jobs/{id}/savepoints` and `/jobs/{id}/stop`),
/// chosen by the console so that a repeated request names the operation it already started.
///
/// # Notable behaviors
/// Flink answers a repeated trigger with the same id with 202 and starts nothing: while the first
/// operation runs, and also after it completed or **failed** (the status stays the old result).
/// A retry after a failure therefore needs a new trigger id.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TriggerId([u8; 16]);
hex16_id!(TriggerId, "trigger id");

/// The id Flink gave an uploaded jar: its file name in the JobManager's upload directory,
/// `<uuid>_<name>.jar`. Used as one path segment (percent-encoded) of `/jars/{id}/run`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct JarId(String);

impl JarId {
    /// The id as Flink wrote it.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for JarId {
    type Err = InvalidValue;

    /// 1 to 255 characters, no `/`, `\` or control characters, not `.` or `..`.
    fn from_str(value: &str) -> Result<Self, InvalidValue> {
        let bad = |reason| Err(InvalidValue::new("jar id", value, reason));
        if value.is_empty() || value.len() > 255 {
            return bad("must have 1 to 255 characters");
        }
        if value == "." || value == ".." || value.contains(['/', '\\']) {
            return bad("must be a file name, not a path");
        }
        if value.chars().any(char::is_control) {
            return bad("must not contain control characters");
        }
        Ok(Self(value.to_owned()))
    }
}

impl fmt::Display for JarId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where a savepoint (or a savepoint directory) is: a path or URI as Flink writes it, e.g.
/// `file:/tmp/console-flink-8081/savepoints/savepoint-a1b2c3-6ade2d613a34`.
///
/// The value is passed back to Flink unchanged (`savepointPath` of a run); the console never
/// opens it itself.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct SavepointLocation(String);

impl SavepointLocation {
    /// The location as Flink wrote it.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for SavepointLocation {
    type Err = InvalidValue;

    /// 1 to 4096 characters, no control characters, no surrounding whitespace.
    fn from_str(value: &str) -> Result<Self, InvalidValue> {
        let bad = |reason| Err(InvalidValue::new("savepoint location", value, reason));
        if value.is_empty() || value.len() > 4096 {
            return bad("must have 1 to 4096 characters");
        }
        if value.chars().any(char::is_control) || value.trim() != value {
            return bad("must not contain control characters or surrounding whitespace");
        }
        Ok(Self(value.to_owned()))
    }
}

impl fmt::Display for SavepointLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for JarId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

impl<'de> Deserialize<'de> for SavepointLocation {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_ids_are_32_hex_digits_written_lowercase() {
        let id: JobId = "A1B2C3D4E5F60718293A4B5C6D7E8F90".parse().unwrap();
        assert_eq!(id.to_string(), "a1b2c3d4e5f60718293a4b5c6d7e8f90");
        assert_eq!(id.as_bytes()[0], 0xa1);
        assert_eq!(JobId::from_bytes(*id.as_bytes()), id);
        assert_eq!(format!("{id:?}"), "JobId(a1b2c3d4e5f60718293a4b5c6d7e8f90)");
        for bad in [
            "",
            "a1b2c3",
            "a1b2c3d4e5f60718293a4b5c6d7e8f9",
            "a1b2c3d4e5f60718293a4b5c6d7e8f900",
            "g1b2c3d4e5f60718293a4b5c6d7e8f90",
            "+1b2c3d4e5f60718293a4b5c6d7e8f90",
            "a1b2c3d4-5f60718293a4b5c6d7e8f90",
            "é1b2c3d4e5f60718293a4b5c6d7e8f9",
        ] {
            let error = bad.parse::<JobId>().unwrap_err();
            assert_eq!(error.what, "job id", "{bad:?}");
        }
    }

    #[test]
    fn ids_round_trip_through_serde_as_strings() {
        let id: TriggerId = "00000000000000000000000000000a01".parse().unwrap();
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, "\"00000000000000000000000000000a01\"");
        assert_eq!(serde_json::from_str::<TriggerId>(&json).unwrap(), id);
        assert!(serde_json::from_str::<TriggerId>("\"xyz\"").is_err());
        assert!(serde_json::from_str::<JarId>("\"../etc/passwd\"").is_err());
        assert!(serde_json::from_str::<SavepointLocation>("\"\"").is_err());
    }

    #[test]
    fn jar_ids_are_plain_file_names() {
        let id: JarId = "bba336c1-d0d5-4675-a704-2ba2f5c223ef_example.jar"
            .parse()
            .unwrap();
        assert_eq!(
            id.as_str(),
            "bba336c1-d0d5-4675-a704-2ba2f5c223ef_example.jar"
        );
        for bad in ["", ".", "..", "a/b.jar", "a\\b.jar", "a\nb.jar"] {
            assert!(bad.parse::<JarId>().is_err(), "{bad:?}");
        }
        assert!("x".repeat(256).parse::<JarId>().is_err());
    }

    #[test]
    fn savepoint_locations_are_non_empty_single_lines() {
        let location: SavepointLocation = "file:/tmp/sp/savepoint-a1b2c3-6ade2d613a34"
            .parse()
            .unwrap();
        assert_eq!(
            location.to_string(),
            "file:/tmp/sp/savepoint-a1b2c3-6ade2d613a34"
        );
        for bad in ["", " file:/x", "file:/x\n", "file:/\u{0}x"] {
            assert!(bad.parse::<SavepointLocation>().is_err(), "{bad:?}");
        }
        let error = "\u{1}"
            .repeat(200)
            .parse::<SavepointLocation>()
            .unwrap_err();
        assert_eq!(error.value.chars().count(), 80, "values in errors are cut");
    }
}
