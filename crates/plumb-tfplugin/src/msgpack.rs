//! The msgpack encoding of values on the wire, driven by the schema's type.
//!
//! Facts of the format (from the protocol's object wire format notes): null is
//! msgpack nil; an unknown value is a msgpack extension (type 0, or 12 when the
//! sender attaches refinements); numbers are integers when they are whole and
//! fit, float64 when exact, and otherwise their decimal string; objects are maps
//! holding every attribute of the type; a value of dynamic type is a two-element
//! array of its type's JSON and the value.

use std::collections::BTreeMap;
use std::io::Cursor;

use rmp::Marker;

use crate::value::{Number, Type, Value, ValueError};

fn enc_err(e: impl std::fmt::Display) -> ValueError {
    ValueError::Encoding(e.to_string())
}

/// Encodes `value` as msgpack of type `ty`.
pub fn encode(value: &Value, ty: &Type) -> Result<Vec<u8>, ValueError> {
    let mut buf = Vec::with_capacity(64);
    write_value(&mut buf, value, ty, "")?;
    Ok(buf)
}

fn write_value(buf: &mut Vec<u8>, value: &Value, ty: &Type, path: &str) -> Result<(), ValueError> {
    let value = value.unmarked();
    match value {
        Value::Null => {
            rmp::encode::write_nil(buf).map_err(enc_err)?;
            return Ok(());
        }
        Value::Unknown => {
            rmp::encode::write_ext_meta(buf, 1, 0).map_err(enc_err)?;
            buf.push(0);
            return Ok(());
        }
        _ => {}
    }
    if *ty == Type::Dynamic {
        let inferred = value.infer_type();
        rmp::encode::write_array_len(buf, 2).map_err(enc_err)?;
        let tj = serde_json::to_vec(&inferred.to_json()).map_err(enc_err)?;
        rmp::encode::write_bin(buf, &tj).map_err(enc_err)?;
        return write_value(buf, value, &inferred, path);
    }
    match (ty, value) {
        (Type::Bool, Value::Bool(b)) => rmp::encode::write_bool(buf, *b).map_err(enc_err)?,
        (Type::Number, Value::Number(n)) => write_number(buf, n)?,
        (Type::String, Value::String(s)) => rmp::encode::write_str(buf, s).map_err(enc_err)?,
        (Type::List(et) | Type::Set(et), Value::List(items) | Value::Set(items)) => {
            rmp::encode::write_array_len(buf, len32(items.len())?).map_err(enc_err)?;
            for (i, item) in items.iter().enumerate() {
                write_value(buf, item, et, &format!("{path}[{i}]"))?;
            }
        }
        (Type::Tuple(ets), Value::List(items)) => {
            if ets.len() != items.len() {
                return Err(ValueError::mismatch(
                    path,
                    "tuple length differs from its type",
                ));
            }
            rmp::encode::write_array_len(buf, len32(items.len())?).map_err(enc_err)?;
            for (i, (item, et)) in items.iter().zip(ets).enumerate() {
                write_value(buf, item, et, &format!("{path}[{i}]"))?;
            }
        }
        (Type::Map(et), Value::Map(m)) => {
            rmp::encode::write_map_len(buf, len32(m.len())?).map_err(enc_err)?;
            for (k, v) in m {
                rmp::encode::write_str(buf, k).map_err(enc_err)?;
                write_value(buf, v, et, &format!("{path}[{k:?}]"))?;
            }
        }
        (Type::Object(attrs), Value::Map(m)) => {
            rmp::encode::write_map_len(buf, len32(attrs.len())?).map_err(enc_err)?;
            for (k, t) in attrs {
                rmp::encode::write_str(buf, k).map_err(enc_err)?;
                write_value(
                    buf,
                    m.get(k).unwrap_or(&Value::Null),
                    t,
                    &format!("{path}.{k}"),
                )?;
            }
        }
        (Type::String, Value::Number(_) | Value::Bool(_))
        | (Type::Number | Type::Bool, Value::String(_)) => {
            let converted = crate::value::convert(value, ty)?;
            write_value(buf, &converted, ty, path)?;
        }
        (ty, v) => {
            return Err(ValueError::mismatch(
                path,
                format!("{} required, got {}", ty.friendly(), v.kind()),
            ));
        }
    }
    Ok(())
}

