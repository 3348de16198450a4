//! The offline advisory database: OSV records imported into a local store.
//!
//! [`import`] reads a directory tree of `*.json` OSV records or a `.zip` of
//! them (osv-scanner's offline `all.zip` per ecosystem is one), leaves
//! withdrawn records out, and indexes the rest by (ecosystem base name,
//! package name) into a redb file that replaces the previous store
//! atomically ([`store`]). Every store records the [`content_digest`] of its
//! input, which each scan report carries. [`osv`] holds the record types.

pub mod osv;
pub mod store;

use std::path::PathBuf;

pub use osv::{AffectedEntry, Event, Range, RangeKind};
pub use store::{
    AdvisoryStore, ImportOptions, ImportSummary, STORE_FILE, StoreMeta, content_digest, import,
};

/// An OSV record that could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidRecord {
    /// Its path in the input (relative to the directory, or the zip entry).
    pub file: String,
    /// The line of the error (1-based; 0 when unknown).
    pub line: usize,
    /// The column of the error (1-based; 0 when unknown).
    pub column: usize,
    /// What is wrong.
    pub message: String,
}

impl std::fmt::Display for InvalidRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file, self.line, self.column, self.message
        )
    }
}

fn list(records: &[InvalidRecord]) -> String {
    const SHOWN: usize = 20;
    let mut out: Vec<String> = records
        .iter()
        .take(SHOWN)
        .map(|r| format!("  {r}"))
        .collect();
    if records.len() > SHOWN {
        out.push(format!("  … and {} more", records.len() - SHOWN));
    }
    out.join("\n")
}

/// What can go wrong importing or reading advisories.
#[derive(Debug, thiserror::Error)]
pub enum AdvisoryError {
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The input is neither a directory nor a readable zip archive.
    #[error("{} is not a directory or a readable zip archive: {source}", path.display())]
    Zip {
        /// The file.
        path: PathBuf,
        /// Why.
        source: zip::result::ZipError,
    },
    /// The input holds no `*.json` records.
    #[error("{} holds no OSV records (*.json files)", path.display())]
    Empty {
        /// The input.
        path: PathBuf,
    },
    /// A record is too large to be an OSV record.
    #[error("{path}: larger than any OSV record (32 MiB)")]
    TooLarge {
        /// The record's path in the input.
        path: String,
    },
    /// Some records are invalid; nothing was imported.
    #[error("{} invalid OSV record(s); nothing was imported:\n{}", records.len(), list(records))]
    Invalid {
        /// Each invalid record with its position.
        records: Vec<InvalidRecord>,
    },
    /// No store has been imported.
    #[error("no advisory store at {}", path.display())]
    NoStore {
        /// Where it was looked for.
        path: PathBuf,
    },
    /// The store file could not be written or read.
    #[error("advisory store {}: {message}", path.display())]
    Store {
        /// The store file.
        path: PathBuf,
        /// What the store reported.
        message: String,
    },
}

/// Results of this module.
pub type Result<T, E = AdvisoryError> = std::result::Result<T, E>;
