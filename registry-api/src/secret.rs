//! Configuration values that must never reach a log.

use std::fmt;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

/// A password, digest or token from the configuration.
///
/// `Debug` prints `"***"` (or `""` when unset) so that configs can be logged whole; the value is
/// only reachable through [`Secret::expose`]. There is deliberately no `Display`.
///
/// # Notable errors
/// Deserializing accepts only a string: a YAML value such as `00012345` or `true` is refused
/// rather than turned into the text of the number it parses as (`12345`), which would be a
/// different secret than the one written.
#[derive(Clone, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Secret(String);

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Text;

        impl Visitor<'_> for Text {
            type Value = Secret;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string (quote a secret that looks like a number)")
            }

            fn visit_str<E: de::Error>(self, value: &str) -> Result<Secret, E> {
                Ok(Secret::new(value))
            }

            fn visit_string<E: de::Error>(self, value: String) -> Result<Secret, E> {
                Ok(Secret(value))
            }
        }

        // `deserialize_any`: a self-describing source (YAML, JSON) says what it holds, so a
        // number is seen as a number instead of being converted to a string.
        deserializer.deserialize_any(Text)
    }
}

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself, for the one place that needs it (a connection, a header check).
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            f.write_str("\"\"")
        } else {
            f.write_str("\"***\"")
        }
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Self::new(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_the_value() {
        assert_eq!(format!("{:?}", Secret::new("hunter2")), "\"***\"");
        assert_eq!(format!("{:?}", Secret::default()), "\"\"");
        assert_eq!(Secret::new("hunter2").expose(), "hunter2");
    }

    #[test]
    fn only_a_string_is_a_secret() {
        let secret: Secret = serde_json::from_str("\"00012345\"").unwrap();
        assert_eq!(secret.expose(), "00012345");
        for not_text in ["12345", "1.5", "true", "[1]", "{}"] {
            let error = serde_json::from_str::<Secret>(not_text).unwrap_err();
            assert!(
                error.to_string().contains("expected a string"),
                "{not_text}: {error}"
            );
        }
    }
}
