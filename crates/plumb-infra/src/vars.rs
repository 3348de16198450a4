//! Input variables: type constraints, defaults, validation, sensitivity, and
//! the places values come from (`-var`, `-var-file`, `*.auto.tfvars`,
//! `terraform.tfvars`, `TF_VAR_*`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use hcl_edit::Span;
use hcl_edit::expr::{Expression, ObjectKey};
use plumb_tfplugin::Value;
use plumb_tfplugin::value::{Type, ValueError, convert};

use crate::coerce::to_bool;
use crate::config::{ModuleConfig, Origin, VariableBlock, in_stack};
use crate::diag::{ConfigError, Diag, SourceFile};
use crate::environment::Environment;
use crate::eval::{Evaluator, Scope, Step};
use crate::parse::parse_source;

/// A source of root variable values on the command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VariableArg {
    /// `-var-file=FILE`: a `.tfvars` file, relative to the stack.
    File(PathBuf),
    /// `-var NAME=VALUE`.
    Value(String),
}

/// A type constraint with optional attributes and their defaults.
#[derive(Clone, Debug)]
pub enum TypeSpec {
    /// A plain type (no optional attributes inside).
    Plain(Type),
    /// `object({...})` with per-attribute optional flags and defaults.
    Object(BTreeMap<String, (TypeSpec, bool, Option<Value>)>),
    /// `list(...)`, `set(...)`, `map(...)` of a spec with optional attributes.
    Collection(&'static str, Box<TypeSpec>),
}

/// A scope where no name is defined: literal values, and functions.
struct Empty<'a> {
    dir: &'a Path,
    home: Option<&'a Path>,
}
impl Scope for Empty<'_> {
    fn resolve(&self, _root: &str, _steps: &[Step]) -> Result<Option<(Value, usize)>, String> {
        Ok(None)
    }
    fn module_dir(&self) -> &Path {
        self.dir
    }
    fn home(&self) -> Option<&Path> {
        self.home
    }
}

/// Evaluates a literal expression (defaults, tfvars files); functions read
/// files relative to `dir` and expand `~` to `home`.
pub fn literal(
    expr: &Expression,
    file: &Arc<SourceFile>,
    dir: &Path,
    home: Option<&Path>,
) -> Result<Value, Diag> {
    let scope = Empty { dir, home };
    let mut ev = Evaluator::new(&scope, &file.text);
    ev.eval(expr).map_err(|e| {
        Diag::new(format!(
            "{} (only literal values are allowed here)",
            e.message
        ))
        .at(file.clone(), e.span)
    })
}

