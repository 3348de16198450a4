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
    /// Builds a resource address from a state entry's `module` string
    /// (`module.a["k"].module.b`), mode, type and name.
    pub fn from_state(module: Option<&str>, mode: &str, ty: &str, name: &str) -> ResourceAddr {
        let module = match module {
            Some(m) => match split_module_path(m) {
                Ok((path, "")) => path,
                // Not written by plumb or Terraform: keep each element's text.
                _ => m
                    .split('.')
                    .collect::<Vec<_>>()
                    .chunks(2)
                    .filter_map(|c| c.get(1).map(|s| s.to_string()))
                    .collect(),
            },
            None => Vec::new(),
        };
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

/// The call name in a module path element: `net` for `net["a"]` or `net[0]`.
pub fn module_call_name(elem: &str) -> &str {
    elem.split_once('[').map_or(elem, |(name, _)| name)
}

/// Whether module instance `path` lies within `target`, a module path as
/// `-target` names it: an element without a key (`module.net`) takes in
/// every instance of that call.
pub fn module_path_within(path: &[String], target: &[String]) -> bool {
    path.len() >= target.len()
        && path
            .iter()
            .zip(target)
            .all(|(p, t)| p == t || (!t.contains('[') && module_call_name(p) == t.as_str()))
}

/// The module path element of one instance of a module call: `net`,
/// `net[0]` or `net["a"]`, as state files and plans write it.
pub fn module_elem(name: &str, key: Option<&InstanceKey>) -> String {
    match key {
        None => name.to_string(),
        Some(k) => format!("{name}{k}"),
    }
}

/// The module path an address names when it is only a module path
/// (`module.net` or `module.net["eu"]`), as `-target` may give it.
pub fn module_path_of(text: &str) -> Option<Vec<String>> {
    match split_module_path(text.trim()) {
        Ok((path, "")) if !path.is_empty() => Some(path),
        _ => None,
    }
}

/// Splits the leading `module.NAME[KEY].` steps off an address; returns the
/// module path (one element per step, as [`module_elem`] writes them) and
/// what follows the last step's dot (empty when the text is only a module
/// path).
pub fn split_module_path(text: &str) -> Result<(Vec<String>, &str), String> {
    let mut rest = text;
    let mut path = Vec::new();
    while let Some(r) = rest.strip_prefix("module.") {
        let end = r
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-'))
            .unwrap_or(r.len());
        let (name, mut after) = r.split_at(end);
        if name.is_empty() {
            return Err("a module step needs a name".into());
        }
        let key = match after.strip_prefix('[') {
            Some(k) => {
                let (key, tail) = parse_key(k)?;
                after = tail;
                Some(key)
            }
            None => None,
        };
        path.push(module_elem(name, key.as_ref()));
        rest = match after.strip_prefix('.') {
            Some(t) => t,
            None if after.is_empty() => after,
            None => return Err(format!("unexpected {after:?} after module.{name}")),
        };
    }
    Ok((path, rest))
}

/// Parses an instance key after its `[` up to and including the `]`;
/// returns the key and the text after the bracket.
fn parse_key(text: &str) -> Result<(InstanceKey, &str), String> {
    if let Some(q) = text.strip_prefix('"') {
        let mut out = String::new();
        let mut chars = q.char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some((_, e)) => out.push(e),
                    None => break,
                },
                '"' => {
                    let tail = q[i + 1..]
                        .strip_prefix(']')
                        .ok_or("an instance key must end with ]")?;
                    return Ok((InstanceKey::Str(out), tail));
                }
                c => out.push(c),
            }
        }
        return Err("unterminated instance key".into());
    }
    let (num, tail) = text
        .split_once(']')
        .ok_or("an instance key must end with ]")?;
    let n = num
        .trim()
        .parse()
        .map_err(|_| format!("instance key {num:?} is neither a number nor a quoted string"))?;
    Ok((InstanceKey::Int(n), tail))
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

impl fmt::Display for InstanceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InstanceKey::Int(i) => write!(f, "[{i}]"),
            InstanceKey::Str(s) => write!(f, "[{s:?}]"),
        }
    }
}

impl fmt::Display for InstanceAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.resource)?;
        match &self.key {
            None => Ok(()),
            Some(k) => write!(f, "{k}"),
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
    let (module, rest) = split_module_path(text).map_err(|e| format!("{text:?}: {e}"))?;
    let (mode, rest) = match rest.strip_prefix("data.") {
        Some(r) => (Mode::Data, r),
        None => (Mode::Managed, rest),
    };
    let (ty, rest) = rest.split_once('.').ok_or_else(bad)?;
    let (name, key) = match rest.find('[') {
        Some(i) => {
            let (key, tail) = parse_key(&rest[i + 1..]).map_err(|_| bad())?;
            if !tail.is_empty() {
                return Err(bad());
            }
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
            "module.m[2].random_id.a",
            "module.m[\"a.b\"].module.n[0].random_id.a[\"x\"]",
        ] {
            assert_eq!(parse_instance(t).unwrap().to_string(), t);
        }
        assert!(parse_instance("nonsense").is_err());
        assert!(parse_instance("module.m[x].random_id.a").is_err());
        assert!(parse_instance("module.m[\"a\".random_id.a").is_err());
    }

    #[test]
    fn module_paths_keep_their_keys_through_state_strings() {
        let a = parse_instance("module.m[\"a.b\"].module.n[0].random_id.a").unwrap();
        assert_eq!(a.resource.module, vec!["m[\"a.b\"]", "n[0]"]);
        let text = a.resource.module_string().unwrap();
        assert_eq!(text, "module.m[\"a.b\"].module.n[0]");
        let back = ResourceAddr::from_state(Some(&text), "managed", "random_id", "a");
        assert_eq!(back, a.resource);
        assert_eq!(module_call_name("m[\"a.b\"]"), "m");
        assert_eq!(
            split_module_path("module.m").unwrap(),
            (vec!["m".to_string()], "")
        );
        let p = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(module_path_within(&p(&["m[0]", "n"]), &p(&["m"])));
        assert!(module_path_within(&p(&["m[0]", "n"]), &p(&["m[0]"])));
        assert!(!module_path_within(&p(&["m[1]", "n"]), &p(&["m[0]"])));
        assert!(!module_path_within(&p(&["mm[0]"]), &p(&["m"])));
        assert!(!module_path_within(&p(&["m"]), &p(&["m", "n"])));
    }
}
