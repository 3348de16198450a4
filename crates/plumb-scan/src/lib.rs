//! plumb's scanner: what is inside an image or a directory, and which known
//! vulnerabilities it carries.
//!
//! The pipeline has three stages with narrow types between them. A
//! *source* (an OCI image read layer by layer through plumb-oci's client,
//! whiteouts applied, or a directory) yields the few files that name
//! packages; *extractors* turn those into a [`Sbom`] of packages with
//! versions and PURLs (dpkg, apk, Cargo and cargo-auditable binaries, Go
//! binaries, npm lock files, Python metadata and pins), written as
//! CycloneDX 1.6 or SPDX 2.3; the *matcher* looks each package up in an
//! offline OSV advisory store ([`AdvisoryStore`], imported from a directory
//! or zip of OSV records) and compares versions in the package's own
//! ecosystem order ([`version`]), producing a [`ScanDocument`]: the
//! [`ScanReport`] the deploy gate reads, plus the database digest.
//! [`attach_report`] hangs a report on an image as an OCI referrer.
//!
//! This is a library with typed errors: no command line, no environment
//! reads, no runtime of its own (plumb-cli presents it, and plumb-policy
//! reads its report types). It reads registries and its own store, and
//! writes only the store and, when asked to attach, a referrer.

pub mod advisories;
pub mod cvss;
pub mod matcher;
pub mod output;
pub mod report;
pub mod sbom;
pub mod version;

pub use advisories::{AdvisoryError, AdvisoryStore, ImportOptions, ImportSummary, StoreMeta};
pub use matcher::scan;
pub use report::{
    DatabaseInfo, Finding, SCAN_REPORT_ARTIFACT_TYPE, SCAN_REPORT_MEDIA_TYPE, ScanDocument,
    ScanReport, ScannerInfo, Severity, Subject,
};
pub use sbom::{Ecosystem, Package, Sbom, SbomError, read_dir, read_image, read_layer_files};
