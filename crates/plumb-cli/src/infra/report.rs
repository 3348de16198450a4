//! How `plumb infra` presents failures: as miette diagnostics that say what
//! went wrong and what to do next, or, with `-json`, as `diagnostic` lines
//! of the machine-readable UI.
//!
//! plumb-infra's errors are typed and carry no advice; the hints live here,
//! beside the commands they name. A configuration error shows the first
//! problem's place in its file; any other error is one line and a hint.
//! The message text of an error already includes its cause, so the cause
//! chain is not printed again.

use std::fmt;

use miette::{LabeledSpan, NamedSource, SourceCode};
use plumb_infra::diag::{ConfigError, Diag};
use plumb_infra::{InfraError, WalkResult};
use plumb_state::StateError;

use super::ui;

/// A failure of `plumb infra`.
#[derive(Debug)]
pub enum Failure {
    /// An operation on the stack failed.
    Infra(InfraError),
    /// The command line itself failed (a flag, a prompt).
    Cli {
        /// What went wrong.
        message: String,
        /// What to do.
        hint: String,
    },
}

impl Failure {
    /// A failure of the command line, with a hint.
    pub fn new(message: impl Into<String>, hint: impl Into<String>) -> Failure {
        Failure::Cli {
            message: message.into(),
            hint: hint.into(),
        }
    }
}

impl From<InfraError> for Failure {
    fn from(e: InfraError) -> Self {
        Failure::Infra(e)
    }
}

impl From<ConfigError> for Failure {
    fn from(e: ConfigError) -> Self {
        Failure::Infra(e.into())
    }
}

impl From<StateError> for Failure {
    fn from(e: StateError) -> Self {
        Failure::Infra(e.into())
    }
}

/// A failure reduced to what a person reads.
enum Presented<'a> {
    /// Configuration problems, placed in their files.
    Config(&'a ConfigError),
    /// One message and maybe a hint.
    Plain(String, Option<String>),
}

fn present(failure: &Failure) -> Presented<'_> {
    let e = match failure {
        Failure::Cli { message, hint } => {
            return Presented::Plain(message.clone(), Some(hint.clone()));
        }
        Failure::Infra(e) => e,
    };
    let state_list = "list addresses with plumb infra state list";
    let hint: Option<String> = match e {
        InfraError::Config(c) => return Presented::Config(c),
        InfraError::Problem(d) => return Presented::Plain(d.message.clone(), d.hint.clone()),
        InfraError::State(StateError::Locked(info)) => Some(format!(
            "wait for that operation to finish, retry with -lock-timeout=60s, or if it is stuck run: plumb infra force-unlock {}",
            info.id
        )),
        InfraError::State(StateError::LockMismatch { .. }) => {
            Some("run plumb infra force-unlock with the ID shown by the locked command".into())
        }
        InfraError::State(StateError::Undecryptable { .. }) => Some(
            "give an age identity of one of those recipients with --state-age-key-file FILE or PLUMB_STATE_AGE_KEY_FILE (without them, the SOPS keys are tried: --sops-age-key-file, SOPS_AGE_KEY_FILE, SOPS_AGE_KEY, ~/.config/sops/age/keys.txt); nothing was changed".into(),
        ),
        InfraError::State(StateError::Encrypted { .. }) => Some(
            "add the terraform { encryption { key_provider \"age\" … state { key = … } } } block that wrote it (see docs/SECRETS.md); nothing was changed".into(),
        ),
        InfraError::State(StateError::Plaintext { .. }) => Some(
            "to encrypt an existing state, set enforced = false for one apply (it reads the plaintext state and writes it encrypted), then enforce again".into(),
        ),
        InfraError::SealedVariables { .. } => Some(
            "apply the plan with an age identity of those recipients (--sops-age-key-file, SOPS_AGE_KEY_FILE or SOPS_AGE_KEY), or plan again".into(),
        ),
        InfraError::TargetAddress { .. } => {
            Some("write the address like random_id.a or random_id.a[0]".into())
        }
        InfraError::StateAddress { .. }
        | InfraError::NotInState { .. }
        | InfraError::NothingRemoved => Some(state_list.into()),
        InfraError::PlanRead { .. } => Some("check the path".into()),
        InfraError::NotAPlan { .. } => Some("create one with plumb infra plan -out=FILE".into()),
        InfraError::PlanWrite { .. } => Some("check the directory is writable".into()),
        InfraError::StalePlan { .. } => {
            Some("run plumb infra plan -out=FILE again and apply the new plan".into())
        }
        InfraError::AlreadyInState { .. } => Some("remove it first with state rm".into()),
        InfraError::NotConfigured { resource } => Some(format!(
            "add resource \"{}\" \"{}\" {{}} first, then import",
            resource.ty, resource.name
        )),
        InfraError::AlreadyManaged { .. } => Some("remove it with state rm to import again".into()),
        InfraError::ImportGone { .. } => Some("check the id".into()),
        InfraError::FormatSyntax { .. } => Some("fmt only formats valid files".into()),
        InfraError::State(_)
        | InfraError::StateWrite(_)
        | InfraError::ModuleNotConfigured { .. }
        | InfraError::Provider { .. }
        | InfraError::NothingToImport { .. }
        | InfraError::FormatIo { .. } => None,
    };
    Presented::Plain(e.to_string(), hint)
}

