//! Reading a stack: every `.tf` file of a directory (and of the local modules
//! it calls), parsed with hcl-edit into the blocks the engine understands.
//!
//! Nothing is evaluated here; blocks keep their expressions and where they
//! came from, so later errors can name file, line and column.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use hcl_edit::Span;
use hcl_edit::expr::{Expression, TraversalOperator};
use hcl_edit::structure::{Block, Body, Structure};

use crate::diag::{ConfigError, Diag};

/// One parsed `.tf` file.
#[derive(Debug)]
pub struct SourceFile {
    /// Its path.
    pub path: PathBuf,
    /// Its text.
    pub text: String,
}

impl SourceFile {
    /// 1-based line and column of a byte offset.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let before = &self.text[..offset.min(self.text.len())];
        let line = before.matches('\n').count() + 1;
        let col = before
            .rsplit('\n')
            .next()
            .map(|l| l.chars().count())
            .unwrap_or(0)
            + 1;
        (line, col)
    }
}

/// Where something was written.
#[derive(Clone, Debug)]
pub struct Origin {
    /// The file.
    pub file: Arc<SourceFile>,
    /// The byte range.
    pub span: Option<Range<usize>>,
}

impl Origin {
    /// A diagnostic at this place.
    pub fn diag(&self, message: impl Into<String>) -> Diag {
        Diag::new(message).at(self.file.clone(), self.span.clone())
    }
    /// A diagnostic at a sub-range of this file.
    pub fn diag_at(&self, span: Option<Range<usize>>, message: impl Into<String>) -> Diag {
        Diag::new(message).at(self.file.clone(), span.or_else(|| self.span.clone()))
    }
}

/// `managed` resources or `data` sources.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Mode {
    /// `resource`
    Managed,
    /// `data`
    Data,
}

impl Mode {
    /// As written in state files.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Managed => "managed",
            Mode::Data => "data",
        }
    }
}

/// A provider requirement from `terraform { required_providers { ... } }`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProviderRequirement {
    /// `registry.terraform.io/hashicorp/random`
    pub source: String,
    /// Version constraint, if any.
    pub version: Option<String>,
}

/// A `backend` block.
#[derive(Clone, Debug)]
pub struct BackendBlock {
    /// `local` or `pg`.
    pub kind: String,
    /// Its body.
    pub body: Body,
    /// Where.
    pub origin: Origin,
}

/// A `provider` block.
#[derive(Clone, Debug)]
pub struct ProviderBlock {
    /// Local name.
    pub name: String,
    /// `alias`, if any.
    pub alias: Option<String>,
    /// The configuration body (meta-arguments removed).
    pub body: Body,
    /// Where.
    pub origin: Origin,
}

/// A `variable` block.
#[derive(Clone, Debug)]
pub struct VariableBlock {
    /// The type constraint expression.
    pub ty: Option<Expression>,
    /// Default.
    pub default: Option<Expression>,
    /// Redact everywhere.
    pub sensitive: bool,
    /// May be null.
    pub nullable: bool,
    /// `validation` blocks: condition and error message.
    pub validations: Vec<(Expression, Expression, Origin)>,
    /// Where.
    pub origin: Origin,
}

/// `lifecycle` settings.
#[derive(Clone, Debug, Default)]
pub struct Lifecycle {
    /// Create the replacement before destroying the old one.
    pub create_before_destroy: bool,
    /// Refuse plans that destroy this resource.
    pub prevent_destroy: bool,
    /// Attribute names whose configuration changes are ignored; `["*"]` for all.
    pub ignore_changes: Vec<String>,
}