/// Parses a type constraint expression (`home` for functions in
/// `optional()` defaults).
pub fn parse_type(
    expr: &Expression,
    origin: &Origin,
    home: Option<&Path>,
) -> Result<TypeSpec, Diag> {
    let bad = |what: &str| origin.diag_at(expr.span(), format!("invalid type constraint: {what}"));
    match expr {
        Expression::Variable(v) => Ok(TypeSpec::Plain(match v.value().as_str() {
            "string" => Type::String,
            "number" => Type::Number,
            "bool" => Type::Bool,
            "any" => Type::Dynamic,
            other => return Err(bad(&format!("unknown type {other}"))),
        })),
        Expression::FuncCall(f) => {
            let name = f.name.name.value().to_string();
            let arg = f
                .args
                .iter()
                .next()
                .ok_or_else(|| bad(&format!("{name}() needs an argument")))?;
            match name.as_str() {
                "list" | "set" | "map" => {
                    let inner = parse_type(arg, origin, home)?;
                    Ok(match inner {
                        TypeSpec::Plain(t) => TypeSpec::Plain(match name.as_str() {
                            "list" => Type::List(Box::new(t)),
                            "set" => Type::Set(Box::new(t)),
                            _ => Type::Map(Box::new(t)),
                        }),
                        other => TypeSpec::Collection(
                            match name.as_str() {
                                "list" => "list",
                                "set" => "set",
                                _ => "map",
                            },
                            Box::new(other),
                        ),
                    })
                }
                "object" => {
                    let Expression::Object(o) = arg else {
                        return Err(bad("object() takes { name = type, ... }"));
                    };
                    let mut attrs = BTreeMap::new();
                    for (k, v) in o.iter() {
                        let key = match k {
                            ObjectKey::Ident(i) => i.value().to_string(),
                            ObjectKey::Expression(Expression::Variable(i)) => i.value().to_string(),
                            ObjectKey::Expression(e) => e
                                .as_str()
                                .map(str::to_string)
                                .ok_or_else(|| bad("attribute names must be names"))?,
                        };
                        let (spec, optional, default) = match v.expr() {
                            Expression::FuncCall(of)
                                if of.name.name.value().as_str() == "optional" =>
                            {
                                let t = of
                                    .args
                                    .iter()
                                    .next()
                                    .ok_or_else(|| bad("optional() needs a type"))?;
                                let d = match of.args.iter().nth(1) {
                                    Some(d) => {
                                        Some(literal(d, &origin.file, Path::new("."), home)?)
                                    }
                                    None => None,
                                };
                                (parse_type(t, origin, home)?, true, d)
                            }
                            e => (parse_type(e, origin, home)?, false, None),
                        };
                        attrs.insert(key, (spec, optional, default));
                    }
                    Ok(TypeSpec::Object(attrs))
                }
                "tuple" => {
                    let Expression::Array(a) = arg else {
                        return Err(bad("tuple() takes [type, ...]"));
                    };
                    let mut ts = Vec::new();
                    for e in a.iter() {
                        match parse_type(e, origin, home)? {
                            TypeSpec::Plain(t) => ts.push(t),
                            _ => ts.push(Type::Dynamic),
                        }
                    }
                    Ok(TypeSpec::Plain(Type::Tuple(ts)))
                }
                other => Err(bad(&format!("unknown type function {other}()"))),
            }
        }
        _ => Err(bad(
            "expected a type such as string, list(number) or object({...})",
        )),
    }
}

