//! One client over both protocol major versions.
//!
//! Protocols 5 and 6 carry the same operations under different names (and 6
//! adds nested attributes); [`Provider`] hides that, speaking plumb's
//! [`Value`]s in and out and turning provider diagnostics into errors.
//!
//! Each call is written once: `call!` expands it for both generated modules,
//! seen through `v5` and `v6`, which add the conversions of values and
//! schemas; a call the protocols name differently names both.

use std::collections::BTreeMap;
use std::path::Path;

use tokio::sync::Mutex;

use crate::plugin::{self, ClientIdentity, LaunchOptions, PluginProcess};
use crate::schema::{
    Attribute, Block, NestedAttributes, NestedBlock, Nesting, ProviderSchema, Schema,
};
use crate::value::{PathStep, Type, Value};
use crate::{Error, msgpack};

/// Generated protocol-5 messages and client.
#[allow(missing_docs, clippy::all)]
pub mod tfplugin5 {
    tonic::include_proto!("tfplugin5");
}

/// Generated protocol-6 messages and client.
#[allow(missing_docs, clippy::all)]
pub mod tfplugin6 {
    tonic::include_proto!("tfplugin6");
}

/// A diagnostic a provider returned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    /// An error (true) or a warning.
    pub error: bool,
    /// One-line summary.
    pub summary: String,
    /// Longer explanation.
    pub detail: String,
    /// The attribute it is about, if any.
    pub attribute: Vec<PathStep>,
}

impl std::fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.summary)?;
        if !self.attribute.is_empty() {
            write!(f, " (at {})", format_path(&self.attribute))?;
        }
        if !self.detail.is_empty() {
            write!(f, ": {}", self.detail)?;
        }
        Ok(())
    }
}

/// Renders an attribute path like `.tags["a"][0]`.
pub fn format_path(path: &[PathStep]) -> String {
    let mut s = String::new();
    for step in path {
        match step {
            PathStep::Attr(a) => {
                s.push('.');
                s.push_str(a);
            }
            PathStep::Key(k) => s.push_str(&format!("[{k:?}]")),
            PathStep::Index(i) => s.push_str(&format!("[{i}]")),
        }
    }
    s
}

/// The outcome of planning one resource.
#[derive(Clone, Debug)]
pub struct PlannedChange {
    /// The state the provider expects after apply (may hold unknowns).
    pub planned_state: Value,
    /// Attributes whose change forces replacement.
    pub requires_replace: Vec<Vec<PathStep>>,
    /// Opaque provider data to pass to apply.
    pub planned_private: Vec<u8>,
    /// Warnings.
    pub warnings: Vec<Diagnostic>,
}

/// A resource the provider found for an import id.
#[derive(Clone, Debug)]
pub struct ImportedResource {
    /// Its resource type.
    pub type_name: String,
    /// Its state.
    pub state: Value,
    /// Opaque provider data.
    pub private: Vec<u8>,
}

#[derive(Clone)]
enum Client {
    V5(tfplugin5::provider_client::ProviderClient<tonic::transport::Channel>),
    V6(tfplugin6::provider_client::ProviderClient<tonic::transport::Channel>),
}

/// A started provider, ready for calls. Calls may run concurrently.
pub struct Provider {
    client: Client,
    schema: ProviderSchema,
    process: Mutex<Option<PluginProcess>>,
    name: String,
}

const MAX_MESSAGE: usize = 256 * 1024 * 1024;

fn rpc_err(e: tonic::Status) -> Error {
    Error::Rpc(format!("{}: {}", e.code(), e.message()))
}

macro_rules! decode_dv {
    ($dv:expr, $ty:expr) => {
        match $dv {
            Some(dv) if !dv.msgpack.is_empty() => msgpack::decode(&dv.msgpack, $ty)?,
            Some(dv) if !dv.json.is_empty() => {
                let json: serde_json::Value = serde_json::from_slice(&dv.json)
                    .map_err(|e| Error::Rpc(format!("provider sent bad JSON: {e}")))?;
                crate::value::from_json(&json, $ty)?
            }
            _ => Value::Null,
        }
    };
}

