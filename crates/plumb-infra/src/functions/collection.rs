//! Collection functions: lists, sets, maps and the values in them
//! (`concat`, `merge`, `lookup`, `zipmap`, `setunion`, `range`, `sum` ...).
//!
//! Elements are compared with [`Value::same`], the language's equality, so
//! `distinct` and the set functions treat `1` and `1.0` alike. `length`,
//! `coalesce`, `concat` and `merge` see unknown arguments themselves: the
//! length of a list of unknowns is known, and a concatenation is unknown
//! only when a whole list is.

use std::collections::BTreeMap;

use plumb_tfplugin::value::BigDecimal;
use plumb_tfplugin::{Number, Value};

use super::builtin::{
    CallContext, Function, FunctionError, arity, elements, entries, functions, number, only, text,
    whole, with_known_arguments,
};
use crate::coerce::{to_bool, to_number};

/// The collection functions.
pub const FUNCTIONS: &[Function] = functions![
    alltrue,
    anytrue,
    chunklist,
    as_given coalesce,
    coalescelist,
    compact,
    maybe_unknown concat,
    contains,
    distinct,
    element,
    flatten,
    index,
    keys,
    as_given length,
    lookup,
    maybe_unknown merge,
    one,
    range,
    reverse,
    setintersection,
    setsubtract,
    setunion,
    slice,
    sort,
    sum,
    transpose,
    values,
    zipmap,
];

/// The elements of a list of bools.
fn bools(v: &Value) -> Result<Vec<bool>, FunctionError> {
    Ok(elements(v)?
        .iter()
        .map(to_bool)
        .collect::<Result<Vec<_>, _>>()?)
}

fn alltrue(args: &[Value], _: &CallContext<'_>) -> Result<Value, FunctionError> {
    Ok(Value::Bool(bools(only(args)?)?.into_iter().all(|b| b)))
}

fn anytrue(args: &[Value], _: &CallContext<'_>) -> Result<Value, FunctionError> {
    Ok(Value::Bool(bools(only(args)?)?.into_iter().any(|b| b)))
}

fn chunklist(args: &[Value], _: &CallContext<'_>) -> Result<Value, FunctionError> {
    arity(args, 2)?;
    let items = elements(&args[0])?;
    let size = usize::try_from(whole(&args[1])?).map_err(|_| "size must not be negative")?;
    Ok(if size == 0 {
        Value::List(vec![Value::List(items)])
    } else {
        Value::List(
            items
                .chunks(size)
                .map(|chunk| Value::List(chunk.to_vec()))
                .collect(),
        )
    })
}

/// The first argument that is neither null nor an empty string; unknown as
/// soon as an unknown one comes before it.
fn coalesce(args: &[Value], _: &CallContext<'_>) -> Result<Value, FunctionError> {
    for a in args {
        if a.is_unknown() {
            return Ok(Value::Unknown);
        }
        if !a.is_null() && a.as_str() != Some("") {
            return Ok(a.clone());
        }
    }
    Err("no non-null, non-empty argument".into())
}

fn coalescelist(args: &[Value], _: &CallContext<'_>) -> Result<Value, FunctionError> {
    for a in args {
        let items = elements(a)?;
        if !items.is_empty() {
            return Ok(Value::List(items));
        }
    }
    Err("no non-empty list".into())
}

fn compact(args: &[Value], _: &CallContext<'_>) -> Result<Value, FunctionError> {
    Ok(Value::List(
        elements(only(args)?)?
            .into_iter()
            .filter(|x| !x.is_null() && x.as_str() != Some(""))
            .collect(),
    ))
}

fn concat(args: &[Value], _: &CallContext<'_>) -> Result<Value, FunctionError> {
    let mut out = Vec::new();
    for a in args {
        if a.is_unknown() {
            return Ok(Value::Unknown);
        }
        out.extend(elements(a)?);
    }
    Ok(Value::List(out))
}

fn contains(args: &[Value], _: &CallContext<'_>) -> Result<Value, FunctionError> {
    arity(args, 2)?;
    Ok(Value::Bool(
        elements(&args[0])?.iter().any(|x| x.same(&args[1])),
    ))
}

/// `items` without repeats, first occurrence first.
fn dedup(items: Vec<Value>) -> Vec<Value> {
    let mut out: Vec<Value> = Vec::new();
    for x in items {
        if !out.iter().any(|o| o.same(&x)) {
            out.push(x);
        }
    }
    out
}

