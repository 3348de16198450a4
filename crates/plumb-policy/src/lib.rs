//! The deploy gate: only images that pass the policy reach the cluster.
//!
//! A policy file ([`PolicyFile`]) names, per Application (name and project
//! globs, or the `plumb.dev/policy` annotation) and per image (repository
//! globs), what an image must be to run: immutably tagged (a git SHA, a short
//! SHA, `vX.Y.Z`, or a digest), signed by one of the listed cosign keys (in
//! either format plumb reads: the simple-signing `.sig` tag or a Sigstore
//! bundle referrer), and scanned without a finding at or above a severity
//! (accepted vulnerability ids aside, each until its expiry date); and
//! whether the image is pinned to the digest it resolved to before it is
//! applied.
//!
//! [`Gate`] is a [`plumb_pipeline::Check`]: it runs between render and apply,
//! for `plumb sync` and the agent alike, finds every image in the rendered
//! objects ([`find_images`]), asks the registries (any OCI registry, through
//! plumb-oci's client) and refuses the whole Application when one image does
//! not pass, so a refused commit changes nothing in the cluster. A registry
//! that cannot be reached refuses too: an outage never admits an image.
//! Positive answers are cached by digest.
//!
//! This crate reads registries and never writes to them, nor to a cluster.

mod file;
mod gate;
mod image;
mod registry;
mod report;
mod rules;

pub use file::{
    DEFAULT_TAG_PATTERNS, ImagePath, Policy, PolicyError, PolicyFile, ScanRule, SignatureRule,
    TagRule,
};
pub use gate::{Evaluation, Gate, POLICY_ANNOTATION};
pub use image::{ImageError, ImageName, ImageUse, find_images};
pub use registry::{Registries, RegistryAccess};
pub use report::{
    Finding, SCAN_REPORT_ARTIFACT_TYPE, SCAN_REPORT_MEDIA_TYPE, ScanReport, Severity,
};
pub use rules::{Denial, ImageVerdict, Rule};
