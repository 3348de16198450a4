//! Type conversion functions: `tostring`, `tonumber`, `tobool`, `tolist`,
//! `toset`, `tomap`, the sensitivity marks `sensitive` and `nonsensitive`,
//! and `try` and `can`, which turn evaluation errors into values.
//!
//! `try` and `can` are listed here so their names are registered like any
//! other, but they take expressions, not values: the evaluator runs them.

use plumb_tfplugin::Value;
use plumb_tfplugin::value::{Type, convert};

use super::builtin::{CallContext, Function, FunctionError, arity, only, text};
use crate::coerce::{to_bool, to_number};

/// The type conversion functions.
pub const FUNCTIONS: &[Function] = &[
    Function::expressions("can"),
    Function::as_given("nonsensitive", nonsensitive),
    Function::as_given("sensitive", sensitive),
    Function::known("tobool", tobool),
    Function::maybe_unknown("tolist", |args, _| to_collection(args, Type::List)),
    Function::maybe_unknown("tomap", |args, _| to_collection(args, Type::Map)),
    Function::known("tonumber", tonumber),
    Function::maybe_unknown("toset", |args, _| to_collection(args, Type::Set)),
    Function::known("tostring", tostring),
    Function::expressions("try"),
];

fn sensitive(args: &[Value], _: &CallContext<'_>) -> Result<Value, FunctionError> {
    arity(args, 1)?;
    Ok(args[0].clone().mark_sensitive())
}

fn nonsensitive(args: &[Value], _: &CallContext<'_>) -> Result<Value, FunctionError> {
    arity(args, 1)?;
    Ok(args[0].deep_unmark())
}

fn tostring(args: &[Value], _: &CallContext<'_>) -> Result<Value, FunctionError> {
    Ok(match only(args)? {
        Value::Null => Value::Null,
        v => Value::String(text(v)?),
    })
}

fn tonumber(args: &[Value], _: &CallContext<'_>) -> Result<Value, FunctionError> {
    Ok(match only(args)? {
        Value::Null => Value::Null,
        v => Value::Number(to_number(v)?),
    })
}

fn tobool(args: &[Value], _: &CallContext<'_>) -> Result<Value, FunctionError> {
    Ok(match only(args)? {
        Value::Null => Value::Null,
        v => Value::Bool(to_bool(v)?),
    })
}

/// `tolist`, `toset` and `tomap`: a collection of whatever element type
/// the value's elements share.
fn to_collection(args: &[Value], kind: fn(Box<Type>) -> Type) -> Result<Value, FunctionError> {
    Ok(convert(only(args)?, &kind(Box::new(Type::Dynamic)))?)
}
