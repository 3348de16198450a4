//! The values providers exchange: a dynamically shaped value with unknowns,
//! sensitive marks and arbitrary-precision numbers, plus the type system the
//! protocol describes schemas with.
//!
//! Evaluation in plumb-infra works on [`Value`] without static types; the
//! schema's [`Type`] is applied at the edges ([`convert`], the msgpack and JSON
//! codecs), which is where the protocol needs it.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use bigdecimal::{ToPrimitive, Zero};

pub use bigdecimal::BigDecimal;

/// A type in the protocol's type system (cty's, as JSON on the wire).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Type {
    /// `bool`
    Bool,
    /// `number`: arbitrary precision.
    Number,
    /// `string`
    String,
    /// `dynamic`: any type, decided by the value.
    Dynamic,
    /// `list(T)`
    List(Box<Type>),
    /// `set(T)`
    Set(Box<Type>),
    /// `map(T)`
    Map(Box<Type>),
    /// `object({...})`; attribute names sorted.
    Object(BTreeMap<String, Type>),
    /// `tuple([...])`
    Tuple(Vec<Type>),
}

/// Why a type or value could not be read or converted.
#[derive(Debug, thiserror::Error)]
pub enum ValueError {
    /// A type description that is not valid cty type JSON.
    #[error("invalid type description: {0}")]
    BadType(String),
    /// The value does not fit the type.
    #[error("{path}: {message}")]
    Mismatch {
        /// Where in the value, like `.tags["a"]`.
        path: String,
        /// What did not fit.
        message: String,
    },
    /// A msgpack or JSON encoding error.
    #[error("encoding: {0}")]
    Encoding(String),
}

impl ValueError {
    pub(crate) fn mismatch(path: &str, message: impl Into<String>) -> Self {
        ValueError::Mismatch {
            path: if path.is_empty() {
                "value".to_string()
            } else {
                path.to_string()
            },
            message: message.into(),
        }
    }
}

impl Type {
    /// Reads a type from its JSON description (`"string"`, `["list","number"]`, ...).
    pub fn from_json_bytes(bytes: &[u8]) -> Result<Type, ValueError> {
        let json: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|e| ValueError::BadType(e.to_string()))?;
        Type::from_json(&json)
    }

    /// Reads a type from a parsed JSON description.
    pub fn from_json(json: &serde_json::Value) -> Result<Type, ValueError> {
        use serde_json::Value as J;
        match json {
            J::String(s) => match s.as_str() {
                "bool" => Ok(Type::Bool),
                "number" => Ok(Type::Number),
                "string" => Ok(Type::String),
                "dynamic" => Ok(Type::Dynamic),
                other => Err(ValueError::BadType(format!(
                    "unknown primitive type {other}"
                ))),
            },
            J::Array(items) => {
                let kind = items.first().and_then(|k| k.as_str()).unwrap_or_default();
                let arg = items
                    .get(1)
                    .ok_or_else(|| ValueError::BadType(format!("{kind} without element type")))?;
                match kind {
                    "list" => Ok(Type::List(Box::new(Type::from_json(arg)?))),
                    "set" => Ok(Type::Set(Box::new(Type::from_json(arg)?))),
                    "map" => Ok(Type::Map(Box::new(Type::from_json(arg)?))),
                    "object" => {
                        let attrs = arg
                            .as_object()
                            .ok_or_else(|| ValueError::BadType("object attributes".into()))?;
                        let mut out = BTreeMap::new();
                        for (k, v) in attrs {
                            out.insert(k.clone(), Type::from_json(v)?);
                        }
                        Ok(Type::Object(out))
                    }
                    "tuple" => {
                        let elems = arg
                            .as_array()
                            .ok_or_else(|| ValueError::BadType("tuple elements".into()))?;
                        Ok(Type::Tuple(
                            elems
                                .iter()
                                .map(Type::from_json)
                                .collect::<Result<_, _>>()?,
                        ))
                    }
                    other => Err(ValueError::BadType(format!("unknown type kind {other}"))),
                }
            }
            other => Err(ValueError::BadType(format!("unexpected {other}"))),
        }
    }

    /// The JSON description of this type.
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::json;
        match self {
            Type::Bool => json!("bool"),
            Type::Number => json!("number"),
            Type::String => json!("string"),
            Type::Dynamic => json!("dynamic"),
            Type::List(t) => json!(["list", t.to_json()]),
            Type::Set(t) => json!(["set", t.to_json()]),
            Type::Map(t) => json!(["map", t.to_json()]),
            Type::Object(attrs) => {
                let m: serde_json::Map<String, serde_json::Value> = attrs
                    .iter()
                    .map(|(k, v)| (k.clone(), v.to_json()))
                    .collect();
                json!(["object", m])
            }
            Type::Tuple(elems) => {
                json!(["tuple", elems.iter().map(Type::to_json).collect::<Vec<_>>()])
            }
        }
    }

    /// A short human name, as in error messages (`list of string`).
    pub fn friendly(&self) -> String {
        match self {
            Type::Bool => "bool".into(),
            Type::Number => "number".into(),
            Type::String => "string".into(),
            Type::Dynamic => "any".into(),
            Type::List(t) => format!("list of {}", t.friendly()),
            Type::Set(t) => format!("set of {}", t.friendly()),
            Type::Map(t) => format!("map of {}", t.friendly()),
            Type::Object(_) => "object".into(),
            Type::Tuple(_) => "tuple".into(),
        }
    }
}

