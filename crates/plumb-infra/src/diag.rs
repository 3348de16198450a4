//! Errors about configuration, pointing at file, line and column.
//!
//! A [`SourceFile`] keeps a file's path and text; a [`Diag`] is one problem,
//! placed in such a file when it can be; a [`ConfigError`] is the list of
//! problems that stopped an operation before it changed anything. How they
//! are shown (source snippets, labels, JSON) is the caller's business.

use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;

/// One `.tf` (or `.tfvars`) file as read.
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

/// One problem in the configuration.
#[derive(Debug, Clone)]
pub struct Diag {
    /// What is wrong.
    pub message: String,
    /// The file, if known.
    pub file: Option<Arc<SourceFile>>,
    /// The byte range in that file.
    pub span: Option<Range<usize>>,
    /// What to do about it.
    pub hint: Option<String>,
}

impl Diag {
    /// A diagnostic without a place.
    pub fn new(message: impl Into<String>) -> Diag {
        Diag {
            message: message.into(),
            file: None,
            span: None,
            hint: None,
        }
    }
    /// Places it.
    pub fn at(mut self, file: Arc<SourceFile>, span: Option<Range<usize>>) -> Diag {
        self.file = Some(file);
        self.span = span;
        self
    }
    /// Adds a hint.
    pub fn hint(mut self, hint: impl Into<String>) -> Diag {
        self.hint = Some(hint.into());
        self
    }
    /// `path:line:col`, when placed.
    pub fn location(&self) -> Option<String> {
        let f = self.file.as_ref()?;
        let (l, c) = f.line_col(self.span.as_ref().map(|s| s.start).unwrap_or(0));
        Some(format!("{}:{l}:{c}", f.path.display()))
    }
}

impl std::fmt::Display for Diag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.location() {
            Some(loc) => write!(f, "{loc}: {}", self.message),
            None => write!(f, "{}", self.message),
        }
    }
}

/// One or more configuration problems; nothing was changed.
#[derive(Debug, Clone)]
pub struct ConfigError {
    /// The problems, first one first.
    pub diags: Vec<Diag>,
}

impl ConfigError {
    /// Wraps diagnostics.
    pub fn new(diags: Vec<Diag>) -> ConfigError {
        ConfigError { diags }
    }
}

impl From<Diag> for ConfigError {
    fn from(d: Diag) -> Self {
        ConfigError::new(vec![d])
    }
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, d) in self.diags.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}
