//! References instead of values: a Kubernetes Secret in Git that names where
//! its values live, resolved when it is applied.
//!
//! ```yaml
//! apiVersion: v1
//! kind: Secret
//! metadata:
//!   name: db
//!   annotations:
//!     plumb.dev/secret-ref: vault://kv/data/db             # every field → a key
//!     plumb.dev/secret-ref.password: k8s://vault-sync/db#pw # one field → key `password`
//! ```
//!
//! A reference is a URI: `vault://PATH#FIELD` (a HashiCorp Vault read of
//! `/v1/PATH`, KV v2 or v1), `k8s://NAMESPACE/NAME#KEY` (another Kubernetes
//! Secret) or `file:///ABSOLUTE/PATH#KEY` (a file or a directory of files on
//! the machine that applies, under an allowed root). This module parses
//! references ([`wanted`]), reads files ([`FileRoots`]) and Vault ([`Vault`]),
//! and writes resolved values into the object ([`fill`]) together with a
//! hash of them ([`HASH_ANNOTATION`]), so a diff can say that a value changed
//! without showing it. Kubernetes reads are the caller's (it holds the
//! cluster client).
//!
//! Values are held in [`Zeroizing`] buffers; no error carries a value.

mod file;
mod vault;

use std::collections::BTreeMap;
use std::path::PathBuf;

use base64::Engine as _;
use serde_json::Value;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

pub use file::FileRoots;
pub use vault::{Vault, VaultAuth, VaultConfig};

/// The annotation whose reference fills every key (or, with `#FIELD`, the
/// key named FIELD).
pub const REF_ANNOTATION: &str = "plumb.dev/secret-ref";

/// The prefix of annotations that fill one key: `plumb.dev/secret-ref.KEY`.
pub const REF_KEY_PREFIX: &str = "plumb.dev/secret-ref.";

/// The annotation plumb writes on an applied Secret: a hash of the values it
/// resolved, compared by diffs instead of the values.
pub const HASH_ANNOTATION: &str = "plumb.dev/secret-ref-hash";

/// On a source Secret read through `k8s://`: the namespaces whose Secrets may
/// copy it (comma-separated, `*` for all). Without it only Secrets in its own
/// namespace may.
pub const ALLOWED_NAMESPACES_ANNOTATION: &str = "plumb.dev/secret-ref-allowed-namespaces";

/// The largest value (and the largest Secret) a reference may produce, as
/// Kubernetes limits Secrets to 1 MiB.
pub const MAX_BYTES: usize = 1024 * 1024;

/// Resolved values by key, wiped on drop.
pub type Values = BTreeMap<String, Zeroizing<Vec<u8>>>;

/// Where a reference points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A Vault path under `/v1/` (`kv/data/app`).
    Vault {
        /// The path.
        path: String,
    },
    /// A Kubernetes Secret; the namespace defaults to the referring Secret's.
    Kubernetes {
        /// Its namespace, when given.
        namespace: Option<String>,
        /// Its name.
        name: String,
    },
    /// A file or a directory of files.
    File {
        /// The absolute path.
        path: PathBuf,
    },
}

/// One parsed reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretRef {
    /// Where.
    pub source: Source,
    /// The field of the source to take (`#FIELD`); `None` takes all of them.
    pub field: Option<String>,
    /// The reference as written (it never holds a value).
    pub uri: String,
}

/// One annotation's request: a reference and the key it fills.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wanted {
    /// The annotation that asked.
    pub annotation: String,
    /// The reference.
    pub reference: SecretRef,
    /// The Secret key to fill, or `None` for every field of the source.
    pub key: Option<String>,
}

/// Why a reference cannot be resolved. Messages name the reference, never a
/// value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reference}: {message}")]
pub struct RefError {
    /// The reference (or annotation) concerned.
    pub reference: String,
    /// What is wrong.
    pub message: String,
}

impl RefError {
    pub(crate) fn new(reference: &str, message: impl Into<String>) -> RefError {
        RefError {
            reference: reference.to_string(),
            message: message.into(),
        }
    }
}

