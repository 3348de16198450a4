//! A rendered object and where it came from.
//!
//! Rendering turns a commit's tree into [`Manifest`]s; the cluster engine
//! applies them; every check between the two (and every error after) points
//! back at the file the user wrote through the manifest's [`Origin`]. The two
//! types live here, below both render and the engine, so that neither has to
//! know the other.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Where something came from: a file in the repository and a 1-based line
/// and column.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Origin {
    /// Path relative to the repository root (or a description for tool output).
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    #[serde(default)]
    pub column: usize,
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.column.max(1))
    }
}

/// One rendered object and where it came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// The object.
    pub object: Value,
    /// Its origin.
    pub origin: Origin,
}

impl Manifest {
    /// `apiVersion`.
    pub fn api_version(&self) -> &str {
        self.str_at("/apiVersion").unwrap_or("")
    }

    /// `kind`.
    pub fn kind(&self) -> &str {
        self.str_at("/kind").unwrap_or("")
    }

    /// `metadata.name`.
    pub fn name(&self) -> &str {
        self.str_at("/metadata/name").unwrap_or("")
    }

    /// `metadata.namespace`, when set.
    pub fn namespace(&self) -> Option<&str> {
        self.str_at("/metadata/namespace").filter(|s| !s.is_empty())
    }

    fn str_at(&self, pointer: &str) -> Option<&str> {
        self.object.pointer(pointer).and_then(Value::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_print_as_file_line_column() {
        let o = Origin {
            file: "apps/web.yaml".into(),
            line: 3,
            column: 0,
        };
        assert_eq!(o.to_string(), "apps/web.yaml:3:1");
    }

    #[test]
    fn accessors_read_the_object() {
        let m = Manifest {
            object: serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "a", "namespace": ""}}),
            origin: Origin {
                file: "x.yaml".into(),
                line: 1,
                column: 1,
            },
        };
        assert_eq!(
            (m.api_version(), m.kind(), m.name()),
            ("v1", "ConfigMap", "a")
        );
        assert_eq!(m.namespace(), None);
    }
}