macro_rules! diags {
    ($m:ident, $list:expr) => {
        $list
            .into_iter()
            .map(|d| Diagnostic {
                error: d.severity == $m::diagnostic::Severity::Error as i32,
                summary: d.summary,
                detail: d.detail,
                attribute: d.attribute.map(|p| path_from!($m, p)).unwrap_or_default(),
            })
            .collect::<Vec<Diagnostic>>()
    };
}

macro_rules! path_from {
    ($m:ident, $p:expr) => {
        $p.steps
            .into_iter()
            .filter_map(|s| {
                use $m::attribute_path::step::Selector;
                match s.selector? {
                    Selector::AttributeName(a) => Some(PathStep::Attr(a)),
                    Selector::ElementKeyString(k) => Some(PathStep::Key(k)),
                    Selector::ElementKeyInt(i) => Some(PathStep::Index(i)),
                }
            })
            .collect::<Vec<PathStep>>()
    };
}

fn check(diags: Vec<Diagnostic>, what: &str) -> Result<Vec<Diagnostic>, Error> {
    if diags.iter().any(|d| d.error) {
        Err(Error::Provider {
            operation: what.to_string(),
            diagnostics: diags.into_iter().filter(|d| d.error).collect(),
        })
    } else {
        Ok(diags)
    }
}

fn nesting(n: i32) -> Nesting {
    match n {
        2 => Nesting::List,
        3 => Nesting::Set,
        4 => Nesting::Map,
        5 => Nesting::Group,
        _ => Nesting::Single,
    }
}

/// The value type of `type_name` among `schemas` (the provider's resources or
/// its data sources).
fn implied_type(schemas: &BTreeMap<String, Schema>, type_name: &str) -> Result<Type, Error> {
    schemas
        .get(type_name)
        .map(|s| s.block.implied_type())
        .ok_or_else(|| Error::UnknownType(type_name.to_string()))
}

