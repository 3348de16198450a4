//! npm's `package-lock.json`: lockfile version 1 (a nested `dependencies`
//! tree) and versions 2 and 3 (a flat `packages` map keyed by install path,
//! `node_modules/a/node_modules/@s/b`). Linked workspace folders and entries
//! without a registry version are left out.

use serde_json::Value;

use super::purl::purl;
use super::{Ecosystem, Package, SbomError};

fn npm_package(location: &str, name: &str, version: &str) -> Package {
    Package {
        ecosystem: Ecosystem::Npm,
        release: None,
        name: name.to_owned(),
        version: version.to_owned(),
        purl: purl("npm", name, version, &[]),
        source: None,
        location: location.to_owned(),
    }
}

/// A version npm's registry could have served (not a URL, path or git spec).
fn registry_version(v: &str) -> bool {
    !v.is_empty() && !v.contains([':', '/'])
}

/// The packages of a package-lock.json.
pub(crate) fn lockfile(location: &str, text: &str) -> Result<Vec<Package>, SbomError> {
    let doc: Value = serde_json::from_str(text)
        .map_err(|e| SbomError::parse(location, Some(e.line()), format!("not JSON: {e}")))?;
    let mut out = Vec::new();
    if let Some(packages) = doc.get("packages").and_then(Value::as_object) {
        for (key, entry) in packages {
            let Some(idx) = key.rfind("node_modules/") else {
                continue;
            };
            if entry.get("link").and_then(Value::as_bool) == Some(true) {
                continue;
            }
            let installed_as = &key[idx + "node_modules/".len()..];
            let name = entry
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or(installed_as);
            let Some(version) = entry.get("version").and_then(Value::as_str) else {
                continue;
            };
            if registry_version(version) {
                out.push(npm_package(location, name, version));
            }
        }
    } else if let Some(deps) = doc.get("dependencies").and_then(Value::as_object) {
        let mut stack = vec![deps];
        while let Some(deps) = stack.pop() {
            for (name, entry) in deps {
                if let Some(version) = entry.get("version").and_then(Value::as_str)
                    && registry_version(version)
                {
                    out.push(npm_package(location, name, version));
                }
                if let Some(nested) = entry.get("dependencies").and_then(Value::as_object) {
                    stack.push(nested);
                }
            }
        }
    } else if !doc.is_object() {
        return Err(SbomError::parse(location, None, "not a JSON object"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_3_flat_packages() {
        let lock = r#"{"name":"app","lockfileVersion":3,"packages":{
            "":{"name":"app","version":"1.0.0"},
            "node_modules/@types/node":{"version":"20.11.30"},
            "node_modules/a/node_modules/lodash":{"version":"4.17.20"},
            "node_modules/ws":{"version":"git+https://example.invalid/ws.git"},
            "node_modules/local":{"resolved":"packages/local","link":true},
            "packages/local":{"version":"0.0.1"}}}"#;
        let mut p = lockfile("package-lock.json", lock).unwrap();
        p.sort();
        let purls: Vec<_> = p.iter().map(|p| p.purl.as_str()).collect();
        assert_eq!(
            purls,
            ["pkg:npm/%40types/node@20.11.30", "pkg:npm/lodash@4.17.20"]
        );
    }

    #[test]
    fn version_1_nested_dependencies() {
        let lock = r#"{"lockfileVersion":1,"dependencies":{
            "express":{"version":"4.17.1","dependencies":{"debug":{"version":"2.6.9"}}}}}"#;
        let mut p = lockfile("package-lock.json", lock).unwrap();
        p.sort();
        let names: Vec<_> = p
            .iter()
            .map(|p| (p.name.as_str(), p.version.as_str()))
            .collect();
        assert_eq!(names, [("debug", "2.6.9"), ("express", "4.17.1")]);
    }

    #[test]
    fn broken_json_names_file_and_line() {
        let err = lockfile("web/package-lock.json", "{\n\"packages\": [\n").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("web/package-lock.json:3: not JSON"),
            "{err}"
        );
    }
}
