//! Input variables: type constraints, defaults, validation, sensitivity, and
//! the places values come from (`-var`, `-var-file`, `*.auto.tfvars`,
//! `*.auto.tfvars.json`, `terraform.tfvars`, `terraform.tfvars.json`,
//! `TF_VAR_*`).
//!
//! Any variable file may be SOPS-encrypted (told by its content: a `sops`
//! section with `mac` and `version`), in whatever format sops wrote it: a
//! `.tfvars` file as sops' binary format, a `.tfvars.json` as JSON, and, given
//! with `-var-file`, YAML or dotenv files such as `secrets.sops.yaml` whose
//! top-level keys are variables. Such a file is decrypted in memory with the
//! caller's age identities, every value it gives is marked sensitive whatever
//! the variable block says, and an error about it names the file (and line)
//! but never shows its text.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use hcl_edit::Span;
use hcl_edit::expr::{Expression, ObjectKey};
use plumb_secrets::sops;
use plumb_tfplugin::Value;
use plumb_tfplugin::value::{Type, ValueError, convert};
use zeroize::Zeroizing;

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
            let s = v.is_sensitive();
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
            let out = match *kind {
                "map" => Value::Map(conv.into_iter().collect()),
                "set" => Value::Set(conv.into_iter().map(|(_, v)| v).collect()),
                _ => Value::List(conv.into_iter().map(|(_, v)| v).collect()),
            };
            Ok(if s { out.mark_sensitive() } else { out })
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
    // A sensitive value (`sensitive = true`, or from a SOPS file) is not
    // quoted in the errors below.
    let secret = var.sensitive || value.contains_sensitive();
    let value = match &spec {
        Some(s) => apply_spec(&value, s).map_err(|e| {
            var.origin.diag(if secret {
                format!(
                    "invalid value for variable {name:?}: the sensitive value given does not fit its type constraint"
                )
            } else {
                format!("invalid value for variable {name:?}: {e}")
            })
        })?,
        None => value,
    };
    // Marked before the validations, so a message built from it is not shown.
    let value = if var.sensitive {
        value.mark_sensitive()
    } else {
        value
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
            let text = match ev.eval(msg) {
                Ok(m) if m.contains_sensitive() => {
                    "validation failed (its error message refers to a sensitive value)".into()
                }
                Ok(m) => m
                    .as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| "validation failed".into()),
                Err(_) => "validation failed".into(),
            };
            return Err(origin
                .diag(format!("invalid value for variable {name:?}: {text}"))
                .hint("change the value so the validation condition holds"));
        }
    }
    Ok(value)
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

/// Root variable values, and who may read the secret ones. `Debug` shows
/// the names only.
#[derive(Clone, Default)]
pub struct RootValues {
    /// The values, by variable name (those from SOPS files marked
    /// sensitive).
    pub values: BTreeMap<String, Value>,
    /// The age recipients of the SOPS files that gave values: a saved plan
    /// seals those values for them.
    pub sops_recipients: Vec<String>,
}

impl std::fmt::Debug for RootValues {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RootValues")
            .field("names", &self.values.keys().collect::<Vec<_>>())
            .field("sops_recipients", &self.sops_recipients)
            .finish()
    }
}

/// How a variable file's (decrypted) text is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Syntax {
    /// `name = value` lines (`.tfvars`).
    Hcl,
    /// One JSON object (`.tfvars.json`, `.json`).
    Json,
    /// One YAML mapping (`.yaml`, `.yml`; SOPS files only).
    Yaml,
    /// `NAME=value` lines (`.env`; SOPS files only).
    Dotenv,
}

impl Syntax {
    fn of(path: &Path) -> Syntax {
        match sops::Format::from_path(path) {
            sops::Format::Json => Syntax::Json,
            sops::Format::Yaml => Syntax::Yaml,
            sops::Format::Dotenv => Syntax::Dotenv,
            sops::Format::Binary => Syntax::Hcl,
        }
    }
}