/// Parse one reference URI.
pub fn parse(uri: &str) -> Result<SecretRef, RefError> {
    let fail = |m: &str| RefError::new(uri, m);
    let trimmed = uri.trim();
    let (scheme, rest) = trimmed.split_once("://").ok_or_else(|| {
        fail("expected vault://PATH#FIELD, k8s://NAMESPACE/NAME#KEY or file:///PATH#KEY")
    })?;
    let (location, field) = match rest.split_once('#') {
        Some((_, "")) => return Err(fail("empty #FIELD")),
        Some((l, f)) => (l, Some(f.to_string())),
        None => (rest, None),
    };
    if location.contains(['?', '#']) {
        return Err(fail("query strings are not supported"));
    }
    let source = match scheme {
        "vault" => {
            let path = location.trim_matches('/');
            if path.is_empty()
                || path
                    .split('/')
                    .any(|s| s.is_empty() || s == "." || s == "..")
            {
                return Err(fail(
                    "give a Vault path such as vault://kv/data/app#password",
                ));
            }
            Source::Vault {
                path: path.to_string(),
            }
        }
        "k8s" => {
            let parts: Vec<&str> = location.split('/').collect();
            let (namespace, name) = match parts.as_slice() {
                [name] => (None, *name),
                [ns, name] => (Some(ns.to_string()), *name),
                _ => return Err(fail("give k8s://NAMESPACE/NAME#KEY or k8s://NAME#KEY")),
            };
            if !is_dns_name(name) || namespace.as_deref().is_some_and(|n| !is_dns_name(n)) {
                return Err(fail("namespace and name must be Kubernetes names"));
            }
            Source::Kubernetes {
                namespace,
                name: name.to_string(),
            }
        }
        "file" => {
            if !location.starts_with('/') {
                return Err(fail(
                    "file references take an absolute path: file:///run/secrets/db#password",
                ));
            }
            Source::File {
                path: PathBuf::from(location),
            }
        }
        other => {
            return Err(fail(&format!(
                "unknown scheme {other}:// (vault, k8s and file are supported)"
            )));
        }
    };
    Ok(SecretRef {
        source,
        field,
        uri: trimmed.to_string(),
    })
}

fn is_dns_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && !s.starts_with(['-', '.'])
        && !s.ends_with(['-', '.'])
}