fn distinct(args: &[Value], _: &CallContext<'_>) -> Result<Value, FunctionError> {
    Ok(Value::List(dedup(elements(only(args)?)?)))
}

fn element(args: &[Value], _: &CallContext<'_>) -> Result<Value, FunctionError> {
    arity(args, 2)?;
    let items = elements(&args[0])?;
    if items.is_empty() {
        return Err("cannot use element() with an empty list".into());
    }
    let i = whole(&args[1])?;
    Ok(items[usize::try_from(i.rem_euclid(items.len() as i64)).unwrap_or(0)].clone())
}

fn flatten(args: &[Value], _: &CallContext<'_>) -> Result<Value, FunctionError> {
    fn flat(v: &Value, out: &mut Vec<Value>) {
        match v {
            Value::List(x) | Value::Set(x) => x.iter().for_each(|i| flat(i, out)),
            other => out.push(other.clone()),
        }
    }
    let mut out = Vec::new();
    for x in elements(only(args)?)? {
        flat(&x, &mut out);
    }
    Ok(Value::List(out))
}

fn index(args: &[Value], _: &CallContext<'_>) -> Result<Value, FunctionError> {
    arity(args, 2)?;
    let i = elements(&args[0])?
        .iter()
        .position(|x| x.same(&args[1]))
        .ok_or("item not found")?;
    Ok(Value::int(i as i64))
}

fn keys(args: &[Value], _: &CallContext<'_>) -> Result<Value, FunctionError> {
    Ok(Value::List(
        entries(only(args)?)?
            .keys()
            .map(|k| Value::string(k.clone()))
            .collect(),
    ))
}

fn values(args: &[Value], _: &CallContext<'_>) -> Result<Value, FunctionError> {
    Ok(Value::List(entries(only(args)?)?.into_values().collect()))
}

/// The length of a list or set is known even when its elements are not;
/// anything else goes the usual way.
fn length(args: &[Value], context: &CallContext<'_>) -> Result<Value, FunctionError> {
    if let [arg] = args
        && let Value::List(items) | Value::Set(items) = arg.unmarked()
    {
        return Ok(Value::int(items.len() as i64).with_marks_of(arg));
    }
    with_known_arguments(args, context, length_of)
}

fn length_of(args: &[Value], _: &CallContext<'_>) -> Result<Value, FunctionError> {
    let n = match only(args)? {
        Value::String(t) => t.chars().count(),
        Value::Map(m) => m.len(),
        Value::List(l) | Value::Set(l) => l.len(),
        other => return Err(format!("cannot take the length of a {}", other.kind()).into()),
    };
    Ok(Value::int(n as i64))
}

fn lookup(args: &[Value], _: &CallContext<'_>) -> Result<Value, FunctionError> {
    if args.len() < 2 || args.len() > 3 {
        return Err("expects 2 or 3 arguments".into());
    }
    let map = entries(&args[0])?;
    match map.get(&text(&args[1])?) {
        Some(v) => Ok(v.clone()),
        None => Ok(args
            .get(2)
            .cloned()
            .ok_or("the key is not in the map and no default was given")?),
    }
}

fn merge(args: &[Value], _: &CallContext<'_>) -> Result<Value, FunctionError> {
    let mut out = BTreeMap::new();
    for a in args {
        if a.is_unknown() {
            return Ok(Value::Unknown);
        }
        if a.is_null() {
            continue;
        }
        out.extend(entries(a)?);
    }
    Ok(Value::Map(out))
}

fn one(args: &[Value], _: &CallContext<'_>) -> Result<Value, FunctionError> {
    let items = elements(only(args)?)?;
    match items.len() {
        0 => Ok(Value::Null),
        1 => Ok(items[0].clone()),
        n => Err(format!("must be a list of zero or one element, got {n}").into()),
    }
}