/// The format a SOPS-encrypted `bytes` (named `path`) was written in, or
/// `None` when it is not a SOPS file: sops chooses by name, so that is tried
/// first, then the others.
fn sops_format(path: &Path, bytes: &[u8]) -> Option<sops::Format> {
    let by_name = sops::Format::from_path(path);
    [
        by_name,
        sops::Format::Binary,
        sops::Format::Json,
        sops::Format::Yaml,
        sops::Format::Dotenv,
    ]
    .into_iter()
    .find(|f| sops::is_sops(bytes, *f))
}

/// Where variable values come from while collecting them.
struct Collector<'a> {
    root: &'a ModuleConfig,
    env: &'a Environment,
    out: RootValues,
    errs: Vec<Diag>,
}

impl Collector<'_> {
    fn set(&mut self, name: String, value: Value, secret: bool, shown: &Path) {
        if !self.root.variables.contains_key(&name) {
            self.errs.push(
                Diag::new(format!(
                    "{}: value for undeclared variable {name:?}",
                    shown.display()
                ))
                .hint(format!(
                    "declare variable \"{name}\" {{}} or remove it from the file"
                )),
            );
            return;
        }
        let value = if secret {
            value.mark_sensitive()
        } else {
            value
        };
        self.out.values.insert(name, value);
    }

    /// Reads the variable file at `read`, named `shown` (a `-var-file` as
    /// given).
    fn file(&mut self, read: &Path, shown: &Path) {
        let bytes = match std::fs::read(read) {
            Ok(b) => b,
            Err(e) => {
                self.errs
                    .push(Diag::new(format!("cannot read {}: {e}", shown.display())));
                return;
            }
        };
        let Some(format) = sops_format(shown, &bytes) else {
            self.plain(shown, bytes);
            return;
        };
        let name = shown.display().to_string();
        let plain = match sops::decrypt(&name, &bytes, format, &self.env.sops_keys) {
            Ok(p) => p,
            Err(e) => {
                self.errs.push(Diag::new(e.to_string()).hint(
                    "give the age identity with --sops-age-key-file, SOPS_AGE_KEY_FILE or SOPS_AGE_KEY",
                ));
                return;
            }
        };
        if let Ok(r) = sops::recipients(&name, &bytes, format) {
            for r in r {
                if !self.out.sops_recipients.contains(&r) {
                    self.out.sops_recipients.push(r);
                }
            }
        }
        // sops' binary format holds the file as it was: its name says how.
        let syntax = match format {
            sops::Format::Binary => Syntax::of(shown),
            sops::Format::Json => Syntax::Json,
            sops::Format::Yaml => Syntax::Yaml,
            sops::Format::Dotenv => Syntax::Dotenv,
        };
        let text = match std::str::from_utf8(plain.bytes()) {
            Ok(t) => Zeroizing::new(t.to_string()),
            Err(_) => {
                self.errs.push(Diag::new(format!(
                    "{name}: the decrypted variable file is not UTF-8 text"
                )));
                return;
            }
        };
        self.secret(shown, syntax, &text);
    }

    /// A variable file in the clear: `.tfvars` or `.tfvars.json`.
    fn plain(&mut self, shown: &Path, bytes: Vec<u8>) {
        let syntax = Syntax::of(shown);
        if matches!(syntax, Syntax::Yaml | Syntax::Dotenv) {
            self.errs.push(
                Diag::new(format!(
                    "{}: YAML and dotenv variable files are read only when SOPS-encrypted",
                    shown.display()
                ))
                .hint("write it as .tfvars or .tfvars.json, or encrypt it with sops"),
            );
            return;
        }
        let text = match String::from_utf8(bytes) {
            Ok(t) => t,
            Err(_) => {
                self.errs.push(Diag::new(format!(
                    "{}: a variable file must be UTF-8 text",
                    shown.display()
                )));
                return;
            }
        };
        if syntax == Syntax::Json {
            match serde_json::from_str::<serde_json::Value>(&text) {
                Ok(doc) => self.document(shown, &doc, false),
                Err(e) => self.errs.push(Diag::new(format!(
                    "{}: not valid JSON: {e}",
                    shown.display()
                ))),
            }
            return;
        }
        let (file, body) = match parse_source(shown.to_path_buf(), text) {
            Ok(parsed) => parsed,
            Err(d) => {
                self.errs.push(d);
                return;
            }
        };
        for a in body.attributes() {
            let name = a.key.value().to_string();
            if !self.root.variables.contains_key(&name) {
                self.errs.push(
                    Diag::new(format!("value for undeclared variable {name:?}"))
                        .at(file.clone(), a.span())
                        .hint(format!(
                            "declare variable \"{name}\" {{}} or remove this line"
                        )),
                );
                continue;
            }
            match literal(&a.value, &file, &self.root.dir, self.env.home.as_deref()) {
                Ok(v) => self.set(name, v, false, shown),
                Err(d) => self.errs.push(d),
            }
        }
    }

    /// A decrypted variable file. Its text stays in memory; errors give a
    /// line at most, never a snippet or a parser's quote of it.
    fn secret(&mut self, shown: &Path, syntax: Syntax, text: &str) {
        let name = shown.display().to_string();
        let doc = match syntax {
            Syntax::Json => serde_json::from_str::<serde_json::Value>(text).map_err(|e| {
                format!(
                    "{name}: the decrypted variable file is not valid JSON (line {}, column {})",
                    e.line(),
                    e.column()
                )
            }),
            Syntax::Yaml => serde_saphyr::from_str::<serde_json::Value>(text).map_err(|_| {
                format!("{name}: the decrypted variable file is not one YAML mapping of values")
            }),
            Syntax::Dotenv => {
                for (k, v) in crate::functions::sops::dotenv(text) {
                    self.set(k, v, true, shown);
                }
                return;
            }
            Syntax::Hcl => {
                self.secret_hcl(shown, text);
                return;
            }
        };
        match doc {
            Ok(doc) => self.document(shown, &doc, true),
            Err(m) => self.errs.push(Diag::new(m)),
        }
    }

    /// A decrypted `.tfvars` file.
    fn secret_hcl(&mut self, shown: &Path, text: &str) {
        let name = shown.display().to_string();
        // Kept only to place errors by line and to read number literals.
        let file = Arc::new(SourceFile {
            path: shown.to_path_buf(),
            text: text.to_string(),
        });
        let body = match hcl_edit::parser::parse_body(&file.text) {
            Ok(b) => b,
            Err(e) => {
                let (line, column) = file.line_col(e.location().offset());
                self.errs.push(Diag::new(format!(
                    "{name}: the decrypted variable file is not valid HCL (line {line}, column {column})"
                )));
                return;
            }
        };
        for a in body.attributes() {
            let var = a.key.value().to_string();
            match literal(&a.value, &file, &self.root.dir, self.env.home.as_deref()) {
                Ok(v) => self.set(var, v, true, shown),
                Err(_) => {
                    let line = a.span().map(|s| file.line_col(s.start).0).unwrap_or(0);
                    self.errs.push(Diag::new(format!(
                        "{name}: line {line}: the value of {var:?} is not a literal value"
                    )));
                }
            }
        }
    }

    /// A JSON or YAML document whose top-level keys are variables.
    fn document(&mut self, shown: &Path, doc: &serde_json::Value, secret: bool) {
        let serde_json::Value::Object(map) = doc else {
            self.errs.push(Diag::new(format!(
                "{}: a variable file holds one object, variable names to values",
                shown.display()
            )));
            return;
        };
        for (k, v) in map {
            self.set(
                k.clone(),
                plumb_tfplugin::value::untyped_from_json(v),
                secret,
                shown,
            );
        }
    }
}