/// A `resource` or `data` block.
#[derive(Clone, Debug)]
pub struct ResourceBlock {
    /// managed or data.
    pub mode: Mode,
    /// Resource type.
    pub ty: String,
    /// Name.
    pub name: String,
    /// `provider = name.alias`.
    pub provider: Option<(String, Option<String>)>,
    /// `count`
    pub count: Option<Expression>,
    /// `for_each`
    pub for_each: Option<Expression>,
    /// `depends_on` entries as references.
    pub depends_on: Vec<Reference>,
    /// `lifecycle`
    pub lifecycle: Lifecycle,
    /// The body without meta-arguments.
    pub body: Body,
    /// Where.
    pub origin: Origin,
}

impl ResourceBlock {
    /// `type.name` or `data.type.name`.
    pub fn address(&self) -> String {
        match self.mode {
            Mode::Managed => format!("{}.{}", self.ty, self.name),
            Mode::Data => format!("data.{}.{}", self.ty, self.name),
        }
    }
    /// The provider local name: explicit, or the type's prefix.
    pub fn provider_name(&self) -> String {
        match &self.provider {
            Some((n, _)) => n.clone(),
            None => self.ty.split('_').next().unwrap_or(&self.ty).to_string(),
        }
    }
}

/// An `output` block.
#[derive(Clone, Debug)]
pub struct OutputBlock {
    /// The value.
    pub value: Expression,
    /// Redact.
    pub sensitive: bool,
    /// `depends_on`
    pub depends_on: Vec<Reference>,
    /// Where.
    pub origin: Origin,
}

/// A `module` call of a local module.
#[derive(Clone, Debug)]
pub struct ModuleCall {
    /// `source`, a relative path.
    pub source: String,
    /// Input arguments.
    pub inputs: BTreeMap<String, Expression>,
    /// The called module.
    pub config: Arc<ModuleConfig>,
    /// `count`: one instance of the module per index.
    pub count: Option<Expression>,
    /// `for_each`: one instance of the module per key.
    pub for_each: Option<Expression>,
    /// `depends_on`
    pub depends_on: Vec<Reference>,
    /// Where.
    pub origin: Origin,
}

/// A `moved` block.
#[derive(Clone, Debug)]
pub struct MovedBlock {
    /// Old address.
    pub from: String,
    /// New address.
    pub to: String,
    /// Where.
    pub origin: Origin,
}

/// An `import` block.
#[derive(Clone, Debug)]
pub struct ImportBlock {
    /// Target address.
    pub to: String,
    /// The id expression.
    pub id: Expression,
    /// Where.
    pub origin: Origin,
}

/// Something an expression refers to.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Reference {
    /// `var.NAME`
    Var(String),
    /// `local.NAME`
    Local(String),
    /// `TYPE.NAME` or `data.TYPE.NAME`
    Resource(Mode, String, String),
    /// `module.NAME`
    Module(String),
}

/// One module directory, parsed.
#[derive(Debug, Default)]
pub struct ModuleConfig {
    /// The directory.
    pub dir: PathBuf,
    /// Provider requirements.
    pub required_providers: BTreeMap<String, ProviderRequirement>,
    /// The backend, if configured.
    pub backend: Option<BackendBlock>,
    /// Provider configurations.
    pub providers: Vec<ProviderBlock>,
    /// Variables.
    pub variables: BTreeMap<String, VariableBlock>,
    /// Locals.
    pub locals: BTreeMap<String, (Expression, Origin)>,
    /// Resources and data sources.
    pub resources: Vec<ResourceBlock>,
    /// Outputs.
    pub outputs: BTreeMap<String, OutputBlock>,
    /// Module calls.
    pub modules: BTreeMap<String, ModuleCall>,
    /// Moves.
    pub moved: Vec<MovedBlock>,
    /// Imports.
    pub imports: Vec<ImportBlock>,
}

fn ident_or_string(label: &hcl_edit::structure::BlockLabel) -> String {
    match label {
        hcl_edit::structure::BlockLabel::Ident(i) => i.value().to_string(),
        hcl_edit::structure::BlockLabel::String(s) => s.value().to_string(),
    }
}

