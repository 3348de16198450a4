//! String functions: case, trimming, splitting and joining, `format` and
//! `formatlist`, substrings and regular expressions.
//!
//! Lengths and offsets count characters, not bytes, as the language does;
//! `format` implements the verbs configuration uses (`%s %d %f %v %q %t %%`
//! with widths and precision), not all of Go's.

use plumb_tfplugin::Value;

use super::builtin::{
    CallContext, Function, FunctionError, arity, elements, functions, only, text, whole,
};
use crate::coerce::{to_bool, to_number};

/// The string functions.
pub const FUNCTIONS: &[Function] = functions![
    chomp, endswith, format, formatlist, indent, join, lower, regex, regexall, replace, split,
    startswith, strrev, substr, title, trim, trimprefix, trimspace, trimsuffix, upper
];

fn chomp(args: &[Value], _: &CallContext<'_>) -> Result<Value, FunctionError> {
    let t = text(only(args)?)?;
    Ok(Value::String(t.trim_end_matches(['\n', '\r']).to_string()))
}

fn endswith(args: &[Value], _: &CallContext<'_>) -> Result<Value, FunctionError> {
    arity(args, 2)?;
    Ok(Value::Bool(text(&args[0])?.ends_with(&text(&args[1])?)))
}

fn startswith(args: &[Value], _: &CallContext<'_>) -> Result<Value, FunctionError> {
    arity(args, 2)?;
    Ok(Value::Bool(text(&args[0])?.starts_with(&text(&args[1])?)))
}

fn format(args: &[Value], _: &CallContext<'_>) -> Result<Value, FunctionError> {
    let Some((spec, rest)) = args.split_first() else {
        return Err("needs a format string".into());
    };
    Ok(Value::String(format_values(&text(spec)?, rest)?))
}

/// One `format` per row: list arguments give each row their element,
/// other arguments repeat.
fn formatlist(args: &[Value], _: &CallContext<'_>) -> Result<Value, FunctionError> {
    let Some((spec, rest)) = args.split_first() else {
        return Err("needs a format string".into());
    };
    let spec = text(spec)?;
    let rows = rest
        .iter()
        .filter_map(|x| match x {
            Value::List(l) | Value::Set(l) => Some(l.len()),
            _ => None,
        })
        .max()
        .unwrap_or(1);
    let mut out = Vec::new();
    for i in 0..rows {
        let row: Vec<Value> = rest
            .iter()
            .map(|x| match x {
                Value::List(l) | Value::Set(l) => l.get(i).cloned().unwrap_or(Value::Null),
                other => other.clone(),
            })
            .collect();
        out.push(Value::String(format_values(&spec, &row)?));
    }
    Ok(Value::List(out))
}

fn indent(args: &[Value], _: &CallContext<'_>) -> Result<Value, FunctionError> {
    arity(args, 2)?;
    let pad = " ".repeat(usize::try_from(whole(&args[0])?).unwrap_or(0));
    let lines = text(&args[1])?;
    let mut out = String::new();
    for (i, line) in lines.split('\n').enumerate() {
        if i > 0 {
            out.push('\n');
            if !line.is_empty() {
                out.push_str(&pad);
            }
        }
        out.push_str(line);
    }
    Ok(Value::String(out))
}

fn join(args: &[Value], _: &CallContext<'_>) -> Result<Value, FunctionError> {
    if args.len() < 2 {
        return Err("expects a separator and at least one list".into());
    }
    let separator = text(&args[0])?;
    let mut parts = Vec::new();
    for list in &args[1..] {
        for x in elements(list)? {
            parts.push(text(&x)?);
        }
    }
    Ok(Value::String(parts.join(&separator)))
}

fn lower(args: &[Value], _: &CallContext<'_>) -> Result<Value, FunctionError> {
    Ok(Value::String(text(only(args)?)?.to_lowercase()))
}

fn upper(args: &[Value], _: &CallContext<'_>) -> Result<Value, FunctionError> {
    Ok(Value::String(text(only(args)?)?.to_uppercase()))
}

fn title(args: &[Value], _: &CallContext<'_>) -> Result<Value, FunctionError> {
    let words: Vec<String> = text(only(args)?)?
        .split(' ')
        .map(|word| {
            let mut chars = word.chars();
            match chars.next() {
                Some(first) => first.to_uppercase().collect::<String>() + chars.as_str(),
                None => String::new(),
            }
        })
        .collect();
    Ok(Value::String(words.join(" ")))
}

fn strrev(args: &[Value], _: &CallContext<'_>) -> Result<Value, FunctionError> {
    Ok(Value::String(text(only(args)?)?.chars().rev().collect()))
}

fn trimspace(args: &[Value], _: &CallContext<'_>) -> Result<Value, FunctionError> {
    Ok(Value::String(text(only(args)?)?.trim().to_string()))
}

fn trim(args: &[Value], _: &CallContext<'_>) -> Result<Value, FunctionError> {
    arity(args, 2)?;
    let cut: Vec<char> = text(&args[1])?.chars().collect();
    Ok(Value::String(
        text(&args[0])?
            .trim_matches(|c| cut.contains(&c))
            .to_string(),
    ))
}

/// The text (first argument) without the second where `strip` finds it, and
/// unchanged where it does not.
fn trim_affix(
    args: &[Value],
    strip: for<'t> fn(&'t str, &str) -> Option<&'t str>,
) -> Result<Value, FunctionError> {
    arity(args, 2)?;
    let t = text(&args[0])?;
    let affix = text(&args[1])?;
    Ok(Value::String(strip(&t, &affix).unwrap_or(&t).to_string()))
}