/// An arbitrary-precision number.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Number(pub BigDecimal);

impl Number {
    /// The number as an i64 when it is an integer in range.
    pub fn to_i64(&self) -> Option<i64> {
        if self.0.is_integer() {
            self.0.to_i64()
        } else {
            None
        }
    }
    /// The nearest f64.
    pub fn to_f64(&self) -> f64 {
        self.0.to_f64().unwrap_or(f64::NAN)
    }
    /// Whether the number has no fractional part.
    pub fn is_integer(&self) -> bool {
        self.0.is_integer()
    }
    /// Zero.
    pub fn zero() -> Number {
        Number(BigDecimal::zero())
    }
    /// Builds from an f64 (finite values only).
    pub fn from_f64(f: f64) -> Option<Number> {
        if !f.is_finite() {
            return None;
        }
        BigDecimal::from_str(&format!("{f}")).ok().map(Number)
    }
}

impl From<i64> for Number {
    fn from(i: i64) -> Self {
        Number(BigDecimal::from(i))
    }
}

impl FromStr for Number {
    type Err = ValueError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        BigDecimal::from_str(s.trim())
            .map(Number)
            .map_err(|_| ValueError::mismatch("", format!("{s:?} is not a number")))
    }
}

impl fmt::Display for Number {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0.normalized();
        if n.is_integer() {
            write!(f, "{}", n.with_scale(0))
        } else {
            write!(f, "{}", n.to_plain_string())
        }
    }
}

/// A value: known or unknown, possibly marked sensitive.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// Absent.
    Null,
    /// Not known until apply.
    Unknown,
    /// `true` / `false`.
    Bool(bool),
    /// A number.
    Number(Number),
    /// A string.
    String(String),
    /// A list or tuple.
    List(Vec<Value>),
    /// A set: order carries no meaning, elements are distinct.
    Set(Vec<Value>),
    /// A map or object.
    Map(BTreeMap<String, Value>),
    /// A sensitive value: shown as `(sensitive value)`.
    Sensitive(Box<Value>),
}

