//! File system functions: `file`, `filebase64`, `fileexists`,
//! `templatefile`, and the path functions `abspath`, `basename`, `dirname`
//! and `pathexpand`.
//!
//! Relative paths are read against the directory of the module being
//! evaluated (the [`CallContext`]), never against the process's working
//! directory, and `pathexpand` uses the home directory the caller passed.

use std::path::Path;

use base64::Engine;
use plumb_tfplugin::Value;

use super::builtin::{
    CallContext, Function, FunctionError, arity, entries, functions, module_path, only, read_file,
    text,
};

/// The file system functions.
pub const FUNCTIONS: &[Function] = functions![
    abspath,
    basename,
    dirname,
    file,
    filebase64,
    fileexists,
    pathexpand,
    templatefile
];

fn file(args: &[Value], context: &CallContext<'_>) -> Result<Value, FunctionError> {
    let bytes = read_file(context, &text(only(args)?)?)?;
    Ok(Value::String(
        String::from_utf8(bytes).map_err(|_| "the file is not UTF-8; use filebase64")?,
    ))
}

fn filebase64(args: &[Value], context: &CallContext<'_>) -> Result<Value, FunctionError> {
    let bytes = read_file(context, &text(only(args)?)?)?;
    Ok(Value::String(
        base64::engine::general_purpose::STANDARD.encode(bytes),
    ))
}

fn fileexists(args: &[Value], context: &CallContext<'_>) -> Result<Value, FunctionError> {
    Ok(Value::Bool(
        module_path(context, &text(only(args)?)?).is_file(),
    ))
}

fn templatefile(args: &[Value], context: &CallContext<'_>) -> Result<Value, FunctionError> {
    arity(args, 2)?;
    let path = module_path(context, &text(&args[0])?);
    let template =
        std::fs::read_to_string(&path).map_err(|source| FunctionError::Read { path, source })?;
    let vars = entries(&args[1])?;
    context.templates.render(&template, vars, context)
}

fn abspath(args: &[Value], context: &CallContext<'_>) -> Result<Value, FunctionError> {
    Ok(Value::String(
        module_path(context, &text(only(args)?)?)
            .display()
            .to_string(),
    ))
}

fn basename(args: &[Value], _: &CallContext<'_>) -> Result<Value, FunctionError> {
    Ok(Value::String(
        Path::new(&text(only(args)?)?)
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default(),
    ))
}

fn dirname(args: &[Value], _: &CallContext<'_>) -> Result<Value, FunctionError> {
    let t = text(only(args)?)?;
    let dir = Path::new(&t)
        .parent()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    Ok(Value::String(if dir.is_empty() { ".".into() } else { dir }))
}

/// `~/rest` becomes `HOME/rest` when the caller knows the home directory.
fn pathexpand(args: &[Value], context: &CallContext<'_>) -> Result<Value, FunctionError> {
    let t = text(only(args)?)?;
    Ok(Value::String(match (t.strip_prefix("~/"), context.home) {
        (Some(rest), Some(home)) => format!("{}/{rest}", home.display()),
        _ => t,
    }))
}
