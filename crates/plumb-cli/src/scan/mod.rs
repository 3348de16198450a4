//! `plumb artifact sbom`, `plumb artifact scan`, `plumb advisories …` and
//! the scanner `plumb registry serve` runs:
//! plumb-scan presented on the command line. The flags, the choice between
//! an image reference and a directory, the environment (registry
//! credentials, `SOURCE_DATE_EPOCH`) and the errors with hints live here;
//! plumb-scan itself reads nothing process-wide.
//!
//! The advisory store lives under `DATA_DIR/advisories` (the data
//! directory of `--data-dir`, `$PLUMB_DATA_DIR` or `~/.local/share/plumb`,
//! as for every other plumb cache).

pub mod advisories;
pub mod findings;
pub mod registry;
pub mod sbom;
