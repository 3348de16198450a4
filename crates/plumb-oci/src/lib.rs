//! OCI content on the client side: digests, references, manifests, a registry
//! client, cosign-compatible signatures and artifact packaging.
//!
//! This crate owns everything plumb says *to* a registry, any registry: it
//! pushes and pulls over the distribution API ([`client`], with the
//! [`credentials`] it presents), signs and verifies in cosign's two formats
//! ([`cosign`], [`signing`]), and packs files into reproducible artifacts
//! ([`artifact`]). It is a library with typed errors and no command line:
//! `plumb artifact` lives in plumb-cli, which reads the environment, passes
//! what it found in as values, and presents results and errors. Nothing here
//! reads process-wide state, builds an async runtime or installs the TLS
//! provider. It holds no server code and no storage either: `plumb-registry`
//! is the server and depends on the vocabulary here (digests, names, manifest
//! summaries), never the reverse.

pub mod artifact;
pub mod client;
pub mod cosign;
pub mod credentials;
pub mod digest;
pub mod manifest;
pub mod reference;
pub mod signing;

pub use digest::{Algorithm, ContentHasher, Digest, DigestError};
pub use reference::{Reference, RepositoryName, Tag};
