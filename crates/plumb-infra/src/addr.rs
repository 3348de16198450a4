//! Resource and instance addresses: `module.net.random_id.a["k"]`.

use std::fmt;

use crate::config::Mode;

/// An instance key: a count index or a for_each key.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum InstanceKey {
    /// `[3]`
    Int(i64),
    /// `["name"]`
    Str(String),
}

impl InstanceKey {
    /// As stored in state (`index_key`).
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            InstanceKey::Int(i) => serde_json::json!(i),
            InstanceKey::Str(s) => serde_json::json!(s),
        }
    }
    /// From a state `index_key`.
    pub fn from_json(v: &serde_json::Value) -> Option<InstanceKey> {
        match v {
            serde_json::Value::Number(n) => n.as_i64().map(InstanceKey::Int),
            serde_json::Value::String(s) => Some(InstanceKey::Str(s.clone())),
            _ => None,
        }
    }
}

/// A resource (all its instances).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ResourceAddr {
    /// Module path (`["net"]` for `module.net`).
    pub module: Vec<String>,
    /// managed or data.
    pub mode: Mode,
    /// Type.
    pub ty: String,
    /// Name.
    pub name: String,
}

/// One instance of a resource.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct InstanceAddr {
    /// The resource.
    pub resource: ResourceAddr,
    /// The key, if the resource uses count or for_each.
    pub key: Option<InstanceKey>,
}

impl ResourceAddr {
    /// `module.a.module.b` as state files write it, or `None` at the root.
    pub fn module_string(&self) -> Option<String> {
        if self.module.is_empty() {
            None
        } else {
            Some(
                self.module
                    .iter()
                    .map(|m| format!("module.{m}"))
                    .collect::<Vec<_>>()
                    .join("."),
            )
        }
    }
    /// Parses `module.x.type.name` / `data.type.name` from a state module string.
    pub fn from_state(module: Option<&str>, mode: &str, ty: &str, name: &str) -> ResourceAddr {
        let module = module
            .map(|m| {
                m.split('.')
                    .collect::<Vec<_>>()
                    .chunks(2)
                    .filter_map(|c| {
                        c.get(1)
                            .map(|s| s.split('[').next().unwrap_or(s).to_string())
                    })
                    .collect()
            })
            .unwrap_or_default();
        ResourceAddr {
            module,
            mode: if mode == "data" {
                Mode::Data
            } else {
                Mode::Managed
            },
            ty: ty.to_string(),
            name: name.to_string(),
        }
    }
}

impl fmt::Display for ResourceAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for m in &self.module {
            write!(f, "module.{m}.")?;
        }
        if self.mode == Mode::Data {
            write!(f, "data.")?;
        }
        write!(f, "{}.{}", self.ty, self.name)
    }
}

impl fmt::Display for InstanceAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.resource)?;
        match &self.key {
            None => Ok(()),
            Some(InstanceKey::Int(i)) => write!(f, "[{i}]"),
            Some(InstanceKey::Str(s)) => write!(f, "[{s:?}]"),
        }
    }
}

/// Parses an instance address as users write it (`-target`, `state mv`,
/// `moved`, `import`).
pub fn parse_instance(text: &str) -> Result<InstanceAddr, String> {
    let text = text.trim();
    let bad = || {
        format!(
            "{text:?} is not a resource address (like random_id.a, random_id.a[0] or module.m.random_id.a[\"k\"])"
        )
    };
    let mut rest = text;
    let mut module = Vec::new();
    while let Some(r) = rest.strip_prefix("module.") {
        let (name, after) = r.split_once('.').ok_or_else(bad)?;
        if name.contains('[') {
            return Err(format!(
                "{text:?}: module instances with keys are not supported"
            ));
        }
        module.push(name.to_string());
        rest = after;
    }
    let (mode, rest) = match rest.strip_prefix("data.") {
        Some(r) => (Mode::Data, r),
        None => (Mode::Managed, rest),
    };
    let (ty, rest) = rest.split_once('.').ok_or_else(bad)?;
    let (name, key) = match rest.find('[') {
        Some(i) => {
            let inner = rest[i + 1..].strip_suffix(']').ok_or_else(bad)?;
            let key = if let Some(s) = inner.strip_prefix('"').and_then(|s| s.strip_suffix('"')) {
                InstanceKey::Str(s.to_string())
            } else {
                InstanceKey::Int(inner.parse().map_err(|_| bad())?)
            };
            (&rest[..i], Some(key))
        }
        None => (rest, None),
    };
    if ty.is_empty() || name.is_empty() || name.contains('.') {
        return Err(bad());
    }
    Ok(InstanceAddr {
        resource: ResourceAddr {
            module,
            mode,
            ty: ty.to_string(),
            name: name.to_string(),
        },
        key,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints() {
        for t in [
            "random_id.a",
            "random_id.a[3]",
            "module.m.data.x_y.z[\"k\"]",
        ] {
            assert_eq!(parse_instance(t).unwrap().to_string(), t);
        }
        assert!(parse_instance("nonsense").is_err());
    }
}