impl Value {
    /// A string value.
    pub fn string(s: impl Into<String>) -> Value {
        Value::String(s.into())
    }
    /// A number value from an integer.
    pub fn int(i: i64) -> Value {
        Value::Number(Number::from(i))
    }
    /// Whether this value is null (looking through marks).
    pub fn is_null(&self) -> bool {
        matches!(self.unmarked(), Value::Null)
    }
    /// Whether this value is unknown at the top level.
    pub fn is_unknown(&self) -> bool {
        matches!(self.unmarked(), Value::Unknown)
    }
    /// Whether this value contains no unknown anywhere.
    pub fn is_wholly_known(&self) -> bool {
        match self {
            Value::Unknown => false,
            Value::List(v) | Value::Set(v) => v.iter().all(Value::is_wholly_known),
            Value::Map(m) => m.values().all(Value::is_wholly_known),
            Value::Sensitive(v) => v.is_wholly_known(),
            _ => true,
        }
    }
    /// Whether this value, or anything inside it, is marked sensitive.
    pub fn contains_sensitive(&self) -> bool {
        match self {
            Value::Sensitive(_) => true,
            Value::List(v) | Value::Set(v) => v.iter().any(Value::contains_sensitive),
            Value::Map(m) => m.values().any(Value::contains_sensitive),
            _ => false,
        }
    }
    /// Whether the top level is marked sensitive.
    pub fn is_sensitive(&self) -> bool {
        matches!(self, Value::Sensitive(_))
    }
    /// The value without its top-level mark.
    pub fn unmarked(&self) -> &Value {
        match self {
            Value::Sensitive(v) => v.unmarked(),
            v => v,
        }
    }
    /// The value with every mark removed, deeply.
    pub fn deep_unmark(&self) -> Value {
        match self {
            Value::Sensitive(v) => v.deep_unmark(),
            Value::List(v) => Value::List(v.iter().map(Value::deep_unmark).collect()),
            Value::Set(v) => Value::Set(v.iter().map(Value::deep_unmark).collect()),
            Value::Map(m) => Value::Map(
                m.iter()
                    .map(|(k, v)| (k.clone(), v.deep_unmark()))
                    .collect(),
            ),
            v => v.clone(),
        }
    }
    /// Marks this value sensitive (idempotent).
    pub fn mark_sensitive(self) -> Value {
        match self {
            v @ Value::Sensitive(_) => v,
            v => Value::Sensitive(Box::new(v)),
        }
    }
    /// Applies `sensitive` to `self` when `like` carries it at the top.
    pub fn with_marks_of(self, like: &Value) -> Value {
        if like.is_sensitive() {
            self.mark_sensitive()
        } else {
            self
        }
    }
    /// The string inside, if this is a known string.
    pub fn as_str(&self) -> Option<&str> {
        match self.unmarked() {
            Value::String(s) => Some(s),
            _ => None,
        }
    }
    /// A map's or object's attribute.
    pub fn get_attr(&self, name: &str) -> Option<&Value> {
        match self.unmarked() {
            Value::Map(m) => m.get(name),
            _ => None,
        }
    }
    /// A short description of the value's kind, for messages.
    pub fn kind(&self) -> &'static str {
        match self.unmarked() {
            Value::Null => "null",
            Value::Unknown => "unknown value",
            Value::Bool(_) => "bool",
            Value::Number(_) => "number",
            Value::String(_) => "string",
            Value::List(_) => "list",
            Value::Set(_) => "set",
            Value::Map(_) => "object",
            Value::Sensitive(_) => "sensitive value",
        }
    }
    /// Infers a type for a value whose type is not given by a schema.
    pub fn infer_type(&self) -> Type {
        match self.unmarked() {
            Value::Null | Value::Unknown => Type::Dynamic,
            Value::Bool(_) => Type::Bool,
            Value::Number(_) => Type::Number,
            Value::String(_) => Type::String,
            Value::List(v) => Type::Tuple(v.iter().map(Value::infer_type).collect()),
            Value::Set(v) => Type::Set(Box::new(
                v.first().map(Value::infer_type).unwrap_or(Type::Dynamic),
            )),
            Value::Map(m) => {
                Type::Object(m.iter().map(|(k, v)| (k.clone(), v.infer_type())).collect())
            }
            Value::Sensitive(_) => Type::Dynamic,
        }
    }
    /// Semantic equality: sets compare without order, marks are ignored.
    pub fn same(&self, other: &Value) -> bool {
        match (self.unmarked(), other.unmarked()) {
            (Value::List(a), Value::List(b)) => {
                a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.same(y))
            }
            (Value::Set(a), Value::Set(b))
            | (Value::Set(a), Value::List(b))
            | (Value::List(a), Value::Set(b)) => {
                a.len() == b.len() && a.iter().all(|x| b.iter().any(|y| x.same(y)))
            }
            (Value::Map(a), Value::Map(b)) => {
                let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
                keys.into_iter().all(|k| {
                    let x = a.get(k).unwrap_or(&Value::Null);
                    let y = b.get(k).unwrap_or(&Value::Null);
                    x.same(y)
                })
            }
            (a, b) => a == b,
        }
    }
}

