//! A stack's configuration as the engine understands it: the blocks of
//! every `.tf` file (variables, locals, resources, outputs, providers,
//! module calls, `moved` and `import` blocks), each keeping its expressions
//! unevaluated and where it was written, so later errors can name file,
//! line and column.
//!
//! Reading the files is `parse`'s; finding what expressions refer to is
//! `references`'.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use hcl_edit::Span;
use hcl_edit::expr::Expression;
use hcl_edit::structure::{BlockLabel, Body};

use crate::diag::{Diag, SourceFile};

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

/// The `encryption` block of `terraform {}`: how state is kept encrypted
/// at rest (read by `encryption`).
#[derive(Clone, Debug)]
pub struct EncryptionBlock {
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
    /// State encryption, if configured.
    pub encryption: Option<EncryptionBlock>,
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

/// A block label's text, quoted or not.
pub fn label_text(label: &BlockLabel) -> String {
    match label {
        BlockLabel::Ident(i) => i.value().to_string(),
        BlockLabel::String(s) => s.value().to_string(),
    }
}

/// A traversal written as text, like `random_id.a[0]`, for moved/import targets.
pub fn expr_text(file: &SourceFile, e: &Expression) -> String {
    e.span()
        .and_then(|s| file.text.get(s))
        .map(|t| t.trim().to_string())
        .unwrap_or_default()
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

/// `path` as a stack in `dir` reads it: relative paths are the stack's, as
/// with Terraform after `-chdir`.
pub fn in_stack(dir: &Path, path: &Path) -> PathBuf {
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        dir.join(path)
    }
}
