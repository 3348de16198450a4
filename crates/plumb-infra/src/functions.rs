//! The language's built-in functions.
//!
//! Every function receives evaluated arguments. Unless a function says
//! otherwise, an unknown argument makes the result unknown, and a sensitive
//! argument makes the result sensitive. [`NAMES`] lists what is implemented.

use std::collections::BTreeMap;
use std::path::Path;

use base64::Engine;
use plumb_tfplugin::value::{BigDecimal, Type, convert};
use plumb_tfplugin::{Number, Value};
use sha2::Digest;

use crate::eval::{iterate, to_bool, to_number, value_to_string};

/// Every built-in function plumb implements.
pub const NAMES: &[&str] = &[
    "abs",
    "abspath",
    "alltrue",
    "anytrue",
    "base64decode",
    "base64encode",
    "base64sha256",
    "base64sha512",
    "basename",
    "can",
    "ceil",
    "chomp",
    "chunklist",
    "cidrhost",
    "cidrnetmask",
    "cidrsubnet",
    "cidrsubnets",
    "coalesce",
    "coalescelist",
    "compact",
    "concat",
    "contains",
    "dirname",
    "distinct",
    "element",
    "endswith",
    "file",
    "filebase64",
    "filebase64sha256",
    "filebase64sha512",
    "fileexists",
    "filemd5",
    "filesha1",
    "filesha256",
    "filesha512",
    "flatten",
    "floor",
    "format",
    "formatdate",
    "formatlist",
    "indent",
    "index",
    "join",
    "jsondecode",
    "jsonencode",
    "keys",
    "length",
    "lookup",
    "lower",
    "max",
    "md5",
    "merge",
    "min",
    "nonsensitive",
    "one",
    "parseint",
    "pathexpand",
    "pow",
    "range",
    "regex",
    "regexall",
    "replace",
    "reverse",
    "sensitive",
    "setintersection",
    "setsubtract",
    "setunion",
    "sha1",
    "sha256",
    "sha512",
    "signum",
    "slice",
    "sort",
    "split",
    "startswith",
    "strrev",
    "substr",
    "sum",
    "templatefile",
    "timeadd",
    "timestamp",
    "title",
    "tobool",
    "tolist",
    "tomap",
    "tonumber",
    "toset",
    "tostring",
    "transpose",
    "trim",
    "trimprefix",
    "trimspace",
    "trimsuffix",
    "try",
    "upper",
    "urlencode",
    "uuid",
    "values",
    "yamlencode",
    "zipmap",
];

type R = Result<Value, String>;

fn n_args(args: &[Value], n: usize) -> Result<(), String> {
    if args.len() != n {
        return Err(format!("expects {n} argument(s), got {}", args.len()));
    }
    Ok(())
}

fn s(v: &Value) -> Result<String, String> {
    value_to_string(v)
}

fn list(v: &Value) -> Result<Vec<Value>, String> {
    match v.unmarked() {
        Value::List(x) | Value::Set(x) => Ok(x.clone()),
        other => Err(format!("a list is required, not a {}", other.kind())),
    }
}

fn map(v: &Value) -> Result<BTreeMap<String, Value>, String> {
    match v.unmarked() {
        Value::Map(m) => Ok(m.clone()),
        other => Err(format!(
            "a map or object is required, not a {}",
            other.kind()
        )),
    }
}

fn num(n: BigDecimal) -> Value {
    Value::Number(Number(n.normalized()))
}

fn int(v: &Value) -> Result<i64, String> {
    let n = to_number(v)?;
    n.to_i64()
        .ok_or_else(|| format!("{n} is not a whole number"))
}

/// Calls built-in `name`.
pub fn call(name: &str, args: Vec<Value>, module_dir: &Path) -> R {
    // Functions that handle unknown or sensitive arguments themselves.
    match name {
        "sensitive" => {
            n_args(&args, 1)?;
            return Ok(args[0].clone().mark_sensitive());
        }
        "nonsensitive" => {
            n_args(&args, 1)?;
            return Ok(args[0].deep_unmark());
        }
        "length" if args.len() == 1 => {
            if let Value::List(x) | Value::Set(x) = args[0].unmarked() {
                return Ok(Value::int(x.len() as i64).with_marks_of(&args[0]));
            }
        }
        "coalesce" => {
            for a in &args {
                if a.is_unknown() {
                    return Ok(Value::Unknown);
                }
                if !a.is_null() && a.as_str() != Some("") {
                    return Ok(a.clone());
                }
            }
            return Err("no non-null, non-empty argument".into());
        }
        _ => {}
    }
    if args.iter().any(|a| !a.is_wholly_known())
        && !matches!(name, "tolist" | "toset" | "tomap" | "concat" | "merge")
    {
        return Ok(Value::Unknown);
    }
    let sensitive = args.iter().any(Value::contains_sensitive);
    let args: Vec<Value> = args.iter().map(Value::deep_unmark).collect();
    let out = call_plain(name, &args, module_dir)?;
    Ok(if sensitive { out.mark_sensitive() } else { out })
}

