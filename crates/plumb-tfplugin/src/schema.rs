//! Provider schemas: what attributes and nested blocks a provider, resource
//! type or data source has, and the object type they imply.

use std::collections::BTreeMap;

use crate::value::{Type, Value};

/// A versioned schema for a provider, resource type or data source.
#[derive(Clone, Debug, Default)]
pub struct Schema {
    /// The schema version (resources record it in state).
    pub version: i64,
    /// The top-level block.
    pub block: Block,
}

/// A configuration block: attributes and nested blocks.
#[derive(Clone, Debug, Default)]
pub struct Block {
    /// Attributes by name.
    pub attributes: BTreeMap<String, Attribute>,
    /// Nested block types by name.
    pub block_types: BTreeMap<String, NestedBlock>,
}

/// One attribute.
#[derive(Clone, Debug)]
pub struct Attribute {
    /// Its type (for protocol-6 nested attributes, the implied type).
    pub ty: Type,
    /// Nested attributes (protocol 6), if this is a nested attribute.
    pub nested: Option<NestedAttributes>,
    /// Must be set in configuration.
    pub required: bool,
    /// May be set in configuration.
    pub optional: bool,
    /// Set by the provider when not configured.
    pub computed: bool,
    /// Redacted in output.
    pub sensitive: bool,
}

/// Attributes nested inside an attribute (protocol 6).
#[derive(Clone, Debug)]
pub struct NestedAttributes {
    /// The nested attributes.
    pub attributes: BTreeMap<String, Attribute>,
    /// How they nest.
    pub nesting: Nesting,
}

/// A nested block type.
#[derive(Clone, Debug)]
pub struct NestedBlock {
    /// The block's schema.
    pub block: Block,
    /// How blocks of this type nest.
    pub nesting: Nesting,
    /// Fewest blocks allowed.
    pub min_items: i64,
    /// Most blocks allowed (0 = unlimited).
    pub max_items: i64,
}

/// How nested blocks or attributes combine into a value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Nesting {
    /// One object, or null.
    Single,
    /// Like single, but never null.
    Group,
    /// A list of objects.
    List,
    /// A set of objects.
    Set,
    /// A map of objects, keyed by the block label.
    Map,
}

impl Block {
    /// The object type a value of this block has.
    pub fn implied_type(&self) -> Type {
        let mut attrs: BTreeMap<String, Type> = self
            .attributes
            .iter()
            .map(|(k, a)| (k.clone(), a.ty.clone()))
            .collect();
        for (k, b) in &self.block_types {
            attrs.insert(k.clone(), b.nesting.wrap(b.block.implied_type()));
        }
        Type::Object(attrs)
    }

    /// A value of this block that sets nothing: every attribute null.
    pub fn unset(&self) -> Value {
        Value::Map(
            self.attributes
                .keys()
                .map(|k| (k.clone(), Value::Null))
                .collect(),
        )
    }
}

impl Nesting {
    /// Wraps an element object type the way this nesting combines it.
    pub fn wrap(self, elem: Type) -> Type {
        match self {
            Nesting::Single | Nesting::Group => elem,
            Nesting::List => Type::List(Box::new(elem)),
            Nesting::Set => Type::Set(Box::new(elem)),
            Nesting::Map => Type::Map(Box::new(elem)),
        }
    }
}

impl NestedAttributes {
    /// The type these nested attributes imply.
    pub fn implied_type(&self) -> Type {
        let obj = Type::Object(
            self.attributes
                .iter()
                .map(|(k, a)| (k.clone(), a.ty.clone()))
                .collect(),
        );
        self.nesting.wrap(obj)
    }
}

/// Everything a provider declares.
#[derive(Clone, Debug, Default)]
pub struct ProviderSchema {
    /// The provider's own configuration.
    pub provider: Schema,
    /// Managed resource types.
    pub resources: BTreeMap<String, Schema>,
    /// Data sources.
    pub data_sources: BTreeMap<String, Schema>,
    /// The provider wants PlanResourceChange called for destroys too.
    pub plan_destroy: bool,
}