fn is_secret_key(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

/// Whether `object` is a Secret with at least one reference annotation.
pub fn has_refs(object: &Value) -> bool {
    object.get("kind").and_then(Value::as_str) == Some("Secret")
        && object
            .pointer("/metadata/annotations")
            .and_then(Value::as_object)
            .is_some_and(|a| a.keys().any(|k| is_ref_annotation(k)))
}

fn is_ref_annotation(key: &str) -> bool {
    key == REF_ANNOTATION || key.starts_with(REF_KEY_PREFIX)
}

/// The references a Secret's annotations ask for, in annotation order.
pub fn wanted(object: &Value) -> Result<Vec<Wanted>, RefError> {
    let Some(annotations) = object
        .pointer("/metadata/annotations")
        .and_then(Value::as_object)
    else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for (annotation, value) in annotations {
        if !is_ref_annotation(annotation) {
            continue;
        }
        let Some(uri) = value.as_str() else {
            return Err(RefError::new(
                annotation,
                "the annotation's value must be a string",
            ));
        };
        let reference = parse(uri).map_err(|e| RefError::new(annotation, e.to_string()))?;
        let key = match annotation.strip_prefix(REF_KEY_PREFIX) {
            Some(key) => {
                if !is_secret_key(key) {
                    return Err(RefError::new(
                        annotation,
                        "the key after plumb.dev/secret-ref. must be a valid Secret key",
                    ));
                }
                Some(key.to_string())
            }
            None => reference.field.clone(),
        };
        if let Some(k) = &key
            && !is_secret_key(k)
        {
            return Err(RefError::new(
                annotation,
                "the #FIELD must be a valid Secret key",
            ));
        }
        out.push(Wanted {
            annotation: annotation.clone(),
            reference,
            key,
        });
    }
    Ok(out)
}

/// Take what `wanted` asks for out of a source's `fields`: one field (under
/// `wanted.key`), or every field.
pub fn select(wanted: &Wanted, mut fields: Values) -> Result<Values, RefError> {
    let uri = &wanted.reference.uri;
    let mut out = Values::new();
    match (&wanted.reference.field, &wanted.key) {
        (Some(field), Some(key)) => {
            let value = fields
                .remove(field)
                .ok_or_else(|| RefError::new(uri, format!("the source has no field {field}")))?;
            out.insert(key.clone(), value);
        }
        (None, Some(key)) => {
            // A whole source for one key: only a single value makes sense.
            if fields.len() != 1 {
                return Err(RefError::new(
                    uri,
                    format!(
                        "the source has {} fields; name one with #FIELD to fill key {key}",
                        fields.len()
                    ),
                ));
            }
            let (_, value) = fields
                .pop_first()
                .ok_or_else(|| RefError::new(uri, "empty"))?;
            out.insert(key.clone(), value);
        }
        (_, None) => {
            if fields.is_empty() {
                return Err(RefError::new(uri, "the source has no fields"));
            }
            for (k, v) in fields {
                if !is_secret_key(&k) {
                    return Err(RefError::new(
                        uri,
                        format!(
                            "field {k:?} is not a valid Secret key; take it with #FIELD into a key of its own"
                        ),
                    ));
                }
                out.insert(k, v);
            }
        }
    }
    Ok(out)
}

/// A hash of resolved values (`sha256:…`), the same for the same keys and
/// values in any order.
pub fn hash(values: &Values) -> String {
    let mut h = Sha256::new();
    h.update(b"plumb secret-ref v1\0");
    for (k, v) in values {
        h.update((k.len() as u64).to_be_bytes());
        h.update(k.as_bytes());
        h.update((v.len() as u64).to_be_bytes());
        h.update(v.as_slice());
    }
    format!("sha256:{}", hex::encode(h.finalize()))
}

/// Write `values` into the Secret `object`: each into `data` (base64),
/// replacing a `stringData` entry of the same key, and the hash of all of
/// them into [`HASH_ANNOTATION`].
pub fn fill(object: &mut Value, values: &Values) -> Result<(), RefError> {
    let name = object
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let total: usize = values.iter().map(|(k, v)| k.len() + v.len()).sum();
    if total > MAX_BYTES {
        return Err(RefError::new(
            &name,
            format!("resolved values are {total} bytes; a Secret holds at most {MAX_BYTES}"),
        ));
    }
    let hash = hash(values);
    let Some(map) = object.as_object_mut() else {
        return Err(RefError::new(&name, "not an object"));
    };
    if let Some(Value::Object(string_data)) = map.get_mut("stringData") {
        for k in values.keys() {
            string_data.remove(k);
        }
        if string_data.is_empty() {
            map.remove("stringData");
        }
    }
    let data = map
        .entry("data")
        .or_insert_with(|| Value::Object(Default::default()));
    if data.is_null() {
        *data = Value::Object(Default::default());
    }
    let Some(data) = data.as_object_mut() else {
        return Err(RefError::new(&name, "data is not a map"));
    };
    for (k, v) in values {
        data.insert(
            k.clone(),
            Value::String(base64::engine::general_purpose::STANDARD.encode(v.as_slice())),
        );
    }
    let metadata = map
        .entry("metadata")
        .or_insert_with(|| Value::Object(Default::default()));
    let Some(metadata) = metadata.as_object_mut() else {
        return Err(RefError::new(&name, "metadata is not a map"));
    };
    let annotations = metadata
        .entry("annotations")
        .or_insert_with(|| Value::Object(Default::default()));
    if let Some(a) = annotations.as_object_mut() {
        a.insert(HASH_ANNOTATION.to_string(), Value::String(hash));
    }
    Ok(())
}

/// Parse `KEY=VALUE` lines (blank lines and `#` comments skipped, one pair of
/// surrounding quotes removed) into fields.
pub(crate) fn dotenv_fields(text: &str, origin: &str) -> Result<Values, RefError> {
    let mut out = Values::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let Some((k, v)) = line.split_once('=') else {
            return Err(RefError::new(
                origin,
                format!("line {}: expected KEY=VALUE", i + 1),
            ));
        };
        let v = v.trim();
        let v = v
            .strip_prefix('"')
            .and_then(|s| s.strip_suffix('"'))
            .or_else(|| v.strip_prefix('\'').and_then(|s| s.strip_suffix('\'')))
            .unwrap_or(v);
        out.insert(k.trim().to_string(), Zeroizing::new(v.as_bytes().to_vec()));
    }
    Ok(out)
}

/// Fields of a JSON object: strings as their bytes, anything else as JSON text.
pub(crate) fn json_fields(value: &Value, origin: &str) -> Result<Values, RefError> {
    let Some(map) = value.as_object() else {
        return Err(RefError::new(origin, "expected a map of fields"));
    };
    let mut out = Values::new();
    for (k, v) in map {
        let bytes = match v {
            Value::String(s) => s.as_bytes().to_vec(),
            other => other.to_string().into_bytes(),
        };
        out.insert(k.clone(), Zeroizing::new(bytes));
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