/// One protocol version as [`call!`] sees it: a module holding the generated
/// messages, plus how a value and a schema cross into and out of them. The two
/// versions differ in one place the conversion cares about: only protocol 6
/// has nested attributes, which `$nested` (written as seen from inside the
/// new module, with `$a` the protocol's attribute) turns into plumb's.
macro_rules! protocol {
    ($(#[$doc:meta])* $v:ident = $m:ident, |$a:ident| $nested:expr) => {
        $(#[$doc])*
        mod $v {
            pub(super) use super::$m::*;

            use super::{
                Attribute, Block, Error, NestedAttributes, NestedBlock, Type, Value, msgpack,
                nesting,
            };

            pub(super) fn dynamic(value: &Value, ty: &Type) -> Result<DynamicValue, Error> {
                Ok(DynamicValue {
                    msgpack: msgpack::encode(value, ty)?,
                    json: Vec::new(),
                })
            }

            pub(super) fn schema(s: Option<Schema>) -> Result<super::Schema, Error> {
                let s = s.unwrap_or_default();
                Ok(super::Schema {
                    version: s.version,
                    block: block(s.block)?,
                })
            }

            fn block(b: Option<schema::Block>) -> Result<Block, Error> {
                let b = b.unwrap_or_default();
                let mut out = Block::default();
                for a in b.attributes {
                    let (k, v) = attribute(a)?;
                    out.attributes.insert(k, v);
                }
                for nb in b.block_types {
                    out.block_types.insert(
                        nb.type_name,
                        NestedBlock {
                            block: block(nb.block)?,
                            nesting: nesting(nb.nesting),
                            min_items: nb.min_items,
                            max_items: nb.max_items,
                        },
                    );
                }
                Ok(out)
            }

            pub(super) fn attribute($a: schema::Attribute) -> Result<(String, Attribute), Error> {
                let nested: Option<NestedAttributes> = $nested;
                let ty = match &nested {
                    Some(n) => n.implied_type(),
                    None => Type::from_json_bytes(&$a.r#type)?,
                };
                Ok((
                    $a.name,
                    Attribute {
                        ty,
                        nested,
                        required: $a.required,
                        optional: $a.optional,
                        computed: $a.computed,
                        sensitive: $a.sensitive,
                    },
                ))
            }
        }
    };
}

protocol!(
    /// Protocol 5: no nested attributes.
    v5 = tfplugin5,
    |a| None
);

protocol!(
    /// Protocol 6: an attribute may hold nested attributes.
    v6 = tfplugin6,
    |a| a.nested_type.map(super::nested_attributes).transpose()?
);

/// Protocol 6's nested attributes: an attribute typed as an object (or a
/// collection of objects) of further attributes.
fn nested_attributes(obj: tfplugin6::schema::Object) -> Result<NestedAttributes, Error> {
    let attributes = obj
        .attributes
        .into_iter()
        .map(v6::attribute)
        .collect::<Result<BTreeMap<_, _>, Error>>()?;
    Ok(NestedAttributes {
        attributes,
        nesting: nesting(obj.nesting),
    })
}

/// Makes one call in whichever protocol the provider speaks, written once for
/// both. `$m` names that protocol's module (`v5` or `v6`) inside the request's
/// fields and `$then`; `$r` is the response there, and `$warnings` its
/// diagnostics once [`check`] found no error among them. A call both
/// protocols name alike gives its method (also its request message) and its
/// operation name once; otherwise `v5:` and `v6:` give each protocol's
/// `method(message) "Operation"`.
macro_rules! call {
    (
        @in $v:ident, $client:ident.$method:ident($msg:ident) $op:literal,
        |$m:ident| { $($req:tt)* },
        |$r:ident, $warnings:pat_param| $then:expr
    ) => {{
        use crate::provider::$v as $m;
        let mut client = $client;
        let $r = client
            .$method($m::$msg::Request { $($req)* })
            .await
            .map_err(rpc_err)?
            .into_inner();
        let $warnings = check(diags!($m, $r.diagnostics), $op)?;
        $then
    }};
    (
        $client:expr,
        v5: $method5:ident($msg5:ident) $op5:literal,
        v6: $method6:ident($msg6:ident) $op6:literal,
        $($rest:tt)*
    ) => {
        match $client {
            Client::V5(c) => call!(@in v5, c.$method5($msg5) $op5, $($rest)*),
            Client::V6(c) => call!(@in v6, c.$method6($msg6) $op6, $($rest)*),
        }
    };
    ($client:expr, $method:ident $op:literal, $($rest:tt)*) => {
        call!(
            $client,
            v5: $method($method) $op,
            v6: $method($method) $op,
            $($rest)*
        )
    };
}

impl Provider {
    /// Starts the provider binary with default [`LaunchOptions`], connects
    /// (AutoMTLS over its socket) and fetches its schema.
    pub async fn start(binary: &Path) -> Result<Provider, Error> {
        Self::start_with(binary, &LaunchOptions::default()).await
    }

    /// Like [`Provider::start`], starting the process as `options` say.
    pub async fn start_with(binary: &Path, options: &LaunchOptions) -> Result<Provider, Error> {
        Self::launch(binary, &[5, 6], options).await
    }

    /// Like [`Provider::start`], offering only the given protocol versions.
    pub async fn start_with_versions(binary: &Path, versions: &[u32]) -> Result<Provider, Error> {
        Self::launch(binary, versions, &LaunchOptions::default()).await
    }

    async fn launch(
        binary: &Path,
        versions: &[u32],
        options: &LaunchOptions,
    ) -> Result<Provider, Error> {
        let identity = ClientIdentity::generate()?;
        let mut process = plugin::launch(binary, &identity, versions, options).await?;
        let channel = match plugin::connect(&process.handshake, &identity).await {
            Ok(c) => c,
            Err(e) => {
                process.kill().await;
                return Err(e);
            }
        };
        let client = match process.handshake.protocol_version {
            5 => Client::V5(
                tfplugin5::provider_client::ProviderClient::new(channel)
                    .max_decoding_message_size(MAX_MESSAGE)
                    .max_encoding_message_size(MAX_MESSAGE),
            ),
            6 => Client::V6(
                tfplugin6::provider_client::ProviderClient::new(channel)
                    .max_decoding_message_size(MAX_MESSAGE)
                    .max_encoding_message_size(MAX_MESSAGE),
            ),
            v => {
                return Err(Error::Handshake(format!(
                    "unsupported protocol version {v}"
                )));
            }
        };
        let name = binary
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut provider = Provider {
            client,
            schema: ProviderSchema::default(),
            process: Mutex::new(Some(process)),
            name,
        };
        provider.schema = provider.fetch_schema().await?;
        Ok(provider)
    }

    /// The protocol major version in use (5 or 6).
    pub fn protocol_version(&self) -> u32 {
        match self.client {
            Client::V5(_) => 5,
            Client::V6(_) => 6,
        }
    }

    /// The provider binary's file name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The provider's schema.
    pub fn schema(&self) -> &ProviderSchema {
        &self.schema
    }

    fn resource_type(&self, type_name: &str) -> Result<Type, Error> {
        implied_type(&self.schema.resources, type_name)
    }

    fn data_type(&self, type_name: &str) -> Result<Type, Error> {
        implied_type(&self.schema.data_sources, type_name)
    }

    async fn fetch_schema(&self) -> Result<ProviderSchema, Error> {
        call!(
            self.client.clone(),
            v5: get_schema(get_provider_schema) "GetSchema",
            v6: get_provider_schema(get_provider_schema) "GetProviderSchema",
            |m| {},
            |r, _| {
                let mut out = ProviderSchema {
                    provider: m::schema(r.provider)?,
                    ..ProviderSchema::default()
                };
                for (k, s) in r.resource_schemas {
                    out.resources.insert(k, m::schema(Some(s))?);
                }
                for (k, s) in r.data_source_schemas {
                    out.data_sources.insert(k, m::schema(Some(s))?);
                }
                out.plan_destroy = r.server_capabilities.is_some_and(|c| c.plan_destroy);
                Ok(out)
            }
        )
    }

    /// Validates the provider's own configuration.
    pub async fn validate_provider_config(&self, config: &Value) -> Result<Vec<Diagnostic>, Error> {
        let ty = self.schema.provider.block.implied_type();
        call!(
            self.client.clone(),
            v5: prepare_provider_config(prepare_provider_config) "PrepareProviderConfig",
            v6: validate_provider_config(validate_provider_config) "ValidateProviderConfig",
            |m| { config: Some(m::dynamic(config, &ty)?) },
            |r, warnings| Ok(warnings)
        )
    }

    /// Configures the provider; required before any resource operation.
    pub async fn configure(&self, config: &Value) -> Result<Vec<Diagnostic>, Error> {
        let ty = self.schema.provider.block.implied_type();
        let version = concat!("plumb-", env!("CARGO_PKG_VERSION")).to_string();
        call!(
            self.client.clone(),
            v5: configure(configure) "Configure",
            v6: configure_provider(configure_provider) "ConfigureProvider",
            |m| {
                terraform_version: version,
                config: Some(m::dynamic(config, &ty)?),
            },
            |r, warnings| Ok(warnings)
        )
    }

    /// Validates a resource's configuration.
    pub async fn validate_resource_config(
        &self,
        type_name: &str,
        config: &Value,
    ) -> Result<Vec<Diagnostic>, Error> {
        let ty = self.resource_type(type_name)?;
        call!(
            self.client.clone(),
            v5: validate_resource_type_config(validate_resource_type_config)
                "ValidateResourceTypeConfig",
            v6: validate_resource_config(validate_resource_config) "ValidateResourceConfig",
            |m| {
                type_name: type_name.to_string(),
                config: Some(m::dynamic(config, &ty)?),
            },
            |r, warnings| Ok(warnings)
        )
    }

    /// Upgrades stored JSON state written under schema `version` to the
    /// current schema.
    pub async fn upgrade_resource_state(
        &self,
        type_name: &str,
        version: i64,
        raw_json: &[u8],
    ) -> Result<Value, Error> {
        let ty = self.resource_type(type_name)?;
        call!(
            self.client.clone(),
            upgrade_resource_state "UpgradeResourceState",
            |m| {
                type_name: type_name.to_string(),
                version,
                raw_state: Some(m::RawState {
                    json: raw_json.to_vec(),
                    flatmap: Default::default(),
                }),
            },
            |r, _| Ok(decode_dv!(r.upgraded_state, &ty))
        )
    }

    /// Refreshes a resource: returns its current state (null if it is gone)
    /// and new private data.
    pub async fn read_resource(
        &self,
        type_name: &str,
        current: &Value,
        private: &[u8],
    ) -> Result<(Value, Vec<u8>), Error> {
        let ty = self.resource_type(type_name)?;
        call!(
            self.client.clone(),
            read_resource "ReadResource",
            |m| {
                type_name: type_name.to_string(),
                current_state: Some(m::dynamic(current, &ty)?),
                private: private.to_vec(),
                provider_meta: None,
            },
            |r, _| Ok((decode_dv!(r.new_state, &ty), r.private))
        )
    }

    /// Plans a change: create (prior null), update, or destroy (proposed null).
    pub async fn plan_resource_change(
        &self,
        type_name: &str,
        prior: &Value,
        proposed: &Value,
        config: &Value,
        prior_private: &[u8],
    ) -> Result<PlannedChange, Error> {
        let ty = self.resource_type(type_name)?;
        call!(
            self.client.clone(),
            plan_resource_change "PlanResourceChange",
            |m| {
                type_name: type_name.to_string(),
                prior_state: Some(m::dynamic(prior, &ty)?),
                proposed_new_state: Some(m::dynamic(proposed, &ty)?),
                config: Some(m::dynamic(config, &ty)?),
                prior_private: prior_private.to_vec(),
                provider_meta: None,
            },
            |r, warnings| Ok(PlannedChange {
                planned_state: decode_dv!(r.planned_state, &ty),
                requires_replace: r
                    .requires_replace
                    .into_iter()
                    .map(|p| path_from!(m, p))
                    .collect(),
                planned_private: r.planned_private,
                warnings,
            })
        )
    }

    /// Applies a planned change; returns the new state and private data.
    pub async fn apply_resource_change(
        &self,
        type_name: &str,
        prior: &Value,
        planned: &Value,
        config: &Value,
        planned_private: &[u8],
    ) -> Result<(Value, Vec<u8>), Error> {
        let ty = self.resource_type(type_name)?;
        call!(
            self.client.clone(),
            apply_resource_change "ApplyResourceChange",
            |m| {
                type_name: type_name.to_string(),
                prior_state: Some(m::dynamic(prior, &ty)?),
                planned_state: Some(m::dynamic(planned, &ty)?),
                config: Some(m::dynamic(config, &ty)?),
                planned_private: planned_private.to_vec(),
                provider_meta: None,
            },
            |r, _| Ok((decode_dv!(r.new_state, &ty), r.private))
        )
    }

    /// Asks the provider what exists under an import id.
    pub async fn import_resource_state(
        &self,
        type_name: &str,
        id: &str,
    ) -> Result<Vec<ImportedResource>, Error> {
        call!(
            self.client.clone(),
            import_resource_state "ImportResourceState",
            |m| {
                type_name: type_name.to_string(),
                id: id.to_string(),
            },
            |r, _| r
                .imported_resources
                .into_iter()
                .map(|i| {
                    let ty = self.resource_type(&i.type_name)?;
                    Ok(ImportedResource {
                        state: decode_dv!(i.state, &ty),
                        type_name: i.type_name,
                        private: i.private,
                    })
                })
                .collect()
        )
    }

    /// Reads a data source.
    pub async fn read_data_source(&self, type_name: &str, config: &Value) -> Result<Value, Error> {
        let ty = self.data_type(type_name)?;
        call!(
            self.client.clone(),
            read_data_source "ReadDataSource",
            |m| {
                type_name: type_name.to_string(),
                config: Some(m::dynamic(config, &ty)?),
                provider_meta: None,
            },
            |r, _| Ok(decode_dv!(r.state, &ty))
        )
    }

    /// Stops the provider process.
    pub async fn shutdown(&self) {
        if let Some(mut p) = self.process.lock().await.take() {
            p.kill().await;
        }
    }
}