/// Why a value does not fit a variable's type constraint.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    /// It does not convert to the type.
    #[error(transparent)]
    Value(#[from] ValueError),
    /// An object was needed.
    #[error("an object is required, got {0}")]
    NotAnObject(&'static str),
    /// The object has an attribute the type does not declare.
    #[error("unexpected attribute {0:?}")]
    UnexpectedAttribute(String),
    /// The object lacks an attribute that is not optional.
    #[error("attribute {0:?} is required")]
    MissingAttribute(String),
    /// A list, set or map was needed.
    #[error("a {expected} is required, got {found}")]
    NotACollection {
        /// `list`, `set` or `map`.
        expected: &'static str,
        /// What the value is.
        found: &'static str,
    },
    /// An attribute of an object does not fit.
    #[error(".{attribute}: {source}")]
    InAttribute {
        /// The attribute.
        attribute: String,
        /// Why.
        #[source]
        source: Box<SpecError>,
    },
    /// An element of a collection does not fit.
    #[error("[{key}]: {source}")]
    InElement {
        /// The index or key.
        key: String,
        /// Why.
        #[source]
        source: Box<SpecError>,
    },
}

/// Converts a value to a type spec, applying optional-attribute defaults.
pub fn apply_spec(v: &Value, spec: &TypeSpec) -> Result<Value, SpecError> {
    if v.is_null() || v.is_unknown() {
        return Ok(v.clone());
    }
    match spec {
        TypeSpec::Plain(t) => Ok(convert(v, t)?),
        TypeSpec::Object(attrs) => {
            let s = v.is_sensitive();
            let Value::Map(m) = v.unmarked() else {
                return Err(SpecError::NotAnObject(v.kind()));
            };
            for k in m.keys() {
                if !attrs.contains_key(k) {
                    return Err(SpecError::UnexpectedAttribute(k.clone()));
                }
            }
            let mut out = BTreeMap::new();
            for (k, (spec, optional, default)) in attrs {
                let given = m.get(k).cloned().unwrap_or(Value::Null);
                if given.is_null() && !optional {
                    return Err(SpecError::MissingAttribute(k.clone()));
                }
                let val = if given.is_null() {
                    default.clone().unwrap_or(Value::Null)
                } else {
                    given
                };
                let converted = apply_spec(&val, spec).map_err(|e| SpecError::InAttribute {
                    attribute: k.clone(),
                    source: Box::new(e),
                })?;
                out.insert(k.clone(), converted);
            }
            Ok(if s {
                Value::Map(out).mark_sensitive()
            } else {
                Value::Map(out)
            })
        }
        TypeSpec::Collection(kind, inner) => {
            let items: Vec<(String, Value)> = match v.unmarked() {
                Value::List(x) | Value::Set(x) if *kind != "map" => x
                    .iter()
                    .enumerate()
                    .map(|(i, x)| (i.to_string(), x.clone()))
                    .collect(),
                Value::Map(m) if *kind == "map" => {
                    m.iter().map(|(k, x)| (k.clone(), x.clone())).collect()
                }
                _ => {
                    return Err(SpecError::NotACollection {
                        expected: kind,
                        found: v.kind(),
                    });
                }
            };
            let mut conv = Vec::new();
            for (k, x) in items {
                let converted = apply_spec(&x, inner).map_err(|e| SpecError::InElement {
                    key: k.clone(),
                    source: Box::new(e),
                })?;
                conv.push((k, converted));
            }
            Ok(match *kind {
                "map" => Value::Map(conv.into_iter().collect()),
                "set" => Value::Set(conv.into_iter().map(|(_, v)| v).collect()),
                _ => Value::List(conv.into_iter().map(|(_, v)| v).collect()),
            })
        }
    }
}

fn is_primitive(spec: &Option<TypeSpec>) -> bool {
    matches!(
        spec,
        None | Some(TypeSpec::Plain(Type::String | Type::Number | Type::Bool))
    )
}

/// Applies a variable's default, type, nullability, validations and marks
/// (`home` for functions in its default and validations).
pub fn finish_variable(
    cfg: &ModuleConfig,
    name: &str,
    var: &VariableBlock,
    given: Option<Value>,
    home: Option<&Path>,
) -> Result<Value, Diag> {
    let spec = match &var.ty {
        Some(t) => Some(parse_type(t, &var.origin, home)?),
        None => None,
    };
    let value = match given {
        Some(v) if !v.is_null() || var.nullable => v,
        _ => match &var.default {
            Some(d) => literal(d, &var.origin.file, &cfg.dir, home)?,
            None => {
                return Err(var.origin.diag(format!("no value for required variable {name:?}")).hint(format!(
                    "set it with -var '{name}=...', a .tfvars file or the TF_VAR_{name} environment variable"
                )));
            }
        },
    };
    if value.is_null() && !var.nullable {
        return Err(var
            .origin
            .diag(format!("variable {name:?} must not be null")));
    }
    let value = match &spec {
        Some(s) => apply_spec(&value, s).map_err(|e| {
            var.origin
                .diag(format!("invalid value for variable {name:?}: {e}"))
        })?,
        None => value,
    };
    for (cond, msg, origin) in &var.validations {
        struct VarScope<'a> {
            name: &'a str,
            value: &'a Value,
            dir: &'a Path,
            home: Option<&'a Path>,
        }
        impl Scope for VarScope<'_> {
            fn resolve(
                &self,
                root: &str,
                steps: &[Step],
            ) -> Result<Option<(Value, usize)>, String> {
                match (root, steps.first()) {
                    ("var", Some(Step::Attr(a))) if a == self.name => {
                        Ok(Some((self.value.clone(), 1)))
                    }
                    ("var", _) => {
                        Err("a validation condition may only refer to its own variable".into())
                    }
                    _ => Ok(None),
                }
            }
            fn module_dir(&self) -> &Path {
                self.dir
            }
            fn home(&self) -> Option<&Path> {
                self.home
            }
        }
        let scope = VarScope {
            name,
            value: &value,
            dir: &cfg.dir,
            home,
        };
        let mut ev = Evaluator::new(&scope, &origin.file.text);
        let ok = ev
            .eval(cond)
            .map_err(|e| origin.diag_at(e.span, e.message))?;
        if ok.is_unknown() {
            continue;
        }
        if !to_bool(&ok).map_err(|m| origin.diag(m))? {
            let text = ev
                .eval(msg)
                .ok()
                .and_then(|m| m.as_str().map(str::to_string))
                .unwrap_or_else(|| "validation failed".into());
            return Err(origin
                .diag(format!("invalid value for variable {name:?}: {text}"))
                .hint("change the value so the validation condition holds"));
        }
    }
    Ok(if var.sensitive {
        value.mark_sensitive()
    } else {
        value
    })
}

