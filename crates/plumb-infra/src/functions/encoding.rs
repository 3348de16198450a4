//! Encoding functions: base64, JSON, YAML and URL query encoding.
//!
//! JSON and YAML go through the same value-to-JSON mapping state files use,
//! so a number keeps its precision and a map its key order.

use base64::Engine;
use plumb_tfplugin::Value;

use super::builtin::{CallContext, Function, FunctionError, functions, only, text};

/// The encoding functions.
pub const FUNCTIONS: &[Function] = functions![
    base64decode,
    base64encode,
    jsondecode,
    jsonencode,
    urlencode,
    yamlencode
];

fn base64encode(args: &[Value], _: &CallContext<'_>) -> Result<Value, FunctionError> {
    Ok(Value::String(
        base64::engine::general_purpose::STANDARD.encode(text(only(args)?)?),
    ))
}

fn base64decode(args: &[Value], _: &CallContext<'_>) -> Result<Value, FunctionError> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text(only(args)?)?)
        .map_err(FunctionError::Base64)?;
    Ok(Value::String(
        String::from_utf8(bytes).map_err(|_| "the decoded bytes are not UTF-8")?,
    ))
}

fn jsonencode(args: &[Value], _: &CallContext<'_>) -> Result<Value, FunctionError> {
    Ok(Value::String(
        plumb_tfplugin::value::to_json(only(args)?).to_string(),
    ))
}

fn jsondecode(args: &[Value], _: &CallContext<'_>) -> Result<Value, FunctionError> {
    let json: serde_json::Value =
        serde_json::from_str(&text(only(args)?)?).map_err(FunctionError::JsonDecode)?;
    Ok(plumb_tfplugin::value::untyped_from_json(&json))
}

/// Percent-encodes everything but unreserved characters (RFC 3986).
fn urlencode(args: &[Value], _: &CallContext<'_>) -> Result<Value, FunctionError> {
    let mut out = String::new();
    for b in text(only(args)?)?.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    Ok(Value::String(out))
}

fn yamlencode(args: &[Value], _: &CallContext<'_>) -> Result<Value, FunctionError> {
    let json = plumb_tfplugin::value::to_json(only(args)?);
    Ok(Value::String(
        serde_saphyr::to_string(&json).map_err(FunctionError::YamlEncode)?,
    ))
}