fn call_plain(name: &str, a: &[Value], dir: &Path) -> R {
    Ok(match name {
        // numbers
        "abs" => {
            n_args(a, 1)?;
            num(to_number(&a[0])?.0.abs())
        }
        "ceil" | "floor" => {
            n_args(a, 1)?;
            let n = to_number(&a[0])?.0;
            let t = n.with_scale_round(
                0,
                if name == "ceil" {
                    bigdecimal::RoundingMode::Ceiling
                } else {
                    bigdecimal::RoundingMode::Floor
                },
            );
            num(t)
        }
        "max" | "min" => {
            if a.is_empty() {
                return Err("needs at least one number".into());
            }
            let mut best = to_number(&a[0])?;
            for x in &a[1..] {
                let n = to_number(x)?;
                if (name == "max" && n > best) || (name == "min" && n < best) {
                    best = n;
                }
            }
            Value::Number(best)
        }
        "pow" => {
            n_args(a, 2)?;
            let b = to_number(&a[0])?.to_f64();
            let e = to_number(&a[1])?.to_f64();
            Value::Number(Number::from_f64(b.powf(e)).ok_or("result is not a finite number")?)
        }
        "signum" => {
            n_args(a, 1)?;
            let n = to_number(&a[0])?;
            Value::int(match n.0.sign() {
                bigdecimal::num_bigint::Sign::Minus => -1,
                bigdecimal::num_bigint::Sign::NoSign => 0,
                bigdecimal::num_bigint::Sign::Plus => 1,
            })
        }
        "parseint" => {
            n_args(a, 2)?;
            let text = s(&a[0])?;
            let base = int(&a[1])?;
            let base = u32::try_from(base)
                .ok()
                .filter(|b| (2..=62).contains(b))
                .ok_or("base must be between 2 and 62")?;
            Value::int(
                i64::from_str_radix(&text, base)
                    .map_err(|_| format!("cannot parse {text:?} as a base {base} integer"))?,
            )
        }
        "sum" => {
            n_args(a, 1)?;
            let items = list(&a[0])?;
            if items.is_empty() {
                return Err("cannot sum an empty list".into());
            }
            let mut t = BigDecimal::from(0);
            for x in &items {
                t += to_number(x)?.0;
            }
            num(t)
        }
        "range" => {
            let nums: Vec<f64> = a
                .iter()
                .map(|x| to_number(x).map(|n| n.to_f64()))
                .collect::<Result<_, _>>()?;
            let (start, end, stepn) = match nums.as_slice() {
                [e] => (0.0, *e, 1.0),
                [s0, e] => (*s0, *e, if s0 <= e { 1.0 } else { -1.0 }),
                [s0, e, st] => (*s0, *e, *st),
                _ => return Err("expects 1 to 3 arguments".into()),
            };
            if stepn == 0.0 {
                return Err("step must not be zero".into());
            }
            let mut out = Vec::new();
            let mut x = start;
            while (stepn > 0.0 && x < end) || (stepn < 0.0 && x > end) {
                out.push(Value::Number(Number::from_f64(x).ok_or("bad number")?));
                x += stepn;
                if out.len() > 1_000_000 {
                    return Err("more than 1 000 000 elements".into());
                }
            }
            Value::List(out)
        }
        // strings
        "chomp" => {
            n_args(a, 1)?;
            Value::String(s(&a[0])?.trim_end_matches(['\n', '\r']).to_string())
        }
        "format" => {
            if a.is_empty() {
                return Err("needs a format string".into());
            }
            Value::String(format_spec(&s(&a[0])?, &a[1..])?)
        }
        "formatlist" => {
            if a.is_empty() {
                return Err("needs a format string".into());
            }
            let fmt = s(&a[0])?;
            let len = a[1..]
                .iter()
                .filter_map(|x| match x {
                    Value::List(l) | Value::Set(l) => Some(l.len()),
                    _ => None,
                })
                .max()
                .unwrap_or(1);
            let mut out = Vec::new();
            for i in 0..len {
                let row: Vec<Value> = a[1..]
                    .iter()
                    .map(|x| match x {
                        Value::List(l) | Value::Set(l) => l.get(i).cloned().unwrap_or(Value::Null),
                        other => other.clone(),
                    })
                    .collect();
                out.push(Value::String(format_spec(&fmt, &row)?));
            }
            Value::List(out)
        }
        "indent" => {
            n_args(a, 2)?;
            let pad = " ".repeat(usize::try_from(int(&a[0])?).unwrap_or(0));
            let text = s(&a[1])?;
            let mut out = String::new();
            for (i, line) in text.split('\n').enumerate() {
                if i > 0 {
                    out.push('\n');
                    if !line.is_empty() {
                        out.push_str(&pad);
                    }
                }
                out.push_str(line);
            }
            Value::String(out)
        }
        "join" => {
            if a.len() < 2 {
                return Err("expects a separator and at least one list".into());
            }
            let sep = s(&a[0])?;
            let mut parts = Vec::new();
            for l in &a[1..] {
                for x in list(l)? {
                    parts.push(s(&x)?);
                }
            }
            Value::String(parts.join(&sep))
        }
        "lower" => Value::String(s(one_arg(a)?)?.to_lowercase()),
        "upper" => Value::String(s(one_arg(a)?)?.to_uppercase()),
        "title" => Value::String(
            s(one_arg(a)?)?
                .split(' ')
                .map(|w| {
                    let mut c = w.chars();
                    match c.next() {
                        Some(f) => f.to_uppercase().collect::<String>() + c.as_str(),
                        None => String::new(),
                    }
                })
                .collect::<Vec<_>>()
                .join(" "),
        ),
        "strrev" => Value::String(s(one_arg(a)?)?.chars().rev().collect()),
        "trimspace" => Value::String(s(one_arg(a)?)?.trim().to_string()),
        "trim" => {
            n_args(a, 2)?;
            let cut: Vec<char> = s(&a[1])?.chars().collect();
            Value::String(s(&a[0])?.trim_matches(|c| cut.contains(&c)).to_string())
        }
        "trimprefix" => {
            n_args(a, 2)?;
            let t = s(&a[0])?;
            let p = s(&a[1])?;
            Value::String(t.strip_prefix(p.as_str()).unwrap_or(&t).to_string())
        }
        "trimsuffix" => {
            n_args(a, 2)?;
            let t = s(&a[0])?;
            let p = s(&a[1])?;
            Value::String(t.strip_suffix(p.as_str()).unwrap_or(&t).to_string())
        }
        "startswith" => {
            n_args(a, 2)?;
            Value::Bool(s(&a[0])?.starts_with(&s(&a[1])?))
        }
        "endswith" => {
            n_args(a, 2)?;
            Value::Bool(s(&a[0])?.ends_with(&s(&a[1])?))
        }
        "replace" => {
            n_args(a, 3)?;
            let text = s(&a[0])?;
            let pat = s(&a[1])?;
            let rep = s(&a[2])?;
            if pat.len() > 2 && pat.starts_with('/') && pat.ends_with('/') {
                let re = regex::Regex::new(&pat[1..pat.len() - 1]).map_err(|e| e.to_string())?;
                Value::String(
                    re.replace_all(&text, rep.replace("$", "$$").replace("$$$$", "$").as_str())
                        .into_owned(),
                )
            } else {
                Value::String(text.replace(&pat, &rep))
            }
        }
        "split" => {
            n_args(a, 2)?;
            let sep = s(&a[0])?;
            let text = s(&a[1])?;
            if text.is_empty() {
                Value::List(vec![Value::string("")])
            } else {
                Value::List(text.split(sep.as_str()).map(Value::string).collect())
            }
        }
        "substr" => {
            n_args(a, 3)?;
            let chars: Vec<char> = s(&a[0])?.chars().collect();
            let mut off = int(&a[1])?;
            let len = int(&a[2])?;
            if off < 0 {
                off += chars.len() as i64;
            }
            let off = usize::try_from(off.max(0)).unwrap_or(0).min(chars.len());
            let end = if len < 0 {
                chars.len()
            } else {
                (off + usize::try_from(len).unwrap_or(0)).min(chars.len())
            };
            Value::String(chars[off..end].iter().collect())
        }
        "regex" | "regexall" => {
            n_args(a, 2)?;
            let re = regex::Regex::new(&s(&a[0])?)
                .map_err(|e| format!("invalid regular expression: {e}"))?;
            let text = s(&a[1])?;
            let capture = |c: regex::Captures<'_>| -> Value {
                let names: Vec<Option<&str>> = re.capture_names().skip(1).collect();
                if names.iter().any(Option::is_some) {
                    Value::Map(
                        names
                            .iter()
                            .enumerate()
                            .filter_map(|(i, n)| {
                                n.map(|n| {
                                    (
                                        n.to_string(),
                                        c.get(i + 1)
                                            .map(|m| Value::string(m.as_str()))
                                            .unwrap_or(Value::Null),
                                    )
                                })
                            })
                            .collect(),
                    )
                } else if c.len() > 1 {
                    Value::List(
                        (1..c.len())
                            .map(|i| {
                                c.get(i)
                                    .map(|m| Value::string(m.as_str()))
                                    .unwrap_or(Value::Null)
                            })
                            .collect(),
                    )
                } else {
                    Value::string(c.get(0).map(|m| m.as_str()).unwrap_or(""))
                }
            };
            if name == "regex" {
                let c = re
                    .captures(&text)
                    .ok_or("pattern did not match any part of the string")?;
                capture(c)
            } else {
                Value::List(re.captures_iter(&text).map(capture).collect())
            }
        }
        // collections
        "alltrue" => Value::Bool(
            list(one_arg(a)?)?
                .iter()
                .map(to_bool)
                .collect::<Result<Vec<_>, _>>()?
                .into_iter()
                .all(|b| b),
        ),
        "anytrue" => Value::Bool(
            list(one_arg(a)?)?
                .iter()
                .map(to_bool)
                .collect::<Result<Vec<_>, _>>()?
                .into_iter()
                .any(|b| b),
        ),
        "chunklist" => {
            n_args(a, 2)?;
            let items = list(&a[0])?;
            let size = usize::try_from(int(&a[1])?).map_err(|_| "size must not be negative")?;
            if size == 0 {
                Value::List(vec![Value::List(items)])
            } else {
                Value::List(
                    items
                        .chunks(size)
                        .map(|c| Value::List(c.to_vec()))
                        .collect(),
                )
            }
        }
        "coalescelist" => {
            for x in a {
                let l = list(x)?;
                if !l.is_empty() {
                    return Ok(Value::List(l));
                }
            }
            return Err("no non-empty list".into());
        }
        "compact" => Value::List(
            list(one_arg(a)?)?
                .into_iter()
                .filter(|x| !x.is_null() && x.as_str() != Some(""))
                .collect(),
        ),
        "concat" => {
            let mut out = Vec::new();
            for x in a {
                if x.is_unknown() {
                    return Ok(Value::Unknown);
                }
                out.extend(list(x)?);
            }
            Value::List(out)
        }
        "contains" => {
            n_args(a, 2)?;
            Value::Bool(list(&a[0])?.iter().any(|x| x.same(&a[1])))
        }
        "distinct" => {
            let mut out: Vec<Value> = Vec::new();
            for x in list(one_arg(a)?)? {
                if !out.iter().any(|o| o.same(&x)) {
                    out.push(x);
                }
            }
            Value::List(out)
        }
        "element" => {
            n_args(a, 2)?;
            let l = list(&a[0])?;
            if l.is_empty() {
                return Err("cannot use element() with an empty list".into());
            }
            let i = int(&a[1])?;
            l[usize::try_from(i.rem_euclid(l.len() as i64)).unwrap_or(0)].clone()
        }
        "flatten" => {
            fn flat(v: &Value, out: &mut Vec<Value>) {
                match v {
                    Value::List(x) | Value::Set(x) => x.iter().for_each(|i| flat(i, out)),
                    other => out.push(other.clone()),
                }
            }
            let mut out = Vec::new();
            for x in list(one_arg(a)?)? {
                flat(&x, &mut out);
            }
            Value::List(out)
        }
        "index" => {
            n_args(a, 2)?;
            let l = list(&a[0])?;
            let i = l
                .iter()
                .position(|x| x.same(&a[1]))
                .ok_or("item not found")?;
            Value::int(i as i64)
        }
        "keys" => Value::List(
            map(one_arg(a)?)?
                .keys()
                .map(|k| Value::string(k.clone()))
                .collect(),
        ),
        "values" => Value::List(map(one_arg(a)?)?.into_values().collect()),
        "length" => {
            let v = one_arg(a)?;
            Value::int(match v {
                Value::String(t) => t.chars().count(),
                Value::Map(m) => m.len(),
                Value::List(l) | Value::Set(l) => l.len(),
                other => return Err(format!("cannot take the length of a {}", other.kind())),
            } as i64)
        }
        "lookup" => {
            if a.len() < 2 || a.len() > 3 {
                return Err("expects 2 or 3 arguments".into());
            }
            let m = map(&a[0])?;
            match m.get(&s(&a[1])?) {
                Some(v) => v.clone(),
                None => a
                    .get(2)
                    .cloned()
                    .ok_or("the key is not in the map and no default was given")?,
            }
        }
        "merge" => {
            let mut out = BTreeMap::new();
            for x in a {
                if x.is_unknown() {
                    return Ok(Value::Unknown);
                }
                if x.is_null() {
                    continue;
                }
                out.extend(map(x)?);
            }
            Value::Map(out)
        }
        "one" => {
            let l = list(one_arg(a)?)?;
            match l.len() {
                0 => Value::Null,
                1 => l[0].clone(),
                n => return Err(format!("must be a list of zero or one element, got {n}")),
            }
        }
        "reverse" => Value::List(list(one_arg(a)?)?.into_iter().rev().collect()),
        "setintersection" | "setsubtract" | "setunion" => {
            if a.is_empty() {
                return Err("needs at least one set".into());
            }
            let mut acc = list(&a[0])?;
            for x in &a[1..] {
                let other = list(x)?;
                match name {
                    "setintersection" => acc.retain(|v| other.iter().any(|o| o.same(v))),
                    "setsubtract" => acc.retain(|v| !other.iter().any(|o| o.same(v))),
                    _ => {
                        for o in other {
                            if !acc.iter().any(|v| v.same(&o)) {
                                acc.push(o);
                            }
                        }
                    }
                }
            }
            let mut dedup: Vec<Value> = Vec::new();
            for v in acc {
                if !dedup.iter().any(|d| d.same(&v)) {
                    dedup.push(v);
                }
            }
            Value::Set(dedup)
        }
        "slice" => {
            n_args(a, 3)?;
            let l = list(&a[0])?;
            let from =
                usize::try_from(int(&a[1])?).map_err(|_| "start index must not be negative")?;
            let to = usize::try_from(int(&a[2])?).map_err(|_| "end index must not be negative")?;
            if from > to || to > l.len() {
                return Err(format!(
                    "indices {from}..{to} are out of range for {} elements",
                    l.len()
                ));
            }
            Value::List(l[from..to].to_vec())
        }
        "sort" => {
            let mut l: Vec<String> = list(one_arg(a)?)?.iter().map(s).collect::<Result<_, _>>()?;
            l.sort();
            Value::List(l.into_iter().map(Value::String).collect())
        }
        "transpose" => {
            let mut out: BTreeMap<String, Vec<Value>> = BTreeMap::new();
            for (k, v) in map(one_arg(a)?)? {
                for x in list(&v)? {
                    out.entry(s(&x)?)
                        .or_default()
                        .push(Value::string(k.clone()));
                }
            }
            Value::Map(out.into_iter().map(|(k, v)| (k, Value::List(v))).collect())
        }
        "zipmap" => {
            n_args(a, 2)?;
            let ks = list(&a[0])?;
            let vs = list(&a[1])?;
            if ks.len() != vs.len() {
                return Err("the keys and values lists must have the same length".into());
            }
            Value::Map(
                ks.iter()
                    .map(s)
                    .collect::<Result<Vec<_>, _>>()?
                    .into_iter()
                    .zip(vs)
                    .collect(),
            )
        }
        // encoding
        "base64encode" => {
            Value::String(base64::engine::general_purpose::STANDARD.encode(s(one_arg(a)?)?))
        }
        "base64decode" => {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(s(one_arg(a)?)?)
                .map_err(|e| format!("invalid base64: {e}"))?;
            Value::String(String::from_utf8(bytes).map_err(|_| "the decoded bytes are not UTF-8")?)
        }
        "jsonencode" => Value::String(plumb_tfplugin::value::to_json(one_arg(a)?).to_string()),
        "jsondecode" => {
            let j: serde_json::Value =
                serde_json::from_str(&s(one_arg(a)?)?).map_err(|e| format!("invalid JSON: {e}"))?;
            plumb_tfplugin::value::untyped_from_json(&j)
        }
        "urlencode" => {
            let t = s(one_arg(a)?)?;
            let mut out = String::new();
            for b in t.bytes() {
                if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                    out.push(b as char);
                } else {
                    out.push_str(&format!("%{b:02X}"));
                }
            }
            Value::String(out)
        }
        // hashing
        "md5" | "sha1" | "sha256" | "sha512" | "base64sha256" | "base64sha512" => {
            Value::String(digest(name, s(one_arg(a)?)?.as_bytes()))
        }
        "yamlencode" => {
            let j = plumb_tfplugin::value::to_json(one_arg(a)?);
            Value::String(
                serde_saphyr::to_string(&j).map_err(|e| format!("cannot encode as YAML: {e}"))?,
            )
        }
        "formatdate" => {
            n_args(a, 2)?;
            Value::String(crate::timefmt::formatdate(&s(&a[0])?, &s(&a[1])?)?)
        }
        "timeadd" => {
            n_args(a, 2)?;
            Value::String(crate::timefmt::timeadd(&s(&a[0])?, &s(&a[1])?)?)
        }
        "cidrhost" => {
            n_args(a, 2)?;
            Value::String(crate::cidr::host(&s(&a[0])?, int(&a[1])?)?)
        }
        "cidrnetmask" => Value::String(crate::cidr::netmask(&s(one_arg(a)?)?)?),
        "cidrsubnet" => {
            n_args(a, 3)?;
            Value::String(crate::cidr::subnet(&s(&a[0])?, int(&a[1])?, int(&a[2])?)?)
        }
        "cidrsubnets" => {
            let (prefix, bits) = a.split_first().ok_or("expects a prefix and new bits")?;
            let bits = bits.iter().map(int).collect::<Result<Vec<_>, _>>()?;
            Value::List(
                crate::cidr::subnets(&s(prefix)?, &bits)?
                    .into_iter()
                    .map(Value::String)
                    .collect(),
            )
        }
        "uuid" => Value::String(plumb_state::new_id()),
        "timestamp" => Value::String(plumb_state::now_rfc3339()),
        // files
        "file" | "filebase64" | "filemd5" | "filesha1" | "filesha256" | "filesha512"
        | "filebase64sha256" | "filebase64sha512" => {
            let p = resolve(dir, &s(one_arg(a)?)?);
            let bytes =
                std::fs::read(&p).map_err(|e| format!("cannot read {}: {e}", p.display()))?;
            match name {
                "file" => Value::String(
                    String::from_utf8(bytes)
                        .map_err(|_| "the file is not UTF-8; use filebase64")?,
                ),
                "filebase64" => {
                    Value::String(base64::engine::general_purpose::STANDARD.encode(bytes))
                }
                _ => Value::String(digest(&name["file".len()..], &bytes)),
            }
        }
        "fileexists" => Value::Bool(resolve(dir, &s(one_arg(a)?)?).is_file()),
        "templatefile" => {
            n_args(a, 2)?;
            let p = resolve(dir, &s(&a[0])?);
            let text = std::fs::read_to_string(&p)
                .map_err(|e| format!("cannot read {}: {e}", p.display()))?;
            let vars = map(&a[1])?;
            render_template_file(&text, vars, dir)?
        }
        "abspath" => Value::String(resolve(dir, &s(one_arg(a)?)?).display().to_string()),
        "basename" => Value::String(
            Path::new(&s(one_arg(a)?)?)
                .file_name()
                .map(|f| f.to_string_lossy().into_owned())
                .unwrap_or_default(),
        ),
        "dirname" => {
            let t = s(one_arg(a)?)?;
            let d = Path::new(&t)
                .parent()
                .map(|p| p.display().to_string())
                .unwrap_or_default();
            Value::String(if d.is_empty() { ".".into() } else { d })
        }
        "pathexpand" => {
            let t = s(one_arg(a)?)?;
            Value::String(match (t.strip_prefix("~/"), std::env::var("HOME")) {
                (Some(rest), Ok(home)) => format!("{home}/{rest}"),
                _ => t,
            })
        }
        // types
        "tostring" => match one_arg(a)? {
            Value::Null => Value::Null,
            v => Value::String(s(v)?),
        },
        "tonumber" => match one_arg(a)? {
            Value::Null => Value::Null,
            v => Value::Number(to_number(v)?),
        },
        "tobool" => match one_arg(a)? {
            Value::Null => Value::Null,
            v => Value::Bool(to_bool(v)?),
        },
        "tolist" => {
            convert(one_arg(a)?, &Type::List(Box::new(Type::Dynamic))).map_err(|e| e.to_string())?
        }
        "toset" => {
            convert(one_arg(a)?, &Type::Set(Box::new(Type::Dynamic))).map_err(|e| e.to_string())?
        }
        "tomap" => {
            convert(one_arg(a)?, &Type::Map(Box::new(Type::Dynamic))).map_err(|e| e.to_string())?
        }
        other => {
            return Err(format!(
                "there is no function named {other:?} (plumb implements: {})",
                NAMES.join(", ")
            ));
        }
    })
}