/// Parses a raw string given on the command line or in the environment.
fn raw_value(
    raw: &str,
    var: &VariableBlock,
    dir: &Path,
    home: Option<&Path>,
) -> Result<Value, Diag> {
    let spec = match &var.ty {
        Some(t) => Some(parse_type(t, &var.origin, home)?),
        None => None,
    };
    if is_primitive(&spec) {
        return Ok(Value::string(raw));
    }
    let expr = hcl_edit::parser::parse_expr(raw)
        .map_err(|e| Diag::new(format!("cannot parse {raw:?}: {}", e.message())))?;
    let file = Arc::new(SourceFile {
        path: "<value>".into(),
        text: raw.to_string(),
    });
    literal(&expr, &file, dir, home)
}

/// Root variable values from every source, later sources winning:
/// the environment's `TF_VAR_*`, terraform.tfvars, *.auto.tfvars, then
/// `args` (-var-file / -var) in order.
pub fn collect(
    root: &ModuleConfig,
    args: &[VariableArg],
    env: &Environment,
) -> Result<BTreeMap<String, Value>, ConfigError> {
    let dir = &root.dir;
    let home = env.home.as_deref();
    let mut out = BTreeMap::new();
    let mut errs = Vec::new();
    for (name, var) in &root.variables {
        if let Some(raw) = env.tf_vars.get(name) {
            match raw_value(raw, var, dir, home) {
                Ok(v) => {
                    out.insert(name.clone(), v);
                }
                Err(d) => errs.push(d),
            }
        }
    }
    let mut files = Vec::new();
    if dir.join("terraform.tfvars").is_file() {
        files.push(dir.join("terraform.tfvars"));
    }
    let mut autos: Vec<_> = std::fs::read_dir(dir)
        .map(|r| {
            r.flatten()
                .map(|e| e.path())
                .filter(|p| p.to_string_lossy().ends_with(".auto.tfvars"))
                .collect()
        })
        .unwrap_or_default();
    autos.sort();
    files.extend(autos);
    // A file is read at `read` and named `path`: a -var-file as given.
    let load_file =
        |read: &Path, path: &Path, out: &mut BTreeMap<String, Value>, errs: &mut Vec<Diag>| {
            let text = match std::fs::read_to_string(read) {
                Ok(t) => t,
                Err(e) => {
                    errs.push(Diag::new(format!("cannot read {}: {e}", path.display())));
                    return;
                }
            };
            let (file, body) = match parse_source(path.to_path_buf(), text) {
                Ok(parsed) => parsed,
                Err(d) => {
                    errs.push(d);
                    return;
                }
            };
            for a in body.attributes() {
                let name = a.key.value().to_string();
                if !root.variables.contains_key(&name) {
                    errs.push(
                        Diag::new(format!("value for undeclared variable {name:?}"))
                            .at(file.clone(), a.span())
                            .hint(format!(
                                "declare variable \"{name}\" {{}} or remove this line"
                            )),
                    );
                    continue;
                }
                match literal(&a.value, &file, dir, home) {
                    Ok(v) => {
                        out.insert(name, v);
                    }
                    Err(d) => errs.push(d),
                }
            }
        };
    for f in files {
        load_file(&f, &f, &mut out, &mut errs);
    }
    for arg in args {
        let arg = match arg {
            VariableArg::File(path) => {
                load_file(&in_stack(dir, path), path, &mut out, &mut errs);
                continue;
            }
            VariableArg::Value(arg) => arg,
        };
        let Some((name, raw)) = arg.split_once('=') else {
            errs.push(Diag::new(format!("-var {arg:?} must be NAME=VALUE")));
            continue;
        };
        let Some(var) = root.variables.get(name) else {
            errs.push(
                Diag::new(format!("-var names undeclared variable {name:?}"))
                    .hint("declare it in the configuration"),
            );
            continue;
        };
        match raw_value(raw, var, dir, home) {
            Ok(v) => {
                out.insert(name.to_string(), v);
            }
            Err(d) => errs.push(d),
        }
    }
    if errs.is_empty() {
        Ok(out)
    } else {
        Err(ConfigError::new(errs))
    }
}