/// Converts a value to `ty`, the way the language does on assignment
/// (numbers and bools from strings and back, tuples to lists, objects to maps),
/// keeping unknowns and marks.
pub fn convert(value: &Value, ty: &Type) -> Result<Value, ValueError> {
    convert_at(value, ty, "")
}

fn convert_at(value: &Value, ty: &Type, path: &str) -> Result<Value, ValueError> {
    if let Value::Sensitive(inner) = value {
        // A mismatch inside a sensitive value would quote it: say only where.
        return convert_at(inner, ty, path)
            .map(Value::mark_sensitive)
            .map_err(|e| match e {
                ValueError::Mismatch { path, .. } => ValueError::Mismatch {
                    path,
                    message: format!(
                        "{} required; the sensitive value given does not convert",
                        ty.friendly()
                    ),
                },
                other => other,
            });
    }
    if matches!(value, Value::Null | Value::Unknown) || *ty == Type::Dynamic {
        return Ok(value.clone());
    }
    match (ty, value) {
        (Type::Bool, Value::Bool(_)) => Ok(value.clone()),
        (Type::Bool, Value::String(s)) => match s.as_str() {
            "true" => Ok(Value::Bool(true)),
            "false" => Ok(Value::Bool(false)),
            _ => Err(ValueError::mismatch(
                path,
                format!("a bool is required, not the string {s:?}"),
            )),
        },
        (Type::Number, Value::Number(_)) => Ok(value.clone()),
        (Type::Number, Value::String(s)) => s.parse::<Number>().map(Value::Number).map_err(|_| {
            ValueError::mismatch(path, format!("a number is required, not the string {s:?}"))
        }),
        (Type::String, Value::String(_)) => Ok(value.clone()),
        (Type::String, Value::Number(n)) => Ok(Value::String(n.to_string())),
        (Type::String, Value::Bool(b)) => Ok(Value::String(b.to_string())),
        (Type::List(et), Value::List(items) | Value::Set(items)) => Ok(Value::List(
            items
                .iter()
                .enumerate()
                .map(|(i, v)| convert_at(v, et, &format!("{path}[{i}]")))
                .collect::<Result<_, _>>()?,
        )),
        (Type::Set(et), Value::List(items) | Value::Set(items)) => {
            let mut out: Vec<Value> = Vec::new();
            for (i, v) in items.iter().enumerate() {
                let c = convert_at(v, et, &format!("{path}[{i}]"))?;
                if !out.iter().any(|o| o.same(&c) && o.is_wholly_known()) {
                    out.push(c);
                }
            }
            Ok(Value::Set(out))
        }
        (Type::Tuple(ets), Value::List(items)) if ets.len() == items.len() => Ok(Value::List(
            items
                .iter()
                .zip(ets)
                .enumerate()
                .map(|(i, (v, t))| convert_at(v, t, &format!("{path}[{i}]")))
                .collect::<Result<_, _>>()?,
        )),
        (Type::Map(et), Value::Map(m)) => Ok(Value::Map(
            m.iter()
                .map(|(k, v)| Ok((k.clone(), convert_at(v, et, &format!("{path}[{k:?}]"))?)))
                .collect::<Result<_, ValueError>>()?,
        )),
        (Type::Object(attrs), Value::Map(m)) => {
            for k in m.keys() {
                if !attrs.contains_key(k) {
                    return Err(ValueError::mismatch(
                        path,
                        format!("unexpected attribute {k:?}"),
                    ));
                }
            }
            let mut out = BTreeMap::new();
            for (k, t) in attrs {
                let v = m.get(k).cloned().unwrap_or(Value::Null);
                out.insert(k.clone(), convert_at(&v, t, &format!("{path}.{k}"))?);
            }
            Ok(Value::Map(out))
        }
        (ty, v) => Err(ValueError::mismatch(
            path,
            format!("{} required, got {}", ty.friendly(), v.kind()),
        )),
    }
}