fn len32(n: usize) -> Result<u32, ValueError> {
    u32::try_from(n).map_err(|_| ValueError::Encoding("collection too large".into()))
}

fn write_number(buf: &mut Vec<u8>, n: &Number) -> Result<(), ValueError> {
    if let Some(i) = n.to_i64() {
        rmp::encode::write_sint(buf, i).map_err(enc_err)?;
        return Ok(());
    }
    let f = n.to_f64();
    if Number::from_f64(f).as_ref() == Some(n) {
        rmp::encode::write_f64(buf, f).map_err(enc_err)?;
    } else {
        rmp::encode::write_str(buf, &n.to_string()).map_err(enc_err)?;
    }
    Ok(())
}

/// Decodes msgpack of type `ty`.
pub fn decode(bytes: &[u8], ty: &Type) -> Result<Value, ValueError> {
    let mut cur = Cursor::new(bytes);
    read_value(&mut cur, ty)
}

fn peek(cur: &Cursor<&[u8]>) -> Result<Marker, ValueError> {
    let pos = cur.position() as usize;
    cur.get_ref()
        .get(pos)
        .map(|b| Marker::from_u8(*b))
        .ok_or_else(|| ValueError::Encoding("unexpected end of msgpack".into()))
}

fn read_value(cur: &mut Cursor<&[u8]>, ty: &Type) -> Result<Value, ValueError> {
    let marker = peek(cur)?;
    match marker {
        Marker::Null => {
            cur.set_position(cur.position() + 1);
            return Ok(Value::Null);
        }
        Marker::FixExt1
        | Marker::FixExt2
        | Marker::FixExt4
        | Marker::FixExt8
        | Marker::FixExt16
        | Marker::Ext8
        | Marker::Ext16
        | Marker::Ext32 => {
            let meta = rmp::decode::read_ext_meta(cur).map_err(enc_err)?;
            cur.set_position(cur.position() + u64::from(meta.size));
            return Ok(Value::Unknown);
        }
        _ => {}
    }
    match ty {
        Type::Dynamic => {
            let n = rmp::decode::read_array_len(cur).map_err(enc_err)?;
            if n != 2 {
                return Err(ValueError::Encoding(
                    "dynamic value is not a [type, value] pair".into(),
                ));
            }
            let tj = read_bytes_or_str(cur)?;
            let inner = Type::from_json_bytes(&tj)?;
            read_value(cur, &inner)
        }
        Type::Bool => Ok(Value::Bool(rmp::decode::read_bool(cur).map_err(enc_err)?)),
        Type::Number => read_number(cur).map(Value::Number),
        Type::String => Ok(Value::String(read_string(cur)?)),
        Type::List(et) | Type::Set(et) => {
            let n = rmp::decode::read_array_len(cur).map_err(enc_err)?;
            let mut items = Vec::with_capacity(n as usize);
            for _ in 0..n {
                items.push(read_value(cur, et)?);
            }
            Ok(if matches!(ty, Type::Set(_)) {
                Value::Set(items)
            } else {
                Value::List(items)
            })
        }
        Type::Tuple(ets) => {
            let n = rmp::decode::read_array_len(cur).map_err(enc_err)?;
            if n as usize != ets.len() {
                return Err(ValueError::Encoding(
                    "tuple length differs from its type".into(),
                ));
            }
            let mut items = Vec::with_capacity(ets.len());
            for et in ets {
                items.push(read_value(cur, et)?);
            }
            Ok(Value::List(items))
        }
        Type::Map(et) => Ok(Value::Map(read_map(cur, |_| Ok(et))?)),
        Type::Object(attrs) => {
            let mut m = read_map(cur, |k| {
                attrs.get(k).ok_or_else(|| {
                    ValueError::Encoding(format!("attribute {k:?} is not in the schema"))
                })
            })?;
            for k in attrs.keys() {
                m.entry(k.clone()).or_insert(Value::Null);
            }
            Ok(Value::Map(m))
        }
    }
}

