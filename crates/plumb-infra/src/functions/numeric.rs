//! Numeric functions: `abs`, `ceil`, `floor`, `max`, `min`, `parseint`,
//! `pow` and `signum`.
//!
//! Numbers keep arbitrary precision wherever the operation allows; only
//! `pow` goes through a float, as the language's own implementation does.

use plumb_tfplugin::{Number, Value};

use super::builtin::{
    CallContext, Function, FunctionError, arity, functions, number, only, text, whole,
};
use crate::coerce::to_number;

/// The numeric functions.
pub const FUNCTIONS: &[Function] = functions![abs, ceil, floor, max, min, parseint, pow, signum];

fn abs(args: &[Value], _: &CallContext<'_>) -> Result<Value, FunctionError> {
    Ok(number(to_number(only(args)?)?.0.abs()))
}

fn round(args: &[Value], mode: bigdecimal::RoundingMode) -> Result<Value, FunctionError> {
    let n = to_number(only(args)?)?.0;
    Ok(number(n.with_scale_round(0, mode)))
}

fn ceil(args: &[Value], _: &CallContext<'_>) -> Result<Value, FunctionError> {
    round(args, bigdecimal::RoundingMode::Ceiling)
}

fn floor(args: &[Value], _: &CallContext<'_>) -> Result<Value, FunctionError> {
    round(args, bigdecimal::RoundingMode::Floor)
}

/// The number that `better` prefers over every other.
fn extreme(args: &[Value], better: fn(&Number, &Number) -> bool) -> Result<Value, FunctionError> {
    let Some((first, rest)) = args.split_first() else {
        return Err("needs at least one number".into());
    };
    let mut best = to_number(first)?;
    for x in rest {
        let n = to_number(x)?;
        if better(&n, &best) {
            best = n;
        }
    }
    Ok(Value::Number(best))
}

fn max(args: &[Value], _: &CallContext<'_>) -> Result<Value, FunctionError> {
    extreme(args, |n, best| n > best)
}

fn min(args: &[Value], _: &CallContext<'_>) -> Result<Value, FunctionError> {
    extreme(args, |n, best| n < best)
}

fn parseint(args: &[Value], _: &CallContext<'_>) -> Result<Value, FunctionError> {
    arity(args, 2)?;
    let digits = text(&args[0])?;
    let base = u32::try_from(whole(&args[1])?)
        .ok()
        .filter(|b| (2..=62).contains(b))
        .ok_or("base must be between 2 and 62")?;
    let n = i64::from_str_radix(&digits, base)
        .map_err(|_| format!("cannot parse {digits:?} as a base {base} integer"))?;
    Ok(Value::int(n))
}

fn pow(args: &[Value], _: &CallContext<'_>) -> Result<Value, FunctionError> {
    arity(args, 2)?;
    let base = to_number(&args[0])?.to_f64();
    let exponent = to_number(&args[1])?.to_f64();
    let n = Number::from_f64(base.powf(exponent)).ok_or("result is not a finite number")?;
    Ok(Value::Number(n))
}

fn signum(args: &[Value], _: &CallContext<'_>) -> Result<Value, FunctionError> {
    let n = to_number(only(args)?)?;
    Ok(Value::int(match n.0.sign() {
        bigdecimal::num_bigint::Sign::Minus => -1,
        bigdecimal::num_bigint::Sign::NoSign => 0,
        bigdecimal::num_bigint::Sign::Plus => 1,
    }))
}
