//! The `process` executor's app spec: `{"command": [...], "env": {...}?, "cwd": "..."?}`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde_json::Value;

use super::ExecutorError;

const COMMAND_SHAPE: &str = "spec.command must be a non-empty array of strings";
const FIELDS: &str = "command, env, cwd";
/// The variables the executor sets for every app; a spec cannot set them.
const RESERVED_ENV: [&str; 3] = ["CONSOLE_APP_ID", "CONSOLE_APP_NAME", "CONSOLE_APP_KEY"];

/// A validated `process` spec.
///
/// ```json
/// {"command": ["sh", "-c", "exec my-job --port 9000"], "env": {"JAVA_HOME": "/opt/java"}, "cwd": "/srv/job"}
/// ```
///
/// # Notable behaviors
/// - `command[0]` is the program (looked up in `PATH` when it has no `/`), the rest its arguments;
///   no shell is involved unless the command names one.
/// - `env` is added to the console's environment (minus the console's own `CONSOLE_*`
///   variables, which may carry secrets); it may not set the variables the executor sets
///   (`CONSOLE_APP_ID`, `CONSOLE_APP_NAME`, `CONSOLE_APP_KEY`). `cwd` must be absolute and
///   defaults to the console's.
/// - Unknown fields are rejected, like everywhere in the HTTP API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessSpec {
    /// The program and its arguments; never empty.
    pub command: Vec<String>,
    /// Extra environment variables for the app.
    pub env: BTreeMap<String, String>,
    /// The app's working directory.
    pub cwd: Option<PathBuf>,
}

impl ProcessSpec {
    /// Parses and validates `spec`.
    ///
    /// # Notable errors
    /// [`ExecutorError::InvalidSpec`] naming the first offending field, e.g.
    /// `spec.command must be a non-empty array of strings`.
    pub fn parse(spec: &Value) -> Result<Self, ExecutorError> {
        let Some(fields) = spec.as_object() else {
            return Err(invalid("spec must be a JSON object"));
        };
        if let Some(unknown) = fields
            .keys()
            .find(|key| !["command", "env", "cwd"].contains(&key.as_str()))
        {
            return Err(invalid(format!(
                "spec has unknown field {unknown:?} (allowed: {FIELDS})"
            )));
        }

        let command = match fields.get("command") {
            Some(Value::Array(items)) if !items.is_empty() => items
                .iter()
                .map(|item| item.as_str().map(str::to_owned))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| invalid(COMMAND_SHAPE))?,
            _ => return Err(invalid(COMMAND_SHAPE)),
        };
        if command[0].is_empty() {
            return Err(invalid("spec.command[0] (the program) must not be empty"));
        }
        if let Some(index) = command.iter().position(|arg| arg.contains('\0')) {
            return Err(invalid(format!(
                "spec.command[{index}] must not contain a NUL character"
            )));
        }

        let mut env = BTreeMap::new();
        match fields.get("env") {
            None | Some(Value::Null) => {}
            Some(Value::Object(vars)) => {
                for (name, value) in vars {
                    if name.is_empty() || name.contains(['=', '\0']) {
                        return Err(invalid(format!(
                            "spec.env name {name:?} must be non-empty and contain no '=' or NUL"
                        )));
                    }
                    if RESERVED_ENV.contains(&name.as_str()) {
                        return Err(invalid(format!(
                            "spec.env.{name} is set by the console for every app (reserved: {})",
                            RESERVED_ENV.join(", ")
                        )));
                    }
                    let Some(value) = value.as_str() else {
                        return Err(invalid(format!("spec.env.{name} must be a string")));
                    };
                    if value.contains('\0') {
                        return Err(invalid(format!(
                            "spec.env.{name} must not contain a NUL character"
                        )));
                    }
                    env.insert(name.clone(), value.to_owned());
                }
            }
            Some(_) => return Err(invalid("spec.env must be an object of strings")),
        }

        let cwd = match fields.get("cwd") {
            None | Some(Value::Null) => None,
            Some(Value::String(cwd)) if cwd.starts_with('/') && !cwd.contains('\0') => {
                Some(PathBuf::from(cwd))
            }
            Some(_) => return Err(invalid("spec.cwd must be an absolute path")),
        };

