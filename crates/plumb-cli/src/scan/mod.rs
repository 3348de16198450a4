//! `plumb artifact sbom` (and, later, `plumb artifact scan`): plumb-scan
//! presented on the command line. The flags, the choice between an image
//! reference and a directory, the environment (registry credentials,
//! `SOURCE_DATE_EPOCH`) and the errors with hints live here; plumb-scan
//! itself reads nothing process-wide.

pub mod sbom;