fn one_arg(a: &[Value]) -> Result<&Value, String> {
    n_args(a, 1)?;
    Ok(&a[0])
}

/// `md5`, `sha1`, `sha256`, `sha512` (hex) and `base64sha256`,
/// `base64sha512` of `bytes`; the `file*` variants call it on a file's bytes.
fn digest(name: &str, bytes: &[u8]) -> String {
    let b64 = |d: &[u8]| base64::engine::general_purpose::STANDARD.encode(d);
    match name {
        "md5" => hex(&md5::Md5::digest(bytes)),
        "sha1" => hex(&sha1::Sha1::digest(bytes)),
        "sha256" => hex(&sha2::Sha256::digest(bytes)),
        "base64sha256" => b64(&sha2::Sha256::digest(bytes)),
        "base64sha512" => b64(&sha2::Sha512::digest(bytes)),
        _ => hex(&sha2::Sha512::digest(bytes)),
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn resolve(dir: &Path, p: &str) -> std::path::PathBuf {
    let path = Path::new(p);
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        dir.join(path)
    }
}

/// `format()`'s verbs: %s %d %f %v %q %t %%, with widths and precision.
fn format_spec(fmt: &str, args: &[Value]) -> Result<String, String> {
    let mut out = String::new();
    let mut chars = fmt.chars().peekable();
    let mut next = 0usize;
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let mut spec = String::new();
        while let Some(&d) = chars.peek() {
            if d.is_ascii_digit() || d == '.' || d == '-' || d == '+' || d == '#' || d == ' ' {
                spec.push(d);
                chars.next();
            } else {
                break;
            }
        }
        let verb = chars
            .next()
            .ok_or("format string ends in the middle of a verb")?;
        if verb == '%' {
            out.push('%');
            continue;
        }
        let arg = args
            .get(next)
            .ok_or("not enough arguments for the format string")?;
        next += 1;
        let (width, prec) = match spec
            .trim_start_matches(['-', '+', '#', ' '])
            .split_once('.')
        {
            Some((w, p)) => (w.parse::<usize>().ok(), p.parse::<usize>().ok()),
            None => (
                spec.trim_start_matches(['-', '+', '#', ' '])
                    .parse::<usize>()
                    .ok(),
                None,
            ),
        };
        let body = match verb {
            's' | 'v' => match arg {
                Value::String(_) | Value::Number(_) | Value::Bool(_) => s(arg)?,
                other => plumb_tfplugin::value::to_json(other).to_string(),
            },
            'q' => serde_json::to_string(&s(arg)?).map_err(|e| e.to_string())?,
            'd' => to_number(arg)?
                .to_i64()
                .ok_or("%d needs a whole number")?
                .to_string(),
            'f' => format!("{:.*}", prec.unwrap_or(6), to_number(arg)?.to_f64()),
            't' => to_bool(arg)?.to_string(),
            other => return Err(format!("unsupported format verb %{other}")),
        };
        match width {
            Some(w) if body.chars().count() < w => {
                let pad = " ".repeat(w - body.chars().count());
                if spec.starts_with('-') {
                    out.push_str(&body);
                    out.push_str(&pad);
                } else {
                    out.push_str(&pad);
                    out.push_str(&body);
                }
            }
            _ => out.push_str(&body),
        }
    }
    Ok(out)
}