        Ok(Self { command, env, cwd })
    }
}

/// Checks a `process` spec without side effects; used by the HTTP layer to answer 400.
///
/// # Notable errors
/// [`ExecutorError::InvalidSpec`] as in [`ProcessSpec::parse`].
pub fn validate_spec(spec: &Value) -> Result<(), ExecutorError> {
    ProcessSpec::parse(spec).map(drop)
}

fn invalid(reason: impl Into<String>) -> ExecutorError {
    ExecutorError::InvalidSpec {
        reason: reason.into(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn reason(spec: Value) -> String {
        match validate_spec(&spec) {
            Err(ExecutorError::InvalidSpec { reason }) => reason,
            other => panic!("expected InvalidSpec for {spec}, got {other:?}"),
        }
    }

    #[test]
    fn process_spec_full_parses() {
        let spec = ProcessSpec::parse(&json!({
            "command": ["sh", "-c", "echo hi"],
            "env": {"A": "1", "B": ""},
            "cwd": "/tmp",
        }))
        .unwrap();
        assert_eq!(spec.command, ["sh", "-c", "echo hi"]);
        assert_eq!(spec.env.get("A").map(String::as_str), Some("1"));
        assert_eq!(spec.env.get("B").map(String::as_str), Some(""));
        assert_eq!(spec.cwd, Some(PathBuf::from("/tmp")));
    }

    #[test]
    fn process_spec_minimal_parses() {
        let spec = ProcessSpec::parse(&json!({"command": ["true"]})).unwrap();
        assert_eq!(spec.command, ["true"]);
        assert!(spec.env.is_empty());
        assert_eq!(spec.cwd, None);
    }

    #[test]
    fn process_spec_command_must_be_non_empty_array_of_strings() {
        for bad in [
            json!({}),
            json!({"command": null}),
            json!({"command": "sh -c true"}),
            json!({"command": []}),
            json!({"command": ["sh", 1]}),
            json!({"command": [["sh"]]}),
        ] {
            assert_eq!(
                reason(bad),
                "spec.command must be a non-empty array of strings"
            );
        }
        assert_eq!(
            validate_spec(&json!({"command": []}))
                .unwrap_err()
                .to_string(),
            "invalid spec: spec.command must be a non-empty array of strings"
        );
    }

    #[test]
    fn process_spec_rejects_bad_fields_with_their_names() {
        assert_eq!(reason(json!(["sh"])), "spec must be a JSON object");
        assert_eq!(
            reason(json!({"command": [""]})),
            "spec.command[0] (the program) must not be empty"
        );
        assert_eq!(
            reason(json!({"command": ["sh", "a\u{0}b"]})),
            "spec.command[1] must not contain a NUL character"
        );
        assert_eq!(
            reason(json!({"command": ["sh"], "env": ["A=1"]})),
            "spec.env must be an object of strings"
        );
        assert_eq!(
            reason(json!({"command": ["sh"], "env": {"A": 1}})),
            "spec.env.A must be a string"
        );
        assert_eq!(
            reason(json!({"command": ["sh"], "env": {"A=B": "1"}})),
            "spec.env name \"A=B\" must be non-empty and contain no '=' or NUL"
        );
        assert_eq!(
            reason(json!({"command": ["sh"], "env": {"CONSOLE_APP_KEY": "x/1"}})),
            "spec.env.CONSOLE_APP_KEY is set by the console for every app \
             (reserved: CONSOLE_APP_ID, CONSOLE_APP_NAME, CONSOLE_APP_KEY)"
        );
        assert_eq!(
            reason(json!({"command": ["sh"], "cwd": "relative/dir"})),
            "spec.cwd must be an absolute path"
        );
        assert_eq!(
            reason(json!({"command": ["sh"], "cwd": 3})),
            "spec.cwd must be an absolute path"
        );
        assert_eq!(
            reason(json!({"command": ["sh"], "args": []})),
            "spec has unknown field \"args\" (allowed: command, env, cwd)"
        );
    }
}