/// Reads a value of type `ty` from cty JSON (the state file encoding).
pub fn from_json(json: &serde_json::Value, ty: &Type) -> Result<Value, ValueError> {
    use serde_json::Value as J;
    if json.is_null() {
        return Ok(Value::Null);
    }
    Ok(match ty {
        Type::Dynamic => {
            // Dynamic values are stored as {"value": ..., "type": ...}.
            if let (Some(v), Some(t)) = (json.get("value"), json.get("type")) {
                let t = Type::from_json(t)?;
                return from_json(v, &t);
            }
            untyped_from_json(json)
        }
        Type::Bool => match json {
            J::Bool(b) => Value::Bool(*b),
            other => convert(&untyped_from_json(other), ty)?,
        },
        Type::Number => match json {
            J::Number(n) => Value::Number(n.to_string().parse()?),
            other => convert(&untyped_from_json(other), ty)?,
        },
        Type::String => match json {
            J::String(s) => Value::String(s.clone()),
            other => convert(&untyped_from_json(other), ty)?,
        },
        Type::List(et) | Type::Set(et) => {
            let items = json
                .as_array()
                .ok_or_else(|| ValueError::mismatch("", "expected a JSON array"))?;
            let vals = items
                .iter()
                .map(|i| from_json(i, et))
                .collect::<Result<Vec<_>, _>>()?;
            if matches!(ty, Type::Set(_)) {
                Value::Set(vals)
            } else {
                Value::List(vals)
            }
        }
        Type::Tuple(ets) => {
            let items = json
                .as_array()
                .ok_or_else(|| ValueError::mismatch("", "expected a JSON array"))?;
            Value::List(
                items
                    .iter()
                    .zip(ets)
                    .map(|(i, t)| from_json(i, t))
                    .collect::<Result<_, _>>()?,
            )
        }
        Type::Map(et) => {
            let obj = json
                .as_object()
                .ok_or_else(|| ValueError::mismatch("", "expected a JSON object"))?;
            Value::Map(
                obj.iter()
                    .map(|(k, v)| Ok((k.clone(), from_json(v, et)?)))
                    .collect::<Result<_, ValueError>>()?,
            )
        }
        Type::Object(attrs) => {
            let obj = json
                .as_object()
                .ok_or_else(|| ValueError::mismatch("", "expected a JSON object"))?;
            let mut out = BTreeMap::new();
            for (k, t) in attrs {
                let v = match obj.get(k) {
                    Some(v) => from_json(v, t)?,
                    None => Value::Null,
                };
                out.insert(k.clone(), v);
            }
            Value::Map(out)
        }
    })
}

/// Reads JSON without a type (numbers, strings, arrays as lists, objects as maps).
pub fn untyped_from_json(json: &serde_json::Value) -> Value {
    use serde_json::Value as J;
    match json {
        J::Null => Value::Null,
        J::Bool(b) => Value::Bool(*b),
        J::Number(n) => n
            .to_string()
            .parse()
            .map(Value::Number)
            .unwrap_or(Value::Null),
        J::String(s) => Value::String(s.clone()),
        J::Array(a) => Value::List(a.iter().map(untyped_from_json).collect()),
        J::Object(o) => Value::Map(
            o.iter()
                .map(|(k, v)| (k.clone(), untyped_from_json(v)))
                .collect(),
        ),
    }
}