struct VarsScope {
    vars: BTreeMap<String, Value>,
    dir: std::path::PathBuf,
}

impl crate::eval::Scope for VarsScope {
    fn resolve(
        &self,
        root: &str,
        _steps: &[crate::eval::Step],
    ) -> Result<Option<(Value, usize)>, String> {
        Ok(self.vars.get(root).map(|v| (v.clone(), 0)))
    }
    fn module_dir(&self) -> &Path {
        &self.dir
    }
}

fn render_template_file(text: &str, vars: BTreeMap<String, Value>, dir: &Path) -> R {
    let wrapped = format!("<<PLUMBTEMPLATEEOF\n{text}\nPLUMBTEMPLATEEOF\n");
    let expr =
        hcl_edit::parser::parse_expr(&wrapped).map_err(|e| format!("template: {}", e.message()))?;
    let scope = VarsScope {
        vars,
        dir: dir.to_path_buf(),
    };
    let mut ev = crate::eval::Evaluator::new(&scope, &wrapped);
    let v = ev.eval(&expr).map_err(|e| e.message)?;
    // The heredoc adds a trailing newline the file may not have.
    Ok(match v {
        Value::String(t) if !text.ends_with('\n') => {
            Value::String(t.strip_suffix('\n').unwrap_or(&t).to_string())
        }
        other => other,
    })
}