/// The variable files a stack reads by itself, in order:
/// `terraform.tfvars`, `terraform.tfvars.json`, then `*.auto.tfvars` and
/// `*.auto.tfvars.json` by name.
fn auto_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = ["terraform.tfvars", "terraform.tfvars.json"]
        .iter()
        .map(|n| dir.join(n))
        .filter(|p| p.is_file())
        .collect();
    let mut autos: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|r| {
            r.flatten()
                .map(|e| e.path())
                .filter(|p| {
                    let n = p.to_string_lossy();
                    (n.ends_with(".auto.tfvars") || n.ends_with(".auto.tfvars.json")) && p.is_file()
                })
                .collect()
        })
        .unwrap_or_default();
    autos.sort();
    files.extend(autos);
    files
}

/// Root variable values from every source, later sources winning:
/// the environment's `TF_VAR_*`, terraform.tfvars(.json), *.auto.tfvars(.json),
/// then `args` (-var-file / -var) in order.
pub fn collect(
    root: &ModuleConfig,
    args: &[VariableArg],
    env: &Environment,
) -> Result<RootValues, ConfigError> {
    let dir = &root.dir;
    let home = env.home.as_deref();
    let mut c = Collector {
        root,
        env,
        out: RootValues::default(),
        errs: Vec::new(),
    };
    for (name, var) in &root.variables {
        if let Some(raw) = env.tf_vars.get(name) {
            match raw_value(raw, var, dir, home) {
                Ok(v) => {
                    c.out.values.insert(name.clone(), v);
                }
                Err(d) => c.errs.push(d),
            }
        }
    }
    for f in auto_files(dir) {
        let shown = f
            .strip_prefix(dir)
            .map(Path::to_path_buf)
            .unwrap_or_else(|_| f.clone());
        c.file(&f, &shown);
    }
    for arg in args {
        let arg = match arg {
            VariableArg::File(path) => {
                c.file(&in_stack(dir, path), path);
                continue;
            }
            VariableArg::Value(arg) => arg,
        };
        let Some((name, raw)) = arg.split_once('=') else {
            c.errs
                .push(Diag::new(format!("-var {arg:?} must be NAME=VALUE")));
            continue;
        };
        let Some(var) = root.variables.get(name) else {
            c.errs.push(
                Diag::new(format!("-var names undeclared variable {name:?}"))
                    .hint("declare it in the configuration"),
            );
            continue;
        };
        match raw_value(raw, var, dir, home) {
            Ok(v) => {
                c.out.values.insert(name.to_string(), v);
            }
            Err(d) => c.errs.push(d),
        }
    }
    if c.errs.is_empty() {
        Ok(c.out)
    } else {
        Err(ConfigError::new(c.errs))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn stack(main_tf: &str, files: &[(&str, &str)]) -> (tempfile::TempDir, ModuleConfig) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("main.tf"), main_tf).unwrap();
        for (name, text) in files {
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        let cfg = crate::parse::load(dir.path()).unwrap();
        (dir, cfg)
    }

    #[test]
    fn sensitive_values_are_not_quoted_in_errors() {
        let (_dir, cfg) = stack(
            r#"
variable "port" {
  type = number
}
variable "token" {
  type      = string
  sensitive = true
  validation {
    condition     = length(var.token) > 100
    error_message = "too short: ${var.token}"
  }
}
"#,
            &[],
        );
        let given = Value::string("hunter2-abc").mark_sensitive();
        let e = finish_variable(&cfg, "port", &cfg.variables["port"], Some(given), None)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("sensitive value") && !e.contains("hunter2"),
            "{e}"
        );
        let plain = Value::string("hunter2-abc");
        let e = finish_variable(&cfg, "token", &cfg.variables["token"], Some(plain), None)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("sensitive value") && !e.contains("hunter2"),
            "{e}"
        );
    }

    #[test]
    fn json_variable_files_are_read_and_plain_yaml_is_not() {
        let (_dir, cfg) = stack(
            "variable \"a\" {}\nvariable \"b\" {}\n",
            &[
                ("terraform.tfvars.json", r#"{"a": {"x": [1, 2]}}"#),
                ("b.auto.tfvars.json", r#"{"b": "json"}"#),
            ],
        );
        let got = collect(&cfg, &[], &Environment::default()).unwrap();
        assert_eq!(got.values["b"], Value::string("json"));
        assert!(matches!(got.values["a"].get_attr("x"), Some(Value::List(l)) if l.len() == 2));
        assert!(
            !got.values["a"].is_sensitive(),
            "a plain file's values are not marked"
        );
        std::fs::write(cfg.dir.join("c.yaml"), "a: 1\n").unwrap();
        let e = collect(
            &cfg,
            &[VariableArg::File(PathBuf::from("c.yaml"))],
            &Environment::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("only when SOPS-encrypted"), "{e}");
    }
}