/// A traversal written as text, like `random_id.a[0]`, for moved/import targets.
pub fn expr_text(file: &SourceFile, e: &Expression) -> String {
    e.span()
        .and_then(|s| file.text.get(s))
        .map(|t| t.trim().to_string())
        .unwrap_or_default()
}

/// Everything an expression refers to.
pub fn references(expr: &Expression) -> Vec<Reference> {
    let mut out = Vec::new();
    let mut bound = Vec::new();
    walk_refs(expr, &mut bound, &mut out);
    out.sort();
    out.dedup();
    out
}

/// References of every attribute and nested block in a body.
pub fn body_references(body: &Body) -> Vec<Reference> {
    let mut out = Vec::new();
    let mut bound = Vec::new();
    walk_body(body, &mut bound, &mut out);
    out.sort();
    out.dedup();
    out
}

fn walk_body(body: &Body, bound: &mut Vec<String>, out: &mut Vec<Reference>) {
    for s in body.iter() {
        match s {
            Structure::Attribute(a) => walk_refs(&a.value, bound, out),
            Structure::Block(b) => {
                if b.ident.value().as_str() == "dynamic" {
                    let name = b
                        .body
                        .get_attribute("iterator")
                        .and_then(|a| match &a.value {
                            Expression::Variable(v) => Some(v.value().to_string()),
                            _ => None,
                        })
                        .or_else(|| b.labels.first().map(ident_or_string))
                        .unwrap_or_default();
                    bound.push(name);
                    walk_body(&b.body, bound, out);
                    bound.pop();
                } else {
                    walk_body(&b.body, bound, out);
                }
            }
        }
    }
}

fn reference_of(root: &str, attrs: &[String]) -> Option<Reference> {
    match root {
        "var" => attrs.first().map(|a| Reference::Var(a.clone())),
        "local" => attrs.first().map(|a| Reference::Local(a.clone())),
        "module" => attrs.first().map(|a| Reference::Module(a.clone())),
        "data" => match attrs {
            [t, n, ..] => Some(Reference::Resource(Mode::Data, t.clone(), n.clone())),
            _ => None,
        },
        "count" | "each" | "path" | "terraform" | "self" => None,
        ty => attrs
            .first()
            .map(|n| Reference::Resource(Mode::Managed, ty.to_string(), n.clone())),
    }
}

fn walk_refs(expr: &Expression, bound: &mut Vec<String>, out: &mut Vec<Reference>) {
    match expr {
        Expression::Variable(v) => {
            let name = v.value().to_string();
            if !bound.contains(&name)
                && let Some(r) = reference_of(&name, &[])
            {
                out.push(r);
            }
        }
        Expression::Traversal(t) => {
            if let Expression::Variable(v) = &t.expr {
                let root = v.value().to_string();
                if !bound.contains(&root) {
                    let attrs: Vec<String> = t
                        .operators
                        .iter()
                        .map_while(|o| match o.value() {
                            TraversalOperator::GetAttr(a) => Some(a.value().to_string()),
                            _ => None,
                        })
                        .collect();
                    if let Some(r) = reference_of(&root, &attrs) {
                        out.push(r);
                    }
                }
            } else {
                walk_refs(&t.expr, bound, out);
            }
            for op in &t.operators {
                if let TraversalOperator::Index(e) = op.value() {
                    walk_refs(e, bound, out);
                }
            }
        }
        Expression::Array(a) => a.iter().for_each(|e| walk_refs(e, bound, out)),
        Expression::Object(o) => {
            for (k, v) in o.iter() {
                if let hcl_edit::expr::ObjectKey::Expression(e) = k
                    && !matches!(e, Expression::Variable(_))
                {
                    walk_refs(e, bound, out);
                }
                walk_refs(v.expr(), bound, out);
            }
        }
        Expression::StringTemplate(t) => walk_template(t, bound, out),
        Expression::HeredocTemplate(h) => walk_template(&h.template, bound, out),
        Expression::Parenthesis(p) => walk_refs(p.inner(), bound, out),
        Expression::Conditional(c) => {
            walk_refs(&c.cond_expr, bound, out);
            walk_refs(&c.true_expr, bound, out);
            walk_refs(&c.false_expr, bound, out);
        }
        Expression::FuncCall(f) => f.args.iter().for_each(|e| walk_refs(e, bound, out)),
        Expression::UnaryOp(u) => walk_refs(&u.expr, bound, out),
        Expression::BinaryOp(b) => {
            walk_refs(&b.lhs_expr, bound, out);
            walk_refs(&b.rhs_expr, bound, out);
        }
        Expression::ForExpr(f) => {
            walk_refs(&f.intro.collection_expr, bound, out);
            let n = bound.len();
            if let Some(k) = &f.intro.key_var {
                bound.push(k.value().to_string());
            }
            bound.push(f.intro.value_var.value().to_string());
            if let Some(k) = &f.key_expr {
                walk_refs(k, bound, out);
            }
            walk_refs(&f.value_expr, bound, out);
            if let Some(c) = &f.cond {
                walk_refs(&c.expr, bound, out);
            }
            bound.truncate(n);
        }
        _ => {}
    }
}

