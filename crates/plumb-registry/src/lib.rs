//! plumb's OCI registry: the distribution API (v1.1) over a content-addressed
//! blob store, with immutable tags, retention and online garbage collection.
//!
//! This crate owns the server side of artifacts: the bytes on disk under the
//! registry root ([`blobs`]), the metadata about them in an embedded
//! transactional store ([`meta`]), the rules that govern them ([`config`]),
//! who may touch them ([`auth`], with Bearer tokens from [`token`]), the
//! pull-through caches mirroring other registries ([`proxy`]), the registry's operations ([`service`]) and
//! its write path ([`upload`]), the scanning of what is pushed ([`scan`]), the HTTP surface ([`http`], [`server`]), what
//! it counts ([`metrics`]) and their collection ([`gc`]). It is a library with
//! typed errors and no command line: `plumb registry` lives in plumb-cli, which
//! owns the flags, the runtime, the TLS provider and the presentation of
//! errors. It speaks OCI through `plumb-oci`'s vocabulary and must not reach
//! into clusters, Git or infrastructure state. It signs only its own scan
//! reports, and only with a key it is given; other signatures are ordinary
//! referrers to it. It does not know how to scan: plumb-cli hands it a
//! scanner.

pub mod auth;
pub mod blobs;
pub mod config;
pub mod error;
pub mod gc;
pub mod http;
pub mod meta;
pub mod metrics;
pub mod proxy;
pub mod scan;
pub mod server;
pub mod service;
pub mod token;
pub mod upload;
pub mod upstream;

pub use config::RegistryConfig;
pub use error::RegistryError;
pub use service::Registry;
