//! What a built-in function is: its entry in a family's table, the context
//! it runs in, the error it returns, and the argument readers every family
//! shares.
//!
//! A family module lists its functions as [`Function`] entries; the
//! registry in `functions` gathers the tables. The entry says how the
//! function takes unknown and sensitive arguments ([`Arguments`]), so that
//! rule is written once, beside the name, instead of in a list of
//! exceptions kept apart from the implementations.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use plumb_secrets::sops::Keyring;
use plumb_tfplugin::value::BigDecimal;
use plumb_tfplugin::{Number, Value, ValueError};

use crate::coerce::{to_number, value_to_string};

/// What a function may read besides its arguments.
pub struct CallContext<'a> {
    /// The directory of the module being evaluated: relative paths given to
    /// `file()`, `templatefile()` and the like are read against it.
    pub module_dir: &'a Path,
    /// The user's home directory, for `pathexpand()`.
    pub home: Option<&'a Path>,
    /// The age identities `sops_file()` decrypts with; `None` where the
    /// language allows only literal values (variable defaults, `.tfvars`).
    pub sops_keys: Option<&'a Keyring>,
    /// Renders template files for `templatefile()`; the evaluator provides
    /// it, since a template is an expression.
    pub templates: &'a dyn TemplateRenderer,
}

/// Renders a template file's text with the variables given to
/// `templatefile()`.
pub trait TemplateRenderer {
    /// Evaluates `text` as a template in which only `vars` are defined.
    fn render(
        &self,
        text: &str,
        vars: BTreeMap<String, Value>,
        context: &CallContext<'_>,
    ) -> Result<Value, FunctionError>;
}

/// How a function takes unknown and sensitive arguments.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arguments {
    /// Known and unmarked: an unknown argument makes the result unknown
    /// without calling the function, and a sensitive one makes the result
    /// sensitive. Most functions.
    Known,
    /// Unmarked but possibly unknown: the function decides what an unknown
    /// argument means; a sensitive one still makes the result sensitive.
    MaybeUnknown,
    /// Exactly as given, unknowns and marks included: the function handles
    /// both itself.
    AsGiven,
}