fn walk_template(
    t: &hcl_edit::template::Template,
    bound: &mut Vec<String>,
    out: &mut Vec<Reference>,
) {
    use hcl_edit::template::{Directive, Element};
    for el in t.iter() {
        match el {
            Element::Literal(_) => {}
            Element::Interpolation(i) => walk_refs(&i.expr, bound, out),
            Element::Directive(d) => match d.as_ref() {
                Directive::If(i) => {
                    walk_refs(&i.if_expr.cond_expr, bound, out);
                    walk_template(&i.if_expr.template, bound, out);
                    if let Some(e) = &i.else_expr {
                        walk_template(&e.template, bound, out);
                    }
                }
                Directive::For(f) => {
                    walk_refs(&f.for_expr.collection_expr, bound, out);
                    let n = bound.len();
                    if let Some(k) = &f.for_expr.key_var {
                        bound.push(k.value().to_string());
                    }
                    bound.push(f.for_expr.value_var.value().to_string());
                    walk_template(&f.for_expr.template, bound, out);
                    bound.truncate(n);
                }
            },
        }
    }
}

fn parse_depends_on(e: &Expression, origin: &Origin, errs: &mut Vec<Diag>) -> Vec<Reference> {
    let mut out = Vec::new();
    match e {
        Expression::Array(a) => {
            for item in a.iter() {
                let refs = references(item);
                if refs.is_empty() {
                    errs.push(origin.diag_at(
                        item.span(),
                        "depends_on entries must be references to resources or modules",
                    ));
                }
                out.extend(refs);
            }
        }
        other => errs.push(origin.diag_at(other.span(), "depends_on must be a list of references")),
    }
    out
}

fn bool_attr(body: &Body, name: &str, origin: &Origin, errs: &mut Vec<Diag>) -> bool {
    match body.get_attribute(name).map(|a| &a.value) {
        None => false,
        Some(Expression::Bool(b)) => *b.value(),
        Some(other) => {
            errs.push(origin.diag_at(
                other.span(),
                format!("{name} must be true or false (a literal)"),
            ));
            false
        }
    }
}

fn string_attr(file: &Arc<SourceFile>, body: &Body, name: &str) -> Option<String> {
    body.get_attribute(name).map(|a| match &a.value {
        Expression::String(s) => s.value().to_string(),
        other => expr_text(file, other).trim_matches('"').to_string(),
    })
}

/// Loads the module in `dir` and every local module it calls.
pub fn load(dir: &Path) -> Result<ModuleConfig, ConfigError> {
    let mut stack = Vec::new();
    load_inner(dir, &mut stack)
}

