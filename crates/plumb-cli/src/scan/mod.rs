//! `plumb advisories …` and `plumb artifact scan`: plumb-scan on the command line.
//!
//! The advisory store lives under `DATA_DIR/advisories` (the data
//! directory of `--data-dir`, `$PLUMB_DATA_DIR` or `~/.local/share/plumb`,
//! as for every other plumb cache).

pub mod advisories;
pub mod scan;
