//! plumb's client for the Terraform provider plugin protocol.
//!
//! This crate owns everything between plumb and a provider binary: starting
//! it with the go-plugin handshake (magic cookie, `PLUGIN_PROTOCOL_VERSIONS`,
//! an AutoMTLS client certificate, a unix socket), the tfplugin5 and tfplugin6
//! gRPC services (from plumb's own `.proto` files), the msgpack encoding of
//! values including unknowns, and schema-driven decoding into [`Value`].
//!
//! It must not know about configuration files, plans or state: it speaks one
//! provider at a time and leaves orchestration to plumb-infra.

pub mod msgpack;
pub mod plugin;
pub mod provider;
pub mod schema;
pub mod value;

pub use plugin::LaunchOptions;
pub use provider::{Diagnostic, ImportedResource, PlannedChange, Provider, format_path};
pub use schema::{Attribute, Block, NestedBlock, Nesting, ProviderSchema, Schema};
pub use value::{Number, PathStep, Type, Value, ValueError};

/// Everything that can go wrong talking to a provider.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The binary could not be started.
    #[error("cannot start provider {binary}: {message}")]
    Start {
        /// The binary.
        binary: String,
        /// Why.
        message: String,
    },
    /// The handshake failed or was not understood.
    #[error("provider handshake failed: {0}")]
    Handshake(String),
    /// TLS setup failed.
    #[error("provider TLS setup failed: {0}")]
    Tls(String),
    /// A gRPC call failed.
    #[error("provider call failed: {0}")]
    Rpc(String),
    /// The provider reported errors.
    #[error("{operation}: {}", diagnostics.iter().map(|d| d.to_string()).collect::<Vec<_>>().join("; "))]
    Provider {
        /// The RPC.
        operation: String,
        /// The error diagnostics.
        diagnostics: Vec<Diagnostic>,
    },
    /// The provider has no such resource type or data source.
    #[error("the provider has no type {0:?}")]
    UnknownType(String),
    /// A value did not fit its type.
    #[error(transparent)]
    Value(#[from] ValueError),
}