fn load_inner(dir: &Path, stack: &mut Vec<PathBuf>) -> Result<ModuleConfig, ConfigError> {
    let canon = dir.canonicalize().map_err(|e| {
        ConfigError::from(Diag::new(format!(
            "cannot read directory {}: {e}",
            dir.display()
        )))
    })?;
    if stack.contains(&canon) {
        return Err(Diag::new(format!("module {} calls itself", dir.display())).into());
    }
    stack.push(canon);
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| {
            ConfigError::from(Diag::new(format!(
                "cannot read directory {}: {e}",
                dir.display()
            )))
        })?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "tf") && p.is_file())
        .collect();
    paths.sort();
    let mut cfg = ModuleConfig {
        dir: dir.to_path_buf(),
        ..Default::default()
    };
    let mut errs = Vec::new();
    for path in paths {
        let text = std::fs::read_to_string(&path).map_err(|e| {
            ConfigError::from(Diag::new(format!("cannot read {}: {e}", path.display())))
        })?;
        let file = Arc::new(SourceFile {
            path: path.clone(),
            text,
        });
        let body = match hcl_edit::parser::parse_body(&file.text) {
            Ok(b) => b,
            Err(e) => {
                let loc = e.location();
                let offset = loc.offset();
                errs.push(
                    Diag::new(format!("syntax error: {}", e.message()))
                        .at(file.clone(), Some(offset..offset))
                        .hint("fix the syntax at the marked position; nothing was changed"),
                );
                continue;
            }
        };
        for s in body.iter() {
            match s {
                Structure::Attribute(a) => errs.push(
                    Diag::new(format!(
                        "unexpected attribute {:?} at the top level",
                        a.key.value().as_str()
                    ))
                    .at(file.clone(), a.span()),
                ),
                Structure::Block(b) => read_block(&file, b, &mut cfg, &mut errs, stack),
            }
        }
    }
    stack.pop();
    if errs.is_empty() {
        Ok(cfg)
    } else {
        Err(ConfigError::new(errs))
    }
}