/// Reads a msgpack map of string keys, each value of the type `type_of` gives
/// for its key: a map's one element type, or an object's attribute type.
fn read_map<'t>(
    cur: &mut Cursor<&[u8]>,
    type_of: impl Fn(&str) -> Result<&'t Type, ValueError>,
) -> Result<BTreeMap<String, Value>, ValueError> {
    let n = rmp::decode::read_map_len(cur).map_err(enc_err)?;
    let mut m = BTreeMap::new();
    for _ in 0..n {
        let k = read_string(cur)?;
        let v = read_value(cur, type_of(&k)?)?;
        m.insert(k, v);
    }
    Ok(m)
}

fn read_string(cur: &mut Cursor<&[u8]>) -> Result<String, ValueError> {
    let bytes = read_bytes_or_str(cur)?;
    String::from_utf8(bytes).map_err(enc_err)
}

fn read_bytes_or_str(cur: &mut Cursor<&[u8]>) -> Result<Vec<u8>, ValueError> {
    let len = match peek(cur)? {
        Marker::Bin8 | Marker::Bin16 | Marker::Bin32 => {
            rmp::decode::read_bin_len(cur).map_err(enc_err)?
        }
        _ => rmp::decode::read_str_len(cur).map_err(enc_err)?,
    } as usize;
    let pos = cur.position() as usize;
    let data = cur
        .get_ref()
        .get(pos..pos + len)
        .ok_or_else(|| ValueError::Encoding("truncated string".into()))?
        .to_vec();
    cur.set_position((pos + len) as u64);
    Ok(data)
}

fn read_number(cur: &mut Cursor<&[u8]>) -> Result<Number, ValueError> {
    match peek(cur)? {
        Marker::F32 => {
            let f = rmp::decode::read_f32(cur).map_err(enc_err)?;
            Number::from_f64(f64::from(f))
                .ok_or_else(|| ValueError::Encoding("non-finite number".into()))
        }
        Marker::F64 => {
            let f = rmp::decode::read_f64(cur).map_err(enc_err)?;
            Number::from_f64(f).ok_or_else(|| ValueError::Encoding("non-finite number".into()))
        }
        Marker::FixStr(_) | Marker::Str8 | Marker::Str16 | Marker::Str32 => {
            read_string(cur)?.parse()
        }
        Marker::U64 => {
            let u: u64 = rmp::decode::read_int(cur).map_err(enc_err)?;
            u.to_string().parse()
        }
        _ => {
            let i: i64 = rmp::decode::read_int(cur).map_err(enc_err)?;
            Ok(Number::from(i))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj() -> Type {
        Type::Object(BTreeMap::from([
            ("id".to_string(), Type::String),
            ("n".to_string(), Type::Number),
            ("tags".to_string(), Type::Map(Box::new(Type::String))),
            ("set".to_string(), Type::Set(Box::new(Type::Number))),
            ("any".to_string(), Type::Dynamic),
        ]))
    }

    #[test]
    fn round_trips_with_unknowns_and_big_numbers() {
        let v = Value::Map(BTreeMap::from([
            ("id".to_string(), Value::Unknown),
            ("n".to_string(), Value::Number("1e400".parse().unwrap())),
            (
                "tags".to_string(),
                Value::Map(BTreeMap::from([("a".to_string(), Value::string("b"))])),
            ),
            (
                "set".to_string(),
                Value::Set(vec![Value::int(1), Value::Number("0.5".parse().unwrap())]),
            ),
            (
                "any".to_string(),
                Value::List(vec![Value::string("x"), Value::Bool(true)]),
            ),
        ]));
        let bytes = encode(&v, &obj()).unwrap();
        let back = decode(&bytes, &obj()).unwrap();
        assert_eq!(back, v);
    }

    #[test]
    fn unknown_is_extension_zero() {
        let bytes = encode(&Value::Unknown, &Type::String).unwrap();
        assert_eq!(bytes, vec![0xd4, 0x00, 0x00]);
        // A refined unknown (extension 12) decodes as unknown as well.
        let refined = [0xc7, 0x02, 0x0c, 0x81, 0x01];
        assert_eq!(decode(&refined, &Type::String).unwrap(), Value::Unknown);
    }

    #[test]
    fn missing_object_attributes_are_null() {
        let bytes = encode(&Value::Map(BTreeMap::new()), &obj()).unwrap();
        let back = decode(&bytes, &obj()).unwrap();
        assert_eq!(back.get_attr("id"), Some(&Value::Null));
    }
}