impl Failure {
    /// The failure as miette reports it.
    pub fn into_report(self) -> miette::Report {
        match present(&self) {
            Presented::Config(c) => miette::Report::new(ConfigReport::new(c.clone())),
            Presented::Plain(message, hint) => miette::Report::new(PlainReport { message, hint }),
        }
    }

    /// With `-json`: the failure as `diagnostic` lines on stdout.
    pub fn emit_json(&self) {
        match present(self) {
            Presented::Config(c) => c.diags.iter().for_each(ui::diagnostic),
            Presented::Plain(message, hint) => {
                let mut d = Diag::new(message);
                d.hint = hint;
                ui::diagnostic(&d);
            }
        }
    }
}

/// One message and a hint.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
#[error("{message}")]
struct PlainReport {
    message: String,
    #[help]
    hint: Option<String>,
}

/// Configuration problems, shown with the first one's place in its file.
#[derive(Debug)]
struct ConfigReport {
    error: ConfigError,
    source: Option<NamedSource<String>>,
}

impl ConfigReport {
    fn new(error: ConfigError) -> ConfigReport {
        let source = error.diags.first().and_then(|d| {
            d.file
                .as_ref()
                .map(|f| NamedSource::new(f.path.display().to_string(), f.text.clone()))
        });
        ConfigReport { error, source }
    }
}

impl fmt::Display for ConfigReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.error.fmt(f)
    }
}

impl std::error::Error for ConfigReport {}

impl miette::Diagnostic for ConfigReport {
    fn code<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        Some(Box::new("plumb::infra::config"))
    }
    fn help<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        let hint = self
            .error
            .diags
            .iter()
            .find_map(|d| d.hint.clone())
            .unwrap_or_else(|| {
                "fix the configuration and run the command again; nothing was changed".into()
            });
        Some(Box::new(hint))
    }
    fn source_code(&self) -> Option<&dyn SourceCode> {
        self.source.as_ref().map(|s| s as &dyn SourceCode)
    }
    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        let first = self.error.diags.first()?;
        let span = first.span.clone()?;
        let len = if span.end > span.start {
            (span.end - span.start).min(200)
        } else {
            1
        };
        Some(Box::new(std::iter::once(LabeledSpan::new(
            Some(first.message.clone()),
            span.start,
            len,
        ))))
    }
}

/// With `-json`, a failure becomes `diagnostic` lines and exit code 1.
pub fn json_errors(json: bool, r: Result<u8, Failure>) -> Result<u8, Failure> {
    match r {
        Err(e) if json => {
            e.emit_json();
            Ok(1)
        }
        r => r,
    }
}

/// The errors of a walk: `diagnostic` lines with `-json`, else each with
/// its place and hint on stderr.
pub fn print_errors(result: &WalkResult, json: bool) {
    if json {
        for e in &result.errors {
            ui::diagnostic(&e.diag);
        }
        return;
    }
    for e in &result.errors {
        let loc = e
            .diag
            .location()
            .map(|l| format!("\n  on {l}"))
            .unwrap_or_default();
        eprintln!("\nError: {}{loc}", e.diag.message);
        if let Some(h) = &e.diag.hint {
            eprintln!("  hint: {h}");
        }
    }
}