fn trimprefix(args: &[Value], _: &CallContext<'_>) -> Result<Value, FunctionError> {
    trim_affix(args, |t, prefix| t.strip_prefix(prefix))
}

fn trimsuffix(args: &[Value], _: &CallContext<'_>) -> Result<Value, FunctionError> {
    trim_affix(args, |t, suffix| t.strip_suffix(suffix))
}

/// `replace(text, search, replacement)`; a search written `/like this/` is
/// a regular expression, and `$1` in the replacement names its groups.
fn replace(args: &[Value], _: &CallContext<'_>) -> Result<Value, FunctionError> {
    arity(args, 3)?;
    let haystack = text(&args[0])?;
    let search = text(&args[1])?;
    let replacement = text(&args[2])?;
    if search.len() > 2 && search.starts_with('/') && search.ends_with('/') {
        let re = regex::Regex::new(&search[1..search.len() - 1])
            .map_err(FunctionError::ReplacePattern)?;
        let expansion = replacement.replace("$", "$$").replace("$$$$", "$");
        Ok(Value::String(
            re.replace_all(&haystack, expansion.as_str()).into_owned(),
        ))
    } else {
        Ok(Value::String(haystack.replace(&search, &replacement)))
    }
}

fn split(args: &[Value], _: &CallContext<'_>) -> Result<Value, FunctionError> {
    arity(args, 2)?;
    let separator = text(&args[0])?;
    let t = text(&args[1])?;
    Ok(if t.is_empty() {
        Value::List(vec![Value::string("")])
    } else {
        Value::List(t.split(separator.as_str()).map(Value::string).collect())
    })
}

/// `substr(text, offset, length)`: a negative offset counts from the end, a
/// negative length takes the rest.
fn substr(args: &[Value], _: &CallContext<'_>) -> Result<Value, FunctionError> {
    arity(args, 3)?;
    let chars: Vec<char> = text(&args[0])?.chars().collect();
    let mut offset = whole(&args[1])?;
    let length = whole(&args[2])?;
    if offset < 0 {
        offset += chars.len() as i64;
    }
    let start = usize::try_from(offset.max(0)).unwrap_or(0).min(chars.len());
    let end = if length < 0 {
        chars.len()
    } else {
        (start + usize::try_from(length).unwrap_or(0)).min(chars.len())
    };
    Ok(Value::String(chars[start..end].iter().collect()))
}

/// The pattern and text of `regex()` and `regexall()`.
fn pattern_and_text(args: &[Value]) -> Result<(regex::Regex, String), FunctionError> {
    arity(args, 2)?;
    let re = regex::Regex::new(&text(&args[0])?).map_err(FunctionError::Regex)?;
    Ok((re, text(&args[1])?))
}

/// One match: a map of named groups, a list of numbered groups, or the
/// matched text when the pattern has no groups.
fn captured(re: &regex::Regex, captures: regex::Captures<'_>) -> Value {
    let group = |i: usize| {
        captures
            .get(i)
            .map(|m| Value::string(m.as_str()))
            .unwrap_or(Value::Null)
    };
    let names: Vec<Option<&str>> = re.capture_names().skip(1).collect();
    if names.iter().any(Option::is_some) {
        Value::Map(
            names
                .iter()
                .enumerate()
                .filter_map(|(i, n)| n.map(|n| (n.to_string(), group(i + 1))))
                .collect(),
        )
    } else if captures.len() > 1 {
        Value::List((1..captures.len()).map(group).collect())
    } else {
        Value::string(captures.get(0).map(|m| m.as_str()).unwrap_or(""))
    }
}

fn regex(args: &[Value], _: &CallContext<'_>) -> Result<Value, FunctionError> {
    let (re, haystack) = pattern_and_text(args)?;
    let captures = re
        .captures(&haystack)
        .ok_or("pattern did not match any part of the string")?;
    Ok(captured(&re, captures))
}

fn regexall(args: &[Value], _: &CallContext<'_>) -> Result<Value, FunctionError> {
    let (re, haystack) = pattern_and_text(args)?;
    Ok(Value::List(
        re.captures_iter(&haystack)
            .map(|c| captured(&re, c))
            .collect(),
    ))
}

/// `format()`'s verbs: %s %d %f %v %q %t %%, with widths and precision.
fn format_values(spec: &str, args: &[Value]) -> Result<String, FunctionError> {
    let mut out = String::new();
    let mut chars = spec.chars().peekable();
    let mut next = 0usize;
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let mut flags = String::new();
        while let Some(&d) = chars.peek() {
            if d.is_ascii_digit() || d == '.' || d == '-' || d == '+' || d == '#' || d == ' ' {
                flags.push(d);
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
        let sizes = flags.trim_start_matches(['-', '+', '#', ' ']);
        let (width, precision) = match sizes.split_once('.') {
            Some((w, p)) => (w.parse::<usize>().ok(), p.parse::<usize>().ok()),
            None => (sizes.parse::<usize>().ok(), None),
        };
        let body = match verb {
            's' | 'v' => match arg {
                Value::String(_) | Value::Number(_) | Value::Bool(_) => text(arg)?,
                other => plumb_tfplugin::value::to_json(other).to_string(),
            },
            'q' => serde_json::to_string(&text(arg)?).map_err(FunctionError::JsonEncode)?,
            'd' => to_number(arg)?
                .to_i64()
                .ok_or("%d needs a whole number")?
                .to_string(),
            'f' => format!("{:.*}", precision.unwrap_or(6), to_number(arg)?.to_f64()),
            't' => to_bool(arg)?.to_string(),
            other => return Err(format!("unsupported format verb %{other}").into()),
        };
        match width {
            Some(w) if body.chars().count() < w => {
                let pad = " ".repeat(w - body.chars().count());
                if flags.starts_with('-') {
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