/// A function's implementation over evaluated arguments.
pub type Implementation = fn(&[Value], &CallContext<'_>) -> Result<Value, FunctionError>;

/// How a function is called.
#[derive(Clone, Copy)]
pub enum Kind {
    /// With evaluated arguments.
    Values {
        /// How unknown and sensitive arguments reach it.
        arguments: Arguments,
        /// The implementation.
        run: Implementation,
    },
    /// With its argument expressions: `try()` and `can()`, which look at
    /// evaluation errors, so the evaluator runs them itself.
    Expressions,
}

/// One built-in function.
#[derive(Clone, Copy)]
pub struct Function {
    /// Its name.
    pub name: &'static str,
    /// How it is called.
    pub kind: Kind,
}

impl Function {
    /// A function of known, unmarked arguments.
    pub const fn known(name: &'static str, run: Implementation) -> Function {
        Function {
            name,
            kind: Kind::Values {
                arguments: Arguments::Known,
                run,
            },
        }
    }

    /// A function of unmarked arguments that may be unknown.
    pub const fn maybe_unknown(name: &'static str, run: Implementation) -> Function {
        Function {
            name,
            kind: Kind::Values {
                arguments: Arguments::MaybeUnknown,
                run,
            },
        }
    }

    /// A function that takes its arguments as given.
    pub const fn as_given(name: &'static str, run: Implementation) -> Function {
        Function {
            name,
            kind: Kind::Values {
                arguments: Arguments::AsGiven,
                run,
            },
        }
    }

    /// A function of expressions.
    pub const fn expressions(name: &'static str) -> Function {
        Function {
            name,
            kind: Kind::Expressions,
        }
    }
}

/// A family's table of functions, one entry a name: `functions![abs, ceil]`
/// is `&[Function::known("abs", abs), Function::known("ceil", ceil)]`. Each
/// function is called in the language by the name of the Rust `fn` that runs
/// it; one that takes its arguments other than known and unmarked says how
/// first, by the name of its [`Function`] constructor (`as_given coalesce`).
macro_rules! functions {
    (@entry $name:ident) => {
        Function::known(stringify!($name), $name)
    };
    (@entry $how:ident $name:ident) => {
        Function::$how(stringify!($name), $name)
    };
    ($($first:ident $($name:ident)?),* $(,)?) => {
        &[$(functions!(@entry $first $($name)?)),*]
    };
}
pub(crate) use functions;

/// Why a function call failed.
#[derive(Debug, thiserror::Error)]
pub enum FunctionError {
    /// The wrong number of arguments.
    #[error("expects {expected} argument(s), got {given}")]
    Arity {
        /// How many the function takes.
        expected: usize,
        /// How many it was given.
        given: usize,
    },
    /// An argument is not what the function needs; the message says which
    /// and why.
    #[error("{0}")]
    Argument(String),
    /// A file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file, as resolved.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// `regex()` or `regexall()` got a pattern that is not a regular
    /// expression.
    #[error("invalid regular expression: {0}")]
    Regex(#[source] regex::Error),
    /// `replace()` got a `/pattern/` that is not a regular expression.
    #[error("{0}")]
    ReplacePattern(#[source] regex::Error),
    /// A value did not convert to the type asked for.
    #[error(transparent)]
    Value(#[from] ValueError),
    /// `base64decode()` got text that is not base64.
    #[error("invalid base64: {0}")]
    Base64(#[source] base64::DecodeError),
    /// `jsondecode()` got text that is not JSON.
    #[error("invalid JSON: {0}")]
    JsonDecode(#[source] serde_json::Error),
    /// A value could not be written as JSON.
    #[error("{0}")]
    JsonEncode(#[source] serde_json::Error),
    /// `yamlencode()` could not write the value.
    #[error("cannot encode as YAML: {0}")]
    YamlEncode(#[source] serde_saphyr::SerializeError),
    /// No function has this name.
    #[error("there is no function named {name:?} (plumb implements: {implemented})")]
    Unknown {
        /// The name called.
        name: String,
        /// Every name there is, comma-separated.
        implemented: String,
    },
}

impl From<String> for FunctionError {
    fn from(message: String) -> Self {
        FunctionError::Argument(message)
    }
}

impl From<&str> for FunctionError {
    fn from(message: &str) -> Self {
        FunctionError::Argument(message.to_string())
    }
}

/// Checks that exactly `n` arguments were given.
pub fn arity(args: &[Value], n: usize) -> Result<(), FunctionError> {
    if args.len() != n {
        return Err(FunctionError::Arity {
            expected: n,
            given: args.len(),
        });
    }
    Ok(())
}

/// The one argument of a one-argument function.
pub fn only(args: &[Value]) -> Result<&Value, FunctionError> {
    arity(args, 1)?;
    Ok(&args[0])
}

/// An argument as a string.
pub fn text(v: &Value) -> Result<String, FunctionError> {
    Ok(value_to_string(v)?)
}

/// An argument as a whole number.
pub fn whole(v: &Value) -> Result<i64, FunctionError> {
    let n = to_number(v)?;
    Ok(n.to_i64()
        .ok_or_else(|| format!("{n} is not a whole number"))?)
}

/// An argument as a list (a set's elements, in order).
pub fn elements(v: &Value) -> Result<Vec<Value>, FunctionError> {
    match v.unmarked() {
        Value::List(x) | Value::Set(x) => Ok(x.clone()),
        other => Err(format!("a list is required, not a {}", other.kind()).into()),
    }
}

/// An argument as a map or object.
pub fn entries(v: &Value) -> Result<BTreeMap<String, Value>, FunctionError> {
    match v.unmarked() {
        Value::Map(m) => Ok(m.clone()),
        other => Err(format!("a map or object is required, not a {}", other.kind()).into()),
    }
}

/// A number result, normalized.
pub fn number(n: BigDecimal) -> Value {
    Value::Number(Number(n.normalized()))
}

/// A path argument, resolved against the module's directory.
pub fn module_path(context: &CallContext<'_>, path: &str) -> PathBuf {
    let path = Path::new(path);
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        context.module_dir.join(path)
    }
}

/// The bytes of the file a path argument names.
pub fn read_file(context: &CallContext<'_>, path: &str) -> Result<Vec<u8>, FunctionError> {
    let path = module_path(context, path);
    std::fs::read(&path).map_err(|source| FunctionError::Read { path, source })
}

/// Calls `run` the way [`Arguments::Known`] says: an unknown argument makes
/// the result unknown, and a sensitive one makes it sensitive.
pub fn with_known_arguments(
    args: &[Value],
    context: &CallContext<'_>,
    run: Implementation,
) -> Result<Value, FunctionError> {
    if args.iter().any(|a| !a.is_wholly_known()) {
        return Ok(Value::Unknown);
    }
    with_unmarked_arguments(args, context, run)
}

/// Calls `run` the way [`Arguments::MaybeUnknown`] says: with the
/// arguments' marks removed, and carried over to the result.
pub fn with_unmarked_arguments(
    args: &[Value],
    context: &CallContext<'_>,
    run: Implementation,
) -> Result<Value, FunctionError> {
    let sensitive = args.iter().any(Value::contains_sensitive);
    let args: Vec<Value> = args.iter().map(Value::deep_unmark).collect();
    let out = run(&args, context)?;
    Ok(if sensitive { out.mark_sensitive() } else { out })
}
