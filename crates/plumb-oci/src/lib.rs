//! OCI content on the client side: digests, references, manifests, a registry
//! client, cosign-compatible signatures and artifact packaging.
//!
//! This crate owns everything plumb says *to* a registry, any registry: it
//! pushes and pulls over the distribution API, signs and verifies in cosign's
//! two formats, and packs files into reproducible artifacts. It holds no server
//! code and no storage: `plumb-registry` is the server and depends on the
//! vocabulary here (digests, names, manifest summaries), never the reverse.

pub mod artifact;
pub mod cli;
pub mod client;
pub mod cosign;
pub mod credentials;
pub mod digest;
pub mod manifest;
pub mod reference;
pub mod signing;

pub use digest::{Algorithm, ContentHasher, Digest, DigestError};
pub use reference::{Reference, RepositoryName, Tag};
