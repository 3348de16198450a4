//! What a health script's return value means, by Argo CD's rules.
//!
//! | returned | health |
//! |---|---|
//! | nil, nothing, `{}` or a plain list | none: the object counts as having no health (and the built-in check is *not* asked) |
//! | a table with string keys whose `status` is one of the six statuses | that status, with `message` (or none) |
//! | a table with string keys and any other `status` (missing, lowercase, a number) | Unknown: the status is invalid |
//! | a table mixing list and string keys, or a non-string `message` | Unknown: the table cannot be read |
//! | anything else (a string, a number, a function) | Unknown: a table was expected |
//!
//! A script that fails (a syntax error, a runtime error, a limit) is Unknown
//! with the error as the message; that part lives in `crate::scripts`.

use plumb_model::{Health, HealthStatus};

use crate::sandbox::{Field, Keys, Returned};

/// The health a script's return value gives, `Ok(None)` for none, or why it
/// gives none that can be used (the object is then Unknown).
pub fn interpret(returned: &Returned) -> Result<Option<Health>, String> {
    let (keys, status, message) = match returned {
        Returned::Nil => return Ok(None),
        Returned::Other(kind) => {
            return Err(format!(
                "health script returned a {kind}; it must return a table such as {{status = \"Healthy\", message = \"...\"}}"
            ));
        }
        Returned::Table {
            keys,
            status,
            message,
        } => (keys, status, message),
    };
    match keys {
        Keys::Empty | Keys::Sequence => return Ok(None),
        Keys::Mixed => {
            return Err(
                "health script returned a table that mixes list entries and named fields".into(),
            );
        }
        Keys::Strings => {}
    }
    let message = match message {
        Field::Nil => String::new(),
        Field::Str(s) => s.clone(),
        Field::Other(kind) => {
            return Err(format!(
                "health script returned a message that is a {kind}, not a string"
            ));
        }
    };
    let status = match status {
        Field::Str(s) => parse_status(s),
        Field::Nil | Field::Other(_) => None,
    };
    match status {
        Some(status) => Ok(Some(Health { status, message })),
        None => Err(INVALID_STATUS.to_string()),
    }
}

/// The message of an invalid status: Argo CD's own words, so alerts written
/// for Argo CD match plumb's too.
pub const INVALID_STATUS: &str = "Lua returned an invalid health status";

/// One of the six statuses, spelled exactly as Argo CD spells them.
pub fn parse_status(s: &str) -> Option<HealthStatus> {
    Some(match s {
        "Healthy" => HealthStatus::Healthy,
        "Progressing" => HealthStatus::Progressing,
        "Degraded" => HealthStatus::Degraded,
        "Suspended" => HealthStatus::Suspended,
        "Missing" => HealthStatus::Missing,
        "Unknown" => HealthStatus::Unknown,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(keys: Keys, status: Field, message: Field) -> Returned {
        Returned::Table {
            keys,
            status,
            message,
        }
    }

    #[test]
    fn argo_rules() {
        assert_eq!(interpret(&Returned::Nil), Ok(None));
        assert_eq!(
            interpret(&table(Keys::Empty, Field::Nil, Field::Nil)),
            Ok(None)
        );
        assert_eq!(
            interpret(&table(Keys::Sequence, Field::Nil, Field::Nil)),
            Ok(None)
        );
        assert_eq!(
            interpret(&table(
                Keys::Strings,
                Field::Str("Degraded".into()),
                Field::Str("broken".into())
            )),
            Ok(Some(Health {
                status: HealthStatus::Degraded,
                message: "broken".into()
            }))
        );
        assert_eq!(
            interpret(&table(
                Keys::Strings,
                Field::Str("healthy".into()),
                Field::Nil
            )),
            Err(INVALID_STATUS.into())
        );
        assert_eq!(
            interpret(&table(Keys::Strings, Field::Nil, Field::Str("x".into()))),
            Err(INVALID_STATUS.into())
        );
        assert!(interpret(&table(Keys::Mixed, Field::Nil, Field::Nil)).is_err());
        assert!(
            interpret(&table(
                Keys::Strings,
                Field::Str("Healthy".into()),
                Field::Other("number")
            ))
            .is_err()
        );
        assert!(interpret(&Returned::Other("string")).is_err());
    }
}