/// Keeps `iterate` in use for future collection functions.
#[allow(dead_code)]
fn pairs(v: &Value) -> Result<Vec<(Value, Value)>, String> {
    iterate(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(name: &str, args: Vec<Value>) -> Value {
        call(name, args, Path::new(".")).unwrap()
    }

    #[test]
    fn covers_at_least_forty_functions() {
        assert!(NAMES.len() >= 40);
        for n in NAMES {
            if matches!(*n, "try" | "can") {
                continue;
            }
            let err = call(n, vec![], Path::new(".")).err().unwrap_or_default();
            assert!(
                !err.contains("there is no function"),
                "{n} is listed but missing"
            );
        }
    }

    #[test]
    fn hashes_encodings_and_network_functions() {
        let hw = || vec![Value::string("hello world")];
        assert_eq!(
            c("sha1", hw()),
            Value::string("2aae6c35c94fcfb415dbe95f408b9ce91ee846ed")
        );
        assert!(
            c("sha512", hw())
                .as_str()
                .unwrap()
                .starts_with("309ecc489c12d6eb4cc40f50c902f2b4d0ed77ee")
        );
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("f.txt"), "hello world").unwrap();
        let f = |name: &str| call(name, vec![Value::string("f.txt")], dir.path()).unwrap();
        assert_eq!(f("filesha1"), c("sha1", hw()));
        assert_eq!(f("filemd5"), c("md5", hw()));
        assert_eq!(f("filebase64sha256"), c("base64sha256", hw()));
        assert_eq!(f("filebase64sha512"), c("base64sha512", hw()));
        let doc = Value::Map(
            [
                ("name".to_string(), Value::string("web")),
                (
                    "ports".to_string(),
                    Value::List(vec![Value::int(80), Value::int(443)]),
                ),
            ]
            .into_iter()
            .collect(),
        );
        let yaml = c("yamlencode", vec![doc]);
        let back: serde_json::Value = serde_saphyr::from_str(yaml.as_str().unwrap()).unwrap();
        assert_eq!(back, serde_json::json!({"name": "web", "ports": [80, 443]}));
        assert_eq!(
            c(
                "cidrsubnets",
                vec![Value::string("10.1.0.0/16"), Value::int(4), Value::int(8)]
            ),
            Value::List(vec![
                Value::string("10.1.0.0/20"),
                Value::string("10.1.16.0/24")
            ])
        );
        assert_eq!(
            c(
                "formatdate",
                vec![
                    Value::string("YYYY-MM-DD"),
                    Value::string("2018-01-02T23:12:01Z")
                ]
            ),
            Value::string("2018-01-02")
        );
        // An unknown argument makes the result unknown, not an error.
        assert_eq!(
            c("cidrhost", vec![Value::Unknown, Value::int(1)]),
            Value::Unknown
        );
    }

    #[test]
    fn string_functions() {
        assert_eq!(c("upper", vec![Value::string("ab")]), Value::string("AB"));
        assert_eq!(
            c(
                "format",
                vec![Value::string("%s-%03d"), Value::string("x"), Value::int(7)]
            ),
            Value::string("x-  7")
        );
        assert_eq!(
            c(
                "join",
                vec![
                    Value::string(","),
                    Value::List(vec![Value::string("a"), Value::string("b")])
                ]
            ),
            Value::string("a,b")
        );
        assert_eq!(
            c(
                "replace",
                vec![
                    Value::string("a-b-c"),
                    Value::string("/-/"),
                    Value::string("_")
                ]
            ),
            Value::string("a_b_c")
        );
        assert_eq!(
            c(
                "substr",
                vec![Value::string("hello"), Value::int(1), Value::int(3)]
            ),
            Value::string("ell")
        );
    }

    #[test]
    fn unknown_and_sensitive_propagate() {
        assert_eq!(c("upper", vec![Value::Unknown]), Value::Unknown);
        assert!(c("upper", vec![Value::string("x").mark_sensitive()]).is_sensitive());
        assert_eq!(
            c(
                "length",
                vec![Value::List(vec![Value::Unknown, Value::Unknown])]
            ),
            Value::int(2)
        );
    }

    #[test]
    fn collection_functions() {
        let l = Value::List(vec![Value::int(3), Value::int(1), Value::int(3)]);
        assert_eq!(
            c("distinct", vec![l.clone()]),
            Value::List(vec![Value::int(3), Value::int(1)])
        );
        assert_eq!(c("sum", vec![l.clone()]), Value::int(7));
        assert_eq!(c("max", vec![Value::int(1), Value::int(9)]), Value::int(9));
        let m = c(
            "zipmap",
            vec![
                Value::List(vec![Value::string("a")]),
                Value::List(vec![Value::int(1)]),
            ],
        );
        assert_eq!(c("keys", vec![m]), Value::List(vec![Value::string("a")]));
        assert_eq!(
            c("range", vec![Value::int(3)]),
            Value::List(vec![Value::int(0), Value::int(1), Value::int(2)])
        );
    }
}