/// Writes a known value as JSON (marks dropped; unknowns become null).
pub fn to_json(value: &Value) -> serde_json::Value {
    use serde_json::Value as J;
    match value {
        Value::Null | Value::Unknown => J::Null,
        Value::Bool(b) => J::Bool(*b),
        Value::Number(n) => {
            if let Some(i) = n.to_i64() {
                J::from(i)
            } else {
                serde_json::Number::from_f64(n.to_f64())
                    .map(J::Number)
                    .unwrap_or(J::Null)
            }
        }
        Value::String(s) => J::String(s.clone()),
        Value::List(v) | Value::Set(v) => J::Array(v.iter().map(to_json).collect()),
        Value::Map(m) => J::Object(m.iter().map(|(k, v)| (k.clone(), to_json(v))).collect()),
        Value::Sensitive(v) => to_json(v),
    }
}

/// Writes a value of type `ty` as JSON, wrapping dynamic values with their type
/// the way state files store them.
pub fn to_typed_json(value: &Value, ty: &Type) -> serde_json::Value {
    use serde_json::Value as J;
    match (ty, value.unmarked()) {
        (_, Value::Null | Value::Unknown) => J::Null,
        (Type::Dynamic, v) => {
            serde_json::json!({"value": to_json(v), "type": v.infer_type().to_json()})
        }
        (Type::List(et) | Type::Set(et), Value::List(v) | Value::Set(v)) => {
            J::Array(v.iter().map(|x| to_typed_json(x, et)).collect())
        }
        (Type::Map(et), Value::Map(m)) => J::Object(
            m.iter()
                .map(|(k, v)| (k.clone(), to_typed_json(v, et)))
                .collect(),
        ),
        (Type::Object(attrs), Value::Map(m)) => J::Object(
            attrs
                .iter()
                .map(|(k, t)| {
                    (
                        k.clone(),
                        to_typed_json(m.get(k).unwrap_or(&Value::Null), t),
                    )
                })
                .collect(),
        ),
        (_, v) => to_json(v),
    }
}

/// The paths (as JSON steps) of every sensitive-marked value, for the state
/// file's `sensitive_attributes`.
pub fn sensitive_paths(value: &Value) -> Vec<Vec<PathStep>> {
    let mut out = Vec::new();
    let mut prefix = Vec::new();
    walk_sensitive(value, &mut prefix, &mut out);
    out
}

/// One step of an attribute path.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum PathStep {
    /// `.name`
    Attr(String),
    /// `["key"]`
    Key(String),
    /// `[3]`
    Index(i64),
}

fn walk_sensitive(value: &Value, prefix: &mut Vec<PathStep>, out: &mut Vec<Vec<PathStep>>) {
    match value {
        Value::Sensitive(_) => out.push(prefix.clone()),
        Value::List(v) => {
            for (i, x) in v.iter().enumerate() {
                prefix.push(PathStep::Index(i as i64));
                walk_sensitive(x, prefix, out);
                prefix.pop();
            }
        }
        Value::Map(m) => {
            for (k, x) in m {
                prefix.push(if prefix.is_empty() {
                    PathStep::Attr(k.clone())
                } else {
                    PathStep::Key(k.clone())
                });
                walk_sensitive(x, prefix, out);
                prefix.pop();
            }
        }
        _ => {}
    }
}

/// Marks the values at `paths` sensitive.
pub fn apply_sensitive_paths(value: Value, paths: &[Vec<PathStep>]) -> Value {
    let mut value = value;
    for path in paths {
        value = mark_at(value, path);
    }
    value
}