fn range(args: &[Value], _: &CallContext<'_>) -> Result<Value, FunctionError> {
    let bounds: Vec<f64> = args
        .iter()
        .map(|x| to_number(x).map(|n| n.to_f64()))
        .collect::<Result<_, _>>()?;
    let (start, end, step) = match bounds.as_slice() {
        [end] => (0.0, *end, 1.0),
        [start, end] => (*start, *end, if start <= end { 1.0 } else { -1.0 }),
        [start, end, step] => (*start, *end, *step),
        _ => return Err("expects 1 to 3 arguments".into()),
    };
    if step == 0.0 {
        return Err("step must not be zero".into());
    }
    let mut out = Vec::new();
    let mut x = start;
    while (step > 0.0 && x < end) || (step < 0.0 && x > end) {
        out.push(Value::Number(Number::from_f64(x).ok_or("bad number")?));
        x += step;
        if out.len() > 1_000_000 {
            return Err("more than 1 000 000 elements".into());
        }
    }
    Ok(Value::List(out))
}

fn reverse(args: &[Value], _: &CallContext<'_>) -> Result<Value, FunctionError> {
    Ok(Value::List(
        elements(only(args)?)?.into_iter().rev().collect(),
    ))
}

/// Folds the sets in `args` into the first with `combine`, without repeats.
fn set_operation(
    args: &[Value],
    combine: fn(&mut Vec<Value>, Vec<Value>),
) -> Result<Value, FunctionError> {
    let Some((first, rest)) = args.split_first() else {
        return Err("needs at least one set".into());
    };
    let mut acc = elements(first)?;
    for x in rest {
        combine(&mut acc, elements(x)?);
    }
    Ok(Value::Set(dedup(acc)))
}

fn setintersection(args: &[Value], _: &CallContext<'_>) -> Result<Value, FunctionError> {
    set_operation(args, |acc, other| {
        acc.retain(|v| other.iter().any(|o| o.same(v)))
    })
}

fn setsubtract(args: &[Value], _: &CallContext<'_>) -> Result<Value, FunctionError> {
    set_operation(args, |acc, other| {
        acc.retain(|v| !other.iter().any(|o| o.same(v)))
    })
}

fn setunion(args: &[Value], _: &CallContext<'_>) -> Result<Value, FunctionError> {
    set_operation(args, |acc, other| {
        for o in other {
            if !acc.iter().any(|v| v.same(&o)) {
                acc.push(o);
            }
        }
    })
}

fn slice(args: &[Value], _: &CallContext<'_>) -> Result<Value, FunctionError> {
    arity(args, 3)?;
    let items = elements(&args[0])?;
    let from = usize::try_from(whole(&args[1])?).map_err(|_| "start index must not be negative")?;
    let to = usize::try_from(whole(&args[2])?).map_err(|_| "end index must not be negative")?;
    if from > to || to > items.len() {
        return Err(format!(
            "indices {from}..{to} are out of range for {} elements",
            items.len()
        )
        .into());
    }
    Ok(Value::List(items[from..to].to_vec()))
}

fn sort(args: &[Value], _: &CallContext<'_>) -> Result<Value, FunctionError> {
    let mut strings: Vec<String> = elements(only(args)?)?
        .iter()
        .map(text)
        .collect::<Result<_, _>>()?;
    strings.sort();
    Ok(Value::List(
        strings.into_iter().map(Value::String).collect(),
    ))
}

fn sum(args: &[Value], _: &CallContext<'_>) -> Result<Value, FunctionError> {
    let items = elements(only(args)?)?;
    if items.is_empty() {
        return Err("cannot sum an empty list".into());
    }
    let mut total = BigDecimal::from(0);
    for x in &items {
        total += to_number(x)?.0;
    }
    Ok(number(total))
}

fn transpose(args: &[Value], _: &CallContext<'_>) -> Result<Value, FunctionError> {
    let mut out: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for (k, v) in entries(only(args)?)? {
        for x in elements(&v)? {
            out.entry(text(&x)?)
                .or_default()
                .push(Value::string(k.clone()));
        }
    }
    Ok(Value::Map(
        out.into_iter().map(|(k, v)| (k, Value::List(v))).collect(),
    ))
}

fn zipmap(args: &[Value], _: &CallContext<'_>) -> Result<Value, FunctionError> {
    arity(args, 2)?;
    let keys = elements(&args[0])?;
    let values = elements(&args[1])?;
    if keys.len() != values.len() {
        return Err("the keys and values lists must have the same length".into());
    }
    let keys = keys.iter().map(text).collect::<Result<Vec<_>, _>>()?;
    Ok(Value::Map(keys.into_iter().zip(values).collect()))
}