fn read_block(
    file: &Arc<SourceFile>,
    b: &Block,
    cfg: &mut ModuleConfig,
    errs: &mut Vec<Diag>,
    stack: &mut Vec<PathBuf>,
) {
    let origin = Origin {
        file: file.clone(),
        span: b.span(),
    };
    let labels: Vec<String> = b.labels.iter().map(ident_or_string).collect();
    let kind = b.ident.value().as_str();
    let want = |n: usize, errs: &mut Vec<Diag>| -> bool {
        if labels.len() != n {
            errs.push(origin.diag(format!(
                "a {kind} block needs {n} label(s), found {}",
                labels.len()
            )));
            false
        } else {
            true
        }
    };
    match kind {
        "terraform" => {
            for inner in b.body.blocks() {
                match inner.ident.value().as_str() {
                    "required_providers" => {
                        for a in inner.body.attributes() {
                            let name = a.key.value().to_string();
                            let (source, version) = match &a.value {
                                Expression::Object(o) => {
                                    let mut source = None;
                                    let mut version = None;
                                    for (k, v) in o.iter() {
                                        let key = match k {
                                            hcl_edit::expr::ObjectKey::Ident(i) => i.value().to_string(),
                                            hcl_edit::expr::ObjectKey::Expression(e) => expr_text(file, e).trim_matches('"').to_string(),
                                        };
                                        let val = v.expr().as_str().map(str::to_string);
                                        match key.as_str() {
                                            "source" => source = val,
                                            "version" => version = val,
                                            _ => {}
                                        }
                                    }
                                    (source.unwrap_or_else(|| format!("hashicorp/{name}")), version)
                                }
                                Expression::String(s) => (format!("hashicorp/{name}"), Some(s.value().to_string())),
                                other => {
                                    errs.push(origin.diag_at(other.span(), "required_providers entries are objects with source and version"));
                                    continue;
                                }
                            };
                            cfg.required_providers.insert(
                                name,
                                ProviderRequirement {
                                    source: normalize_source(&source),
                                    version,
                                },
                            );
                        }
                    }
                    "backend" => {
                        let kind = inner.labels.first().map(ident_or_string).unwrap_or_default();
                        cfg.backend = Some(BackendBlock {
                            kind,
                            body: inner.body.clone(),
                            origin: Origin {
                                file: file.clone(),
                                span: inner.span(),
                            },
                        });
                    }
                    _ => {}
                }
            }
        }
        "provider" => {
            if !want(1, errs) {
                return;
            }
            let alias = string_attr(file, &b.body, "alias");
            let mut body = b.body.clone();
            body.remove_attribute("alias");
            body.remove_attribute("version");
            cfg.providers.push(ProviderBlock {
                name: labels[0].clone(),
                alias,
                body,
                origin,
            });
        }
        "variable" => {
            if !want(1, errs) {
                return;
            }
            let mut validations = Vec::new();
            for v in b.body.blocks().filter(|x| x.ident.value().as_str() == "validation") {
                match (v.body.get_attribute("condition"), v.body.get_attribute("error_message")) {
                    (Some(c), Some(m)) => validations.push((
                        c.value.clone(),
                        m.value.clone(),
                        Origin {
                            file: file.clone(),
                            span: c.value.span(),
                        },
                    )),
                    _ => errs.push(origin.diag("a validation block needs condition and error_message")),
                }
            }
            let nullable = match b.body.get_attribute("nullable").map(|a| &a.value) {
                Some(Expression::Bool(x)) => *x.value(),
                _ => true,
            };
            cfg.variables.insert(
                labels[0].clone(),
                VariableBlock {
                    ty: b.body.get_attribute("type").map(|a| a.value.clone()),
                    default: b.body.get_attribute("default").map(|a| a.value.clone()),
                    sensitive: bool_attr(&b.body, "sensitive", &origin, errs),
                    nullable,
                    validations,
                    origin,
                },
            );
        }
        "locals" => {
            for a in b.body.attributes() {
                cfg.locals.insert(
                    a.key.value().to_string(),
                    (
                        a.value.clone(),
                        Origin {
                            file: file.clone(),
                            span: a.span(),
                        },
                    ),
                );
            }
        }
        "resource" | "data" => {
            if !want(2, errs) {
                return;
            }
            let mode = if kind == "resource" { Mode::Managed } else { Mode::Data };
            let mut body = b.body.clone();
            let count = body.remove_attribute("count").map(|a| a.value);
            let for_each = body.remove_attribute("for_each").map(|a| a.value);
            if count.is_some() && for_each.is_some() {
                errs.push(origin.diag("count and for_each cannot both be set"));
            }
            let depends_on = body
                .remove_attribute("depends_on")
                .map(|a| parse_depends_on(&a.value, &origin, errs))
                .unwrap_or_default();
            let provider = body.remove_attribute("provider").map(|a| {
                let text = expr_text(file, &a.value);
                match text.split_once('.') {
                    Some((n, al)) => (n.to_string(), Some(al.to_string())),
                    None => (text, None),
                }
            });
            let mut lifecycle = Lifecycle::default();
            let lc_blocks: Vec<Block> = body.blocks().filter(|x| x.ident.value().as_str() == "lifecycle").cloned().collect();
            for lc in &lc_blocks {
                lifecycle.create_before_destroy = bool_attr(&lc.body, "create_before_destroy", &origin, errs);
                lifecycle.prevent_destroy = bool_attr(&lc.body, "prevent_destroy", &origin, errs);
                if let Some(ic) = lc.body.get_attribute("ignore_changes") {
                    match &ic.value {
                        Expression::Array(a) => {
                            lifecycle.ignore_changes = a.iter().map(|e| expr_text(file, e)).collect();
                        }
                        Expression::Variable(v) if v.value().as_str() == "all" => {
                            lifecycle.ignore_changes = vec!["*".into()];
                        }
                        other => errs.push(origin.diag_at(other.span(), "ignore_changes must be a list of attribute names or all")),
                    }
                }
            }
            body.remove_blocks("lifecycle");
            cfg.resources.push(ResourceBlock {
                mode,
                ty: labels[0].clone(),
                name: labels[1].clone(),
                provider,
                count,
                for_each,
                depends_on,
                lifecycle,
                body,
                origin,
            });
        }
        "output" => {
            if !want(1, errs) {
                return;
            }
            let Some(value) = b.body.get_attribute("value").map(|a| a.value.clone()) else {
                errs.push(origin.diag("an output needs a value"));
                return;
            };
            let depends_on = b
                .body
                .get_attribute("depends_on")
                .map(|a| parse_depends_on(&a.value, &origin, errs))
                .unwrap_or_default();
            cfg.outputs.insert(
                labels[0].clone(),
                OutputBlock {
                    value,
                    sensitive: bool_attr(&b.body, "sensitive", &origin, errs),
                    depends_on,
                    origin,
                },
            );
        }
        "module" => {
            if !want(1, errs) {
                return;
            }
            let Some(source) = string_attr(file, &b.body, "source") else {
                errs.push(origin.diag("a module block needs a source"));
                return;
            };
            if !(source.starts_with("./") || source.starts_with("../")) {
                errs.push(
                    origin
                        .diag(format!("module source {source:?} is not a local path"))
                        .hint("plumb loads local modules (./ or ../); copy the module next to the stack"),
                );
                return;
            }
            let child_dir = cfg.dir.join(&source);
            let child = match load_inner(&child_dir, stack) {
                Ok(c) => c,
                Err(e) => {
                    errs.extend(e.diags);
                    return;
                }
            };
            let mut inputs = BTreeMap::new();
            let mut depends_on = Vec::new();
            let (mut count, mut for_each) = (None, None);
            for a in b.body.attributes() {
                let k = a.key.value().to_string();
                match k.as_str() {
                    "source" | "version" | "providers" => {}
                    "depends_on" => depends_on = parse_depends_on(&a.value, &origin, errs),
                    "count" => count = Some(a.value.clone()),
                    "for_each" => for_each = Some(a.value.clone()),
                    _ => {
                        inputs.insert(k, a.value.clone());
                    }
                }
            }
            if count.is_some() && for_each.is_some() {
                errs.push(origin.diag("count and for_each cannot both be set"));
                return;
            }
            cfg.modules.insert(
                labels[0].clone(),
                ModuleCall {
                    source,
                    inputs,
                    config: Arc::new(child),
                    count,
                    for_each,
                    depends_on,
                    origin,
                },
            );
        }
        "moved" => match (b.body.get_attribute("from"), b.body.get_attribute("to")) {
            (Some(f), Some(t)) => cfg.moved.push(MovedBlock {
                from: expr_text(file, &f.value),
                to: expr_text(file, &t.value),
                origin,
            }),
            _ => errs.push(origin.diag("a moved block needs from and to")),
        },
        "import" => match (b.body.get_attribute("to"), b.body.get_attribute("id")) {
            (Some(t), Some(i)) => cfg.imports.push(ImportBlock {
                to: expr_text(file, &t.value),
                id: i.value.clone(),
                origin,
            }),
            _ => errs.push(origin.diag("an import block needs to and id")),
        },
        "check" | "removed" => {}
        other => errs.push(
            origin
                .diag(format!("unsupported block type {other:?}"))
                .hint("top-level blocks are terraform, provider, variable, locals, resource, data, output, module, moved, import"),
        ),
    }
}

/// `hashicorp/random` → `registry.terraform.io/hashicorp/random`.
pub fn normalize_source(s: &str) -> String {
    let parts: Vec<&str> = s.split('/').collect();
    match parts.len() {
        1 => format!(
            "registry.terraform.io/hashicorp/{}",
            parts[0].to_lowercase()
        ),
        2 => format!("registry.terraform.io/{}", s.to_lowercase()),
        _ => s.to_lowercase(),
    }
}