fn mark_at(value: Value, path: &[PathStep]) -> Value {
    let Some((first, rest)) = path.split_first() else {
        return value.mark_sensitive();
    };
    match (value, first) {
        (Value::Map(mut m), PathStep::Attr(k) | PathStep::Key(k)) => {
            if let Some(v) = m.remove(k) {
                m.insert(k.clone(), mark_at(v, rest));
            }
            Value::Map(m)
        }
        (Value::List(mut v), PathStep::Index(i)) => {
            if let Some(slot) = usize::try_from(*i).ok().and_then(|i| v.get_mut(i)) {
                let inner = std::mem::replace(slot, Value::Null);
                *slot = mark_at(inner, rest);
            }
            Value::List(v)
        }
        (v, _) => v,
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Null => write!(f, "null"),
            Value::Unknown => write!(f, "(known after apply)"),
            Value::Bool(b) => write!(f, "{b}"),
            Value::Number(n) => write!(f, "{n}"),
            Value::String(s) => write!(f, "{s:?}"),
            Value::List(v) | Value::Set(v) => {
                write!(f, "[")?;
                for (i, x) in v.iter().enumerate() {
                    if i > 0 {
                        write!(f, ", ")?;
                    }
                    write!(f, "{x}")?;
                }
                write!(f, "]")
            }
            Value::Map(m) => {
                write!(f, "{{")?;
                for (i, (k, x)) in m.iter().enumerate() {
                    if i > 0 {
                        write!(f, ", ")?;
                    }
                    write!(f, "{k} = {x}")?;
                }
                write!(f, "}}")
            }
            Value::Sensitive(_) => write!(f, "(sensitive value)"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sensitive_value_that_does_not_convert_is_not_quoted() {
        let secret = Value::string("hunter2-abc").mark_sensitive();
        let e = convert(&secret, &Type::Number).unwrap_err().to_string();
        assert!(!e.contains("hunter2"), "{e}");
        assert!(e.contains("sensitive"), "{e}");
        let plain = convert(&Value::string("hunter2-abc"), &Type::Number)
            .unwrap_err()
            .to_string();
        assert!(
            plain.contains("hunter2"),
            "plain values are still quoted: {plain}"
        );
    }

    #[test]
    fn type_json_round_trip() {
        let j = serde_json::json!(["object", {"a": ["list", "string"], "b": "number", "c": ["tuple", ["bool", "dynamic"]]}]);
        let t = Type::from_json(&j).unwrap();
        assert_eq!(t.to_json(), j);
    }

    #[test]
    fn numbers_keep_precision() {
        let n: Number = "123456789012345678901234567890.5".parse().unwrap();
        assert_eq!(n.to_string(), "123456789012345678901234567890.5");
        let i: Number = "10.000".parse().unwrap();
        assert_eq!(i.to_string(), "10");
    }

    #[test]
    fn convert_applies_language_rules() {
        let v = Value::List(vec![Value::string("1"), Value::int(2)]);
        let c = convert(&v, &Type::List(Box::new(Type::Number))).unwrap();
        assert_eq!(c, Value::List(vec![Value::int(1), Value::int(2)]));
        let err = convert(&Value::string("x"), &Type::Number).unwrap_err();
        assert!(err.to_string().contains("a number is required"), "{err}");
        let obj = Type::Object(BTreeMap::from([("a".into(), Type::String)]));
        let bad = Value::Map(BTreeMap::from([("b".into(), Value::string("x"))]));
        assert!(convert(&bad, &obj).is_err());
    }

    #[test]
    fn sensitive_paths_round_trip() {
        let v = Value::Map(BTreeMap::from([
            ("a".into(), Value::string("x").mark_sensitive()),
            ("b".into(), Value::string("y")),
        ]));
        let paths = sensitive_paths(&v);
        assert_eq!(paths, vec![vec![PathStep::Attr("a".into())]]);
        let back = apply_sensitive_paths(v.deep_unmark(), &paths);
        assert_eq!(back, v);
    }
}
