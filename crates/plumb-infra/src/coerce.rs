//! How the language reads a [`Value`] where it needs a particular kind: a
//! string for interpolation and keys, a number for arithmetic, a bool for
//! conditions, and key/value pairs for iteration.
//!
//! These rules are shared by the evaluator, the built-in functions and the
//! engine (count, for_each, dynamic blocks), so they live below all three:
//! this module knows only values, never expressions or scopes. A failure is
//! a message saying what was found instead, for the caller to place.

use plumb_tfplugin::{Number, Value};

/// `v`, marked sensitive when `sensitive`.
pub fn mark(v: Value, sensitive: bool) -> Value {
    if sensitive { v.mark_sensitive() } else { v }
}

/// Pairs (key, value) for iterating a collection in for-expressions.
pub fn iterate(v: &Value) -> Result<Vec<(Value, Value)>, String> {
    let s = v.is_sensitive();
    Ok(match v.unmarked() {
        Value::List(items) => items
            .iter()
            .enumerate()
            .map(|(i, x)| (Value::int(i as i64), mark(x.clone(), s)))
            .collect(),
        Value::Set(items) => items
            .iter()
            .map(|x| (mark(x.clone(), s), mark(x.clone(), s)))
            .collect(),
        Value::Map(m) => m
            .iter()
            .map(|(k, x)| (Value::String(k.clone()), mark(x.clone(), s)))
            .collect(),
        Value::Null => return Err("cannot iterate over a null value".into()),
        other => return Err(format!("cannot iterate over a {}", other.kind())),
    })
}

/// The value as a string, the way interpolation converts it.
pub fn value_to_string(v: &Value) -> Result<String, String> {
    match v.unmarked() {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        Value::Null => Err("a null value cannot be used as a string".into()),
        other => Err(format!("cannot convert a {} to a string", other.kind())),
    }
}

/// The value as a bool.
pub fn to_bool(v: &Value) -> Result<bool, String> {
    match v.unmarked() {
        Value::Bool(b) => Ok(*b),
        Value::String(s) if s == "true" => Ok(true),
        Value::String(s) if s == "false" => Ok(false),
        Value::Null => Err("a null value cannot be used as a bool".into()),
        other => Err(format!("a bool is required, not a {}", other.kind())),
    }
}

/// The value as a number.
pub fn to_number(v: &Value) -> Result<Number, String> {
    match v.unmarked() {
        Value::Number(n) => Ok(n.clone()),
        Value::String(s) => s
            .parse()
            .map_err(|_| format!("a number is required, not the string {s:?}")),
        Value::Null => Err("a null value cannot be used as a number".into()),
        other => Err(format!("a number is required, not a {}", other.kind())),
    }
}
